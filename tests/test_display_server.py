"""``callsys display`` against a real server: a call reaches the screen, and after a server
restart (same store, same port) the screen comes back by itself and shows the next call."""

from __future__ import annotations

import io
from functools import partial

import pytest
import trio
from rich.console import Console

from callsys.client import RequestFailed, connect_device
from callsys.tools.display import Screen, Target, run_display
from server_support import TOKENS, client, guard, server  # noqa: F401  (fixture)
from test_client_tools import tool, tool_json
from test_server_keys import serve_once

SOCIAL = Target("zone", "social", "社会事务区 Social affairs")


async def _take(server, *services: str) -> None:
    async with client(server, "kiosk") as kiosk:
        for service in services:
            await kiosk.request("take_number", service=service)


async def _call_next(server, window: int, *, open_first: bool = False) -> str:
    async with client(server, "clerk", window=window) as clerk:
        if open_first:
            await clerk.request("open_window")
        result = await clerk.request("call_next")
    (called,) = [e for e in result["events"] if e["kind"] == "ticket_called"]
    return called["number"]


@guard()
async def test_the_zone_board_shows_calls_and_rides_out_a_server_restart(nursery, demo_hall, tmp_path):
    store = tmp_path / "hall.db"
    first, stopped = await serve_once(nursery, demo_hall, store)
    await _take(first, "SOC", "SOC", "MED")
    console = Console(file=io.StringIO(), width=120)
    async with trio.open_nursery() as shown:
        screen: Screen = await shown.start(partial(run_display, first.url, SOCIAL, token=TOKENS["display"],
                                                   console=console))
        await screen.wait_for(lambda m: m.synced)
        assert await _call_next(first, 7, open_first=True) == "C001"
        await screen.wait_for(lambda m: bool(m.calls) and m.calls[0].number == "C001")
        out = console.file.getvalue()
        assert "C001" in out and "7 号窗口 Window 7" in out and "请前往 Please go" in out

        first.shutdown()
        await stopped.wait()
        second, _ = await serve_once(nursery, demo_hall, store, port=first.port)
        await screen.wait_for(lambda m: m.syncs == 2)  # reconnected by itself, fresh board
        seen = len(console.file.getvalue())
        assert await _call_next(second, 8, open_first=True) == "C002"
        await screen.wait_for(lambda m: m.calls[0].number == "C002")
        top = screen.model.highlighted(screen.now())
        assert top is not None and top.number == "C002"  # a live call after the restart, blinking
        after = console.file.getvalue()[seen:]
        assert "C002" in after and "8 号窗口 Window 8" in after and "C001" in after
        shown.cancel_scope.cancel()
    second.shutdown()


@guard()
async def test_the_led_strip_shows_its_windows_call(server):
    await _take(server, "SOC")
    console = Console(file=io.StringIO(), width=100)
    async with trio.open_nursery() as shown:
        screen = await shown.start(partial(run_display, server.url, Target("window", 9, "9 号窗口 Window 9"),
                                           token=TOKENS["display"], console=console))
        await screen.wait_for(lambda m: m.synced)
        assert await _call_next(server, 9, open_first=True) == "C001"
        await screen.wait_for(lambda m: m.led(9, screen.now()).number == "C001")
        assert screen.model.led(9, screen.now()).blink
        assert "请 C001 号到 9 号窗口" in console.file.getvalue()
        shown.cancel_scope.cancel()


async def test_display_once_prints_one_frame_of_the_zone(server):
    await _take(server, "SOC")
    await _call_next(server, 10, open_first=True)
    code, out = await tool(server, "display", "--zone", "social", "--once")
    assert code == 0
    assert "演示政务服务大厅" in out and "社会事务区 Social affairs" in out  # names from the hall file
    assert "C001" in out and "10 号窗口 Window 10" in out
    assert out.count("最近叫号 Recent calls") == 1


async def test_display_json_frames_of_a_floor(server):
    code, frame = await tool_json(server, "display", "--floor", "1", "--frames", "1")
    assert code == 0 and frame["calls"] == []
    assert [w["window"] for w in frame["windows"]] == list(range(1, 11))


async def test_display_of_an_unknown_zone_fails_clearly(server):
    code, out = await tool(server, "display", "--zone", "nowhere", "--once")
    assert code == 1 and "invalid_field" in out and "nowhere" in out


@guard()
async def test_a_refused_first_connection_raises_the_servers_error_itself(server):
    # connect_device raised it wrapped in an ExceptionGroup, so the tools printed a traceback
    with pytest.raises(RequestFailed) as refused:
        async with connect_device(server.url, role="display", token=TOKENS["display"],
                                  subscribe={"zones": ["nowhere"]}):
            pass
    assert refused.value.code == "invalid_field"
