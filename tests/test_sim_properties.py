"""Random valid halls and scenarios run on the real engine without an exception, and keep the books.

Each example writes a hall file and a scenario file and loads them through the loaders the
CLI uses (the hall schema and compiler, the scenario schema and resolver), then runs
:class:`sim.runner.Simulation` over it, checking after every instant that nobody waits in
a closed-out hall, and at the end that every citizen who took a number has exactly one
final outcome and the summary's counts add up. Visitor counts are small so an example
takes a fraction of a second.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callsys.state import OPEN
from sim.runner import Simulation
from sim.scenario import load_scenario

FINAL = {"served", "abandoned", "cancelled", "no_show", "unserved", "expired"}  # expired: cut off by the reset
FLOW_OF = {"served": "served", "abandoned": "abandoned", "cancelled": "cancelled", "no_show": "no_show_called"}
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def toml(document: dict[str, Any]) -> str:
    """*document* as TOML: every top-level table as an inline table (enough for these files)."""
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{json.dumps(k)} = {value(x)}" for k, x in v.items()) + "}"
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(v)
    return "".join(f"{json.dumps(k)} = {value(v)}\n" for k, v in document.items())


def clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


@st.composite
def day_hours(draw) -> list[str]:
    """Closed, round the clock, or one or two sessions on the half hour (a lunch break between)."""
    kind = draw(st.sampled_from(["closed", "24h", "one", "two"]))
    if kind == "closed":
        return []
    if kind == "24h":
        return ["00:00-24:00"]
    marks = sorted(draw(st.lists(st.integers(0, 48), min_size=4 if kind == "two" else 2,
                                 max_size=4 if kind == "two" else 2, unique=True)))
    return [f"{clock(a * 30)}-{clock(b * 30)}" for a, b in zip(marks[::2], marks[1::2])]


@st.composite
def halls(draw) -> dict[str, Any]:
    zones = [f"z{i}" for i in range(draw(st.integers(1, 4)))]
    groups = ["g0", "g1"][:draw(st.integers(1, 2))]
    codes = [f"S{i}" for i in range(draw(st.integers(1, 6)))]
    week = {day: draw(day_hours()) for day in WEEKDAYS}
    if not any(week.values()):
        week["mon"] = ["09:00-17:00"]
    windows = []
    for wid in range(1, draw(st.integers(1, 12)) + 1):
        universal = draw(st.booleans())
        skills = ["*"] if universal else draw(st.permutations(codes))[:draw(st.integers(1, len(codes)))]
        window = {"id": wid, "zone": draw(st.sampled_from(zones)), "skills": skills}
        if draw(st.booleans()):
            window["skill_order"] = draw(st.sampled_from(["rank", "strict"]))
        windows.append(window)
    names = {"zh": "厅", "en": "Hall"}
    return {
        "hall": {"id": "prop", "name": names, "reset_numbers": draw(st.sampled_from(["daily", "never"]))},
        "hours": {**week, "issue_cutoff_min": draw(st.sampled_from([0, 0, 15, 29]))},
        "appointments": {"slot_minutes": draw(st.sampled_from([15, 30])),
                         "default_capacity": draw(st.integers(0, 3)),
                         "early_checkin_min": draw(st.integers(0, 90)),
                         "late_grace_min": draw(st.integers(0, 30)),
                         "late_rule": draw(st.sampled_from(["walk_in", "reject"])),
                         "no_show_limit": draw(st.integers(0, 2))},
        "policy": {"appointment_credit_min": draw(st.integers(0, 30)), "green_credit_min": draw(st.integers(0, 30)),
                   "appointment_class": draw(st.sampled_from(["normal", "priority"])),
                   "interleave": draw(st.sampled_from([[], [2, 1], [1, 3]])),
                   "wait_threshold": draw(st.booleans()),
                   "skill_order": draw(st.sampled_from(["rank", "strict"])),
                   "recall_limit": draw(st.integers(0, 3)), "requeue": draw(st.sampled_from(["back", "keep"]))},
        "groups": [{"code": g, "name": names} for g in groups],
        "floors": [{"number": 1, "name": names}],
        "zones": [{"id": z, "floor": 1, "name": names} for z in zones],
        "services": [{"code": code, "prefix": chr(ord("A") + i), "name": names,
                      "group": draw(st.sampled_from(groups)), "minutes": draw(st.floats(1, 40)),
                      "target_wait_min": draw(st.integers(5, 60))} for i, code in enumerate(codes)],
        "windows": windows,
    }


@st.composite
def scenarios(draw, codes: list[str], zones: list[str], date: str) -> dict[str, Any]:
    days = draw(st.integers(1, 3))
    share = st.floats(0, 1)
    profile = ([["00:00", 1.0], ["24:00", 1.0]] if draw(st.booleans()) else
               [[clock(m * 30), draw(st.sampled_from([0.0, 0.5, 1.0, 2.5]))] for m in sorted(draw(
                   st.lists(st.integers(0, 48), min_size=2, max_size=6, unique=True)))])
    if sum(r for _, r in profile) == 0:
        profile[0][1] = 1.0
    weights = {code: draw(st.floats(0, 5)) for code in codes if draw(st.booleans())}
    return {
        "scenario": {"hall": "hall.toml", "date": date, "days": days,
                     "seed": draw(st.integers(0, 2**32 - 1)),
                     "warmup_min": draw(st.sampled_from([0.0, 0.0, 120.0, days * 1440.0 - 60]))},
        "arrivals": {"visitors": draw(st.floats(1, 60)), "profile": profile,
                     "door_wait_min": draw(st.sampled_from([0, 20, 120]))},
        "channels": {"kiosk": draw(share) + 0.01, "qr": draw(share), "appointment": draw(share)},
        "appointments": {"no_show": draw(share), "late_mean_min": draw(st.floats(-90, 60)),
                         "late_sd_min": draw(st.floats(0, 30)),
                         "slot_full": draw(st.sampled_from(["walk_in", "give_up"]))},
        "citizens": {"green_share": draw(share),
                     "patience": draw(st.sampled_from(["none", "exponential", "lognormal"])),
                     "patience_mean_min": draw(st.floats(1, 180)), "patience_cv": draw(st.floats(0.1, 2)),
                     "silent_abandon": draw(share), "walk_mean_s": draw(st.sampled_from([0, 20, 90])),
                     "absent": draw(st.floats(0, 0.5))},
        "service_times": {"model": draw(st.sampled_from(["lognormal", "exponential"])),
                          "cv": draw(st.floats(0.1, 2)), "scale": draw(st.floats(0.2, 3)),
                          "minutes": {code: draw(st.floats(0.5, 60)) for code in codes if draw(st.booleans())}},
        "clerks": {"staffing": draw(st.floats(0.2, 1)),
                   "staffing_by_zone": {z: draw(share) for z in zones if draw(st.booleans())},
                   "breaks_per_session": draw(st.integers(0, 3)), "break_min": draw(st.sampled_from([0, 10, 45])),
                   "recall_interval_s": draw(st.sampled_from([10, 30, 120])),
                   "wrapup_s": draw(st.sampled_from([0, 10, 120])), "transfer": draw(st.floats(0, 0.5)),
                   "overtime_min": draw(st.sampled_from([0, 20, 90, 600])), "bad_rating": draw(share),
                   "reset_day": draw(st.sampled_from([True, False]))},
        "mix": {"default": draw(st.sampled_from([0.0, 1.0])) if weights else 1.0, "weights": weights},
    }


@st.composite
def halls_and_scenarios(draw) -> tuple[dict[str, Any], dict[str, Any]]:
    hall = draw(halls())
    first = draw(st.sampled_from([i for i, day in enumerate(WEEKDAYS) if hall["hours"][day]]))  # open on day 1
    scenario = draw(scenarios([s["code"] for s in hall["services"]], [z["id"] for z in hall["zones"]],
                              f"2026-11-{23 + first}"))  # 2026-11-23 is a Monday
    mix, codes = scenario["mix"], [s["code"] for s in hall["services"]]
    if not sum(mix["weights"].get(code, mix["default"]) for code in codes):
        scenario["mix"] = {"default": 1.0, "weights": {}}  # no demand at all is a config error
    return hall, scenario


@given(case=halls_and_scenarios())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_any_valid_hall_and_scenario_runs_and_keeps_the_books(case):
    hall, scenario = case
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "hall.toml").write_text(toml(hall), encoding="utf-8")
        (Path(tmp) / "scenario.toml").write_text(toml(scenario), encoding="utf-8")
        sim = Simulation(load_scenario(Path(tmp) / "scenario.toml"))
    sim.plan()
    while (step := sim.step()) is not None:  # any engine refusal other than the counted ones raises here
        if sim.closed_out and (not sim.heap or sim.heap[0][0] > step[0]):
            assert not sim.engine.state.book, "somebody waits in a closed-out hall"
    summary = sim.finish()

    records = [r for r in sim.tracker.tickets.values() if r.outcome != "booked"]
    assert {r.outcome for r in records} <= FINAL  # nobody is left "waiting"
    t0 = sim.scenario.start + sim.scenario.warmup_s
    measured = [r for r in records if r.eligible >= t0]
    outcomes, flow = Counter(r.outcome for r in measured), summary["flow"]
    assert flow["queued"] == len(measured)
    assert all(flow[key] == outcomes[outcome] for outcome, key in FLOW_OF.items())
    assert flow["unserved"] == outcomes["unserved"] + outcomes["expired"]
    assert flow["sent_home"] == outcomes["unserved"]
    assert flow["queued"] == sum(flow[k] for k in ("served", "abandoned", "cancelled", "no_show_called", "unserved"))
    assert all(w.status != OPEN for w in sim.engine.state.windows.values())
    for u in summary["utilisation"]["by_zone"].values():
        assert u is None or 0 <= u <= 1 + 1e-9
    if all(start >= t0 for start, _, _ in sim.tracker.spells):  # nobody queued before the measured period
        assert summary["little"]["rel_err"] < 1e-9
