"""A report's three outputs: rich tables for the terminal, CSV files, PNG charts.

Every output is drawn from the figures dict of :meth:`callsys.reports.Report.figures` (the
JSON the HTTP endpoint answers), so the table, the CSV files and the API agree. The charts
reuse the simulator's (:mod:`sim.charts`: the zone × hour heatmap, waits and service levels
per service) and add two of their own: tickets and waiting per hour, ratings per window. The
ratings per clerk are a table and a CSV file.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Final, Mapping

from rich.console import Console
from rich.table import Table

from sim.charts import DPI, heatmap_figure, plt, services_figure, waits_figure

from ..hall import Hall
from . import Report

WAIT_COLUMNS: Final = ("queued", "called", "p_wait", "mean_min", "p50_min", "p90_min", "p99_min", "max_min",
                       "within_target")
TOP_WINDOWS: Final = 40  # windows drawn on ratings.png (the most rated)


def _f(value: Any, fmt: str = ".1f") -> str:
    return "—" if value is None else format(value, fmt)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.0f} %"


def title_of(figures: Mapping[str, Any]) -> str:
    """``hall, D`` or ``hall, D1 to D2``."""
    when = figures["from"] if figures["from"] == figures["to"] else f"{figures['from']} to {figures['to']}"
    return f"{figures['hall']}, {when}"


# ---------------------------------------------------------------------- rich


def print_report(figures: Mapping[str, Any], console: Console) -> None:
    """The report as rich tables: the summary, waits by service and channel, service times, ratings."""
    console.print(summary_table(figures))
    for key, label in (("by_service", "service"), ("by_channel", "channel")):
        console.print(waits_table(figures["waits"][key], label))
    console.print(service_time_table(figures))
    console.print(ratings_table(figures))
    console.print(ratings_table(figures, "clerk"))
    alerts = figures["ratings"]["alerts"]
    if alerts:
        console.print(f"[bold red]{len(alerts)} bad rating(s)[/]: " + ", ".join(
            f"ticket {a['number'] or a['ticket']} at window {a['window']}"
            + (f" (clerk {a['clerk']})" if a.get("clerk") else "") for a in alerts[:20])
            + (" ..." if len(alerts) > 20 else ""))


def summary_table(figures: Mapping[str, Any]) -> Table:
    t, w = figures["tickets"], figures["waits"]["all"]
    s, r = figures["service_time"]["all"], figures["ratings"]["all"]
    table = Table(title=f"Report {title_of(figures)} ({figures['timezone']})", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("tickets queued", f"{t['queued']:,}  ("
                  + ", ".join(f"{c} {n:,}" for c, n in t["by_channel"].items()) + ")")
    table.add_row("outcomes", ", ".join(f"{o.replace('_', '-')} {n:,}" for o, n in t["outcomes"].items()))
    table.add_row("wait (min)", f"p50 {_f(w.get('p50_min'))}, p90 {_f(w.get('p90_min'))}, "
                                f"p99 {_f(w.get('p99_min'))}, max {_f(w.get('max_min'))}")
    table.add_row("within target", _pct(w["within_target"]))
    table.add_row("service time (min)", f"mean {_f(s['mean_min'])}, p50 {_f(s['p50_min'])}, p90 {_f(s['p90_min'])}")
    table.add_row("ratings", f"good {r['good']:,}, bad {r['bad']:,}, unrated {r['unrated']:,}, good share "
                             f"{_pct(r['good_share'])}, mean score {_f(r['mean_score'], '.2f')}")
    table.add_row("busiest hours", ", ".join(f"{h['hour']:02d}:00 ({h['tickets']:,} tickets)"
                                             for h in figures["busiest"]) or "—")
    table.add_row("events read", f"{figures['events']:,}")
    return table


def waits_table(groups: Mapping[str, Mapping[str, Any]], label: str) -> Table:
    table = Table(title=f"Waits by {label}")
    for col in (label, "queued", "called", "p50 min", "p90 min", "p99 min", "within target"):
        table.add_column(col, justify="left" if col == label else "right")
    for name, v in groups.items():
        table.add_row(name, f"{v['queued']:,}", f"{v['called']:,}", _f(v.get("p50_min")),
                      _f(v.get("p90_min")), _f(v.get("p99_min")), _pct(v["within_target"]))
    return table


def service_time_table(figures: Mapping[str, Any]) -> Table:
    table = Table(title="Service time by service")
    for col in ("service", "served", "mean min", "p50 min", "p90 min"):
        table.add_column(col, justify="left" if col == "service" else "right")
    for name, v in figures["service_time"]["by_service"].items():
        table.add_row(name, f"{v['served']:,}", _f(v["mean_min"]), _f(v["p50_min"]), _f(v["p90_min"]))
    return table


def ratings_table(figures: Mapping[str, Any], by: str = "window") -> Table:
    """Ratings per window, or per clerk (``by="clerk"``: by staff id)."""
    rows = figures["ratings"][f"by_{by}"]
    title = f"Ratings by {by}"
    if by == "clerk" and not figures["ratings"]["clerks_identified"]:
        title += " (no service in the span named its clerk: windows opened without a staff id)"
    table = Table(title=title)
    for col in (by, "good", "bad", "unrated", "good share", "mean score"):
        table.add_column(col, justify="left" if by == "clerk" and col == by else "right")
    for v in rows:
        table.add_row(str(v[by]), str(v["good"]), str(v["bad"]), str(v["unrated"]), _pct(v["good_share"]),
                      _f(v["mean_score"], ".2f"))
    return table


# ---------------------------------------------------------------------- CSV


def write_csv(out: Path, figures: Mapping[str, Any]) -> list[Path]:
    """One CSV file per table of the report into *out* (created if missing); the files written.

    ``tickets.csv`` (queued by channel and service, and outcomes), ``waits.csv`` (wait figures
    of the hall, per channel and per service), ``service_time.csv``, ``ratings.csv`` (per
    window, the hall's total as window ``all``), ``clerks.csv`` (ratings per clerk, by staff
    id), ``alerts.csv`` (bad ratings, with the clerk), ``hours.csv``
    and ``heatmap.csv`` (zone × hour of the day, mean waiting).
    """
    out.mkdir(parents=True, exist_ok=True)
    t = figures["tickets"]
    rows: dict[str, tuple[list[str], list[list[Any]]]] = {
        "tickets": (["group", "key", "tickets"],
                    [["all", "all", t["queued"]]] + [["channel", c, n] for c, n in t["by_channel"].items()]
                    + [["service", s, n] for s, n in t["by_service"].items()]
                    + [["outcome", o, n] for o, n in t["outcomes"].items()]),
        "waits": (["group", "key", *WAIT_COLUMNS],
                  [["all", "all", *(figures["waits"]["all"].get(c) for c in WAIT_COLUMNS)]]
                  + [[g, k, *(v.get(c) for c in WAIT_COLUMNS)] for g, key in (("channel", "by_channel"),
                                                                               ("service", "by_service"))
                     for k, v in figures["waits"][key].items()]),
        "service_time": (["service", "served", "mean_min", "p50_min", "p90_min"],
                         [[k, v["served"], v["mean_min"], v["p50_min"], v["p90_min"]] for k, v in
                          [("all", figures["service_time"]["all"]), *figures["service_time"]["by_service"].items()]]),
        "ratings": (["window", "good", "bad", "unrated", "good_share", "scored", "mean_score"],
                    [[v["window"] if v["window"] is not None else "all", v["good"], v["bad"], v["unrated"],
                      v["good_share"], v["scored"], v["mean_score"]]
                     for v in [figures["ratings"]["all"], *figures["ratings"]["by_window"]]]),
        "clerks": (["clerk", "good", "bad", "unrated", "good_share", "scored", "mean_score"],
                   [[v["clerk"], v["good"], v["bad"], v["unrated"], v["good_share"], v["scored"], v["mean_score"]]
                    for v in figures["ratings"]["by_clerk"]]),
        "alerts": (["at", "ticket", "number", "window", "clerk", "score"],
                   [[a["at"], a["ticket"], a["number"], a["window"], a["clerk"], a["score"]]
                    for a in figures["ratings"]["alerts"]]),
        "hours": (["hour", "tickets", "waiting"], [[h["hour"], h["tickets"], h["waiting"]] for h in figures["hours"]]),
        "heatmap": (["zone", *(f"{h:02d}" for h in figures["heatmap"]["hours"])],
                    [[z, *v] for z, v in zip(figures["heatmap"]["zones"], figures["heatmap"]["values"])]),
    }
    written = []
    for name, (header, body) in rows.items():
        path = out / f"{name}.csv"
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows([["" if v is None else v for v in row] for row in body])
        written.append(path)
    return written


# ---------------------------------------------------------------------- charts


def write_charts(out: Path, report: Report) -> list[Path]:
    """The report's PNG charts into *out* (created if missing); the files written.

    ``heatmap.png`` (zone × hour of the day), ``hours.png``, and when anyone was called
    ``waits.png`` and ``services.png``, when anyone was rated ``ratings.png``.
    """
    out.mkdir(parents=True, exist_ok=True)
    figures = report.figures()
    hall = report.hall
    title = f"{hall.name.en} — {title_of(figures)}"
    charts = {
        "heatmap": heatmap_figure(figures, hall, title),
        "hours": hours_figure(figures, title),
        "waits": waits_figure(hall, report.tracker, report.period.start, title),
        "services": services_figure(figures, hall, title),
        "ratings": ratings_figure(figures, hall, title),
    }
    written = []
    for name, fig in charts.items():
        if fig is None:
            continue
        if fig.get_layout_engine() is None:
            fig.tight_layout()
        fig.savefig(out / f"{name}.png", dpi=DPI)
        plt.close(fig)
        written.append(out / f"{name}.png")
    return written


def hours_figure(figures: Mapping[str, Any], title: str) -> plt.Figure:
    """Tickets that queued per hour of the day (bars) and the mean number waiting (line)."""
    hours = figures["hours"]
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.bar([h["hour"] for h in hours], [h["tickets"] for h in hours], color="tab:blue", label="tickets queued")
    ax.set_xlabel("hour of the day")
    ax.set_ylabel("tickets queued")
    ax.set_xticks(range(24), [f"{h:02d}" for h in range(24)], fontsize=8)
    right = ax.twinx()
    right.plot([h["hour"] for h in hours], [h["waiting"] for h in hours], color="tab:red", marker="o",
               label="citizens waiting (mean)")
    right.set_ylabel("citizens waiting (mean)")
    ax.set_title(f"Tickets and waiting per hour\n{title}")
    handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="upper left", fontsize=8)
    return fig


def ratings_figure(figures: Mapping[str, Any], hall: Hall, title: str) -> plt.Figure | None:
    """Good and bad ratings per window (the most rated); None: nobody rated."""
    rows = [v for v in figures["ratings"]["by_window"] if v["good"] + v["bad"]]
    if not rows:
        return None
    rows = sorted(rows, key=lambda v: (-(v["good"] + v["bad"]), v["window"]))[:TOP_WINDOWS][::-1]
    fig, ax = plt.subplots(figsize=(9, 0.28 * len(rows) + 2))
    labels = [hall.windows_by_id[v["window"]].display if v["window"] in hall.windows_by_id else str(v["window"])
              for v in rows]
    y = range(len(rows))
    ax.barh(y, [v["good"] for v in rows], color="tab:green", label="good")
    ax.barh(y, [v["bad"] for v in rows], left=[v["good"] for v in rows], color="tab:red", label="bad")
    ax.set_yticks(list(y), labels, fontsize=7)
    ax.set_xlabel("ratings")
    ax.set_title(f"Ratings per window (the {len(rows)} most rated)\n{title}")
    ax.legend(fontsize=8)
    return fig
