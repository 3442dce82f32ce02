"""Flow regulation (callsys/regulator.py): suggestions per over-target alert with the exact
commands, the hall's [regulation] policy, the automatic mode's limits (property test) and
the simulated manager in the virtual-time runner."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callsys import cockpit
from callsys import commands as cmd
from callsys import regulator
from callsys.errors import ConfigError, EngineError
from callsys.hall import Regulation
from callsys.state import OPEN
from callsys.hall import hall_from_mapping
from conftest import SMALL_HALL, TWO_ZONES, hall_time, merged
from engine_support import Desk
from sim.runner import Simulation, sim_regulation
from sim.scenario import load_scenario

# "north" has windows 1 (A, B) and 2 (A); "south" has 3 (B) and 4 (C). Zone scope: window 2
# may take B, window 3 may take C, window 4 may take B; nobody in the south may take A.
TWO_ZONE_HALL = hall_from_mapping(merged(SMALL_HALL, TWO_ZONES), source="two-zones.toml")


@pytest.fixture
def hall(make_hall):
    return make_hall(TWO_ZONES)


@pytest.fixture
def desk(hall):
    return Desk(hall, hall_time(9, 30))


def view(desk: Desk) -> cockpit.Cockpit:
    engine = desk.engine
    return cockpit.build(engine.hall, engine.state, engine.estimate_at, desk.now)


def crowd_b(desk: Desk, n: int = 40) -> None:
    """Every window open; windows 1 and 3 busy with B; *n* - 2 B tickets still waiting."""
    desk.open(1, 2, 3, 4)
    for _ in range(n):
        desk.take("B")
    desk.call(1)
    desk.call(3)


def test_the_scope_is_the_services_of_the_windows_zone_floor_or_hall(hall):
    assert regulator.scope_of(hall, "zone") == {1: {"A", "B"}, 2: {"A", "B"}, 3: {"B", "C"}, 4: {"B", "C"}}
    assert regulator.scope_of(hall, "hall")[4] == {"A", "B", "C"}
    assert regulator.scope_of(hall, "floor")[3] == {"A", "B", "C"}


def test_an_over_target_service_gets_idle_windows_of_its_zone_with_the_commands(desk, hall):
    crowd_b(desk)
    now_view = view(desk)
    assert "over_target:B" in {a.id for a in now_view.alerts}
    picks = regulator.Regulator(hall).suggest(now_view, desk.engine.state, desk.now)["over_target:B"]
    assert [(s.window, s.action, s.skills) for s in picks] == [(2, "reassign", ("A", "B")),
                                                              (4, "reassign", ("C", "B"))]
    assert picks[0].commands == (cmd.ReassignSkills(desk.now, 2, ("A", "B")),)
    assert picks[0].wait_after_s < picks[0].wait_before_s
    assert picks[1].wait_after_s < picks[1].wait_before_s == picks[0].wait_after_s  # counted one after the other
    assert picks[0].reason.startswith("window 2 (idle) also takes B")
    assert picks[0].to_message()["commands"] == [{"type": "reassign", "window": 2, "skills": ["A", "B"]}]
    for s in picks:  # the engine takes them as they are, and the windows then call B
        for c in s.commands:
            desk.engine.execute(c)
    assert desk.call(2).service == "B" and desk.call(4).service == "B"


def test_a_window_is_not_taken_from_a_service_worse_off(desk, hall):
    crowd_b(desk)
    for _ in range(30):  # C: 5 min at one window, target 15 min -> far over target
        desk.take("C")
    desk.call(4)
    picks = regulator.Regulator(hall).suggest(view(desk), desk.engine.state, desk.now)
    assert 4 not in {s.window for s in picks["over_target:B"]}
    assert [s.window for s in picks["over_target:C"]] == [3]  # B's window 3 is busy but B's ratio is lower


def test_closed_windows_are_suggested_to_open_only_when_the_hall_allows_it(desk, make_hall):
    desk.open(1, 3)
    for _ in range(40):
        desk.take("B")
    desk.call(1)
    desk.call(3)
    hall = desk.engine.hall
    picks = regulator.Regulator(hall).suggest(view(desk), desk.engine.state, desk.now)["over_target:B"]
    assert [(s.window, s.action) for s in picks] == [(2, "open"), (4, "open")]
    assert picks[0].commands == (cmd.ReassignSkills(desk.now, 2, ("A", "B")), cmd.OpenWindow(desk.now, 2))
    closed = regulator.Regulator(hall, Regulation(open_windows=False))
    assert closed.suggest(view(desk), desk.engine.state, desk.now)["over_target:B"] == ()


def test_the_regulation_table_is_validated(make_hall):
    hall = make_hall({"regulation": {"auto": True, "scope": "floor", "max_moves_per_hour": 3,
                                     "min_stay_min": 15, "check_every_min": 2}})
    assert hall.regulation == Regulation(True, "floor", True, 3, 900.0, 120.0)
    assert make_hall().regulation == Regulation()
    for bad in ({"scope": "room"}, {"max_moves_per_hour": 0}, {"min_stay_min": -1}, {"check_every_min": 0},
                {"every": 3}):
        with pytest.raises(ConfigError):
            make_hall({"regulation": bad})


def test_a_borrowed_service_back_under_target_lets_the_window_go_home(desk, hall):
    crowd_b(desk, 3)  # B: one waiting, well under target
    desk.engine.execute(cmd.ReassignSkills(desk.tick(), 2, ("A", "B")))
    auto = regulator.AutoRegulator(hall, Regulation(min_stay_s=0))
    assert auto.step(view(desk), desk.engine.state, desk.now) == [cmd.ReassignSkills(desk.now, 2, ("A",))]


# ------------------------------------------------------------------ the limits, property-tested

ACTIONS = st.one_of(
    st.tuples(st.just("take"), st.sampled_from("ABC"), st.integers(1, 30)),
    st.tuples(st.just("call"), st.integers(1, 4), st.just(0)),
    st.tuples(st.just("finish"), st.integers(1, 4), st.just(0)),
    st.tuples(st.just("toggle"), st.integers(1, 4), st.just(0)),
    st.tuples(st.just("wait"), st.just(""), st.integers(1, 2400)),
)


@settings(max_examples=80, deadline=None)
@given(k=st.integers(1, 3), stay=st.sampled_from([0.0, 300.0, 1200.0, 3600.0]), scope=st.sampled_from(["zone", "hall"]),
       script=st.lists(ACTIONS, min_size=5, max_size=60))
def test_the_automatic_mode_never_exceeds_its_limits(k, stay, scope, script):
    hall = TWO_ZONE_HALL
    policy = Regulation(True, scope, True, k, stay)
    desk = Desk(hall, hall_time(9, 0))
    auto = regulator.AutoRegulator(hall, policy)
    moves: dict[int, list[float]] = {}
    for action, what, n in script:
        try:
            if action == "take":
                for _ in range(n):
                    desk.take(what)
            elif action == "call":
                desk.do(cmd.CallNext, window=what)
            elif action == "finish":
                desk.do(cmd.FinishService, window=what)
            elif action == "toggle":
                shut = desk.engine.state.windows[what].status == OPEN
                desk.do(cmd.CloseWindow if shut else cmd.OpenWindow, window=what)
            else:
                desk.wait(n)
        except EngineError:
            pass  # a refused clerk action changes nothing; the regulator still looks
        now = desk.tick()  # the regulator looks after every action: its own limits must hold
        commands = auto.step(view(desk), desk.engine.state, now)
        for c in commands:
            desk.engine.execute(c)  # every command the regulator returns is one the engine takes
        for window in sorted({c.window for c in commands}):
            moves.setdefault(window, []).append(now)
    for window, times in moves.items():
        for i, t in enumerate(times):
            assert sum(1 for u in times if t - regulator.HOUR_S < u <= t) <= k, (window, times)
            if i:
                assert t - times[i - 1] >= stay, (window, times)


# ------------------------------------------------------------------ the simulated manager


def test_the_simulated_manager_regulates_a_crowded_day_through_the_engine():
    scenario = load_scenario("qingdao-weekday").adjusted(visitors=8000)
    sim = Simulation(scenario, seed=3, regulate=sim_regulation(scenario))
    sim.plan()
    book = sim.engine.state.book
    checked = 0
    while (step := sim.step()) is not None:
        if sim.heap and sim.heap[0][0] == step[0]:
            continue
        for (code, _), queue in book.queues.items():  # reassigned windows are woken like the others
            if queue:
                assert not sim.idle.serving(code), code
                checked += 1
    summary = sim.finish()
    assert summary["regulation"]["commands"] == sim.moves > 0
    assert sim.skills == {w: s.skills for w, s in sim.engine.state.windows.items()}  # the runner follows the engine
    assert checked > 100


def test_the_benchmark_compares_static_and_regulated_runs_on_the_same_seeds():
    from benchmarks.sim import bench_regulation, regulation_rows

    result = bench_regulation("qingdao-weekday", 1, visitors=9000)
    assert result["static"]["commands"] == 0 < result["regulated"]["commands"]
    rows = {r["metric"]: r for r in regulation_rows(result)}
    assert rows["weekday_p90_regulated_min"]["target"] == "<= 15" and rows["weekday_p90_static_min"]["value"] > 0
    assert 0 < rows["weekday_within_target_static"]["value"] <= 1


def test_sim_run_regulate_reports_the_simulated_managers_moves(tmp_path, capsys):
    import json

    from callsys.cli import main

    assert main(["sim", "run", "demo", "--visitors", "1500", "--regulate", "--out", str(tmp_path), "--json"]) == 0
    regulation = json.loads(capsys.readouterr().out)["regulation"]
    assert regulation["scope"] == "zone" and regulation["commands"] > 0
    assert main(["sim", "run", "demo", "--visitors", "1500", "--regulate", "--out", str(tmp_path), "--no-charts"]) == 0
    assert "reassignments by the simulated manager" in capsys.readouterr().out
