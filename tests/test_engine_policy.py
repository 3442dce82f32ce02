"""The calling policy: who "next" picks, where tickets rank, and that it stays O(log n)."""

from __future__ import annotations

import sys
from collections import Counter

import pytest

from callsys import commands as cmd
from callsys import errors as err

from conftest import hall_time
from engine_support import Desk

MINUTE = 60.0


@pytest.fixture
def desk(small_hall) -> Desk:
    """The small hall from opening time on Monday (the first command comes at 09:00:01)."""
    return Desk(small_hall, hall_time(9))


def take_at(desk: Desk, hour: int, minute: int, service: str = "A", **fields) -> str:
    desk.until(hall_time(hour, minute) - desk.step)
    return desk.take(service, **fields).number


# ---------------------------------------------------------------------- rank


def test_fifo_within_a_service(desk):
    for _ in range(5):
        desk.take("A")
    desk.open(2)
    assert desk.drain(2) == ["A001", "A002", "A003", "A004", "A005"]


def test_rank_order_across_the_services_of_a_window(desk):
    for service in ("A", "B", "A", "B", "B"):
        desk.take(service)
    desk.open(2)
    assert desk.drain(2) == ["A001", "B001", "A002", "B002", "B003"]


def test_green_credit_jumps_ahead_by_the_credit(desk):
    take_at(desk, 9, 30)        # A001 ranks 09:30
    take_at(desk, 9, 45)        # A002 ranks 09:45
    take_at(desk, 10, 10, green=True)  # A003 ranks 09:40
    take_at(desk, 10, 20, green=True)  # A004 ranks 09:50
    desk.open(1)
    assert desk.drain(1) == ["A001", "A003", "A002", "A004"]


def test_appointment_credit(desk):
    booking = desk.book("A", hall_time(10))
    take_at(desk, 9, 49)        # ranks before the appointment (10:02 - 10 min)
    take_at(desk, 9, 55)        # ranks after it
    desk.until(hall_time(10, 2))
    assert desk.check_in(booking.id).rank == desk.now - 10 * MINUTE
    desk.open(2)
    assert desk.drain(2) == ["A001", "A003", "A002"]


def test_early_check_in_is_held_until_the_slot_starts(desk):
    booking = desk.book("A", hall_time(10))
    desk.check_in(booking.id)                      # A001 at 09:30, held until 10:00, ranks 09:50
    take_at(desk, 9, 45)                           # A002
    take_at(desk, 9, 55)                           # A003
    desk.open(1, 2)
    assert desk.call(1).number == "A002"
    desk.do(cmd.FinishService, window=1)
    assert desk.call(1).number == "A003"           # the held appointment is not callable yet
    desk.rejects(err.QueueEmpty, cmd.CallNext, window=2)
    assert desk.engine.statistics().held == 1
    desk.until(hall_time(10) - desk.step)
    assert desk.call(2).number == "A001"           # callable from the slot start
    assert desk.ticket("A001").eligible_at == hall_time(10)


def test_held_appointment_ranks_at_slot_start_minus_credit(desk):
    booking = desk.book("A", hall_time(10))
    desk.check_in(booking.id)
    take_at(desk, 9, 45)
    take_at(desk, 9, 55)
    desk.until(hall_time(10, 5))
    desk.open(2)
    assert desk.drain(2) == ["A002", "A001", "A003"]


def test_late_within_grace_keeps_its_place_beyond_grace_does_not(desk):
    in_grace, too_late = desk.book("A", hall_time(10)), desk.book("B", hall_time(10))
    take_at(desk, 10, 33)                                        # A001
    take_at(desk, 10, 36, service="B")                           # B001
    desk.until(hall_time(10, 40))
    assert desk.check_in(in_grace.id).number == "A002"          # ranks 10:30
    desk.until(hall_time(10, 50))
    assert desk.check_in(too_late.id).number == "B002"          # walk-in: ranks 10:50
    desk.open(2)
    assert desk.drain(2) == ["A002", "A001", "B001", "B002"]


# ---------------------------------------------------------------------- interleave


@pytest.fixture
def interleaved(make_hall, monday_0930) -> Desk:
    return Desk(make_hall({"policy": {"interleave": [2, 1]}}), monday_0930)


def test_interleave_two_normal_one_priority(interleaved):
    for _ in range(6):
        interleaved.take("A")
    for _ in range(3):
        interleaved.take("A", green=True)
    interleaved.open(1)
    served = interleaved.drain(1)
    assert served == ["A001", "A002", "A007", "A003", "A004", "A008", "A005", "A006", "A009"]
    klass = ["P" if interleaved.ticket(n).green else "N" for n in served]
    assert "".join(klass) == "NNPNNPNNP"


def test_interleave_falls_back_when_a_class_is_empty(interleaved):
    for _ in range(4):
        interleaved.take("B")
    interleaved.open(3)
    assert interleaved.drain(3) == ["B001", "B002", "B003", "B004"]
    for _ in range(3):
        interleaved.take("B", green=True)
    assert interleaved.drain(3) == ["B005", "B006", "B007"]


def test_interleave_the_starved_class_goes_first_when_it_appears(interleaved):
    for _ in range(3):
        interleaved.take("A")
    interleaved.open(2)
    assert interleaved.drain(2) == ["A001", "A002", "A003"]   # the third call was a fallback
    interleaved.take("A")
    interleaved.take("A", green=True)
    assert interleaved.drain(2) == ["A005", "A004"]


def test_interleave_neither_class_starves(interleaved):
    for i in range(30):
        interleaved.take("A", green=i % 2 == 0)
    interleaved.open(1)
    served = interleaved.drain(1)
    classes = ["P" if interleaved.ticket(n).green else "N" for n in served]
    assert classes[:15] == list("NNP" * 5)
    assert Counter(classes) == {"N": 15, "P": 15}


def test_interleave_is_per_window(make_hall, monday_0930):
    desk = Desk(make_hall({"windows": [
        {"id": 1, "zone": "main", "skills": ["A"], "interleave": [1, 1]},
        {"id": 2, "zone": "main", "skills": ["A"]},
    ]}), monday_0930)
    for i in range(6):
        desk.take("A", green=i >= 3)
    desk.open(1, 2)
    assert [desk.serve(2).number for _ in range(2)] == ["A004", "A005"]  # no interleave: rank order
    assert desk.drain(1) == ["A001", "A006", "A002", "A003"]


# ---------------------------------------------------------------------- wait threshold


@pytest.fixture
def thresholded(make_hall) -> Desk:
    return Desk(make_hall({"policy": {"wait_threshold": True}}), hall_time(9) - 1)


def test_wait_threshold_calls_the_overdue_service_first(thresholded):
    take_at(thresholded, 9, 0, service="B")    # B target 30 min: overdue from 09:30
    take_at(thresholded, 9, 5, service="A")    # A target 20 min: overdue from 09:25
    thresholded.open(2)
    thresholded.until(hall_time(9, 20))
    assert thresholded.call(2).number == "B001"   # nobody overdue: rank order
    thresholded.do(cmd.FinishService, window=2)
    take_at(thresholded, 9, 21, service="B")
    thresholded.until(hall_time(9, 26))
    assert thresholded.call(2).number == "A001"   # A is overdue, B002 is not


def test_wait_threshold_longest_overdue_first(thresholded):
    take_at(thresholded, 9, 0, service="A")    # overdue from 09:20
    take_at(thresholded, 9, 1, service="A")    # overdue from 09:21
    take_at(thresholded, 9, 2, service="B")    # overdue from 09:32
    take_at(thresholded, 9, 3, service="A", green=True)  # ranks 08:33, overdue from 09:23
    thresholded.until(hall_time(9, 40))
    thresholded.open(2)
    assert thresholded.drain(2) == ["A001", "A002", "A003", "B001"]  # by rank: A003 would go first


def test_wait_threshold_off_keeps_rank_order(desk):
    take_at(desk, 9, 30, service="B")
    take_at(desk, 9, 35, service="A")
    desk.until(hall_time(11, 30))
    desk.open(2)
    assert desk.drain(2) == ["B001", "A001"]


def test_wait_threshold_ignores_services_the_window_does_not_serve(thresholded):
    take_at(thresholded, 9, 0, service="C")
    take_at(thresholded, 9, 10, service="A")
    thresholded.until(hall_time(9, 50))
    thresholded.open(2)
    assert thresholded.drain(2) == ["A001"]


# ---------------------------------------------------------------------- skills


def test_strict_skill_order_serves_the_primary_service_first(desk):
    for service in ("A", "A", "B", "A"):
        desk.take(service)
    desk.open(3)                              # strict ["B", "A"]
    assert desk.drain(3) == ["B001", "A001", "A002", "A003"]


def test_rank_skill_order_ignores_the_listing(desk):
    for service in ("A", "A", "B", "A"):
        desk.take(service)
    desk.open(2)                              # rank ["A", "B"]
    assert desk.drain(2) == ["A001", "A002", "B001", "A003"]


def test_universal_window_sees_every_service(desk):
    for service in ("C", "B", "A", "C"):
        desk.take(service)
    desk.open(1)
    assert desk.drain(1) == ["C001", "B001", "A001", "C002"]


def test_universal_window_in_a_big_hall_scans_the_heads(qingdao_hall, monday_0930):
    universal = next(w for w in qingdao_hall.windows if w.universal)
    assert len(universal.skills) > 8
    desk = Desk(qingdao_hall, monday_0930)
    services = [s.code for s in qingdao_hall.services]
    picked = [services[i] for i in (5, 0, len(services) - 1, 5)]
    numbers = [desk.take(code).number for code in picked]
    desk.open(universal.id)
    assert desk.drain(universal.id) == numbers


def test_window_only_calls_its_services(desk):
    desk.take("C")
    desk.take("A")
    desk.open(4)
    assert desk.drain(4) == ["C001"]


def test_reassign_changes_what_next_picks(desk):
    desk.take("B")
    desk.take("A")
    desk.open(4)
    desk.rejects(err.QueueEmpty, cmd.CallNext, window=4)
    desk.do(cmd.ReassignSkills, window=4, skills=("A",))
    assert desk.call(4).number == "A001"
    desk.do(cmd.FinishService, window=4)
    desk.do(cmd.ReassignSkills, window=4, skills=("*",))
    assert desk.call(4).number == "B001"


def test_reassign_moves_open_capacity(desk):
    desk.take("C")
    desk.take("C")
    desk.open(4)
    assert desk.engine.position("C002").estimated_wait_s == 5 * MINUTE  # after C001, at the free window
    desk.do(cmd.ReassignSkills, window=4, skills=("A",))
    assert desk.engine.position("C002").estimated_wait_s is None
    desk.do(cmd.CloseWindow, window=4)
    desk.do(cmd.ReassignSkills, window=4, skills=("C",))
    assert desk.engine.position("C002").estimated_wait_s is None
    desk.open(4)
    assert desk.engine.position("C002").estimated_wait_s == 5 * MINUTE


# ---------------------------------------------------------------------- transfer, park, close


def test_transfer_to_another_service_keeps_the_original_rank(desk):
    desk.take("A")
    desk.take("B")
    desk.take("B")
    desk.open(2)
    assert desk.call(2).number == "A001"
    desk.do(cmd.Transfer, window=2, service="B")
    desk.take("B")
    desk.open(3)
    assert desk.drain(3) == ["A001", "B001", "B002", "B003"]
    assert desk.ticket("A001").service == "B"


def test_transfer_to_a_window_goes_to_its_own_queue_first(desk):
    desk.take("A")
    desk.take("A")
    desk.take("C")
    desk.open(4, 2, 1)
    assert desk.call(4).number == "C001"
    desk.do(cmd.Transfer, window=4, to_window=2)
    assert desk.call(1).number == "A001"              # not window 1's citizen
    assert desk.drain(2) == ["C001", "A002"]          # window 2 does not even serve C


def test_transferred_tickets_wait_in_rank_order_at_the_window(desk):
    desk.take("C")
    desk.take("C")
    desk.open(4, 3)
    desk.do(cmd.Pause, window=3)
    for _ in range(2):
        desk.call(4)
        desk.do(cmd.Transfer, window=4, to_window=3)
    assert desk.engine.position("C002").ahead == 1
    desk.do(cmd.Resume, window=3)
    assert desk.drain(3) == ["C001", "C002"]


def test_park_returns_to_the_parking_window(desk):
    for _ in range(3):
        desk.take("A")
    desk.open(2, 1)
    assert desk.call(2).number == "A001"
    desk.do(cmd.Park, window=2)
    assert desk.call(2).number == "A002"
    desk.do(cmd.ReturnTicket, ticket="A001")
    assert desk.call(1).number == "A003"             # window 1 does not get the returned citizen
    desk.do(cmd.FinishService, window=2)
    assert desk.call(2).number == "A001"


def test_return_after_the_parking_window_closed_goes_to_the_service_queue(desk):
    desk.take("A")
    desk.take("A")
    desk.open(2, 1)
    desk.call(2)
    desk.do(cmd.Park, window=2)
    desk.do(cmd.CloseWindow, window=2)
    desk.do(cmd.ReturnTicket, ticket="A001")
    assert desk.ticket("A001").window is None
    assert desk.engine.statistics().waiting_by_service["A"] == 2
    assert desk.drain(1) == ["A001", "A002"]


def test_closing_a_window_returns_its_own_queue(desk):
    desk.take("C")
    desk.take("C")
    desk.open(4, 2)
    desk.call(4)
    desk.do(cmd.Transfer, window=4, to_window=2)
    stats = desk.engine.statistics()
    assert (stats.waiting, stats.waiting_by_service["C"]) == (2, 1)
    desk.do(cmd.CloseWindow, window=2)
    assert desk.engine.statistics().waiting_by_service["C"] == 2
    assert desk.ticket("C001").window is None
    assert desk.drain(4) == ["C001", "C002"]


# ---------------------------------------------------------------------- numbering


@pytest.fixture
def all_day_hall(make_hall):
    return make_hall({"hours": {day: ["00:00-24:00"] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}})


def test_numbers_reset_on_a_new_local_day(all_day_hall):
    desk = Desk(all_day_hall, hall_time(23, 59))
    assert desk.take("A").number == "A001"
    assert desk.take("A").number == "A002"
    desk.until(hall_time(0, 0, day=1))
    assert desk.take("A").number == "A001"             # local midnight, not UTC midnight
    desk.until(hall_time(8, 0, day=1))                  # UTC midnight
    assert desk.take("A").number == "A002"
    assert desk.ticket("A001").id == 3                  # today's A001
    desk.open(1)
    assert desk.call(1).id == 1                         # yesterday's citizens still wait first


def test_numbers_never_reset(make_hall, monday_0930):
    desk = Desk(make_hall({"hall": {"reset_numbers": "never"}}), monday_0930)
    desk.take("A")
    desk.until(hall_time(9, 30, day=1))
    assert desk.take("A").number == "A002"


def test_numbers_wrap_the_format_not_the_sequence(make_hall, monday_0930):
    desk = Desk(make_hall({"hall": {"number_width": 1}}), monday_0930, step=0.5)
    numbers = [desk.take("B").number for _ in range(11)]
    assert numbers[0] == "B1" and numbers[8] == "B9" and numbers[10] == "B11"


# ---------------------------------------------------------------------- position


def test_position_follows_call_order(desk):
    desk.check_in(desk.book("A", hall_time(9)).id)
    for green in (False, True, False, False, True):
        desk.take("A", green=green)
    order = sorted(desk.engine.state.book.where, key=lambda tid: desk.engine.position(tid).ahead)
    assert [desk.engine.position(t).ahead for t in order] == list(range(6))
    desk.open(2)
    assert [desk.serve(2).id for _ in range(6)] == order


def test_estimate_shares_work_among_open_windows(desk):
    for _ in range(6):
        desk.take("B")
    # (the free windows take the first in line at once: B006 waits for the 6 - free others)
    desk.open(2)  # serves A and B: half of it is B's, by configuration (no calls measured yet)
    assert desk.engine.position("B006").estimated_wait_s == (6 - 1) * 6 * MINUTE * 2
    desk.open(3, 1)  # another half, and a third of the universal window 1
    assert desk.engine.position("B006").estimated_wait_s == (6 - 3) * 6 * MINUTE * 3 / 4
    desk.do(cmd.Pause, window=1)
    assert desk.engine.position("B006").estimated_wait_s == (6 - 2) * 6 * MINUTE
    desk.do(cmd.CloseWindow, window=2)
    desk.do(cmd.CloseWindow, window=3)
    assert desk.engine.position("B006").estimated_wait_s is None


# ---------------------------------------------------------------------- complexity


def _calls_per_next(hall, start: float, waiting: int, rounds: int = 20) -> int:
    """Python function calls made by *rounds* of next + finish with *waiting* tickets queued."""
    desk = Desk(hall, start, step=0.25)
    for i in range(waiting):
        desk.take(("A", "B", "C")[i % 3], green=i % 7 == 0)
    desk.open(1)
    calls = 0

    def count(frame, event, arg):
        nonlocal calls
        calls += event == "call"

    sys.setprofile(count)
    try:
        for _ in range(rounds):
            desk.serve(1)
    finally:
        sys.setprofile(None)
    return calls


def test_call_next_is_logarithmic_in_waiting_tickets(small_hall):
    start = hall_time(9)
    small = _calls_per_next(small_hall, start, 100)
    large = _calls_per_next(small_hall, start, 10_000)
    assert small > 0
    assert large <= 2 * small, (small, large)   # O(n) would be ~100x
