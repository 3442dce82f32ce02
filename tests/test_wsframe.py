"""The hand-written WebSocket framing of established server connections (callsys._wsframe,
callsys.server._websocket): the pure frame reader and writer, then the real server against
independent clients — trio-websocket, and wsproto for what trio-websocket never sends
(fragmented messages, pings between fragments)."""

from __future__ import annotations

import itertools
import socket
import struct
import tracemalloc

import msgpack
import pytest
import trio
from hypothesis import given, settings, strategies as st
from trio_websocket import ConnectionClosed, open_websocket_url
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Ping, Pong, Request

from callsys import _wsframe as wf
from callsys.protocol import CloseCode
from server_support import TOKENS, guard, server, start_server, still_served, time_flies  # noqa: F401

KEY = b"\x01\x02\x03\x04"


def client_frame(op: int, payload: bytes, *, fin: bool = True, masked: bool = True, rsv: int = 0,
                 key: bytes = KEY) -> bytes:
    """A client frame built by hand, to say exactly what is on the wire."""
    n = len(payload)
    b0 = (0x80 if fin else 0) | rsv | op
    bit = 0x80 if masked else 0
    head = (bytes((b0, bit | n)) if n < 126 else struct.pack("!BBH", b0, bit | 126, n) if n < 65536
            else struct.pack("!BBQ", b0, bit | 127, n))
    return head + (key + wf.mask(payload, key) if masked else payload)


def reader(max_message: int = 1000) -> wf.FrameReader:
    return wf.FrameReader(max_message=max_message)


# ---------------------------------------------------------------------- the pure reader and writer


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_every_length_encoding_round_trips(size):
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    data = wf.message_frames([payload, payload.decode("latin-1")], masked=True)
    assert reader(10**6).feed(data) == [payload, payload.decode("latin-1")]
    assert wf.FrameReader(max_message=10**6, client_frames=False).feed(wf.message_frames([payload])) == [payload]


def test_bytes_arriving_one_at_a_time_give_the_same_messages():
    data = client_frame(wf.OP_BINARY, b"abc") + client_frame(wf.OP_TEXT, "社保".encode()) + client_frame(wf.OP_PING, b"p")
    r = reader()
    out = [item for i in range(len(data)) for item in r.feed(data[i:i + 1])]
    assert out == [b"abc", "社保", wf.Ping(b"p")]


def test_fragments_join_and_control_frames_may_come_between():
    data = (client_frame(wf.OP_TEXT, "社".encode()[:2], fin=False) + client_frame(wf.OP_PING, b"x")
            + client_frame(wf.OP_CONTINUATION, "社".encode()[2:], fin=False)
            + client_frame(wf.OP_CONTINUATION, b"!"))
    assert reader().feed(data) == [wf.Ping(b"x"), "社!"]


def test_close_frames_carry_code_and_reason():
    assert reader().feed(client_frame(wf.OP_CLOSE, struct.pack("!H", 4001) + b"bye")) == [
        wf.Close(4001, "bye", struct.pack("!H", 4001) + b"bye")]
    assert reader().feed(client_frame(wf.OP_CLOSE, b"")) == [wf.Close(wf.CLOSE_NO_STATUS, "", b"")]


VIOLATIONS = {
    "unmasked client frame": (client_frame(wf.OP_BINARY, b"x", masked=False), wf.CLOSE_PROTOCOL_ERROR),
    "reserved bits": (client_frame(wf.OP_BINARY, b"x", rsv=0x40), wf.CLOSE_PROTOCOL_ERROR),
    "reserved opcode": (client_frame(0x3, b"x"), wf.CLOSE_PROTOCOL_ERROR),
    "long control frame": (client_frame(wf.OP_PING, b"x" * 126), wf.CLOSE_PROTOCOL_ERROR),
    "fragmented control frame": (client_frame(wf.OP_PING, b"x", fin=False), wf.CLOSE_PROTOCOL_ERROR),
    "continuation of nothing": (client_frame(wf.OP_CONTINUATION, b"x"), wf.CLOSE_PROTOCOL_ERROR),
    "new message mid-message": (client_frame(wf.OP_TEXT, b"x", fin=False) + client_frame(wf.OP_TEXT, b"y"),
                                wf.CLOSE_PROTOCOL_ERROR),
    "one-byte close": (client_frame(wf.OP_CLOSE, b"\x03"), wf.CLOSE_PROTOCOL_ERROR),
    "close code 1005": (client_frame(wf.OP_CLOSE, struct.pack("!H", 1005)), wf.CLOSE_PROTOCOL_ERROR),
    "close code 999": (client_frame(wf.OP_CLOSE, struct.pack("!H", 999) + b"x"), wf.CLOSE_PROTOCOL_ERROR),
    "close code 5000": (client_frame(wf.OP_CLOSE, struct.pack("!H", 5000)), wf.CLOSE_PROTOCOL_ERROR),
    "close reason not utf-8": (client_frame(wf.OP_CLOSE, struct.pack("!H", 1000) + b"\xff"), wf.CLOSE_INVALID_DATA),
    "text not utf-8": (client_frame(wf.OP_TEXT, b"\xff\xfe"), wf.CLOSE_INVALID_DATA),
    "too many characters": (client_frame(wf.OP_TEXT, b"x" * 1001), wf.CLOSE_TOO_BIG),
    "too many bytes": (client_frame(wf.OP_BINARY, b"x" * 1001), wf.CLOSE_TOO_BIG),
    "too big in fragments": (client_frame(wf.OP_BINARY, b"x" * 600, fin=False)
                             + client_frame(wf.OP_CONTINUATION, b"x" * 600), wf.CLOSE_TOO_BIG),
}


@pytest.mark.parametrize("data, code", VIOLATIONS.values(), ids=VIOLATIONS.keys())
def test_protocol_violations_end_with_a_frame_error_after_the_valid_messages(data, code):
    out = reader().feed(client_frame(wf.OP_BINARY, b"ok") + data)
    assert out[0] == b"ok" and isinstance(out[-1], wf.FrameError) and out[-1].code == code


def test_nothing_after_a_close_frame_or_a_violation_is_parsed():
    r = reader()
    out = r.feed(client_frame(wf.OP_CLOSE, b"") + client_frame(wf.OP_BINARY, b"late") + b"\x00garbage")
    assert out == [wf.Close(wf.CLOSE_NO_STATUS, "", b"")]
    assert r.feed(client_frame(wf.OP_BINARY, b"later")) == []  # the reader is spent
    r = reader()
    (error,) = r.feed(client_frame(wf.OP_BINARY, b"x", masked=False) + client_frame(wf.OP_PING, b"p"))
    assert error.code == wf.CLOSE_PROTOCOL_ERROR
    assert r.feed(client_frame(wf.OP_CLOSE, b"")) == []


def test_invalid_utf8_fails_at_the_fragment_that_makes_it_invalid():
    r = reader()
    assert r.feed(client_frame(wf.OP_TEXT, "κόσμε".encode(), fin=False)) == []
    assert r.feed(client_frame(wf.OP_CONTINUATION, b"\xf4", fin=False)) == []  # may still become valid
    (error,) = r.feed(client_frame(wf.OP_CONTINUATION, b"\x90", fin=False))  # F4 90: never valid
    assert error.code == wf.CLOSE_INVALID_DATA


def test_a_surrogate_fails_at_its_second_byte():
    r = reader()
    assert r.feed(client_frame(wf.OP_TEXT, b"ok\xed", fin=False)) == []
    (error,) = r.feed(client_frame(wf.OP_CONTINUATION, b"\xa0", fin=False))
    assert error.code == wf.CLOSE_INVALID_DATA


def test_invalid_utf8_fails_inside_a_frame_at_the_read_that_brings_it():
    data = client_frame(wf.OP_TEXT, "κόσμε".encode() + b"\xf4\x90\x80\x80" + b"edited")
    r = reader()
    assert r.feed(data[:2 + 4 + 11]) == []  # header, key, the valid part
    (error,) = r.feed(data[2 + 4 + 11:2 + 4 + 13])  # the frame is not complete yet
    assert error.code == wf.CLOSE_INVALID_DATA


def test_a_text_message_cut_inside_its_last_character_is_invalid():
    (error,) = reader().feed(client_frame(wf.OP_TEXT, "社".encode(), fin=False)
                             + client_frame(wf.OP_CONTINUATION, "保".encode()[:2]))
    assert error.code == wf.CLOSE_INVALID_DATA


def test_a_frame_over_many_reads_is_buffered_linearly():
    """The bytes allocated while a 4 MiB frame arrives in 512 reads stay within a few times
    its size. Re-joining the buffer on each read allocated ~256 times its size (the sum of
    a growing copy per read): quadratic in the number of reads."""
    size, read = 4 * 2**20, 8192
    payload = bytes(range(256)) * (size // 256)
    wire = client_frame(wf.OP_BINARY, payload, key=b"\x9a\x3c\x51\xe7")
    reads = [wire[i:i + read] for i in range(0, len(wire), read)]
    r = reader(size)
    out = []
    allocated = 0  # per read: the peak of traced memory above its level before the read
    tracemalloc.start()
    try:
        for data in reads:
            before = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            out += r.feed(data)
            allocated += tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert out == [payload]
    assert allocated < 16 * size, f"{allocated / size:.0f} x the frame allocated"


def test_an_oversize_frame_is_refused_from_its_header_alone():
    header = struct.pack("!BBQ", 0x82, 0x80 | 127, 2**40)  # no payload follows, and none is awaited
    (error,) = reader().feed(header)
    assert isinstance(error, wf.FrameError) and error.code == wf.CLOSE_TOO_BIG


def test_text_limit_counts_characters_not_bytes():
    three_byte = "社" * 1000  # 3,000 bytes, 1,000 characters: allowed with max_message=1000
    assert reader().feed(client_frame(wf.OP_TEXT, three_byte.encode())) == [three_byte]


def test_masked_server_frames_are_refused_by_a_client_reader():
    (error,) = wf.FrameReader(max_message=100, client_frames=False).feed(wf.frame(wf.OP_BINARY, b"x", masked=True))
    assert error.code == wf.CLOSE_PROTOCOL_ERROR


def test_close_frame_reason_is_cut_to_fit_a_control_frame():
    data = wf.close_frame(4000, "é" * 100)  # 200 bytes of reason; whole characters are kept
    n = len(data) - 2
    assert n <= wf.MAX_CONTROL_PAYLOAD and data[1] == n
    close = reader().feed(data[:1] + bytes((0x80 | n,)) + KEY + wf.mask(data[2:], KEY))[0]
    assert (close.code, close.reason) == (4000, "é" * 61)


# ---------------------------------------------------------------------- the server, with real clients


HELLO = {"type": "hello", "role": "kiosk", "token": TOKENS["kiosk"]}


class WsprotoClient:
    """A wsproto client on a plain socket: sends fragments and pings trio-websocket cannot."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.events: list = []

    @classmethod
    async def open(cls, port: int) -> "WsprotoClient":
        client = cls(await trio.open_tcp_stream("127.0.0.1", port))
        await client.send(Request(host="127.0.0.1", target="/ws", subprotocols=["callsys.v1.msgpack"]))
        assert isinstance(await client.next_event(), AcceptConnection)
        await client.send(BytesMessage(msgpack.packb(HELLO)))
        assert msgpack.unpackb((await client.next_event()).data)["type"] == "welcome"
        return client

    async def send(self, *events) -> None:
        await self.stream.send_all(b"".join(self.ws.send(e) for e in events))

    async def next_event(self):
        while not self.events:
            data = await self.stream.receive_some(65536)
            self.ws.receive_data(data or None)
            self.events.extend(self.ws.events())
        return self.events.pop(0)


@guard()
async def test_fragmented_messages_with_pings_between_are_served(server):
    c = await WsprotoClient.open(server.port)
    frame = msgpack.packb({"type": "take_number", "id": 1, "service": "SOC"})
    await c.send(BytesMessage(frame[:5], message_finished=False), Ping(b"between"),
                 BytesMessage(frame[5:9], message_finished=False), BytesMessage(frame[9:]))
    assert await c.next_event() == Pong(b"between")
    reply = msgpack.unpackb((await c.next_event()).data)
    assert (reply["id"], reply["result"]["number"]) == (1, "C001")
    await c.send(CloseConnection(code=1000, reason="done"))
    closed = await c.next_event()
    assert isinstance(closed, CloseConnection) and closed.code == 1000  # the server echoes the close
    assert await c.stream.receive_some(10) == b""  # then drops the TCP connection
    await still_served(server)


@guard()
async def test_trio_websocket_ping_pong_and_close_handshake(server):
    async with open_websocket_url(server.url, subprotocols=["callsys.v1.msgpack"]) as ws:
        await ws.send_message(msgpack.packb(HELLO))
        assert msgpack.unpackb(await ws.get_message())["type"] == "welcome"
        await ws.ping(b"are you there")  # returns once the matching pong arrived
        await ws.aclose(code=1000, reason="bye")  # returns once the server answered the close
        assert ws.closed.code == 1000


@guard()
async def test_pipelined_requests_past_max_in_flight_are_answered_in_order(nursery, demo_hall, tmp_path):
    srv = await start_server(nursery, demo_hall, tmp_path / "hall.db", max_in_flight=8, rate_burst=1000)
    requests = [{"type": "take_number", "id": i, "service": "SOC"} if i % 3 else {"type": "ping", "id": i}
                for i in range(100)]
    c = await WsprotoClient.open(srv.port)
    await c.stream.send_all(b"".join(c.ws.send(BytesMessage(msgpack.packb(r))) for r in requests))  # one write
    replies = [msgpack.unpackb((await c.next_event()).data) for _ in requests]
    assert [r["id"] for r in replies] == list(range(100))
    assert all(r["type"] == "ok" for r in replies)
    numbers = [r["result"]["number"] for r in replies if "number" in r["result"]]
    assert numbers == [f"C{n:03d}" for n in range(1, 67)]


@guard()
async def test_large_frames_use_16_and_64_bit_lengths(nursery, demo_hall, tmp_path):
    srv = await start_server(nursery, demo_hall, tmp_path / "hall.db", max_frame_bytes=100_000)
    async with open_websocket_url(srv.url, subprotocols=["callsys.v1.json"]) as ws:
        await ws.send_message('{"type": "hello", "role": "kiosk", "token": "%s"}' % TOKENS["kiosk"])
        await ws.get_message()
        for size in (1000, 70_000):  # a JSON string too long for a field: an error reply, no close
            await ws.send_message('{"type": "take_number", "service": "%s"}' % ("社" * size))
            assert '"invalid_field"' in await ws.get_message()


@pytest.mark.parametrize("data, code", [
    (client_frame(wf.OP_BINARY, b"x", masked=False), 1002),
    (client_frame(wf.OP_TEXT, b"\xff"), 1007),
], ids=["unmasked", "bad utf-8"])
@guard()
async def test_protocol_violations_close_the_connection_with_their_code(server, data, code):
    c = await WsprotoClient.open(server.port)
    await c.stream.send_all(data)
    closed = await c.next_event()
    assert isinstance(closed, CloseConnection) and closed.code == code
    await still_served(server)


@guard()
async def test_a_client_that_never_answers_the_close_is_dropped(nursery, demo_hall, tmp_path, mock_clock):
    srv = await start_server(nursery, demo_hall, tmp_path / "hall.db", hello_timeout_s=0.5)
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    await sock.connect(("127.0.0.1", srv.port))
    ws = WSConnection(ConnectionType.CLIENT)
    await sock.send(ws.send(Request(host="x", target="/ws", subprotocols=["callsys.v1.msgpack"])))
    received = b""
    while b"\r\n\r\n" not in received:  # the 101; trio's clock stands still, so no timeout runs yet
        data = await sock.recv(65536)
        assert data, "closed before the handshake"
        received += data
    with time_flies(mock_clock):
        while data := await sock.recv(65536):  # the idle close (4002); we never answer it
            received += data
    ws.receive_data(received)
    events = list(ws.events())
    assert isinstance(events[0], AcceptConnection) and events[1].code == CloseCode.IDLE_TIMEOUT
    sock.close()
    await still_served(srv)


@guard()
async def test_trio_websocket_sees_the_servers_close_code(nursery, demo_hall, tmp_path, mock_clock):
    srv = await start_server(nursery, demo_hall, tmp_path / "hall.db", hello_timeout_s=0.3)
    async with open_websocket_url(srv.url, subprotocols=["callsys.v1.msgpack"]) as ws:  # clock still: no timeout
        with time_flies(mock_clock), pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
    assert closed.value.reason.code == CloseCode.IDLE_TIMEOUT


# ---------------------------------------------------------------------- property: any framing, any chunking

_message = st.one_of(st.binary(max_size=300), st.text(max_size=200))


@settings(max_examples=300, deadline=None)
@given(messages=st.lists(_message, max_size=8), data=st.data())
def test_any_fragmentation_and_chunking_yields_the_messages_in_order(messages, data):
    """Any message split into any frames, with any masking keys, cut into reads anywhere."""
    wire, expected = b"", []
    for m in messages:
        payload, op = (m, wf.OP_BINARY) if isinstance(m, bytes) else (m.encode(), wf.OP_TEXT)
        cuts = sorted(data.draw(st.lists(st.integers(0, len(payload)), max_size=3)))
        pieces = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, len(payload)])]
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            wire += client_frame(op if i == 0 else wf.OP_CONTINUATION, piece, fin=last,
                                 key=data.draw(st.binary(min_size=4, max_size=4)))
            if last:
                expected.append(m)
            if data.draw(st.booleans()):  # a ping between fragments (or messages)
                wire += client_frame(wf.OP_PING, b"p")
                expected.append(wf.Ping(b"p"))
    r = wf.FrameReader(max_message=1000)
    sizes = itertools.cycle(data.draw(st.lists(st.integers(1, 80), min_size=1, max_size=6)))
    out, i = [], 0
    while i < len(wire):
        n = next(sizes)
        out += r.feed(wire[i:i + n])
        i += n
    assert out == expected
