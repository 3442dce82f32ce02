"""A newcomer at any hour: the closed hall says when it opens, ``callsys serve`` prints every
page's address, and ``callsys demo`` plays an opening hall with a live crowd until Ctrl-C."""

from __future__ import annotations

import json
import logging
import re
import signal
import subprocess
import sys
from datetime import datetime
from functools import partial
from pathlib import Path

import pytest
import trio

from callsys.client import RequestFailed
from callsys.clock import ScaledClock
from callsys.server import ServerSettings, serve_callsys
from callsys.server.cli import pages_block
from callsys.server.http import page_urls
from callsys.server.serve import next_opening
from callsys.tools.demo import MARKER, DemoError, _fresh_dir, demo_start
from conftest import SHANGHAI
from server_support import SECRET, captured_log, client, guard, server  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
DEMO_GUARD_S = 240  # real seconds: three Python processes start on a busy machine; a hang guard only


def at(*parts: int) -> float:
    return datetime(*parts, tzinfo=SHANGHAI).timestamp()


@pytest.mark.parametrize("now, opens", [
    ((2026, 11, 23, 8, 55), (2026, 11, 23, 9, 0)),  # Monday before opening
    ((2026, 11, 23, 12, 30), (2026, 11, 23, 14, 0)),  # the lunch break
    ((2026, 11, 28, 17, 0), (2026, 11, 29, 9, 0)),  # Saturday evening -> Sunday morning
    ((2026, 11, 29, 23, 0), (2026, 11, 30, 9, 0)),  # Sunday night -> Monday
])
def test_next_opening_of_a_closed_hall(demo_hall, now, opens):
    assert next_opening(demo_hall, at(*now)) == at(*opens)


def test_an_open_hall_has_no_next_opening(demo_hall):
    assert next_opening(demo_hall, at(2026, 11, 23, 9, 30)) is None


@guard()
async def test_serve_at_night_logs_when_the_hall_opens_and_kiosks_get_hall_closed(nursery, demo_hall, tmp_path):
    night = datetime(2026, 11, 29, 23, 0, tzinfo=SHANGHAI)  # Sunday
    with captured_log(logging.INFO) as records:
        server = await nursery.start(partial(serve_callsys, demo_hall, f"file:{tmp_path / 'hall.db'}", port=0,
                                             clock=ScaledClock(night), secret=SECRET, settings=ServerSettings()))
    closed = [r.fields for r in records if r.getMessage() == "hall_closed"]
    assert len(closed) == 1
    assert (closed[0]["now"], closed[0]["opens"]) == ("Sun 2026-11-29 23:00", "Mon 2026-11-30 09:00")
    assert "make demo" in closed[0]["message"]
    async with client(server, "kiosk") as kiosk:
        with pytest.raises(RequestFailed) as refused:
            await kiosk.request("take_number", service="SOC")
    assert refused.value.code == "hall_closed"


@guard()
async def test_serve_in_opening_hours_says_nothing_about_closing(nursery, demo_hall, tmp_path):
    with captured_log(logging.INFO) as records:
        await nursery.start(partial(serve_callsys, demo_hall, f"file:{tmp_path / 'hall.db'}", port=0,
                                    clock=ScaledClock(datetime(2026, 11, 23, 9, 30, tzinfo=SHANGHAI)),
                                    secret=SECRET, settings=ServerSettings()))
    assert "listening" in [r.getMessage() for r in records]
    assert "hall_closed" not in [r.getMessage() for r in records]


@guard()
async def test_pages_block_prints_every_page_url(server):
    block = pages_block(server).splitlines()
    assert block[0] == f"pages of Demo Service Hall (tokens from {server.hall.source}):"
    assert [line.split()[1] for line in block[1:]] == list(page_urls(server).values())
    assert block[1].split()[0] == "index"


# ---------------------------------------------------------------------- make demo


@pytest.mark.parametrize("now, start", [
    ((2026, 11, 25, 22, 0), (2026, 11, 25, 8, 59)),  # a Wednesday night: that weekday's opening
    ((2026, 11, 28, 10, 0), (2026, 11, 30, 8, 59)),  # Saturday: the next Monday
    ((2026, 11, 29, 3, 0), (2026, 11, 30, 8, 59)),  # Sunday
])
def test_demo_starts_a_minute_before_a_weekday_opening(qingdao_hall, now, start):
    assert demo_start(qingdao_hall, datetime(*now, tzinfo=SHANGHAI)) == datetime(*start, tzinfo=SHANGHAI)


def test_demo_empties_only_its_own_directory(tmp_path):
    mine = _fresh_dir(tmp_path / "demo")
    (mine / "callsys.db").write_text("yesterday")
    assert _fresh_dir(mine) == mine and sorted(p.name for p in mine.iterdir()) == [MARKER]
    other = tmp_path / "precious"
    other.mkdir()
    (other / "thesis.tex").write_text("years of work")
    with pytest.raises(DemoError, match="not a directory of callsys demo"):
        _fresh_dir(other)
    assert (other / "thesis.tex").read_text() == "years of work"


async def _ready(port: int) -> dict:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"GET /readyz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    return json.loads(data.split(b"\r\n\r\n", 1)[1])


@guard(DEMO_GUARD_S)
async def test_demo_runs_the_server_and_a_live_crowd_and_ctrl_c_stops_both(tmp_path):
    command = [sys.executable, "-m", "callsys", "demo", "--config", "config/demo.toml", "--scenario", "demo",
               "--port", "0", "--speed", "600", "--dir", str(tmp_path / "demo")]
    process = await trio.lowlevel.open_process(command, cwd=ROOT, stdout=subprocess.PIPE)
    try:
        output = b""
        while re.search(rb"speaker\s+http://\S+\n", output) is None:  # the last line of the pages
            chunk = await process.stdout.receive_some(65536)
            assert chunk, output.decode()
            output += chunk
        port = int(re.search(rb"index\s+http://127\.0\.0\.1:(\d+)/", output).group(1))
        assert b"/board?zone=universal&token=demo-display" in output
        first = await _ready(port)
        assert first["ready"]
        while (await _ready(port))["durable_seq"] < first["durable_seq"] + 100:  # the crowd plays
            await trio.sleep(0.05)
        process.send_signal(signal.SIGINT)
        while chunk := await process.stdout.receive_some(65536):
            output += chunk
        assert await process.wait() == 0
        assert b"demo: stopping" in output
        with pytest.raises(OSError):  # the server is gone too
            await trio.open_tcp_stream("127.0.0.1", port)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
