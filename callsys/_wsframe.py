"""WebSocket framing (RFC 6455 section 5) for established connections, without I/O.

The opening handshake is wsproto's (:mod:`callsys.server._websocket`); once a connection
is open, its frames go through this module instead of wsproto + trio-websocket. Why: the
durable ticket path is dominated by per-message overhead. On these machines (2-core EPYC
VM, Python 3.11) a bare ``ping`` cost ~127 us of server CPU through trio-websocket
(wsproto's generator-based parser, the library's reader task and message channel), and
replacing it by this module — every frame of one ``receive_some`` parsed in one call,
every reply of a turn framed into one write — took a durable ticket from ~210 to ~155 us
of server CPU under ``python -m benchmarks.ingest`` (``docs/performance.md`` has the
steps that followed).

What it implements, all of it tested against trio-websocket clients in
``tests/test_wsframe.py``: text and binary messages, fragmentation (continuation frames,
control frames between fragments), masking (required from clients, forbidden from
servers), ping (answered by the caller with a pong), pong (ignored), the close handshake,
UTF-8 validation of text, and a message size limit checked from the frame header before
the payload is buffered. No extensions are negotiated (so RSV bits are always an error).
Violations become :class:`FrameError` with the close code to send.
"""

from __future__ import annotations

import os
import struct
from typing import Final, NamedTuple, Sequence

OP_CONTINUATION: Final = 0x0
OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2
OP_CLOSE: Final = 0x8
OP_PING: Final = 0x9
OP_PONG: Final = 0xA
_DATA_OPS: Final = (OP_CONTINUATION, OP_TEXT, OP_BINARY)
_CONTROL_OPS: Final = (OP_CLOSE, OP_PING, OP_PONG)

CLOSE_NORMAL: Final = 1000
CLOSE_PROTOCOL_ERROR: Final = 1002
CLOSE_NO_STATUS: Final = 1005
CLOSE_INVALID_DATA: Final = 1007
CLOSE_TOO_BIG: Final = 1009
MAX_CONTROL_PAYLOAD: Final = 125  # bytes (RFC 6455 5.5)
UTF8_MAX_BYTES: Final = 4  # bytes per character at most: bounds a text message before decoding


class FrameError(Exception):
    """The peer broke the protocol; close the connection with ``code``. The fault is the peer's."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason


class Ping(NamedTuple):
    payload: bytes


class Pong(NamedTuple):
    payload: bytes


class Close(NamedTuple):
    """The peer's close frame: its code (1005 when it gave none) and reason."""

    code: int
    reason: str
    payload: bytes


def mask(payload: bytes, key: bytes) -> bytes:
    """*payload* XOR the 4-byte *key* repeated (masking and unmasking are the same)."""
    n = len(payload)
    if n == 0:
        return b""
    keys = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(keys, "little")).to_bytes(n, "little")


def frame(opcode: int, payload: bytes, *, masked: bool = False) -> bytes:
    """One final frame of *opcode* carrying *payload* (a client masks with a random key)."""
    n = len(payload)
    bit = 0x80 if masked else 0
    if n < 126:
        header = bytes((0x80 | opcode, bit | n))
    elif n < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, bit | 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, bit | 127, n)
    if masked:
        key = os.urandom(4)
        return header + key + mask(payload, key)
    return header + payload


def message_frames(messages: Sequence[bytes | str], *, masked: bool = False) -> bytes:
    """*messages* (bytes -> binary, str -> text) framed back to back, ready for one write."""
    if masked:
        return b"".join(frame(OP_BINARY, m, masked=True) if type(m) is bytes
                        else frame(OP_TEXT, m.encode(), masked=True) for m in messages)
    parts = []
    for m in messages:
        if type(m) is bytes:
            op = 0x82
        else:
            op, m = 0x81, m.encode()
        n = len(m)
        parts.append(bytes((op, n)) if n < 126 else
                     struct.pack("!BBH", op, 126, n) if n < 65536 else struct.pack("!BBQ", op, 127, n))
        parts.append(m)
    return b"".join(parts)


def close_frame(code: int | None, reason: str = "", *, masked: bool = False) -> bytes:
    """A close frame with *code* and *reason* (reason cut to fit 125 bytes); no code -> empty."""
    if code is None or code == CLOSE_NO_STATUS:
        return frame(OP_CLOSE, b"", masked=masked)
    data = reason.encode()[:MAX_CONTROL_PAYLOAD - 2].decode(errors="ignore").encode()
    return frame(OP_CLOSE, struct.pack("!H", code) + data, masked=masked)


class FrameReader:
    """Turns received bytes into messages and control events.

    Args:
        max_message: the largest message accepted: bytes for binary messages, characters
            for text messages (as trio-websocket counts them). Larger ones raise
            :class:`FrameError` with 1009 as soon as a frame header announces them.
        client_frames: True on a server (frames must be masked), False on a client (must not be).
    """

    __slots__ = ("max_message", "_masked", "_buf", "_parts", "_op", "_size")

    def __init__(self, *, max_message: int, client_frames: bool = True) -> None:
        self.max_message = max_message
        self._masked = client_frames
        self._buf = b""
        self._parts: list[bytes] = []  # fragments of the message being received
        self._op = 0  # its opcode (0: none in progress)
        self._size = 0

    def feed(self, data: bytes) -> list[bytes | str | Ping | Pong | Close | FrameError]:
        """The messages (bytes, str) and events completed by *data*, in order.

        A protocol violation ends the list as a :class:`FrameError` (what came before it
        is still valid); the reader must not be fed after that.
        """
        buf = self._buf + data if self._buf else data
        out: list = []
        pos, end = 0, len(buf)
        try:
            while end - pos >= 2:
                b0, b1 = buf[pos], buf[pos + 1]
                length = b1 & 0x7F
                head = 2
                if length == 126:
                    if end - pos < 4:
                        break
                    length = int.from_bytes(buf[pos + 2:pos + 4], "big")
                    head = 4
                elif length == 127:
                    if end - pos < 10:
                        break
                    length = int.from_bytes(buf[pos + 2:pos + 10], "big")
                    head = 10
                self._check_header(b0, b1, length)
                if b1 & 0x80:
                    head += 4
                stop = pos + head + length
                if stop > end:
                    break
                payload = buf[pos + head:stop]
                if b1 & 0x80:
                    payload = mask(payload, buf[pos + head - 4:pos + head])
                pos = stop
                item = self._frame(b0 & 0x80, b0 & 0x0F, payload)
                if item is not None:
                    out.append(item)
        except FrameError as exc:
            out.append(exc)
            self._buf = b""
            return out
        self._buf = buf[pos:] if pos < end else b""
        return out

    def _check_header(self, b0: int, b1: int, length: int) -> None:
        op = b0 & 0x0F
        if b0 & 0x70:
            raise FrameError(CLOSE_PROTOCOL_ERROR, "reserved bits set without an extension")
        if bool(b1 & 0x80) != self._masked:
            raise FrameError(CLOSE_PROTOCOL_ERROR, "client frames must be masked" if self._masked
                             else "server frames must not be masked")
        if op in _CONTROL_OPS:
            if not b0 & 0x80 or length > MAX_CONTROL_PAYLOAD:
                raise FrameError(CLOSE_PROTOCOL_ERROR, "control frames must be final and carry at most 125 bytes")
            return
        if op not in _DATA_OPS:
            raise FrameError(CLOSE_PROTOCOL_ERROR, f"unknown opcode {op:#x}")
        if (op == OP_CONTINUATION) != bool(self._op):
            raise FrameError(CLOSE_PROTOCOL_ERROR, "continuation frame without a message" if not self._op
                             else "new message before the previous one was finished")
        kind = self._op or op
        limit = self.max_message * (UTF8_MAX_BYTES if kind == OP_TEXT else 1)
        if self._size + length > limit:
            raise FrameError(CLOSE_TOO_BIG, "message too big")

    def _frame(self, fin: int, op: int, payload: bytes) -> bytes | str | Ping | Pong | Close | None:
        if op == OP_PING:
            return Ping(payload)
        if op == OP_PONG:
            return Pong(payload)
        if op == OP_CLOSE:
            return _close(payload)
        if not fin:
            if op:
                self._op = op
            self._parts.append(payload)
            self._size += len(payload)
            return None
        if self._op:  # the last fragment
            self._parts.append(payload)
            op, payload = self._op, b"".join(self._parts)
            self._op, self._parts, self._size = 0, [], 0
        if op == OP_BINARY:
            return payload
        try:
            text = payload.decode()
        except UnicodeDecodeError:
            raise FrameError(CLOSE_INVALID_DATA, "text message is not valid UTF-8") from None
        if len(text) > self.max_message:
            raise FrameError(CLOSE_TOO_BIG, "message too big")
        return text


def _close(payload: bytes) -> Close:
    if not payload:
        return Close(CLOSE_NO_STATUS, "", payload)
    if len(payload) == 1:
        raise FrameError(CLOSE_PROTOCOL_ERROR, "close frame with a 1-byte payload")
    try:
        reason = payload[2:].decode()
    except UnicodeDecodeError:
        raise FrameError(CLOSE_INVALID_DATA, "close reason is not valid UTF-8") from None
    return Close(int.from_bytes(payload[:2], "big"), reason, payload)
