"""The clerk console driven through headless Chromium: buttons and keys run the window
commands, the page shows the current citizen and the server's errors, and the engine agrees."""

from __future__ import annotations

import json

from browser_support import ARTIFACTS, needs_chromium, open_browser, page_url, serve_hall
from server_support import TOKENS, client, guard

pytestmark = needs_chromium

WINDOW = 7  # demo hall, zone "social": SOC and MED


def shows(selector: str, text: str) -> str:
    return f"document.querySelector({json.dumps(selector)})?.textContent === {json.dumps(text)}"


@guard(120)
async def test_clerk_console_runs_the_window(nursery, demo_hall, tmp_path):
    server, _ = await serve_hall(nursery, demo_hall, tmp_path / "hall.db")
    engine = server.engine
    async with client(server, "kiosk") as kiosk:
        first = await kiosk.request("take_number", service="SOC")
        second = await kiosk.request("take_number", service="MED")
    async with open_browser(tmp_path) as browser:
        page = await browser.new_page(page_url(server, "clerk", window=WINDOW, token=TOKENS["clerk"], clerk="A1024"))
        await page.wait_for("document.getElementById('status').dataset.status === 'closed'")
        assert "7号窗口" in await page.text("#title")
        assert await page.evaluate("document.querySelector('[data-action=call_next]').disabled") is False

        await page.click("button[data-action=open_window]")
        await page.wait_for("document.getElementById('status').dataset.status === 'open'")
        assert engine.state.windows[WINDOW].status == "open"
        assert engine.state.windows[WINDOW].clerk == "A1024"  # the staff id of ?clerk= went with open_window
        assert await page.evaluate("document.getElementById('clerk-id').disabled") is True
        await page.wait_for("document.querySelector('#waiting tr[data-code=SOC] .waiting')?.textContent === '1'")

        await page.click("button[data-action=call_next]")  # the button
        await page.wait_for(shows("#current-number", first["number"]))
        ticket = engine.state.tickets[first["ticket"]]
        assert (ticket.status, ticket.window, engine.state.windows[WINDOW].current) == ("called", WINDOW, ticket.id)

        await page.click("button[data-action=call_next]")  # the window is busy: a clear error, nothing changes
        await page.wait_for("document.getElementById('message').dataset.kind === 'error'")
        assert "window_busy" in await page.text("#message")
        assert engine.state.windows[WINDOW].current == first["ticket"]

        await page.press("r")  # the keys of `callsys clerk`: r recall, s start, f finish, n next
        await page.wait_for("document.getElementById('current-detail').textContent.includes('recalls 1')")
        await page.press("s")
        await page.wait_for("document.getElementById('current-detail').textContent.includes('serving')")
        assert engine.state.tickets[first["ticket"]].status == "serving"
        await page.press("f")
        await page.wait_for(shows("#current-number", "—"))
        assert engine.state.tickets[first["ticket"]].status == "done"
        assert engine.state.tickets[first["ticket"]].clerk == "A1024"

        await page.press("n")
        await page.wait_for(shows("#current-number", second["number"]))
        await page.screenshot(ARTIFACTS / "clerk.png")
        await page.click("button[data-action=transfer]")  # transfer asks for the target
        await page.wait_for("document.getElementById('transfer-form').classList.contains('open')")
        await page.submit("#transfer-form", target="8")
        await page.wait_for(shows("#current-number", "—"))
        moved = engine.state.tickets[second["ticket"]]
        assert moved.status == "waiting" and moved.transfers == 1

        await page.press("p")
        await page.wait_for("document.getElementById('status').dataset.status === 'paused'")
        assert engine.state.windows[WINDOW].status == "paused"
        await page.click("button[data-action=resume]")
        await page.wait_for("document.getElementById('status').dataset.status === 'open'")
        await page.press("o")
        await page.wait_for("document.getElementById('status').dataset.status === 'closed'")
        assert engine.state.windows[WINDOW].status == "closed"
        assert engine.state.windows[WINDOW].clerk is None
        await page.wait_for("!document.getElementById('clerk-id').disabled")  # a new sign-in for the next opening

        async with client(server, "clerk", window=WINDOW):  # another console takes the window over
            await page.wait_for("document.getElementById('message').textContent.includes('Signed in elsewhere')")
        assert await page.evaluate("document.querySelector('[data-action=call_next]').disabled")
        assert page.errors == []
    server.shutdown()
