"""Bad input of every kind: each gets its typed error or close code, the hall's state is
unchanged, and other clients are still served."""

from __future__ import annotations

import math
import socket
import struct
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import msgpack
import pytest
import trio
from trio.testing import wait_all_tasks_blocked
from trio_websocket import (ConnectionClosed, ConnectionRejected, WebSocketConnection, open_websocket_url,
                            wrap_client_stream)

from callsys.client import FORMATS, Client, ClientError, ConnectionLost, RequestFailed
from callsys.protocol import CODECS, CloseCode, Codec
from server_support import (TOKENS, client, fmt, guard, push_of, server, start_server,  # noqa: F401
                            state_of, still_served, time_flies)


@asynccontextmanager
async def raw(url: str, fmt: str) -> AsyncIterator[tuple[WebSocketConnection, Codec]]:
    """A bare WebSocket speaking *fmt*, to send what the client library never would."""
    codec = CODECS[FORMATS[fmt]]
    async with open_websocket_url(url, subprotocols=[codec.subprotocol]) as ws:
        yield ws, codec


async def hello_fails(server, fmt: str, hello: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Send *hello*; return the error frame and the close code that follows it."""
    async with raw(server.url, fmt) as (ws, codec):
        await ws.send_message(codec.encode(hello))
        reply = codec.decode(await ws.get_message())
        with pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
    return reply, closed.value.reason.code


# ---------------------------------------------------------------------- hello


@pytest.mark.parametrize("hello, code, close", [
    ({"type": "hello", "token": "nope", "role": "kiosk"}, "unauthorized", CloseCode.UNAUTHORIZED),
    ({"type": "hello", "token": TOKENS["kiosk"], "role": "manager"}, "unauthorized", CloseCode.UNAUTHORIZED),
    ({"type": "hello", "role": "phone", "ticket": 1, "secret": "0" * 32}, "unauthorized", CloseCode.UNAUTHORIZED),
    ({"type": "take_number", "service": "SOC"}, "hello_required", CloseCode.HANDSHAKE_FAILED),
    ({"type": "hello", "token": TOKENS["kiosk"], "role": "kiosk", "x": 1}, "unknown_field", CloseCode.HANDSHAKE_FAILED),
    ({"type": "hello", "token": TOKENS["clerk"], "role": "clerk"}, "missing_field", CloseCode.HANDSHAKE_FAILED),
    ({"type": "hello", "token": TOKENS["clerk"], "role": "clerk", "window": 99}, "invalid_field",
     CloseCode.HANDSHAKE_FAILED),
    ({"type": "hello", "token": TOKENS["kiosk"], "role": "kiosk", "window": 1}, "invalid_field",
     CloseCode.HANDSHAKE_FAILED),
    ({"type": "hello", "token": TOKENS["kiosk"], "role": "janitor"}, "invalid_field", CloseCode.HANDSHAKE_FAILED),
    ({"type": "hello", "token": TOKENS["display"], "role": "display", "subscribe": {"zones": ["attic"]}},
     "invalid_field", CloseCode.HANDSHAKE_FAILED),
])
@guard()
async def test_bad_hello_gets_error_then_close(server, fmt, hello, code, close):
    async with client(server, "kiosk", fmt) as kiosk:
        await kiosk.request("take_number", service="SOC")  # a ticket 1 exists for the phone case
        before = state_of(server)
        reply, closed_with = await hello_fails(server, fmt, hello)
        assert (reply["type"], reply["code"], closed_with) == ("error", code, close)
        assert state_of(server) == before
        assert (await kiosk.request("take_number", service="SOC"))["number"] == "C002"


@guard()
async def test_client_library_reports_a_rejected_hello(server, fmt):
    with pytest.raises(RequestFailed) as failed:
        async with client(server, "manager", fmt, token="demo-kiosk"):
            pass
    assert failed.value.code == "unauthorized"


@guard()
async def test_wrong_path_and_missing_subprotocol_are_refused(server):
    with pytest.raises(ConnectionRejected) as wrong_path:
        async with open_websocket_url(server.url.replace("/ws", "/other"), subprotocols=["callsys.v1.json"]):
            pass
    assert wrong_path.value.status_code == 404
    with pytest.raises(ConnectionRejected) as no_protocol:
        async with open_websocket_url(server.url, subprotocols=["chat"]):
            pass
    assert no_protocol.value.status_code == 400
    await still_served(server)


# ---------------------------------------------------------------------- messages


BAD_MESSAGES = [
    ({"type": "fly"}, "unknown_type"),
    ({"type": "call_next"}, "forbidden"),
    ({"type": "stats"}, "forbidden"),
    ({"type": "take_number", "service": "SOC", "colour": "red"}, "unknown_field"),
    ({"type": "take_number", "service": 5}, "invalid_field"),
    ({"type": "take_number", "service": "SOC", "green": "yes"}, "invalid_field"),
    ({"type": "take_number", "service": ""}, "invalid_field"),
    ({"type": "book_slot", "service": "SOC", "slot_start": "10:00"}, "invalid_field"),
    ({"type": "position", "ticket": [1]}, "invalid_field"),
    ({"type": "take_number"}, "missing_field"),
    ({"type": 7}, "invalid_field"),
    ({"type": "hello", "token": TOKENS["kiosk"], "role": "kiosk"}, "unexpected_hello"),
    ({"type": "take_number", "service": "NOPE"}, "unknown_service"),
    ({"type": "take_number", "service": "SOC", "channel": "fax"}, "invalid_argument"),
    ({"type": "book_slot", "service": "SOC", "slot_start": 1e300}, "invalid_slot"),
    ({"type": "cancel", "ticket": "Z999"}, "unknown_ticket"),
]


@pytest.mark.parametrize("message, code", BAD_MESSAGES, ids=[f"{m['type']}-{c}" for m, c in BAD_MESSAGES])
@guard()
async def test_bad_message_gets_typed_error_and_changes_nothing(server, fmt, message, code):
    async with client(server, "kiosk", fmt) as kiosk:
        before = state_of(server)
        await kiosk.send({**message, "id": "bad-1"})
        reply = await kiosk.next_push()
        assert (reply["type"], reply["id"], reply["code"]) == ("error", "bad-1", code)
        assert reply["message"]
        assert state_of(server) == before
        assert (await kiosk.request("ping"))["server_time"] > 0  # the connection still works
    await still_served(server, fmt)


@guard()
async def test_unusable_id_is_reported_without_echo(server, fmt):
    async with client(server, "kiosk", fmt) as kiosk:
        await kiosk.send({"type": "ping", "id": ["not", "an", "id"]})
        reply = await kiosk.next_push()
        assert (reply["code"], reply["details"]["field"], "id" in reply) == ("invalid_field", "id", False)


MALFORMED = {
    "msgpack": [b"\xc1", b"\x92\x01", msgpack.packb([1, 2]), msgpack.packb({"type": "ping"}) + b"\x00",
                '{"type": "ping"}'],
    "json": ['{"type": "ping"', "[1, 2]", '{"type": "take_number", "service": "SOC", "green": NaN}', "",
             b'{"type": "ping"}'],
}


@guard()
async def test_malformed_frames_get_malformed_errors(server, fmt):
    async with client(server, "kiosk", fmt) as kiosk:
        before = state_of(server)
        for frame in MALFORMED[fmt]:
            await kiosk.send_raw(frame)
            reply = await kiosk.next_push()
            assert (reply["type"], reply["code"]) == ("error", "malformed"), frame
        assert state_of(server) == before
        assert (await kiosk.request("take_number", service="SOC"))["number"] == "C001"


@guard()
async def test_oversize_frame_closes_with_1009_and_others_carry_on(server, fmt):
    async with client(server, "kiosk", fmt) as bystander:
        before = state_of(server)
        async with client(server, "kiosk", fmt) as big:
            padding = "x" * (server.settings.max_frame_bytes + 1)
            await big.send_raw(padding.encode() if fmt == "msgpack" else padding)
            with pytest.raises(ConnectionLost) as lost:
                await big.next_push()
        assert lost.value.close_code == CloseCode.MESSAGE_TOO_BIG
        assert state_of(server) == before
        assert (await bystander.request("take_number", service="SOC"))["number"] == "C001"


# ---------------------------------------------------------------------- limits


@guard()
async def test_flood_past_the_rate_limit_is_not_executed(nursery, demo_hall, tmp_path, fmt):
    server = await start_server(nursery, demo_hall, tmp_path / "hall.db", rate_per_s=0.001, rate_burst=5)
    replies: list[str] = []
    async with client(server, "kiosk", fmt) as flooder:
        async def take() -> None:
            try:
                await flooder.request("take_number", service="SOC")
                replies.append("ok")
            except RequestFailed as exc:
                replies.append(exc.code)

        async with trio.open_nursery() as burst:
            for _ in range(20):
                burst.start_soon(take)
    assert sorted(replies) == ["ok"] * 5 + ["rate_limited"] * 15
    assert server.engine.statistics().tickets == 5
    await still_served(server, fmt)
    assert server.engine.statistics().tickets == 6


@guard()
async def test_idle_connections_are_closed(nursery, demo_hall, tmp_path, fmt, mock_clock):
    # trio's clock stands still while the test talks, and runs only inside time_flies
    server = await start_server(nursery, demo_hall, tmp_path / "hall.db", idle_timeout_s=1.5, hello_timeout_s=1.0)
    async with raw(server.url, fmt) as (ws, codec):
        with time_flies(mock_clock), pytest.raises(ConnectionClosed) as silent:
            await ws.get_message()  # never says hello
    assert silent.value.reason.code == CloseCode.IDLE_TIMEOUT and "no hello" in silent.value.reason.reason
    async with raw(server.url, fmt) as (ws, codec):
        await ws.send_message(codec.encode({"type": "hello", "token": TOKENS["kiosk"], "role": "kiosk"}))
        assert codec.decode(await ws.get_message())["type"] == "welcome"
        with time_flies(mock_clock), pytest.raises(ConnectionClosed) as idle:
            await ws.get_message()
    assert idle.value.reason.code == CloseCode.IDLE_TIMEOUT and "no message" in idle.value.reason.reason


@guard()
async def test_keepalive_pings_hold_a_quiet_connection_open(nursery, demo_hall, tmp_path, fmt, mock_clock):
    idle = 1.5
    server = await start_server(nursery, demo_hall, tmp_path / "hall.db", idle_timeout_s=idle)
    async with client(server, "kiosk", fmt) as kept:
        pings = answered_pings(kept)
        await wait_all_tasks_blocked()  # the keepalive has started: its first ping is due in idle / 3
        for _ in range(7):  # 3.5 s of the server's clock without a command: over twice the idle timeout
            mock_clock.jump(idle / 3)  # the client's next ping is due ...
            await pings.receive()  # ... and answered; only then does the clock move on
        assert (await kept.request("take_number", service="SOC"))["number"] == "C001"


def answered_pings(c: Client) -> trio.MemoryReceiveChannel:
    """Spy on *c*'s keepalive: each of its pings arrives here once the server answered it.

    Delivered just before the keepalive goes back to sleep, with no checkpoint between: when
    the test sees a ping, the next one is already due one interval after the current time.
    """
    send, receive = trio.open_memory_channel[Any](math.inf)
    request = c.request

    async def spying(kind: str, **fields: Any) -> Any:
        try:
            result = await request(kind, **fields)
        except ClientError:
            send.close()  # the connection is gone: the test's wait for a ping fails at once
            raise
        if kind == "ping":
            send.send_nowait(result)
        return result

    c.request = spying  # type: ignore[method-assign]
    return receive


@asynccontextmanager
async def stalled_display(server, nursery: trio.Nursery) -> AsyncIterator[WebSocketConnection]:
    """A display with a tiny receive buffer whose application never reads."""
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.connect(("127.0.0.1", server.port))
    ws = await wrap_client_stream(nursery, trio.SocketStream(sock), "127.0.0.1", "/ws",
                                  subprotocols=[CODECS[FORMATS["msgpack"]].subprotocol])
    hello = {"type": "hello", "token": TOKENS["display"], "role": "display", "subscribe": {"windows": [1]}}
    await ws.send_message(msgpack.packb(hello))
    yield ws


@guard(60)
async def test_slow_display_is_disconnected_without_holding_up_others(nursery, demo_hall, tmp_path, mock_clock):
    # trio's clock stands still: nothing here waits for time, and the server's close timeout
    # cannot cut the slow display's last frame short however long the test takes to read it
    server = await start_server(nursery, demo_hall, tmp_path / "hall.db", outbox_frames=8, rate_per_s=1e6,
                                rate_burst=10**6)
    async with client(server, "display", subscribe={"windows": [1]}) as healthy, \
            client(server, "manager") as manager, stalled_display(server, nursery) as slow:
        toggles = 0
        while not any(s.killed for s in server.sessions if s.role == "display"):
            assert toggles < 20_000, "the stalled display was never dropped"
            toggles += 1
            await manager.request("open_window" if toggles % 2 else "close_window", window=1)
            assert (await push_of(healthy, "window_update"))["seq"] == toggles  # never held up
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await slow.get_message()
        assert closed.value.reason.code == CloseCode.SLOW_CONSUMER
        assert server.engine.state.windows[1].status == ("open" if toggles % 2 else "closed")
        await still_served(server)


HANDSHAKE = (b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
             b"Sec-WebSocket-Protocol: callsys.v1.json\r\n\r\n")
HOSTILE = {
    "not http": (b"\x00\x01garbage\r\n\r\n", False),
    "reset mid-request": (b"GET /ws HTTP/1.1\r\nHost:", True),
    "reset after handshake": (HANDSHAKE, True),
    "unmasked frame": (HANDSHAKE + b"\x81\x05hello", False),
    "reserved opcode": (HANDSHAKE + b"\x83\x85abcd12345", False),
    "absurd frame length": (HANDSHAKE + b"\x82\xff\x7f" + b"\xff" * 7 + b"abcd", False),
    "silent close": (HANDSHAKE, False),
}


@pytest.mark.parametrize("data, reset", HOSTILE.values(), ids=HOSTILE.keys())
@guard()
async def test_hostile_tcp_clients_never_reach_the_others(server, data, reset):
    async with client(server, "kiosk") as bystander:
        before = state_of(server)
        sock = trio.socket.socket()
        await sock.connect(("127.0.0.1", server.port))
        await sock.send(data)
        if reset:  # RST instead of FIN
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            with trio.move_on_after(0.2):
                while await sock.recv(4096):
                    pass
        sock.close()
        assert state_of(server) == before
        assert (await bystander.request("take_number", service="SOC"))["number"] == "C001"
    await still_served(server)
