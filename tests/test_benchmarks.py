"""The benchmarks still run (tiny sizes; figures are not checked here — speed lives in benchmarks/)."""

from __future__ import annotations

import json
import subprocess
import sys

import trio
from trio_websocket import open_websocket_url

from benchmarks import autobahn_echo, recovery


def test_engine_benchmark_prints_its_json_rows():
    out = subprocess.run([sys.executable, "-m", "benchmarks.engine", "--json", "--repeat", "1"],
                         capture_output=True, text=True, check=True).stdout
    rows = json.loads(out)
    assert [r["metric"] for r in rows] == ["take_per_s", "take_keyed_per_s", "call_per_s"]
    assert all(r["value"] > 0 and r["unit"] == "ops/s" for r in rows)
    assert [r["target"] for r in rows] == [">= 100000", None, ">= 100000"]


async def test_recovery_benchmark_rebuilds_a_small_day():
    rows = {r["metric"]: r for r in await recovery.run("config/demo.toml", 400)}
    assert rows["events"]["value"] > 400 * 3
    assert rows["replay_s"]["value"] > 0 and rows["restart_s"]["value"] > 0


def test_wsframe_benchmark_prints_its_json_rows():
    out = subprocess.run([sys.executable, "-m", "benchmarks.wsframe", "--json", "--mib", "1", "--read", "4096",
                          "--repeat", "1"], capture_output=True, text=True, check=True).stdout
    rows = {r["metric"]: r for r in json.loads(out)}
    assert list(rows) == ["large_frame_s", "wsproto_large_frame_s", "small_frame_us"]
    assert all(r["value"] > 0 for r in rows.values())


async def test_autobahn_echo_server_echoes_text_and_binary(nursery):
    listeners = await nursery.start(trio.serve_tcp, autobahn_echo.echo, 0)
    port = listeners[0].socket.getsockname()[1]
    async with open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:  # no subprotocol, as Autobahn
        for message in ("κόσμε", b"\x00\xff" * 40_000):
            await ws.send_message(message)
            assert await ws.get_message() == message
        await ws.aclose(1000)
        assert ws.closed.code == 1000
