"""Citizen-side commands: take a number, book, check in, cancel, requeue, return, position."""

from __future__ import annotations

import pytest

from callsys import commands as cmd
from callsys import errors as err
from callsys import events as ev

from conftest import hall_time
from engine_support import Desk

CREDIT, GREEN = 600.0, 1800.0  # the small hall's appointment and green credits (s)


@pytest.fixture
def desk(small_hall, monday_0930) -> Desk:
    return Desk(small_hall, monday_0930)


def slot(hour: int, minute: int = 0, *, day: int = 0) -> float:
    return hall_time(hour, minute, day=day)


# ---------------------------------------------------------------------- take a number


def test_take_number_issues_a_numbered_waiting_ticket(desk, small_hall):
    (event,) = desk.do(cmd.TakeNumber, service="A")
    assert isinstance(event, ev.TicketIssued)
    assert (event.ticket, event.number, event.service, event.seq) == (1, "A001", "A", 1)
    assert (event.channel, event.green, event.klass, event.rank) == ("kiosk", False, "normal", desk.now)
    assert event.day == small_hall.local_time(desk.now).toordinal()
    ticket = desk.ticket("A001")
    assert (ticket.id, ticket.status, ticket.issued_at) == (1, "waiting", desk.now)
    assert desk.engine.statistics().waiting == 1


def test_numbers_count_per_service(desk):
    numbers = [desk.take(s).number for s in ("A", "A", "B", "A", "C")]
    assert numbers == ["A001", "A002", "B001", "A003", "C001"]
    assert [desk.take("B").id] == [6]


def test_number_width_pads_the_sequence(make_hall, monday_0930):
    desk = Desk(make_hall({"hall": {"number_width": 5}}), monday_0930)
    assert desk.take("C").number == "C00001"


def test_qr_channel(desk):
    assert desk.take("B", channel="qr").channel == "qr"


def test_green_ticket_is_priority_with_credit(desk):
    ticket = desk.take("A", green=True)
    assert (ticket.klass, ticket.green, ticket.rank) == ("priority", True, desk.now - GREEN)


@pytest.mark.parametrize("channel", ["appointment", "phone", ""])
def test_take_number_rejects_bad_channel(desk, channel):
    error = desk.rejects(err.InvalidArgument, cmd.TakeNumber, service="A", channel=channel)
    assert error.details == {"channel": channel}


def test_take_number_rejects_unknown_service(desk):
    error = desk.rejects(err.UnknownService, cmd.TakeNumber, service="XYZ")
    assert error.to_dict()["code"] == "unknown_service"
    assert error.details == {"service": "XYZ"}


@pytest.mark.parametrize("when", [
    (8, 59, 0),    # before opening
    (12, 0, 0),    # the session just ended
    (12, 30, 0),   # lunch break
    (17, 0, 0),    # evening
    (10, 0, 6),    # Sunday: the small hall is closed
    (14, 30, 5),   # Saturday afternoon
], ids=["before-opening", "at-close", "lunch", "evening", "sunday", "saturday-afternoon"])
def test_take_number_when_hall_closed(small_hall, when):
    hour, minute, day = when
    desk = Desk(small_hall, slot(hour, minute, day=day), step=0)
    desk.rejects(err.HallClosed, cmd.TakeNumber, service="A")


@pytest.mark.parametrize("when", [(9, 0, 0), (14, 0, 0), (11, 59, 0), (10, 0, 5)],
                         ids=["opening", "afternoon", "last-minute", "saturday-morning"])
def test_take_number_when_hall_open(small_hall, when):
    hour, minute, day = when
    desk = Desk(small_hall, slot(hour, minute, day=day), step=0)
    assert desk.take("A").number == "A001"


def test_hours_apply_when_numbers_never_reset(make_hall):
    desk = Desk(make_hall({"hall": {"reset_numbers": "never"}}), slot(8))
    booking = desk.book("A", slot(14))
    desk.rejects(err.HallClosed, cmd.TakeNumber, service="A")
    desk.until(slot(12, 30))
    desk.rejects(err.HallClosed, cmd.TakeNumber, service="A")
    desk.until(slot(13, 30))
    desk.rejects(err.HallClosed, cmd.CheckIn, ticket=booking.id)


def test_issue_cutoff_stops_numbers_before_the_close(make_hall):
    hall = make_hall({"hours": {"issue_cutoff_min": 30}})
    desk = Desk(hall, slot(11, 29) - 1)
    assert desk.take("A").number == "A001"
    desk.until(slot(11, 30) - 1)
    desk.rejects(err.HallClosed, cmd.TakeNumber, service="A")


@pytest.mark.parametrize("when, issuing", [
    ((11, 29, 0), True), ((11, 31, 0), False),    # numbers stop 30 min before the noon close
    ((13, 30, 0), True), ((16, 31, 0), False),
    ((10, 0, 5), True), ((14, 0, 5), False),      # Saturday: morning special session only
    ((10, 0, 6), False),                          # closed on Sundays
], ids=["before-cutoff", "in-cutoff", "afternoon", "evening-cutoff", "saturday", "saturday-pm", "sunday"])
def test_qingdao_issuing_hours(qingdao_hall, when, issuing):
    hour, minute, day = when
    desk = Desk(qingdao_hall, slot(hour, minute, day=day), step=0)
    if issuing:
        assert desk.take("TAX-INV").number == "A001"
    else:
        desk.rejects(err.HallClosed, cmd.TakeNumber, service="TAX-INV")


# ---------------------------------------------------------------------- book a slot


def test_book_slot_holds_capacity_without_a_number(desk):
    (event,) = desk.do(cmd.BookSlot, service="A", slot_start=slot(10))
    assert isinstance(event, ev.SlotBooked)
    assert (event.slot_start, event.slot_end, event.green) == (slot(10), slot(10, 30), False)
    ticket = desk.ticket(event.ticket)
    assert (ticket.status, ticket.number, ticket.channel) == ("booked", None, "appointment")
    assert desk.engine.snapshot()["bookings"] == [["A", slot(10), 1]]
    assert desk.engine.statistics().waiting == 0


def test_book_a_slot_on_a_later_day(desk):
    assert desk.book("B", slot(14, 30, day=2)).slot_start == slot(14, 30, day=2)


def test_book_the_slot_that_is_running(desk):
    assert desk.book("A", slot(9, 30)).slot_end == slot(10)


@pytest.mark.parametrize("start", [
    slot(10, 10),        # off the 30-minute grid
    slot(12),            # lunch break
    slot(11, 45),        # would run past the session end
    slot(8, 30),         # before opening
    slot(10, day=6),     # Sunday
    slot(9),             # already over
], ids=["off-grid", "lunch", "past-session-end", "before-opening", "sunday", "over"])
def test_book_invalid_slot(desk, start):
    desk.rejects(err.InvalidSlot, cmd.BookSlot, service="A", slot_start=start)


def test_book_service_without_capacity(desk):
    error = desk.rejects(err.InvalidSlot, cmd.BookSlot, service="C", slot_start=slot(10))
    assert error.details == {"service": "C"}


def test_book_unknown_service(desk):
    desk.rejects(err.UnknownService, cmd.BookSlot, service="Q", slot_start=slot(10))


def test_slot_full_per_service(desk):
    desk.book("A", slot(10))
    desk.book("A", slot(10))
    error = desk.rejects(err.SlotFull, cmd.BookSlot, service="A", slot_start=slot(10))
    assert error.details["capacity"] == 2
    assert desk.book("B", slot(10)).service == "B"
    assert desk.book("A", slot(10, 30)).service == "A"


def test_cancelling_a_booking_frees_its_place(desk):
    first = desk.book("A", slot(10))
    desk.book("A", slot(10))
    desk.do(cmd.Cancel, ticket=first.id)
    assert desk.ticket(first.id).status == "cancelled"
    assert desk.book("A", slot(10)).id == 3
    desk.rejects(err.SlotFull, cmd.BookSlot, service="A", slot_start=slot(10))


# ---------------------------------------------------------------------- check in


def test_check_in_during_the_slot_ranks_with_credit(desk):
    booking = desk.book("A", slot(9, 30))
    (event,) = desk.do(cmd.CheckIn, ticket=booking.id)
    assert isinstance(event, ev.CheckedIn)
    assert (event.number, event.klass, event.late, event.not_before) == ("A001", "normal", False, desk.now)
    assert event.rank == desk.now - CREDIT
    assert desk.ticket("A001").status == "waiting"
    assert desk.engine.statistics().waiting == 1


def test_early_check_in_is_held_until_the_slot(desk):
    booking = desk.book("A", slot(10))
    ticket = desk.check_in(booking.id)
    assert ticket.rank == slot(10) - CREDIT
    stats = desk.engine.statistics()
    assert (stats.waiting, stats.held) == (0, 1)
    assert desk.engine.position(ticket.id).status == "waiting"


def test_green_appointment_gets_both_credits(desk):
    booking = desk.book("B", slot(10), green=True)
    ticket = desk.check_in(booking.id)
    assert (ticket.klass, ticket.rank) == ("priority", slot(10) - CREDIT - GREEN)


def test_appointment_class_priority(make_hall, monday_0930):
    desk = Desk(make_hall({"policy": {"appointment_class": "priority"}}), monday_0930)
    assert desk.check_in(desk.book("A", slot(9, 30)).id).klass == "priority"


def test_check_in_too_early(desk):
    booking = desk.book("A", slot(11))
    error = desk.rejects(err.CheckInRejected, cmd.CheckIn, ticket=booking.id)
    assert error.details["opens_at"] == slot(10)


def test_check_in_early_but_in_the_lunch_break(small_hall):
    desk = Desk(small_hall, slot(11, 50))
    booking = desk.book("A", slot(14))
    desk.until(slot(13, 30))
    desk.rejects(err.HallClosed, cmd.CheckIn, ticket=booking.id)


def test_late_within_grace_keeps_the_credit(desk):
    booking = desk.book("A", slot(10))
    desk.until(slot(10, 44))
    ticket = desk.check_in(booking.id)
    assert (ticket.late, ticket.rank) == (False, desk.now - CREDIT)


def test_late_beyond_grace_is_a_walk_in(desk):
    booking = desk.book("A", slot(10), green=True)
    desk.until(slot(10, 46))
    ticket = desk.check_in(booking.id)
    assert (ticket.late, ticket.klass, ticket.rank) == (True, "priority", desk.now - GREEN)


def test_late_beyond_grace_rejected_under_reject_rule(make_hall, monday_0930):
    desk = Desk(make_hall({"appointments": {"late_rule": "reject"}}), monday_0930)
    booking, late = desk.book("A", slot(10)), desk.book("B", slot(10))
    desk.until(slot(10, 44))
    assert not desk.check_in(booking.id).late
    desk.until(slot(10, 46))
    desk.rejects(err.CheckInRejected, cmd.CheckIn, ticket=late.id)


def test_check_in_twice(desk):
    booking = desk.book("A", slot(9, 30))
    desk.check_in(booking.id)
    error = desk.rejects(err.InvalidState, cmd.CheckIn, ticket="A001")
    assert error.details == {"ticket": booking.id, "status": "waiting"}


def test_check_in_a_walk_in_ticket(desk):
    desk.take("A")
    desk.rejects(err.InvalidState, cmd.CheckIn, ticket="A001")


@pytest.mark.parametrize("ref", [99, "A999", "a001", ""])
def test_check_in_unknown_ticket(desk, ref):
    desk.take("A")
    error = desk.rejects(err.UnknownTicket, cmd.CheckIn, ticket=ref)
    assert error.details == {"ticket": ref}


# ---------------------------------------------------------------------- cancel


def test_cancel_a_waiting_ticket_by_number(desk):
    desk.take("A")
    desk.take("A")
    desk.do(cmd.Cancel, ticket="A001")
    assert desk.ticket(1).status == "cancelled"
    assert desk.engine.statistics().waiting == 1
    desk.rejects(err.InvalidState, cmd.Cancel, ticket="A001")


def test_cancel_an_early_check_in(desk):
    desk.check_in(desk.book("A", slot(10)).id)
    desk.do(cmd.Cancel, ticket="A001")
    assert desk.engine.statistics().held == 0


def test_cancel_a_called_ticket(desk):
    desk.take("A")
    desk.open(1)
    desk.call(1)
    desk.rejects(err.InvalidState, cmd.Cancel, ticket="A001")


def test_cancel_a_parked_ticket_the_citizen_leaves(desk):
    desk.take("A")
    desk.open(1)
    desk.call(1)
    desk.do(cmd.Park, window=1)
    desk.do(cmd.Cancel, ticket="A001")
    assert desk.ticket("A001").status == "cancelled"
    desk.rejects(err.InvalidState, cmd.ReturnTicket, ticket="A001")


def test_cancel_unknown(desk):
    desk.rejects(err.UnknownTicket, cmd.Cancel, ticket=7)


# ---------------------------------------------------------------------- requeue and return


@pytest.fixture
def no_show(desk) -> int:
    """Ticket A001 called at window 1 and marked no-show after two recalls; B001 waits."""
    desk.take("A")
    desk.take("B")
    desk.open(1)
    desk.call(1)
    desk.do(cmd.Recall, window=1)
    desk.do(cmd.Recall, window=1)
    desk.do(cmd.NoShow, window=1)
    return 1


def test_requeue_back_goes_to_the_end(desk, no_show):
    (event,) = desk.do(cmd.Requeue, ticket="A001")
    assert event == ev.TicketRequeued(desk.now, no_show, desk.now)
    assert desk.ticket(no_show).status == "waiting"
    assert desk.drain(1) == ["B001", "A001"]


def test_requeue_keep_holds_the_place(make_hall, monday_0930):
    desk = Desk(make_hall({"policy": {"requeue": "keep"}}), monday_0930)
    first = desk.take("A")
    desk.take("B")
    desk.open(1)
    desk.call(1)
    for command in (cmd.Recall, cmd.Recall, cmd.NoShow):
        desk.do(command, window=1)
    assert desk.one(cmd.Requeue, ticket="A001").rank == first.issued_at
    assert desk.drain(1) == ["A001", "B001"]


def test_requeue_a_waiting_ticket(desk):
    desk.take("A")
    desk.rejects(err.InvalidState, cmd.Requeue, ticket="A001")


def test_requeue_after_closing_time(desk, no_show):
    desk.until(slot(12, 5))
    desk.rejects(err.HallClosed, cmd.Requeue, ticket=no_show)


def test_return_a_ticket_that_is_not_parked(desk):
    desk.take("A")
    desk.rejects(err.InvalidState, cmd.ReturnTicket, ticket="A001")
    desk.rejects(err.UnknownTicket, cmd.ReturnTicket, ticket="B001")


# ---------------------------------------------------------------------- position


def test_position_counts_ahead_and_estimates_with_open_windows(desk):
    tickets = [desk.take("A") for _ in range(4)]
    desk.take("B")
    last = desk.engine.position(tickets[-1].id)
    # before any window opened: the hall's configured windows for A (1, 2, 3: 1/3 + 1/2 + 1/2)
    assert (last.ahead, last.estimated_wait_s, last.status) == (3, 4 * 10 * 60 * 3 / 4, "waiting")
    # a free window takes the first in line at once: A004 waits for 3 + 1 - (free windows)
    desk.open(2)  # serves A and B: half a window for A, by configuration (no calls measured yet)
    assert desk.engine.position(tickets[-1].id).estimated_wait_s == 3 * 10 * 60 * 2
    desk.open(1)  # universal: a third of a window more for each of A, B and C
    assert [desk.engine.position(t.id).ahead for t in tickets] == [0, 1, 2, 3]
    assert desk.engine.position("A004").estimated_wait_s == 2 * 10 * 60 * 6 / 5
    assert desk.engine.position("B001").estimated_wait_s == 0.0  # two windows free for B
    desk.call(1)
    desk.call(2)  # both busy now
    assert desk.engine.position("A004").estimated_wait_s == 2 * desk.engine.estimate_at("A", 0)


def test_position_counts_green_tickets_ahead(desk):
    desk.take("A")
    desk.take("A")
    green = desk.take("A", green=True)
    assert desk.engine.position(green.id).ahead == 0
    assert desk.engine.position("A001").ahead == 1


def test_position_of_a_ticket_out_of_the_queue(desk):
    desk.take("A")
    desk.open(1)
    desk.call(1)
    position = desk.engine.position("A001")
    assert (position.status, position.ahead, position.estimated_wait_s, position.window) == ("called", 0, None, 1)
    with pytest.raises(err.UnknownTicket):
        desk.engine.position("A002")
