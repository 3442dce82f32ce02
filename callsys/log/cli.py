"""``callsys store check`` and ``callsys store backup``: the operator's tools for a store.

Both read the store beside a running server (no lock, no pause; see
:mod:`callsys.log.sqlite`). ``check`` exits 0 when the store is healthy and 2 when it is
damaged or not a callsys store; ``backup`` is the safe way to copy a live store (never
copy ``PATH``, ``PATH-wal`` or ``PATH-shm`` by hand).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import trio
from rich.console import Console
from rich.table import Table

from ..cli import command
from ..hall import load_hall
from .check import CheckReport, check_store
from .sqlite import backup


def _path(store: str) -> Path:
    """A store given as ``PATH`` or as the server's ``file:PATH`` URL."""
    return Path(store.removeprefix("file:"))


@command("store", "check", help="verify a store: every record, the snapshot, a full replay")
def _check_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="the store file (or file:PATH), e.g. var/callsys.db")
    p.add_argument("--config", default="config/qingdao.toml", help="its hall file (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=_check)


def _check(args: argparse.Namespace) -> int:
    hall = load_hall(args.config)
    report = trio.run(check_store, _path(args.store), hall)
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    else:
        print_report(report, Console())
    return 0 if report.healthy else 2


def print_report(report: CheckReport, console: Console) -> None:
    table = Table(title=f"Store {report.path}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("hall", report.hall)
    table.add_row("format", f"callsys store format {report.schema_version}" if report.marked
                  else "callsys store from before format marks (adopted and marked at the next start)")
    table.add_row("size", f"{report.bytes:,} bytes")
    table.add_row("records", f"{report.records:,} (seq {report.first_seq:,} to {report.last_seq:,})"
                  if report.records else "none")
    table.add_row("snapshot", f"at seq {report.snapshot_seq:,}" if report.snapshot_seq is not None else "none")
    table.add_row("tickets", f"{report.tickets:,}" + ("" if report.healthy else " (replayed up to the damage)"))
    table.add_row("verdict", "[green]healthy[/]" if report.healthy else f"[red]damaged[/]: {report.damage}")
    console.print(table)


@command("store", "backup", help="copy a store safely, even while its server runs")
def _backup_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="the store file (or file:PATH), e.g. var/callsys.db")
    p.add_argument("dest", help="the copy to write (a new file)")
    p.add_argument("--force", action="store_true", help="replace DEST if it exists (never while a server uses it)")
    p.add_argument("--json", action="store_true", help="print what was copied as JSON")
    p.set_defaults(run=_backup)


def _backup(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    info = backup(_path(args.store), _path(args.dest), force=args.force)
    elapsed = time.perf_counter() - started
    if args.json:
        print(json.dumps({"source": str(info.source), "dest": str(info.dest), "hall": info.hall,
                          "records": info.records, "last_seq": info.last_seq, "bytes": info.bytes,
                          "seconds": round(elapsed, 3)}))
    else:
        Console().print(f"copied store {info.source} (hall {info.hall}, {info.records:,} records up to seq "
                        f"{info.last_seq:,}) to {info.dest}: {info.bytes:,} bytes in {elapsed:.2f} s; "
                        f"`callsys store check {info.dest}` verifies the copy")
    return 0
