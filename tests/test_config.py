"""Hall configuration: the shipped halls load, and every mistake names file, key and problem."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, Callable

import pytest

from callsys.errors import ConfigError
from callsys.hall import hall_from_mapping, load_hall

from conftest import CONFIG

# ---------------------------------------------------------------------- shipped halls


def test_demo_hall_layout(demo_hall):
    assert demo_hall.id == "demo"
    assert sorted(w.id for w in demo_hall.windows) == list(range(1, 11))
    assert [s.code for s in demo_hall.services] == ["BIZ", "PERMIT", "SOC", "MED", "CIVIL"]
    assert [s.prefix for s in demo_hall.services] == ["A", "B", "C", "D", "E"]
    assert demo_hall.source.endswith("demo.toml")


def test_demo_universal_windows_expand_to_every_service(demo_hall):
    every = tuple(s.code for s in demo_hall.services)
    universal = [w for w in demo_hall.windows if w.universal]
    assert [w.id for w in universal] == [1, 2, 3, 4]
    assert all(w.skills == every for w in universal)
    assert demo_hall.windows_by_id[10].skills == ("CIVIL", "SOC")


def test_demo_window_policy_overrides(demo_hall):
    orders = {w.id: w.skill_order for w in demo_hall.windows}
    assert orders[5] == orders[6] == "strict"
    assert {orders[i] for i in (1, 2, 3, 4, 7, 8, 9, 10)} == {"rank"}
    assert all(w.interleave == () for w in demo_hall.windows)


def test_demo_window_blocks_are_laid_out_in_rows(demo_hall):
    w = demo_hall.windows_by_id
    assert (w[1].x, w[1].y) == (4.0, 3.0)
    assert (w[2].x, w[2].y) == (7.0, 3.0)
    assert (w[6].x, w[6].y) == (19.0, 3.0)
    assert (w[9].x, w[9].y) == (10.0, 12.0)
    assert w[10].display == "10"


def test_demo_appointments_and_policy_in_seconds(demo_hall):
    a, p = demo_hall.appointments, demo_hall.policy
    assert dict(a.capacity) == {"BIZ": 3, "PERMIT": 2, "SOC": 4, "MED": 2, "CIVIL": 2}
    assert (a.early_checkin_s, a.late_grace_s, a.late_rule) == (3600, 900, "walk_in")
    assert (p.appointment_credit_s, p.green_credit_s) == (600, 1800)
    assert demo_hall.services_by_code["SOC"].target_wait_s == 15 * 60


def test_demo_hours(demo_hall):
    hours = demo_hall.hours
    assert hours.sessions(0) == ((540, 720), (840, 1200))
    assert hours.sessions(6) == ((540, 720),)
    assert hours.is_open(0, 9 * 60) and not hours.is_open(0, 12 * 60)
    assert not hours.is_open(6, 14 * 60)


def test_qingdao_has_400_windows_with_unique_ids_and_displays(qingdao_hall):
    windows = qingdao_hall.windows
    assert len(windows) == 400
    assert len({w.id for w in windows}) == 400
    assert len({w.display for w in windows}) == 400


def test_qingdao_floor_four_has_97_windows_and_17_city_universal(qingdao_hall):
    per_floor = Counter(w.floor for w in qingdao_hall.windows)
    assert per_floor[4] == 97
    assert sum(per_floor.values()) == 400
    city = [w for w in qingdao_hall.windows if w.zone == "f4-city-universal"]
    assert len(city) == 17 and all(w.universal for w in city)


def test_qingdao_every_window_is_on_its_floor_and_serves_known_services(qingdao_hall):
    floors = {f.number: f for f in qingdao_hall.floors}
    for w in qingdao_hall.windows:
        assert 0 <= w.x <= floors[w.floor].width and 0 <= w.y <= floors[w.floor].depth
        assert w.floor == qingdao_hall.zones_by_id[w.zone].floor
        assert w.skills and set(w.skills) <= set(qingdao_hall.services_by_code)


def test_qingdao_policy_and_hours(qingdao_hall):
    p = qingdao_hall.policy
    assert p.interleave == (2, 1) and p.wait_threshold and p.recall_limit == 3
    assert all(w.interleave == (2, 1) for w in qingdao_hall.windows if w.universal)
    hours = qingdao_hall.hours
    assert hours.sessions(6) == ()
    assert hours.issue_cutoff_min == 30
    assert hours.sessions(0) == ((540, 720), (810, 1020))
    assert hours.is_open(0, 13 * 60 + 30) and not hours.is_open(0, 13 * 60 + 29)


def test_qingdao_prefixes_are_unique(qingdao_hall):
    prefixes = [s.prefix for s in qingdao_hall.services]
    assert len(prefixes) == len(set(prefixes))
    assert not {"I", "O"} & set(prefixes)


@pytest.mark.parametrize("name", ["demo", "qingdao"])
def test_summary_is_plain_json(name):
    hall = load_hall(CONFIG / f"{name}.toml")
    summary = json.loads(json.dumps(hall.summary(), ensure_ascii=False))
    assert summary["id"] == name
    assert len(summary["windows"]) == len(hall.windows)
    assert "windows_by_id" not in summary and "tz" not in summary


def test_tokens_map_to_roles(demo_hall):
    assert demo_hall.role_of("demo-kiosk") == "kiosk"
    assert demo_hall.role_of("demo-manager") == "manager"
    assert demo_hall.role_of("nobody") is None


def test_local_time_is_in_the_hall_time_zone(demo_hall, monday_0930):
    local = demo_hall.local_time(monday_0930)
    assert (local.weekday(), local.hour, local.minute) == (0, 9, 30)
    assert local.utcoffset().total_seconds() == 8 * 3600


def test_small_hall_defaults(small_hall):
    assert small_hall.number_width == 3 and small_hall.reset_daily
    assert small_hall.appointments.capacity["C"] == 0
    assert small_hall.windows_by_id[3].skill_order == "strict"
    assert small_hall.windows_by_id[1].skills == ("A", "B", "C")


def test_window_policy_overrides_hall_policy(make_hall):
    hall = make_hall({"policy": {"interleave": [2, 1], "skill_order": "strict"}})
    assert hall.windows_by_id[1].interleave == (2, 1)
    assert hall.windows_by_id[1].skill_order == "strict"
    hall_data = make_hall().summary()
    assert hall_data["windows"][0]["interleave"] == []


def test_qr_and_no_show_defaults_and_overrides(small_hall, make_hall):
    assert small_hall.qr.ticket_valid_s == 24 * 3600 and small_hall.qr.door_rotate_s == 300
    assert small_hall.qr.doors == ("main",)
    a = small_hall.appointments
    assert (a.no_show_limit, a.no_show_window_days, a.no_show_block_days) == (2, 30, 90)
    hall = make_hall({"qr": {"ticket_valid_hours": 2, "door_rotate_minutes": 1.5, "doors": ["east", "west"]},
                      "appointments": {"no_show_limit": 0}})
    assert (hall.qr.ticket_valid_s, hall.qr.door_rotate_s, hall.qr.doors) == (7200, 90, ("east", "west"))
    assert hall.appointments.no_show_limit == 0


def test_numbers_never_reset(make_hall):
    assert not make_hall({"hall": {"reset_numbers": "never"}}).reset_daily


# ---------------------------------------------------------------------- mistakes


def _set(path: str, value: Any) -> Callable[[dict], None]:
    """An edit that sets the dotted *path* (list indexes as numbers) to *value*."""

    def edit(data: dict) -> None:
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        for part in parents:
            data = data[part]
        data[last] = value

    return edit


def _add_block(data: dict) -> None:
    data["window_blocks"] = [{"first_id": 3, "count": 2, "zone": "main", "origin": [20.0, 5.0], "skills": ["A"]}]


MISTAKES = {
    "unknown key": (_set("hall.colour", "red"), "hall.colour", "unknown key"),
    "unknown top-level key": (_set("lobby", {}), "lobby", "unknown key"),
    "unknown key in a window": (_set("windows.2.colour", "red"), "windows[2].colour", "unknown key"),
    "missing table": (lambda d: d.pop("services"), "services", "required key is missing"),
    "wrong type": (_set("windows.0.id", "one"), "windows[0].id", "'one'"),
    "unknown service on a window": (_set("windows.1.skills", ["A", "XYZ"]), "windows[1].skills[1]",
                                    "unknown service 'XYZ'"),
    "unknown service in a block": (lambda d: (_add_block(d), _set("window_blocks.0.skills", ["Q"])(d)),
                                   "window_blocks[0].skills[0]", "unknown service 'Q'"),
    "unknown zone": (_set("windows.0.zone", "roof"), "windows[0].zone", "unknown zone 'roof'"),
    "zone on unknown floor": (_set("zones.0.floor", 9), "zones[0].floor", "unknown floor 9"),
    "unknown group": (_set("services.2.group", "tax"), "services[2].group", "unknown group 'tax'"),
    "duplicate window id": (_set("windows.1.id", 1), "windows[1].id", "duplicate window id 1"),
    "duplicate id across a block and a window": (_add_block, "window_blocks[0].id",
                                                 "duplicate window id 3 (also in windows[2])"),
    "duplicate display": (_set("windows.1.display", "1"), "windows[1].display", "duplicate display number '1'"),
    "duplicate prefix": (_set("services.1.prefix", "A"), "services[1].prefix", "duplicate prefix 'A'"),
    "duplicate service code": (_set("services.2.code", "A"), "services[2].code", "duplicate code 'A'"),
    "duplicate zone": (lambda d: d["zones"].append(dict(d["zones"][0])), "zones[1].id", "duplicate id 'main'"),
    "duplicate group": (lambda d: d["groups"].append(dict(d["groups"][0])), "groups[1].code", "duplicate code"),
    "session ends before it starts": (_set("hours.mon", ["12:00-09:00"]), "hours.mon", "must end after it starts"),
    "hour out of range": (_set("hours.tue", ["09:00-25:00"]), "hours.tue", "not a valid time range"),
    "not a time range": (_set("hours.wed", ["9-12"]), "hours.wed", "not of the form 'HH:MM-HH:MM'"),
    "overlapping sessions": (_set("hours.thu", ["09:00-12:00", "11:00-13:00"]), "hours.thu", "must not overlap"),
    "slot grid does not fit a session": (_set("appointments.slot_minutes", 40), "appointments.slot_minutes",
                                         "does not fit the session 09:00-12:00 on mon"),
    "capacity for unknown service": (_set("appointments.capacity", {"ZZ": 3}), "appointments.capacity.ZZ",
                                     "unknown service 'ZZ'"),
    "negative capacity": (_set("appointments.capacity", {"A": -1}), "appointments.capacity", "must be >= 0"),
    "star mixed with skills": (_set("windows.0.skills", ["*", "A"]), "windows[0].skills", "must stand alone"),
    "skill listed twice": (_set("windows.1.skills", ["A", "A"]), "windows[1].skills", "listed twice"),
    "window outside its floor": (_set("windows.3.x", 60.0), "windows[3]", "lies outside floor 1"),
    "unknown timezone": (_set("hall.timezone", "Mars/Olympus"), "hall.timezone", "unknown time zone 'Mars/Olympus'"),
    "token given to two roles": (_set("tokens.clerk", ["c1", "k1"]), "tokens.clerk[1]",
                                 "token already given to role 'kiosk'"),
    "hall never open": (_set("hours", {"issue_cutoff_min": 0}), "hours", "never open"),
    "cut-off longer than a session": (_set("hours.issue_cutoff_min", 180), "hours.mon",
                                      "shorter than issue_cutoff_min"),
    "interleave count below one": (_set("policy.interleave", [0, 1]), "policy.interleave", "two counts >= 1"),
    "no windows": (_set("windows", []), "windows", "no windows"),
    "bad policy choice": (_set("policy.requeue", "front"), "policy.requeue", "'front'"),
    "negative no-show limit": (_set("appointments.no_show_limit", -1), "appointments.no_show_limit", "greater than or equal to 0"),
    "zero no-show window": (_set("appointments.no_show_window_days", 0), "appointments.no_show_window_days",
                            "greater than or equal to 1"),
    "zero QR lifetime": (_set("qr", {"ticket_valid_hours": 0}), "qr.ticket_valid_hours", "greater than 0"),
    "bad door name": (_set("qr", {"doors": ["Main Door"]}), "qr.doors", "door name 'Main Door'"),
    "door listed twice": (_set("qr", {"doors": ["main", "main"]}), "qr.doors", "listed twice"),
    "unknown QR key": (_set("qr", {"colour": "red"}), "qr.colour", "unknown key"),
}


@pytest.mark.parametrize("edit, key, problem", MISTAKES.values(), ids=MISTAKES.keys())
def test_mistake_names_file_key_and_problem(hall_mapping, edit, key, problem):
    edit(hall_mapping)
    with pytest.raises(ConfigError) as info:
        hall_from_mapping(hall_mapping, source="halls/small.toml")
    error = info.value
    assert (error.file, error.key) == ("halls/small.toml", key)
    assert problem in error.problem
    assert str(error) == f"halls/small.toml: {key}: {error.problem}"
    assert error.code == "config_error"


def test_error_in_a_file_names_the_file(tmp_path):
    text = (CONFIG / "demo.toml").read_text(encoding="utf-8")
    assert text.count('skills = ["CIVIL", "SOC"]') == 1
    path = tmp_path / "hall.toml"
    path.write_text(text.replace('skills = ["CIVIL", "SOC"]', 'skills = ["CIVIL", "XYZ"]'), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_hall(path)
    assert (info.value.file, info.value.key) == (str(path), "windows[0].skills[1]")
    assert info.value.problem == "unknown service 'XYZ'"


def test_bad_toml(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[hall\nid = 'x'\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_hall(path)
    assert (info.value.file, info.value.key) == (str(path), "")
    assert info.value.problem.startswith("not valid TOML")
    assert str(info.value).startswith(f"{path}: not valid TOML")


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.toml"
    with pytest.raises(ConfigError) as info:
        load_hall(path)
    assert (info.value.file, info.value.key, info.value.problem) == (str(path), "", "file not found")
