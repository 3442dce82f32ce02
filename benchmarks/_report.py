"""The convention every benchmark follows: a rich table, or with ``--json`` a JSON list.

Each row is ``{"metric", "value", "unit", "target"}``; ``target`` is a string such as
``">= 100000"`` or ``"<= 10"`` (or None) and the table marks whether the value meets it.
The machine the figures come from is printed under the table (and to stderr with --json,
so stdout stays machine-readable).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from typing import Any, Iterable

from rich.console import Console
from rich.table import Table

Row = dict[str, Any]


def row(metric: str, value: float, unit: str, target: str | None = None) -> Row:
    return {"metric": metric, "value": value, "unit": unit, "target": target}


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the shared ``--json`` flag."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--json", action="store_true", help="print only a JSON list of {metric, value, unit, target}")
    return p


def machine() -> dict[str, Any]:
    """CPU model, core count, Python and OS of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
    }


def meets(value: float, target: str | None) -> bool | None:
    """Whether *value* meets a target like ``">= 100000"``; None without a target."""
    if not target:
        return None
    op, _, bound = target.partition(" ")
    limit = float(bound)
    return {">=": value >= limit, "<=": value <= limit, ">": value > limit, "<": value < limit}[op]


def report(title: str, rows: Iterable[Row], json_out: bool, *, notes: Iterable[str] = ()) -> None:
    """Print *rows* as a table (or JSON with *json_out*) with the machine details."""
    rows = list(rows)
    info = machine()
    if json_out:
        print(json.dumps(rows))
        print(json.dumps({"machine": info, "notes": list(notes)}), file=sys.stderr)
        return
    table = Table(title=title)
    for col, justify in (("metric", "left"), ("value", "right"), ("unit", "left"), ("target", "left"), ("", "center")):
        table.add_column(col, justify=justify)
    for r in rows:
        ok = meets(r["value"], r["target"])
        mark = "" if ok is None else ("[green]ok[/]" if ok else "[red]missed[/]")
        table.add_row(r["metric"], _fmt(r["value"]), r["unit"], r["target"] or "", mark)
    console = Console()
    console.print(table)
    console.print(f"[dim]{info['cpu']}, {info['cores']} cores, Python {info['python']}, {info['os']}[/]")
    for note in notes:
        console.print(f"[dim]{note}[/]")


def _fmt(value: float) -> str:
    if isinstance(value, float) and value < 100:
        return f"{value:.3g}" if value < 1 else f"{value:.2f}"
    return f"{value:,.0f}"
