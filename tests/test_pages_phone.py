"""The phone page in headless Chromium, on a phone-sized screen, following one ticket as the
queue moves: the people ahead fall as other tickets are called, the "your turn is near"
notice appears at three, the server restarts while the phone sleeps (the page frozen, as a
phone's browser freezes a background tab) and the ticket is called meanwhile — once awake the
page reconnects and shows the window, big. The screenshot is kept as ``tests/artifacts/phone.png``."""

from __future__ import annotations

from pathlib import Path

import trio

from browser_support import ARTIFACTS, clerk_calls_next, needs_chromium, open_browser, page_url, serve_hall
from callsys import qrcodes
from callsys.identity import derive_key
from callsys.hall import Hall
from callsys.server import CallsysServer
from server_support import SECRET, TOKENS, client, guard

pytestmark = needs_chromium

WINDOW = 7  # a window of the demo hall's "social" zone, serving SOC and MED
PHONE_REFRESH_S = 0.05  # the phones' place refresh: frequent, the test waits for what it shows, not for time


async def serve(nursery: trio.Nursery, hall: Hall, store: Path, port: int = 0) -> tuple[CallsysServer, trio.Event]:
    """A server with the phones refreshed often, restartable on the same *port* (see serve_hall)."""
    return await serve_hall(nursery, hall, store, port, phone_refresh_s=PHONE_REFRESH_S)


async def call_next(server: CallsysServer) -> str:
    """The clerk of WINDOW finishes its current ticket (if any) and calls the next: the number called."""
    return await clerk_calls_next(server, WINDOW)


def shows(ahead: int) -> str:
    return f"document.body.dataset.status === 'waiting' && document.body.dataset.ahead === '{ahead}'"


NEAR_SHOWN = "!document.getElementById('near').hidden"


@guard(180)
async def test_phone_follows_its_ticket_through_a_sleep_and_a_restart_until_called(nursery, demo_hall, tmp_path):
    store = tmp_path / "hall.db"
    server, stopped = await serve(nursery, demo_hall, store)
    async with client(server, "kiosk") as kiosk:
        before = [(await kiosk.request("take_number", service="SOC"))["number"] for _ in range(5)]
        mine = await kiosk.request("take_number", service="SOC")
    assert mine["ahead"] == 5
    async with open_browser(tmp_path) as browser:
        phone = await browser.new_page(page_url(server, "phone", ticket=mine["ticket"], secret=mine["secret"]),
                                       width=390, height=844)
        await phone.wait_for("document.body.dataset.connects === '1'")
        await phone.wait_for(shows(5))
        assert await phone.text("#number") == mine["number"]
        assert "等候中" in await phone.text("#status") and "Waiting" in await phone.text("#status")
        assert await phone.evaluate(NEAR_SHOWN) is False
        assert await phone.evaluate("document.getElementById('called').hidden") is True
        assert "演示政务服务大厅" in await phone.text("#hall-name")

        assert await call_next(server) == before[0]  # the window opens: an estimate appears
        await phone.wait_for(shows(4))
        await phone.wait_for("/约 \\d+ 分钟/.test(document.getElementById('wait').textContent)")
        assert "about" in await phone.text("#wait")
        assert await phone.evaluate(NEAR_SHOWN) is False
        assert await call_next(server) == before[1]
        await phone.wait_for(shows(3))
        assert await phone.evaluate(NEAR_SHOWN) is True  # three ahead: the notice
        assert "快到您了" in await phone.text("#near")
        await phone.screenshot(ARTIFACTS / "phone-near.png")

        # The phone sleeps: the server restarts and calls the ticket before the page runs again.
        server.shutdown()
        await stopped.wait()
        await phone.wait_for("document.getElementById('conn').dataset.state !== 'connected'")
        await phone.send("Page.setWebLifecycleState", state="frozen")
        server, stopped = await serve(nursery, demo_hall, store, port=server.port)
        for number in before[2:]:
            assert await call_next(server) == number
        assert await call_next(server) == mine["number"]
        assert mine["ticket"] not in server.hub.phones  # the page slept through the call
        await phone.send("Page.setWebLifecycleState", state="active")  # awake: it reconnects at once

        await phone.wait_for("document.body.dataset.connects === '2'")
        await phone.wait_for("document.body.dataset.status === 'called'")
        assert await phone.evaluate("document.getElementById('called').hidden") is False
        assert await phone.evaluate("document.getElementById('window').dataset.window") == str(WINDOW)
        assert "7 号窗口" in await phone.text("#window") and "Window 7" in await phone.text("#window")
        assert await phone.evaluate(NEAR_SHOWN) is False and await phone.evaluate(
            "document.getElementById('facts').hidden") is True
        assert await phone.evaluate(  # the window's line is the biggest text of the page
            "parseFloat(getComputedStyle(document.querySelector('#window')).fontSize) >= "
            "parseFloat(getComputedStyle(document.querySelector('#number')).fontSize) * 0.7")
        shot = await phone.screenshot(ARTIFACTS / "phone.png")
        print(f"phone screenshot: {shot}")

        async with client(server, "clerk", window=WINDOW) as clerk:
            await clerk.request("start")
        await phone.wait_for("document.body.dataset.status === 'serving'")
        assert phone.errors == []
    server.shutdown()


@guard(120)
async def test_phone_link_with_a_wrong_secret_says_so_in_plain_words(nursery, demo_hall, tmp_path):
    server, _ = await serve(nursery, demo_hall, tmp_path / "hall.db")
    async with client(server, "kiosk") as kiosk:
        mine = await kiosk.request("take_number", service="SOC")
    async with open_browser(tmp_path) as browser:
        phone = await browser.new_page(page_url(server, "phone", ticket=mine["ticket"], secret="0" * 32),
                                       width=390, height=844)
        await phone.wait_for("document.body.dataset.refused === '1'")
        assert "链接无效" in await phone.text("#message") and "not valid" in await phone.text("#message")
        assert await phone.evaluate("document.getElementById('card').hidden") is True
        incomplete = await browser.new_page(page_url(server, "phone", ticket=mine["ticket"]), width=390, height=844)
        await incomplete.wait_for("document.body.dataset.refused === '1'")
        assert "incomplete" in await incomplete.text("#message")
    server.shutdown()


@guard(120)
async def test_entrance_board_shows_the_door_code_and_the_kiosk_the_ticket_qr(nursery, demo_hall, tmp_path):
    server, _ = await serve(nursery, demo_hall, tmp_path / "hall.db")
    async with open_browser(tmp_path) as browser:
        board = await browser.new_page(page_url(server, "board", zone="social", door="main", token=TOKENS["display"]),
                                       width=1920, height=1080)
        await board.wait_for("!document.getElementById('door').hidden")
        await board.wait_for("document.getElementById('door-qr').naturalWidth > 0")  # the SVG loaded and drew
        code = await board.evaluate("document.getElementById('door').dataset.code")
        now = server.clock.now()
        claim = qrcodes.verify(derive_key(SECRET, "qr"), "demo", code, now, {qrcodes.DOOR})
        assert claim.ident.startswith("main:")
        next_s = float(await board.evaluate("document.getElementById('door').dataset.next"))
        assert 1 <= next_s <= 30.5  # again at the rotation, or in 30 s at the latest
        assert await board.evaluate(  # the waiting table makes room for it
            "document.querySelector('.services').getBoundingClientRect().bottom <= "
            "document.getElementById('door').getBoundingClientRect().top")
        await board.screenshot(ARTIFACTS / "board-door.png")
        plain = await browser.new_page(page_url(server, "board", zone="social", token=TOKENS["display"]),
                                       width=1920, height=1080)
        await plain.wait_for("document.body.dataset.connects === '1'")
        assert await plain.evaluate("document.getElementById('door').hidden") is True  # no &door: no code

        kiosk = await browser.new_page(page_url(server, "kiosk", token=TOKENS["kiosk"]))
        await kiosk.wait_for("document.querySelectorAll('.tile').length === 5")
        await kiosk.click(".tile[data-code=SOC]")
        await kiosk.wait_for("document.body.classList.contains('show-ticket')")
        await kiosk.wait_for("document.getElementById('ticket-qr-img').naturalWidth > 0")
        src = await kiosk.evaluate("document.getElementById('ticket-qr-img').src")
        assert "/qr/CS1.t.demo." in src
        await kiosk.screenshot(ARTIFACTS / "kiosk-ticket-qr.png")
        assert board.errors == [] and plain.errors == [] and kiosk.errors == []
    server.shutdown()


@guard(120)
async def test_take_page_with_the_door_code_takes_a_number_and_refuses_an_expired_code(nursery, demo_hall, tmp_path):
    server, _ = await serve(nursery, demo_hall, tmp_path / "hall.db")
    key, rotate_s = derive_key(SECRET, "qr"), demo_hall.qr.door_rotate_s
    code = qrcodes.door_code(key, "demo", "main", server.clock.now(), rotate_s)
    async with open_browser(tmp_path) as browser:
        take = await browser.new_page(page_url(server, "take", door=code), width=390, height=844)
        await take.wait_for("document.querySelectorAll('#services button').length === 5")
        assert await take.evaluate("document.getElementById('take-button').disabled") is True  # choose first
        await take.click("#services button[data-code=SOC]")
        await take.screenshot(ARTIFACTS / "take.png")
        await take.click("#take-button")
        await take.wait_for("location.pathname === '/phone' && document.body?.dataset.status === 'waiting'")
        assert "q=CS1.t.demo." in await take.evaluate("location.search")
        number = await take.text("#number")
        (ticket,) = [t for t in server.engine.state.tickets.values() if t.number == number]
        assert ticket.channel == "qr" and ticket.service == "SOC"
        await take.wait_for("!document.getElementById('move').hidden")  # its QR, to move to another phone
        await take.wait_for("document.getElementById('qr').naturalWidth > 0")

        old = qrcodes.door_code(key, "demo", "main", server.clock.now() - 3 * rotate_s, rotate_s)
        late = await browser.new_page(page_url(server, "take", door=old), width=390, height=844)
        await late.wait_for("document.querySelectorAll('#services button').length === 5")
        await late.click("#services button[data-code=SOC]")
        await late.click("#take-button")
        await late.wait_for("document.body.dataset.refused === '1'")
        message = await late.text("#message")
        assert "过期" in message and "scan the code at the entrance again" in message
        assert len(server.engine.state.tickets) == 1  # nothing issued
        assert take.errors == [] and late.errors == []
    server.shutdown()


@guard(120)
async def test_phone_page_opens_from_the_ticket_qr_and_refuses_a_forged_one(nursery, demo_hall, tmp_path):
    server, _ = await serve(nursery, demo_hall, tmp_path / "hall.db")
    async with client(server, "kiosk") as kiosk:
        mine = await kiosk.request("take_number", service="SOC")
    async with open_browser(tmp_path) as browser:
        phone = await browser.new_page(page_url(server, "phone", q=mine["qr"]), width=390, height=844)
        await phone.wait_for(shows(0))
        assert await phone.text("#number") == mine["number"]
        await phone.wait_for("document.getElementById('qr').naturalWidth > 0")
        forged = await browser.new_page(page_url(server, "phone", q=mine["qr"][:-2] + "xx"), width=390, height=844)
        await forged.wait_for("document.body.dataset.refused === '1'")
        assert "not valid" in await forged.text("#message")
        assert phone.errors == []
    server.shutdown()
