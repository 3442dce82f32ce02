"""Showing a run: rich tables on the terminal, a JSON file, and the chart files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final, Iterable, Mapping

from rich.console import Console
from rich.table import Table

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
WAIT_COLUMNS: Final = ("queued", "called", "mean_min", "p50_min", "p90_min", "p99_min", "within_target")


def _fmt(key: str, value: Any) -> str:
    if value is None:
        return "–"
    if key == "within_target":
        return f"{100 * value:.0f} %"
    if key.endswith("_min"):
        return f"{value:.1f}"
    return str(value)


def wait_table(title: str, rows: Iterable[tuple[str, Mapping[str, Any]]], first: str) -> Table:
    table = Table(title=title)
    table.add_column(first)
    for col in WAIT_COLUMNS:
        table.add_column(col.replace("_min", " (min)").replace("_", " "), justify="right")
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
    console.print(zone_table(summary, scenario))
    little = summary["little"]
    console.print(f"Little's law: L = {little['L']:.3f} waiting (engine count), λ·W = "
                  f"{little['lambda_per_min']:.3f}/min x {little['W_min']:.2f} min = {little['lambda_W']:.3f} "
                  f"(relative difference {little['rel_err']:.2e})")
    theory = summary.get("theory")
    if theory:
        console.print(f"Erlang C (M/M/{theory['servers']}, ρ = {theory['utilisation']:.2f}): mean wait "
                      f"{theory['erlang_c_wait_min']:.3f} min; simulated {theory['sim_wait_min']:.3f} min "
                      f"({theory['replications']} replication(s)), relative error {100 * theory['rel_err']:.2f} %")


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
