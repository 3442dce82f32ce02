"""The TV board and the LED strip in headless Chromium: a clerk calls through the client
library and both pages show the number (read from their DOM), again after the server
restarted under the open pages (same store, same port). The board's screenshot is kept as
``tests/artifacts/board.png``."""

from __future__ import annotations

import json

import trio

from browser_support import ARTIFACTS, clerk_calls_next, needs_chromium, open_browser, page_url, serve_hall
from server_support import TOKENS, client, guard

pytestmark = needs_chromium

WINDOW = 7  # a window of the demo hall's "social" zone, serving SOC and MED


def current_call(number: str, window: int) -> str:
    """JS: the board's newest call is *number* at *window*."""
    return (f"(() => {{ const c = document.querySelector('#calls .call.current'); "
            f"return !!c && c.dataset.number === {json.dumps(number)} && c.dataset.window === '{window}'; }})()")


def led_shows(number: str) -> str:
    return f"document.querySelector('.line1 .number')?.textContent === {json.dumps(number)}"


async def call_next(server, window: int) -> str:
    """A kiosk takes a SOC number and the clerk of *window* calls next: the number called."""
    async with client(server, "kiosk") as kiosk:
        await kiosk.request("take_number", service="SOC")
    return await clerk_calls_next(server, window)


@guard(180)
async def test_board_and_led_show_the_call_and_follow_a_server_restart(nursery, demo_hall, tmp_path):
    store = tmp_path / "hall.db"
    server, stopped = await serve_hall(nursery, demo_hall, store)
    async with open_browser(tmp_path) as browser:
        board = await browser.new_page(page_url(server, "board", zone="social", token=TOKENS["display"]),
                                       width=1920, height=1080)
        led = await browser.new_page(page_url(server, "led", window=WINDOW, token=TOKENS["display"]))
        for page in (board, led):
            await page.wait_for("document.body.dataset.connects === '1'")

        first = await call_next(server, WINDOW)
        await board.wait_for(current_call(first, WINDOW))
        await led.wait_for(led_shows(first))
        assert f"请{first}号到7号窗口" in await led.evaluate("document.getElementById('scroll').dataset.text")
        assert "Window 7" in await board.text("#calls .call.current")
        assert await board.evaluate("document.querySelector('#calls .call.current').classList.contains('blink')")
        assert "演示政务服务大厅" in await board.text("#hall-name")
        assert "社会事务区" in await board.text("#place")  # the zone's name from /api/hall
        # waiting per service: the board's summaries, then a queue_update when a citizen takes a number
        civil = "document.querySelector('#services tr[data-code=CIVIL] .waiting')?.textContent"
        await board.wait_for(f"{civil} === '0人'")
        async with client(server, "kiosk") as kiosk:
            await kiosk.request("take_number", service="CIVIL")  # window 10 of the zone serves it
        await board.wait_for(f"{civil} === '1人'")
        await board.wait_for("/\\d\\d:\\d\\d:\\d\\d/.test(document.getElementById('clock').textContent)")
        print("board clock:", await board.text("#clock"))

        server.shutdown()  # the pages stay open while the server restarts on the same port
        await stopped.wait()
        for page in (board, led):
            await page.wait_for("document.getElementById('conn').dataset.state !== 'connected'")
        server, stopped = await serve_hall(nursery, demo_hall, store, port=server.port)
        for page in (board, led):
            await page.wait_for("document.body.dataset.connects === '2'")
        await board.wait_for(current_call(first, WINDOW))  # re-synced from the fresh board
        await led.wait_for(led_shows(first))

        second = await call_next(server, WINDOW)
        assert second != first
        await board.wait_for(current_call(second, WINDOW))
        await led.wait_for(led_shows(second))
        assert await board.evaluate(
            f"document.querySelectorAll('#calls .call')[1]?.dataset.number === {json.dumps(first)}")
        await led.screenshot(ARTIFACTS / "led.png")
        shot = await board.screenshot(ARTIFACTS / "board.png")
        print(f"TV board screenshot: {shot}")
        assert shot.read_bytes().startswith(b"\x89PNG")
        assert board.errors == [] and led.errors == []
    server.shutdown()
