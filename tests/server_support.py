"""Helpers for the server tests: a real server on 127.0.0.1 port 0, real WebSocket clients.

The server runs in the test's nursery on the demo hall with its store in ``tmp_path`` and a
clock that starts on Monday 2026-11-23 09:30 Shanghai time (the hall is open then).
Import the fixtures into a test module to use them.

No outcome may depend on how fast the machine is (the suite must pass with every core
busy), so nothing here waits for time to pass:

* the periodic phone refresh is off unless a test asks for it (``start_server(...,
  phone_refresh_s=...)``), so a phone's next push is always the one its ticket's events make;
* a test about timeouts takes pytest-trio's ``mock_clock`` fixture: trio's clock then stands
  still while the test talks to the server, and moves only when the test jumps it or lets it
  run with :func:`time_flies`;
* :func:`guard` fails a hung test after a generous span of *real* time, so it also works on a
  mock clock that never moves on its own.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import threading
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import trio
from trio.testing import MockClock

from callsys.client import Client, connect
from callsys.clock import ScaledClock
from callsys.hall import Hall
from callsys.server import CallsysServer, ServerSettings, serve_callsys
from conftest import SHANGHAI

START = datetime(2026, 11, 23, 9, 30, tzinfo=SHANGHAI)  # a Monday morning: the demo hall is open
SECRET = b"test-secret"
TOKENS = {"kiosk": "demo-kiosk", "clerk": "demo-clerk", "display": "demo-display", "speaker": "demo-speaker",
          "manager": "demo-manager"}
HANG_GUARD_S = 30  # real seconds before a hung test fails: a deadlock guard, not a performance limit


def guard(seconds: float = HANG_GUARD_S) -> Callable:
    """Fail a test that hangs (a deadlock) after *seconds* of real time.

    Real time, not trio's: a test on a mock clock must not hang for ever either.
    """

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            with hang_guard(seconds):
                return await fn(*args, **kwargs)
        return wrapper

    return decorate


@contextmanager
def hang_guard(seconds: float = HANG_GUARD_S) -> Iterator[None]:
    """Cancel the body after *seconds* of real time and raise :exc:`trio.TooSlowError`
    (what :func:`guard` does for a whole test)."""
    token = trio.lowlevel.current_trio_token()
    with trio.CancelScope() as scope:

        def expire() -> None:
            try:
                token.run_sync_soon(scope.cancel)
            except trio.RunFinishedError:
                pass

        timer = threading.Timer(seconds, expire)
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()
    if scope.cancelled_caught:
        raise trio.TooSlowError(f"the test hung: still running after {seconds:g} s")


@contextmanager
def time_flies(clock: MockClock) -> Iterator[None]:
    """Within: *clock* jumps to the next deadline whenever every task waits, so timeouts fire
    at once instead of after real seconds; outside it the mock clock stands still.

    A jump may come while bytes are still between two sockets, so use it only to wait for a
    timeout whose outcome is the same whenever it fires (a connection closed as idle).
    """
    clock.autojump_threshold = 0
    try:
        yield
    finally:
        clock.autojump_threshold = math.inf


async def start_server(nursery: trio.Nursery, hall: Hall, store: Path, **settings: Any) -> CallsysServer:
    """A server for *hall* on a free port with its events in *store*.

    *settings* are :class:`ServerSettings` fields; the periodic phone refresh is off unless given.
    """
    settings.setdefault("phone_refresh_s", math.inf)
    return await nursery.start(partial(serve_callsys, hall, f"file:{store}", port=0, clock=ScaledClock(START),
                                       secret=SECRET, settings=ServerSettings(**settings)))


def client(server: CallsysServer, role: str, fmt: str = "msgpack", **hello: Any):
    """``async with client(server, "kiosk") as k:`` — an authenticated connection."""
    hello.setdefault("token", TOKENS.get(role))
    return connect(server.url, role=role, fmt=fmt, **hello)


def state_of(server: CallsysServer) -> dict[str, Any]:
    """The engine's logical state, without the time horizon (a rejected command may move it)."""
    snapshot = server.engine.snapshot()
    snapshot.pop("horizon")
    return snapshot


async def push_of(c: Client, kind: str) -> dict[str, Any]:
    """The next push of type *kind* (earlier pushes of other types are skipped)."""
    while True:
        push = await c.next_push()
        if push["type"] == kind:
            return push


async def still_served(server: CallsysServer, fmt: str = "msgpack") -> None:
    """Another client can still take a number."""
    async with client(server, "kiosk", fmt) as other:
        ticket = await other.request("take_number", service="SOC")
        assert ticket["status"] == "waiting" and ticket["number"].startswith("C")


@pytest.fixture(params=["msgpack", "json"])
def fmt(request: pytest.FixtureRequest) -> str:
    """Both wire formats: msgpack (binary frames) and JSON (text frames)."""
    return request.param


@pytest.fixture
async def server(nursery: trio.Nursery, demo_hall: Hall, tmp_path: Path):
    srv = await start_server(nursery, demo_hall, tmp_path / "hall.db")
    yield srv
    srv.shutdown()


@contextmanager
def captured_log(level: int, name: str = "callsys.server") -> Iterator[list[logging.LogRecord]]:
    """The records of logger *name* at *level* and up while the block runs."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(level)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger(name)
    before = logger.level
    logger.setLevel(level)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(before)


async def http_get(port: int, target: str) -> tuple[int, dict[str, str], bytes]:
    """``GET target`` on 127.0.0.1:*port* with ``Connection: close`` on a new connection:
    ``(status, headers, body)`` (read until the server closes). For a process's own port
    (another process, a router, a standby), where no :class:`CallsysServer` object is at hand."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(f"GET {target} HTTP/1.1\r\nhost: callsys\r\nconnection: close\r\n\r\n".encode())
        data = b""
        while chunk := await stream.receive_some():
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {name.lower(): value for name, value in (line.split(": ", 1) for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


READYZ_POLL_S = 0.05  # between /readyz requests while waiting for it to change (a poll, not a limit)


async def readyz_until(port: int, ready: bool) -> dict:
    """Poll ``/readyz`` on 127.0.0.1:*port* until it says *ready*; its body."""
    while True:
        status, _, body = await http_get(port, "/readyz")
        answer = json.loads(body)
        if answer["ready"] is ready:
            assert status == (200 if ready else 503)
            return answer
        await trio.sleep(READYZ_POLL_S)
