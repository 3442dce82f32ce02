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


def test_fanout_benchmark_prints_its_json_rows():
    out = subprocess.run([sys.executable, "-m", "benchmarks.fanout", "--json", "--sizes", "3,6", "--calls", "2",
                          "--interval", "0.2", "--processes", "1"], capture_output=True, text=True, check=True).stdout
    rows = {r["metric"]: r for r in json.loads(out)}
    assert {"messages_per_s", "clerk_ack_ms_at_6", "fanout_ms_at_6", "messages_per_s_at_3",
            "server_cpu_us_per_push_at_6"} <= set(rows)
    assert rows["messages_per_s"]["target"] == ">= 50000" and rows["clerk_ack_ms_at_6"]["value"] > 0


def test_call_latency_benchmark_prints_its_json_rows():
    out = subprocess.run([sys.executable, "-m", "benchmarks.call_latency", "--json", "--windows", "4",
                          "--subscribers", "30", "--tvs", "1", "--speakers", "1", "--seconds", "2", "--interval", "0.5",
                          "--processes", "1"], capture_output=True, text=True, check=True).stdout
    rows = {r["metric"]: r for r in json.loads(out)}
    assert [m for m in ("next_to_led_p50_ms", "next_to_led_p99_ms", "next_to_speaker_p99_ms", "clerk_ack_p99_ms")
            if rows[m]["value"] > 0] == ["next_to_led_p50_ms", "next_to_led_p99_ms", "next_to_speaker_p99_ms",
                                         "clerk_ack_p99_ms"]
    assert rows["subscribers"]["value"] == 30 and rows["clerk_errors"]["value"] == 0


def test_phones_benchmark_prints_its_json_rows():
    out = subprocess.run([sys.executable, "-m", "benchmarks.phones", "--json", "--phones", "40", "--devices", "20",
                          "--seconds", "3", "--after", "0.5", "--calls-per-s", "5", "--phone-processes", "1"],
                         capture_output=True, text=True, check=True).stdout
    rows = {r["metric"]: r for r in json.loads(out)}
    assert [rows[m]["target"] for m in ("rss_mib", "next_to_led_p99_ms", "max_loop_stall_ms", "reconnect_all_s")] \
        == ["<= 1024", "<= 20", "<= 20", "<= 15"]
    assert rows["rss_mib"]["value"] > 0 and rows["max_loop_stall_ms"]["value"] > 0
    assert rows["connections"]["value"] == rows["reconnected"]["value"] == 60  # 40 phones + 8 clerks, 8 LEDs, 2+2
    assert rows["reconnect_all_s"]["value"] > 0 and rows["phones_updated"]["value"] >= 40  # each phone's hello push
    assert rows["led_updates_missing"]["value"] == 0


def test_api_benchmark_prints_its_json_rows():
    out = subprocess.run([sys.executable, "-m", "benchmarks.api", "--json", "--config", "config/demo.toml",
                          "--processes", "1", "--connections", "2", "--seconds", "0.5", "--rate", "20",
                          "--latency-seconds", "0.5", "--pool", "2"], capture_output=True, text=True, check=True).stdout
    rows = {r["metric"]: r for r in json.loads(out)}
    assert list(rows) == ["bookings_per_s", "p50_ms_at_500", "p99_ms_at_500", "server_cpu", "server_cpu_per_booking",
                          "refused"]
    assert rows["bookings_per_s"]["value"] > 0 and rows["bookings_per_s"]["target"] == ">= 2000"
    assert rows["p99_ms_at_500"]["value"] > 0 and rows["refused"]["value"] == 0


def test_halls_benchmark_prints_its_json_rows(tmp_path):
    small = tmp_path / "network.toml"  # the Bao'an file with one community per street: 13 halls, started quickly
    text = open("config/baoan.toml", encoding="utf-8").read()
    small.write_text(text.replace("communities_per_street = 21", "communities_per_street = 1"), encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "benchmarks.halls", "--json", "--network", str(small),
                          "--processes", "1,2", "--span", "0.3"], capture_output=True, text=True, check=True).stdout
    rows = {r["metric"]: r for r in json.loads(out)}
    assert list(rows)[:2] == ["tickets_per_s_1p", "tickets_per_s_2p"]
    assert all(rows[f"tickets_per_s_{n}p"]["target"] == ">= 10000" and rows[f"tickets_per_s_{n}p"]["value"] > 0
               for n in (1, 2))
    assert rows["tickets_per_s_2p_any"]["value"] > 0 and rows["p99_ms_2p"]["value"] > 0
    assert rows["halls_per_process_min_1p"]["value"] == rows["halls_per_process_max_1p"]["value"] == 13
    assert rows["halls_per_process_min_2p"]["value"] + rows["halls_per_process_max_2p"]["value"] == 13
    assert rows["rejected_1p"]["value"] == rows["rejected_2p"]["value"] == 0
