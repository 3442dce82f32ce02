"""The kiosk page driven through headless Chromium: services grouped and bilingual, a touch on
one takes a number (ticket on screen, the engine has it), back to the start afterwards."""

from __future__ import annotations

from browser_support import ARTIFACTS, needs_chromium, open_browser, page_url, serve_hall
from server_support import TOKENS, guard

pytestmark = needs_chromium


@guard(120)
async def test_kiosk_takes_a_number(nursery, demo_hall, tmp_path):
    server, _ = await serve_hall(nursery, demo_hall, tmp_path / "hall.db")
    engine = server.engine
    async with open_browser(tmp_path) as browser:
        page = await browser.new_page(page_url(server, "kiosk"))
        await page.wait_for("!!document.querySelector('.token-form')")  # no token given or remembered: asks
        await page.submit(".token-form", token=TOKENS["kiosk"])
        await page.wait_for("document.querySelectorAll('.tile').length === 5")
        assert "token=demo-kiosk" in await page.evaluate("location.search")
        assert await page.evaluate("localStorage.getItem('callsys.token.kiosk')") == TOKENS["kiosk"]
        await page.screenshot(ARTIFACTS / "kiosk.png")
        assert await page.evaluate("document.querySelectorAll('.group').length") == 3
        assert "社会事务类" in await page.text(".group:last-child h2")  # headings from /api/hall's groups  # by the services' groups
        soc = await page.text(".tile[data-code=SOC]")
        assert "社保业务" in soc and "Social security" in soc

        await page.click(".tile[data-code=SOC]")
        await page.wait_for("document.body.classList.contains('show-ticket')")
        number = await page.text("#ticket-number")
        assert await page.text("#ticket-ahead") == "0"
        # no clerk has opened a window yet, and still a wait: from the hall's configured windows
        minutes = max(1, round(engine.estimate_at("SOC", 0) / 60))
        assert await page.text("#ticket-wait") == f"约{minutes}分钟 · ~{minutes} min"
        assert f"~{minutes} min" in soc  # the tile showed the same wait for a new ticket before it was taken
        (ticket,) = engine.state.tickets.values()
        assert (ticket.number, ticket.service, ticket.status, ticket.channel) == (number, "SOC", "waiting", "kiosk")
        assert number.startswith("C")
        await page.screenshot(ARTIFACTS / "kiosk-ticket.png")

        await page.click("#ticket-done")
        await page.wait_for("!document.body.classList.contains('show-ticket') && "
                            "document.querySelector('.tile[data-code=SOC] .queue').textContent.includes('1 waiting')")
        await page.click(".tile[data-code=SOC]")
        await page.wait_for("document.body.classList.contains('show-ticket') && "
                            "document.getElementById('ticket-ahead').textContent === '1'")
        assert len(engine.state.tickets) == 2  # one ticket per touch
        assert page.errors == []
    server.shutdown()


@guard(120)
async def test_kiosk_touch_while_the_server_restarts_gives_one_ticket(nursery, demo_hall, tmp_path):
    """A touch while the server is down waits; the take_number goes out with its idempotency
    key once the page has reconnected to the restarted server: one ticket, shown."""
    store = tmp_path / "hall.db"
    server, stopped = await serve_hall(nursery, demo_hall, store)
    async with open_browser(tmp_path) as browser:
        page = await browser.new_page(page_url(server, "kiosk", token=TOKENS["kiosk"]))
        await page.wait_for("document.querySelectorAll('.tile').length === 5")
        server.shutdown()
        await stopped.wait()
        await page.wait_for("document.getElementById('conn').dataset.state !== 'connected'")
        await page.click(".tile[data-code=BIZ]")
        assert await page.evaluate("document.querySelector('.tile[data-code=BIZ]').disabled")  # taking: no double touch
        server, _ = await serve_hall(nursery, demo_hall, store, port=server.port)
        await page.wait_for("document.body.classList.contains('show-ticket')")
        (ticket,) = server.engine.state.tickets.values()
        assert (await page.text("#ticket-number"), ticket.service) == (ticket.number, "BIZ")
        assert len(server.engine.state.keys) == 1  # the command carried its key
    server.shutdown()
