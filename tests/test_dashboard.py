"""``callsys dashboard`` against a real server: the cockpit's floors, heat, top queues and
alerts in the terminal, updating as citizens take numbers and clerks call."""

from __future__ import annotations

import io
import json

import trio
from rich.console import Console

from callsys.tools.dashboard import run_dashboard
from server_support import TOKENS, client, guard, hang_guard, server  # noqa: F401  (fixture)
from test_client_tools import tool
from test_server_regulation import crowd_med


async def _followed(server) -> None:
    """Until the dashboard follows the cockpit (its snapshot is printed by then or next)."""
    with hang_guard():
        while not server.hub.cockpits:
            await trio.lowlevel.checkpoint()


@guard()
async def test_dashboard_frames_follow_the_hall(server):
    out = io.StringIO()
    console = Console(file=out, width=140, force_terminal=False, color_system=None)
    async with trio.open_nursery() as nursery:
        done = trio.Event()

        async def watch() -> None:
            nursery.dashboard = await run_dashboard(server.url, token=TOKENS["manager"], console=console, frames=3)
            done.set()

        nursery.start_soon(watch)
        await _followed(server)
        async with client(server, "kiosk") as kiosk:
            for _ in range(5):
                await kiosk.request("take_number", service="CIVIL")  # one window (10), 12 min each
        await trio.lowlevel.checkpoint()
        async with client(server, "clerk", window=10) as clerk:
            await clerk.request("open_window")
        await done.wait()
    text = out.getvalue()
    frames = text.split("演示政务服务大厅")[1:]
    assert len(frames) == 3
    first, last = frames[0], frames[-1]
    assert "一楼 Floor 1" in first and "综合受理区" in first and "社会事务区" in first  # floors and zones
    assert "无人等候" in first and "No alerts" in first
    assert "CIVIL" in last and "等候 5 waiting" in last
    assert "CIVIL: 预计" in last and "target · 5 waiting" in last  # over its 20 min target
    assert "window 10 空闲 idle · CIVIL wait (5)" in last
    assert "社会事务区 5 ██████████" in last  # window 10 is CIVIL's one open window: all five stand there
    assert nursery.dashboard.updates == 3
    assert not server.hub.cockpits  # it stopped following when it closed


@guard(120)
async def test_dashboard_once_and_json_from_the_command_line(server):
    async with client(server, "kiosk") as kiosk:
        await kiosk.request("take_number", service="SOC")
    code, out = await tool(server, "dashboard", "--once")
    assert code == 0, out
    assert "Top queues" in out and "SOC" in out and "Alerts" in out and "社会事务区" in out
    code, out = await tool(server, "dashboard", "--updates", "1", "--json")
    assert code == 0
    cockpit = json.loads(out)
    assert {s["code"]: s["waiting"] for s in cockpit["services"]}["SOC"] == 1
    assert "layout" in cockpit


@guard(60)
async def test_dashboard_with_a_wrong_token_fails_in_one_line(server):
    code, out = await tool(server, "dashboard", "--once", "--token", "not-a-manager-token")
    assert code == 1 and out.strip().count("\n") == 0 and "unauthorized" in out


@guard()
async def test_dashboard_shows_the_regulators_best_suggestion_under_a_service_over_target(server):
    async with client(server, "kiosk") as kiosk, client(server, "clerk", window=7) as clerk7, \
            client(server, "clerk", window=10) as clerk10:
        await crowd_med(kiosk, clerk7, clerk10)
        out = io.StringIO()
        console = Console(file=out, width=140, force_terminal=False, color_system=None)
        await run_dashboard(server.url, token=TOKENS["manager"], console=console, frames=1)
    text = out.getvalue()
    assert "MED: 预计" in text  # over its target
    assert "→ 窗口 window 10 兼办 also takes MED · ~" in text  # window 10 (CIVIL, SOC) could take MED
