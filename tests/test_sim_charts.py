"""The run's statistics and charts: P(wait > 0), punctuality, and the PNG charts a manager reads."""

from __future__ import annotations

from datetime import datetime, time, timedelta

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from sim.charts import chart_figures, hour_spans, write_charts

from sim.experiment import combine
from sim.metrics import appointment_holders, punctuality_stats, wait_stats
from sim.runner import Simulation
from sim.scenario import load_scenario
from sim.tracker import TicketRecord

T0 = 1_000_000.0
CHARTS = ("queue", "waits", "services", "punctuality", "heatmap", "utilisation")


def record(ticket: int, service: str = "A", *, wait: float | None, gone: bool = False,
           channel: str = "kiosk") -> TicketRecord:
    """A ticket eligible at T0 + ticket and called *wait* seconds later (None: never called)."""
    eligible = T0 + ticket
    return TicketRecord(ticket, service, channel, False, eligible,
                        called=None if wait is None else eligible + wait, gone=gone)


def test_p_wait_is_the_share_of_called_citizens_who_waited_more_than_zero_seconds():
    records = [record(1, wait=0.0), record(2, wait=0.0), record(3, wait=60.0), record(4, wait=600.0),
               record(5, wait=None, gone=True),  # gave up: left out, like every wait figure
               record(6, wait=900.0, gone=True)]  # called after leaving: not a called citizen
    stats = wait_stats(records, {"A": 300.0})
    assert (stats["queued"], stats["called"]) == (6, 4)
    assert stats["p_wait"] == 0.5
    assert stats["within_target"] == pytest.approx(3 / 6)
    assert wait_stats([record(1, wait=None)], {"A": 300.0})["p_wait"] is None


@given(st.lists(st.tuples(st.sampled_from([0.0, 0.0, 1.0, 90.0, 1200.0]), st.booleans()), min_size=1, max_size=40))
def test_p_wait_agrees_with_the_wait_quantiles(draws):
    """P(wait > 0) describes the same citizens as the quantiles: below one half, the median wait is 0."""
    records = [record(i, wait=w, gone=gone) for i, (w, gone) in enumerate(draws)]
    stats = wait_stats(records, {"A": 300.0})
    called = [w for w, gone in draws if not gone]
    if not called:
        assert stats["p_wait"] is None and stats["called"] == 0
        return
    assert stats["p_wait"] == pytest.approx(sum(w > 0 for w in called) / len(called))
    if stats["p_wait"] < 0.5:
        assert stats["p50_min"] == 0.0
    if stats["p_wait"] == 0:
        assert stats["max_min"] == 0.0
    assert stats["within_target"] <= stats["called"] / stats["queued"]


def summary_of(seed: int, p_all: float, p_by: dict[str, float]) -> dict:
    stats = {"mean_min": 1.0, "p90_min": 2.0, "p_wait": p_all, "within_target": 0.9}
    return {"seed": seed, "flow": {"served": 10, "abandoned": 0},
            "waits": {"all": stats, "by_service": {c: {**stats, "p_wait": p} for c, p in p_by.items()}}}


def test_replications_combine_p_wait_per_service_with_students_t():
    runs = [summary_of(1, 0.2, {"A": 0.1, "B": 0.5}), summary_of(2, 0.4, {"A": 0.3}),
            summary_of(3, 0.3, {"A": 0.2, "B": 0.7})]
    reps = combine(load_scenario("demo"), runs)["replications"]
    assert reps["p_wait"]["mean"] == pytest.approx(0.3)
    assert reps["p_wait"]["ci95"] == pytest.approx(4.302653 * 0.1 / 3 ** 0.5, rel=1e-6)  # t(2 df) x sd / sqrt(3)
    assert reps["by_service"]["A"]["p_wait"]["mean"] == pytest.approx(0.2)
    b = reps["by_service"]["B"]["p_wait"]  # run 2 called nobody for B: two values
    assert b["mean"] == pytest.approx(0.6) and b["ci95"] == pytest.approx(12.7062 * 0.141421 / 2 ** 0.5, rel=1e-4)


def appointment(ticket: int, *, arrived: float, called: float | None, late: bool = False,
                gone: bool = False, service: str = "A") -> TicketRecord:
    """An appointment holder with a slot at T0, checked in *arrived* s and called *called* s after it."""
    return TicketRecord(ticket, service, "appointment", False, T0 + max(arrived, 0.0),
                        called=None if called is None else T0 + called, late=late, gone=gone,
                        slot_start=T0, checked_in=T0 + arrived)


def test_punctuality_measures_arrival_and_the_call_against_the_slot_start():
    records = [appointment(1, arrived=-600, called=0),  # early, called at the slot start
               appointment(2, arrived=-60, called=300),  # early, 5 min after the slot start
               appointment(3, arrived=120, called=1200),  # late, 20 min after: past the 10 min target
               appointment(4, arrived=3600, called=4200, late=True),  # queued as a walk-in
               appointment(5, arrived=0, called=None, gone=True),  # on the dot, gave up
               record(6, wait=30.0)]  # a walk-in: not an appointment
    stats = punctuality_stats(records, {"A": 600.0})
    assert (stats["checked_in"], stats["called"], stats["late_walk_in"]) == (5, 4, 1)
    assert (stats["early"], stats["late"]) == (pytest.approx(2 / 5), pytest.approx(2 / 5))
    assert stats["arrival_p50_min"] == 0.0 and stats["arrival_p10_min"] == pytest.approx(-10 + 0.4 * 9)
    assert stats["after_slot_p50_min"] == pytest.approx(12.5)  # median of 0, 5, 20, 70 min
    assert stats["after_slot_mean_min"] == pytest.approx(95 / 4)
    assert stats["within_target_after_slot"] == pytest.approx(2 / 5)
    empty = punctuality_stats([record(1, wait=0.0)], {"A": 600.0})
    assert empty["checked_in"] == 0 and empty["early"] is None and empty["after_slot_p50_min"] is None


def test_the_tracker_keeps_slot_start_and_check_in_of_appointments():
    scenario = load_scenario("demo")
    sim = Simulation(scenario)
    summary = sim.run()
    holders = appointment_holders(sim.tracker.tickets.values())
    assert holders and all(r.channel == "appointment" for r in holders)
    assert all(r.eligible == max(r.checked_in, r.slot_start) for r in holders if not r.late)
    assert summary["punctuality"]["checked_in"] == summary["flow"]["checked_in"]


# ---------------------------------------------------------------------- charts


@pytest.fixture(autouse=True)
def close_figures():
    """Every test closes what it drew (pyplot keeps figures until closed)."""
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def demo_run():
    """One simulated demo Wednesday (09:00-12:00, 14:00-20:00): its simulation and summary."""
    sim = Simulation(load_scenario("demo").adjusted(visitors=300))
    return sim, sim.run()


def figures_of(sim: Simulation, summary: dict) -> dict:
    scenario = sim.scenario
    return chart_figures(summary, scenario.hall, sim.tracker, scenario.start + scenario.warmup_s)


def legend_texts(fig) -> set[str]:
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    return {t.get_text() for legend in legends for t in legend.get_texts()}


def local_spans(ax, gid: str) -> list[tuple[datetime, datetime]]:
    """The (start, end) local times of the shaded spans tagged *gid* on the queue chart."""
    return [(mdates.num2date(p.get_x()).replace(tzinfo=None),
             mdates.num2date(p.get_x() + p.get_width()).replace(tzinfo=None))
            for p in ax.patches if p.get_gid() == gid]


def test_every_chart_is_written_as_a_png_of_sensible_size(demo_run, tmp_path):
    sim, summary = demo_run
    scenario = sim.scenario
    files = write_charts(tmp_path, summary, scenario.hall, sim.tracker, scenario.start + scenario.warmup_s)
    assert sorted(f.stem for f in files) == sorted(CHARTS)
    for path in files:
        with Image.open(path) as image:
            assert image.format == "PNG"
            width, height = image.size
            image.verify()
        assert 700 <= width <= 2000 and 250 <= height <= 2000, (path.name, image.size)
        assert path.stat().st_size > 10_000


def test_the_queue_chart_shades_the_opening_sessions_and_the_lunch_break(demo_run):
    sim, summary = demo_run
    fig = figures_of(sim, summary)["queue"]
    ax = fig.axes[0]
    day = sim.scenario.first_day
    at = lambda hh, mm: datetime.combine(day, time(hh, mm))  # noqa: E731
    assert local_spans(ax, "open") == [(at(9, 0), at(12, 0)), (at(14, 0), at(20, 0))]
    assert local_spans(ax, "lunch") == [(at(12, 0), at(14, 0))]
    assert {"open (sessions)", "lunch break", "whole hall"} <= legend_texts(fig)
    assert not [line for line in ax.lines if line.get_gid() == "cutoff"]  # the demo hall issues until closing
    plt.close(fig)


def test_hour_spans_follow_each_weekday_and_the_issue_cutoff(qingdao_hall):
    saturday = datetime(2026, 11, 28)  # Saturday 09:00-12:00, Sunday closed, Monday 09:00-12:00 + 13:30-17:00
    spans = hour_spans(qingdao_hall, saturday, saturday + timedelta(days=2, hours=23))
    assert spans["open"] == [(datetime(2026, 11, 28, 9), datetime(2026, 11, 28, 12)),
                             (datetime(2026, 11, 30, 9), datetime(2026, 11, 30, 12)),
                             (datetime(2026, 11, 30, 13, 30), datetime(2026, 11, 30, 17))]
    assert spans["lunch"] == [(datetime(2026, 11, 30, 12), datetime(2026, 11, 30, 13, 30))]
    cutoffs = [a for a, _ in spans["cutoff"]]  # issue_cutoff_min = 30
    assert cutoffs == [datetime(2026, 11, 28, 11, 30), datetime(2026, 11, 30, 11, 30), datetime(2026, 11, 30, 16, 30)]
    clipped = hour_spans(qingdao_hall, datetime(2026, 11, 30, 10), datetime(2026, 11, 30, 14))
    assert clipped["open"] == [(datetime(2026, 11, 30, 10), datetime(2026, 11, 30, 12)),
                               (datetime(2026, 11, 30, 13, 30), datetime(2026, 11, 30, 14))]
    # a view starting as the morning session ends: no zero-width morning span, the lunch still shown
    noon = hour_spans(qingdao_hall, datetime(2026, 11, 30, 12), datetime(2026, 11, 30, 18))
    assert noon["open"] == [(datetime(2026, 11, 30, 13, 30), datetime(2026, 11, 30, 17))]
    assert noon["lunch"] == [(datetime(2026, 11, 30, 12), datetime(2026, 11, 30, 13, 30))]
    assert [a for a, _ in noon["cutoff"]] == [datetime(2026, 11, 30, 16, 30)]


def test_waits_and_utilisation_charts_explain_their_marks(demo_run):
    sim, summary = demo_run
    figures = figures_of(sim, summary)
    assert {"median", "box: p25–p75", "whiskers: p10–p90", "target wait"} <= legend_texts(figures["waits"])
    hall_share = summary["utilisation"]["hall"]
    assert {"over 90 %: overloaded", "75–90 %: busy", "up to 75 %",
            f"whole hall: {100 * hall_share:.0f} %"} == legend_texts(figures["utilisation"])
    bars = figures["utilisation"].axes[0].patches
    by_zone = summary["utilisation"]["by_zone"]
    assert sorted(round(b.get_width(), 6) for b in bars) == sorted(round(100 * u, 6) for u in by_zone.values()
                                                                   if u is not None)
    for fig in figures.values():
        plt.close(fig)


def test_the_services_chart_shows_p_wait_and_within_target_per_service(demo_run):
    sim, summary = demo_run
    fig = figures_of(sim, summary)["services"]
    ax = fig.axes[0]
    texts = legend_texts(fig)
    assert "waited at all: P(wait > 0), of the called" in texts and "service-level goal: 80 % within target" in texts
    by_service = summary["waits"]["by_service"]
    busiest = sorted(by_service, key=lambda c: -by_service[c]["queued"])[::-1]
    labels = [t.get_text().split(" ")[0] for t in ax.get_yticklabels()]
    assert labels == busiest
    p_wait, within = ax.containers
    assert [b.get_width() for b in p_wait] == pytest.approx([100 * by_service[c]["p_wait"] for c in busiest])
    assert [b.get_width() for b in within] == pytest.approx([100 * by_service[c]["within_target"] for c in busiest])
    plt.close(fig)


def test_the_punctuality_chart_shows_arrival_and_the_wait_after_the_slot(demo_run):
    sim, summary = demo_run
    fig = figures_of(sim, summary)["punctuality"]
    left, right = fig.axes
    assert sum(p.get_height() for p in left.patches) == summary["punctuality"]["checked_in"]
    assert {"slot start", "later: late (queued as a walk-in)", "median", "target wait"} <= legend_texts(fig)
    rows = [t.get_text() for t in right.get_yticklabels()]
    assert rows[-1] == f"all (n={summary['punctuality']['called']})"
    plt.close(fig)


def test_a_hall_without_appointments_gets_no_punctuality_chart(tmp_path):
    scenario = load_scenario("mmc").adjusted(days=1)  # open around the clock, walk-ins only
    sim = Simulation(scenario)
    summary = sim.run()
    files = write_charts(tmp_path, summary, scenario.hall, sim.tracker, scenario.start + scenario.warmup_s)
    assert sorted(f.stem for f in files) == sorted(set(CHARTS) - {"punctuality"})
    assert summary["punctuality"]["checked_in"] == 0
