"""Load processes for the push benchmarks: many WebSocket connections per process, driven by epoll.

:mod:`benchmarks.call_latency` and :mod:`benchmarks.fanout` need thousands of subscribed
connections and hundreds of clerks, measured without the measuring side being the
bottleneck. A trio task per connection costs tens of microseconds per wake-up; here each
process holds its connections in one ``select.epoll`` loop on plain non-blocking sockets
(the opening handshake by wsproto, frames by :mod:`callsys._wsframe`, msgpack), so a
push costs the process one ``recv`` and one decode.

Every process runs :func:`worker` (``multiprocessing``, *spawn*): it connects its
connections, reports ``"ready"`` on its pipe, then serves until the parent sends
``"stop"`` and answers with what it recorded. Times are ``time.monotonic()``:
CLOCK_MONOTONIC is system-wide on Linux, so they compare across processes.

Two kinds of connection:

* a **subscriber** (display, speaker, phone) records the arrival of every call it is
  pushed: ``(label, kind, window, number, t)`` for a ``window_update`` whose event is
  ``called``, an ``announce`` that is not a recall, a ``ticket_update`` to ``called``;
* a **clerk** opens its window and then calls in cycles: every *interval* seconds
  (jittered, phase-shifted per window) it writes ``start``, ``finish`` and ``call_next``
  in one write (only ``call_next`` when nobody is at the window) and records
  ``(window, number, sent, acked, commands)`` when the ``call_next`` is answered
  (*commands*: 3 with ``start`` and ``finish``, else 1 — each makes one ``window_update``); with
  ``calls`` set it stops after that many calls (the fan-out benchmark's single clerk).

Every process counts the pushes it receives by ``label:type`` (``"phone:ticket_update"``).

With ``reconnect`` (:mod:`benchmarks.phones`), a connection the server closes or drops
comes back as :class:`callsys.client.Device` does: after a jittered delay (uniform in
[d/2, d]) that starts at 0.25 s and doubles to 10 s, through a non-blocking connect,
upgrade and hello driven by the same epoll loop, so the process's clients storm back
together; the process records how many dropped and the time the last one was welcomed
again. Without it a closed connection ends the run with :class:`LoadError`.
"""

from __future__ import annotations

import errno
import heapq
import os
import random
import resource
import select
import socket
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import msgpack
from wsproto import ConnectionType
from wsproto.events import AcceptConnection, RejectConnection, Request
from wsproto.handshake import H11Handshake

from callsys._wsframe import OP_PONG, Close, FrameError, FrameReader, Ping, frame
from callsys.client import BACKOFF_FIRST_S, BACKOFF_MAX_S
from callsys.protocol import MSGPACK

RECEIVE_BYTES = 262144
MAX_MESSAGE = 1 << 20
# The load processes stand in for thousands of devices on other machines: niced, so on a
# shared 2-core box the server under test gets a core when it needs one instead of
# queueing behind its own clients (their receipt times still count in every latency).
LOAD_NICENESS = 10


class LoadError(Exception):
    """The server refused a connection or closed it."""


@dataclass(slots=True)
class Spec:
    """One connection: its *hello*, and for a clerk the calling cycle."""

    label: str  # "led", "tv", "speaker", "phone", "clerk"
    hello: dict[str, Any]
    interval: float = 0.0  # clerk: seconds between calls
    calls: int = 0  # clerk: stop after this many calls (0: until stopped)


class _Dropped(Exception):
    """The server closed or reset one connection (with ``reconnect``: it comes back)."""


@dataclass(slots=True)
class _Conn:
    spec: Spec
    sock: socket.socket
    reader: FrameReader
    state: str = "open"  # reconnecting: "connecting" -> "upgrading" -> "hello" -> "open"
    handshake: H11Handshake | None = None
    delay: float = BACKOFF_FIRST_S  # the next reconnect delay's upper bound
    busy: bool = False  # clerk: someone at the window
    next_at: float = 0.0  # clerk: when to call next
    waiting: dict[int, tuple[float, int]] = field(default_factory=dict)  # clerk: call_next id -> (sent, commands)
    calls: int = 0
    rid: int = 0


def connect(url: str, hello: dict[str, Any]) -> tuple[socket.socket, FrameReader, list[Any]]:
    """Open a WebSocket to *url*, say *hello*; the socket (non-blocking), its reader and the messages after welcome."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    handshake = H11Handshake(ConnectionType.CLIENT)
    sock.sendall(handshake.send(Request(host=parts.netloc, target=parts.path, subprotocols=[MSGPACK])))
    while True:
        data = sock.recv(RECEIVE_BYTES)
        if not data:
            raise LoadError("the server closed during the handshake")
        handshake.receive_data(data)
        event = next(handshake.events(), None)
        if isinstance(event, RejectConnection):
            raise LoadError(f"handshake refused: HTTP {event.status_code}")
        if isinstance(event, AcceptConnection):
            break
    reader = FrameReader(max_message=MAX_MESSAGE, client_frames=False)
    sock.sendall(frame(0x2, msgpack.packb(hello), masked=True))
    pending = bytes(handshake._h11_connection.trailing_data[0])  # noqa: SLF001
    while True:
        messages = [msgpack.unpackb(m) for m in reader.feed(pending) if type(m) is bytes] if pending else []
        if messages:
            if messages[0].get("type") != "welcome":
                raise LoadError(f"hello refused: {messages[0]}")
            sock.setblocking(False)
            return sock, reader, messages[1:]
        pending = sock.recv(RECEIVE_BYTES)
        if not pending:
            raise LoadError("the server closed after hello")


def worker(url: str, specs: list[Spec], pipe: Any, seed: int, reconnect: bool = False) -> None:
    """A load process: connect *specs*, say ready, run until "stop", send back the records."""
    try:
        _work(url, specs, pipe, seed, reconnect)
    except BaseException as exc:
        pipe.send(f"{type(exc).__name__}: {exc}")
        raise


def _work(url: str, specs: list[Spec], pipe: Any, seed: int, reconnect: bool) -> None:
    os.nice(LOAD_NICENESS)
    _raise_open_files()
    rng = random.Random(seed)
    conns: dict[int, _Conn] = {}
    for spec in specs:
        sock, reader, _ = connect(url, spec.hello)
        conns[sock.fileno()] = _Conn(spec, sock, reader)
    records: list[tuple] = []
    calls: list[tuple] = []
    errors: dict[str, int] = {}
    counts: dict[str, int] = {}
    storm = _Storm(url, rng) if reconnect else None
    poller = select.epoll()
    for fd in conns:
        poller.register(fd, select.EPOLLIN)
    poller.register(pipe.fileno(), select.EPOLLIN)
    clerks = [c for c in conns.values() if c.spec.label == "clerk"]
    for c in clerks:
        _send(c, [{"type": "open_window", "id": -1}])
    pipe.send("ready")
    command = pipe.recv()  # "go": clerks start calling
    start = time.monotonic()
    for c in clerks:
        c.next_at = start + rng.random() * c.spec.interval
    packer = msgpack.Packer()
    running = command == "go"
    while running:
        now = time.monotonic()
        timeout = -1.0
        if clerks:
            due = min((c.next_at for c in clerks if not c.waiting and c.next_at and c.state == "open"),
                      default=now + 0.05)
            timeout = max(0.0, min(due - now, 0.05))
        if storm is not None and storm.retries:
            wait = max(0.0, storm.retries[0][0] - now)
            timeout = wait if timeout < 0 else min(timeout, wait)
        for fd, mask in poller.poll(timeout):
            if fd == pipe.fileno():
                running = False
                continue
            c = conns.get(fd)
            if c is None:
                continue
            try:
                if c.state == "connecting":
                    storm.connected(c, poller)
                    continue
                try:
                    data = c.sock.recv(RECEIVE_BYTES)
                except BlockingIOError:
                    continue
                except ConnectionError as exc:
                    raise _Dropped(f"{c.spec.label}: {exc}") from exc
                if not data:
                    raise _Dropped(f"the server closed a {c.spec.label} connection")
                t = time.monotonic()
                if c.state == "upgrading":
                    data = storm.upgraded(c, data)
                for item in c.reader.feed(data):
                    if type(item) is bytes:
                        m = msgpack.unpackb(item)
                        if c.state == "hello":
                            storm.welcomed(c, m, t)
                            continue
                        kind = f"{c.spec.label}:{m.get('type')}"
                        counts[kind] = counts.get(kind, 0) + 1
                        _on_message(c, m, t, records, calls, errors)
                    elif isinstance(item, Ping):
                        c.sock.sendall(frame(OP_PONG, item.payload, masked=True))
                    elif isinstance(item, (Close, FrameError)):
                        raise _Dropped(f"{c.spec.label} closed by the server: {item}")
            except (_Dropped, LoadError, OSError) as exc:
                if storm is None:
                    raise LoadError(str(exc)) from exc
                storm.drop(c, conns, poller, time.monotonic())
        now = time.monotonic()
        if storm is not None:
            storm.retry_due(now, conns, poller)
        for c in clerks:
            if c.next_at and not c.waiting and now >= c.next_at and c.state == "open":
                if c.spec.calls and c.calls >= c.spec.calls:
                    c.next_at = 0.0
                    continue
                messages = [{"type": "start", "id": -2}, {"type": "finish", "id": -3}] if c.busy else []
                c.rid += 1
                messages.append({"type": "call_next", "id": c.rid})
                c.waiting[c.rid] = (time.monotonic(), len(messages))  # each command: one window_update
                try:
                    _send(c, messages, packer)
                except LoadError:
                    if storm is None:
                        raise
                    storm.drop(c, conns, poller, time.monotonic())
                    continue
                c.calls += 1
                c.next_at = now + c.spec.interval * (0.5 + rng.random())
    result = {"records": records, "calls": calls, "errors": errors, "counts": counts}
    if storm is not None:
        result |= {"drops": storm.drops, "down": storm.down, "back_at": storm.back_at, "back": storm.back,
                   "refused": storm.refused}
    pipe.send(result)
    for c in conns.values():
        c.sock.close()


def _raise_open_files() -> None:
    """Soft open-file limit up to the hard one: a process holds thousands of sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class _Storm:
    """Reconnecting a process's dropped connections: backoff, then a non-blocking connect,
    upgrade and hello, each step driven by the worker's epoll loop."""

    def __init__(self, url: str, rng: random.Random) -> None:
        parts = urlsplit(url)
        self.address = (parts.hostname, parts.port)
        self.netloc, self.path = parts.netloc, parts.path
        self.rng = rng
        self.retries: list[tuple[float, int, _Conn]] = []  # heap of (when, tie-break, connection)
        self.drops = 0  # connections lost (each counted once per loss)
        self.down = 0  # connections not welcomed back yet
        self.back_at = 0.0  # monotonic time the last lost connection was welcomed again
        self.back: list[float] = []  # monotonic time of every welcome after a loss
        self.refused = 0  # attempts that failed (refused, reset, 503, hello refused)

    def drop(self, c: _Conn, conns: dict[int, _Conn], poller: select.epoll, now: float) -> None:
        """*c* is gone: close it and schedule its next attempt after a jittered delay."""
        fd = c.sock.fileno()
        if fd >= 0 and conns.get(fd) is c:
            del conns[fd]
            poller.unregister(fd)
        c.sock.close()
        if c.state == "open":
            self.drops += 1
            self.down += 1
            c.delay = BACKOFF_FIRST_S
        else:
            self.refused += 1
        c.state = "waiting"
        c.waiting.clear()  # in-flight commands died with the connection
        heapq.heappush(self.retries, (now + self.rng.uniform(c.delay / 2, c.delay), id(c), c))
        c.delay = min(c.delay * 2, BACKOFF_MAX_S)

    def retry_due(self, now: float, conns: dict[int, _Conn], poller: select.epoll) -> None:
        """Start a non-blocking connect for every connection whose delay is over."""
        while self.retries and self.retries[0][0] <= now:
            _, _, c = heapq.heappop(self.retries)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c.sock, c.state = sock, "connecting"
            c.reader = FrameReader(max_message=MAX_MESSAGE, client_frames=False)
            conns[sock.fileno()] = c
            poller.register(sock.fileno(), select.EPOLLOUT)
            err = sock.connect_ex(self.address)
            if err not in (0, errno.EINPROGRESS):
                self.drop(c, conns, poller, now)

    def connected(self, c: _Conn, poller: select.epoll) -> None:
        """The connect finished: send the upgrade request."""
        err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise _Dropped(os.strerror(err))
        c.handshake = H11Handshake(ConnectionType.CLIENT)
        c.state = "upgrading"
        poller.modify(c.sock.fileno(), select.EPOLLIN)
        self._write(c, c.handshake.send(Request(host=self.netloc, target=self.path, subprotocols=[MSGPACK])))

    def upgraded(self, c: _Conn, data: bytes) -> bytes:
        """Feed the upgrade response; once accepted, say hello. Returns the bytes after it."""
        c.handshake.receive_data(data)
        for event in c.handshake.events():
            if isinstance(event, RejectConnection):
                raise _Dropped(f"handshake refused: HTTP {event.status_code}")
            if isinstance(event, AcceptConnection):
                c.state = "hello"
                self._write(c, frame(0x2, msgpack.packb(c.spec.hello), masked=True))
                return bytes(c.handshake._h11_connection.trailing_data[0])  # noqa: SLF001
        return b""

    def welcomed(self, c: _Conn, m: dict[str, Any], t: float) -> None:
        if m.get("type") != "welcome":
            raise _Dropped(f"hello refused: {m}")
        c.state = "open"
        self.down -= 1
        self.back_at = max(self.back_at, t)
        self.back.append(t)
        if c.spec.label == "clerk":
            c.next_at = t + self.rng.random() * c.spec.interval

    @staticmethod
    def _write(c: _Conn, data: bytes) -> None:
        try:
            c.sock.sendall(data)  # a few hundred bytes into an empty socket buffer
        except OSError as exc:
            raise _Dropped(str(exc)) from exc


def _send(c: _Conn, messages: list[dict[str, Any]], packer: msgpack.Packer | None = None) -> None:
    pack = (packer or msgpack.Packer()).pack
    data = b"".join(frame(0x2, pack(m), masked=True) for m in messages)
    while data:  # small writes: the socket has room; wait for it otherwise
        try:
            sent = c.sock.send(data)
        except BlockingIOError:
            select.select([], [c.sock], [])
            continue
        except OSError as exc:
            if exc.errno in (errno.EPIPE, errno.ECONNRESET):
                raise LoadError("the server dropped a clerk") from exc
            raise
        data = data[sent:]


def _on_message(c: _Conn, m: dict[str, Any], t: float, records: list, calls: list, errors: dict) -> None:
    kind = m.get("type")
    clerk = c.spec.label == "clerk"
    if clerk and kind not in ("ok", "error"):
        return  # a clerk's own window_update and queue_update pushes
    if kind == "window_update":
        if m["event"] == "called":
            records.append((c.spec.label, "window_update", m["window"], m["number"], t))
    elif kind == "announce":
        if not m["recall"]:
            records.append((c.spec.label, "announce", m["window"], m["number"], t))
    elif kind == "ticket_update":
        if m["status"] == "called" and m["event"] == "ticket_called":
            records.append((c.spec.label, "ticket_update", m["window"], m["number"], t))
    elif clerk:
        rid = m.get("id")
        if kind == "error" and rid != -1 and m["code"] != "window_busy":  # -1: open_window of an open window
            errors[m["code"]] = errors.get(m["code"], 0) + 1
        if rid is not None and rid > 0:
            sent = c.waiting.pop(rid, None)
            if kind == "ok" and sent is not None:
                called = next(e for e in m["result"]["events"] if e["kind"] == "ticket_called")
                calls.append((c.spec.hello["window"], called["number"], sent[0], t, sent[1]))
                c.busy = True
            elif kind == "error" and m["code"] == "window_busy":  # a call of an earlier clerk: finish it first
                c.busy, c.next_at = True, t
            else:
                c.busy = False


def spawn(url: str, groups: list[list[Spec]], *, reconnect: bool = False) -> list[tuple[Any, Any]]:
    """Start one :func:`worker` process per group; return ``(process, pipe)`` pairs once every one is ready.

    With *reconnect*, the workers bring dropped connections back (see the module docstring).
    """
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    out = []
    for i, specs in enumerate(groups):
        parent, child = ctx.Pipe()
        process = ctx.Process(target=worker, args=(url, specs, child, i, reconnect), daemon=True)
        process.start()
        out.append((process, parent))
    for process, pipe in out:
        if not pipe.poll(120):
            raise LoadError("a load process did not get ready in 120 s")
        message = pipe.recv()
        if message != "ready":
            raise LoadError(f"a load process failed: {message}")
    return out


def collect(workers: list[tuple[Any, Any]]) -> dict[str, Any]:
    """Stop every worker; their records, calls and error counts merged."""
    for _, pipe in workers:
        pipe.send("stop")
    merged: dict[str, Any] = {"records": [], "calls": [], "errors": {}, "counts": {}, "drops": 0, "down": 0,
                              "back_at": 0.0, "back": [], "refused": 0}
    for process, pipe in workers:
        result = pipe.recv()
        if not isinstance(result, dict):
            raise LoadError(f"a load process failed: {result}")
        merged["records"] += result["records"]
        merged["calls"] += result["calls"]
        for key in ("errors", "counts"):
            for code, n in result[key].items():
                merged[key][code] = merged[key].get(code, 0) + n
        for key in ("drops", "down", "refused"):
            merged[key] += result.get(key, 0)
        merged["back_at"] = max(merged["back_at"], result.get("back_at", 0.0))
        merged["back"] += result.get("back", [])
        process.join(10)
    return merged


def start(workers: list[tuple[Any, Any]]) -> None:
    """Let the clerks call."""
    for _, pipe in workers:
        pipe.send("go")

