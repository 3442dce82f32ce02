"""``callsys clerk --window N [--staff ID]``: a window clerk's console in the terminal.

``--staff`` is the clerk's staff id (工号): it goes with every ``open_window`` the console
sends, so the services ended at the window while it is open name the clerk (ratings and
reports per clerk, :mod:`callsys.ratings`).

Interactive: a live view of the window (status, current citizen, the queue for its
skills) driven by single keys — n next, r recall, s start, f finish, x no-show,
t transfer, p pause/resume, k park, o open/close, q quit. ``--do ACTION`` runs one action
and exits (for scripts and tests).
"""

from __future__ import annotations

import argparse
import os
import sys
import termios
import tty
from contextlib import asynccontextmanager, contextmanager
from typing import Any, AsyncIterator, Iterator

import trio
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from ..cli import command
from ..client import Device, RequestFailed, connect_device
from .common import add_connection_args, hall_time, print_json, run_tool, token_for

# --do ACTION -> message type
ACTIONS = {
    "next": "call_next", "call": "call_number", "recall": "recall", "start": "start", "finish": "finish",
    "no-show": "no_show", "transfer": "transfer", "park": "park", "return": "return_ticket",
    "pause": "pause", "resume": "resume", "open": "open_window", "close": "close_window", "state": "window",
}
KEYS = {"n": "next", "r": "recall", "s": "start", "f": "finish", "x": "no-show", "k": "park"}
HELP = "n next  r recall  s start  f finish  x no-show  t transfer  p pause/resume  k park  o open/close  q quit"
REFRESH_S = 2.0  # seconds between refreshes of the queue view


@command("clerk", help="a window clerk's console (interactive keys, or --do ACTION)")
def _clerk_args(p: argparse.ArgumentParser) -> None:
    add_connection_args(p)
    p.add_argument("--window", type=int, required=True, help="the window to sign in to")
    p.add_argument("--staff", metavar="ID",
                   help="your staff id (工号, 1-32 printable characters), sent when opening the window so "
                        "the services you end are counted for you; without it the window opens anonymously")
    p.add_argument("--do", choices=sorted(ACTIONS), help="run one action and exit")
    p.add_argument("--ticket", help="ticket id or number (call, return)")
    p.add_argument("--service", help="transfer to this service")
    p.add_argument("--to-window", type=int, help="transfer to this window")
    p.add_argument("--rating", choices=("good", "bad"), help="the citizen's rating (finish)")
    p.set_defaults(run=_clerk)


def _clerk(args: argparse.Namespace) -> int:
    console = Console()
    token = token_for(args, "clerk")

    async def main() -> int:
        async with connect_device(args.url, role="clerk", token=token, window=args.window, fmt=args.fmt) as client:
            if args.do:
                return await _do(client, args.do, _fields(args), args.json, console)
            return await _interactive(client, console, args.staff)

    return run_tool(main, console)


def _fields(args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if args.ticket is not None:
        fields["ticket"] = int(args.ticket) if args.ticket.isdigit() else args.ticket
    if args.service is not None:
        fields["service"] = args.service
    if args.to_window is not None:
        fields["to_window"] = args.to_window
    if args.rating is not None:
        fields["rating"] = args.rating
    if args.staff is not None and args.do == "open":
        fields["clerk"] = args.staff
    return fields


async def _do(client: Device, action: str, fields: dict[str, Any], as_json: bool, console: Console) -> int:
    try:
        result = await client.request(ACTIONS[action], **fields)
    except RequestFailed as exc:
        if as_json:
            print_json({"error": exc.code, "message": exc.message, "details": exc.details})
        else:
            console.print(f"[red]{exc.code}[/]: {exc.message}")
        return 1
    if as_json:
        print_json(result)
    elif action == "state":
        console.print(window_view(result, client.welcome))
    else:
        console.print(f"{action}: " + ", ".join(_describe(e) for e in result["events"]))
    return 0


def _describe(event: dict[str, Any]) -> str:
    extra = event.get("number") or event.get("ticket") or ""
    return f"{event['kind']} {extra}".strip()


# ---------------------------------------------------------------------- interactive


class ClerkConsole:
    """The interactive state: the latest window view and the last message shown."""

    def __init__(self, client: Device, staff: str | None = None) -> None:
        self.client = client
        self.staff = staff  # sent with every open_window
        self.state: dict[str, Any] | None = None
        self.message = HELP

    async def refresh(self) -> None:
        self.state = await self.client.request("window")

    async def act(self, action: str, **fields: Any) -> None:
        if action == "open" and self.staff is not None:
            fields["clerk"] = self.staff
        try:
            result = await self.client.request(ACTIONS[action], **fields)
            self.message = f"[green]{action}[/]: " + ", ".join(_describe(e) for e in result["events"])
        except RequestFailed as exc:
            self.message = f"[red]{exc.code}[/]: {exc.message}"
        await self.refresh()

    def toggle(self, key: str) -> str:
        """The action behind a toggle key for the current window status."""
        status = self.state["status"] if self.state else "closed"
        if key == "p":
            return "resume" if status == "paused" else "pause"
        return "open" if status == "closed" else "close"

    def render(self) -> Group:
        view = window_view(self.state, self.client.welcome) if self.state else Panel("loading...")
        return Group(view, Panel(self.message, title="keys"))


async def _interactive(client: Device, console: Console, staff: str | None) -> int:
    if not sys.stdin.isatty():
        console.print("[red]the interactive console needs a terminal; use --do ACTION[/]")
        return 2
    ui = ClerkConsole(client, staff)
    await ui.refresh()
    with Live(ui.render(), console=console, auto_refresh=False) as live:
        async with trio.open_nursery() as nursery, _keys() as keys:
            nursery.start_soon(_follow, ui, live)
            await _key_loop(ui, live, keys)
            nursery.cancel_scope.cancel()
    return 0


async def _key_loop(ui: ClerkConsole, live: Live, keys: trio.abc.ReceiveStream) -> None:
    while True:
        key = (await keys.receive_some(1)).decode(errors="replace")
        if key in ("q", ""):
            return
        if key in KEYS:
            await ui.act(KEYS[key])
        elif key in ("p", "o"):
            await ui.act(ui.toggle(key))
        elif key == "t":
            target = await _read_line(ui, live, keys, "transfer to (service code or window number): ")
            if target:
                await ui.act("transfer", **({"to_window": int(target)} if target.isdigit() else {"service": target}))
        live.update(ui.render(), refresh=True)


async def _read_line(ui: ClerkConsole, live: Live, keys: trio.abc.ReceiveStream, prompt: str) -> str:
    text = ""
    while True:
        ui.message = prompt + text
        live.update(ui.render(), refresh=True)
        char = (await keys.receive_some(1)).decode(errors="replace")
        if char in ("\r", "\n", ""):
            return text.strip()
        if char == "\x1b":
            return ""
        text = text[:-1] if char in ("\x7f", "\b") else text + char


async def _follow(ui: ClerkConsole, live: Live) -> None:
    """Refresh on pushes for this window and every REFRESH_S (the queue grows on its own)."""
    while True:
        with trio.move_on_after(REFRESH_S):
            await ui.client.next_push()
        await ui.refresh()
        live.update(ui.render(), refresh=True)


@asynccontextmanager
async def _keys() -> AsyncIterator[trio.abc.ReceiveStream]:
    """Single keystrokes from the terminal (cbreak mode, restored on exit)."""
    fd = sys.stdin.fileno()
    with _cbreak(fd):
        stream = trio.lowlevel.FdStream(os.dup(fd))
        try:
            yield stream
        finally:
            await stream.aclose()
            os.set_blocking(fd, True)


@contextmanager
def _cbreak(fd: int) -> Iterator[None]:
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def window_view(state: dict[str, Any], welcome: dict[str, Any]) -> Panel:
    """The window panel: status, current citizen, waiting per skill and the next in line."""
    current = state["current"]
    if current:
        called = hall_time(current["called_at"], welcome) if current["called_at"] else "-"
        now = f"[bold]{current['number']}[/] {current['service']} — {current['status']} since {called}, " \
              f"recalls {current['recalls']}"
    else:
        now = "[dim]nobody[/]"
    waiting = Table(show_header=True, box=None)
    waiting.add_column("service")
    waiting.add_column("waiting", justify="right")
    for code, count in state["waiting"].items():
        waiting.add_row(code, str(count))
    upcoming = ", ".join(f"{t['number']} ({t['service']})" for t in state["next"]) or "-"
    clerk = f"   clerk [bold]{state['clerk']}[/]" if state.get("clerk") else ""
    body = Group(f"status [bold]{state['status']}[/]{clerk}   served today {state['served']}   own queue "
                 f"{state['own_queue']}", f"current {now}", f"next    {upcoming}", waiting)
    return Panel(body, title=f"window {state['display']} — zone {state['zone']}, floor {state['floor']}")
