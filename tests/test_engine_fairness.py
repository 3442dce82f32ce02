"""Identity and fairness in the engine: persons, green reasons, one active ticket per person
and service, appointment no-shows and the booking block, reschedule, the clerk's green flag."""

from __future__ import annotations

import datetime

import msgpack
import pytest

from callsys import commands as cmd
from callsys import errors as err
from callsys import events as ev
from callsys.engine import QueueEngine
from callsys.policy import booking_block
from callsys.state import HallState, Ticket

from conftest import hall_time
from engine_support import Desk

GREEN = 1800.0  # the small hall's green credit (s)
ANN, BOB = "a" * 32, "b" * 32  # person keys as the server makes them (32 hex characters)


def slot(hour: int, minute: int = 0, *, day: int = 0) -> float:
    return hall_time(hour, minute, day=day)


def local_date(day: int) -> str:
    return (datetime.date(2026, 11, 23) + datetime.timedelta(days=day)).isoformat()


@pytest.fixture
def desk(small_hall, monday_0930) -> Desk:
    return Desk(small_hall, monday_0930)


def replayed(desk: Desk) -> dict:
    """The snapshot of a fresh engine fed the desk's events, through the log's row format."""
    engine = QueueEngine(desk.engine.hall)
    rows = msgpack.unpackb(msgpack.packb([ev.to_row(e) for e in desk.events]), strict_map_key=False)
    engine.apply_all(ev.from_row(row) for row in rows)
    return engine.snapshot()


# ---------------------------------------------------------------------- persons and green reasons


def test_person_and_birth_year_are_recorded(desk):
    (event,) = desk.do(cmd.TakeNumber, service="A", person=ANN, birth_year=1958, green=True, green_reason="senior")
    assert (event.person, event.birth_year, event.green_reason) == (ANN, 1958, "senior")
    ticket = desk.ticket(event.ticket)
    assert (ticket.person, ticket.birth_year, ticket.green_reason, ticket.klass) == (ANN, 1958, "senior", "priority")
    assert ticket.rank == desk.now - GREEN
    booking = desk.book("B", slot(10), person=BOB, birth_year=1990)
    assert (booking.person, booking.birth_year, booking.green_reason) == (BOB, 1990, None)


def test_green_without_reason_is_requested(desk):
    assert desk.take("A", green=True).green_reason == "requested"
    assert desk.take("A").green_reason is None


@pytest.mark.parametrize("fields", [
    {"green": False, "green_reason": "senior"},
    {"green": True, "green_reason": "clerk"},
    {"green": True, "green_reason": "vip"},
    {"person": "short"},
    {"person": "x" * 65},
    {"person": 12345678},
    {"person": ["a" * 32]},
    {"birth_year": 1700},
    {"birth_year": "1958"},
    {"birth_year": True},
])
def test_bad_identity_fields_are_refused(desk, fields):
    desk.rejects(err.InvalidArgument, cmd.TakeNumber, service="A", **fields)
    desk.rejects(err.InvalidArgument, cmd.BookSlot, service="A", slot_start=slot(10), **fields)


def test_events_with_persons_round_trip_through_records_and_rows(desk):
    desk.take("A", person=ANN, birth_year=1958, green=True, green_reason="senior")
    desk.book("B", slot(10), person=ANN)
    desk.do(cmd.Reschedule, ticket=2, slot_start=slot(11))
    desk.open(1)
    desk.take("A")
    desk.do(cmd.FlagGreen, window=1, ticket="A002")
    for event in desk.events:
        assert ev.from_record(ev.to_record(event)) == event
        assert ev.from_row(ev.to_row(event)) == event
    assert replayed(desk) == desk.engine.snapshot()


def test_rows_written_before_persons_still_read(desk):
    old = ["ticket_issued", 1.0, 1, "A001", "A", "kiosk", False, "normal", 1.0, 739000, 1]
    event = ev.from_row(old)
    assert (event.person, event.birth_year, event.green_reason) == (None, None, None)
    assert ev.from_row(["slot_booked", 1.0, 2, "A", 10.0, 20.0, True]).green_reason is None


# ---------------------------------------------------------------------- one active ticket per person and service


def test_one_active_ticket_per_person_and_service(desk):
    first = desk.take("A", person=ANN)
    error = desk.rejects(err.AlreadyHolding, cmd.TakeNumber, service="A", person=ANN)
    assert error.details == {"number": first.number, "status": "waiting"}
    assert desk.take("B", person=ANN).service == "B"  # another service is fine
    assert desk.take("A", person=BOB).service == "A"  # another person too
    assert desk.take("A").person is None  # and anonymous tickets are not limited


def test_a_booking_holds_its_service(desk):
    booking = desk.book("A", slot(10), person=ANN)
    error = desk.rejects(err.AlreadyHolding, cmd.TakeNumber, service="A", person=ANN)
    assert error.details == {"ticket": booking.id, "status": "booked"}
    desk.rejects(err.AlreadyHolding, cmd.BookSlot, service="A", slot_start=slot(11), person=ANN)
    desk.until(slot(9, 50))
    desk.check_in(booking.id)
    error = desk.rejects(err.AlreadyHolding, cmd.TakeNumber, service="A", person=ANN)
    assert error.details["status"] == "waiting"


@pytest.mark.parametrize("status", ["called", "serving", "parked"])
def test_called_serving_and_parked_tickets_hold(desk, status):
    desk.take("A", person=ANN)
    desk.open(1)
    desk.call(1)
    if status == "serving":
        desk.do(cmd.StartService, window=1)
    elif status == "parked":
        desk.do(cmd.Park, window=1)
    assert desk.rejects(err.AlreadyHolding, cmd.TakeNumber, service="A", person=ANN).details["status"] == status


@pytest.mark.parametrize("end", ["done", "cancelled", "no_show"])
def test_a_new_ticket_once_the_old_one_is_over(desk, end):
    first = desk.take("A", person=ANN)
    if end == "cancelled":
        desk.do(cmd.Cancel, ticket=first.id)
    else:
        desk.open(1)
        desk.call(1)
        if end == "done":
            desk.do(cmd.FinishService, window=1)
        else:
            desk.do(cmd.Recall, window=1)
            desk.do(cmd.Recall, window=1)
            desk.do(cmd.NoShow, window=1)
    assert desk.take("A", person=ANN).id == first.id + 1


def test_requeue_is_refused_when_the_person_took_a_new_number(desk):
    first = desk.take("A", person=ANN)
    desk.open(1)
    desk.call(1)
    desk.do(cmd.Recall, window=1)
    desk.do(cmd.Recall, window=1)
    desk.do(cmd.NoShow, window=1)
    second = desk.take("A", person=ANN)
    error = desk.rejects(err.AlreadyHolding, cmd.Requeue, ticket=first.id)
    assert error.details == {"number": second.number, "status": "waiting"}
    desk.do(cmd.Cancel, ticket=second.id)
    assert desk.one(cmd.Requeue, ticket=first.id).status == "waiting"


def test_transfer_into_a_service_the_person_holds_is_refused(desk):
    desk.take("A", person=ANN)
    desk.take("B", person=ANN)
    desk.open(2)
    called = desk.call(2)
    assert called.service == "A"
    desk.rejects(err.AlreadyHolding, cmd.Transfer, window=2, service="B")
    desk.do(cmd.Transfer, window=2, service="C")
    assert desk.rejects(err.AlreadyHolding, cmd.TakeNumber, service="C", person=ANN).details["status"] == "waiting"
    assert desk.take("A", person=ANN).service == "A"  # the A ticket left service A


def test_day_reset_forgets_holders_of_expired_tickets(desk):
    desk.take("A", person=ANN)
    desk.until(slot(18))
    desk.do(cmd.ResetDay)
    desk.until(slot(9, 30, day=1))
    assert desk.take("A", person=ANN).person == ANN
    assert desk.engine.state.holders == {(ANN, "A"): 2}


# ---------------------------------------------------------------------- no-shows and the booking block


def miss(desk: Desk, day: int, person: str = ANN) -> None:
    """*person* books 10:00 on *day* and never comes; the day is reset that evening."""
    desk.until(max(desk.now, slot(8, day=day)))
    desk.book("A", slot(10, day=day), person=person)
    desk.until(slot(18, day=day))
    desk.do(cmd.ResetDay)


def test_booked_never_checked_in_counts_at_day_reset(desk):
    miss(desk, 0)
    ordinal = datetime.date(2026, 11, 23).toordinal()
    assert desk.engine.state.no_shows == {ANN: [ordinal]}
    assert desk.engine.snapshot()["no_shows"] == [[ANN, [ordinal]]]


def test_two_no_shows_block_booking_with_reason_and_end_date(desk):
    miss(desk, 0)
    miss(desk, 1)
    desk.until(slot(9, 30, day=2))
    error = desk.rejects(err.BookingBlocked, cmd.BookSlot, service="B", slot_start=slot(10, day=2), person=ANN)
    assert error.details == {"reason": "no_shows", "until": local_date(1 + 90), "no_shows": 2}
    assert local_date(91) in error.message
    assert desk.take("A", person=ANN).person == ANN  # on site a number is still given
    assert desk.book("B", slot(10, day=2), person=BOB).person == BOB
    desk.until(slot(9, 30, day=89))  # Saturday before the end: still blocked
    desk.rejects(err.BookingBlocked, cmd.BookSlot, service="B", slot_start=slot(10, day=89), person=ANN)
    desk.until(slot(9, 0, day=91))  # the Monday the block ends
    assert desk.book("B", slot(10, day=91), person=ANN).status == "booked"


def test_no_shows_further_apart_than_the_window_do_not_block(desk):
    miss(desk, 0)
    miss(desk, 30)  # 30 days later: the first is outside the 30-day window
    desk.until(slot(9, 0, day=31))
    assert desk.book("A", slot(10, day=31), person=ANN).status == "booked"


def test_clerk_no_show_of_a_checked_in_appointment_counts(desk):
    booking = desk.book("A", slot(10), person=ANN)
    desk.until(slot(10))
    desk.check_in(booking.id)
    desk.open(1)
    desk.call(1)
    desk.do(cmd.Recall, window=1)
    desk.do(cmd.Recall, window=1)
    desk.do(cmd.NoShow, window=1)
    desk.until(slot(18))
    desk.do(cmd.ResetDay)
    assert list(desk.engine.state.no_shows) == [ANN]


def test_served_cancelled_requeued_and_walk_in_no_shows_do_not_count(desk):
    served = desk.book("A", slot(10), person=ANN)
    desk.book("B", slot(10), person=ANN)
    desk.do(cmd.Cancel, ticket=served.id + 1)
    desk.until(slot(10))
    desk.check_in(served.id)
    desk.take("C", person=ANN)  # walk-in no-show below
    desk.open(1)
    desk.serve(1)  # A: the appointment is served
    desk.call(1)  # C: the walk-in
    desk.do(cmd.Recall, window=1)
    desk.do(cmd.Recall, window=1)
    desk.do(cmd.NoShow, window=1)
    desk.until(slot(18))
    desk.do(cmd.ResetDay)
    assert desk.engine.state.no_shows == {}


def test_future_bookings_do_not_count_at_reset(desk):
    desk.book("A", slot(10, day=1), person=ANN)
    desk.until(slot(18))
    desk.do(cmd.ResetDay)
    assert desk.engine.state.no_shows == {} and desk.ticket(1).status == "booked"


def test_rule_off_with_limit_zero(make_hall, monday_0930):
    desk = Desk(make_hall({"appointments": {"no_show_limit": 0}}), monday_0930)
    for day in range(3):
        miss(desk, day)
    desk.until(slot(9, 0, day=3))
    assert desk.book("A", slot(10, day=3), person=ANN).status == "booked"


def test_old_no_shows_are_pruned_at_day_reset(desk):
    miss(desk, 0)
    desk.until(slot(18, day=119))  # it could still be within 30 days of a block running until day 119
    desk.do(cmd.ResetDay)
    assert ANN in desk.engine.state.no_shows
    desk.until(slot(18, day=120))
    desk.do(cmd.ResetDay)
    assert desk.engine.state.no_shows == {}


def test_no_shows_and_holders_survive_snapshot_and_replay(desk):
    miss(desk, 0)
    miss(desk, 1)
    desk.until(slot(9, 30, day=2))
    desk.take("A", person=ANN)
    snapshot = desk.engine.snapshot()
    restored = QueueEngine.restore(desk.engine.hall, snapshot)
    assert restored.snapshot() == snapshot == replayed(desk)
    restored.state.advance(desk.now)
    with pytest.raises(err.AlreadyHolding):
        restored.decide(cmd.TakeNumber(at=desk.now + 1, service="A", person=ANN))
    with pytest.raises(err.BookingBlocked):
        restored.decide(cmd.BookSlot(at=desk.now + 1, service="B", slot_start=slot(11, day=2), person=ANN))


def test_snapshot_written_before_persons_still_loads(desk):
    desk.take("A")
    desk.book("B", slot(10))
    snapshot = desk.engine.snapshot()
    old = {k: v for k, v in snapshot.items() if k not in ("ticket_fields", "no_shows")}
    old["tickets"] = [row[:23] + row[-2:] for row in snapshot["tickets"]]
    state = HallState.from_snapshot(desk.engine.hall, old)
    assert state.snapshot() == snapshot
    assert len(Ticket.__slots__) == 27  # + clerk


@pytest.mark.parametrize(("days", "today", "expected"), [
    ([], 100, None),
    ([90], 100, None),
    ([90, 95], 100, (185, 2)),
    ([60, 95], 100, None),  # 35 days apart
    ([90, 95], 185, None),  # the block is over on its end day
    ([90, 95], 184, (185, 2)),
    ([10, 15, 90], 100, (105, 2)),  # the 10/15 pair still blocks
    ([10, 15, 90, 95], 100, (185, 2)),
    ([90, 91, 92], 100, (182, 3)),
])
def test_booking_block(days, today, expected):
    assert booking_block(days, today, limit=2, window_days=30, block_days=90) == expected


def test_booking_block_off_and_limit_one():
    assert booking_block([99], 100, limit=0, window_days=30, block_days=90) is None
    assert booking_block([99], 100, limit=1, window_days=30, block_days=90) == (189, 1)


# ---------------------------------------------------------------------- reschedule


def test_reschedule_moves_the_place_and_keeps_the_ticket(desk):
    booking = desk.book("A", slot(10), person=ANN)
    (event,) = desk.do(cmd.Reschedule, ticket=booking.id, slot_start=slot(14, day=1))
    assert event == ev.SlotRescheduled(desk.now, booking.id, slot(14, day=1), slot(14, 30, day=1))
    ticket = desk.ticket(booking.id)
    assert (ticket.status, ticket.slot_start, ticket.slot_end) == ("booked", slot(14, day=1), slot(14, 30, day=1))
    assert desk.engine.snapshot()["bookings"] == [["A", slot(14, day=1), 1]]
    assert desk.book("A", slot(10)).slot_start == slot(10)  # the old place is free again
    assert desk.engine.snapshot()["totals"]["rescheduled"] == 1


def test_reschedule_into_a_full_slot_is_refused(desk):
    booking = desk.book("A", slot(10))
    desk.book("A", slot(11))
    desk.book("A", slot(11))
    error = desk.rejects(err.SlotFull, cmd.Reschedule, ticket=booking.id, slot_start=slot(11))
    assert error.details["capacity"] == 2


@pytest.mark.parametrize("start", [slot(10, 10), slot(12), slot(9), slot(10, day=6), float("nan")])
def test_reschedule_to_an_invalid_slot_is_refused(desk, start):
    booking = desk.book("A", slot(10))
    desk.rejects(err.InvalidSlot, cmd.Reschedule, ticket=booking.id, slot_start=start)


def test_reschedule_to_the_same_slot_is_refused(desk):
    booking = desk.book("A", slot(10))
    desk.rejects(err.InvalidSlot, cmd.Reschedule, ticket=booking.id, slot_start=slot(10))


def test_reschedule_only_while_booked(desk):
    booking = desk.book("A", slot(10))
    desk.until(slot(9, 45))
    desk.check_in(booking.id)
    error = desk.rejects(err.InvalidState, cmd.Reschedule, ticket=booking.id, slot_start=slot(11))
    assert error.details["status"] == "waiting"
    desk.rejects(err.InvalidState, cmd.Reschedule, ticket=desk.take("A").id, slot_start=slot(11))
    desk.rejects(err.UnknownTicket, cmd.Reschedule, ticket=99, slot_start=slot(11))


def test_rescheduled_booking_checks_in_against_its_new_slot(desk):
    booking = desk.book("A", slot(10))
    desk.do(cmd.Reschedule, ticket=booking.id, slot_start=slot(15, 30))
    desk.until(slot(11))
    desk.rejects(err.CheckInRejected, cmd.CheckIn, ticket=booking.id)  # opens an hour before 15:30
    desk.until(slot(14, 45))
    assert desk.check_in(booking.id).status == "waiting"


# ---------------------------------------------------------------------- the clerk's green flag


def test_flag_green_reranks_a_waiting_ticket(desk):
    desk.take("A")
    desk.take("A")
    late = desk.take("A")
    desk.open(1)
    (event,) = desk.do(cmd.FlagGreen, window=1, ticket=late.number)
    assert event == ev.GreenFlagged(desk.now, late.id, 1, "priority", late.issued_at - GREEN)
    ticket = desk.ticket(late.id)
    assert (ticket.green, ticket.green_reason, ticket.klass, ticket.rank) == (True, "clerk", "priority",
                                                                              late.issued_at - GREEN)
    assert desk.engine.position(late.id).ahead == 0
    assert desk.call(1).id == late.id
    assert desk.engine.snapshot()["totals"]["green_flagged"] == 1


def test_flag_green_of_an_early_check_in_keeps_it_held(desk):
    booking = desk.book("A", slot(10))
    desk.check_in(booking.id)
    assert booking.id in desk.engine.state.book.held
    desk.do(cmd.FlagGreen, window=2, ticket=booking.id)
    assert booking.id in desk.engine.state.book.held
    desk.take("A")
    desk.until(slot(10))
    desk.open(1)
    assert desk.call(1).id == booking.id


def test_flag_green_in_a_windows_own_queue_stays_there(desk):
    desk.take("A")
    desk.open(1, 2)
    desk.call(1)
    desk.do(cmd.Transfer, window=1, to_window=2)
    desk.do(cmd.FlagGreen, window=2, ticket="A001")
    assert desk.engine.state.book.where[1][1] == 2
    assert desk.call(2).number == "A001"
    assert replayed(desk) == desk.engine.snapshot()


def test_flag_green_refusals(desk):
    green = desk.take("A", green=True)
    error = desk.rejects(err.InvalidState, cmd.FlagGreen, window=1, ticket=green.id)
    assert error.details["green_reason"] == "requested"
    booking = desk.book("A", slot(11))
    desk.rejects(err.InvalidState, cmd.FlagGreen, window=1, ticket=booking.id)
    desk.rejects(err.UnknownTicket, cmd.FlagGreen, window=1, ticket="A999")
    desk.rejects(err.UnknownWindow, cmd.FlagGreen, window=99, ticket=green.id)
    desk.open(1)
    desk.call(1)
    desk.rejects(err.InvalidState, cmd.FlagGreen, window=1, ticket=green.id)
