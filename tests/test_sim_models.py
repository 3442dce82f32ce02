"""The simulator's random models: each one's statistics, seeded, plus hypothesis invariants."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sim.models import (EmpiricalTimes, ExponentialTimes, LognormalTimes, nhpp_minutes, patience_seconds,
                        population, profile_area, slot_grid)
from sim.scenario import load_scenario

FLAT = ((0.0, 1.0), (1440.0, 1.0))
PEAKED = ((480.0, 0.0), (540.0, 3.0), (600.0, 1.0), (720.0, 0.0))


@pytest.fixture(scope="module")
def demo():
    return load_scenario("demo")


def test_profile_area_is_the_trapezoid_integral():
    assert profile_area(FLAT) == 1440.0
    assert profile_area(PEAKED) == pytest.approx(60 * 1.5 + 60 * 2.0 + 120 * 0.5)


def test_nhpp_count_is_poisson_with_the_expected_mean():
    rng = np.random.default_rng(11)
    counts = np.array([len(nhpp_minutes(PEAKED, 500.0, rng)) for _ in range(400)])
    assert counts.mean() == pytest.approx(500, rel=0.01)
    assert counts.var() / counts.mean() == pytest.approx(1.0, abs=0.15)  # Poisson: variance = mean


def test_nhpp_follows_the_profile_shape():
    rng = np.random.default_rng(3)
    t = np.concatenate([nhpp_minutes(PEAKED, 2000.0, rng) for _ in range(20)])
    # expected share of arrivals in each piece of the profile: its area over the total
    total = profile_area(PEAKED)
    for lo, hi, area in ((480, 540, 90.0), (540, 600, 120.0), (600, 720, 60.0)):
        share = np.mean((t >= lo) & (t < hi))
        assert share == pytest.approx(area / total, abs=0.01)


def test_nhpp_seeded_golden_values():
    t = nhpp_minutes(PEAKED, 100.0, np.random.default_rng(2))
    assert len(t) == 100
    assert t[0] == pytest.approx(482.82331, abs=1e-4)
    assert t[-1] == pytest.approx(694.22781, abs=1e-4)


@given(points=st.lists(st.tuples(st.floats(0, 1440), st.floats(0, 5)), min_size=2, max_size=8),
       expected=st.floats(1, 500), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=60, deadline=None)
def test_nhpp_arrivals_lie_where_the_rate_is_positive(points, expected, seed):
    xs = sorted({round(x, 3) for x, _ in points})
    assume(len(xs) >= 2)
    profile = tuple((x, y) for x, (_, y) in zip(xs, points))
    assume(profile_area(profile) >= 1e-3)  # a day with (practically) no arrival rate is refused on loading
    t = nhpp_minutes(profile, expected, np.random.default_rng(seed))
    assert np.all(np.diff(t) >= 0)
    assert np.all((t >= xs[0]) & (t <= xs[-1]))
    rate = np.interp(t, [p[0] for p in profile], [p[1] for p in profile])
    assert np.all(rate > 0)


def test_lognormal_times_have_the_mean_and_cv():
    model = LognormalTimes({"A": 10.0, "B": 4.0}, cv=0.6)
    rng = np.random.default_rng(5)
    for code, mean in (("A", 600.0), ("B", 240.0)):
        x = model.sample(np.array([code] * 200_000), rng)
        assert x.mean() == pytest.approx(mean, rel=0.01)
        assert x.std() / x.mean() == pytest.approx(0.6, rel=0.03)
        assert x.min() > 0


def test_exponential_times_have_cv_one():
    x = ExponentialTimes({"S": 10.0}).sample(np.array(["S"] * 200_000), np.random.default_rng(6))
    assert x.mean() == pytest.approx(600.0, rel=0.01)
    assert x.std() / x.mean() == pytest.approx(1.0, rel=0.02)


def test_empirical_times_resample_the_observations():
    model = EmpiricalTimes({"A": (2.0, 3.0, 7.0), "B": (5.0,)}, scale=2.0)
    services = np.array(["A", "B"] * 3000)
    x = model.sample(services, np.random.default_rng(8))
    assert set(x[services == "A"]) == {240.0, 360.0, 840.0}
    assert set(x[services == "B"]) == {600.0}
    assert np.mean(x[services == "A"]) == pytest.approx(480.0, rel=0.03)


def test_patience_none_never_gives_up(demo):
    from dataclasses import replace
    calm = replace(demo, citizens=demo.citizens.model_copy(update={"patience": "none"}))
    assert np.all(np.isinf(patience_seconds(calm, 10, np.random.default_rng(1))))
    x = patience_seconds(demo, 100_000, np.random.default_rng(1))
    assert x.mean() == pytest.approx(demo.citizens.patience_mean_min * 60, rel=0.01)


def test_population_shares_match_the_scenario(demo):
    rng = np.random.default_rng(21)
    crowd = [c for _ in range(40) for c in population(demo, 0, rng)]
    n = len(crowd)
    channels = Counter(c.channel for c in crowd)
    for channel, share in demo.channels.items():
        assert channels[channel] / n == pytest.approx(share, abs=0.01)
    booked = [c for c in crowd if c.channel == "appointment"]
    assert np.mean([not c.shows for c in booked]) == pytest.approx(demo.appointments.no_show, abs=0.02)
    assert np.mean([c.green for c in crowd]) == pytest.approx(demo.citizens.green_share, abs=0.006)
    assert np.mean([math.isinf(c.walk_s) for c in crowd]) == pytest.approx(demo.citizens.absent, abs=0.004)
    # transfers go to another service of the same group: only services with a group-mate move
    groups = Counter(s.group for s in demo.hall.services)
    movable = np.mean([groups[demo.hall.services_by_code[c.service].group] > 1 for c in crowd])
    assert np.mean([c.transfer is not None for c in crowd]) == pytest.approx(demo.clerks.transfer * movable, abs=0.004)
    walk_ins = Counter(c.service for c in crowd if c.channel != "appointment")
    total = sum(walk_ins.values())
    for code, share in demo.mix.items():
        assert walk_ins[code] / total == pytest.approx(share, abs=0.015)


def test_appointments_sit_on_the_slot_grid_and_arrive_around_it(demo):
    crowd = population(demo, 0, np.random.default_rng(4))
    grid = set(demo.start + 60 * slot_grid(demo.hall, demo.weekday(0)))
    booked = [c for c in crowd if c.channel == "appointment"]
    assert booked and all(c.slot in grid for c in booked)
    assert all(demo.hall.appointments.capacity[c.service] > 0 for c in booked)
    late = np.array([(c.arrive - c.slot) / 60 for c in booked])
    assert late.mean() == pytest.approx(demo.appointments.late_mean_min, abs=3.5)


def test_transfers_stay_in_the_service_group():
    scenario = load_scenario("qingdao-weekday")
    crowd = population(scenario, 0, np.random.default_rng(9))
    moved = [c for c in crowd if c.transfer]
    assert len(moved) > 100
    group = {s.code: s.group for s in scenario.hall.services}
    assert all(group[c.transfer] == group[c.service] and c.transfer != c.service for c in moved)


def test_population_is_reproducible_by_seed(demo):
    a = population(demo, 0, np.random.default_rng(77))
    b = population(demo, 0, np.random.default_rng(77))
    c = population(demo, 0, np.random.default_rng(78))
    assert a == b
    assert a != c
