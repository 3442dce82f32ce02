"""The ``callsys`` command line: one entry point, one sub-command per job.

Sub-commands register themselves in :data:`COMMANDS` through :func:`command`; each gets an
``argparse`` sub-parser (so ``--help`` works everywhere) and a function that runs it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
from collections import Counter
from typing import Any, Callable

from rich.console import Console
from rich.table import Table

from ._schema import INTEGRATION_NAME
from .errors import CallsysError, ConfigError
from .hall import Hall, load_hall
from .tokens import (api_client_table, generate_api_key, generate_tokens, tokens_table, write_api_key,
                     write_tokens)

Setup = Callable[[argparse.ArgumentParser], None]
COMMANDS: dict[tuple[str, ...], tuple[str, Setup]] = {}
# Modules that register sub-commands with @command when imported.
PLUGINS = ("callsys.server.cli", "callsys.log.cli", "callsys.reports.cli", "callsys.tools", "sim.cli", "voice.cli")


def bounded(kind: type, low: float | None = None, high: float | None = None, *,
            above: bool = False) -> Callable[[str], Any]:
    """An ``argparse`` type: *text* read as *kind*, from *low* (exclusive when *above*) to *high*.

    A value out of range is a one-line usage error (``argparse`` exits with 2), never a
    traceback further on.
    """

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {'a whole number' if kind is int else 'a number'}: {text!r}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
        if low is not None and (value <= low if above else value < low):
            raise argparse.ArgumentTypeError(f"must be {'>' if above else '>='} {low:g}, got {text}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be <= {high:g}, got {text}")
        return value

    return parse


def command(*path: str, help: str) -> Callable[[Setup], Setup]:
    """Register ``callsys <path...>``: decorate the parser setup; it must set ``run``."""

    def register(setup: Setup) -> Setup:
        COMMANDS[path] = (help, setup)
        return setup

    return register


# ---------------------------------------------------------------------- config show


@command("config", "show", help="summarise a hall file (floors, zones, windows, services)")
def _config_show_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="hall file, e.g. config/qingdao.toml")
    p.add_argument("--json", action="store_true", help="print the whole loaded hall as JSON")
    p.set_defaults(run=_config_show)


def _config_show(args: argparse.Namespace) -> int:
    hall = load_hall(args.file)
    if args.json:
        print(json.dumps(hall.summary(), ensure_ascii=False, indent=2))
        return 0
    print_hall(hall, Console())
    return 0


def print_hall(hall: Hall, console: Console) -> None:
    console.print(f"[bold]{hall.name.zh}[/] / {hall.name.en}  ([dim]{hall.id}, {hall.source}[/])")
    console.print(f"{len(hall.floors)} floors, {len(hall.zones)} zones, {len(hall.windows)} windows, "
                  f"{len(hall.services)} services, time zone {hall.timezone}")
    per_zone = Counter(w.zone for w in hall.windows)
    universal = Counter(w.zone for w in hall.windows if w.universal)
    zones = Table(title="Zones")
    for col in ("floor", "zone", "name", "windows", "universal"):
        zones.add_column(col, justify="right" if col in ("floor", "windows", "universal") else "left")
    for zone in sorted(hall.zones, key=lambda z: (z.floor, z.id)):
        zones.add_row(str(zone.floor), zone.id, f"{zone.name.zh} {zone.name.en}",
                      str(per_zone[zone.id]), str(universal[zone.id] or ""))
    console.print(zones)
    servers = Counter(code for w in hall.windows for code in w.skills)
    services = Table(title="Services")
    for col in ("code", "prefix", "name", "group", "min", "target wait", "windows", "slot cap"):
        services.add_column(col)
    for s in hall.services:
        services.add_row(s.code, s.prefix, f"{s.name.zh} {s.name.en}", s.group, f"{s.minutes:g}",
                         f"{s.target_wait_s / 60:g} min", str(servers[s.code]),
                         str(hall.appointments.capacity[s.code]))
    console.print(services)
    days = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
    hours = "; ".join(
        f"{d} " + (", ".join(f"{a // 60:02d}:{a % 60:02d}-{b // 60:02d}:{b % 60:02d}" for a, b in s) or "closed")
        for d, s in zip(days, hall.hours.week)
    )
    console.print(f"Hours: {hours}")
    p = hall.policy
    console.print(f"Policy: appointment credit {p.appointment_credit_s / 60:g} min, green credit "
                  f"{p.green_credit_s / 60:g} min, interleave {list(p.interleave) or 'off'}, wait threshold "
                  f"{'on' if p.wait_threshold else 'off'}, skill order {p.skill_order}, recall limit {p.recall_limit}")


# ---------------------------------------------------------------------- config tokens


@command("config", "tokens", help="generate strong random device tokens for a hall file")
def _config_tokens_args(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Generate a strong random token for every device role (kiosk, clerk, display, speaker, manager) of a "
        "hall file: as many per role as the file has now, at least one. Without --write, print them as a "
        "[tokens] table to paste into the file. With --write, replace the file's [tokens] table in place "
        "(appended if it has none); every byte outside that table stays as it was. Devices must then be "
        "configured with the new tokens and the server restarted. Keep hall files with real tokens out of "
        "version control.")
    p.add_argument("file", help="hall file, e.g. config/qingdao.toml")
    p.add_argument("--write", action="store_true", help="rewrite the [tokens] table of FILE in place "
                                                         "instead of printing it")
    p.set_defaults(run=_config_tokens)


def _config_tokens(args: argparse.Namespace) -> int:
    tokens = generate_tokens(load_hall(args.file))
    if not args.write:
        print(tokens_table(tokens), end="")
        return 0
    write_tokens(args.file, tokens)
    print(f"wrote new tokens for {', '.join(tokens)} to {args.file}; configure the devices with them "
          "and restart the server", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------- config api-key


@command("config", "api-key", help="generate a strong random API key for an integration client of a hall file")
def _config_api_key_args(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Generate a strong random key for the integration client NAME of the HTTP API (/api/v1, header "
        "X-API-Key). Without --write, print the client's [integrations.NAME] table (its rate limit and webhook "
        "as they are now, or the defaults for a new client) to paste into the file. With --write, replace the "
        "key line of that table in place (the table is appended if the file has none); every other byte stays "
        "as it was. Give the key to the client and restart the server. Keep hall files with real keys out of "
        "version control.")
    p.add_argument("file", help="hall file, e.g. config/qingdao.toml")
    p.add_argument("name", help="the client's name: 1-32 of a-z, 0-9, '_' and '-' (e.g. wechat)")
    p.add_argument("--write", action="store_true", help="set the key in FILE in place instead of printing the table")
    p.set_defaults(run=_config_api_key)


def _config_api_key(args: argparse.Namespace) -> int:
    hall = load_hall(args.file)
    if not re.match(INTEGRATION_NAME, args.name):
        raise ConfigError(args.file, f"integrations.{args.name}", "a client name is 1-32 of a-z, 0-9, '_' and '-'")
    key = generate_api_key()
    if not args.write:
        print(api_client_table(hall, args.name, key), end="")
        return 0
    write_api_key(args.file, hall, args.name, key)
    print(f"wrote a new API key for client {args.name!r} to {args.file}; give it to the client and restart "
          "the server", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="callsys", description="Queue and window-calling server for service halls.")
    groups: dict[tuple[str, ...], argparse._SubParsersAction] = {(): parser.add_subparsers(dest="command", required=True)}
    for path, (help_text, setup) in sorted(COMMANDS.items()):
        for depth in range(1, len(path)):
            prefix = path[:depth]
            if prefix not in groups:
                sub = groups[path[: depth - 1]].add_parser(path[depth - 1], help=f"{path[depth - 1]} commands")
                groups[prefix] = sub.add_subparsers(dest="_".join(prefix), required=True)
        setup(groups[path[:-1]].add_parser(path[-1], help=help_text, description=help_text))
    return parser


def _load_plugins() -> None:
    """Import the modules that register further sub-commands (server, clients, simulator)."""
    for name in PLUGINS:
        importlib.import_module(name)


def main(argv: list[str] | None = None) -> int:
    _load_plugins()
    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except CallsysError as exc:
        print(f"callsys: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
