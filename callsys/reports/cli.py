"""``callsys report``: a past day (or days) of a hall, rebuilt from its event store.

Reads the store beside a running server (a file store without its lock, in one read
transaction; a Redis store as any reader) and prints the report as rich tables, or JSON;
``--csv DIR`` and ``--charts DIR`` write the CSV files and PNG charts as well. The figures
and their definitions: :mod:`callsys.reports`.
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path

import trio
from rich.console import Console

from ..cli import command
from ..hall import Hall, load_hall
from ..log.journal import open_store
from . import Period, Report, period, report_from_log
from .output import print_report, write_charts, write_csv


def _day(text: str) -> date:
    """An ``argparse`` type: a calendar date written YYYY-MM-DD."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date YYYY-MM-DD: {text!r}") from None


@command("report", help="a past day (or days) of a hall, rebuilt from its event store")
def _report_args(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Rebuild a report of a past day, or of the days --from .. --to, from the hall's event store: tickets by "
        "channel and service, wait and service-time percentiles, share within target, no-shows, cancels, ratings "
        "per window, busiest hours and the zone x hour waiting heatmap. Dates are the hall's local dates. "
        "Definitions: the docstring of callsys/reports/__init__.py.")
    p.add_argument("--store", required=True, metavar="URL",
                   help="the event store URL: file:PATH (e.g. file:var/callsys.db) or redis://HOST:PORT/DB; "
                        "read only, safe beside a running server")
    p.add_argument("--hall", default="config/qingdao.toml", metavar="FILE",
                   help="its hall file (default: %(default)s)")
    p.add_argument("--date", type=_day, metavar="YYYY-MM-DD", help="the day (the hall's local date)")
    p.add_argument("--from", dest="first", type=_day, metavar="YYYY-MM-DD",
                   help="the first day of a range (with --to)")
    p.add_argument("--to", dest="last", type=_day, metavar="YYYY-MM-DD", help="the last day of a range (included)")
    p.add_argument("--csv", type=Path, metavar="DIR", help="also write one CSV file per table into DIR")
    p.add_argument("--charts", type=Path, metavar="DIR", help="also write the PNG charts (heatmap included) into DIR")
    p.add_argument("--json", action="store_true", help="print the figures as JSON instead of tables")
    p.set_defaults(run=_report, parser=p)


def _report(args: argparse.Namespace) -> int:
    if args.date is not None and (args.first is not None or args.last is not None):
        args.parser.error("give --date, or --from and --to, not both")
    if args.date is None and (args.first is None or args.last is None):
        args.parser.error("give --date D, or --from D1 --to D2")
    hall = load_hall(args.hall)
    when = period(hall, args.date) if args.date is not None else period(hall, args.first, args.last)
    report = trio.run(read_report, args.store, hall, when)
    figures = report.figures()
    if args.json:
        print(json.dumps(figures, ensure_ascii=False, indent=2))
    else:
        print_report(figures, Console())
    console = Console(stderr=True)
    if args.csv is not None:
        console.print(f"wrote {len(write_csv(args.csv, figures))} CSV files to {args.csv}")
    if args.charts is not None:
        console.print(f"wrote {len(write_charts(args.charts, report))} charts to {args.charts}")
    return 0


async def read_report(url: str, hall: Hall, when: Period) -> Report:
    """The report of *when* from the store at *url*, opened read-only.

    Raises:
        LogError: the store cannot be opened or read.
    """
    log = await open_store(url, hall.id, readonly=True)
    try:
        return await report_from_log(log, hall, when)
    finally:
        await log.aclose()
