"""Issue 9's newcomer path, end to end over the real parts: a booking through the integration
API, the check-in with the booking's signed QR code, the phone page (headless Chromium) opened
from the ticket's ``phone_url`` following the ticket until a clerk calls it — and every refusal
on the way explains itself (a second check-in with the same code: ``already_used``)."""

from __future__ import annotations

from datetime import datetime

import trio

from api_support import KEY, api, api_hall, error_of
from browser_support import needs_chromium, open_browser
from conftest import SHANGHAI
from server_support import client, guard, start_server

pytestmark = needs_chromium

SLOT = datetime(2026, 11, 23, 9, 30, tzinfo=SHANGHAI)  # the test day's 09:30 slot (the clock starts at 09:00)
WINDOW = 7  # serves SOC in the demo hall


@guard(180)
async def test_book_check_in_with_the_qr_and_follow_the_ticket_on_the_phone_until_called(nursery, tmp_path):
    server = await start_server(nursery, api_hall(), tmp_path / "hall.db", phone_refresh_s=0.05)
    async with api(server, KEY) as http, client(server, "kiosk") as kiosk:
        walk_ins = [await kiosk.request("take_number", service="SOC") for _ in range(2)]
        booked = await http.post("/appointments", json={"service": "SOC", "slot_start": SLOT.isoformat()},
                                 headers={"idempotency-key": "newcomer-1"})
        assert booked.status_code == 201, booked.text
        appointment = booked.json()
        assert (appointment["status"], appointment["number"]) == ("booked", None)
        again = await http.post("/appointments", json={"service": "SOC", "slot_start": SLOT.isoformat()},
                                headers={"idempotency-key": "newcomer-1"})
        assert again.json()["ticket"] == appointment["ticket"]  # a retried request books once

        image = await http.get(f"http://127.0.0.1:{server.port}{appointment['qr_svg']}")
        assert image.status_code == 200 and image.headers["content-type"].startswith("image/svg+xml")

        checked = await http.post("/check-in", json={"qr": appointment["qr"]})
        assert checked.status_code in (200, 201), checked.text
        ticket = checked.json()
        assert ticket["ticket"] == appointment["ticket"] and ticket["status"] == "waiting" and ticket["number"]
        error = error_of(await http.post("/check-in", json={"qr": appointment["qr"]}), 400, "qr_refused")
        assert error["details"]["reason"] == "already_used"

        async with open_browser(tmp_path) as browser:
            phone = await browser.new_page(f"http://127.0.0.1:{server.port}{ticket['phone_url']}",
                                           width=390, height=844)
            await phone.wait_for("document.body.dataset.status === 'waiting'")
            assert await phone.text("#number") == ticket["number"]
            async with client(server, "clerk", window=WINDOW) as clerk:
                await clerk.request("open_window")
                called = []
                while ticket["number"] not in called:
                    result = await clerk.request("call_next")
                    called += [e["number"] for e in result["events"] if e["kind"] == "ticket_called"]
                    if ticket["number"] not in called:
                        await clerk.request("finish")
            await phone.wait_for("document.body.dataset.status === 'called'")
            assert str(WINDOW) in await phone.text("#called")
            status = (await http.get(f"/tickets/{ticket['ticket']}")).json()
            assert (status["status"], status["window"]) == ("called", WINDOW)
    assert len(walk_ins) == 2
