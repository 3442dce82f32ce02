"""What the terminal tools share: connection flags with working defaults, and running them.

Without ``--token`` a tool uses the first token of its role in the hall file (the flagship
``config/qingdao.toml`` by default), so ``make run`` in one terminal and ``callsys kiosk``
in another just work.
"""

from __future__ import annotations

import argparse
import json
import tomllib
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo
from typing import Any, Awaitable, Callable

import trio
from rich.console import Console

from ..client import DEFAULT_URL, FORMATS, ClientError
from ..errors import ConfigError

DEFAULT_CONFIG = "config/qingdao.toml"


def add_connection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=DEFAULT_URL, help="server WebSocket URL (default: %(default)s)")
    p.add_argument("--token", help="device token (default: the first of the role in --config)")
    p.add_argument("--config", default=DEFAULT_CONFIG, help="hall file to take the default token from")
    p.add_argument("--format", dest="fmt", default="msgpack", choices=sorted(FORMATS), help="wire format")
    p.add_argument("--json", action="store_true", help="print the server's answer as JSON (for scripts)")


def token_for(args: argparse.Namespace, role: str) -> str:
    """``--token``, or the first *role* token of the hall file ``--config``.

    Raises:
        ConfigError: no token given and the hall file has none for *role*.
    """
    if args.token:
        return args.token
    try:
        tokens = tomllib.loads(Path(args.config).read_text(encoding="utf-8")).get("tokens", {}).get(role, [])
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(args.config, "", f"cannot read the default token: {exc}") from None
    if not tokens:
        raise ConfigError(args.config, f"tokens.{role}", "no token for this role; pass --token")
    return tokens[0]


def run_tool(main: Callable[[], Awaitable[int]], console: Console) -> int:
    """Run an async tool; a client error becomes a one-line message and exit code 1."""
    try:
        return trio.run(main)
    except ClientError as exc:
        console.print(f"[red]{exc}[/]")
        return 1


def print_json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False, indent=2))


def minutes(seconds: float | None) -> str:
    """An estimated wait for people: ``"~12 min"`` or ``"-"`` when unknown."""
    return "-" if seconds is None else f"~{max(1, round(seconds / 60))} min"


def hall_time(at: float, welcome: dict[str, Any], fmt: str = "%H:%M:%S") -> str:
    """POSIX time *at* as the hall's local time."""
    return datetime.fromtimestamp(at, ZoneInfo(welcome.get("timezone", "UTC"))).strftime(fmt)
