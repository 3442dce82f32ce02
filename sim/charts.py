"""PNG charts of a run (matplotlib, Agg backend: no display needed).

* ``queue.png`` — waiting citizens over the day, per zone (the busiest zones, rest summed);
* ``waits.png`` — wait distribution per service (the busiest services), target marked;
* ``heatmap.png`` — zone x hour of the day, average waiting citizens;
* ``utilisation.png`` — window utilisation per zone.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Final, Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from callsys.hall import Hall  # noqa: E402

from .tracker import Tracker  # noqa: E402

TOP_ZONES: Final = 8
TOP_SERVICES: Final = 16
DPI: Final = 110


def write_charts(out: Path, summary: Mapping[str, Any], hall: Hall, tracker: Tracker, t0: float) -> list[Path]:
    """Draw every chart of *summary* into *out*; return the files written."""
    out.mkdir(parents=True, exist_ok=True)
    title = f"{hall.name.en} — {summary['scenario']} (seed {summary['seed']})"
    drawn = [
        _queue(out / "queue.png", summary, hall, title),
        _waits(out / "waits.png", hall, tracker, t0, title),
        _heatmap(out / "heatmap.png", summary, hall, title),
        _utilisation(out / "utilisation.png", summary, hall, title),
    ]
    return [p for p in drawn if p is not None]


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _label(hall: Hall, zone: str) -> str:
    return f"{zone} ({hall.zones_by_id[zone].name.en})" if zone in hall.zones_by_id else zone


def _queue(path: Path, summary: Mapping[str, Any], hall: Hall, title: str) -> Path:
    q = summary["queue"]
    series = {z: np.asarray(v) for z, v in q["by_zone"].items()}
    ranked = sorted(series, key=lambda z: -series[z].sum())
    shown, rest = ranked[:TOP_ZONES], ranked[TOP_ZONES:]
    times = [datetime.fromtimestamp(q["t0"] + (i + 0.5) * q["bin_s"], hall.tz).replace(tzinfo=None)
             for i in range(len(q["total"]))]
    fig, ax = plt.subplots(figsize=(11, 5.5))
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
    return _save(fig, path)


def _waits(path: Path, hall: Hall, tracker: Tracker, t0: float, title: str) -> Path | None:
    waits: dict[str, list[float]] = {}
    for r in tracker.tickets.values():
        if r.called is not None and not r.gone and r.eligible >= t0:
            waits.setdefault(r.service, []).append((r.called - r.eligible) / 60)
    if not waits:
        return None
    codes = sorted(waits, key=lambda c: -len(waits[c]))[:TOP_SERVICES][::-1]
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(codes) + 1.8))
    ax.boxplot([waits[c] for c in codes], orientation="horizontal", whis=(10, 90), showfliers=False,
               tick_labels=[f"{c} (n={len(waits[c])})" for c in codes])
    targets = [hall.services_by_code[c].target_wait_s / 60 for c in codes]
    ax.scatter(targets, range(1, len(codes) + 1), marker="|", s=200, color="red", label="target wait", zorder=3)
    ax.set_xlabel("wait until first call (min); box = p25-p75, whiskers = p10-p90")
    ax.set_title(f"Wait per service (busiest {len(codes)})\n{title}")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def _heatmap(path: Path, summary: Mapping[str, Any], hall: Hall, title: str) -> Path:
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
    return _save(fig, path)


def _utilisation(path: Path, summary: Mapping[str, Any], hall: Hall, title: str) -> Path:
    by_zone = {z: u for z, u in summary["utilisation"]["by_zone"].items() if u is not None}
    zones = sorted(by_zone, key=lambda z: by_zone[z])
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(zones) + 1.8))
    colors = ["tab:red" if by_zone[z] > 0.9 else "tab:orange" if by_zone[z] > 0.75 else "tab:green" for z in zones]
    ax.barh([_label(hall, z) for z in zones], [100 * by_zone[z] for z in zones], color=colors)
    ax.set_xlim(0, 100)
    ax.set_xlabel("window utilisation (% of open time with a citizen called or served)")
    ax.set_title(f"Utilisation per zone\n{title}")
    ax.grid(axis="x", alpha=0.3)
    ax.tick_params(axis="y", labelsize=8)
    return _save(fig, path)


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
