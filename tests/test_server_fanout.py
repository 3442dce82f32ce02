"""The call path under fan-out: direct writes, the backlog, order, stalled subscribers, the clerk's turn.

Nothing here waits for time: a stalled subscriber is a real socket whose application does
not read, filled until the server has to queue for it; who went first is read from the
order things were written in, never from a clock. The disconnection of a subscriber whose
queue overflows (4008) is pinned by ``test_server_errors.py``.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any

import msgpack
import pytest
import trio
import trio.testing
from wsproto import ConnectionType
from wsproto.events import AcceptConnection, Request
from wsproto.handshake import H11Handshake

from callsys._wsframe import FrameReader, message_frames
from callsys.protocol import MSGPACK
from callsys.server._websocket import WebSocket, Written, send_nowait
from server_support import TOKENS, client, guard, push_of, server, start_server  # noqa: F401

BIG = 60_000  # bytes of filler per stuffed push: a few fill any socket buffer


async def socket_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    """A connected (server side, client side) pair of TCP streams on 127.0.0.1."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    client_side = await trio.open_tcp_stream("127.0.0.1", port)
    server_side = await listeners[0].accept()
    await listeners[0].aclose()
    return server_side, client_side


def frames_of(reader: FrameReader, data: bytes) -> list[Any]:
    return [msgpack.unpackb(item) if type(item) is bytes else item for item in reader.feed(data)]


# ---------------------------------------------------------------------------- the non-blocking write

async def test_send_nowait_writes_what_the_socket_takes_and_never_blocks():
    server_side, client_side = await socket_pair()
    async with server_side, client_side:
        assert os.get_blocking(server_side.socket.fileno()) is False  # what send_nowait relies on
        assert send_nowait(server_side, b"hello") == 5
        assert await client_side.receive_some(100) == b"hello"
        chunk = b"x" * 1_000_000
        written = [send_nowait(server_side, chunk) for _ in range(200)]  # nobody reads: the socket fills
        assert written[0] > 0 and written[-1] == 0  # it took what it could, then nothing, at once
        assert all(0 <= n <= len(chunk) for n in written)
    assert send_nowait(server_side, b"late") is None  # closed: never another socket's descriptor
    memory = trio.testing.MemorySendStream()
    assert send_nowait(memory, b"x") is None  # not a socket: the caller writes through trio


async def test_a_partial_direct_write_is_finished_before_anything_else_goes_out():
    server_side, client_side = await socket_pair()
    ws = WebSocket(server_side, None, max_message=1 << 20)
    pushes = []
    outcome = Written.SENT
    while outcome is Written.SENT:  # nobody reads: the socket fills, the last push goes in part
        pushes.append(msgpack.packb({"push": len(pushes), "filler": b"x" * BIG}))
        outcome = ws.write_nowait(message_frames((pushes[-1],)))
    assert outcome in (Written.OWED, Written.REFUSED)
    if outcome is Written.REFUSED:  # the socket was full at a frame's end: that push never started
        pushes.pop()
    assert ws.write_nowait(message_frames((b"more",))) is Written.REFUSED  # a backlog or a full socket
    reader = FrameReader(max_message=1 << 20, client_frames=False)
    got: list[Any] = []

    async def read_all() -> None:
        while len(got) < len(pushes) + 1:
            got.extend(frames_of(reader, await client_side.receive_some(1 << 20)))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_all)
        await ws.send((msgpack.packb({"reply": 1}),))  # the rest of the partial push goes first
    assert [m["push"] for m in got[:-1]] == list(range(len(pushes)))  # whole frames, in order
    assert got[-1] == {"reply": 1}
    await server_side.aclose()
    await client_side.aclose()


# ---------------------------------------------------------------------------- over real connections

class StalledDisplay:
    """A display on a raw socket with a small receive buffer whose application reads only when told."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock = sock
        self.reader = FrameReader(max_message=1 << 20, client_frames=False)

    @classmethod
    async def connect(cls, port: int, windows: list[int]) -> "StalledDisplay":
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await sock.connect(("127.0.0.1", port))
        handshake = H11Handshake(ConnectionType.CLIENT)
        await sock.send(handshake.send(Request(host="x", target="/ws", subprotocols=[MSGPACK])))
        display = cls(sock)
        data = b""
        while not any(isinstance(e, AcceptConnection) for e in handshake.events()):
            handshake.receive_data(await sock.recv(65536))
        data = bytes(handshake._h11_connection.trailing_data[0])  # noqa: SLF001
        hello = {"type": "hello", "role": "display", "token": TOKENS["display"], "subscribe": {"windows": windows}}
        payload = msgpack.packb(hello)
        key = os.urandom(4)
        masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        await sock.send(bytes((0x82, 0x80 | len(payload))) + key + masked)
        got = frames_of(display.reader, data) if data else []
        while not any(type(m) is dict and m.get("type") == "board" for m in got):  # subscribed once the board is out
            got += frames_of(display.reader, await sock.recv(65536))
        return display

    async def read_until(self, done) -> list[Any]:
        """Read frames until *done(frames so far)*."""
        got: list[Any] = []
        while not done(got):
            data = await self.sock.recv(1 << 20)
            assert data, "the server closed the connection"
            got += frames_of(self.reader, data)
        return got


@guard(60)
async def test_a_stalled_display_holds_up_neither_the_clerk_nor_the_other_displays(nursery, demo_hall, tmp_path,
                                                                                  mock_clock):
    # trio's clock stands still: the stalled display is never timed out, it is only behind
    server = await start_server(nursery, demo_hall, tmp_path / "hall.db", rate_per_s=1e6, rate_burst=10**6)
    async with client(server, "kiosk") as kiosk, client(server, "display", subscribe={"windows": [7]}) as healthy, \
            client(server, "clerk", window=7) as clerk:
        await push_of(healthy, "board")
        stalled = await StalledDisplay.connect(server.port, [7])
        session = next(s for s in server.sessions if s.role == "display" and s.peer.endswith(
            f":{stalled.sock.getsockname()[1]}"))
        stuffed = 0
        while not session.pushed_queued:  # fill its socket until the server must queue for it
            assert stuffed < 10_000, "the socket never filled"
            session.push(session.frame({"type": "stuffing", "n": stuffed, "filler": b"x" * BIG}))
            stuffed += 1
        await kiosk.request("take_number", service="SOC")
        await clerk.request("open_window")
        called = await clerk.request("call_next")  # answered while the stalled display is behind
        update = await push_of(healthy, "window_update")
        assert update["event"] == "opened"
        update = await push_of(healthy, "window_update")
        assert (update["event"], update["seq"]) == ("called", called["seq"])
        assert not session.killed and session.pushed_queued >= 3  # the stuffing's tail and both updates wait
        # once it reads, it gets everything, whole and in order: the stuffing, then the updates by seq
        got = await stalled.read_until(lambda got: any(type(m) is dict and m.get("event") == "called" for m in got))
        kinds = [(m["type"], m.get("n", m.get("seq"))) for m in got if m["type"] in ("stuffing", "window_update")]
        assert kinds[:stuffed] == [("stuffing", n) for n in range(stuffed)]
        assert [seq for kind, seq in kinds[stuffed:]] == sorted(seq for kind, seq in kinds[stuffed:])
        assert kinds[-1] == ("window_update", called["seq"])
        stalled.sock.close()


@pytest.mark.parametrize("fmt", ["msgpack", "json"])
@guard()
async def test_replies_and_direct_pushes_keep_their_order_on_one_connection(nursery, demo_hall, tmp_path, fmt):
    server = await start_server(nursery, demo_hall, tmp_path / "hall.db", rate_per_s=1e6, rate_burst=10**6)
    async with client(server, "manager", fmt, subscribe={"windows": [1]}) as manager:
        await push_of(manager, "board")
        toggles = 60

        async def ping_meanwhile() -> None:  # replies interleaved with the pushes on the same socket
            for _ in range(toggles):
                assert "server_time" in await manager.request("ping")

        async with trio.open_nursery() as pings:
            pings.start_soon(ping_meanwhile)
            for i in range(toggles):
                await manager.request("open_window" if i % 2 == 0 else "close_window", window=1)
        seqs = []
        while len(seqs) < toggles:
            seqs.append((await push_of(manager, "window_update"))["seq"])
        assert seqs == sorted(seqs) and len(set(seqs)) == toggles
        session = next(s for s in server.sessions if s.role == "manager")
        assert session.pushed_direct > 0  # the direct path carried pushes


class Recorder:
    """A subscriber that records each push it gets in a shared log (and writes nothing anywhere)."""

    def __init__(self, log: list[Any], window: int, binary: bool = True) -> None:
        self.log = log
        self.binary = binary
        self.windows = frozenset({window})
        self.services_seen: dict[str, Any] = {}
        self.writes: list[list[Any]] = []  # the messages of each push call
        self.encoded = 0
        self._reader = FrameReader(max_message=1 << 20, client_frames=False)

    def encode(self, message: dict[str, Any]) -> bytes | str:
        self.encoded += 1
        return msgpack.packb(message) if self.binary else json.dumps(message)

    def push(self, data: bytes) -> None:
        messages = [msgpack.unpackb(m) if type(m) is bytes else json.loads(m) for m in self._reader.feed(data)]
        self.writes.append(messages)
        for message in messages:
            self.log.append(("push", message.get("seq")))


@guard()
async def test_a_message_is_framed_once_per_format_and_consecutive_ones_share_a_write(server):
    log: list[Any] = []
    subs = [Recorder(log, 7, binary=i % 2 == 0) for i in range(6)]
    server.hub.publish(subs, {"type": "x", "seq": 1})
    server.hub.publish(subs, {"type": "x", "seq": 2})  # the same subscribers, right behind
    server.hub.publish(subs[:1], {"type": "x", "seq": 3})  # others: a write of its own
    await trio.testing.wait_all_tasks_blocked()
    assert sum(s.encoded for s in subs) == 2 * 2 + 1  # the shared two x two formats, then the third once
    assert [[m["seq"] for m in w] for w in subs[0].writes] == [[1, 2], [3]]
    assert all([[m["seq"] for m in w] for w in s.writes] == [[1, 2]] for s in subs[1:])
    assert server.hub.pushes == 13


@guard()
async def test_the_clerks_reply_goes_out_within_one_slice_of_a_long_fan_out(nursery, demo_hall, tmp_path):
    slice_size, subscribers = 8, 400
    server = await start_server(nursery, demo_hall, tmp_path / "hall.db", fanout_slice=slice_size)
    log: list[Any] = []
    for _ in range(subscribers):
        server.hub.watch(Recorder(log, 7), [7])
    async with client(server, "kiosk") as kiosk, client(server, "clerk", window=7) as clerk:
        await kiosk.request("take_number", service="SOC")
        await clerk.request("open_window")
        session = server.clerks[7]
        send = session.ws.send

        async def recorded_send(messages):
            log.append(("reply",))
            await send(messages)

        session.ws.send = recorded_send
        called = await clerk.request("call_next")
        await trio.testing.wait_all_tasks_blocked()  # the fan-out never blocks: now it is done
        assert sum(1 for e in log if e == ("push", called["seq"])) == subscribers
        i = log.index(("reply",))
        before = sum(1 for e in log[:i] if e == ("push", called["seq"]))
        assert before <= slice_size  # the reply did not wait for the 400 pushes of its own call


@guard()
async def test_pushes_of_the_last_commits_still_go_out_at_shutdown(demo_hall, tmp_path):
    log: list[Any] = []
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, demo_hall, tmp_path / "hall.db")
        async with client(server, "display", subscribe={"windows": [7]}) as display, \
                client(server, "clerk", window=7) as clerk:
            await push_of(display, "board")
            server.hub.watch(Recorder(log, 7), [7])
            await clerk.request("open_window")
            await trio.testing.wait_all_tasks_blocked()
            server.shutdown()
            await trio.testing.wait_all_tasks_blocked()  # the fan-out task is gone now
            server.hub.publish(server.hub.displays[7], {"type": "window_update", "seq": 99})  # a late commit's push
            assert ("push", 99) in log  # written at once, not left for a task that no longer runs
            assert (await push_of(display, "window_update"))["event"] == "opened"
