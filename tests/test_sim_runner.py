"""The virtual-time runner on the real engine: golden values, replay, invariants, outcomes."""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callsys.engine import QueueEngine
from callsys.state import OPEN
from sim.runner import Kind, Simulation, sessions, staffed_windows
from sim.scenario import SCENARIO_DIR, load_scenario, scenario_from_mapping
from sim.tracker import Tracker

OUTCOMES = ("served", "abandoned", "cancelled", "no_show", "unserved")


@dataclass
class Recording(Tracker):
    """A tracker that also keeps every event, for replay."""

    log: list = field(default_factory=list)

    def observe(self, events):
        self.log.extend(events)
        super().observe(events)


def demo_with(**tables) -> object:
    """The demo scenario with some tables overridden (key by key)."""
    data = tomllib.loads((SCENARIO_DIR / "demo.toml").read_text(encoding="utf-8"))
    for table, values in tables.items():
        data[table] = {**data.get(table, {}), **values}
    return scenario_from_mapping(data, source="demo-variant.toml", base=SCENARIO_DIR)


@pytest.fixture(scope="module")
def demo():
    return load_scenario("demo")


def test_demo_day_golden_values(demo):
    summary = Simulation(demo).run()
    flow, waits = summary["flow"], summary["waits"]["all"]
    assert (flow["queued"], flow["served"], flow["abandoned"], flow["no_show_called"]) == (444, 387, 29, 28)
    assert (flow["bookings"], flow["slot_full"], flow["appointment_no_show"], flow["hall_closed"]) == (79, 5, 25, 16)
    assert waits["mean_min"] == pytest.approx(13.79582332, abs=1e-6)
    assert waits["p90_min"] == pytest.approx(44.89573493, abs=1e-6)
    assert summary["utilisation"]["hall"] == pytest.approx(0.74126411, abs=1e-6)


def test_same_seed_same_day_other_seed_other_day(demo):
    a, b, c = (Simulation(demo, seed=s).run() for s in (3, 3, 4))
    assert a == b
    assert a["waits"]["all"] != c["waits"]["all"]


def test_replaying_the_events_rebuilds_the_engine_state(demo):
    """The simulator's engine went only through ordinary commands: its events replay exactly."""
    tracker = Recording(demo.hall, demo.start)
    sim = Simulation(demo, tracker=tracker)
    sim.plan()
    while sim.heap and sim.heap[0][2] != Kind.DAY_END:  # stop before the end-of-day reset
        sim.step()
    replayed = QueueEngine.restore(demo.hall, None, tracker.log)
    assert replayed.snapshot() == sim.engine.snapshot()
    assert len(tracker.log) > 2000


@pytest.mark.parametrize("name, seed, visitors", [("demo", 11, None), ("demo", 12, 900),
                                                  ("qingdao-weekday", 1, 6000)])
def test_an_idle_window_never_leaves_a_ticket_it_serves_waiting(name, seed, visitors):
    sim = Simulation(load_scenario(name).adjusted(visitors=visitors), seed=seed)
    sim.plan()
    book, windows = sim.engine.state.book, sim.engine.state.windows
    checked = 0
    while (step := sim.step()) is not None:
        if sim.heap and sim.heap[0][0] == step[0]:
            continue  # judge the state once everything due at this instant was handled
        for (code, _), queue in book.queues.items():
            if queue:
                idle = sim.idle.serving(code)
                assert not idle, f"{code} has waiting tickets and idle windows {list(idle)}"
                checked += 1
        for w in sim.idle:
            assert windows[w].status == OPEN and windows[w].current is None
    assert checked > 500  # the invariant was put to the test


def test_every_ticket_ends_in_exactly_one_outcome(demo):
    sim = Simulation(demo, seed=5)
    summary = sim.run()
    records = [r for r in sim.tracker.tickets.values() if r.outcome != "booked"]
    assert {r.outcome for r in records} <= set(OUTCOMES)
    flow = summary["flow"]
    assert flow["queued"] == len(records) == sum(flow[k if k != "no_show" else "no_show_called"] for k in OUTCOMES)


def test_sessions_merge_across_midnight_for_a_round_the_clock_hall():
    mmc = load_scenario("mmc").adjusted(days=3)
    assert sessions(mmc) == [(mmc.start, mmc.end)]
    demo = load_scenario("demo")
    assert len(sessions(demo)) == 2


def test_staffing_opens_a_spread_share_of_each_zone():
    scenario = demo_with(clerks={"staffing": 0.5, "staffing_by_zone": {"social": 1.0}})
    opened = staffed_windows(scenario)
    assert opened == [1, 3, 5, 7, 8, 9, 10]
    summary = Simulation(scenario).run()
    assert summary["windows"]["opened"] == 7


def test_closed_hall_and_full_slots_are_counted_not_errors():
    # arrivals all day long, but the demo hall is closed 12:00-14:00 and after 20:00
    scenario = demo_with(arrivals={"profile": [["06:00", 1.0], ["23:00", 1.0]], "door_wait_min": 0},
                         channels={"appointment": 0.6})
    flow = Simulation(scenario).run()["flow"]
    assert flow["hall_closed"] > 50
    assert flow["slot_full"] > 10


def test_walking_citizens_are_recalled_and_absent_ones_marked_no_show():
    scenario = demo_with(citizens={"walk_mean_s": 60, "absent": 0.2, "patience": "none"},
                         clerks={"recall_interval_s": 30})
    summary = Simulation(scenario).run()
    flow = summary["flow"]
    limit = scenario.hall.policy.recall_limit
    assert flow["recalls"] > flow["no_show_called"] * limit > 0
    # a no-show: absent, or an exponential walk longer than the last recall (limit + 1 intervals)
    expected = 0.2 + 0.8 * math.exp(-(limit + 1) * 30 / 60)
    assert flow["no_show_called"] / flow["queued"] == pytest.approx(expected, abs=0.05)


@given(visitors=st.integers(20, 400), staffing=st.floats(0.2, 1.0), patience=st.sampled_from(["none", "exponential"]),
       patience_min=st.floats(5, 120), silent=st.floats(0, 1), no_show=st.floats(0, 0.6),
       transfer=st.floats(0, 0.3), wrapup=st.floats(0, 60), breaks=st.integers(0, 2), walk=st.floats(0, 90),
       absent=st.floats(0, 0.3), appointment=st.floats(0, 0.8), seed=st.integers(0, 10**6))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_demo_day_keeps_the_books(visitors, staffing, patience, patience_min, silent, no_show, transfer,
                                     wrapup, breaks, walk, absent, appointment, seed):
    scenario = demo_with(
        scenario={"seed": seed}, arrivals={"visitors": visitors},
        channels={"kiosk": 1.0, "qr": 0.0, "appointment": appointment},
        appointments={"no_show": no_show},
        citizens={"patience": patience, "patience_mean_min": patience_min, "silent_abandon": silent,
                  "walk_mean_s": walk, "absent": absent},
        clerks={"staffing": staffing, "transfer": transfer, "wrapup_s": wrapup, "breaks_per_session": breaks},
    )
    sim = Simulation(scenario)
    summary = sim.run()  # any engine refusal other than the counted ones would raise here
    flow = summary["flow"]
    assert flow["queued"] == sum(flow[k if k != "no_show" else "no_show_called"] for k in OUTCOMES)
    assert summary["little"]["rel_err"] < 1e-9
    assert all(w.status != OPEN for w in sim.engine.state.windows.values())
    for u in summary["utilisation"]["by_zone"].values():
        assert u is None or 0 <= u <= 1 + 1e-9


def test_nobody_waits_in_a_closed_hall():
    """Citizens a clerk transfers while finishing in overtime go home at once, like those
    still waiting at the close-out (before, they waited until midnight: 3.0 on the queue
    chart and the heatmap from 20:20 on)."""
    data = tomllib.loads((SCENARIO_DIR / "demo.toml").read_text(encoding="utf-8"))
    data["arrivals"]["visitors"] = 700
    data["clerks"] |= {"transfer": 0.4}
    data["citizens"] |= {"patience": "none"}
    sim = Simulation(scenario_from_mapping(data, source="late.toml", base=SCENARIO_DIR))
    sim.plan()
    while sim.heap[0][2] != Kind.CLOSE_OUT:
        sim.step()
    close_out, left, transfers = sim.heap[0][0], len(sim.engine.state.book), sim.tracker.counts["ticket_transferred"]
    while sim.step():
        if sim.now > close_out and (not sim.heap or sim.heap[0][0] > sim.now):
            assert not sim.engine.state.book, "somebody waits in the closed hall"
    summary = sim.finish()
    transferred_late = sim.tracker.counts["ticket_transferred"] - transfers
    assert left > 100 and transferred_late > 0
    flow = summary["flow"]
    assert flow["sent_home"] == flow["unserved"] == left + transferred_late
    queue = summary["queue"]
    assert not any(queue["total"][int((close_out - queue["t0"]) // queue["bin_s"]) + 1:])
    assert not any(v for zone in summary["heatmap"]["values"] for v in zone[21:])


def round_the_clock(tmp_path, **tables):
    """The demo hall open 00:00-24:00 every day, a flat profile, no [clerks] table (defaults:
    breaks, overtime, wrap-up and the daily reset), *tables* overriding key by key."""
    hall = (SCENARIO_DIR / "../../config/demo.toml").resolve().read_text(encoding="utf-8")
    days = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    for day in days:
        hall = "\n".join(f'{day} = ["00:00-24:00"]' if line.startswith(f"{day} = ") else line
                         for line in hall.splitlines())
    (tmp_path / "hall24.toml").write_text(hall, encoding="utf-8")
    data = {"scenario": {"hall": "hall24.toml", "date": "2026-11-23", "days": 2, "seed": 5},
            "arrivals": {"visitors": 800, "profile": [["00:00", 1.0], ["24:00", 1.0]], "door_wait_min": 0}}
    for table, values in tables.items():
        data[table] = {**data.get(table, {}), **values}
    return scenario_from_mapping(data, source=str(tmp_path / "s.toml"), base=tmp_path)


def test_a_hall_open_round_the_clock_runs_through_midnight(tmp_path):
    """Services in progress when the day resets at midnight end with it (their scheduled
    finish raised ``KeyError: None`` before)."""
    data = tomllib.loads((SCENARIO_DIR / "demo.toml").read_text(encoding="utf-8"))
    scenario = round_the_clock(tmp_path, arrivals={"visitors": 1500}, citizens=data["citizens"],
                               clerks=data["clerks"])
    summary = Simulation(scenario).run()
    assert summary["windows"]["opened"] > 0 and summary["flow"]["served"] > 1000


def test_a_round_the_clock_hall_with_a_daily_reset_serves_every_day(tmp_path):
    """With the default daily reset, the windows reopen after midnight. Before, the sessions
    merged across midnight, so nothing reopened the windows the reset had closed: the second
    day served nobody, and a clerk calling after wrapping up died with "window 3 is closed"."""
    scenario = round_the_clock(tmp_path)
    sim = Simulation(scenario)
    summary = sim.run()
    second_day = scenario.midnight(1)
    served = [r for r in sim.tracker.tickets.values() if r.outcome == "served"]
    late = sum(1 for r in served if r.called >= second_day)
    assert summary["flow"]["served"] == len(served) > 1200
    assert 0.4 < late / len(served) < 0.6


def test_at_midnight_the_ending_day_closes_before_the_next_opens(tmp_path):
    sim = Simulation(round_the_clock(tmp_path, clerks={"breaks_per_session": 0}))
    midnight = sim.scenario.midnight(1)
    assert [kind for at, kind, _ in sim.calendar() if at == midnight] == [
        Kind.SESSION_END, Kind.CLOSE_OUT, Kind.DAY_END, Kind.SESSION_START]
    # the close-out of a day is capped by its reset (20 min of overtime would run past it)
    assert [at for at, kind, _ in sim.calendar() if kind == Kind.CLOSE_OUT] == [midnight, sim.scenario.end]
    no_reset = Simulation(round_the_clock(tmp_path, clerks={"breaks_per_session": 0, "reset_day": False}))
    assert [kind for at, kind, _ in no_reset.calendar() if at == midnight] == [Kind.DAY_END]


def test_littles_law_holds_when_the_last_close_out_runs_past_the_horizon(tmp_path):
    """Nobody serves; the last day's close-out (midnight + 20 min overtime, no reset) comes after
    the horizon. The engine's queue counted up to the close-out, the spells only up to the
    horizon: L was 1.4 % above λ·W (found by the property test)."""
    scenario = round_the_clock(tmp_path, scenario={"days": 1}, arrivals={"visitors": 40},
                               citizens={"patience": "none"}, clerks={"staffing": 0.0, "reset_day": False})
    summary = Simulation(scenario).run()
    assert summary["flow"]["sent_home"] == summary["flow"]["queued"] > 20
    assert summary["little"]["rel_err"] < 1e-9


def test_a_call_after_wrapping_up_lapses_with_the_reset(tmp_path):
    """A clerk wrapping up at midnight was still due to press "next" after the reset; by then
    the window had reopened and called the new day's first citizen (WindowBusy before)."""
    scenario = round_the_clock(tmp_path, arrivals={"visitors": 1500}, clerks={"wrapup_s": 600})
    sim = Simulation(scenario)
    sim.plan()
    midnight = scenario.midnight(1)
    while sim.heap[0][0] < midnight:
        sim.step()
    assert any(kind == Kind.CALL for _, _, kind, _ in sim.heap)  # someone is wrapping up at midnight
    while sim.step():
        pass
    assert sim.finish()["flow"]["served"] > 600


def test_a_service_cut_off_by_the_reset_stops_the_window_being_busy(tmp_path):
    """The reset ended the window's open time but not its busy time, which ran on to the
    lapsed finish: utilisation above 1 (found by the property test)."""
    scenario = round_the_clock(tmp_path, scenario={"days": 1}, arrivals={"visitors": 1500},
                               service_times={"scale": 4.0}, clerks={"staffing": 0.2})
    sim = Simulation(scenario)
    summary = sim.run()
    assert sim.now > scenario.end  # a service was still in progress at midnight
    assert all(u is None or u <= 1 for u in summary["utilisation"]["by_zone"].values())
    assert summary["utilisation"]["by_zone"]["universal"] > 0.95


def test_a_citizen_late_for_a_booking_the_reset_expired_takes_a_number(tmp_path):
    """Booked for 23:30, arriving 45 minutes late: the midnight reset had expired the booking
    and the check-in died with UnknownTicket (found by the property test)."""
    scenario = round_the_clock(tmp_path, scenario={"days": 1}, arrivals={"visitors": 300},
                               channels={"kiosk": 0.0, "qr": 0.0, "appointment": 1.0},
                               appointments={"no_show": 0.0, "late_mean_min": 45, "late_sd_min": 0})
    sim = Simulation(scenario)
    sim.run()
    assert sim.tracker.counts["late_rejected"] > 0
