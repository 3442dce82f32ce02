"""The run's statistics and charts: P(wait > 0), punctuality, and the PNG charts a manager reads."""

from __future__ import annotations

import pytest

from sim.experiment import combine
from sim.metrics import appointment_holders, punctuality_stats, wait_stats
from sim.runner import Simulation
from sim.scenario import load_scenario
from sim.tracker import TicketRecord

T0 = 1_000_000.0


def record(ticket: int, service: str = "A", *, wait: float | None, gone: bool = False,
           channel: str = "kiosk") -> TicketRecord:
    """A ticket eligible at T0 + ticket and called *wait* seconds later (None: never called)."""
    eligible = T0 + ticket
    return TicketRecord(ticket, service, channel, False, eligible,
                        called=None if wait is None else eligible + wait, gone=gone)


def test_p_wait_is_the_share_of_called_citizens_who_waited_more_than_zero_seconds():
    records = [record(1, wait=0.0), record(2, wait=0.0), record(3, wait=60.0), record(4, wait=600.0),
               record(5, wait=None, gone=True),  # gave up: left out, like every wait figure
               record(6, wait=900.0, gone=True)]  # called after leaving: not a called citizen
    stats = wait_stats(records, {"A": 300.0})
    assert (stats["queued"], stats["called"]) == (6, 4)
    assert stats["p_wait"] == 0.5
    assert stats["within_target"] == pytest.approx(3 / 6)
    assert wait_stats([record(1, wait=None)], {"A": 300.0})["p_wait"] is None


def summary_of(seed: int, p_all: float, p_by: dict[str, float]) -> dict:
    stats = {"mean_min": 1.0, "p90_min": 2.0, "p_wait": p_all, "within_target": 0.9}
    return {"seed": seed, "flow": {"served": 10, "abandoned": 0},
            "waits": {"all": stats, "by_service": {c: {**stats, "p_wait": p} for c, p in p_by.items()}}}


def test_replications_combine_p_wait_per_service_with_students_t():
    runs = [summary_of(1, 0.2, {"A": 0.1, "B": 0.5}), summary_of(2, 0.4, {"A": 0.3}),
            summary_of(3, 0.3, {"A": 0.2, "B": 0.7})]
    reps = combine(load_scenario("demo"), runs)["replications"]
    assert reps["p_wait"]["mean"] == pytest.approx(0.3)
    assert reps["p_wait"]["ci95"] == pytest.approx(4.302653 * 0.1 / 3 ** 0.5, rel=1e-6)  # t(2 df) x sd / sqrt(3)
    assert reps["by_service"]["A"]["p_wait"]["mean"] == pytest.approx(0.2)
    b = reps["by_service"]["B"]["p_wait"]  # run 2 called nobody for B: two values
    assert b["mean"] == pytest.approx(0.6) and b["ci95"] == pytest.approx(12.7062 * 0.141421 / 2 ** 0.5, rel=1e-4)


def appointment(ticket: int, *, arrived: float, called: float | None, late: bool = False,
                gone: bool = False, service: str = "A") -> TicketRecord:
    """An appointment holder with a slot at T0, checked in *arrived* s and called *called* s after it."""
    return TicketRecord(ticket, service, "appointment", False, T0 + max(arrived, 0.0),
                        called=None if called is None else T0 + called, late=late, gone=gone,
                        slot_start=T0, checked_in=T0 + arrived)


def test_punctuality_measures_arrival_and_the_call_against_the_slot_start():
    records = [appointment(1, arrived=-600, called=0),  # early, called at the slot start
               appointment(2, arrived=-60, called=300),  # early, 5 min after the slot start
               appointment(3, arrived=120, called=1200),  # late, 20 min after: past the 10 min target
               appointment(4, arrived=3600, called=4200, late=True),  # queued as a walk-in
               appointment(5, arrived=0, called=None, gone=True),  # on the dot, gave up
               record(6, wait=30.0)]  # a walk-in: not an appointment
    stats = punctuality_stats(records, {"A": 600.0})
    assert (stats["checked_in"], stats["called"], stats["late_walk_in"]) == (5, 4, 1)
    assert (stats["early"], stats["late"]) == (pytest.approx(2 / 5), pytest.approx(2 / 5))
    assert stats["arrival_p50_min"] == 0.0 and stats["arrival_p10_min"] == pytest.approx(-10 + 0.4 * 9)
    assert stats["after_slot_p50_min"] == pytest.approx(12.5)  # median of 0, 5, 20, 70 min
    assert stats["after_slot_mean_min"] == pytest.approx(95 / 4)
    assert stats["within_target_after_slot"] == pytest.approx(2 / 5)
    empty = punctuality_stats([record(1, wait=0.0)], {"A": 600.0})
    assert empty["checked_in"] == 0 and empty["early"] is None and empty["after_slot_p50_min"] is None


def test_the_tracker_keeps_slot_start_and_check_in_of_appointments():
    scenario = load_scenario("demo")
    sim = Simulation(scenario)
    summary = sim.run()
    holders = appointment_holders(sim.tracker.tickets.values())
    assert holders and all(r.channel == "appointment" for r in holders)
    assert all(r.eligible == max(r.checked_in, r.slot_start) for r in holders if not r.late)
    assert summary["punctuality"]["checked_in"] == summary["flow"]["checked_in"]
