"""``callsys dashboard``: the managers' cockpit in a terminal (rich).

It signs in as a ``manager`` (:func:`callsys.client.connect_device`, subscribed to every
window so that each new connection gets a ``board`` push), asks for the ``cockpit`` on every
(re)connect and follows its ``cockpit_update`` pushes (docs/protocol.md) — the same figures
the manager page draws (:mod:`callsys.cockpit`). A frame shows:

* every floor as a grid: one line per zone — its waiting citizens as a heat bar, then its
  windows as coloured cells (idle, calling, serving, paused, closed);
* the top queues: the services furthest over (or closest to) their target wait;
* the alerts: every service over target, every bad rating today, and the idle windows whose
  services wait; under a service over target, the flow regulator's best suggestion
  (:mod:`callsys.regulator`: which window could take it, and the wait before and after) —
  applied from the manager page or as the manager commands it lists.

On a terminal it redraws in place (rich ``Live``) on each update;
otherwise (a pipe, a test), or with ``--once`` / ``--updates N``, it prints one frame per
update; ``--json`` prints each cockpit as one JSON line instead.
"""

from __future__ import annotations

import argparse
import json
import signal
from contextlib import nullcontext
from typing import Any, AsyncIterable, Final

import trio
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..cli import bounded, command
from ..client import connect_device
from .common import add_connection_args, hall_time, minutes, run_tool, token_for
from .display import _close_on

TOP_QUEUES: Final = 8  # services in the top-queues table by default
ALERTS_SHOWN: Final = 10  # alert lines at most; the rest are counted
HEAT_CELLS: Final = 10  # width of a zone's heat bar (the most crowded zone fills it)
CELL: Final = "■"
STATE_STYLES: Final = {"idle": "bright_cyan", "calling": "bold yellow", "serving": "green", "paused": "magenta",
                       "closed": "grey35"}
STATE_NAMES: Final = {"idle": "空闲 idle", "calling": "叫号 calling", "serving": "办理 serving",
                      "paused": "暂停 paused", "closed": "关闭 closed"}


class Dashboard:
    """The latest cockpit and the hall's layout, as the server sent them.

    Attributes:
        layout: the ``layout`` of the last ``cockpit`` result (None before it).
        cockpit: the latest cockpit (the result, then each ``cockpit_update``).
        welcome: the connection's ``welcome`` (hall name, time zone).
        updates: cockpits received so far (the snapshot counts).
    """

    def __init__(self) -> None:
        self.layout: dict[str, Any] | None = None
        self.cockpit: dict[str, Any] | None = None
        self.welcome: dict[str, Any] = {}
        self.updates = 0

    def snapshot(self, result: dict[str, Any], welcome: dict[str, Any]) -> None:
        """Take a ``cockpit`` result (layout and cockpit)."""
        self.layout = result["layout"]
        self.welcome = welcome
        self.update(result)

    def update(self, cockpit: dict[str, Any]) -> None:
        self.cockpit = cockpit
        self.updates += 1

    def render(self, width: int, top: int = TOP_QUEUES) -> RenderableType:
        """The frame for a console *width* columns wide (see the module docstring)."""
        if self.cockpit is None or self.layout is None:
            return Panel("连接中… Connecting…")
        c = self.cockpit
        name = self.welcome.get("hall_name") or {}
        waiting = sum(s["waiting"] for s in c["services"])
        busy = sum(w["state"] in ("calling", "serving") for w in c["windows"])
        open_ = sum(w["state"] != "closed" for w in c["windows"])
        at = hall_time(c["at"], self.welcome, "%Y-%m-%d %H:%M:%S") if self.welcome else ""
        head = Table.grid(expand=True)
        head.add_column()
        head.add_column(justify="right")
        head.add_row(f"[bold]{escape(name.get('zh', ''))}[/] {escape(name.get('en', ''))}", at)
        head.add_row(f"等候 {waiting} waiting · 忙碌/开放 {busy}/{open_} busy/open windows · "
                     f"告警 {len(c['alerts'])} alerts", "")
        head.add_row(_legend(), "")
        parts: list[RenderableType] = [Panel(head, style="bold white on blue")]
        parts.extend(self.floor_panels(width))
        side = Table.grid(expand=True, padding=(0, 1))
        side.add_column(ratio=1)
        side.add_column(ratio=1)
        side.add_row(self.queues_table(top), self.alerts_table())
        parts.append(side)
        return Group(*parts)

    def floor_panels(self, width: int) -> list[Panel]:
        """One panel per floor: a line per zone with its heat bar and its windows' cells."""
        assert self.layout is not None and self.cockpit is not None
        c = self.cockpit
        heat = {z["zone"]: z for z in c["zones"]}
        most = max([1.0, *(z["waiting"] for z in c["zones"])])
        windows = {w["window"]: w for w in c["windows"]}
        by_zone: dict[str, list[dict[str, Any]]] = {}
        for w in sorted(self.layout["windows"], key=lambda w: (w["y"], w["x"], w["window"])):
            by_zone.setdefault(w["zone"], []).append(w)
        panels = []
        for floor in self.layout["floors"]:
            grid = Table.grid(padding=(0, 1))
            grid.add_column(no_wrap=True)  # zone
            grid.add_column(no_wrap=True, justify="right")  # waiting
            grid.add_column(no_wrap=True)  # heat bar
            grid.add_column()  # window cells (wrap on a narrow console)
            for zone in (z for z in self.layout["zones"] if z["floor"] == floor["floor"]):
                z = heat[zone["id"]]
                filled = round(HEAT_CELLS * z["waiting"] / most)
                bar = Text("█" * filled, style=_heat_style(z["waiting"] / most))
                bar.append("░" * (HEAT_CELLS - filled), style="grey23")
                cells = Text()
                for placed in by_zone.get(zone["id"], ()):
                    w = windows[placed["window"]]
                    cells.append(CELL, style=STATE_STYLES[w["state"]])
                grid.add_row(escape(zone["name"].get("zh", zone["id"])), f"{z['waiting']:.0f}", bar, cells)
            title = f"{floor['name'].get('zh', '')} {floor['name'].get('en', '')}"
            panels.append(Panel(grid, title=escape(title), title_align="left"))
        return panels

    def queues_table(self, top: int) -> Table:
        """The *top* services by estimated wait against target (the over-target ones first)."""
        assert self.cockpit is not None
        table = Table(title="排队最长 Top queues", expand=True, title_style="bold")
        table.add_column("业务 Service")
        table.add_column("等候 Waiting", justify="right")
        table.add_column("预计/目标 Est./target", justify="right")
        table.add_column("窗口 Open", justify="right")

        def pressure(s: dict[str, Any]) -> tuple[bool, float, int]:
            ratio = (s["estimated_wait_s"] or 0.0) / s["target_wait_s"]
            return s["over_target"], ratio, s["waiting"]

        ranked = sorted((s for s in self.cockpit["services"] if s["waiting"]), key=pressure, reverse=True)[:top]
        for s in ranked:
            table.add_row(s["code"], str(s["waiting"]),
                          f"{minutes(s['estimated_wait_s'])} / {minutes(s['target_wait_s'])}",
                          str(s["windows_open"]), style="bold red" if s["over_target"] else None)
        if not ranked:
            table.add_row("[dim]无人等候 Nobody waiting[/]", "", "", "")
        return table

    def alerts_table(self) -> Table:
        """Over-target services and bad ratings first, then idle windows, at most ALERTS_SHOWN lines."""
        assert self.cockpit is not None
        alerts = self.cockpit["alerts"]
        ordered = [a for a in alerts if a["kind"] != "idle_window"] + [a for a in alerts if a["kind"] == "idle_window"]
        table = Table(title="告警 Alerts", expand=True, title_style="bold", show_header=False)
        table.add_column()
        for a in ordered[:ALERTS_SHOWN]:
            if a["kind"] == "over_target":
                table.add_row(Text(f"{a['service']}: 预计 {minutes(a['estimated_wait_s'])} > 目标 "
                                   f"{minutes(a['target_wait_s'])} target · {a['waiting']} waiting", style="red"))
                best = (self.cockpit.get("suggestions") or {}).get(a["id"]) or []
                if best:
                    table.add_row(Text(f"  → {suggestion_line(best[0])}", style="green"))
            elif a["kind"] == "bad_rating":
                score = f" · {a['score']}/5" if a["score"] else ""
                table.add_row(Text(f"差评 bad rating: {a['number'] or a['ticket']} · 窗口 window {a['window']}{score}",
                                   style="magenta"))
            else:
                waits = ", ".join(a["services"]) or "own queue"
                table.add_row(Text(f"窗口 window {a['window']} 空闲 idle · {waits} wait ({a['waiting']})",
                                   style="yellow"))
        if len(ordered) > ALERTS_SHOWN:
            table.add_row(Text(f"… +{len(ordered) - ALERTS_SHOWN} more", style="dim"))
        if not ordered:
            table.add_row("[dim]无告警 No alerts[/]")
        return table


def suggestion_line(s: dict[str, Any]) -> str:
    """One line for a flow-regulation suggestion (docs/protocol.md, ``suggestions``)."""
    act = "开窗 open" if s["action"] == "open" else "兼办 also takes"
    return (f"窗口 window {s['window']} {act} {s['service']} · "
            f"{minutes(s.get('wait_before_s'))} → {minutes(s.get('wait_after_s'))}")


def _legend() -> Text:
    legend = Text()
    for state, style in STATE_STYLES.items():
        legend.append(f"{CELL} ", style=style)
        legend.append(f"{STATE_NAMES[state]}  ")
    return legend


def _heat_style(share: float) -> str:
    return "red" if share > 0.66 else "yellow" if share > 0.33 else "cyan"


# ---------------------------------------------------------------------- the command


@command("dashboard", help="the managers' cockpit in the terminal: floors, heat by zone, top queues, alerts")
def _dashboard_args(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Watch the whole hall as a manager: every floor as a grid (a line per zone: its waiting citizens "
        "as a heat bar, its windows as cells coloured idle / calling / serving / paused / closed), the "
        "services furthest over their target wait, and the alerts (a service whose predicted wait passes "
        "its target, an idle window while its services wait). Live from the server's cockpit pushes; it "
        "reconnects by itself. Uses a manager token (default: the first of --config). Not on a terminal, "
        "or with --once / --updates N, it prints a frame per update; --json prints each cockpit as JSON.")
    add_connection_args(p)
    p.add_argument("--once", action="store_true", help="print the first frame and exit")
    p.add_argument("--updates", type=bounded(int, 1), metavar="N",
                   help="print a frame for the snapshot and each update, N frames in all, then exit")
    p.add_argument("--top", type=bounded(int, 1), default=TOP_QUEUES,
                   help="services in the top-queues table (default: %(default)s)")
    p.set_defaults(run=_dashboard)


def _dashboard(args: argparse.Namespace) -> int:
    console = Console()
    token = token_for(args, "manager")
    frames = 1 if args.once else args.updates

    async def main() -> int:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            await run_dashboard(args.url, token=token, console=console, fmt=args.fmt, frames=frames,
                                as_json=args.json, top=args.top, stop_on=signals)
        return 0

    return run_tool(main, console)


async def run_dashboard(url: str, *, token: str, console: Console, fmt: str = "msgpack", frames: int | None = None,
                        as_json: bool = False, top: int = TOP_QUEUES,
                        stop_on: AsyncIterable[Any] | None = None) -> Dashboard:
    """Show the cockpit on *console* until *frames* frames were printed, *stop_on* yields, or cancelled.

    Args:
        url: the server's WebSocket URL.
        token: a manager token.
        console: where to draw.
        fmt: the wire format.
        frames: stop after printing this many frames (None: never).
        as_json: print each cockpit as one JSON line instead of a frame.
        top: rows of the top-queues table.
        stop_on: when it yields (e.g. a signal receiver), close the connection and return.

    Returns:
        The dashboard as last drawn.

    Raises:
        ConnectionLost: the server could not be reached the first time.
        RequestFailed: it refused the hello (e.g. a wrong token).
    """
    dashboard = Dashboard()
    async with connect_device(url, role="manager", token=token, subscribe={"all": True}, fmt=fmt) as device:
        async with trio.open_nursery() as nursery:
            if stop_on is not None:
                nursery.start_soon(_close_on, stop_on, device, nursery.cancel_scope)
            live = frames is None and not as_json and console.is_terminal
            printed = 0
            with Live(console=console, screen=True, auto_refresh=False) if live else nullcontext() as screen:
                async for push in device.pushes():
                    if push["type"] == "board":  # a new connection: (re)take the cockpit and follow it
                        dashboard.snapshot(await device.request("cockpit"), device.welcome)
                    elif push["type"] == "cockpit_update" and dashboard.layout is not None:
                        dashboard.update(push)
                    else:
                        continue
                    if live:
                        screen.update(dashboard.render(console.width, top), refresh=True)
                        continue
                    if as_json:
                        console.file.write(json.dumps(dashboard.cockpit, ensure_ascii=False) + "\n")
                        console.file.flush()
                    else:
                        console.print(dashboard.render(console.width, top))
                    printed += 1
                    if frames is not None and printed >= frames:
                        break
            nursery.cancel_scope.cancel()
    if device.failure is not None:
        raise device.failure
    return dashboard

