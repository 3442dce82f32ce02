"""Showing a run: rich tables on the terminal, a JSON file, and the chart files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final, Iterable, Mapping

from rich.console import Console
from rich.table import Table

from .experiment import HEADLINE
from .scenario import Scenario

TOP_SERVICES: Final = 15
FLOW_ROWS: Final = (
    ("queued", "citizens who queued"),
    ("served", "served"),
    ("abandoned", "gave up waiting (cancelled or left)"),
    ("no_show_called", "called, never came (no-show)"),
    ("unserved", "not served by closing"),
    ("sent_home", "sent home at the close-out"),
    ("transferred", "transferred to another service"),
    ("hall_closed", "turned away: hall not issuing"),
    ("bookings", "appointments booked"),
    ("slot_full", "booking refused: slot full"),
    ("appointment_no_show", "booked, never came"),
    ("checked_in", "appointments checked in"),
    ("recalls", "recalls announced"),
    ("breaks", "clerk breaks"),
)
WAIT_COLUMNS: Final = ("queued", "called", "p_wait", "mean_min", "p50_min", "p90_min", "p99_min", "within_target")
HEADERS: Final = {"p_wait": "P(wait>0)"}  # column titles other than the key with "_min" -> " (min)"
SHARES: Final = frozenset({"p_wait", "within_target"})  # shown as percentages


def _fmt(key: str, value: Any) -> str:
    if value is None:
        return "–"
    if key in SHARES:
        return f"{100 * value:.0f} %"
    if key.endswith("_min"):
        return f"{value:.1f}"
    return str(value)


def wait_table(title: str, rows: Iterable[tuple[str, Mapping[str, Any]]], first: str) -> Table:
    table = Table(title=title)
    table.add_column(first)
    for col in WAIT_COLUMNS:
        table.add_column(HEADERS.get(col) or col.replace("_min", " (min)").replace("_", " "), justify="right")
    for name, stats in rows:
        table.add_row(name, *(_fmt(col, stats.get(col)) for col in WAIT_COLUMNS))
    return table


def print_summary(summary: Mapping[str, Any], scenario: Scenario, console: Console, *, top: int = TOP_SERVICES) -> None:
    """The run's figures as rich tables."""
    hall = scenario.hall
    w = summary["windows"]
    console.print(f"[bold]{scenario.name}[/]: {scenario.description}")
    console.print(f"hall {hall.id} ({hall.name.en}), {w['opened']}/{w['total']} windows opened, "
                  f"{summary['days']} day(s), seed {summary['seed']}"
                  + (f", simulated in {summary['runtime_s']:.2f} s" if "runtime_s" in summary else ""))
    if "regulation" in summary:  # sim run --regulate
        r = summary["regulation"]
        console.print(f"regulated (调流): {r['commands']:,} reassignments by the simulated manager, scope {r['scope']}, "
                      f"a look every {r['every_s'] / 60:g} min, at most {r['max_moves_per_hour']} moves per window "
                      f"per hour, {r['min_stay_s'] / 60:g} min minimum stay")
    flow = Table(title="Flow", show_header=False)
    flow.add_column("what")
    flow.add_column("n", justify="right")
    for key, label in FLOW_ROWS:
        flow.add_row(label, str(summary["flow"][key]))
    console.print(flow)
    waits = summary["waits"]
    rows = [("all", waits["all"]), ("green channel", waits["green"])] + list(waits["by_channel"].items())
    console.print(wait_table("Waits by channel", rows, "who"))
    services = sorted(waits["by_service"].items(), key=lambda kv: -(kv[1].get("p90_min") or 0))
    title = f"Waits by service (worst {min(top, len(services))} of {len(services)} by p90)"
    console.print(wait_table(title, services[:top], "service"))
    eta = summary.get("eta")
    if eta and eta["mae_min"] is not None:
        console.print(f"Wait estimates (told at issue / check-in, {eta['estimated']:,} of {eta['called']:,} called "
                      f"citizens): mean absolute error {eta['mae_min']:.2f} min, p90 {eta['p90_abs_err_min']:.2f} min, "
                      f"bias {eta['bias_min']:+.2f} min (mean estimate {eta['mean_estimate_min']:.1f} min, "
                      f"actual {eta['mean_actual_min']:.1f} min)")
    issuing = summary.get("issuing")
    if issuing and issuing["told_early"] + issuing["gave_up"]:
        told = issuing["told_early_by_reason"]
        median = issuing["gave_up_waited_median_min"]
        console.print(f"Issuing: {issuing['told_early']:,} told early at the kiosk (daily cap {told['cap']:,}, "
                      f"cutoff {told['cutoff']:,}, warned and left {told['warned']:,} of {issuing['warned']:,} "
                      f"warned) against {issuing['gave_up']:,} who gave up after queueing"
                      + (f" (median wait {median:.0f} min)" if median is not None else "")
                      + f": {100 * issuing['told_early_share']:.0f} % of them were told early")
    punct = summary.get("punctuality")
    if punct and punct["checked_in"]:
        after = ("" if punct["after_slot_p50_min"] is None else
                 f"; called {punct['after_slot_p50_min']:.1f} min after the slot start (median), p90 "
                 f"{punct['after_slot_p90_min']:.1f} min")
        console.print(f"Appointments ({punct['checked_in']:,} checked in): {_pct(punct['early'])} early, "
                      f"{_pct(punct['late'])} late ({punct['late_walk_in']:,} queued as walk-ins), median arrival "
                      f"{punct['arrival_p50_min']:+.1f} min against the slot{after}; "
                      f"{_pct(punct['within_target_after_slot'])} called within target after the slot start")
    console.print(zone_table(summary, scenario))
    little = summary["little"]
    console.print(f"Little's law: L = {little['L']:.3f} waiting (engine count), λ·W = "
                  f"{little['lambda_per_min']:.3f}/min x {little['W_min']:.2f} min = {little['lambda_W']:.3f} "
                  f"(relative difference {little['rel_err']:.2e})")
    theory = summary.get("theory")
    if theory:
        console.print(f"Erlang C (M/M/{theory['servers']}, ρ = {theory['utilisation']:.2f}): mean wait "
                      f"{theory['erlang_c_wait_min']:.3f} min; simulated {theory['sim_wait_min']:.3f} min "
                      f"({theory['replications']} replication(s)), relative error {100 * theory['rel_err']:.2f} %"
                      + (f"; P(wait>0) {theory['erlang_c_p_wait']:.3f}, simulated {theory['sim_p_wait']:.3f}"
                         if "sim_p_wait" in theory else ""))
    reps = summary.get("replications")
    if reps:
        console.print(replication_table(reps, top=top))


def replication_table(reps: Mapping[str, Any], *, top: int = TOP_SERVICES) -> Table:
    """Mean ± 95 % half-width (Student's t) of the headline figures over the replications:
    the whole hall, then the *top* services with the worst mean p90."""
    runs = reps["runs"]
    seeds = f"{runs[0]['seed']}–{runs[-1]['seed']}"
    table = Table(title=f"{len(runs)} replications (seeds {seeds}): mean ± 95 % half-width (Student's t)")
    table.add_column("who")
    for col in HEADLINE:
        table.add_column(HEADERS.get(col) or col.replace("_min", " (min)").replace("_", " "), justify="right")
    services = sorted(reps["by_service"].items(), key=lambda kv: -(kv[1]["p90_min"]["mean"] or 0))
    for name, figures in [("all", reps)] + services[:top]:
        table.add_row(name, *(_pm(col, figures[col]) for col in HEADLINE))
    return table


def _pm(key: str, iv: Mapping[str, float | None]) -> str:
    if iv["mean"] is None:
        return "–"
    if iv["ci95"] is None:
        return _fmt(key, iv["mean"])
    if key in SHARES:
        return f"{100 * iv['mean']:.1f} ± {100 * iv['ci95']:.1f} %"
    return f"{iv['mean']:.2f} ± {iv['ci95']:.2f}"


def zone_table(summary: Mapping[str, Any], scenario: Scenario) -> Table:
    hall = scenario.hall
    util = summary["utilisation"]["by_zone"]
    queue = summary["queue"]["by_zone"]
    windows: dict[str, int] = {}
    for window in hall.windows:
        windows[window.zone] = windows.get(window.zone, 0) + 1
    table = Table(title=f"Zones (hall utilisation {_pct(summary['utilisation']['hall'])})")
    for col in ("zone", "name", "windows", "utilisation", "peak waiting"):
        table.add_column(col, justify="left" if col in ("zone", "name") else "right")
    for zone in sorted(hall.zones, key=lambda z: -(max(queue[z.id]) if queue[z.id] else 0)):
        table.add_row(zone.id, zone.name.en, str(windows.get(zone.id, 0)), _pct(util[zone.id]),
                      f"{max(queue[zone.id]):.0f}" if queue[zone.id] else "–")
    return table


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f} %"


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def print_live(result: Mapping[str, Any], console: Console) -> None:
    """A live run's report: latencies, what flowed, errors and the end-of-run check."""
    console.print(f"[bold]live {result['scenario']}[/] against {result['url']} at speed {result['speed']:g}: "
                  f"{result['real_s']:.1f} s real, {result['requests']:,} requests, connections "
                  + ", ".join(f"{n} {role}" for role, n in sorted(result["connections"].items())))
    table = Table(title="Latency (ms)")
    for col in ("measure", "n", "p50", "p90", "p99", "max"):
        table.add_column(col, justify="left" if col == "measure" else "right")
    for name, s in result["latency"].items():
        if s["n"]:
            table.add_row(name, f"{s['n']:,}", *(f"{s[k]:.1f}" for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms")))
    console.print(table)
    timeline = result.get("timeline") or []
    if timeline:
        console.print("command -> ack p99 (ms) per 5 s of play: "
                      + " ".join(f"{b['p99_ms']:.0f}" for b in timeline))
    flow = Table(title="Flow and refusals", show_header=False)
    flow.add_column("what")
    flow.add_column("n", justify="right")
    for key, n in sorted(result["flow"].items()):
        flow.add_row(key, f"{n:,}")
    for key, n in sorted(result["refusals"].items()):
        flow.add_row(f"refused {key}", f"{n:,}")
    console.print(flow)
    errors = result["errors"]
    dropped = result["dropped"]
    console.print(f"errors: {sum(errors.values())} {dict(errors) if errors else ''}; dropped pushes: "
                  + ", ".join(f"{k} {v}" for k, v in dropped.items()))
    check = Table(title="End-of-run check: server vs clients")
    for col in ("check", "server", "clients", "ok"):
        check.add_column(col, justify="left" if col == "check" else "right")
    for item in result["check"]["items"]:
        check.add_row(item["what"], "–" if item["server"] is None else str(item["server"]), str(item["clients"]),
                      "[green]yes[/]" if item["ok"] else "[red]NO[/]")
    console.print(check)


def _figure(stat: str, mean: float | None, margin: float | None) -> str:
    if mean is None:
        return "–"
    return _fmt(stat, mean) + ("" if margin is None else f" ± {_fmt(stat, margin)}")


def print_plan(data: Mapping[str, Any], console: Console) -> None:
    """A plan (``sim.planner.Plan.to_dict`` plus ``scenario``): per pool table, the worst service, what more is needed."""
    stat, conf, reps = data["stat"], f"{100 * data['confidence']:g} %", data["replications"]
    within = data.get("max_windows") is not None
    needed = within and data.get("windows_needed") is not None
    head = f"within {data['max_windows']} windows" if within else "fewest windows"
    table = Table(title=f"Plan for {data['scenario']}, {head}: {data['target']} (per {data['by']}; {reps} replications "
                        f"per staffing, met = one-sided {conf} Student's t bound; {data['runs']} runs)")
    unit = stat.replace("_min", " (min)").replace("_", " ")
    cols = ["pool", "windows now", "planned", "change"] + (["needed"] if needed else []) + \
        ["worst service", f"{unit} ± {conf}", "met"]
    for col in cols:
        table.add_column(col, justify="left" if col in ("pool", "worst service") else "right")
    for p in data["pools"]:
        change = p["planned"] - p["current"]
        extra = [f"{p['needed']} ({p['needed'] - p['planned']:+d})" if p["needed"] != p["planned"] else "="] if needed else []
        table.add_row(p["pool"], str(p["current"]), str(p["planned"]), f"{change:+d}" if change else "0", *extra,
                      p["worst_service"] or "–", _figure(stat, p["worst"], p["margin"]),
                      "[green]yes[/]" if p["met"] else "[red]no[/]")
    total = data["windows_planned"] - data["windows_current"]
    table.add_row("[bold]hall", str(data["windows_current"]), f"[bold]{data['windows_planned']}", f"{total:+d}",
                  *([str(data["windows_needed"])] if needed else []), "", "",
                  "[green]yes[/]" if data["met"] else "[red]no[/]")
    console.print(table)
    worst = data["worst"]
    if worst:
        console.print(f"worst service {worst['service']}: {unit} {_figure(stat, worst['mean'], worst['margin'])} "
                      f"(mean over {reps} replications ± one-sided {conf} margin): target "
                      + ("[green]met[/]" if data["met"] else "[red]not met[/]") + f" with {conf} confidence")
    if within:
        current = data.get("current_worst")
        if current:
            console.print(f"today's allocation (scaled to {data['max_windows']} if above) on the same seeds: worst "
                          f"{current['service']} {_figure(stat, current['mean'], current['margin'])}")
        skills = data.get("universal_skills")
        console.print("universal windows serve " + ("every service" if skills is None else
                                                     f"{len(skills)} services with residual load: " + ", ".join(skills)))
        if needed:
            console.print(f"to meet the target: {data['windows_needed']} windows "
                          f"({data['windows_needed'] - data['windows_planned']:+d} on the plan, see 'needed')")
        elif not data["met"]:
            console.print("what more is needed was not searched (--no-beyond)")
    waits = data["plan_waits"]
    console.print(f"with the plan (first replication): mean wait {waits.get('mean_min') or 0:.1f} min, p90 "
                  f"{waits.get('p90_min') or 0:.1f} min, {100 * (waits['within_target'] or 0):.0f} % called within target")
