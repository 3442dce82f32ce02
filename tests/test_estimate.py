"""The one wait estimator (callsys.estimate): pure behaviour, and its place in the engine state."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callsys import commands as cmd
from callsys.engine import QueueEngine
from callsys.estimate import HISTORY_S, PRIOR_CALLS, WaitEstimator

from engine_support import Desk

MINUTE = 60.0


def _estimator() -> WaitEstimator:
    return WaitEstimator({"A": 10.0, "B": 6.0})


def test_none_when_no_open_window_serves_the_service():
    eta = _estimator()
    assert eta.estimate("A", 0, 0.0) is None  # no window of the hall serves A
    eta.window_active(("B",), True)
    assert eta.estimate("A", 5, 0.0) is None
    assert eta.estimate("B", 0, 0.0) == 6 * MINUTE
    eta.window_active(("B",), False)  # B's window was open today and closed: nothing serves B now
    assert eta.estimate("B", 0, 0.0) is None


def test_before_its_windows_open_the_configured_windows_count():
    """Numbers are taken before the clerks open: the staffing the hall is configured for."""
    eta = WaitEstimator({"A": 10.0, "B": 6.0}, [("A",), ("A", "B"), ("B",)])
    assert eta.estimate("A", 2, 0.0) == 3 * 10 * MINUTE / 1.5
    eta.window_active(("B",), True)  # A's windows are still all closed: still the configured ones
    assert eta.estimate("A", 2, 0.0) == 3 * 10 * MINUTE / 1.5
    assert eta.estimate("B", 0, 0.0) == 6 * MINUTE  # B's open window alone
    eta.window_active(("A",), True)
    assert eta.estimate("A", 2, 0.0) == 3 * 10 * MINUTE
    eta.window_active(("A",), False)
    assert eta.estimate("A", 2, 0.0) is None
    eta.reset()  # a new day: before opening again
    assert eta.estimate("A", 2, 0.0) == 3 * 10 * MINUTE / 1.5


def test_prior_counts_shared_windows_by_share():
    eta = _estimator()
    eta.window_active(("A", "B"), True)  # half a window each
    eta.window_active(("A",), True)
    assert eta.estimate("A", 2, 0.0) == 3 * 10 * MINUTE / 1.5
    assert eta.estimate("B", 0, 0.0) == 6 * MINUTE * 2
    eta.window_active(("A",), False)
    assert eta.estimate("A", 2, 0.0) == 3 * 10 * MINUTE * 2


def test_the_prior_alone_while_nothing_was_measured():
    eta = _estimator()
    eta.window_active(("A",), True)
    eta.backlog("A", 0.0, True)
    eta.departed("A", 5.0, waited=False)  # called at once at an idle window: says nothing
    assert eta.rate("A") == 1 / (10 * MINUTE)


def test_converges_to_the_measured_rate():
    """A window configured at 10 minutes a citizen really calls one every 2.5 minutes: the
    estimate moves from the prior to the measured rate as calls are counted, the prior
    keeping the weight PRIOR_CALLS / (n + PRIOR_CALLS) for the n calls of the history."""
    eta = _estimator()
    eta.window_active(("A",), True)
    eta.backlog("A", 0.0, True)
    pace, prior = 2.5 * MINUTE, 1 / (10 * MINUTE)
    errors = []
    for k in range(1, 500):
        eta.departed("A", k * pace, waited=True)
        errors.append(abs(eta.rate("A") - 1 / pace))
    assert errors[0] > errors[5] > errors[20] > errors[-1]
    n, span = eta.measured("A")
    assert n >= HISTORY_S / pace - 1 and span == pytest.approx(n * pace)
    assert errors[-1] == pytest.approx(PRIOR_CALLS / (n + PRIOR_CALLS) * (1 / pace - prior))
    assert errors[-1] < 0.2 * (1 / pace - prior)
    assert eta.estimate("A", 9, 500 * pace) == pytest.approx(10 / eta.rate("A"), abs=0.5)


def test_the_backlog_clock_runs_only_while_tickets_wait():
    """A quiet hour between two busy spells is not counted against the rate."""
    eta = _estimator()
    eta.window_active(("A",), True)
    eta.backlog("A", 0.0, True)
    eta.departed("A", 2 * MINUTE, waited=True)
    eta.backlog("A", 2 * MINUTE, False)
    eta.backlog("A", 62 * MINUTE, True)
    eta.departed("A", 64 * MINUTE, waited=True)
    assert eta.measured("A") == (2, 4 * MINUTE)
    weight = 2 / (2 + PRIOR_CALLS)
    assert eta.rate("A") == pytest.approx(weight / (2 * MINUTE) + (1 - weight) / (10 * MINUTE))


@settings(max_examples=60, deadline=None)
@given(gaps=st.lists(st.floats(min_value=1.0, max_value=1800.0), max_size=60),
       windows=st.integers(min_value=1, max_value=5), ahead=st.integers(min_value=0, max_value=500))
def test_monotone_in_ahead_and_positive(gaps, windows, ahead):
    eta = _estimator()
    for _ in range(windows):
        eta.window_active(("A", "B"), True)
    eta.backlog("A", 0.0, True)
    t = 0.0
    for gap in gaps:
        t += gap
        eta.departed("A", t, waited=True)
    one, more = eta.estimate("A", ahead, t), eta.estimate("A", ahead + 1, t)
    assert 0 < one <= more
    assert eta.estimate("A", ahead, t) == one  # the cached rate gives the same answer


def test_free_windows_take_the_first_in_line_at_once():
    eta = _estimator()
    eta.window_active(("A",), True)
    eta.window_active(("A",), True)
    step = 10 * MINUTE / 2
    assert [eta.estimate("A", ahead, 0.0, idle=2) for ahead in range(4)] == [0.0, 0.0, step, 2 * step]
    assert [eta.estimate("A", ahead, 0.0, idle=0) for ahead in range(2)] == [step, 2 * step]


def test_engine_counts_free_windows(small_hall, monday_0930):
    desk = Desk(small_hall, monday_0930)
    desk.open(4)  # C only, 5 minutes
    desk.take("C")
    desk.take("C")
    assert [desk.engine.position(n).estimated_wait_s for n in ("C001", "C002")] == [0.0, 5 * MINUTE]
    desk.call(4)  # window 4 busy: C002 is next, after one service at the measured-and-configured rate
    assert desk.engine.position("C002").estimated_wait_s == desk.engine.estimate_at("C", 0) > 0


def test_snapshot_round_trip():
    eta = _estimator()
    eta.window_active(("A",), True)
    eta.backlog("A", 0.0, True)
    for k in range(1, 10):
        eta.departed("A", k * 100.0, waited=True)
    again = _estimator()
    again.window_active(("A",), True)
    again.restore(eta.snapshot())
    assert again.snapshot() == eta.snapshot()
    assert again.estimate("A", 3, 1000.0) == eta.estimate("A", 3, 1000.0)


# ---------------------------------------------------------------------- in the engine


def _busy_morning(desk: Desk) -> None:
    desk.open(2, 4)
    for _ in range(8):
        desk.take("A")
        desk.take("C")
    for _ in range(5):
        desk.wait(240)
        desk.serve(2)
        desk.serve(4)
    desk.do(cmd.Cancel, ticket="A008")
    desk.do(cmd.Pause, window=4)


def test_engine_estimates_from_measured_calls(small_hall, monday_0930):
    desk = Desk(small_hall, monday_0930)
    _busy_morning(desk)
    engine = desk.engine
    n, span = engine.state.eta.measured("A")
    assert n >= 5 and span > 0
    position = engine.position("A007")
    assert position.estimated_wait_s == engine.estimate_at("A", position.ahead)
    assert engine.estimate_new("A") == engine.estimate_at("A", engine.state.book.waiting("A"))
    assert engine.estimate_new("C") is None  # window 4 paused: nothing serves C


def test_replay_and_snapshot_restore_equal_live_with_the_estimator(small_hall, monday_0930):
    desk = Desk(small_hall, monday_0930)
    _busy_morning(desk)
    live = desk.engine
    replayed = QueueEngine.restore(live.hall, None, desk.events)
    restored = QueueEngine.restore(live.hall, live.snapshot())
    assert live.snapshot()["eta"]  # the flows are part of the state
    for other in (replayed, restored):
        assert other.snapshot() == live.snapshot()
        for code in ("A", "B", "C"):
            assert other.estimate_new(code) == live.estimate_new(code)
