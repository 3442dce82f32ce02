"""The simulator models honest issuing: citizens told early at the kiosk go home, counted apart
from those who give up after queueing (summary ``issuing``, see sim.metrics and sim.models).

The demo day with twice its visitors (about 900 at 10 windows) is overloaded: without a
policy many citizens queue for an hour and give up. The demo hall is open until 20:00 on
Mondays, so the cutoff here asks the call to be predicted two hours before closing.
"""

from __future__ import annotations

import tomllib
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from callsys.errors import ConfigError
from callsys.hall import hall_from_mapping
from conftest import CONFIG, merged
from sim.models import leaves_when_warned, population
from sim.runner import Simulation
from sim.scenario import SCENARIO_DIR, load_scenario, scenario_from_mapping

VISITORS = 900
CUTOFF = {"cutoff_margin_min": 120}


def overloaded(issuing: dict | None = None, warned_leave: float | None = None):
    """The demo scenario at VISITORS a day on the demo hall with *issuing* as its ``[issuing]``."""
    scenario = load_scenario("demo").adjusted(visitors=VISITORS)
    data = tomllib.loads((CONFIG / "demo.toml").read_text(encoding="utf-8"))
    hall = hall_from_mapping(merged(data, {"issuing": issuing or {}}), source="demo-issuing.toml")
    scenario = scenario.with_hall(hall)
    if warned_leave is not None:
        scenario = replace(scenario, citizens=scenario.citizens.model_copy(update={"warned_leave": warned_leave}))
    return scenario


def run(scenario) -> tuple[Simulation, dict]:
    sim = Simulation(scenario)
    return sim, sim.run()


@pytest.fixture(scope="module")
def baseline():
    return run(overloaded())


def test_without_a_policy_nobody_is_told_early_and_many_give_up(baseline):
    _, summary = baseline
    block = summary["issuing"]
    assert block["told_early"] == 0 and block["told_early_share"] == 0.0
    assert block["gave_up"] == summary["flow"]["abandoned"] > 100
    assert block["gave_up_waited_median_min"] > 30


def test_the_cutoff_tells_citizens_early_and_fewer_give_up(baseline):
    sim, summary = run(overloaded({**CUTOFF, "cutoff": "refuse"}))
    block = summary["issuing"]
    assert block["told_early_by_reason"]["cutoff"] == block["told_early"] > 50
    assert block["told_early_by_reason"]["cap"] == block["told_early_by_reason"]["warned"] == 0
    assert block["gave_up"] < baseline[1]["issuing"]["gave_up"]
    assert block["told_early_share"] == block["told_early"] / (block["told_early"] + block["gave_up"])
    assert_counts_add_up(sim, summary)


def test_daily_caps_tell_citizens_early(baseline):
    caps = {code: 60 for code in ("BIZ", "PERMIT", "SOC", "MED", "CIVIL")}
    sim, summary = run(overloaded({"daily_cap": caps}))
    block = summary["issuing"]
    assert block["told_early_by_reason"]["cap"] == block["told_early"] > 0
    assert block["gave_up"] < baseline[1]["issuing"]["gave_up"]
    walk_ins = Counter(r.service for r in sim.tracker.tickets.values() if r.channel != "appointment")
    assert max(walk_ins.values()) <= 60  # the engine never issued past a cap
    assert_counts_add_up(sim, summary)


def test_a_warned_citizen_leaves_with_the_scenario_s_probability():
    sim_all, leave_all = run(overloaded({**CUTOFF, "cutoff": "warn"}, warned_leave=1.0))
    sim_none, leave_none = run(overloaded({**CUTOFF, "cutoff": "warn"}, warned_leave=0.0))
    every, none = leave_all["issuing"], leave_none["issuing"]
    assert every["told_early"] == every["told_early_by_reason"]["warned"] == every["warned"] > 50
    assert none["told_early"] == 0 and none["warned"] > every["warned"]  # all queued: the queues stay long
    assert none["gave_up"] > every["gave_up"]
    for sim, summary in ((sim_all, leave_all), (sim_none, leave_none)):
        assert_counts_add_up(sim, summary)


def test_half_leave_by_default_and_the_draw_is_the_citizen_s_own():
    scenario = load_scenario("demo")
    assert scenario.citizens.warned_leave == 0.5
    crowd = population(scenario, 0, np.random.default_rng(1))
    answers = [leaves_when_warned(scenario, 7, c) for c in crowd]
    assert answers == [leaves_when_warned(scenario, 7, c) for c in crowd]  # the same, asked again in any order
    assert 0.4 < sum(answers) / len(answers) < 0.6


def assert_counts_add_up(sim: Simulation, summary: dict) -> None:
    """Every walk-in ends once: a ticket (queued, or cancelled at once on a warning), told
    early at the kiosk, or sent home from a closed hall's door."""
    flow, block = summary["flow"], summary["issuing"]
    walk_ins = sum(1 for c in sim.citizens if c.channel != "appointment")
    refused = block["told_early_by_reason"]["cap"] + block["told_early_by_reason"]["cutoff"]
    assert flow["tickets_issued"] + refused + flow["hall_closed"] == walk_ins
    queued_walk_ins = sum(n["queued"] for c, n in summary["waits"]["by_channel"].items() if c != "appointment")
    assert queued_walk_ins + block["told_early_by_reason"]["warned"] == flow["tickets_issued"]
    assert block["gave_up"] == flow["abandoned"]


def test_a_scenario_s_issuing_table_stands_in_for_the_hall_s():
    weekday, peak = load_scenario("qingdao-weekday"), load_scenario("qingdao-peak-monday")
    assert weekday.hall.issuing.cutoff == "off" and not weekday.hall.issuing.daily_cap  # config/qingdao.toml
    assert peak.hall.issuing.cutoff == "refuse"
    assert set(peak.hall.issuing.daily_cap) == {s.code for s in peak.hall.services}
    assert peak.hall.issuing.daily_cap["TAX-INV"] == 2500


@pytest.mark.parametrize("table, message", [
    ({"daily_cap": {"NOPE": 3}}, "demo-bad.toml: issuing.daily_cap.NOPE: unknown service 'NOPE'"),
    ({"cutoff": "sometimes"}, "demo-bad.toml: issuing.cutoff: "),
    ({"daily_cap": {"SOC": -1}}, "demo-bad.toml: issuing.daily_cap: "),
])
def test_a_bad_scenario_issuing_table_is_a_clear_error(table, message):
    data = tomllib.loads((SCENARIO_DIR / "demo.toml").read_text(encoding="utf-8")) | {"issuing": table}
    with pytest.raises(ConfigError) as info:
        scenario_from_mapping(data, source="demo-bad.toml", base=SCENARIO_DIR)
    assert str(info.value).startswith(message)
