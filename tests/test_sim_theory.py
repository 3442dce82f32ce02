"""Validation against theory: Erlang C for the M/M/c scenario, Little's law on every run."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sim.experiment import combine, interval, replicate
from sim.runner import Simulation
from sim.scenario import SCENARIO_DIR, load_scenario
from sim.theory import MMc, erlang_b, erlang_c, mmc_of

SHIPPED = sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))
MMC_REPLICATIONS = 20  # x 60 days x ~170 citizens: ~200,000 simulated citizens, ~2 % standard error


def test_erlang_values_from_the_textbook():
    assert erlang_c(1, 0.7) == pytest.approx(0.7)  # M/M/1: P(wait) = rho
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)
    assert erlang_b(2, 1.0) == pytest.approx(0.2)
    assert erlang_c(5, 4.0) == pytest.approx(0.5541, abs=1e-4)
    assert erlang_c(10, 8.0) == pytest.approx(0.4092, abs=1e-4)
    q = MMc(arrival_rate=0.12 / 60, service_rate=0.1 / 60, servers=2)
    assert q.mean_wait_s / 60 == pytest.approx(5.625)  # C = 0.45, 0.45 / (0.2 - 0.12)
    assert q.wait_quantile_s(0.5) == 0.0
    assert q.wait_quantile_s(0.9) / 60 == pytest.approx(math.log(4.5) / 0.08)


@given(c=st.integers(1, 60), rho=st.floats(0.01, 0.99))
def test_erlang_c_is_a_probability_that_grows_with_load_and_shrinks_with_servers(c, rho):
    a = rho * c
    p = erlang_c(c, a)
    assert 0 <= p <= 1
    assert erlang_c(c, a * 0.99) <= p + 1e-12
    assert erlang_c(c + 1, a) <= p + 1e-12
    assert erlang_b(c, a) <= p + 1e-12  # blocking (no queue) is never likelier than waiting


def test_unstable_queues_are_refused():
    with pytest.raises(ValueError):
        erlang_c(2, 2.0)


def test_only_the_mmc_scenario_is_taken_for_mmc():
    q = mmc_of(load_scenario("mmc"))
    assert (q.servers, q.utilisation) == (2, pytest.approx(0.6))
    with pytest.raises(ValueError, match="not M/M/c"):
        mmc_of(load_scenario("demo"))


def test_simulated_mmc_mean_wait_matches_erlang_c_within_5_percent():
    scenario = load_scenario("mmc")
    runs = replicate(scenario, MMC_REPLICATIONS)
    summary = combine(scenario, [s for _, s in runs])
    check = summary["theory"]
    assert check["erlang_c_wait_min"] == pytest.approx(5.625)
    assert check["rel_err"] < 0.05
    # the share of citizens who had to wait at all is Erlang C too
    waited = [r.called > r.eligible for sim, _ in runs for r in sim.tracker.tickets.values()
              if r.called is not None and r.eligible >= scenario.start + scenario.warmup_s]
    assert sum(waited) / len(waited) == pytest.approx(check["erlang_c_p_wait"], abs=0.02)
    # ... and the summaries' P(wait > 0) is that share, compared by the theory check
    assert check["sim_p_wait"] == pytest.approx(sum(waited) / len(waited), abs=0.002)
    assert check["p_wait_abs_err"] < 0.02
    utilisation = sum(s["utilisation"]["hall"] for _, s in runs) / len(runs)
    assert utilisation == pytest.approx(0.6, abs=0.02)


@pytest.mark.parametrize("name", SHIPPED)
def test_littles_law_holds_on_every_shipped_scenario(name):
    scenario = load_scenario(name)
    if scenario.days > 1:
        scenario = scenario.adjusted(days=2)
    if scenario.arrivals.visitors > 5000:
        scenario = scenario.adjusted(visitors=4000)  # a short run: the law holds at any size
    little = Simulation(scenario).run()["little"]
    assert little["L"] > 0
    # exact without warm-up (empty hall at the start); spells crossing a warm-up cut blur it
    assert little["rel_err"] < (1e-9 if scenario.warmup_s == 0 else 0.02)


def test_replication_intervals_use_students_t():
    """Four runs: 3.182 (t, 3 degrees of freedom, 97.5 %) times the standard error, not 1.96."""
    values = [10.0, 12.0, 14.0, 16.0]  # mean 13, sample sd sqrt(20/3)
    out = interval(values)
    assert out["mean"] == 13.0
    assert out["ci95"] == pytest.approx(3.182446 * math.sqrt(20 / 3) / 2, rel=1e-6)
    assert interval([5.0])["ci95"] is None and interval([None, None]) == {"mean": None, "ci95": None}
