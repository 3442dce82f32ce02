"""Clerk and manager commands: window states, calling, recall, service, transfer, park, reset."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from callsys import commands as cmd
from callsys import errors as err
from callsys import events as ev
from callsys.engine import decide

from conftest import hall_time
from engine_support import Desk


@pytest.fixture
def desk(small_hall, monday_0930) -> Desk:
    return Desk(small_hall, monday_0930)


@pytest.fixture
def called(desk) -> Desk:
    """A001 and A002 waiting; window 1 open and A001 called to it; window 2 open and idle."""
    desk.take("A")
    desk.take("A")
    desk.open(1, 2)
    desk.call(1)
    return desk


CODES = {
    err.CallsysError: "error", err.ConfigError: "config_error", err.EngineError: "rejected",
    err.UnknownWindow: "unknown_window", err.UnknownService: "unknown_service",
    err.UnknownTicket: "unknown_ticket", err.InvalidState: "invalid_state", err.WindowClosed: "window_closed",
    err.WindowBusy: "window_busy", err.WindowIdle: "window_idle", err.QueueEmpty: "queue_empty",
    err.HallClosed: "hall_closed", err.InvalidSlot: "invalid_slot", err.SlotFull: "slot_full",
    err.CheckInRejected: "checkin_rejected", err.RecallLimit: "recall_limit",
    err.InvalidArgument: "invalid_argument", err.KeyReused: "key_reused",
    err.InvalidResidentId: "invalid_resident_id", err.QrRefused: "qr_refused",
    err.AlreadyHolding: "already_holding", err.BookingBlocked: "booking_blocked",
    err.DailyCapReached: "daily_cap_reached", err.PastClosing: "past_closing",
}


@pytest.mark.parametrize("error, code", CODES.items(), ids=[c.__name__ for c in CODES])
def test_error_codes_are_stable(error, code):
    assert error.code == code
    assert issubclass(error, err.CallsysError)


def test_every_engine_error_is_pinned():
    assert set(err.EngineError.__subclasses__()) == set(CODES) - {err.CallsysError, err.ConfigError, err.EngineError}


def test_error_to_dict():
    error = err.WindowBusy("window 3 is busy", window=3, ticket=7)
    assert error.to_dict() == {"code": "window_busy", "message": "window 3 is busy",
                               "details": {"window": 3, "ticket": 7}}
    assert err.QueueEmpty("empty").to_dict() == {"code": "queue_empty", "message": "empty"}


def test_unknown_command_kind(small_hall, monday_0930):
    @dataclass(frozen=True)
    class Dance(cmd.Command):
        kind = "dance"

    desk = Desk(small_hall, monday_0930)
    with pytest.raises(err.InvalidArgument):
        decide(desk.engine.state, Dance(at=monday_0930))


# ---------------------------------------------------------------------- window states


def test_window_lifecycle(desk):
    stats = desk.engine.statistics
    assert desk.do(cmd.OpenWindow, window=2) == [ev.WindowOpened(desk.now, 2)]
    assert (stats().windows_open, stats().windows_paused) == (1, 0)
    assert desk.do(cmd.Pause, window=2) == [ev.WindowPaused(desk.now, 2)]
    assert (stats().windows_open, stats().windows_paused) == (0, 1)
    assert desk.do(cmd.Resume, window=2) == [ev.WindowResumed(desk.now, 2)]
    assert desk.do(cmd.CloseWindow, window=2) == [ev.WindowClosed(desk.now, 2)]
    assert desk.engine.state.windows[2].status == "closed"
    desk.open(2)
    desk.do(cmd.Pause, window=2)
    desk.do(cmd.CloseWindow, window=2)
    assert stats().windows_open == stats().windows_paused == 0


@pytest.mark.parametrize("kind", [cmd.OpenWindow, cmd.CloseWindow, cmd.Pause, cmd.Resume, cmd.CallNext,
                                  cmd.Recall, cmd.NoShow, cmd.StartService, cmd.FinishService, cmd.Park])
def test_unknown_window(desk, kind):
    error = desk.rejects(err.UnknownWindow, kind, window=99)
    assert error.details == {"window": 99}


@pytest.mark.parametrize("kind, fields", [
    (cmd.CallNumber, {"ticket": 1}), (cmd.Transfer, {"service": "B"}), (cmd.ReassignSkills, {"skills": ("A",)}),
])
def test_unknown_window_with_arguments(desk, kind, fields):
    desk.take("A")
    desk.rejects(err.UnknownWindow, kind, window=42, **fields)


@pytest.mark.parametrize("kind, status", [
    (cmd.OpenWindow, "open"), (cmd.Resume, "open"), (cmd.Resume, "closed"), (cmd.Pause, "closed"),
    (cmd.Pause, "paused"), (cmd.CloseWindow, "closed"), (cmd.OpenWindow, "paused"),
])
def test_window_move_from_wrong_status(desk, kind, status):
    if status != "closed":
        desk.open(3)
    if status == "paused":
        desk.do(cmd.Pause, window=3)
    error = desk.rejects(err.InvalidState, kind, window=3)
    assert error.details == {"window": 3, "status": status}


@pytest.mark.parametrize("kind", [cmd.Pause, cmd.CloseWindow])
def test_busy_window_cannot_pause_or_close(called, kind):
    error = called.rejects(err.WindowBusy, kind, window=1)
    assert error.details == {"window": 1, "ticket": 1}


# ---------------------------------------------------------------------- calling


def test_call_next(desk):
    desk.take("A")
    desk.open(2)
    assert desk.do(cmd.CallNext, window=2) == [ev.TicketCalled(desk.now, 1, 2, "A001", "A", False)]
    ticket = desk.ticket(1)
    assert (ticket.status, ticket.window, ticket.called_at, ticket.recalls) == ("called", 2, desk.now, 0)
    assert desk.engine.state.windows[2].current == 1
    stats = desk.engine.statistics()
    assert (stats.waiting, stats.windows_busy, stats.totals["called"]) == (0, 1, 1)


@pytest.mark.parametrize("pause", [False, True], ids=["closed", "paused"])
def test_call_next_at_a_closed_or_paused_window(desk, pause):
    desk.take("A")
    if pause:
        desk.open(2)
        desk.do(cmd.Pause, window=2)
    error = desk.rejects(err.WindowClosed, cmd.CallNext, window=2)
    assert error.details["status"] == ("paused" if pause else "closed")


def test_double_next_is_busy(called):
    error = called.rejects(err.WindowBusy, cmd.CallNext, window=1)
    assert error.details == {"window": 1, "ticket": 1}


def test_call_next_with_nobody_waiting(desk):
    desk.take("C")
    desk.open(2)
    error = desk.rejects(err.QueueEmpty, cmd.CallNext, window=2)
    assert error.details == {"window": 2}


@pytest.mark.parametrize("ref", [2, "A002"])
def test_call_number(called, ref):
    (event,) = called.do(cmd.CallNumber, window=2, ticket=ref)
    assert event == ev.TicketCalled(called.now, 2, 2, "A002", "A", True)
    assert called.ticket(2).status == "called"


def test_call_number_out_of_order(desk):
    for _ in range(3):
        desk.take("B")
    desk.open(3)
    desk.do(cmd.CallNumber, window=3, ticket="B003")
    desk.do(cmd.FinishService, window=3)
    assert desk.drain(3) == ["B001", "B002"]


def test_call_number_of_a_service_the_window_does_not_serve(desk):
    desk.take("C")
    desk.open(2)
    error = desk.rejects(err.InvalidState, cmd.CallNumber, window=2, ticket="C001")
    assert error.details == {"window": 2, "service": "C"}


def test_call_number_of_a_called_ticket(called):
    called.rejects(err.InvalidState, cmd.CallNumber, window=2, ticket="A001")


def test_call_number_unknown(called):
    called.rejects(err.UnknownTicket, cmd.CallNumber, window=2, ticket="B001")


def test_call_number_at_a_busy_or_closed_window(called):
    called.rejects(err.WindowBusy, cmd.CallNumber, window=1, ticket="A002")
    called.rejects(err.WindowClosed, cmd.CallNumber, window=3, ticket="A002")


# ---------------------------------------------------------------------- recall and no-show


def test_recall_until_the_limit_then_no_show(called):
    first = called.do(cmd.Recall, window=1)
    assert first == [ev.TicketRecalled(called.now, 1, 1, "A001", 1)]
    assert called.do(cmd.Recall, window=1)[0].recalls == 2
    error = called.rejects(err.RecallLimit, cmd.Recall, window=1)
    assert error.details == {"ticket": 1, "recalls": 2, "limit": 2}
    assert called.do(cmd.NoShow, window=1) == [ev.TicketNoShow(called.now, 1, 1)]
    assert called.ticket(1).status == "no_show"
    assert called.engine.state.windows[1].current is None
    assert called.call(1).number == "A002"


def test_no_show_before_the_limit(called):
    called.do(cmd.Recall, window=1)
    error = called.rejects(err.RecallLimit, cmd.NoShow, window=1)
    assert error.details == {"ticket": 1, "recalls": 1, "limit": 2}


def test_no_show_immediately_with_limit_zero(make_hall, monday_0930):
    desk = Desk(make_hall({"policy": {"recall_limit": 0}}), monday_0930)
    desk.take("A")
    desk.open(1)
    desk.call(1)
    desk.rejects(err.RecallLimit, cmd.Recall, window=1)
    assert desk.do(cmd.NoShow, window=1)[0].ticket == 1


@pytest.mark.parametrize("kind", [cmd.Recall, cmd.NoShow, cmd.StartService, cmd.FinishService,
                                  cmd.Park])
def test_window_idle(called, kind):
    error = called.rejects(err.WindowIdle, kind, window=2)
    assert error.details == {"window": 2}


def test_transfer_from_idle_window(called):
    called.rejects(err.WindowIdle, cmd.Transfer, window=2, service="B")


@pytest.mark.parametrize("kind", [cmd.Recall, cmd.NoShow, cmd.StartService])
def test_commands_for_a_called_ticket_reject_one_in_service(called, kind):
    called.do(cmd.StartService, window=1)
    error = called.rejects(err.InvalidState, kind, window=1)
    assert error.details == {"ticket": 1, "status": "serving"}


# ---------------------------------------------------------------------- service


def test_start_and_finish_with_rating(called):
    assert called.do(cmd.StartService, window=1) == [ev.ServiceStarted(called.now, 1, 1)]
    started = called.now
    assert called.do(cmd.FinishService, window=1, rating="good", score=5) == [
        ev.ServiceFinished(called.now, 1, 1, "good", 5)]
    ticket = called.ticket(1)
    assert (ticket.status, ticket.started_at, ticket.finished_at) == ("done", started, called.now)
    assert (ticket.rating, ticket.score) == ("good", 5)
    window = called.engine.state.windows[1]
    assert (window.current, window.served) == (None, 1)
    totals = called.engine.statistics().totals
    assert (totals["served"], totals["rated_good"]) == (1, 1)


def test_finish_straight_after_the_call(called):
    called.do(cmd.FinishService, window=1, rating="bad")
    ticket = called.ticket(1)
    assert (ticket.status, ticket.started_at, ticket.rating, ticket.score) == ("done", called.now, "bad", None)
    assert called.engine.statistics().totals["rated_bad"] == 1


@pytest.mark.parametrize("fields", [
    {"rating": "ok"}, {"rating": "GOOD"}, {"score": 0}, {"score": 6}, {"score": True}, {"score": 2.5},
    {"score": "5"},
], ids=["rating-ok", "rating-case", "score-0", "score-6", "score-bool", "score-float", "score-str"])
def test_finish_with_bad_rating_or_score(called, fields):
    called.rejects(err.InvalidArgument, cmd.FinishService, window=1, **fields)


# ---------------------------------------------------------------------- transfer and park


@pytest.mark.parametrize("fields", [{}, {"service": "B", "to_window": 2}], ids=["neither", "both"])
def test_transfer_needs_exactly_one_target(called, fields):
    called.rejects(err.InvalidArgument, cmd.Transfer, window=1, **fields)


def test_transfer_to_own_window(called):
    error = called.rejects(err.InvalidArgument, cmd.Transfer, window=1, to_window=1)
    assert error.details == {"window": 1}


def test_transfer_to_unknown_targets(called):
    called.rejects(err.UnknownService, cmd.Transfer, window=1, service="Z")
    called.rejects(err.UnknownWindow, cmd.Transfer, window=1, to_window=77)


def test_transfer_to_a_closed_window_goes_back_to_the_service_queue(called):
    """A closed window keeps no queue: the citizen is not left waiting for it."""
    called.do(cmd.Transfer, window=1, to_window=3)
    ticket = called.ticket(1)
    assert (ticket.status, ticket.window) == ("waiting", None)
    assert called.call(2).number == "A001"     # original rank, any window serving A


def test_transfer_to_an_open_window_waits_for_that_window(called):
    called.open(3)
    called.do(cmd.Transfer, window=1, to_window=3)
    assert called.ticket(1).window == 3
    assert called.call(2).number == "A002"     # not for the other windows
    assert called.call(3).number == "A001"


def test_transfer_to_another_service(called):
    called.do(cmd.StartService, window=1)
    (event,) = called.do(cmd.Transfer, window=1, service="B")
    assert event == ev.TicketTransferred(called.now, 1, 1, "B", None)
    ticket = called.ticket(1)
    assert (ticket.status, ticket.service, ticket.number, ticket.transfers) == ("waiting", "B", "A001", 1)
    assert (ticket.called_at, ticket.started_at) == (None, None)
    assert called.engine.state.windows[1].current is None
    assert called.engine.statistics().waiting_by_service["B"] == 1


def test_transfer_to_another_window(called):
    called.open(4)
    (event,) = called.do(cmd.Transfer, window=1, to_window=4)
    assert (event.service, event.to_window) == ("A", 4)
    ticket = called.ticket(1)
    assert (ticket.status, ticket.window) == ("waiting", 4)
    assert called.engine.position(1).ahead == 0


def test_park_and_return(called):
    called.do(cmd.StartService, window=1)
    assert called.do(cmd.Park, window=1) == [ev.TicketParked(called.now, 1, 1)]
    assert called.ticket(1).status == "parked"
    assert called.call(1).number == "A002"
    assert called.do(cmd.ReturnTicket, ticket="A001") == [ev.TicketReturned(called.now, 1, 1)]
    assert called.ticket(1).status == "waiting"
    called.rejects(err.InvalidState, cmd.ReturnTicket, ticket="A001")


# ---------------------------------------------------------------------- reassign


def test_reassign_skills(desk):
    assert desk.do(cmd.ReassignSkills, window=4, skills=("B", "A")) == [
        ev.SkillsReassigned(desk.now, 4, ("B", "A"))]
    assert desk.engine.state.windows[4].skillset == {"A", "B"}
    assert desk.do(cmd.ReassignSkills, window=4, skills=("*",))[0].skills == ("A", "B", "C")


@pytest.mark.parametrize("skills, error", [
    ((), err.InvalidArgument), (("A", "A"), err.InvalidArgument), (("A", "Q"), err.UnknownService),
    (("*", "A"), err.UnknownService),
], ids=["empty", "duplicate", "unknown", "star-mixed"])
def test_reassign_rejects(desk, skills, error):
    desk.rejects(error, cmd.ReassignSkills, window=4, skills=skills)


def test_reassign_a_busy_window_keeps_its_citizen(called):
    called.do(cmd.ReassignSkills, window=1, skills=("C",))
    assert called.engine.state.windows[1].current == 1
    called.do(cmd.FinishService, window=1)
    called.rejects(err.QueueEmpty, cmd.CallNext, window=1)


# ---------------------------------------------------------------------- reset day


def test_reset_day_expires_open_tickets_and_closes_windows(called):
    called.do(cmd.StartService, window=1)
    called.do(cmd.FinishService, window=1)
    called.take("B")
    called.call(2)
    called.take("C")
    past = called.book("A", hall_time(9, 30))
    future = called.book("A", hall_time(10, day=1))
    called.until(hall_time(18))
    (event,) = called.do(cmd.ResetDay)
    assert sorted(event.expired) == sorted([2, 3, 4, past.id])  # A002, B001 (called), C001, the old booking
    state = called.engine.state
    assert list(state.tickets) == [future.id]
    assert all(w.status == "closed" and w.current is None for w in state.windows.values())
    stats = called.engine.statistics()
    assert (stats.waiting, stats.windows_open, stats.totals["expired"]) == (0, 0, 4)
    assert state.bookings == {("A", hall_time(10, day=1)): 1}
    called.until(hall_time(9, day=1))
    assert called.take("A").number == "A001"
    assert called.check_in(future.id).number == "A002"


# ---------------------------------------------------------------------- clerk identity (工号)


def test_a_clerk_signs_in_and_every_service_ending_at_the_window_names_them(desk):
    for _ in range(4):
        desk.take("A")
    (opened,) = desk.do(cmd.OpenWindow, window=1, clerk="A1024")
    assert opened == ev.WindowOpened(opened.at, 1, "A1024")
    assert desk.engine.state.windows[1].clerk == "A1024"
    desk.call(1)
    (finished,) = desk.do(cmd.FinishService, window=1, rating="bad", score=1)
    assert finished.clerk == "A1024"
    assert desk.engine.state.tickets[finished.ticket].clerk == "A1024"
    desk.call(1)
    (moved,) = desk.do(cmd.Transfer, window=1, service="B")
    assert moved.clerk == "A1024"
    desk.call(1)
    for _ in range(desk.engine.hall.policy.recall_limit):
        desk.do(cmd.Recall, window=1)
    (gone,) = desk.do(cmd.NoShow, window=1)
    assert gone.clerk == "A1024"


def test_the_clerk_leaves_with_the_window_and_the_next_one_is_named(desk):
    desk.take("A")
    desk.take("A")
    desk.do(cmd.OpenWindow, window=1, clerk="A1024")
    desk.serve(1)
    desk.do(cmd.CloseWindow, window=1)
    assert desk.engine.state.windows[1].clerk is None
    desk.do(cmd.OpenWindow, window=1, clerk="B2048")
    desk.call(1)
    assert desk.do(cmd.FinishService, window=1)[0].clerk == "B2048"
    desk.do(cmd.ResetDay)
    assert desk.engine.state.windows[1].clerk is None


def test_an_anonymous_window_names_no_clerk(desk):
    desk.take("A")
    desk.open(1)
    desk.call(1)
    assert desk.do(cmd.FinishService, window=1)[0].clerk is None


@pytest.mark.parametrize("clerk", ["", " A1024", "A1024\n", "x" * (cmd.MAX_CLERK + 1), 1024, ["A1"]])
def test_open_window_refuses_a_bad_staff_id(desk, clerk):
    error = desk.rejects(err.InvalidArgument, cmd.OpenWindow, window=1, clerk=clerk)
    assert "clerk" in str(error)
    assert desk.engine.state.windows[1].status == "closed"


def test_the_clerk_survives_snapshot_and_replay_and_old_records_still_load(desk):
    from callsys.engine import QueueEngine
    from callsys.state import HallState, apply

    desk.take("A")
    desk.do(cmd.OpenWindow, window=1, clerk="工号-0007")
    desk.call(1)
    snapshot = desk.engine.snapshot()
    restored = QueueEngine.restore(desk.engine.hall, snapshot)
    assert restored.state.windows[1].clerk == "工号-0007"
    assert restored.snapshot() == snapshot
    replayed = HallState(desk.engine.hall)
    for event in desk.events:
        apply(replayed, event)
    assert replayed.snapshot() == snapshot
    # a snapshot and events written before clerks were named: no clerk, same state otherwise
    old = dict(snapshot, windows=[row[:6] for row in snapshot["windows"]])
    assert HallState.from_snapshot(desk.engine.hall, old).windows[1].clerk is None
    assert ev.from_row(["window_opened", 1.0, 3]) == ev.WindowOpened(1.0, 3, None)
    assert ev.from_record({"kind": "service_finished", "at": 1.0, "ticket": 7, "window": 3,
                           "rating": "good", "score": 5}).clerk is None
