"""``callsys kiosk``: a ticket machine in the terminal.

Interactive: lists the services with their queues, asks for one, prints the ticket (number,
people ahead, estimated wait, and the phone secret to follow it). ``--service CODE`` takes
one ticket and exits (for scripts and tests).
"""

from __future__ import annotations

import argparse
from typing import Any

import trio
from rich.console import Console
from rich.panel import Panel
from rich.prompt import Prompt
from rich.table import Table

from ..cli import command
from ..client import Device, RequestFailed, connect_device
from .common import add_connection_args, hall_time, minutes, print_json, run_tool, token_for


@command("kiosk", help="take numbers like a ticket machine (interactive, or --service CODE)")
def _kiosk_args(p: argparse.ArgumentParser) -> None:
    add_connection_args(p)
    p.add_argument("--service", help="take one ticket for this service code and exit")
    p.add_argument("--channel", default="kiosk", choices=("kiosk", "qr"), help="ticket channel")
    p.add_argument("--green", action="store_true", help="green channel (elderly, disabled, pregnant)")
    p.set_defaults(run=_kiosk)


def _kiosk(args: argparse.Namespace) -> int:
    console = Console()
    token = token_for(args, "kiosk")

    async def main() -> int:
        async with connect_device(args.url, role="kiosk", token=token, fmt=args.fmt) as client:
            if args.service:
                return await _take(client, args.service, args, console)
            return await _interactive(client, args, console)

    return run_tool(main, console)


async def _take(client: Device, service: str, args: argparse.Namespace, console: Console) -> int:
    try:
        ticket = await client.request("take_number", service=service, channel=args.channel, green=args.green)
    except RequestFailed as exc:
        if args.json:
            print_json({"error": exc.code, "message": exc.message, "details": exc.details})
        else:
            console.print(f"[red]{exc.code}[/]: {exc.message}")
        return 1
    if args.json:
        print_json(ticket)
    else:
        console.print(ticket_panel(ticket, client.welcome))
    return 0


async def _interactive(client: Device, args: argparse.Namespace, console: Console) -> int:
    while True:
        services = (await client.request("services"))["services"]
        console.print(services_table(services, client.welcome))
        codes = [s["code"] for s in services]
        choice = await trio.to_thread.run_sync(
            lambda: Prompt.ask("Service number or code (q to quit)", console=console))
        choice = choice.strip()
        if choice.lower() in ("q", "quit", ""):
            return 0
        code = codes[int(choice) - 1] if choice.isdigit() and 0 < int(choice) <= len(codes) else choice
        await _take(client, code, args, console)


def services_table(services: list[dict[str, Any]], welcome: dict[str, Any]) -> Table:
    name = welcome.get("hall_name", {})
    table = Table(title=f"{name.get('zh', '')} {name.get('en', '')} — choose a service")
    for col in ("#", "code", "service", "waiting", "windows", "est. wait"):
        table.add_column(col, justify="right" if col in ("#", "waiting", "windows") else "left")
    for i, s in enumerate(services, 1):
        table.add_row(str(i), s["code"], f"{s['name']['zh']} {s['name']['en']}", str(s["waiting"]),
                      str(s["windows_open"]), minutes(s["estimated_wait_s"]))
    return table


def ticket_panel(ticket: dict[str, Any], welcome: dict[str, Any]) -> Panel:
    issued = hall_time(ticket["issued_at"], welcome, "%Y-%m-%d %H:%M:%S")
    body = (f"[bold]{ticket['number']}[/]\n\n"
            f"service  {ticket['service']}\n"
            f"ahead    {ticket['ahead']}\n"
            f"wait     {minutes(ticket['estimated_wait_s'])}\n"
            f"issued   {issued}\n"
            f"[dim]follow on your phone: ticket {ticket['ticket']} secret {ticket['secret']}[/]")
    title = welcome.get("hall_name", {}).get("zh", "")
    return Panel(body, title=title, expand=False)
