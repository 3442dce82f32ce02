"""RFC 6455 conformance of the server's WebSocket layer, frame by frame on a raw TCP socket.

The client here is written by hand — HTTP upgrade, framing, masking, parsing the server's
frames — so the tests depend on nothing the server uses (neither ``callsys._wsframe`` nor
wsproto). Each class of the conformance defects of issue 7 has its tests (the Autobahn
|Testsuite cases they correspond to are named):

* close codes RFC 6455 section 7.4 forbids fail the connection with 1002 (7.3.x, 7.9.x,
  7.13.x); the server never sends a forbidden code;
* after a violation the server sends its close frame and drops TCP without waiting for the
  client's close (5.14, 7.3.2, 7.3.6, 7.5.1); after a close handshake it drops TCP first;
* invalid UTF-8 in a fragmented text message fails at the fragment that makes it invalid,
  and inside a frame at the read that makes it invalid (6.4.x);
* messages read together with a later bad frame or close frame are answered first.

"Drops TCP without waiting" is tested without clocks: the close timeout is made an hour
(``slow_close``), so a server that waited for the client would hang the test until its
guard fails it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from contextlib import asynccontextmanager

import msgpack
import pytest
import trio

from callsys import _wsframe as wf
from callsys.protocol import CloseCode
from callsys.server import session as session_module
from server_support import TOKENS, guard, server, start_server, still_served  # noqa: F401

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
DROPPED = None  # what RawClient.frame() returns once the server dropped the TCP connection


def xor(payload: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def client_frame(op: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, masked: bool = True,
                 length: int | None = None) -> bytes:
    """A client frame exactly as given (*length* overrides the announced payload length)."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | rsv | op
    bit = 0x80 if masked else 0
    head = (bytes((b0, bit | n)) if n < 126 else struct.pack("!BBH", b0, bit | 126, n) if n < 65536
            else struct.pack("!BBQ", b0, bit | 127, n))
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + xor(payload, key)


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


class RawClient:
    """A WebSocket client on a plain TCP stream, every byte of it written here."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = b""

    async def handshake(self, subprotocol: str, hello: bool) -> None:
        """The HTTP upgrade offering *subprotocol*, then (with *hello*) a kiosk's hello and its welcome."""
        c = self
        key = base64.b64encode(os.urandom(16))
        await c.stream.send_all(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                                b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key
                                + b"\r\nSec-WebSocket-Protocol: " + subprotocol.encode() + b"\r\n\r\n")
        while b"\r\n\r\n" not in c.buf:
            c.buf += await c.stream.receive_some(4096)
        response, c.buf = c.buf.split(b"\r\n\r\n", 1)
        status, *lines = response.split(b"\r\n")
        headers = {name.strip().lower(): value.strip() for name, value in (line.split(b":", 1) for line in lines)}
        assert status.startswith(b"HTTP/1.1 101 ")
        assert headers[b"sec-websocket-accept"] == base64.b64encode(hashlib.sha1(key + GUID).digest())
        assert headers[b"sec-websocket-protocol"] == subprotocol.encode()
        if hello:
            hello_message = {"type": "hello", "role": "kiosk", "token": TOKENS["kiosk"]}
            if subprotocol.endswith("json"):
                await c.send(client_frame(TEXT, json.dumps(hello_message).encode()))
            else:
                await c.send(client_frame(BINARY, msgpack.packb(hello_message)))
            assert c.decode(await c.frame())["type"] == "welcome"

    async def send(self, *frames: bytes) -> None:
        """*frames* in one write."""
        await self.stream.send_all(b"".join(frames))

    async def send_bytewise(self, data: bytes) -> None:
        """*data* one byte per write (Autobahn's "octet-wise chops"); stops if the server dropped us."""
        for i in range(len(data)):
            try:
                await self.stream.send_all(data[i:i + 1])
            except trio.BrokenResourceError:
                return

    async def _fill(self, n: int) -> bool:
        while len(self.buf) < n:
            try:
                data = await self.stream.receive_some(65536)
            except trio.BrokenResourceError:  # reset by the server: dropped as well
                data = b""
            if not data:
                return False
            self.buf += data
        return True

    async def frame(self) -> tuple[int, bytes] | None:
        """The server's next frame as (opcode, payload); DROPPED once it closed the TCP connection."""
        if not await self._fill(2):
            assert self.buf == b"", "the server dropped the connection in the middle of a frame"
            return DROPPED
        b0, b1 = self.buf[0], self.buf[1]
        assert b0 & 0x80 and not b0 & 0x70, "the server sends final frames without reserved bits"
        assert not b1 & 0x80, "server frames are never masked"
        n, head = b1 & 0x7F, 2
        if n == 126:
            assert await self._fill(4)
            n, head = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            assert await self._fill(10)
            n, head = struct.unpack("!Q", self.buf[2:10])[0], 10
        assert await self._fill(head + n)
        payload, self.buf = self.buf[head:head + n], self.buf[head + n:]
        return b0 & 0x0F, payload

    async def close_frame(self) -> tuple[int | None, str]:
        """The server's close frame (skipping data frames and pongs before it): (code or None, reason)."""
        while True:
            got = await self.frame()
            assert got is not DROPPED, "the server dropped the connection without a close frame"
            op, payload = got
            if op == CLOSE:
                if not payload:
                    return None, ""
                code = struct.unpack("!H", payload[:2])[0]
                assert wf.valid_close_code(code), f"the server sent the forbidden close code {code}"
                return code, payload[2:].decode()

    async def dropped(self) -> bool:
        """True once the server closed the TCP connection; fails on any frame before that."""
        got = await self.frame()
        assert got is DROPPED, f"expected the server to drop the connection, got {got}"
        return True

    @staticmethod
    def decode(got: tuple[int, bytes] | None) -> dict:
        assert got is not DROPPED
        op, payload = got
        return json.loads(payload) if op == TEXT else msgpack.unpackb(payload)


@pytest.fixture
def slow_close(monkeypatch):
    """A server that waits an hour for a client's close frame: "promptly" then means "without waiting".

    (A server that did wait hangs the test until its guard fails it; leaving ``connect``
    then closes the client's socket, which ends the server's wait.)
    """
    monkeypatch.setattr(session_module, "CLOSE_TIMEOUT_S", 3600.0)


@asynccontextmanager
async def connect(port: int, subprotocol: str = "callsys.v1.msgpack", hello: bool = True):
    """``async with connect(port) as c:`` a :class:`RawClient`, its socket closed on the way out."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    try:
        c = RawClient(stream)
        await c.handshake(subprotocol, hello)
        yield c
    finally:
        await trio.aclose_forcefully(stream)


async def expect_failed(c: RawClient, code: int) -> None:
    """The server failed the connection: a close frame with *code*, then TCP dropped — the client sends nothing."""
    assert (await c.close_frame())[0] == code
    assert await c.dropped()


TAKE = msgpack.packb({"type": "take_number", "id": 7, "service": "SOC"})


# ---------------------------------------------------------------------- 1. close codes (RFC 6455 7.4)

FORBIDDEN_CODES = [0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]
ALLOWED_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999]


@pytest.mark.parametrize("code", FORBIDDEN_CODES)
@guard()
async def test_a_close_code_the_rfc_forbids_fails_the_connection_with_1002(server, slow_close, code):
    async with connect(server.port) as c:
        await c.send(client_frame(CLOSE, close_payload(code, b"bye")))
        await expect_failed(c, wf.CLOSE_PROTOCOL_ERROR)  # not an echo of *code*
        await still_served(server)


@pytest.mark.parametrize("code", ALLOWED_CODES)
@guard()
async def test_an_allowed_close_code_is_echoed_and_the_server_drops_tcp_first(server, slow_close, code):
    async with connect(server.port) as c:
        await c.send(client_frame(CLOSE, close_payload(code, "再见".encode())))
        assert await c.close_frame() == (code, "再见")
        assert await c.dropped()  # the client never closes its side: the server closed TCP first


@guard()
async def test_a_close_without_code_is_answered_with_an_empty_close_never_1005(server, slow_close):
    async with connect(server.port) as c:
        await c.send(client_frame(CLOSE))
        assert await c.frame() == (CLOSE, b"")
        assert await c.dropped()


@pytest.mark.parametrize("payload, code", [
    (b"\x03", wf.CLOSE_PROTOCOL_ERROR),  # 7.3.2: a 1-byte close payload
    (close_payload(1000, b"x" * 124), wf.CLOSE_PROTOCOL_ERROR),  # 7.3.6: 126 bytes, too long for a control frame
    (close_payload(1000, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"), wf.CLOSE_INVALID_DATA),  # 7.5.1
], ids=["one byte", "too long", "reason not utf-8"])
@guard()
async def test_a_malformed_close_frame_fails_the_connection_at_once(server, slow_close, payload, code):
    async with connect(server.port) as c:
        await c.send(client_frame(CLOSE, payload))  # the client now waits for the server to drop TCP
        await expect_failed(c, code)


def test_close_frame_never_carries_a_forbidden_code():
    for code in FORBIDDEN_CODES + [None]:
        assert wf.close_frame(code, "reason") == b"\x88\x00"  # an empty close body
    for code in ALLOWED_CODES:
        assert wf.close_frame(code, "r")[2:4] == struct.pack("!H", code)


def test_every_close_code_the_server_uses_may_be_sent():
    assert all(wf.valid_close_code(code) for code in CloseCode)
    assert all(wf.valid_close_code(code) for code in (wf.CLOSE_PROTOCOL_ERROR, wf.CLOSE_INVALID_DATA,
                                                       wf.CLOSE_TOO_BIG, wf.CLOSE_NORMAL))


def test_valid_close_codes_are_exactly_the_rfcs():
    valid = [code for code in range(65536) if wf.valid_close_code(code)]
    assert valid == [1000, 1001, 1002, 1003, *range(1007, 1015), *range(3000, 5000)]


# ---------------------------------------------------------------------- 2. failing: close frame, then drop TCP

VIOLATIONS = {  # Autobahn case -> what the client sends, the close code expected
    "unmasked frame": (client_frame(BINARY, TAKE, masked=False), wf.CLOSE_PROTOCOL_ERROR),
    "rsv1 (3.2)": (client_frame(BINARY, TAKE, rsv=0x40), wf.CLOSE_PROTOCOL_ERROR),
    "rsv3 (3.4)": (client_frame(TEXT, b"x", rsv=0x10), wf.CLOSE_PROTOCOL_ERROR),
    "opcode 3 (4.1.1)": (client_frame(0x3), wf.CLOSE_PROTOCOL_ERROR),
    "opcode 0xB (4.2.1)": (client_frame(0xB, b"x"), wf.CLOSE_PROTOCOL_ERROR),
    "ping of 126 bytes (2.5)": (client_frame(PING, b"p" * 126), wf.CLOSE_PROTOCOL_ERROR),
    "fragmented ping (5.1)": (client_frame(PING, b"a", fin=False) + client_frame(CONT, b"b"),
                              wf.CLOSE_PROTOCOL_ERROR),
    "fragmented pong (5.2)": (client_frame(PONG, b"a", fin=False) + client_frame(CONT, b"b"),
                              wf.CLOSE_PROTOCOL_ERROR),
    "continuation without start (5.9)": (client_frame(CONT, b"x") + client_frame(TEXT, b"hi"),
                                         wf.CLOSE_PROTOCOL_ERROR),
    "unfinished continuation without start (5.12)": (client_frame(CONT, b"x", fin=False) + client_frame(TEXT, b"hi"),
                                                     wf.CLOSE_PROTOCOL_ERROR),
    "new message mid-message": (client_frame(BINARY, b"x", fin=False) + client_frame(BINARY, b"y"),
                                wf.CLOSE_PROTOCOL_ERROR),
    "text not utf-8 (6.3.1)": (client_frame(TEXT, b"\xce\xba\xed\xa0\x80"), wf.CLOSE_INVALID_DATA),
}


@pytest.mark.parametrize("data, code", VIOLATIONS.values(), ids=VIOLATIONS.keys())
@guard()
async def test_a_violation_gets_its_close_code_then_tcp_is_dropped(server, slow_close, data, code):
    async with connect(server.port) as c:
        await c.send(data, client_frame(PING, b"after"))  # not parsed: no pong comes back
        await expect_failed(c, code)
        await still_served(server)


@guard()
async def test_a_violation_sent_octet_by_octet_is_failed_without_reading_on(server, slow_close):
    """Autobahn 5.14: the server must not keep feeding what follows a violation to its parser."""
    async with connect(server.port) as c:
        data = client_frame(CONT, b"fragment1", fin=False) + client_frame(TEXT, b"fragment2") + client_frame(CONT, b"x")
        await c.send_bytewise(data)
        await expect_failed(c, wf.CLOSE_PROTOCOL_ERROR)


@guard()
async def test_after_a_violation_the_clients_close_is_not_awaited(server, slow_close):
    """A reader that lost its place at a violation takes what follows for anything: here
    the bad frame's masking key reads as a frame header announcing 32 KiB, which would
    swallow the client's close frame. The server drops TCP without needing that close."""
    async with connect(server.port) as c:
        await c.send_bytewise(bytes((0x00, 0x80)) + b"\x82\xfe\x7f\xff")  # continuation of nothing; its key
        assert (await c.close_frame())[0] == wf.CLOSE_PROTOCOL_ERROR
        try:
            await c.send(client_frame(CLOSE, close_payload(wf.CLOSE_PROTOCOL_ERROR)))  # answered, as Autobahn does
        except trio.BrokenResourceError:
            pass  # the server had already dropped the connection
        assert await c.dropped()


@guard()
async def test_after_the_servers_close_the_clients_answer_ends_with_the_server_dropping_tcp(
        nursery, demo_hall, tmp_path):
    srv = await start_server(nursery, demo_hall, tmp_path / "hall.db", idle_timeout_s=0.2)
    async with connect(srv.port) as c:
        code, _ = await c.close_frame()  # the server closes an idle connection
        assert code == CloseCode.IDLE_TIMEOUT
        await c.send(client_frame(BINARY, b"late data is discarded"), client_frame(CLOSE, close_payload(code)))
        assert await c.dropped()  # the close handshake is complete: the server drops TCP, the client need not


# ---------------------------------------------------------------------- 3. UTF-8, validated as it arrives (6.4.x)

VALID = "κόσμε".encode()  # 11 bytes, as in Autobahn's 6.4 cases


@pytest.mark.parametrize("first, second", [
    (VALID, b"\xf4\x90\x80\x80"),  # 6.4.1: the second fragment is invalid in itself
    (VALID + b"\xf4", b"\x90"),  # 6.4.2: a character begun in one fragment goes wrong in the next
    (VALID + b"\xed", b"\xa0"),  # a UTF-16 surrogate, invalid from its second byte
], ids=["6.4.1", "6.4.2", "surrogate"])
@guard()
async def test_invalid_utf8_fails_at_the_fragment_that_makes_it_invalid(server, slow_close, first, second):
    async with connect(server.port, "callsys.v1.json") as c:
        await c.send(client_frame(TEXT, first, fin=False))
        await c.send(client_frame(CONT, second, fin=False))  # the message is not finished, and never will be
        await expect_failed(c, wf.CLOSE_INVALID_DATA)


@pytest.mark.parametrize("first, second", [
    (VALID, b"\xf4\x90\x80\x80"),  # 6.4.3
    (VALID + b"\xf4", b"\x90"),  # 6.4.4
], ids=["6.4.3", "6.4.4"])
@guard()
async def test_invalid_utf8_fails_inside_a_frame_as_soon_as_it_arrives(server, slow_close, first, second):
    async with connect(server.port, "callsys.v1.json") as c:
        rest = b"edited"
        data = client_frame(TEXT, first + second + rest)
        head = len(data) - len(first + second + rest)
        await c.send(data[:head + len(first)])
        await c.send(data[head + len(first):head + len(first) + len(second)])  # the rest of the frame never comes
        await expect_failed(c, wf.CLOSE_INVALID_DATA)


@guard()
async def test_a_character_split_between_fragments_and_reads_is_accepted(server):
    async with connect(server.port, "callsys.v1.json") as c:
        text = json.dumps({"type": "ping", "id": "社保窗口"}, ensure_ascii=False).encode()
        cut = text.index("保".encode()) + 1  # inside a character
        data = client_frame(TEXT, text[:cut], fin=False) + client_frame(PING, b"between") + client_frame(CONT, text[cut:])
        await c.send_bytewise(data)
        assert await c.frame() == (PONG, b"between")  # a ping during a fragmented message is answered
        assert c.decode(await c.frame())["id"] == "社保窗口"


# ---------------------------------------------------------------------- 4. messages before the end come first


@pytest.mark.parametrize("end, code", [
    (client_frame(BINARY, b"x", masked=False), wf.CLOSE_PROTOCOL_ERROR),
    (client_frame(TEXT, b"\xff"), wf.CLOSE_INVALID_DATA),
    (client_frame(CLOSE, close_payload(999)), wf.CLOSE_PROTOCOL_ERROR),
    (client_frame(CLOSE, close_payload(1000, b"done")), 1000),
], ids=["unmasked", "bad utf-8", "bad close code", "close"])
@guard()
async def test_messages_read_with_a_later_bad_frame_or_close_are_answered_first(server, slow_close, end, code):
    async with connect(server.port) as c:
        ping = msgpack.packb({"type": "ping", "id": 8})
        await c.send(client_frame(BINARY, TAKE), client_frame(BINARY, ping), end)  # one write, one read
        take = c.decode(await c.frame())
        assert (take["id"], take["type"], take["result"]["number"]) == (7, "ok", "C001")
        assert c.decode(await c.frame())["id"] == 8
        assert (await c.close_frame())[0] == code
        assert await c.dropped()
        await still_served(server)


@guard()
async def test_a_message_in_the_same_read_as_the_hello_is_answered_before_a_bad_frame(server, slow_close):
    async with connect(server.port, hello=False) as c:
        hello = msgpack.packb({"type": "hello", "role": "kiosk", "token": TOKENS["kiosk"]})
        await c.send(client_frame(BINARY, hello), client_frame(BINARY, TAKE), client_frame(0x3))
        assert c.decode(await c.frame())["type"] == "welcome"
        assert c.decode(await c.frame())["result"]["number"] == "C001"
        await expect_failed(c, wf.CLOSE_PROTOCOL_ERROR)


# ---------------------------------------------------------------------- other RFC 6455 behaviour


@guard()
async def test_pings_are_answered_with_their_payload_and_pongs_ignored(server):
    async with connect(server.port) as c:
        await c.send(client_frame(PONG, b"unsolicited"), client_frame(PING, b""), client_frame(PING, b"x" * 125))
        assert await c.frame() == (PONG, b"")
        assert await c.frame() == (PONG, b"x" * 125)


@guard()
async def test_a_message_over_many_reads_and_frames_is_served(server):
    async with connect(server.port) as c:
        message = msgpack.packb({"type": "ping", "id": "x" * 60})
        frames = b"".join(client_frame(BINARY if i == 0 else CONT, message[i:i + 7], fin=i + 7 >= len(message))
                          for i in range(0, len(message), 7))
        await c.send_bytewise(frames)
        assert c.decode(await c.frame())["id"] == "x" * 60


@guard()
async def test_a_message_too_big_is_refused_from_its_header(nursery, demo_hall, tmp_path, slow_close):
    srv = await start_server(nursery, demo_hall, tmp_path / "hall.db", max_frame_bytes=1000)
    async with connect(srv.port) as c:
        await c.send(client_frame(BINARY, length=2**40))  # a header only: no payload is awaited
        await expect_failed(c, wf.CLOSE_TOO_BIG)
