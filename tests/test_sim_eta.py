"""The simulator's measurement of the wait estimates (``summary["eta"]``, benchmarks.sim)."""

from __future__ import annotations

import pytest

from callsys import commands as cmd
from callsys.engine import QueueEngine
from sim.metrics import eta_stats
from sim.runner import Simulation
from sim.scenario import load_scenario
from sim.tracker import Tracker


def test_the_measurement_against_a_hand_computed_case(small_hall, monday_0930):
    """One free window for C (5 minutes a citizen), three numbers told 0 (the free window
    takes it at once), 5 and 10 minutes, called after 1, 400/60 and 700/60 minutes: errors
    -1, -5/3 and -5/3 minutes."""
    engine, tracker, t = QueueEngine(small_hall), Tracker(small_hall, monday_0930), monday_0930

    def run(command: cmd.Command) -> list:
        events = engine.execute(command)
        tracker.observe(events)
        return events

    run(cmd.OpenWindow(t, 4))
    told = []
    for k in (1, 2, 3):
        ticket = run(cmd.TakeNumber(t + k, "C"))[0].ticket
        tracker.estimated(ticket, t + k, engine.position(ticket, t + k).estimated_wait_s)  # as the runner does
        told.append(tracker.tickets[ticket].estimate)
    assert told == [0.0, 300.0, 600.0]  # no call measured yet: the one window at its configured 5 minutes
    for k, wait in ((1, 60), (2, 400), (3, 700)):
        run(cmd.CallNext(t + k + wait, 4))
        run(cmd.FinishService(t + k + wait + 1, 4))
    eta = eta_stats(tracker.tickets.values())
    errors = [-1.0, -5 / 3, -5 / 3]
    assert (eta["called"], eta["estimated"], eta["no_estimate"]) == (3, 3, 0)
    assert eta["mae_min"] == pytest.approx(-sum(errors) / 3)
    assert eta["p90_abs_err_min"] == pytest.approx(5 / 3)  # numpy's linear percentile of 1, 5/3, 5/3
    assert eta["bias_min"] == pytest.approx(sum(errors) / 3)  # all under-estimates
    assert eta["mean_actual_min"] == pytest.approx((60 + 400 + 700) / 3 / 60)


def test_every_called_citizen_of_a_run_was_told_an_estimate_when_queued():
    sim = Simulation(load_scenario("demo").adjusted(visitors=300))
    summary = sim.run()
    called = [r for r in sim.tracker.tickets.values() if r.called is not None]
    assert called and all(r.estimated_at is not None for r in called)
    for r in called:  # at issue; appointments when they checked in (at or before they were queued)
        assert r.estimated_at <= r.eligible and (r.channel == "appointment" or r.estimated_at == r.eligible)
    eta = summary["eta"]
    assert eta["called"] == len([r for r in called if r.eligible >= sim.tracker.t0])
    assert 0 < eta["mae_min"] <= eta["p90_abs_err_min"]
