"""The integration API (/api/v1) against a running server over real HTTP (httpx on trio, keep-alive)."""

from __future__ import annotations

import re

import pytest
import trio

from callsys import commands as cmd, qrcodes
from callsys.identity import derive_key
from api_support import (FAST_KEY, KEY, OTHER_KEY, SLOT_1000, SLOW_KEY, api, api_server,  # noqa: F401
                         error_of, hall_with_clients)
from server_support import SECRET, START, guard, start_server, state_of

# ---------------------------------------------------------------------- the document and the docs page


@guard()
async def test_openapi_document_describes_every_operation(api_server):
    async with api(api_server, key=None) as http:
        doc = (await http.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    ops = {(method.upper(), path) for path, item in doc["paths"].items() for method in item}
    assert {("GET", "/services"), ("GET", "/services/{code}/slots"), ("GET", "/hall"),
            ("POST", "/appointments"), ("DELETE", "/appointments/{ticket}"), ("POST", "/tickets"),
            ("GET", "/tickets/{ticket}")} <= ops
    assert doc["components"]["securitySchemes"]["APIKeyHeader"] == {"type": "apiKey", "in": "header",
                                                                    "name": "X-API-Key",
                                                                    "description": doc["components"][
                                                                        "securitySchemes"]["APIKeyHeader"][
                                                                        "description"]}


@guard()
async def test_docs_page_works_offline_its_assets_come_from_the_server(api_server):
    async with api(api_server, key=None) as http:
        page = await http.get("/docs")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text) + re.findall(r"url: *'([^']+)'", page.text)
        assert urls and not [u for u in urls if "://" in u], urls  # nothing from another host
        for url in urls:
            asset = await http.get(f"http://127.0.0.1:{api_server.port}{url}")
            assert asset.status_code == 200, url
    assert any(u.endswith("swagger-ui-bundle.js") for u in urls) and "/api/v1/openapi.json" in urls


# ---------------------------------------------------------------------- auth and errors


@guard()
async def test_no_key_and_a_wrong_key_are_401_and_change_nothing(api_server):
    before = state_of(api_server)
    async with api(api_server, key=None) as http:
        error_of(await http.get("/services"), 401, "unauthorized")
        error_of(await http.post("/appointments", json={"service": "SOC", "slot_start": SLOT_1000}),
                 401, "unauthorized")
    async with api(api_server, key="not-a-key-of-this-hall") as http:
        assert "unknown" in error_of(await http.post("/tickets", json={"service": "SOC"}),
                                     401, "unauthorized")["message"]
    assert state_of(api_server) == before


@guard()
async def test_another_clients_ticket_is_not_found_but_its_secret_opens_it(api_server):
    async with api(api_server) as mine, api(api_server, OTHER_KEY) as other:
        ticket = (await mine.post("/appointments", json={"service": "SOC", "slot_start": SLOT_1000})).json()
        tid = ticket["ticket"]
        error_of(await other.get(f"/tickets/{tid}"), 404, "unknown_ticket")
        error_of(await other.delete(f"/appointments/{tid}"), 404, "unknown_ticket")
        assert (await mine.get(f"/tickets/{tid}")).json()["status"] == "booked"
    async with api(api_server, key=None) as phone:
        assert (await phone.get(f"/tickets/{tid}", params={"secret": ticket["secret"]})).json() == ticket
        error_of(await phone.get(f"/tickets/{tid}", params={"secret": "0" * 32}), 404, "unknown_ticket")
        error_of(await phone.get(f"/tickets/{tid}"), 401, "unauthorized")
    assert api_server.engine.state.tickets[tid].status == "booked"


@guard()
async def test_unknown_path_and_method_get_json_errors(api_server):
    async with api(api_server) as http:
        error_of(await http.get("/nothing-here"), 404, "not_found")
        error_of(await http.put("/services"), 405, "method_not_allowed")
        error_of(await http.get("/services/A%0AB/slots"), 404, "not_found")  # the mount's pattern stops at a newline
    async with api(api_server) as http:
        outside = await http.get(f"http://127.0.0.1:{api_server.port}/no-page")
        assert (outside.status_code, outside.text) == (404, "Not Found")  # pages keep Starlette's plain 404


# ---------------------------------------------------------------------- rate limits


@guard()
async def test_a_client_over_its_rate_gets_429_with_retry_after_and_nothing_runs(api_server):
    async with api(api_server, SLOW_KEY) as http:
        assert (await http.post("/tickets", json={"service": "SOC"})).status_code == 201
        assert (await http.get("/services")).status_code == 200  # the burst of 2 is spent
        before = state_of(api_server)
        refused = await http.post("/tickets", json={"service": "SOC"})
        error = error_of(refused, 429, "rate_limited")
        assert int(refused.headers["retry-after"]) >= 1 and error["details"]["burst"] == 2
        assert state_of(api_server) == before
    async with api(api_server, KEY) as http:  # another client has its own bucket
        assert (await http.post("/tickets", json={"service": "SOC"})).status_code == 201


# ---------------------------------------------------------------------- reading


@guard()
async def test_services_and_hall_status(api_server, hall_with_clients):
    async with api(api_server) as http:
        services = (await http.get("/services")).json()
        hall = (await http.get("/hall")).json()
    assert [s["code"] for s in services] == [s.code for s in hall_with_clients.services]
    soc = services[0]
    assert set(soc) == {"code", "name", "waiting", "estimated_wait_s", "open_windows", "bookable"}
    assert soc["name"]["zh"] and soc["waiting"] == 0 and soc["bookable"] is True
    assert hall["hall"] == "demo" and hall["services"] == services
    assert hall["time"].startswith("2026-11-23T09:30") and hall["time"].endswith("+08:00")


@guard()
async def test_slots_list_the_days_grid_with_the_places_left(api_server, hall_with_clients):
    async with api(api_server) as http:
        slots = (await http.get("/services/SOC/slots", params={"date": "2026-11-23"})).json()
        assert slots == (await http.get("/services/SOC/slots")).json()  # today by default
        first = slots[0]
        assert first["slot_start"] == SLOT_1000 - 1800  # 09:30-10:00 is not over at 09:30
        assert first == {"slot_start": first["slot_start"], "slot_end": first["slot_start"] + 1800,
                         "capacity": 4, "remaining": 4}
        # 09:30..12:00 and 14:00..20:00 in 30-minute slots
        assert len(slots) == 5 + 12
        await http.post("/appointments", json={"service": "SOC", "slot_start": SLOT_1000})
        after = {s["slot_start"]: s["remaining"] for s in (await http.get("/services/SOC/slots")).json()}
        assert after[SLOT_1000] == 3
        assert len((await http.get("/services/SOC/slots", params={"date": "2026-11-29"})).json()) == 6  # Sunday
        error_of(await http.get("/services/NOPE/slots"), 404, "unknown_service")
        error_of(await http.get("/services/SOC/slots", params={"date": "23.11.2026"}), 422, "invalid_request")


# ---------------------------------------------------------------------- booking


@guard()
async def test_book_answers_201_with_the_ticket_once_durable(api_server):
    async with api(api_server) as http:
        reply = await http.post("/appointments", json={"service": "SOC", "slot_start": "2026-11-23T10:00:00+08:00"})
    assert reply.status_code == 201
    ticket = reply.json()
    assert ticket["status"] == "booked" and ticket["channel"] == "appointment" and ticket["number"] is None
    assert ticket["slot_start"] == SLOT_1000 and ticket["slot_end"] == SLOT_1000 + 1800
    assert set(ticket) == {"ticket", "number", "service", "channel", "status", "ahead", "estimated_wait_s",
                           "window", "slot_start", "slot_end", "green", "qr", "qr_svg", "phone_url", "secret",
                           "closing_warning"}
    assert api_server.journal.durable_seq >= 1  # answered only once in the store
    assert api_server.engine.state.bookings[("SOC", SLOT_1000)] == 1


@guard()
async def test_engine_refusals_keep_their_code_with_a_fitting_status(api_server):
    before = state_of(api_server)
    async with api(api_server) as http:
        error_of(await http.post("/appointments", json={"service": "NOPE", "slot_start": SLOT_1000}),
                 404, "unknown_service")
        error_of(await http.post("/appointments", json={"service": "SOC", "slot_start": SLOT_1000 + 60}),
                 400, "invalid_slot")
        error_of(await http.post("/appointments", json={"service": "SOC", "slot_start": SLOT_1000 - 86400}),
                 400, "invalid_slot")
        error_of(await http.get("/tickets/999"), 404, "unknown_ticket")
    assert state_of(api_server) == before


@guard()
async def test_invalid_requests_are_422_naming_the_field_and_change_nothing(api_server):
    before = state_of(api_server)
    cases = [
        ({"service": "SOC"}, "body.slot_start"),
        ({"service": "SOC", "slot_start": "tomorrow"}, "body.slot_start"),
        ({"service": "SOC", "slot_start": "2026-11-23T10:00:00"}, "body.slot_start"),  # no offset
        ({"service": "SOC", "slot_start": -5}, "body.slot_start"),
        ({"service": "SOC", "slot_start": SLOT_1000, "slot_strat": 1}, "body.slot_strat"),
        ({"service": "", "slot_start": SLOT_1000}, "body.service"),
        ({"service": "SOC", "slot_start": SLOT_1000, "resident_id": "123"}, "body.resident_id"),
    ]
    async with api(api_server) as http:
        for body, field in cases:
            error = error_of(await http.post("/appointments", json=body), 422, "invalid_request")
            assert error["details"]["field"].startswith(field), (body, error)
            assert error["details"]["reason"]
        error = error_of(await http.post("/appointments", content=b'{"service": "SOC", "slot_start": NaN}',
                                         headers={"content-type": "application/json"}), 422, "invalid_request")
        error_of(await http.post("/appointments", content=b"{not json", headers={"content-type": "application/json"}),
                 422, "invalid_request")
        error_of(await http.get("/tickets/0"), 422, "invalid_request")
        error_of(await http.get("/tickets/abc"), 422, "invalid_request")
        error_of(await http.post("/tickets", json={"service": "SOC"}, headers={"idempotency-key": "x" * 300}),
                 422, "invalid_request")
    assert state_of(api_server) == before


@guard()
async def test_a_retry_with_the_same_idempotency_key_books_once(api_server):
    body = {"service": "SOC", "slot_start": SLOT_1000}
    async with api(api_server) as http, api(api_server, OTHER_KEY) as other:
        first = await http.post("/appointments", json=body, headers={"idempotency-key": "order-17"})
        again = await http.post("/appointments", json=body, headers={"idempotency-key": "order-17"})
        assert first.status_code == again.status_code == 201 and first.json() == again.json()
        assert api_server.engine.state.bookings[("SOC", SLOT_1000)] == 1
        theirs = await other.post("/appointments", json=body, headers={"idempotency-key": "order-17"})
        assert theirs.status_code == 201 and theirs.json()["ticket"] != first.json()["ticket"]  # per client
        error_of(await http.post("/appointments", json={**body, "green": True}, headers={"idempotency-key": "order-17"}),
                 409, "key_reused")
    assert api_server.engine.state.bookings[("SOC", SLOT_1000)] == 2


@guard()
async def test_concurrent_bookings_of_the_last_place_exactly_one_wins(api_server):
    body = {"service": "BIZ", "slot_start": SLOT_1000}  # 3 places
    async with api(api_server, FAST_KEY) as http:
        for _ in range(2):
            assert (await http.post("/appointments", json=body)).status_code == 201
    results: list[int] = []

    async def book() -> None:
        async with api(api_server, FAST_KEY) as own:  # a connection each: truly concurrent requests
            reply = await own.post("/appointments", json=body)
            if reply.status_code != 201:
                error_of(reply, 409, "slot_full")
            results.append(reply.status_code)

    async with trio.open_nursery() as nursery:
        for _ in range(12):
            nursery.start_soon(book)
    assert sorted(results) == [201] + [409] * 11
    assert api_server.engine.state.bookings[("BIZ", SLOT_1000)] == 3


@guard()
async def test_cancel_frees_the_place_and_a_second_cancel_is_a_conflict(api_server):
    async with api(api_server) as http:
        ticket = (await http.post("/appointments", json={"service": "SOC", "slot_start": SLOT_1000})).json()
        cancelled = await http.delete(f"/appointments/{ticket['ticket']}", headers={"idempotency-key": "c1"})
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        repeat = await http.delete(f"/appointments/{ticket['ticket']}", headers={"idempotency-key": "c1"})
        assert repeat.status_code == 200 and repeat.json() == cancelled.json()
        error_of(await http.delete(f"/appointments/{ticket['ticket']}"), 409, "invalid_state")
    assert api_server.engine.state.bookings[("SOC", SLOT_1000)] == 0


# ---------------------------------------------------------------------- remote tickets


@guard()
async def test_take_a_number_remotely_and_follow_it(api_server):
    async with api(api_server) as http:
        reply = await http.post("/tickets", json={"service": "SOC"})
        assert reply.status_code == 201
        ticket = reply.json()
        assert ticket["channel"] == "qr" and ticket["status"] == "waiting" and ticket["number"].startswith("C")
        assert ticket["ahead"] == 0
        second = (await http.post("/tickets", json={"service": "SOC"})).json()
        assert second["ahead"] == 1
        assert (await http.get(f"/tickets/{second['ticket']}")).json() == second


# ---------------------------------------------------------------------- QR codes: check-in, look-up, door code


def qr_key() -> bytes:
    return derive_key(SECRET, "qr")


@guard()
async def test_a_booking_carries_its_signed_appointment_code_and_its_urls(api_server):
    async with api(api_server) as http:
        ticket = (await http.post("/appointments", json={"service": "SOC", "slot_start": SLOT_1000})).json()
    claim = qrcodes.verify(qr_key(), "demo", ticket["qr"], api_server.clock.now(), {qrcodes.APPOINTMENT})
    assert claim.ident == str(ticket["ticket"]) and claim.expires_at >= SLOT_1000 + 1800
    assert ticket["qr_svg"] == f"/qr/{ticket['qr']}.svg" and ticket["phone_url"] == f"/phone?q={ticket['qr']}"


@guard()
async def test_check_in_with_the_qr_code_then_the_code_is_spent(api_server):
    async with api(api_server) as http:
        booked = (await http.post("/appointments", json={"service": "SOC", "slot_start": SLOT_1000})).json()
        reply = await http.post("/check-in", json={"qr": booked["qr"]}, headers={"idempotency-key": "scan-1"})
        assert reply.status_code == 200
        waiting = reply.json()
        assert waiting["ticket"] == booked["ticket"] and waiting["status"] == "waiting"
        assert waiting["number"].startswith("C") and waiting["qr"].startswith("CS1.t.demo.")
        again = await http.post("/check-in", json={"qr": booked["qr"]}, headers={"idempotency-key": "scan-1"})
        assert again.status_code == 200 and again.json() == waiting  # a retry of the same scan
        spent = error_of(await http.post("/check-in", json={"qr": booked["qr"]}), 400, "qr_refused")
        assert spent["details"]["reason"] == "already_used" and spent["details"]["status"] == "waiting"


@pytest.mark.parametrize("make, reason", [
    (lambda qr, tid: qr[:-1] + ("A" if qr[-1] != "A" else "B"), "forged"),  # altered signature
    (lambda qr, tid: qr.replace(f".{tid}.", f".{tid + 1}."), "forged"),  # another ticket, same signature
    (lambda qr, tid: qrcodes.sign(qr_key(), "a", "demo", tid, START.timestamp() - 1), "expired"),
    (lambda qr, tid: qrcodes.sign(qr_key(), "t", "demo", tid, START.timestamp() + 3600), "wrong_kind"),
    (lambda qr, tid: qrcodes.sign(qr_key(), "a", "other-hall", tid, START.timestamp() + 3600), "wrong_hall"),
    (lambda qr, tid: qrcodes.sign(b"not the hall's key", "a", "demo", tid, START.timestamp() + 3600), "forged"),
    (lambda qr, tid: "hello", "malformed"),
])
@guard()
async def test_a_forged_altered_expired_or_foreign_code_is_refused_with_the_reason(api_server, make, reason):
    async with api(api_server) as http:
        booked = (await http.post("/appointments", json={"service": "SOC", "slot_start": SLOT_1000})).json()
        before = state_of(api_server)
        refused = error_of(await http.post("/check-in", json={"qr": make(booked["qr"], booked["ticket"])}),
                           400, "qr_refused")
        assert refused["details"]["reason"] == reason
        assert state_of(api_server) == before


@guard()
async def test_qr_lookup_is_public_and_gives_the_phone_its_ticket_and_secret(api_server):
    async with api(api_server) as http:
        booked = (await http.post("/appointments", json={"service": "SOC", "slot_start": SLOT_1000})).json()
        taken = (await http.post("/tickets", json={"service": "SOC"})).json()
    async with api(api_server, key=None) as phone:
        assert (await phone.get(f"/qr/{booked['qr']}")).json() == {"ticket": booked["ticket"],
                                                                  "secret": booked["secret"], "kind": "appointment"}
        assert (await phone.get(f"/qr/{taken['qr']}")).json() == {"ticket": taken["ticket"],
                                                                 "secret": taken["secret"], "kind": "ticket"}
        door = qrcodes.door_code(qr_key(), "demo", "main", api_server.clock.now(), 300)
        assert error_of(await phone.get(f"/qr/{door}"), 400, "qr_refused")["details"]["reason"] == "wrong_kind"


@guard()
async def test_a_phone_on_site_takes_a_number_with_the_door_code_not_from_home(api_server):
    now = api_server.clock.now()
    current = qrcodes.door_code(qr_key(), "demo", "main", now, 300)
    previous = qrcodes.door_code(qr_key(), "demo", "main", now - 300, 300)  # replaced one rotation ago: still valid
    stale = qrcodes.door_code(qr_key(), "demo", "main", now - 900, 300)  # a photo taken long before
    async with api(api_server, key=None) as phone:
        for code in (current, previous):
            reply = await phone.post("/tickets", json={"service": "SOC", "door_code": code})
            assert reply.status_code == 201 and reply.json()["channel"] == "qr" and reply.json()["status"] == "waiting"
        before = state_of(api_server)
        assert error_of(await phone.post("/tickets", json={"service": "SOC", "door_code": stale}),
                        400, "qr_refused")["details"]["reason"] == "expired"
        ticket_code = reply.json()["qr"]
        assert error_of(await phone.post("/tickets", json={"service": "SOC", "door_code": ticket_code}),
                        400, "qr_refused")["details"]["reason"] == "wrong_kind"
        error_of(await phone.post("/tickets", json={"service": "SOC"}), 401, "unauthorized")
        assert state_of(api_server) == before
        mine = reply.json()
        assert (await phone.get(f"/tickets/{mine['ticket']}", params={"secret": mine["secret"]})).json() == mine


@guard()
async def test_the_public_endpoints_are_rate_limited_per_address(nursery, hall_with_clients, tmp_path):
    server = await start_server(nursery, hall_with_clients, tmp_path / "hall.db", api_public_rate_per_s=0.001,
                                api_public_burst=3)
    door = qrcodes.door_code(qr_key(), "demo", "main", server.clock.now(), 300)
    async with api(server, key=None) as phone:
        for _ in range(2):
            assert (await phone.post("/tickets", json={"service": "SOC", "door_code": door})).status_code == 201
        taken = (await phone.post("/tickets", json={"service": "SOC", "door_code": door})).json()
        before = state_of(server)
        refused = await phone.post("/tickets", json={"service": "SOC", "door_code": door})
        assert error_of(refused, 429, "rate_limited") and int(refused.headers["retry-after"]) >= 1
        error_of(await phone.get(f"/qr/{taken['qr']}"), 429, "rate_limited")
        assert state_of(server) == before
    async with api(server) as integration:  # an API client has its own limit
        assert (await integration.post("/tickets", json={"service": "SOC"})).status_code == 201
    server.shutdown()


@guard()
async def test_a_trusted_proxy_s_x_forwarded_for_names_the_address_that_is_limited(nursery, hall_with_clients,
                                                                                  tmp_path):
    """Through a trusted proxy (loopback: e.g. a standby forwarding to its owner) the public
    limits count the address the proxy names last in X-Forwarded-For, not the proxy's."""
    server = await start_server(nursery, hall_with_clients, tmp_path / "hall.db", api_public_rate_per_s=0.001,
                                api_public_burst=1)
    door = qrcodes.door_code(qr_key(), "demo", "main", server.clock.now(), 300)
    async with api(server, key=None) as phones:
        def take(address: str):
            return phones.post("/tickets", json={"service": "SOC", "door_code": door},
                               headers={"x-forwarded-for": f"198.51.100.9, {address}"})

        assert (await take("203.0.113.1")).status_code == 201
        error_of(await take("203.0.113.1"), 429, "rate_limited")
        assert (await take("203.0.113.2")).status_code == 201  # another phone behind the same proxy
    server.shutdown()


# ---------------------------------------------------------------------- resident ids

SENIOR_ID = "110101195001010017"  # born 1950-01-01: 76 on the test day
YOUNG_ID = "110101200001010010"  # born 2000-01-01


@guard()
async def test_a_resident_id_is_validated_gives_seniors_the_green_channel_and_is_never_shown(api_server):
    async with api(api_server) as http:
        senior = await http.post("/appointments", json={"service": "SOC", "slot_start": SLOT_1000,
                                                        "resident_id": SENIOR_ID})
        young = await http.post("/tickets", json={"service": "SOC", "resident_id": YOUNG_ID})
        assert senior.status_code == young.status_code == 201
        assert senior.json()["green"] is True and young.json()["green"] is False
        for reply in (senior, young, await http.get(f"/tickets/{senior.json()['ticket']}")):
            assert SENIOR_ID not in reply.text and YOUNG_ID not in reply.text and "1950" not in reply.text
        before = state_of(api_server)
        wrong = SENIOR_ID[:-1] + ("0" if SENIOR_ID[-1] != "0" else "1")
        error = error_of(await http.post("/tickets", json={"service": "SOC", "resident_id": wrong}),
                         400, "invalid_resident_id")
        assert error["details"]["reason"] == "check_digit" and wrong not in error["message"]
        assert state_of(api_server) == before


@guard()
async def test_one_active_ticket_per_person_and_service(api_server):
    async with api(api_server) as http, api(api_server, OTHER_KEY) as other:
        first = await http.post("/appointments", json={"service": "SOC", "slot_start": SLOT_1000,
                                                       "resident_id": YOUNG_ID})
        assert first.status_code == 201
        before = state_of(api_server)
        for client, path, body in ((http, "/appointments", {"service": "SOC", "slot_start": SLOT_1000 + 1800}),
                                   (other, "/tickets", {"service": "SOC"})):  # another platform: the same person
            error = error_of(await client.post(path, json={**body, "resident_id": YOUNG_ID}), 409, "already_holding")
            assert error["details"]["status"] == "booked" and YOUNG_ID not in str(error)
        assert state_of(api_server) == before
        assert (await http.post("/tickets", json={"service": "BIZ", "resident_id": YOUNG_ID})).status_code == 201


# ---------------------------------------------------------------------- reschedule, and acting with the secret


@guard()
async def test_reschedule_moves_the_booking_and_its_place_at_once(api_server):
    later = SLOT_1000 + 3600
    async with api(api_server) as http:
        booked = (await http.post("/appointments", json={"service": "BIZ", "slot_start": SLOT_1000})).json()
        moved = await http.post(f"/appointments/{booked['ticket']}/reschedule",
                                json={"slot_start": "2026-11-23T11:00:00+08:00"}, headers={"idempotency-key": "r1"})
        assert moved.status_code == 200
        ticket = moved.json()
        assert ticket["ticket"] == booked["ticket"] and ticket["slot_start"] == later and ticket["status"] == "booked"
        again = await http.post(f"/appointments/{booked['ticket']}/reschedule",
                                json={"slot_start": later}, headers={"idempotency-key": "r1"})
        assert again.status_code == 200 and again.json() == ticket
        bookings = api_server.engine.state.bookings
        assert (bookings[("BIZ", SLOT_1000)], bookings[("BIZ", later)]) == (0, 1)
        for _ in range(2):
            await http.post("/appointments", json={"service": "BIZ", "slot_start": SLOT_1000})
        filler = (await http.post("/appointments", json={"service": "BIZ", "slot_start": SLOT_1000})).json()
        before = state_of(api_server)
        error_of(await http.post(f"/appointments/{booked['ticket']}/reschedule", json={"slot_start": SLOT_1000}),
                 409, "slot_full")
        error_of(await http.post(f"/appointments/{booked['ticket']}/reschedule", json={"slot_start": later + 60}),
                 400, "invalid_slot")
        assert state_of(api_server) == before
        assert filler["status"] == "booked"


@guard()
async def test_whoever_holds_the_secret_may_reschedule_and_cancel_without_a_key(api_server):
    async with api(api_server) as http:
        booked = (await http.post("/appointments", json={"service": "SOC", "slot_start": SLOT_1000})).json()
    tid, secret = booked["ticket"], booked["secret"]
    async with api(api_server, key=None) as phone:
        error_of(await phone.delete(f"/appointments/{tid}"), 401, "unauthorized")
        error_of(await phone.delete(f"/appointments/{tid}", params={"secret": "f" * 32}), 404, "unknown_ticket")
        moved = await phone.post(f"/appointments/{tid}/reschedule", params={"secret": secret},
                                 json={"slot_start": SLOT_1000 + 1800})
        assert moved.status_code == 200 and moved.json()["slot_start"] == SLOT_1000 + 1800
        cancelled = await phone.delete(f"/appointments/{tid}", params={"secret": secret})
        assert cancelled.json()["status"] == "cancelled"


@guard()
async def test_a_person_with_two_missed_appointments_is_blocked_with_the_reason_and_end_date(api_server):
    async with api(api_server) as http:
        for service in ("SOC", "BIZ"):
            assert (await http.post("/appointments", json={"service": service, "slot_start": SLOT_1000,
                                                           "resident_id": YOUNG_ID})).status_code == 201
        night = SLOT_1000 + 13 * 3600  # 23:00: both slots over, never checked in
        _, pending = api_server.execute(cmd.ResetDay(night))
        await pending.wait()
        tuesday = "2026-11-24T10:00:00+08:00"
        error = error_of(await http.post("/appointments", json={"service": "SOC", "slot_start": tuesday,
                                                                "resident_id": YOUNG_ID}), 409, "booking_blocked")
        assert error["details"]["no_shows"] == 2 and error["details"]["until"] >= "2027-02-"
        assert (await http.post("/appointments", json={"service": "SOC", "slot_start": tuesday,
                                                       "resident_id": SENIOR_ID})).status_code == 201
