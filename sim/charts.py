"""PNG charts of a run (matplotlib, Agg backend: no display needed).

* ``queue.png`` — waiting citizens over the day, per zone (the busiest zones, rest summed),
  with each day's opening sessions shaded, the lunch break between them hatched and the
  moment kiosks stop issuing marked (from the hall's hours for that weekday);
* ``waits.png`` — wait distribution per service (the busiest services), median and target marked;
* ``services.png`` — per service (the busiest): the share who waited at all, P(wait > 0),
  and the share called within the service's target, against :data:`SERVICE_LEVEL_GOAL`;
* ``punctuality.png`` — appointment holders: arrival against the slot start, and the wait
  after the slot start per service, target marked (not drawn without appointments);
* ``heatmap.png`` — zone x hour of the day, average waiting citizens;
* ``utilisation.png`` — window utilisation per zone, coloured by load (legend).

Each chart is drawn by a ``*_figure`` function that returns the matplotlib Figure (or
None when there is nothing to draw), so its content can be inspected before it is saved.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Final, Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
import numpy as np  # noqa: E402

from callsys.hall import Hall  # noqa: E402

from .metrics import appointment_holders  # noqa: E402
from .tracker import Tracker  # noqa: E402

TOP_ZONES: Final = 8
TOP_SERVICES: Final = 16
DPI: Final = 110
UTILISATION_BANDS: Final = ((0.9, "tab:red", "over 90 %: overloaded"), (0.75, "tab:orange", "75–90 %: busy"),
                            (0.0, "tab:green", "up to 75 %"))  # (lower bound as a share, colour, legend)
SERVICE_LEVEL_GOAL: Final = 0.8  # share called within target marked on services.png (the usual 80 % service level)
OPEN_COLOUR: Final = "tab:green"
LUNCH_COLOUR: Final = "tab:blue"
MEDIAN_COLOUR: Final = "tab:orange"


def write_charts(out: Path, summary: Mapping[str, Any], hall: Hall, tracker: Tracker, t0: float) -> list[Path]:
    """Draw every chart of *summary* into *out*; return the files written.

    Args:
        out: the directory (created if missing).
        summary: the run's summary (:func:`sim.metrics.summarise`).
        hall: the simulated hall.
        tracker: the run's records (for the distributions the summary only has quantiles of).
        t0: the end of the warm-up: tickets eligible before it are left out.
    """
    out.mkdir(parents=True, exist_ok=True)
    figures = chart_figures(summary, hall, tracker, t0)
    return [_save(fig, out / f"{name}.png") for name, fig in figures.items() if fig is not None]


def chart_figures(summary: Mapping[str, Any], hall: Hall, tracker: Tracker, t0: float) -> dict[str, plt.Figure | None]:
    """Every chart as an unsaved Figure, by file stem (None: nothing to draw); see :func:`write_charts`."""
    title = f"{hall.name.en} — {summary['scenario']} (seed {summary['seed']})"
    return {
        "queue": queue_figure(summary, hall, title),
        "waits": waits_figure(hall, tracker, t0, title),
        "services": services_figure(summary, hall, title),
        "punctuality": punctuality_figure(hall, tracker, t0, title),
        "heatmap": heatmap_figure(summary, hall, title),
        "utilisation": utilisation_figure(summary, hall, title),
    }


def _save(fig: plt.Figure, path: Path) -> Path:
    if fig.get_layout_engine() is None:  # the charts with a legend below lay themselves out
        fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _label(hall: Hall, zone: str) -> str:
    return f"{zone} ({hall.zones_by_id[zone].name.en})" if zone in hall.zones_by_id else zone


def hour_spans(hall: Hall, lo: datetime, hi: datetime) -> dict[str, list[tuple[datetime, datetime]]]:
    """The hall's opening sessions (``open``), the breaks between a day's sessions
    (``lunch``) and when kiosks stop issuing (``cutoff``, zero-length spans) from local
    time *lo* to *hi* (naive local datetimes), day by day from each weekday's hours."""
    spans: dict[str, list[tuple[datetime, datetime]]] = {"open": [], "lunch": [], "cutoff": []}
    day: date = lo.date()
    while day <= hi.date():
        midnight = datetime.combine(day, time())
        at = [(midnight + timedelta(minutes=a), midnight + timedelta(minutes=b))
              for a, b in hall.hours.sessions(day.weekday())]
        spans["open"] += at
        spans["lunch"] += [(end, start) for (_, end), (start, _) in zip(at, at[1:])]
        if hall.hours.issue_cutoff_min:
            cut = timedelta(minutes=hall.hours.issue_cutoff_min)
            spans["cutoff"] += [(end - cut, end - cut) for _, end in at]
        day += timedelta(days=1)

    def seen(a: datetime, b: datetime) -> bool:  # overlaps the view by more than an edge; a cut-off is an instant
        return a < hi and b > lo if a < b else lo <= a <= hi

    return {kind: [(max(a, lo), min(b, hi)) for a, b in v if seen(a, b)] for kind, v in spans.items()}


def queue_figure(summary: Mapping[str, Any], hall: Hall, title: str) -> plt.Figure:
    """Waiting citizens over the day per zone, opening hours and lunch breaks shaded."""
    q = summary["queue"]
    series = {z: np.asarray(v) for z, v in q["by_zone"].items()}
    ranked = sorted(series, key=lambda z: -series[z].sum())
    shown, rest = ranked[:TOP_ZONES], ranked[TOP_ZONES:]
    times = [datetime.fromtimestamp(q["t0"] + (i + 0.5) * q["bin_s"], hall.tz).replace(tzinfo=None)
             for i in range(len(q["total"]))]
    fig, ax = plt.subplots(figsize=(11, 5.5))
    lo = datetime.fromtimestamp(q["t0"], hall.tz).replace(tzinfo=None)
    hi = lo + timedelta(seconds=len(q["total"]) * q["bin_s"])
    spans = hour_spans(hall, lo, hi)
    for i, (a, b) in enumerate(spans["open"]):
        ax.axvspan(a, b, color=OPEN_COLOUR, alpha=0.08, gid="open", label=None if i else "open (sessions)")
    for i, (a, b) in enumerate(spans["lunch"]):
        ax.axvspan(a, b, facecolor="none", edgecolor=LUNCH_COLOUR, alpha=0.35, hatch="//", linewidth=0, gid="lunch",
                   label=None if i else "lunch break")
    for i, (a, _) in enumerate(spans["cutoff"]):
        ax.axvline(a, color="grey", linestyle=":", linewidth=1, gid="cutoff",
                   label=None if i else f"kiosks stop issuing ({hall.hours.issue_cutoff_min} min before the end)")
    for z in shown:
        ax.plot(times, series[z], label=_label(hall, z), linewidth=1.4)
    if rest:
        ax.plot(times, sum(series[z] for z in rest), label=f"{len(rest)} other zones", color="grey", linestyle="--")
    ax.plot(times, q["total"], label="whole hall", color="black", linewidth=2)
    ax.set_title(f"Waiting citizens over the day\n{title}")
    ax.set_ylabel(f"citizens waiting (mean per {q['bin_s'] / 60:g} min)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    span_days = len(times) * q["bin_s"] / 86_400
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M" if span_days <= 1 else "%m-%d"))
    ax.set_xlabel("local time" if span_days <= 1 else "local date")
    ax.set_xlim(lo, hi)
    return fig


def _box_legend() -> list[Any]:
    """Legend entries explaining :func:`_boxes`: the median, the box, the whiskers, the target."""
    return [Line2D([], [], color=MEDIAN_COLOUR, linewidth=2, label="median"),
            Patch(facecolor="none", edgecolor="black", label="box: p25–p75"),
            Line2D([], [], color="black", linewidth=1, label="whiskers: p10–p90"),
            Line2D([], [], color="red", marker="|", markersize=14, linestyle="none", label="target wait")]


def _boxes(ax: plt.Axes, data: list[list[float]], labels: list[str], targets: list[float]) -> None:
    """Horizontal boxes (p25–p75, whiskers p10–p90, median) with each row's target marked,
    explained by a legend below the figure (made with ``layout="constrained"``)."""
    ax.boxplot(data, orientation="horizontal", whis=(10, 90), showfliers=False, tick_labels=labels,
               medianprops={"color": MEDIAN_COLOUR, "linewidth": 2})
    ax.scatter(targets, range(1, len(data) + 1), marker="|", s=200, color="red", zorder=3)
    ax.grid(axis="x", alpha=0.3)
    ax.figure.legend(handles=_box_legend(), loc="outside lower center", fontsize=8, ncol=4)


def waits_figure(hall: Hall, tracker: Tracker, t0: float, title: str) -> plt.Figure | None:
    """Wait distribution per service (the busiest), median and target marked; None: nobody called."""
    waits: dict[str, list[float]] = {}
    for r in tracker.tickets.values():
        if r.called is not None and not r.gone and r.eligible >= t0:
            waits.setdefault(r.service, []).append((r.called - r.eligible) / 60)
    if not waits:
        return None
    codes = sorted(waits, key=lambda c: -len(waits[c]))[:TOP_SERVICES][::-1]
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(codes) + 2.4), layout="constrained")
    _boxes(ax, [waits[c] for c in codes], [f"{c} (n={len(waits[c])})" for c in codes],
           [hall.services_by_code[c].target_wait_s / 60 for c in codes])
    ax.set_xlabel("wait until first call (min)")
    ax.set_title(f"Wait per service (busiest {len(codes)})\n{title}")
    return fig


def services_figure(summary: Mapping[str, Any], hall: Hall, title: str) -> plt.Figure | None:
    """Per service (the busiest): P(wait > 0) and the share within target; None: no service queued."""
    stats = {c: s for c, s in summary["waits"]["by_service"].items() if s["queued"]}
    if not stats:
        return None
    codes = sorted(stats, key=lambda c: -stats[c]["queued"])[:TOP_SERVICES][::-1]
    y = np.arange(len(codes))
    fig, ax = plt.subplots(figsize=(10, 0.5 * len(codes) + 2.4), layout="constrained")
    p_wait = [100 * (stats[c]["p_wait"] or 0) for c in codes]
    within = [100 * (stats[c]["within_target"] or 0) for c in codes]
    handles = [
        ax.barh(y + 0.2, p_wait, height=0.4, color="tab:purple", label="waited at all: P(wait > 0), of the called"),
        ax.barh(y - 0.2, within, height=0.4, color="tab:cyan", label="called within target, of all who queued"),
        ax.axvline(100 * SERVICE_LEVEL_GOAL, color="red", linestyle="--",
                   label=f"service-level goal: {100 * SERVICE_LEVEL_GOAL:.0f} % within target"),
    ]
    ax.set_yticks(y, [f"{c} (target {hall.services_by_code[c].target_wait_s / 60:g} min, n={stats[c]['queued']})"
                      for c in codes], fontsize=8)
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of citizens")
    ax.set_title(f"Who waited, and who was called within target, per service (busiest {len(codes)})\n{title}")
    ax.grid(axis="x", alpha=0.3)
    fig.legend(handles=handles, loc="outside lower center", fontsize=8, ncol=3)
    return fig


def punctuality_figure(hall: Hall, tracker: Tracker, t0: float, title: str) -> plt.Figure | None:
    """Appointment holders: arrival against the slot start (left) and the wait after the slot
    start per service (right), target marked; None: no appointment holder checked in."""
    holders = [r for r in appointment_holders(tracker.tickets.values()) if r.eligible >= t0]
    if not holders:
        return None
    after: dict[str, list[float]] = {}
    for r in holders:
        if r.called is not None and not r.gone:
            after.setdefault(r.service, []).append((r.called - r.slot_start) / 60)
    codes = sorted(after, key=lambda c: -len(after[c]))[:TOP_SERVICES][::-1]
    rows = len(codes) + 1
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, max(4.5, 0.45 * rows + 2.4)),
                                      gridspec_kw={"width_ratios": (1, 1.4)}, layout="constrained")
    arrival = np.array([r.checked_in - r.slot_start for r in holders]) / 60
    left.hist(arrival, bins=30, color="tab:grey")
    left.axvline(0, color="black", linewidth=1.5, label="slot start")
    rules = hall.appointments
    late_min = rules.slot_minutes + rules.late_grace_s / 60
    left.axvline(late_min, color="red", linestyle="--",
                 label=f"later: late ({'queued as a walk-in' if rules.late_rule == 'walk_in' else 'refused'})")
    left.set_xlabel("check-in − slot start (min; negative = early)")
    left.set_ylabel("appointment holders")
    left.set_title(f"Arrival against the slot (n={len(holders)})")
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    if codes:
        everyone = [w for ws in after.values() for w in ws]
        _boxes(right, [after[c] for c in codes] + [everyone],
               [f"{c} (n={len(after[c])})" for c in codes] + [f"all (n={len(everyone)})"],
               [hall.services_by_code[c].target_wait_s / 60 for c in codes] + [np.nan])
        right.axvline(0, color="black", linewidth=1)
    right.set_xlabel("first call − slot start (min)")
    right.set_title("Wait after the slot start, per service")
    fig.suptitle(f"Appointment punctuality\n{title}")
    return fig


def heatmap_figure(summary: Mapping[str, Any], hall: Hall, title: str) -> plt.Figure:
    """Average waiting citizens per zone and hour of the day, colour bar as the scale."""
    h = summary["heatmap"]
    values = np.asarray(h["values"])
    open_hours = np.flatnonzero(values.sum(axis=0) > 0)
    lo, hi = (open_hours[0], open_hours[-1] + 1) if len(open_hours) else (0, 24)
    values = values[:, lo:hi]
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * (hi - lo) + 4), 0.38 * len(h["zones"]) + 2))
    im = ax.imshow(values, aspect="auto", cmap="YlOrRd")
    ax.set_xticks(range(hi - lo), [f"{hour:02d}" for hour in range(lo, hi)])
    ax.set_yticks(range(len(h["zones"])), [_label(hall, z) for z in h["zones"]], fontsize=8)
    for (i, j), v in np.ndenumerate(values):
        if v >= 0.5:
            ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=7,
                    color="white" if v > values.max() * 0.6 else "black")
    ax.set_xlabel("hour of the day")
    ax.set_title(f"Waiting citizens per zone and hour (mean)\n{title}")
    fig.colorbar(im, ax=ax, label="citizens waiting")
    return fig


def _band_colour(share: float) -> str:
    return next(colour for low, colour, _ in UTILISATION_BANDS if share > low or low == 0)


def utilisation_figure(summary: Mapping[str, Any], hall: Hall, title: str) -> plt.Figure:
    """Window utilisation per zone, bars coloured by :data:`UTILISATION_BANDS` (legend)."""
    by_zone = {z: u for z, u in summary["utilisation"]["by_zone"].items() if u is not None}
    zones = sorted(by_zone, key=lambda z: by_zone[z])
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(zones) + 2.2), layout="constrained")
    ax.barh([_label(hall, z) for z in zones], [100 * by_zone[z] for z in zones],
            color=[_band_colour(by_zone[z]) for z in zones])
    hall_share = summary["utilisation"]["hall"]
    handles = [Patch(color=colour, label=text) for _, colour, text in UTILISATION_BANDS]
    if hall_share is not None:
        handles.append(ax.axvline(100 * hall_share, color="black", linestyle="--",
                                  label=f"whole hall: {100 * hall_share:.0f} %"))
    fig.legend(handles=handles, title="window utilisation", loc="outside lower center", fontsize=8,
               ncol=len(handles))
    ax.set_xlim(0, 100)
    ax.set_xlabel("window utilisation (% of open time with a citizen called or served)")
    ax.set_title(f"Utilisation per zone\n{title}")
    ax.grid(axis="x", alpha=0.3)
    ax.tick_params(axis="y", labelsize=8)
    return fig


def plan_chart(path: Path, plan: Mapping[str, Any], hall: Hall) -> Path:
    """Draw :func:`plan_figure` into *path* (``plan.png``); return it."""
    return _save(plan_figure(plan, hall), path)


def plan_figure(plan: Mapping[str, Any], hall: Hall) -> plt.Figure:
    """A plan within the walls (``Plan.to_dict``): windows per pool and each service's figure against the target.

    Left: per pool, today's windows, the planned windows and (when the target is missed)
    the windows needed. Right: every judged service's figure — mean over the replications
    with its one-sided confidence margin as an error bar, the worst services first —
    against the target line; services missing the target with confidence in red.
    """
    from matplotlib.patches import Patch

    pools = plan["pools"]
    stat, limit, conf = plan["stat"], plan["limit"], f"{100 * plan['confidence']:g} %"
    scale = 100.0 if stat == "within_target" else 1.0
    unit = "% within target" if stat == "within_target" else stat.replace("_min", " wait (min)")
    services = sorted(plan["services"].items(), key=lambda kv: kv[1]["mean"], reverse=stat != "within_target")
    services = services[:TOP_SERVICES * 2]
    fig, (left, right) = plt.subplots(1, 2, figsize=(15, max(5.0, 0.32 * max(len(pools), len(services)) + 2)))
    y = np.arange(len(pools))
    bars = [("windows now", "current", "tab:grey"), ("planned", "planned", "tab:blue")]
    if plan.get("windows_needed") is not None:
        bars.append(("needed for the target", "needed", "tab:orange"))
    height = 0.8 / len(bars)
    for i, (label, key, color) in enumerate(bars):
        left.barh(y + (i - (len(bars) - 1) / 2) * height, [p[key] for p in pools], height, label=label, color=color)
    left.set_yticks(y, [_label(hall, p["pool"]) if plan["by"] == "zone" else p["pool"] for p in pools], fontsize=8)
    left.invert_yaxis()
    left.set_xlabel("windows")
    left.set_title(f"Windows per {plan['by']}: {plan['windows_current']} now, {plan['windows_planned']} planned "
                   f"(at most {plan.get('max_windows', plan['windows_planned'])})")
    left.grid(axis="x", alpha=0.3)
    left.legend(fontsize=8, loc="lower right")
    ys = np.arange(len(services))
    means = np.array([s["mean"] for _, s in services]) * scale
    margins = np.array([s["margin"] or 0.0 for _, s in services]) * scale
    colors = ["tab:green" if s["met"] else "tab:red" for _, s in services]
    right.barh(ys, means, color=colors, alpha=0.75)
    xerr = np.vstack([np.zeros_like(margins), margins]) if stat != "within_target" else np.vstack([margins, np.zeros_like(margins)])
    right.errorbar(means, ys, xerr=xerr, fmt="none", ecolor="black", capsize=2, label=f"one-sided {conf} margin")
    right.axvline(limit * scale, color="black", linestyle="--", label=f"target: {plan['target']}")
    handles, _ = right.get_legend_handles_labels()
    handles += [Patch(color="tab:green", alpha=0.75, label=f"met with {conf} confidence"),
                Patch(color="tab:red", alpha=0.75, label="not met")]
    right.set_yticks(ys, [code for code, _ in services], fontsize=7)
    right.invert_yaxis()
    right.set_xlabel(f"{unit}, mean of {plan['replications']} replications")
    right.set_title(f"Services at the plan ({'worst ' if len(services) < len(plan['services']) else ''}"
                    f"{len(services)} of {len(plan['services'])})")
    right.grid(axis="x", alpha=0.3)
    right.legend(handles=handles, fontsize=8, loc="lower right")
    fig.suptitle(f"{hall.name.en} — {plan.get('scenario', '')}: plan for {plan['target']}")
    return fig
