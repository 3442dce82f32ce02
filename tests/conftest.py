"""Shared fixtures: the shipped halls, a small hall built from a dict, and fixed hall times.

Kept to generic hall and time fixtures; helpers that drive the engine live in
``engine_support.py``.

Hypothesis runs without its per-example deadline and without the too-slow health check:
both measure wall time, so on a busy machine they fail tests that are correct.
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Mapping
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, settings

from callsys.hall import Hall, hall_from_mapping, load_hall

CONFIG = Path(__file__).resolve().parent.parent / "config"
SHANGHAI = ZoneInfo("Asia/Shanghai")
MONDAY = datetime(2026, 11, 23, tzinfo=SHANGHAI)  # a Monday; no holiday logic exists anyway

settings.register_profile("callsys", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("callsys")

# A small hall for precise tests: three services, four windows, Mon-Fri 9-12 and 14-17,
# Saturday morning, closed on Sunday. Windows start closed, so each test opens what it needs.
SMALL_HALL: dict[str, Any] = {
    "hall": {"id": "small", "name": {"zh": "小厅", "en": "Small hall"}, "timezone": "Asia/Shanghai"},
    "hours": {
        **{day: ["09:00-12:00", "14:00-17:00"] for day in ("mon", "tue", "wed", "thu", "fri")},
        "sat": ["09:00-12:00"],
    },
    "appointments": {"slot_minutes": 30, "default_capacity": 2, "capacity": {"C": 0},
                     "early_checkin_min": 60, "late_grace_min": 15, "late_rule": "walk_in"},
    "policy": {"appointment_credit_min": 10, "green_credit_min": 30, "interleave": [],
               "wait_threshold": False, "skill_order": "rank", "recall_limit": 2, "requeue": "back"},
    "groups": [{"code": "general", "name": {"zh": "综合", "en": "General"}}],
    "floors": [{"number": 1, "name": {"zh": "一楼", "en": "Floor 1"}, "width": 50.0, "depth": 20.0}],
    "zones": [{"id": "main", "floor": 1, "name": {"zh": "大厅", "en": "Main"}}],
    "services": [
        {"code": "A", "prefix": "A", "name": {"zh": "甲", "en": "Alpha"}, "group": "general",
         "minutes": 10.0, "target_wait_min": 20},
        {"code": "B", "prefix": "B", "name": {"zh": "乙", "en": "Beta"}, "group": "general",
         "minutes": 6.0, "target_wait_min": 30},
        {"code": "C", "prefix": "C", "name": {"zh": "丙", "en": "Gamma"}, "group": "general",
         "minutes": 5.0, "target_wait_min": 15},
    ],
    "windows": [
        {"id": 1, "zone": "main", "x": 1.0, "y": 1.0, "skills": ["*"]},
        {"id": 2, "zone": "main", "x": 4.0, "y": 1.0, "skills": ["A", "B"]},
        {"id": 3, "zone": "main", "x": 7.0, "y": 1.0, "skills": ["B", "A"], "skill_order": "strict"},
        {"id": 4, "zone": "main", "x": 10.0, "y": 1.0, "skills": ["C"]},
    ],
    "tokens": {"kiosk": ["k1"], "clerk": ["c1"], "manager": ["m1"]},
}


# Two zones (the cockpit and regulator tests): "north" has windows 1 (A, B) and 2 (A);
# "south" has window 3 (B) and 4 (C).
TWO_ZONES = {
    "zones": [{"id": "north", "floor": 1, "name": {"zh": "北", "en": "North"}},
              {"id": "south", "floor": 1, "name": {"zh": "南", "en": "South"}}],
    "windows": [
        {"id": 1, "zone": "north", "x": 2.0, "y": 2.0, "skills": ["A", "B"]},
        {"id": 2, "zone": "north", "x": 5.0, "y": 2.0, "skills": ["A"]},
        {"id": 3, "zone": "south", "x": 2.0, "y": 15.0, "skills": ["B"]},
        {"id": 4, "zone": "south", "x": 5.0, "y": 15.0, "skills": ["C"]},
    ],
}


def merged(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """*base* with *overrides* laid over it: tables merge key by key, other values replace."""
    out = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@pytest.fixture(scope="session")
def demo_hall() -> Hall:
    return load_hall(CONFIG / "demo.toml")


@pytest.fixture(scope="session")
def qingdao_hall() -> Hall:
    return load_hall(CONFIG / "qingdao.toml")


@pytest.fixture
def hall_mapping() -> dict[str, Any]:
    """A fresh, valid mapping of the small hall, to edit before compiling."""
    return copy.deepcopy(SMALL_HALL)


@pytest.fixture
def make_hall() -> Callable[..., Hall]:
    """``make_hall({"policy": {"interleave": [2, 1]}})``: the small hall with overrides."""

    def build(overrides: Mapping[str, Any] | None = None, *, source: str = "small.toml") -> Hall:
        return hall_from_mapping(merged(SMALL_HALL, overrides or {}), source=source)

    return build


@pytest.fixture
def small_hall(make_hall: Callable[..., Hall]) -> Hall:
    return make_hall()


def hall_time(hour: int, minute: int = 0, *, day: int = 0) -> float:
    """POSIX seconds of *hour*:*minute* Shanghai time, *day* days after the fixed Monday."""
    return (MONDAY + timedelta(days=day, hours=hour, minutes=minute)).timestamp()


@pytest.fixture
def monday_0930() -> float:
    """Monday 2026-11-23 09:30 Asia/Shanghai as POSIX seconds: the hall is open."""
    return hall_time(9, 30)
