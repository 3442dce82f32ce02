"""The pure cockpit model (callsys/cockpit.py): window states, service estimates against
their targets, the crowd heatmap by zone, alerts with ids, ratings, and the floor layout."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callsys import cockpit
from callsys import commands as cmd
from callsys.errors import ConfigError, EngineError
from callsys.hall import hall_from_mapping
from callsys.ratings import Ratings
from conftest import SMALL_HALL, TWO_ZONES, hall_time, merged
from engine_support import Desk



@pytest.fixture
def hall(make_hall):
    return make_hall(TWO_ZONES)


@pytest.fixture
def desk(hall):
    return Desk(hall, hall_time(9, 30))


def view(desk: Desk, now: float | None = None, ratings: cockpit.Ratings | None = None) -> cockpit.Cockpit:
    engine = desk.engine
    return cockpit.build(engine.hall, engine.state, engine.estimate_at, desk.now if now is None else now, ratings)


def by_id(items, attr="id"):
    return {getattr(item, attr): item for item in items}


def test_window_states_follow_the_clerks(desk):
    desk.open(1, 2, 3)
    desk.do(cmd.Pause, window=3)
    desk.take("A")
    desk.take("A")
    desk.call(1)
    desk.call(2)
    desk.do(cmd.StartService, window=2)
    started = desk.now
    windows = by_id(view(desk, now=started + 90).windows)
    assert windows[1].state == cockpit.CALLING and windows[1].number == "A001"
    assert windows[2].state == cockpit.SERVING and windows[2].service == "A"
    assert windows[2].since == started and windows[2].elapsed_s == 90
    assert windows[3].state == "paused"
    assert windows[4].state == "closed" and windows[4].number is None and windows[4].elapsed_s is None
    desk.do(cmd.FinishService, window=2)
    assert by_id(view(desk).windows)[2].state == cockpit.IDLE


def test_services_compare_the_estimate_with_the_target(desk, hall):
    desk.open(4)  # C: 5 min a citizen, target 15 min, one window
    for _ in range(2):
        desk.take("C")
    services = by_id(view(desk).services, "code")
    c = services["C"]
    assert c.waiting == 2 and c.windows_open == 1 and c.target_wait_s == 15 * 60
    assert c.estimated_wait_s == desk.engine.estimate_new("C")
    assert not c.over_target
    for _ in range(6):
        desk.take("C")
    c = by_id(view(desk).services, "code")["C"]
    assert c.estimated_wait_s > c.target_wait_s and c.over_target
    alerts = by_id(view(desk).alerts)
    assert alerts["over_target:C"].service == "C" and alerts["over_target:C"].waiting == 8


def test_tickets_nobody_serves_are_over_target(desk):
    desk.open(1, 3)  # before any window opened, the estimate counts the configured windows
    desk.do(cmd.CloseWindow, window=1)
    desk.do(cmd.CloseWindow, window=3)
    desk.take("B")
    (alert,) = view(desk).alerts
    assert alert.id == "over_target:B" and alert.estimated_wait_s is None and alert.waiting == 1


def test_an_idle_window_with_waiting_tickets_raises_an_alert(desk):
    desk.open(1, 3)
    desk.take("A")
    alerts = by_id(view(desk).alerts)
    assert "idle_window:1" in alerts and alerts["idle_window:1"].services == ("A",)
    assert "idle_window:3" not in alerts  # window 3 serves B only: nothing waits for it
    desk.call(1)
    assert not [a for a in view(desk).alerts if a.kind == cockpit.IDLE_WINDOW]


def test_heat_spreads_a_queue_over_the_zones_of_its_open_windows(desk):
    for _ in range(4):
        desk.take("B")
    # nobody open: B spreads over every window that has it (1 north, 3 south)
    zones = by_id(view(desk).zones)
    assert zones["north"].waiting == 2 and zones["south"].waiting == 2
    desk.open(3)  # only the south window is open for B: the whole queue stands there
    zones = by_id(view(desk).zones)
    assert zones["north"].waiting == 0 and zones["south"].waiting == 4
    assert zones["south"].windows_open == 1 and zones["south"].windows_busy == 0
    desk.call(3)
    zones = by_id(view(desk).zones)
    assert zones["south"].waiting == 3 and zones["south"].windows_busy == 1


actions = st.lists(st.tuples(st.sampled_from(["take", "open", "close", "call", "finish", "pause", "resume"]),
                             st.sampled_from(["A", "B", "C"]), st.integers(1, 4)), max_size=40)


@settings(max_examples=60)
@given(actions)
def test_heat_adds_up_to_the_waiting_citizens_someone_could_serve(script):
    """Whatever the clerks do, the zones together hold every queued ticket of a service that
    some window has, and no window's state is outside WINDOW_STATES."""
    desk = Desk(hall_from_mapping(merged(SMALL_HALL, TWO_ZONES)), hall_time(9, 30))
    commands = {"open": cmd.OpenWindow, "close": cmd.CloseWindow, "call": cmd.CallNext,
                "finish": cmd.FinishService, "pause": cmd.Pause, "resume": cmd.Resume}
    for action, service, window in script:
        try:
            if action == "take":
                desk.take(service)
            else:
                desk.do(commands[action], window=window)
        except EngineError:
            pass
        model = view(desk)
        waiting = sum(s.waiting for s in model.services)
        direct = sum(len(q) for q in desk.engine.state.book.direct.values())
        assert sum(z.waiting for z in model.zones) == pytest.approx(waiting + direct)
        assert all(w.state in cockpit.WINDOW_STATES for w in model.windows)
        assert len({a.id for a in model.alerts}) == len(model.alerts)
        for alert in model.alerts:
            if alert.kind == cockpit.IDLE_WINDOW:
                assert by_id(model.windows)[alert.window].state == cockpit.IDLE


def test_ratings_come_from_the_servers_fold_and_a_bad_one_is_an_alert(desk):
    desk.open(1)
    ratings = Ratings(daily=True)
    for rating, score in (("good", 5), ("bad", 2), (None, None), ("good", None)):
        desk.take("A")
        for event in [*desk.do(cmd.CallNext, window=1), *desk.do(cmd.FinishService, window=1, rating=rating,
                                                                   score=score)]:
            ratings.apply(event)
    model = view(desk, ratings=ratings)
    (figures,) = model.ratings
    assert (figures.window, figures.good, figures.bad, figures.unrated, figures.mean_score) == (1, 2, 1, 1, 3.5)
    (bad,) = [a for a in model.alerts if a.kind == cockpit.BAD_RATING]
    assert (bad.window, bad.number, bad.score) == (1, "A002", 2) and bad.id == f"bad_rating:{bad.ticket}"
    message = model.to_message()
    assert message["ratings"] == [ratings.windows[1].to_dict()]
    assert view(desk).ratings == ()  # no fold given: no ratings


def test_the_ratings_fold_forgets_a_number_once_its_ticket_leaves_the_window(desk):
    """A no-show, a transfer or a parked ticket is rated by nobody: its number is not kept
    until the night's reset; a ticket called again is remembered again."""
    desk.open(1)
    ratings = Ratings(daily=True)
    for leave in ((cmd.NoShow, {}), (cmd.Transfer, {"service": "A"}), (cmd.Park, {})):
        desk.take("A")
        events = desk.do(cmd.CallNext, window=1)
        if leave[0] is cmd.NoShow:
            for _ in range(desk.engine.hall.policy.recall_limit):
                events += desk.do(cmd.Recall, window=1)
        for event in [*events, *desk.do(leave[0], window=1, **leave[1])]:
            ratings.apply(event)
        assert ratings._numbers == {}
    for event in desk.do(cmd.CallNext, window=1):
        ratings.apply(event)
    assert list(ratings._numbers.values()) == [event.number for event in desk.do(cmd.Recall, window=1)]


def test_layout_uses_the_hall_positions_and_boxes_zones_around_their_windows(hall):
    placed = cockpit.layout(hall)
    assert placed.windows[3] == (2.0, 15.0)
    north = placed.zones["north"]
    assert (north.x, north.y) == (0.0, 0.0)  # 2 m margin, clipped at the floor's edge
    assert north.x + north.width == 5.0 + cockpit.ZONE_MARGIN
    message = placed.to_message(hall)
    assert message["floors"] == [{"floor": 1, "name": {"zh": "一楼", "en": "Floor 1"}, "width": 50.0, "depth": 20.0}]
    assert {z["id"] for z in message["zones"]} == {"north", "south"}


def test_a_zone_area_from_the_hall_file_is_kept(make_hall):
    zones = [{**TWO_ZONES["zones"][0], "area": [0, 0, 30, 10]}, TWO_ZONES["zones"][1]]
    placed = cockpit.layout(make_hall({**TWO_ZONES, "zones": zones}))
    assert placed.zones["north"] == cockpit.ZoneBox("north", 1, 0.0, 0.0, 30.0, 10.0)


def test_a_zone_area_outside_its_floor_is_a_config_error(make_hall):
    zones = [{**TWO_ZONES["zones"][0], "area": [40, 0, 30, 10]}, TWO_ZONES["zones"][1]]
    with pytest.raises(ConfigError, match=r"zones\[0\]\.area: zone 'north' area .* inside floor 1 \(50 x 20 m\)"):
        make_hall({**TWO_ZONES, "zones": zones})


def test_a_hall_without_positions_gets_a_default_grid_inside_the_floor(make_hall):
    windows = [{k: v for k, v in w.items() if k not in ("x", "y")} for w in TWO_ZONES["windows"]]
    hall = make_hall({**TWO_ZONES, "windows": windows})
    placed = cockpit.layout(hall)
    assert len(set(placed.windows.values())) == 4  # every window on its own spot
    for x, y in placed.windows.values():
        assert 0 <= x <= 50 and 0 <= y <= 20
    north, south = placed.zones["north"], placed.zones["south"]
    assert north.x + north.width <= south.x or south.x + south.width <= north.x \
        or north.y + north.depth <= south.y  # the zones do not overlap


def test_the_qingdao_hall_lays_out_every_window_on_its_floor(qingdao_hall):
    placed = cockpit.layout(qingdao_hall)
    assert len(placed.windows) == len(qingdao_hall.windows) == 400
    for w in qingdao_hall.windows:
        width, depth = placed.floors[w.floor]
        x, y = placed.windows[w.id]
        assert 0 <= x <= width and 0 <= y <= depth


@settings(max_examples=40)
@given(st.lists(st.integers(1, 45), min_size=1, max_size=4), st.floats(10, 200), st.floats(10, 200))
def test_default_grid_keeps_every_window_on_its_floor_and_apart(counts, width, depth):
    """Zones of any size on a floor of any size, no positions given: every window lands
    inside the floor, on a spot of its own, inside its zone's box."""
    zones = [{"id": f"z{i}", "floor": 1, "name": {"zh": "区", "en": "Zone"}} for i in range(len(counts))]
    windows, wid = [], 1
    for i, n in enumerate(counts):
        for _ in range(n):
            windows.append({"id": wid, "zone": f"z{i}", "skills": ["A"]})
            wid += 1
    floors = [{"number": 1, "name": {"zh": "一楼", "en": "Floor 1"}, "width": width, "depth": depth}]
    hall = hall_from_mapping(merged(SMALL_HALL, {"floors": floors, "zones": zones, "windows": windows}))
    placed = cockpit.layout(hall)
    if len(windows) > 1:
        assert len(set(placed.windows.values())) == len(windows)
    for w in hall.windows:
        x, y = placed.windows[w.id]
        assert 0 <= x <= width and 0 <= y <= depth
        box = placed.zones[w.zone]
        assert box.x <= x <= box.x + box.width and box.y <= y <= box.y + box.depth
