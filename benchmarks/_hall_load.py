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
"""

from __future__ import annotations

import errno
import os
import random
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


@dataclass(slots=True)
class _Conn:
    spec: Spec
    sock: socket.socket
    reader: FrameReader
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


def worker(url: str, specs: list[Spec], pipe: Any, seed: int) -> None:
    """A load process: connect *specs*, say ready, run until "stop", send back the records."""
    try:
        _work(url, specs, pipe, seed)
    except BaseException as exc:
        pipe.send(f"{type(exc).__name__}: {exc}")
        raise


def _work(url: str, specs: list[Spec], pipe: Any, seed: int) -> None:
    os.nice(LOAD_NICENESS)
    rng = random.Random(seed)
    conns: dict[int, _Conn] = {}
    for spec in specs:
        sock, reader, _ = connect(url, spec.hello)
        conns[sock.fileno()] = _Conn(spec, sock, reader)
    records: list[tuple] = []
    calls: list[tuple] = []
    errors: dict[str, int] = {}
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
        timeout = -1
        if clerks:
            due = min((c.next_at for c in clerks if not c.waiting and c.next_at), default=now + 0.05)
            timeout = max(0.0, min(due - now, 0.05))
        for fd, _ in poller.poll(timeout):
            if fd == pipe.fileno():
                running = False
                continue
            c = conns[fd]
            try:
                data = c.sock.recv(RECEIVE_BYTES)
            except BlockingIOError:
                continue
            if not data:
                raise LoadError(f"the server closed a {c.spec.label} connection")
            t = time.monotonic()
            for item in c.reader.feed(data):
                if type(item) is bytes:
                    _on_message(c, msgpack.unpackb(item), t, records, calls, errors)
                elif isinstance(item, Ping):
                    c.sock.sendall(frame(OP_PONG, item.payload, masked=True))
                elif isinstance(item, (Close, FrameError)):
                    raise LoadError(f"{c.spec.label} closed by the server: {item}")
        now = time.monotonic()
        for c in clerks:
            if c.next_at and not c.waiting and now >= c.next_at:
                if c.spec.calls and c.calls >= c.spec.calls:
                    c.next_at = 0.0
                    continue
                messages = [{"type": "start", "id": -2}, {"type": "finish", "id": -3}] if c.busy else []
                c.rid += 1
                messages.append({"type": "call_next", "id": c.rid})
                c.waiting[c.rid] = (time.monotonic(), len(messages))  # each command: one window_update
                _send(c, messages, packer)
                c.calls += 1
                c.next_at = now + c.spec.interval * (0.5 + rng.random())
    pipe.send({"records": records, "calls": calls, "errors": errors})
    for c in conns.values():
        c.sock.close()


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


def spawn(url: str, groups: list[list[Spec]]) -> list[tuple[Any, Any]]:
    """Start one :func:`worker` process per group; return ``(process, pipe)`` pairs once every one is ready."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    out = []
    for i, specs in enumerate(groups):
        parent, child = ctx.Pipe()
        process = ctx.Process(target=worker, args=(url, specs, child, i), daemon=True)
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
    merged: dict[str, Any] = {"records": [], "calls": [], "errors": {}}
    for process, pipe in workers:
        result = pipe.recv()
        if not isinstance(result, dict):
            raise LoadError(f"a load process failed: {result}")
        merged["records"] += result["records"]
        merged["calls"] += result["calls"]
        for code, n in result["errors"].items():
            merged["errors"][code] = merged["errors"].get(code, 0) + n
        process.join(10)
    return merged


def start(workers: list[tuple[Any, Any]]) -> None:
    """Let the clerks call."""
    for _, pipe in workers:
        pipe.send("go")

