"""Daily caps and the capacity-aware cutoff over real connections: the WebSocket's and the HTTP
API's typed errors (``daily_cap_reached``, ``past_closing``) and the ``closing_warning`` of a
ticket issued with a warning (docs/protocol.md, "Errors" and ``take_number``).

The demo hall with ``[issuing]``: SOC capped at one number a day, and a cutoff margin of a
whole day, so every new ticket's call is predicted "past closing" (the clock is Monday 09:30).
"""

from __future__ import annotations

import pytest
import trio

from callsys.client import RequestFailed
from callsys.hall import Hall
from api_support import api, api_hall, error_of
from server_support import client, guard, start_server

ISSUING = {"daily_cap": {"SOC": 1}, "cutoff_margin_min": 24 * 60}


def issuing_hall(cutoff: str) -> Hall:
    return api_hall(issuing={**ISSUING, "cutoff": cutoff})


@pytest.fixture(params=["warn", "refuse"])
async def issuing_server(request, nursery: trio.Nursery, tmp_path):
    srv = await start_server(nursery, issuing_hall(request.param), tmp_path / "hall.db")
    yield request.param, srv
    srv.shutdown()


@guard()
async def test_websocket_take_number_past_the_cap_and_past_closing(issuing_server):
    cutoff, server = issuing_server
    async with client(server, "kiosk") as kiosk:
        if cutoff == "warn":
            first = await kiosk.request("take_number", service="SOC")
            warning = first["closing_warning"]
            assert warning["predicted_wait_s"] == first["estimated_wait_s"] and warning["closing"] > 0
            with pytest.raises(RequestFailed) as info:
                await kiosk.request("take_number", service="SOC")
            assert info.value.code == "daily_cap_reached"
            assert info.value.details == {"service": "SOC", "cap": 1}
        else:
            with pytest.raises(RequestFailed) as info:
                await kiosk.request("take_number", service="SOC")
            assert info.value.code == "past_closing"
            assert set(info.value.details) == {"service", "predicted_wait_s", "closing", "margin_s"}
            assert info.value.details["margin_s"] == 24 * 3600.0 and "past closing" in info.value.message
    assert server.engine.state.issued["SOC"] == (cutoff == "warn")


@guard()
async def test_api_post_tickets_past_the_cap_and_past_closing(issuing_server):
    cutoff, server = issuing_server
    async with api(server) as http:
        if cutoff == "warn":
            taken = await http.post("/tickets", json={"service": "SOC"})
            assert taken.status_code == 201
            body = taken.json()
            assert body["closing_warning"]["predicted_wait_s"] == body["estimated_wait_s"]
            error = error_of(await http.post("/tickets", json={"service": "SOC"}), 409, "daily_cap_reached")
            assert error["details"] == {"service": "SOC", "cap": 1} and "all given out" in error["message"]
            looked_up = (await http.get(f"/tickets/{body['ticket']}")).json()
            assert looked_up["closing_warning"] is None  # the warning belongs to the take-number answer
        else:
            error = error_of(await http.post("/tickets", json={"service": "SOC"}), 409, "past_closing")
            assert error["details"]["service"] == "SOC" and error["details"]["predicted_wait_s"] >= 0


@guard()
async def test_no_warning_without_a_cutoff(nursery, tmp_path):
    server = await start_server(nursery, api_hall(), tmp_path / "hall.db")
    try:
        async with client(server, "kiosk") as kiosk:
            assert (await kiosk.request("take_number", service="SOC"))["closing_warning"] is None
    finally:
        server.shutdown()
