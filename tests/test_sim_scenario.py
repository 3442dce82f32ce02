"""Scenario files: the shipped ones load; mistakes are reported with file and key."""

from __future__ import annotations

import tomllib

import pytest

from callsys.errors import ConfigError
from sim.scenario import SCENARIO_DIR, load_scenario, resolve, scenario_from_mapping

SHIPPED = sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))


def demo_data() -> dict:
    return tomllib.loads((SCENARIO_DIR / "demo.toml").read_text(encoding="utf-8"))


def test_the_four_scenarios_ship():
    assert {"demo", "mmc", "qingdao-weekday", "qingdao-peak-monday"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_scenarios_load(name):
    s = load_scenario(name)
    assert s.name == name
    assert sum(s.mix.values()) == pytest.approx(1.0)
    assert sum(s.channels.values()) == pytest.approx(1.0)
    assert s.end > s.start


def test_peak_monday_is_a_monday_of_the_flagship_hall():
    s = load_scenario("qingdao-peak-monday")
    assert s.hall.id == "qingdao" and len(s.hall.windows) == 400
    assert s.weekday(0) == 0
    assert s.arrivals.visitors == 30_000


def test_a_path_and_a_name_find_the_same_file():
    assert resolve("demo") == SCENARIO_DIR / "demo.toml"
    assert load_scenario(SCENARIO_DIR / "demo.toml").mix == load_scenario("demo").mix


@pytest.mark.parametrize("table, values, key", [
    ("arrivals", {"surge": 2}, "arrivals.surge"),
    ("mix", {"weights": {"NOPE": 1}}, "mix.weights.NOPE"),
    ("arrivals", {"profile": [["09:00", 1], ["08:00", 1]]}, "arrivals.profile"),
    ("arrivals", {"profile": [["9am", 1], ["10:00", 1]]}, "arrivals.profile"),
    ("clerks", {"staffing_by_zone": {"attic": 0.5}}, "clerks.staffing_by_zone.attic"),
    ("service_times", {"model": "empirical"}, "service_times.csv"),
    ("appointments", {"no_show": 1.5}, "appointments.no_show"),
    ("service_times", {"minutes": {"SOC": -5}}, "service_times.minutes.SOC"),
    ("scenario", {"seed": -1}, "scenario.seed"),
    ("scenario", {"seed": 2**32}, "scenario.seed"),  # numpy seeds stop at 2**32 - 1
    ("scenario", {"days": 1, "warmup_min": 1440}, "scenario"),  # the warm-up would be the whole run
])
def test_mistakes_name_the_key(table, values, key):
    data = demo_data()
    data[table] = {**data.get(table, {}), **values}
    with pytest.raises(ConfigError) as info:
        scenario_from_mapping(data, source="bad.toml", base=SCENARIO_DIR)
    assert info.value.file == "bad.toml"
    assert info.value.key == key


def test_a_missing_file_and_a_missing_hall_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_scenario(tmp_path / "nope.toml")
    data = demo_data()
    data["scenario"]["hall"] = "no-such-hall.toml"
    with pytest.raises(ConfigError, match="file not found"):
        scenario_from_mapping(data, base=tmp_path)


def test_empirical_service_times_come_from_a_csv(tmp_path):
    (tmp_path / "times.csv").write_text("service,minutes\nSOC,4\nSOC,6\n*,10\n", encoding="utf-8")
    data = demo_data()
    data["scenario"]["hall"] = str(SCENARIO_DIR / data["scenario"]["hall"])
    data["service_times"] = {"model": "empirical", "csv": "times.csv"}
    s = scenario_from_mapping(data, base=tmp_path)
    assert s.empirical["SOC"] == (4.0, 6.0)
    assert s.empirical["BIZ"] == (10.0,)
    (tmp_path / "times.csv").write_text("service,minutes\nSOC,-1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="line 2"):
        scenario_from_mapping(data, base=tmp_path)


def test_adjusted_changes_days_and_visitors_only():
    s = load_scenario("demo")
    t = s.adjusted(days=3, visitors=90)
    assert (t.days, t.arrivals.visitors) == (3, 90)
    assert (s.days, s.arrivals.visitors) == (1, 450)
    assert t.arrivals.profile == s.arrivals.profile
    with pytest.raises(ConfigError):
        s.adjusted(days=0)
    with pytest.raises(ConfigError, match="visitors must be > 0") as info:
        s.adjusted(visitors=0)
    assert info.value.key == "arrivals.visitors"


def test_more_days_than_allowed_or_fewer_than_the_warm_up_are_config_errors():
    scenario = load_scenario("mmc")  # 60 days with a 240-minute warm-up
    with pytest.raises(ConfigError, match="days must be 1 ... 3650"):
        scenario.adjusted(days=100_000)
    data = demo_data()
    data["scenario"] = {**data["scenario"], "warmup_min": 2000}  # more than a day, less than two
    two_days = scenario_from_mapping({**data, "scenario": {**data["scenario"], "days": 2}}, source="w.toml",
                                     base=SCENARIO_DIR)
    with pytest.raises(ConfigError, match="leaves nothing of a 1-day run") as info:
        two_days.adjusted(days=1)
    assert info.value.key == "scenario.warmup_min"
