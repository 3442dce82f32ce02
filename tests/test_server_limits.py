"""The limits a hall needs: connection caps (global, per address, trusted proxies), the
failed-hello throttle, cheap refusals logged once per address, and the clerk takeover.

Everything runs on real sockets on 127.0.0.1 (and 127.0.0.2 as a second address) with
caps of a few connections. Where time must pass (the handshake timeout, the throttle
window, the refusal log interval) the test moves trio's mock clock explicitly; it runs at
real speed otherwise so that the hang guards still work.
"""

from __future__ import annotations

import logging
import os
import resource
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable, Iterator

import msgpack
import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, WebSocketConnection, wrap_client_stream

from callsys.cli import main
from callsys.client import ConnectionLost
from callsys.errors import CallsysError
from callsys.protocol import MSGPACK, CloseCode
from callsys.server import cli as server_cli, serve as serve_module
from callsys.server.limits import Admission, RefusalLog, address_key, parse_networks
from callsys.server.settings import (HELLO_FAILURE_WINDOW_S, MAX_CONNECTIONS, MAX_CONNECTIONS_PER_ADDRESS,
                                     REFUSAL_LOG_INTERVAL_S, RETRY_AFTER_S, TRUSTED_PROXIES, ServerSettings)
from conftest import CONFIG
from server_support import (HANG_GUARD_S, TOKENS, captured_log, client, fmt, guard, server, start_server,  # noqa: F401
                            still_served)

OTHER = "127.0.0.2"  # a second client address: Linux routes all of 127/8 to loopback
PARTIAL_REQUEST = b"GET /ws HTTP/1.1\r\nHost: x\r\n"  # an upgrade request that never ends
JUMP_GUARD_S = HANG_GUARD_S + 60  # the hang guard of tests that move the mock clock by up to 60 s


async def until(condition: Callable[[], bool]) -> None:
    """Wait until *condition* holds (the server's bookkeeping catching up with the sockets)."""
    while not condition():
        await trio.sleep(0.001)


async def tcp(server, source: str = "127.0.0.1") -> trio.socket.SocketType:
    sock = trio.socket.socket()
    await sock.bind((source, 0))
    await sock.connect(("127.0.0.1", server.port))
    return sock


async def half_open(server, count: int, source: str = "127.0.0.1") -> list[trio.socket.SocketType]:
    """*count* sockets stuck in the middle of their HTTP upgrade request."""
    socks = []
    for _ in range(count):
        sock = await tcp(server, source)
        await sock.send(PARTIAL_REQUEST)
        socks.append(sock)
    return socks


@asynccontextmanager
async def ws_from(server, source: str = "127.0.0.1") -> AsyncIterator[WebSocketConnection]:
    """A bare msgpack WebSocket from the address *source* (no hello sent)."""
    sock = await tcp(server, source)
    async with trio.open_nursery() as nursery:
        ws = await wrap_client_stream(nursery, trio.SocketStream(sock), "127.0.0.1", "/ws", subprotocols=[MSGPACK])
        try:
            yield ws
        finally:
            await ws.aclose()


async def hello(ws: WebSocketConnection, role: str = "kiosk", **fields: Any) -> dict[str, Any]:
    fields.setdefault("token", TOKENS.get(role))
    await ws.send_message(msgpack.packb({"type": "hello", "role": role, **fields}))
    return msgpack.unpackb(await ws.get_message())


async def refused(server, source: str = "127.0.0.1") -> ConnectionRejected:
    """Connect from *source*; the connection must be refused at the handshake."""
    rejections: list[ConnectionRejected] = []
    try:
        async with ws_from(server, source):
            pass
    except* ConnectionRejected as group:  # raised in trio-websocket's reader task
        rejections.extend(_leaves(group))
    assert len(rejections) == 1, "the connection was accepted"
    return rejections[0]


def _leaves(group: BaseExceptionGroup) -> list[Any]:
    return [leaf for exc in group.exceptions
            for leaf in (_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])]


def retry_after(rejection: ConnectionRejected) -> int:
    return int(dict(rejection.headers)[b"retry-after"])


async def bad_hello(server, source: str = "127.0.0.1") -> None:
    async with ws_from(server, source) as ws:
        assert (await hello(ws, token="guess"))["code"] == "unauthorized"
        with pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
        assert closed.value.reason.code == CloseCode.UNAUTHORIZED


@pytest.fixture
def server_log() -> Iterator[list[logging.LogRecord]]:
    """The records of the ``callsys.server`` logger, INFO and up, during the test."""
    with captured_log(logging.INFO) as records:
        yield records


def events(records: list[logging.LogRecord], name: str) -> list[dict[str, Any]]:
    return [{"level": r.levelno, **r.fields} for r in records if r.getMessage() == name]


# ---------------------------------------------------------------------- connection caps


@guard()
async def test_global_cap_counts_half_open_handshakes_and_refuses_with_503(nursery, demo_hall, tmp_path):
    server = await start_server(nursery, demo_hall, tmp_path / "hall.db", max_connections=3)
    socks = await half_open(server, 3)
    await until(lambda: server.admission.open == 3)
    rejection = await refused(server)
    assert rejection.status_code == 503
    assert retry_after(rejection) == RETRY_AFTER_S
    assert b"limit of 3 connections" in rejection.body
    assert server.admission.open == 3 and not server.sessions  # the refused one was never counted
    socks.pop().close()
    await until(lambda: server.admission.open == 2)
    await still_served(server)
    for sock in socks:
        sock.close()


@guard()
async def test_handshake_timeout_closes_half_open_sockets_and_frees_their_places(nursery, demo_hall, tmp_path,
                                                                                 mock_clock):
    mock_clock.rate = 1.0
    server = await start_server(nursery, demo_hall, tmp_path / "hall.db", max_connections=3)
    socks = await half_open(server, 3)
    await until(lambda: server.admission.open == 3)
    mock_clock.jump(server.settings.handshake_timeout_s)
    for sock in socks:
        assert await sock.recv(4096) == b""  # closed without an answer
        sock.close()
    await until(lambda: server.admission.open == 0)
    await still_served(server)


@guard()
async def test_per_address_cap_refuses_only_that_address(nursery, demo_hall, tmp_path):
    server = await start_server(nursery, demo_hall, tmp_path / "hall.db", max_connections_per_address=3,
                                trusted_proxies=())
    async with client(server, "kiosk") as first, client(server, "kiosk"), client(server, "kiosk"):
        rejection = await refused(server)
        assert rejection.status_code == 503 and retry_after(rejection) == RETRY_AFTER_S
        assert b"too many connections from your address (limit 3)" in rejection.body
        async with ws_from(server, OTHER) as other:  # another address is not affected
            assert (await hello(other))["type"] == "welcome"
        await until(lambda: server.admission.by_address == {"127.0.0.1": 3})
        await first.request("ping")
    await until(lambda: server.admission.open == 0)
    await still_served(server)


@guard()
async def test_trusted_proxy_is_exempt_from_the_per_address_cap_not_the_global_one(nursery, demo_hall, tmp_path):
    server = await start_server(nursery, demo_hall, tmp_path / "hall.db", max_connections=4,
                                max_connections_per_address=2, trusted_proxies=("127.0.0.1",))
    socks = await half_open(server, 4)  # a gateway: four connections from one address
    await until(lambda: server.admission.open == 4)
    rejection = await refused(server, OTHER)
    assert rejection.status_code == 503 and b"limit of 4 connections" in rejection.body
    for sock in socks:
        sock.close()


@guard(JUMP_GUARD_S)
async def test_refusals_build_no_session_and_are_logged_once_per_address_per_interval(
        nursery, demo_hall, tmp_path, mock_clock, monkeypatch, server_log):
    mock_clock.rate = 1.0
    built = []

    class CountedSession(serve_module.Session):
        def __init__(self, *args: Any) -> None:
            built.append(self)
            super().__init__(*args)

    monkeypatch.setattr(serve_module, "Session", CountedSession)
    server = await start_server(nursery, demo_hall, tmp_path / "hall.db", max_connections_per_address=1,
                                trusted_proxies=())
    async with client(server, "kiosk") as kiosk:
        for _ in range(20):
            assert (await refused(server)).status_code == 503
        assert len(built) == 1 and server.admission.refused == 20
        assert events(server_log, "refused") == [
            {"level": logging.WARNING, "address": "127.0.0.1", "reason": "address_full", "retry_after_s": 30,
             "open": 1, "unlogged": 0}]
        mock_clock.jump(REFUSAL_LOG_INTERVAL_S)
        await refused(server)
        later = events(server_log, "refused")
        assert len(later) == 2 and later[1]["unlogged"] == 19
        await kiosk.request("ping")
    assert len(built) == 1


# ---------------------------------------------------------------------- failed hellos


@guard(JUMP_GUARD_S)
async def test_failed_hellos_refuse_the_address_until_the_window_passes(nursery, demo_hall, tmp_path, mock_clock):
    mock_clock.rate = 1.0
    server = await start_server(nursery, demo_hall, tmp_path / "hall.db", hello_failures=3,
                                hello_failure_window_s=60.0, trusted_proxies=())
    for _ in range(3):
        await bad_hello(server)
    rejection = await refused(server)  # even with the right token: the address is refused
    assert rejection.status_code == 503 and 0 < retry_after(rejection) <= 60
    assert b"too many failed hellos" in rejection.body
    async with ws_from(server, OTHER) as other:
        assert (await hello(other))["type"] == "welcome"
    mock_clock.jump(60.0)
    await still_served(server)


@guard()
async def test_connections_already_open_cannot_keep_guessing(nursery, demo_hall, tmp_path):
    server = await start_server(nursery, demo_hall, tmp_path / "hall.db", hello_failures=2, trusted_proxies=())
    async with ws_from(server) as waiting:  # upgraded before the failures, says hello after them
        for _ in range(2):
            await bad_hello(server)
        reply = await hello(waiting, id=5)
        assert (reply["type"], reply["code"], reply["id"]) == ("error", "rate_limited", 5)
        assert 0 < reply["details"]["retry_after_s"] <= HELLO_FAILURE_WINDOW_S
        with pytest.raises(ConnectionClosed) as closed:
            await waiting.get_message()
        assert closed.value.reason.code == CloseCode.HELLO_THROTTLED == 4029


@guard()
async def test_trusted_addresses_are_not_throttled(nursery, demo_hall, tmp_path):
    server = await start_server(nursery, demo_hall, tmp_path / "hall.db", hello_failures=2)  # loopback trusted
    for _ in range(5):
        await bad_hello(server)
    await still_served(server)


def test_failed_hello_window_slides_per_address():
    admission = Admission(max_connections=10, max_per_address=10, trusted=["10.0.0.0/8"], retry_after_s=30,
                          hello_failures=3, hello_window_s=60.0)
    for t in (0.0, 10.0, 20.0):
        assert admission.hello_wait("1.2.3.4", t) == 0
        admission.hello_failed("1.2.3.4", t)
    assert admission.hello_wait("1.2.3.4", 20.0) == 40
    assert admission.admit("1.2.3.4", 59.5).reason == "hello_failures"
    assert admission.admit("1.2.3.5", 59.5) is None  # another address
    assert admission.hello_wait("1.2.3.4", 60.0) == 0  # the first failure is 60 s old
    admission.hello_failed("1.2.3.4", 61.0)  # three failures within 60 s again: 10, 20, 61
    assert admission.hello_wait("1.2.3.4", 61.0) == 9
    for t in range(10):
        admission.hello_failed("10.1.2.3", float(t))  # a trusted gateway
    assert admission.hello_wait("10.1.2.3", 10.0) == 0 and admission.admit("10.1.2.3", 10.0) is None
    admission.hello_failed("9.9.9.9", 500.0)  # a sweep forgets addresses whose failures are all old
    assert set(admission._failures) == {"9.9.9.9"}


def test_caps_count_ipv6_per_64_and_mapped_ipv4_as_ipv4():
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7"
    admission = Admission(max_connections=7, max_per_address=2, trusted=["::1"], retry_after_s=5,
                          hello_failures=3, hello_window_s=60.0)
    assert admission.admit("2001:db8::1", 0) is None and admission.admit("2001:db8::2", 0) is None
    refusal = admission.admit("2001:db8::3", 0)
    assert (refusal.reason, refusal.retry_after_s) == ("address_full", 5)
    assert admission.admit("2001:db8:0:1::1", 0) is None  # the next /64
    assert all(admission.admit("::1", 0) is None for _ in range(3))  # trusted
    assert admission.open == 6 and admission.admit("192.0.2.1", 0) is None
    assert all(admission.admit(host, 0).reason == "server_full" for host in ("192.0.2.2", "::1"))
    for host in ("2001:db8::1", "2001:db8::2", "2001:db8:0:1::1", "::1", "::1", "::1", "192.0.2.1"):
        admission.release(host)
    assert (admission.open, admission.by_address) == (0, {})


def test_trusted_proxies_must_be_addresses_or_networks():
    assert [str(n) for n in parse_networks(["10.0.0.5", " 192.168.8.0/24", "::1"])] == [
        "10.0.0.5/32", "192.168.8.0/24", "::1/128"]
    with pytest.raises(ValueError, match="'gateway' is not an IP address"):
        parse_networks(["gateway"])


def test_refusal_log_speaks_once_per_address_per_interval():
    log = RefusalLog(60.0)
    assert log.note("1.1.1.1", 0.0) == ([], 0)
    assert log.note("1.1.1.1", 1.0) == ([], None)
    assert log.note("2.2.2.2", 2.0) == ([], 0)
    assert log.note("2.2.2.2", 3.0) == ([], None)
    assert log.note("2.2.2.2", 4.0) == ([], None)
    assert log.note("1.1.1.1", 61.0) == ([], 1)  # a new interval: one line, with the one left unlogged
    assert log.note("1.1.1.1", 62.0) == ([], None)
    stale, unlogged = log.note("3.3.3.3", 130.0)  # older unlogged counts are reported as they age out
    assert (sorted(stale), unlogged) == ([("1.1.1.1", 1), ("2.2.2.2", 2)], 0)
    assert log.note("1.1.1.1", 131.0) == ([], 0)


def test_default_limits_fit_the_flagship_hall():
    settings = ServerSettings()
    assert (settings.max_connections, settings.max_connections_per_address) == (MAX_CONNECTIONS,
                                                                                 MAX_CONNECTIONS_PER_ADDRESS)
    assert settings.max_connections >= 1.8 * (10_000 + 1_000)  # phones + devices of a 400-window hall
    assert settings.max_connections_per_address * 100 == settings.max_connections
    assert settings.trusted_proxies == TRUSTED_PROXIES == ("127.0.0.0/8", "::1")


# ---------------------------------------------------------------------- clerk takeover


@guard()
async def test_newer_clerk_sign_in_takes_the_window_over(server, fmt, server_log):
    async with client(server, "clerk", fmt, window=1) as older, client(server, "clerk", fmt, window=2) as neighbour:
        await older.request("open_window")
        async with client(server, "clerk", fmt, window=1) as newer:
            with pytest.raises(ConnectionLost) as lost:
                while True:
                    await older.next_push()
            assert lost.value.close_code == CloseCode.REPLACED == 4009
            assert lost.value.reason == "replaced by a newer sign-in to this window"
            with pytest.raises(ConnectionLost):
                await older.request("call_next")
            await until(lambda: server.clerks[1].ws.closed is None and len(server.sessions) == 2)
            assert (await newer.request("window"))["status"] == "open"
            assert (await neighbour.request("window"))["window"] == 2  # another window: untouched
    (replaced,) = events(server_log, "clerk_replaced")
    assert replaced["window"] == 1


@guard()
async def test_takeover_answers_what_the_older_connection_executed_and_nothing_after(nursery, demo_hall, tmp_path):
    server = await start_server(nursery, demo_hall, tmp_path / "hall.db", max_in_flight=2)
    entered, release = trio.Event(), trio.Event()
    wait_durable = server.journal.wait_durable

    async def gated(seq: int) -> None:
        entered.set()
        await release.wait()
        await wait_durable(seq)

    async with ws_from(server) as older:
        assert (await hello(older, "clerk", window=1))["type"] == "welcome"
        await older.send_message(msgpack.packb({"type": "open_window", "id": 0}))
        while msgpack.unpackb(await older.get_message()).get("id") != 0:  # skip the board push
            pass
        before = server.journal.durable_seq
        server.journal.wait_durable = gated  # what the older clerk executes next stays in flight
        for rid, kind in enumerate(("pause", "resume", "pause", "resume", "pause"), 1):
            await older.send_message(msgpack.packb({"type": kind, "id": rid}))
        await entered.wait()
        async with client(server, "clerk", window=1) as newer:
            release.set()
            replies = []
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    message = msgpack.unpackb(await older.get_message())
                    if message["type"] in ("ok", "error"):
                        replies.append(message)
            assert closed.value.reason.code == CloseCode.REPLACED
            executed = server.journal.durable_seq - before
            assert 1 <= executed <= 2  # at most max_in_flight were executed before the takeover
            assert [(r["type"], r["id"]) for r in replies] == [("ok", rid) for rid in range(1, executed + 1)]
            assert (await newer.request("window"))["status"] == ("paused" if executed == 1 else "open")
            assert server.journal.durable_seq - before == executed  # nothing of the older clerk ran after


# ---------------------------------------------------------------------- callsys serve flags


def test_serve_flags_set_the_limits(monkeypatch, tmp_path, capsys):
    seen: list[ServerSettings] = []

    async def serve(*args: Any, settings: ServerSettings, **kwargs: Any) -> None:
        seen.append(settings)
        raise CallsysError("stopped by the test")

    monkeypatch.setattr(server_cli, "serve_callsys", serve)
    monkeypatch.setattr(server_cli.logs, "configure", lambda *args: None)
    base = ["serve", "--config", str(CONFIG / "demo.toml"), "--store", f"file:{tmp_path / 'x.db'}"]
    assert main(base + ["--max-connections", "50", "--max-connections-per-address", "5", "--trusted-proxies",
                        "10.0.0.0/8, 192.168.1.2", "--hello-failures", "4", "--hello-window", "30",
                        "--handshake-timeout", "3"]) == 2
    assert main(base + ["--trusted-proxies", ""]) == 2
    assert main(base) == 2
    flags, no_proxies, defaults = seen
    assert (flags.max_connections, flags.max_connections_per_address, flags.trusted_proxies, flags.hello_failures,
            flags.hello_failure_window_s, flags.handshake_timeout_s) == (50, 5, ("10.0.0.0/8", "192.168.1.2"), 4,
                                                                          30.0, 3.0)
    assert no_proxies.trusted_proxies == ()
    assert defaults.trusted_proxies == TRUSTED_PROXIES and defaults.max_connections == MAX_CONNECTIONS
    capsys.readouterr()
    for bad, problem in ((["--trusted-proxies", "gateway"], "'gateway' is not an IP address"),
                         (["--max-connections", "0"], "must be > 0"),
                         (["--hello-window", "soon"], "not a number")):
        with pytest.raises(SystemExit) as info:
            main(base + bad)
        assert info.value.code == 2 and problem in capsys.readouterr().err


def test_serve_raises_the_open_file_limit_or_warns(monkeypatch, server_log):
    limits = {"soft": 1024, "hard": 4096}
    monkeypatch.setattr(server_cli.resource, "getrlimit", lambda which: (limits["soft"], limits["hard"]))
    monkeypatch.setattr(server_cli.resource, "setrlimit", lambda which, value: limits.update(soft=value[0]))
    server_cli._raise_open_files(2000)
    assert limits["soft"] == 2000 and not events(server_log, "open_files_limit")
    server_cli._raise_open_files(MAX_CONNECTIONS + server_cli.SPARE_FILES)  # more than the hard limit allows
    assert limits["soft"] == 4096
    (warning,) = events(server_log, "open_files_limit")
    assert (warning["level"], warning["limit"], warning["wanted"]) == (logging.WARNING, 4096, 20_064)


def _descriptor_slots() -> int:
    """The size of this process's descriptor table (Linux: ``FDSize`` in /proc/self/status)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("FDSize:"))


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="Linux reports the table size in /proc")
def test_serve_grows_the_descriptor_table_once_up_front():
    """accept() never has to grow the table while serving (each growth waits for an RCU
    grace period when the process has threads: stalls of 10-28 ms)."""
    before = _descriptor_slots()
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(before * 4, soft)  # beyond what this test process has needed so far
    assert wanted > before
    opened = set(os.listdir("/proc/self/fd"))
    server_cli.reserve_descriptor_table(wanted)
    assert _descriptor_slots() >= wanted
    assert set(os.listdir("/proc/self/fd")) == opened  # the descriptor it borrowed the slot with is closed
