"""The pages under a network router's ``/halls/<hall_id>/`` prefix, in headless Chromium: the
page's WebSocket, ``api/hall``, the QR image and the index links all stay under the prefix."""

from __future__ import annotations

import trio

from browser_support import needs_chromium, open_browser
from redis_support import redis_server, redis_url  # noqa: F401  (fixtures)
from server_support import TOKENS, guard
from test_network import settled, small_network, start_node

pytestmark = needs_chromium


@guard(180)
async def test_a_kiosk_page_through_the_router_takes_a_number_of_its_hall(redis_url, tmp_path):
    network = small_network(communities=1)
    hall_id = "baoan-xinan-c01"
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, network, redis_url, "solo")
        await node.wait_for(settled({"solo"}))
        base = f"http://127.0.0.1:{node.port}/halls/{hall_id}/"
        async with open_browser(tmp_path) as browser:
            index = await browser.new_page(base)
            await index.wait_for("document.readyState === 'complete'")
            assert await index.evaluate("document.querySelector('a[href=\"kiosk\"]').href") == base + "kiosk"
            assert await index.evaluate("document.querySelector('form').action") == base + "led"

            page = await browser.new_page(f"{base}kiosk?token={TOKENS['kiosk']}")
            await page.wait_for("document.querySelectorAll('.tile').length === 2")  # the community's 2 services
            assert await page.evaluate("Callsys.wsUrl()") == f"ws://127.0.0.1:{node.port}/halls/{hall_id}/ws"
            await page.click(".tile[data-code=SOC]")
            await page.wait_for("document.body.classList.contains('show-ticket')")
            assert await page.text("#ticket-number") == "A001"
            server = node.runs[hall_id].server
            (ticket,) = server.engine.state.tickets.values()  # in this hall, not another
            assert ticket.number == "A001" and ticket.service == "SOC"
            qr = await page.evaluate("document.getElementById('ticket-qr-img').getAttribute('src')")
            assert qr.startswith(f"/halls/{hall_id}/qr/")
            await page.wait_for("document.getElementById('ticket-qr-img').naturalWidth > 0")  # the image loaded
            assert page.errors == []
        node.shutdown()
