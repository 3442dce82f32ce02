"""``callsys display``: hall screens in the terminal, for the small Linux boxes behind TVs and LEDs.

* ``--zone Z`` / ``--floor F``: a full-screen board — hall name and hall clock, the last calls
  (number → window, newest first, the newest blinking for a few seconds), waiting and
  estimated wait per service, and the status of every window, Chinese first with English;
* ``--window N``: a window's two-line LED strip — the window and its number in a big
  dot-matrix font, a short text below, blinking on a call or recall.

The screen is a display connection (:func:`callsys.client.connect_device`): it reconnects by
itself and redraws from the fresh ``board`` after a server restart. What it shows is decided
by the pure :class:`~callsys.tools.display_model.DisplayModel`; this module only draws it.
On a terminal it draws in place (rich ``Live``) on every change (at most one frame per
``MIN_FRAME_S``, as a floor board of 150 windows takes ~30 ms to draw), at each blink phase
and at each second of the hall clock. Otherwise (a pipe, a log, a test) it prints a frame
whenever what it shows changes. ``--once`` prints the first frame and exits, ``--frames N``
the first N; ``--json`` prints frames as JSON lines.
"""

from __future__ import annotations

import argparse
import json
import signal
from dataclasses import dataclass
from typing import Any, AsyncIterable, Callable, Final

import trio
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..cli import bounded, command
from ..client import Device, connect_device
from ..errors import CallsysError
from ..hall import load_hall
from .common import add_connection_args, minutes, run_tool, token_for
from .display_model import MAX_CALLS, DisplayModel, LedView
from .ledfont import big_lines, width_of

MIN_FRAME_S: Final = 0.1  # seconds between two redraws at least, however fast pushes come (<= 10 frames/s)
CLOCK_REFRESH_S: Final = 1.0  # seconds between redraws of a quiet screen (its hall clock's seconds)
BLINK_S: Final = 0.5  # seconds per blink phase
MAX_LED_SCALE: Final = 4  # the LED font grows with the terminal up to this many cells per dot
SIDE_BY_SIDE_COLUMNS: Final = 120  # from this console width, calls and services stand side by side

_WEEKDAYS: Final = "一二三四五六日"
_STAGES: Final = {"called": "[bold]请前往 Please go[/]", "serving": "办理中 Serving", None: "[dim]已过 Past[/]"}
_STATUS: Final = {"open": ("空闲 idle", "green"), "paused": ("暂停 paused", "yellow"), "closed": ("关闭 closed", "dim")}


@dataclass(frozen=True, slots=True)
class Target:
    """What a screen shows: a zone, a floor or one window.

    Attributes:
        kind: ``"zone"``, ``"floor"`` or ``"window"``; ``value``: its id or number.
        place: its name for the title (Chinese first), e.g. ``社会事务区 Social affairs``.
    """

    kind: str
    value: str | int
    place: str = ""

    def subscribe(self) -> dict[str, list[Any]]:
        """The display's subscription."""
        return {f"{self.kind}s": [self.value]}


@command("display", help="a hall screen in the terminal: a zone or floor board, or a window's LED strip")
def _display_args(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Show a hall screen in the terminal. --zone Z or --floor F: a full-screen board with the hall "
        "clock, the last calls (newest first, blinking), waiting and estimated wait per service and the "
        "windows' status. --window N: the window's two-line LED strip. It reconnects by itself and "
        "resyncs after a server restart; Ctrl-C or SIGTERM closes it. The hall file (--config) supplies "
        "the default display token and the zone and floor names. Not on a terminal (or with --once, "
        "--frames N), it prints a frame on every change; --json prints each frame as one JSON line.")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--zone", help="show the board of this zone (a zone id of the hall file)")
    target.add_argument("--floor", type=int, help="show the board of every window on this floor")
    target.add_argument("--window", type=int, help="show this window's LED strip")
    add_connection_args(p)
    p.add_argument("--once", action="store_true", help="print the first frame (after the first board) and exit")
    p.add_argument("--frames", type=bounded(int, 1), metavar="N", help="print a frame on each of the first N changes and exit")
    p.add_argument("--calls", type=bounded(int, 1), default=MAX_CALLS, help="rows in the call list (default: %(default)s)")
    p.set_defaults(run=_display)


def _display(args: argparse.Namespace) -> int:
    console = Console()
    token = token_for(args, "display")
    target = target_of(args)
    frames = 1 if args.once else args.frames

    async def main() -> int:
        # Ctrl-C, or SIGTERM from a service manager, closes the connection cleanly and exits
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            await run_display(args.url, target, token=token, console=console, fmt=args.fmt, frames=frames,
                              as_json=args.json, max_calls=args.calls, stop_on=signals)
        return 0

    return run_tool(main, console)


def target_of(args: argparse.Namespace) -> Target:
    """The :class:`Target` of ``--zone``/``--floor``/``--window``, named from the hall file if it loads."""
    kind = "zone" if args.zone is not None else "floor" if args.floor is not None else "window"
    value = getattr(args, kind)
    if kind == "window":
        return Target(kind, value, f"{value} 号窗口 Window {value}")
    names = {}
    try:
        hall = load_hall(args.config)
        names = {("zone", z.id): z.name for z in hall.zones} | {("floor", f.number): f.name for f in hall.floors}
    except CallsysError:
        pass  # another hall's server: show the id
    name = names.get((kind, value))
    place = f"{name.zh} {name.en}" if name is not None else (value if kind == "zone" else f"{value} 楼 Floor {value}")
    return Target(kind, value, place)


# ---------------------------------------------------------------------- running


class Screen:
    """One screen: its :class:`DisplayModel` fed from a device's pushes, drawn with rich.

    Args:
        target: what it shows.
        model: the view model it feeds.
        now: the monotonic clock (seconds) the model's times are taken from.
    """

    def __init__(self, target: Target, model: DisplayModel, *, now: Callable[[], float] = trio.current_time) -> None:
        self.target = target
        self.model = model
        self.now = now
        self.version = 0  # views changed so far
        self._welcome: dict[str, Any] | None = None
        self._changed = trio.Event()

    def feed(self, push: dict[str, Any], welcome: dict[str, Any]) -> bool:
        """Fold *push*, taking *welcome* first when it is a new connection's; True if the view changed."""
        now = self.now()
        if welcome is not self._welcome and welcome:
            self._welcome = welcome
            self.model.welcome(welcome, now)
        changed = self.model.apply(push, now)
        if changed:
            self.version += 1
            self._changed.set()
            self._changed = trio.Event()
        return changed

    async def changed(self) -> None:
        """Wait until the next push that changes the view."""
        await self._changed.wait()

    async def wait_for(self, predicate: Callable[[DisplayModel], bool]) -> None:
        """Wait until *predicate* holds for the model."""
        while not predicate(self.model):
            await self.changed()

    def redraw_in(self) -> float:
        """Seconds until the view changes without a push: the next blink phase while something
        blinks, else the hall clock's next second (at most ``CLOCK_REFRESH_S``)."""
        now = self.now()
        model = self.model
        if self.target.kind == "window":
            led = model.led(int(self.target.value), now)
            blinking = led is not None and led.blink
        else:
            blinking = model.highlighted(now) is not None
        if blinking:
            return BLINK_S - now % BLINK_S
        if model.clock is None or model.clock.clock_speed != 1.0:
            return CLOCK_REFRESH_S
        return 1.0 - model.clock.at(now) % 1.0

    def render(self, width: int) -> RenderableType:
        """The frame at this moment, for a console *width* columns wide."""
        now = self.now()
        if self.target.kind == "window":
            return led_panel(self.model.led(int(self.target.value), now), self.target, width, now)
        return board_view(self.model, self.target, now, width)


async def run_display(url: str, target: Target, *, token: str, console: Console, fmt: str = "msgpack",
                      frames: int | None = None, as_json: bool = False, max_calls: int = MAX_CALLS,
                      stop_on: AsyncIterable[Any] | None = None,
                      task_status: trio.TaskStatus[Screen] = trio.TASK_STATUS_IGNORED) -> None:
    """Show *target* on *console* until *frames* frames were printed, *stop_on* yields, or cancelled.

    On a terminal (and without *frames* or *as_json*) it redraws in place; otherwise it prints
    a frame (JSON with *as_json*) whenever the view changes, the first after the first board.

    Args:
        url: the server's WebSocket URL.
        target: the zone, floor or window shown.
        token: a display token.
        console: where to draw.
        fmt: the wire format.
        frames: stop after printing this many frames (None: never).
        as_json: print each frame as one JSON line of the view model's snapshot.
        max_calls: rows of the call list.
        stop_on: when it yields (e.g. a signal receiver), close the connection and return.
        task_status: started with the :class:`Screen` once the first connection is up.

    Raises:
        ConnectionLost: the server could not be reached the first time.
        RequestFailed: it refused the hello (a wrong token, an unknown zone, floor or window).
        ClientError: the server closed the connection for good later (e.g. the token was revoked).
    """
    async with connect_device(url, role="display", token=token, subscribe=target.subscribe(), fmt=fmt) as device:
        screen = Screen(target, DisplayModel(max_calls=max_calls))
        task_status.started(screen)
        async with trio.open_nursery() as nursery:
            if stop_on is not None:
                nursery.start_soon(_close_on, stop_on, device, nursery.cancel_scope)
            if frames is None and not as_json and console.is_terminal:
                await _live(screen, device, console)
            else:
                await _print(screen, device, console, frames, as_json)
            nursery.cancel_scope.cancel()
    if device.failure is not None:
        raise device.failure


async def _close_on(stop_on: AsyncIterable[Any], device: Device, scope: trio.CancelScope) -> None:
    """When *stop_on* yields: close *device* with a clean handshake, then cancel *scope*."""
    async for _ in stop_on:
        await device.aclose()  # before cancelling: the close handshake needs the connection's tasks
        scope.cancel()
        return


async def _print(screen: Screen, device: Device, console: Console, frames: int | None, as_json: bool) -> None:
    printed = 0
    async for push in device.pushes():
        if screen.feed(push, device.welcome) and screen.model.synced:
            if as_json:
                console.file.write(json.dumps(screen.model.snapshot(screen.now()), ensure_ascii=False) + "\n")
                console.file.flush()
            else:
                console.print(screen.render(console.width))
            printed += 1
            if frames is not None and printed >= frames:
                return


async def _live(screen: Screen, device: Device, console: Console) -> None:
    with Live(console=console, screen=True, auto_refresh=False) as live:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_redraw, screen, live, console)
            async for push in device.pushes():
                screen.feed(push, device.welcome)
            nursery.cancel_scope.cancel()


async def _redraw(screen: Screen, live: Live, console: Console) -> None:
    """Redraw on every change (at most one frame per MIN_FRAME_S), each blink phase and
    each second of the hall clock."""
    while True:
        drawn = screen.version
        live.update(screen.render(console.width), refresh=True)
        due = trio.current_time() + max(MIN_FRAME_S, screen.redraw_in())
        await trio.sleep(MIN_FRAME_S)
        if screen.version == drawn:
            with trio.move_on_at(due):
                await screen.changed()


# ---------------------------------------------------------------------- drawing


def _blink_on(now: float) -> bool:
    return int(now / BLINK_S) % 2 == 0


def board_view(model: DisplayModel, target: Target, now: float, width: int) -> RenderableType:
    """The zone/floor board: header, calls and services (side by side on a wide screen), windows."""
    if not model.synced:
        return Panel("连接中… Connecting…", title=escape(target.place))
    top = [header(model, target, now), *([calling_banner(model, now)] if model.calls else [])]
    calls, services = calls_table(model, now), services_table(model)
    if width < SIDE_BY_SIDE_COLUMNS:
        return Group(*top, calls, services, windows_panel(model))
    body = Table.grid(expand=True, padding=(0, 1))
    body.add_column(ratio=3)
    body.add_column(ratio=2)
    body.add_row(calls, services)
    return Group(*top, body, windows_panel(model))


def calling_banner(model: DisplayModel, now: float) -> Panel:
    """The newest call in the LED font, readable across the hall: ``A023 → 15``."""
    call = model.calls[0]
    fresh = model.highlighted(now) is call
    colour = ("bright_yellow" if _blink_on(now) else "bright_red") if fresh else "red"
    grid = Table.grid(padding=(0, 3))
    grid.add_row(Text("\n".join(big_lines(call.number)), style=f"bold {colour}", no_wrap=True),
                 Text("\n请到\nplease go to", justify="center"),
                 Text("\n".join(big_lines(call.display)), style=f"bold {colour}", no_wrap=True),
                 Text("\n号窗口\nwindow"))
    return Panel(grid, title="正在呼叫 Now calling", title_align="left", style="on black")


def header(model: DisplayModel, target: Target, now: float) -> Panel:
    """Hall name and place on the left, the hall clock and date on the right."""
    name = {k: escape(v) for k, v in model.hall_name.items()}
    grid = Table.grid(expand=True)
    grid.add_column()
    grid.add_column(justify="right")
    at = model.hall_time(now)
    grid.add_row(f"[bold]{name.get('zh', '')}[/] {name.get('en', '')}", f"[bold]{at:%H:%M:%S}[/]" if at else "")
    grid.add_row(escape(target.place), f"{at:%Y-%m-%d} 周{_WEEKDAYS[at.weekday()]} {at:%a}" if at else "")
    return Panel(grid, style="bold white on blue")


def calls_table(model: DisplayModel, now: float) -> Table:
    """The last calls, newest first (blinking while fresh), with their stage at the window."""
    table = Table(title="最近叫号 Recent calls", expand=True, title_style="bold")
    table.add_column("号码 Number", style="bold")
    table.add_column("窗口 Window")
    table.add_column("", justify="right")
    top = model.highlighted(now)
    for call in model.calls:
        recall = f"  第{call.recalls + 1}次 call {call.recalls + 1}" if call.recalls else ""
        style = ("bold black on yellow" if _blink_on(now) else "bold yellow") if call is top else None
        table.add_row(Text(call.number, style="bold"), Text(f"{call.display} 号窗口 Window {call.display}"),
                      _STAGES[model.stage_of(call)] + recall, style=style)
    if not model.calls:
        table.add_row("[dim]—[/]", "[dim]暂无叫号 No calls yet[/]", "")
    return table


def services_table(model: DisplayModel) -> Table:
    """Waiting and estimated wait per service of the screen's windows."""
    table = Table(title="等候 Waiting", expand=True, title_style="bold")
    table.add_column("业务 Service")
    table.add_column("等候 Waiting", justify="right")
    table.add_column("预计 Est. wait", justify="right")
    for s in model.service_rows():
        name = s.get("name", {})
        table.add_row(Text(f"{name.get('zh', s['code'])} {name.get('en', '')}"), str(s.get("waiting", "-")),
                      minutes(s.get("estimated_wait_s")))
    if not model.services:
        table.add_row("[dim]暂无 Not available[/]", "", "")
    return table


def windows_panel(model: DisplayModel) -> Panel:
    """Every window in one compact line: its number and its citizen, idle, paused or closed."""
    cells = []
    for w in model.window_rows():
        text, colour = _STATUS.get(w["status"], (w["status"], "white"))
        if w.get("number") and w["status"] != "closed":
            text = w["number"]
        cells.append(f"[{colour}]{escape(str(w['display']))} {escape(text)}[/]")
    return Panel("   ".join(cells) or "—", title="窗口 Windows", title_align="left")


def led_panel(led: LedView | None, target: Target, width: int, now: float) -> Panel:
    """The window's two-line LED strip: big red dots above, the short text below."""
    if led is None:
        return Panel("连接中… Connecting…", title=escape(target.place))
    title = escape(f"{led.display} 号窗口 Window {led.display}")
    scale = max(1, min(MAX_LED_SCALE, (width - 4) // max(1, width_of(led.line1))))
    colour = ("bright_yellow" if _blink_on(now) else "bright_red") if led.blink else "bright_red"
    big = Text("\n".join(big_lines(led.line1, scale)), style=f"bold {colour}", no_wrap=True, overflow="crop")
    return Panel(Group(big, Text(led.line2, style=f"bold {colour}")), title=title, style="on black", expand=False)
