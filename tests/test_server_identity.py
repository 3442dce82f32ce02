"""Resident ids, signed QR codes in ticket replies, reschedule and the clerk's green flag,
over real WebSocket connections.

The server turns a ``resident_id`` into a keyed hash and a birth year before the engine
sees it; neither the id nor its hash comes back in any reply, and the id is in no log.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from pathlib import Path

import pytest

from callsys import errors, qrcodes
from callsys.client import RequestFailed
from callsys.identity import check_digit, derive_key, parse_resident_id, person_key
from server_support import SECRET, START, captured_log, client, fmt, guard, server, state_of  # noqa: F401

QR_KEY = derive_key(SECRET, "qr")
TODAY = START.date()  # 2026-11-23, the server clock's day


def resident(birth: date, seq: int = 123) -> str:
    first17 = f"370202{birth:%Y%m%d}{seq:03d}"
    return first17 + check_digit(first17)


YOUNG = resident(date(1990, 5, 17))
SENIOR = resident(date(1950, 2, 1))
SIXTY_TODAY = resident(TODAY.replace(year=TODAY.year - 60))
SIXTY_TOMORROW = resident(TODAY.replace(year=TODAY.year - 60) + timedelta(days=1))
SLOT = START.timestamp() + 30 * 60  # 10:00, on the demo hall's 30-minute grid
PRIVATE = ("person", "birth_year", "resident_id")


def assert_private(result: dict, *ids: str) -> None:
    assert not set(PRIVATE) & set(result)
    text = repr(result)
    for rid in ids:
        assert rid not in text
        assert person_key(derive_key(SECRET, "person"), "demo", parse_resident_id(rid)) not in text


@guard()
async def test_a_resident_id_is_hashed_and_never_echoed(server, fmt):
    async with client(server, "kiosk", fmt) as kiosk:
        ticket = await kiosk.request("take_number", service="SOC", resident_id=YOUNG)
    assert (ticket["green"], ticket["green_reason"], ticket["klass"]) == (False, None, "normal")
    assert_private(ticket, YOUNG)
    stored = server.engine.state.tickets[ticket["ticket"]]
    assert stored.person == person_key(derive_key(SECRET, "person"), "demo", parse_resident_id(YOUNG))
    assert stored.birth_year == 1990


@pytest.mark.parametrize(("rid", "green"), [(SENIOR, True), (SIXTY_TODAY, True), (SIXTY_TOMORROW, False)])
@guard()
async def test_sixty_or_over_on_the_halls_date_gets_the_green_channel(server, rid, green):
    async with client(server, "kiosk") as kiosk:
        ticket = await kiosk.request("take_number", service="SOC", resident_id=rid)
    assert ticket["green"] is green
    assert ticket["green_reason"] == ("senior" if green else None)
    assert ticket["klass"] == ("priority" if green else "normal")


@guard()
async def test_a_green_request_of_a_young_resident_is_requested(server):
    async with client(server, "kiosk") as kiosk:
        ticket = await kiosk.request("take_number", service="SOC", resident_id=YOUNG, green=True)
    assert (ticket["green"], ticket["green_reason"]) == (True, "requested")


@pytest.mark.parametrize(("rid", "reason"), [
    (YOUNG[:-1] + ("0" if YOUNG[-1] != "0" else "1"), "check_digit"),
    ("370202199002301231", "birth_date"),
    ("12345", "format"),
])
@guard()
async def test_an_invalid_resident_id_is_refused_and_changes_nothing(server, fmt, rid, reason):
    async with client(server, "kiosk", fmt) as kiosk:
        before = state_of(server)
        with captured_log(logging.INFO) as records:
            with pytest.raises(RequestFailed) as info:
                await kiosk.request("take_number", service="SOC", resident_id=rid)
        assert info.value.code == "invalid_resident_id"
        assert info.value.details == {"reason": reason}
        assert rid not in info.value.message
        assert all(rid not in r.getMessage() for r in records)
        assert state_of(server) == before
        await kiosk.request("ping")  # the connection is still served


@guard()
async def test_one_active_ticket_per_person_and_service(server):
    async with client(server, "kiosk") as kiosk:
        first = await kiosk.request("take_number", service="SOC", resident_id=YOUNG)
        with pytest.raises(RequestFailed) as info:
            await kiosk.request("take_number", service="SOC", resident_id=YOUNG.lower())
        assert info.value.code == "already_holding"
        assert info.value.details == {"number": first["number"], "status": "waiting"}
        with pytest.raises(RequestFailed) as info:
            await kiosk.request("book_slot", service="SOC", slot_start=SLOT, resident_id=YOUNG)
        assert info.value.code == "already_holding"
        other = await kiosk.request("take_number", service="BIZ", resident_id=YOUNG)
        assert other["service"] == "BIZ"


@guard()
async def test_ticket_reply_carries_a_signed_ticket_qr(server):
    async with client(server, "kiosk") as kiosk:
        ticket = await kiosk.request("take_number", service="SOC")
    claim = qrcodes.verify(QR_KEY, "demo", ticket["qr"], ticket["issued_at"], [qrcodes.TICKET])
    assert claim.ident == str(ticket["ticket"])
    assert claim.expires_at == int(ticket["issued_at"] + server.hall.qr.ticket_valid_s)


@guard()
async def test_booking_reply_carries_an_appointment_qr_and_check_in_a_ticket_qr(server):
    async with client(server, "kiosk") as kiosk:
        booking = await kiosk.request("book_slot", service="SOC", slot_start=SLOT, resident_id=SENIOR)
        assert (booking["status"], booking["green_reason"]) == ("booked", "senior")
        assert_private(booking, SENIOR)
        claim = qrcodes.verify(QR_KEY, "demo", booking["qr"], booking["issued_at"], [qrcodes.APPOINTMENT])
        assert claim.ident == str(booking["ticket"])
        assert claim.expires_at == int(max(booking["issued_at"] + 24 * 3600, booking["slot_end"] + 15 * 60))
        checked_in = await kiosk.request("check_in", ticket=booking["ticket"])
    assert checked_in["status"] == "waiting" and checked_in["green_reason"] == "senior"
    assert qrcodes.verify(QR_KEY, "demo", checked_in["qr"], checked_in["issued_at"], [qrcodes.TICKET]).ident == \
        str(booking["ticket"])


@guard()
async def test_a_repeated_key_answers_the_same_qr(server):
    async with client(server, "kiosk") as kiosk:
        first = await kiosk.request("book_slot", service="SOC", slot_start=SLOT, resident_id=YOUNG, key="b-1")
        again = await kiosk.request("book_slot", service="SOC", slot_start=SLOT, resident_id=YOUNG, key="b-1")
    assert again.pop("repeat") is True and again == first


@guard()
async def test_reschedule_moves_the_booking(server, fmt):
    async with client(server, "kiosk", fmt) as kiosk:
        booking = await kiosk.request("book_slot", service="SOC", slot_start=SLOT, resident_id=YOUNG)
        moved = await kiosk.request("reschedule", ticket=booking["ticket"], slot_start=SLOT + 3600)
        assert (moved["ticket"], moved["status"]) == (booking["ticket"], "booked")
        assert (moved["slot_start"], moved["slot_end"]) == (SLOT + 3600, SLOT + 5400)
        assert moved["qr"] == booking["qr"] and moved["secret"] == booking["secret"]  # still a day to run
        assert_private(moved, YOUNG)
        assert server.engine.snapshot()["bookings"] == [["SOC", SLOT + 3600, 1]]
        tomorrow = await kiosk.request("reschedule", ticket=booking["ticket"], slot_start=SLOT + 86400)
        claim = qrcodes.verify(QR_KEY, "demo", tomorrow["qr"], tomorrow["issued_at"], [qrcodes.APPOINTMENT])
        assert claim.expires_at == SLOT + 86400 + 1800 + 15 * 60  # the slot's end plus the late grace
        moved = await kiosk.request("reschedule", ticket=booking["ticket"], slot_start=SLOT + 3600)
        for slot_start, code in ((SLOT + 600, "invalid_slot"), (SLOT + 3600, "invalid_slot")):
            with pytest.raises(RequestFailed) as info:
                await kiosk.request("reschedule", ticket=booking["ticket"], slot_start=slot_start)
            assert info.value.code == code
        with pytest.raises(RequestFailed) as info:
            await kiosk.request("reschedule", ticket=999, slot_start=SLOT)
        assert info.value.code == "unknown_ticket"
        with pytest.raises(RequestFailed) as info:
            await kiosk.request("reschedule", ticket=booking["ticket"])
        assert info.value.code == "missing_field"


@guard()
async def test_clerk_flags_a_waiting_citizen_green(server):
    async with client(server, "kiosk") as kiosk, client(server, "clerk", window=7) as clerk, \
            client(server, "manager") as manager:
        first = await kiosk.request("take_number", service="SOC")
        late = await kiosk.request("take_number", service="SOC", resident_id=YOUNG)
        async with client(server, "phone", ticket=late["ticket"], secret=late["secret"]) as phone:
            assert (await phone.next_push())["event"] == "hello"
            result = await clerk.request("flag_green", ticket=late["number"])
            (event,) = result["events"]
            assert {k: event[k] for k in ("kind", "ticket", "by_window", "klass")} == \
                {"kind": "green_flagged", "ticket": late["ticket"], "by_window": 7, "klass": "priority"}
            assert_private(result, YOUNG)
            push = await phone.next_push()
            assert (push["event"], push["status"], push["window"]) == ("green_flagged", "waiting", None)
        position = await kiosk.request("position", ticket=late["ticket"])
        assert position["ahead"] == 0
        record = await manager.request("ticket", ticket=late["ticket"])
        assert (record["green"], record["green_reason"], record["klass"]) == (True, "clerk", "priority")
        assert_private(record, YOUNG)
        await clerk.request("open_window")
        called = await clerk.request("call_next")
        assert called["events"][0]["ticket"] == late["ticket"] != first["ticket"]
        with pytest.raises(RequestFailed) as info:
            await clerk.request("flag_green", ticket=first["ticket"] + 99)
        assert info.value.code == "unknown_ticket"


@guard()
async def test_roles_for_the_new_messages(server):
    async with client(server, "kiosk") as kiosk, client(server, "clerk", window=7) as clerk:
        with pytest.raises(RequestFailed) as info:
            await kiosk.request("flag_green", ticket=1)
        assert info.value.code == "forbidden"
        with pytest.raises(RequestFailed) as info:
            await clerk.request("reschedule", ticket=1, slot_start=SLOT)
        assert info.value.code == "forbidden"
        with pytest.raises(RequestFailed) as info:
            await kiosk.request("take_number", service="SOC", resident_id=370202199005171234)
        assert info.value.code == "invalid_field"


@guard()
async def test_the_resident_id_is_not_in_the_event_log(server, tmp_path):
    async with client(server, "kiosk") as kiosk:
        await kiosk.request("take_number", service="SOC", resident_id=YOUNG)
        await kiosk.request("book_slot", service="BIZ", slot_start=SLOT, resident_id=SENIOR)
    # both replies came once their events were durable: they are in the store's files now
    data = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert data and YOUNG.encode() not in data and SENIOR.encode() not in data
    assert YOUNG[6:14].encode() not in data  # not even the birth date


def test_every_engine_error_code_is_documented():
    doc = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text(encoding="utf-8")
    codes = {cls.code for cls in errors.EngineError.__subclasses__()}
    assert {"invalid_resident_id", "already_holding", "booking_blocked", "qr_refused"} <= codes
    assert all(f"| `{code}` |" in doc for code in codes), sorted(c for c in codes if f"| `{c}` |" not in doc)
