"""Honest issuing: daily caps per service (限号) and the capacity-aware cutoff (hall ``[issuing]``).

The small hall (tests/conftest.py): services A (10 min), B (6 min), C (5 min, not bookable);
windows 1 (every service), 2 (A, B), 3 (B, A), 4 (C); open 09:00-12:00 and 14:00-17:00.
With no window open yet, the estimator's prior counts the configured windows: A has
1/3 + 1/2 + 1/2 = 4/3 windows at 10 min, so a new A ticket with *n* waiting ahead is told
``(n + 1) * 450`` s.
"""

from __future__ import annotations

import pytest

from callsys import commands as cmd
from callsys import errors as err
from callsys.engine import QueueEngine
from callsys.errors import ConfigError
from callsys.state import HallState, apply

from conftest import hall_time
from engine_support import Desk

A_S = 450.0  # seconds of wait per A ticket in line (see the module docstring)


def capped(make_hall, caps=None, **issuing):
    return make_hall({"issuing": {"daily_cap": caps or {}, **issuing}})


def desk_at(hall, hour: int, minute: int = 0, *, day: int = 0) -> Desk:
    return Desk(hall, hall_time(hour, minute, day=day) - 1.0)


# ---------------------------------------------------------------------- daily caps


def test_the_cap_refuses_the_next_number_and_changes_nothing(make_hall):
    desk = desk_at(capped(make_hall, {"A": 3}), 9)
    numbers = [desk.take("A").number for _ in range(3)]
    assert numbers == ["A001", "A002", "A003"]
    refused = desk.rejects(err.DailyCapReached, cmd.TakeNumber, service="A")
    assert refused.details == {"service": "A", "cap": 3}
    assert refused.code == "daily_cap_reached" and "3 numbers" in refused.message
    assert desk.take("B").number == "B001"  # other services keep issuing
    assert desk.engine.state.issued == {"A": 3, "B": 1}


def test_a_service_without_a_cap_is_never_refused(make_hall):
    desk = desk_at(capped(make_hall, {"A": 1}), 9)
    assert len([desk.take("C") for _ in range(30)]) == 30


def test_a_cap_of_zero_issues_no_walk_in_numbers(make_hall):
    desk = desk_at(capped(make_hall, {"A": 0}), 9)
    desk.rejects(err.DailyCapReached, cmd.TakeNumber, service="A")


def test_today_s_appointments_count_against_the_cap_and_a_cancelled_one_frees_its_place(make_hall):
    desk = desk_at(capped(make_hall, {"A": 3}), 8)
    first = desk.book("A", hall_time(10))
    desk.book("A", hall_time(15))
    desk.book("A", hall_time(10, day=1))  # tomorrow's slot: not today's numbers
    desk.until(hall_time(9))
    desk.take("A")
    desk.rejects(err.DailyCapReached, cmd.TakeNumber, service="A")  # 1 walk-in + 2 bookings
    desk.check_in(first.id)  # checking in does not count twice
    desk.rejects(err.DailyCapReached, cmd.TakeNumber, service="A")
    second = [t for t in desk.engine.state.tickets.values() if t.status == "booked" and t.slot_start == hall_time(15)]
    desk.do(cmd.Cancel, ticket=second[0].id)
    assert desk.take("A").number == "A003"  # A002 was the check-in


def test_the_count_resets_with_the_day_reset_and_with_the_next_day(make_hall):
    hall = capped(make_hall, {"A": 2})
    desk = desk_at(hall, 9)
    desk.take("A"), desk.take("A")
    desk.rejects(err.DailyCapReached, cmd.TakeNumber, service="A")
    desk.do(cmd.ResetDay)
    assert desk.engine.state.issued_day is None and not desk.engine.state.issued
    assert desk.take("A").number == "A001"
    # no reset at all: the next local day counts afresh
    other = desk_at(hall, 9)
    other.take("A"), other.take("A")
    other.until(hall_time(9, day=1))
    assert other.take("A").number == "A001"
    assert other.engine.state.issued_on(other.engine.state.calendar.day(hall_time(9, day=1)).ordinal, "A") == 1


def test_the_count_survives_replay_and_a_snapshot_without_it(make_hall):
    hall = capped(make_hall, {"A": 2, "B": 5})
    desk = desk_at(hall, 9)
    desk.take("A"), desk.take("B"), desk.take("A")
    live = desk.engine.snapshot()
    replayed = HallState(hall)
    for event in desk.events:
        apply(replayed, event)
    assert replayed.snapshot() == live and live["issued"][1] == {"A": 2, "B": 1}
    old = {k: v for k, v in live.items() if k != "issued"}  # written before the caps: derived from the tickets
    restored = QueueEngine.restore(hall, old)
    assert restored.snapshot() == live
    with pytest.raises(err.DailyCapReached):
        restored.execute(cmd.TakeNumber(desk.tick(), "A"))


def test_daily_cap_config_errors(make_hall):
    with pytest.raises(ConfigError, match=r"issuing\.daily_cap\.NOPE: unknown service 'NOPE'"):
        capped(make_hall, {"NOPE": 3})
    with pytest.raises(ConfigError, match=r"issuing\.daily_cap: .*must be >= 0"):
        capped(make_hall, {"A": -1})
    with pytest.raises(ConfigError, match=r"issuing\.cutoff: "):
        capped(make_hall, cutoff="maybe")
    with pytest.raises(ConfigError, match=r"issuing\.cutoff_margin_min: "):
        capped(make_hall, cutoff="warn", cutoff_margin_min=-5)


# ---------------------------------------------------------------------- the cutoff


def fill(desk: Desk, n: int, service: str = "A") -> None:
    for _ in range(n):
        desk.take(service)


def test_cutoff_off_issues_whatever_the_wait(make_hall):
    desk = desk_at(capped(make_hall), 16)
    fill(desk, 20)
    assert desk.engine.estimate_new("A") > 3600
    assert desk.do(cmd.TakeNumber, service="A")[0].closing_warning is None


def test_cutoff_refuse_refuses_a_number_whose_call_is_predicted_past_closing(make_hall):
    desk = desk_at(capped(make_hall, cutoff="refuse"), 15, 59)  # an hour (and the seconds the takes take) to closing
    fill(desk, 7)  # the 8th is told 8 * 450 s = 3600 s: called at 17:00, just in time
    assert desk.engine.estimate_new("A") == 8 * A_S
    desk.take("A")
    predicted = desk.engine.estimate_new("A")
    refused = desk.rejects(err.PastClosing, cmd.TakeNumber, service="A")
    assert refused.code == "past_closing"
    assert refused.details == {"service": "A", "predicted_wait_s": predicted, "closing": hall_time(17),
                               "margin_s": 0.0}
    assert desk.take("C").number == "C001"  # C's queue is empty


def test_cutoff_warn_issues_with_the_predicted_wait_and_closing(make_hall):
    desk = desk_at(capped(make_hall, cutoff="warn"), 15, 59)
    fill(desk, 7)
    assert desk.do(cmd.TakeNumber, service="A")[0].closing_warning is None
    predicted = desk.engine.estimate_new("A")
    issued = desk.do(cmd.TakeNumber, service="A")[0]
    assert issued.closing_warning == (predicted, hall_time(17))
    assert desk.engine.state.totals["warned_past_closing"] == 1


def test_cutoff_margin_moves_the_limit_before_closing(make_hall):
    desk = desk_at(capped(make_hall, cutoff="refuse", cutoff_margin_min=15), 15, 59)
    fill(desk, 5)  # the 6th: 2700 s -> 16:44, just before the limit
    desk.take("A")
    refused = desk.rejects(err.PastClosing, cmd.TakeNumber, service="A")
    assert refused.details["margin_s"] == 900.0


def test_the_lunch_break_does_not_count_as_waiting_time(make_hall):
    """At 11:30 a 60-minute wait is a call at 14:30 (closed 12:00-14:00), well before 17:00;
    a wait longer than the 3.5 open hours left is past closing."""
    desk = desk_at(capped(make_hall, cutoff="refuse"), 11, 29)
    fill(desk, 27)  # the 28th is told 28 * 450 s = 12600 s = 3.5 h: 31 min before noon + 2 h 59 after
    desk.take("A")
    desk.rejects(err.PastClosing, cmd.TakeNumber, service="A")


def test_free_windows_shorten_the_predicted_wait(make_hall):
    """The cutoff uses the estimate the kiosk shows (free open windows take the first in line)."""
    desk = desk_at(capped(make_hall, cutoff="refuse"), 16, 50)  # ten minutes to closing
    desk.open(1, 2, 3)
    assert desk.engine.estimate_new("A") == 0.0
    desk.take("A"), desk.take("A")  # nobody called yet: the third is first in line at the third free window
    assert desk.engine.estimate_new("A") == 0.0
    desk.take("A")
    assert desk.engine.estimate_new("A") == A_S  # the 4th: 7.5 min, before 17:00
    desk.take("A")
    desk.rejects(err.PastClosing, cmd.TakeNumber, service="A")  # the 5th: 15 min, past 17:00


def test_the_cap_is_checked_before_the_cutoff_and_hall_closed_before_both(make_hall):
    desk = desk_at(capped(make_hall, {"A": 1}, cutoff="refuse"), 16, 50)
    desk.take("A")  # told 7.5 min: in time
    desk.rejects(err.DailyCapReached, cmd.TakeNumber, service="A")
    desk.until(hall_time(17, 30))
    desk.rejects(err.HallClosed, cmd.TakeNumber, service="A")


def test_check_ins_are_never_refused_by_the_cap_or_the_cutoff(make_hall):
    desk = desk_at(capped(make_hall, {"A": 1}, cutoff="refuse"), 15)
    booking = desk.book("A", hall_time(16, 30))
    desk.until(hall_time(16, 20))
    desk.rejects(err.DailyCapReached, cmd.TakeNumber, service="A")
    assert desk.check_in(booking.id).status == "waiting"


def test_open_after_skips_closed_spans(small_hall):
    day = HallState(small_hall).calendar.day(hall_time(11))
    assert day.closing == hall_time(17)
    assert day.open_after(hall_time(11), 1800) == hall_time(11, 30)
    assert day.open_after(hall_time(11, 30), 3600) == hall_time(14, 30)
    assert day.open_after(hall_time(12, 30), 60) == hall_time(14, 1)
    assert day.open_after(hall_time(16), 7200) == hall_time(18)  # past closing: the surplus after it
