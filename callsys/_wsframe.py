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

What it implements: text and binary messages, fragmentation (continuation frames,
control frames between fragments), masking (required from clients, forbidden from
servers), ping (answered by the caller with a pong), pong (ignored), the close handshake,
and a message size limit checked from the frame header before the payload is buffered.
No extensions are negotiated (so RSV bits are always an error). Violations become
:class:`FrameError` with the close code to send (RFC 6455 section 7.4): 1002 for a broken
frame or a close frame whose code may not be sent (:func:`valid_close_code`), 1007 for
text that is not UTF-8, 1009 for a message over the limit.

Policy, each point checked by ``tests/test_wsframe.py`` and
``tests/test_websocket_conformance.py`` (frames written by hand):

* **Fail fast.** Text is validated as it arrives: a message whose frames all arrived in
  one read is decoded in one call (the hot path), anything else — a fragmented message, a
  frame split over reads — goes through an incremental UTF-8 decoder that fails at the
  fragment, or the read, that makes it invalid.
* **Linear buffering.** A frame whose payload spans reads is unmasked (and decoded) chunk
  by chunk as the reads arrive and joined once at its end; only an incomplete header
  (< 14 bytes) is ever carried over and re-joined. Every received byte is copied a
  constant number of times, however many reads a frame takes.
* **Nothing after the end.** A close frame or a violation is the last item :meth:`FrameReader.feed`
  returns; the reader is spent after it and yields nothing more (the bytes behind it are
  not parsed: after an error the reader has lost its place).
* **Never a forbidden code on the wire.** :func:`close_frame` sends an empty close body
  for 1005 ("no status") and for every code section 7.4 forbids in a frame.
"""

from __future__ import annotations

import codecs
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
# Codes a close frame may carry besides 3000-4999 (registered for libraries and for
# applications): RFC 6455 7.4.1 and the IANA registry (1012-1014). 1004 is reserved; 1005,
# 1006 and 1015 are for reporting only and must never be sent.
_REGISTERED_CLOSE_CODES: Final = frozenset((1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014))
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


def valid_close_code(code: int) -> bool:
    """Whether a close frame may carry *code* (RFC 6455 7.4): 1000-1003, 1007-1014 and 3000-4999."""
    return 3000 <= code <= 4999 or code in _REGISTERED_CLOSE_CODES


def close_frame(code: int | None, reason: str = "", *, masked: bool = False) -> bytes:
    """A close frame with *code* and *reason* (reason cut to fit 125 bytes).

    No code, 1005 ("no status") or any code that :func:`valid_close_code` refuses (1006,
    1015, 0-999, 5000+ ...) gives an empty close body: such codes never go on the wire.
    """
    if code is None or not valid_close_code(code):
        return frame(OP_CLOSE, b"", masked=masked)
    data = reason.encode()[:MAX_CONTROL_PAYLOAD - 2].decode(errors="ignore").encode()
    return frame(OP_CLOSE, struct.pack("!H", code) + data, masked=masked)


class _CloseReceived(Exception):
    """Internal: the peer's close frame ends the input (raised so the hot loop needs no check)."""

    def __init__(self, close: Close) -> None:
        super().__init__(close)
        self.close = close


_utf8_decoder = codecs.getincrementaldecoder("utf-8")


class FrameReader:
    """Turns received bytes into messages and control events.

    A frame complete in one :meth:`feed` is sliced out, unmasked and decoded at once; a
    frame whose payload spans feeds is taken chunk by chunk as it arrives (unmasked with
    the key turned to where the chunk starts, text fed to the message's incremental UTF-8
    decoder) and joined once when its message ends.

    Args:
        max_message: the largest message accepted: bytes for binary messages, characters
            for text messages (as trio-websocket counts them). Larger ones raise
            :class:`FrameError` with 1009 as soon as a frame header announces them.
        client_frames: True on a server (frames must be masked), False on a client (must not be).
    """

    __slots__ = ("max_message", "_masked", "_head", "_op", "_parts", "_size", "_decoder", "_left", "_fop",
                 "_fin", "_key", "_got", "_chunks", "_spent")

    def __init__(self, *, max_message: int, client_frames: bool = True) -> None:
        self.max_message = max_message
        self._masked = client_frames
        self._head = b""  # the start of a frame whose header is incomplete (< 14 bytes)
        # The message being received in pieces (fragments, or a frame spanning reads):
        self._op = 0  # its opcode (0: none in progress)
        self._parts: list = []  # its payload so far: bytes pieces, or str pieces for text
        self._size = 0  # its payload bytes so far
        self._decoder = None  # the incremental UTF-8 decoder of a text message
        # The frame whose payload is still arriving (``_left`` > 0):
        self._left = 0  # payload bytes still to come
        self._fop = 0  # its opcode
        self._fin = 0  # its FIN bit
        self._key: bytes | None = None  # its masking key
        self._got = 0  # payload bytes already received (where the key stands)
        self._chunks: list[bytes] = []  # a control frame's payload so far
        self._spent = False  # True after a close frame or a violation

    def feed(self, data: bytes) -> list[bytes | str | Ping | Pong | Close | FrameError]:
        """The messages (bytes, str) and events completed by *data*, in order.

        A close frame or a protocol violation (a :class:`FrameError`) ends the list; what
        came before it is valid. After that the reader is spent: it ignores further input.
        """
        out: list = []
        if self._spent:
            return out
        try:
            if self._left:  # the payload of a frame spanning reads
                n = self._left
                if len(data) <= n:
                    item = self._payload(data)
                    if item is not None:
                        out.append(item)
                    return out
                item = self._payload(data[:n])
                if item is not None:
                    out.append(item)
                data = data[n:]
            if self._head:
                data = self._head + data
                self._head = b""
            pos, end = 0, len(data)
            while end - pos >= 2:
                b0, b1 = data[pos], data[pos + 1]
                length = b1 & 0x7F
                head = 2
                if length == 126:
                    if end - pos < 4:
                        break
                    length = int.from_bytes(data[pos + 2:pos + 4], "big")
                    head = 4
                elif length == 127:
                    if end - pos < 10:
                        break
                    length = int.from_bytes(data[pos + 2:pos + 10], "big")
                    head = 10
                self._check_header(b0, b1, length)
                if b1 & 0x80:
                    head += 4
                stop = pos + head + length
                if stop > end:
                    if pos + head <= end:  # the header is complete: take the payload as it comes
                        self._start(b0, data[pos + head - 4:pos + head] if b1 & 0x80 else None, length)
                        self._payload(data[pos + head:end])
                        pos = end
                    break
                payload = data[pos + head:stop]
                if b1 & 0x80:
                    payload = mask(payload, data[pos + head - 4:pos + head])
                pos = stop
                item = self._frame(b0 & 0x80, b0 & 0x0F, payload)
                if item is not None:
                    out.append(item)
            if pos < end:
                self._head = data[pos:]
        except _CloseReceived as end_:
            out.append(end_.close)
            self._spent = True
        except FrameError as exc:
            out.append(exc)
            self._spent = True
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

    def _frame(self, fin: int, op: int, payload: bytes) -> bytes | str | Ping | Pong | None:
        """A whole frame (checked and unmasked): the message or event it completes, if any."""
        if fin:
            if op == OP_BINARY:  # the hot path: one frame, one message
                return payload
            if op == OP_TEXT:
                try:
                    text = payload.decode()
                except UnicodeDecodeError:
                    raise FrameError(CLOSE_INVALID_DATA, "text message is not valid UTF-8") from None
                if len(text) > self.max_message:
                    raise FrameError(CLOSE_TOO_BIG, "message too big")
                return text
            if op != OP_CONTINUATION:
                return _control(op, payload)
        if op:
            self._begin(op)
        self._append(payload)
        return self._end_message() if fin else None

    def _start(self, b0: int, key: bytes | None, length: int) -> None:
        """A frame of *length* payload bytes whose header was read and whose payload spans reads."""
        op = b0 & 0x0F
        self._fop, self._fin, self._key, self._left, self._got = op, b0 & 0x80, key, length, 0
        if op >= OP_CLOSE:
            self._chunks = []
        elif op:
            self._begin(op)

    def _payload(self, chunk: bytes) -> bytes | str | Ping | Pong | None:
        """The next *chunk* of the frame being received; what it completes, if anything."""
        n = len(chunk)
        key = self._key
        if key is not None and n:
            at = self._got & 3
            chunk = mask(chunk, key[at:] + key[:at] if at else key)
        self._got += n
        self._left -= n
        op = self._fop
        if op >= OP_CLOSE:
            self._chunks.append(chunk)
            return None if self._left else _control(op, b"".join(self._chunks))
        self._append(chunk)
        return None if self._left or not self._fin else self._end_message()

    def _begin(self, op: int) -> None:
        self._op = op
        if op == OP_TEXT:
            self._decoder = _utf8_decoder()

    def _append(self, piece: bytes) -> None:
        """Add *piece* of payload to the message in progress; text is validated right here."""
        self._size += len(piece)
        decoder = self._decoder
        if decoder is None:
            self._parts.append(piece)
            return
        try:
            self._parts.append(decoder.decode(piece))
        except UnicodeDecodeError:
            raise FrameError(CLOSE_INVALID_DATA, "text message is not valid UTF-8") from None
        pending = decoder.getstate()[0]
        # CPython's decoder waits for the third byte of ED A0..ED BF (a UTF-16 surrogate,
        # never valid UTF-8) before refusing it; refuse it as soon as its second byte is here.
        if len(pending) >= 2 and pending[0] == 0xED and pending[1] >= 0xA0:
            raise FrameError(CLOSE_INVALID_DATA, "text message is not valid UTF-8")

    def _end_message(self) -> bytes | str:
        parts, decoder = self._parts, self._decoder
        self._op, self._parts, self._size, self._decoder = 0, [], 0, None
        if decoder is None:
            return b"".join(parts)
        try:
            decoder.decode(b"", True)  # a character cut off by the end
        except UnicodeDecodeError:
            raise FrameError(CLOSE_INVALID_DATA, "text message is not valid UTF-8") from None
        text = "".join(parts)
        if len(text) > self.max_message:
            raise FrameError(CLOSE_TOO_BIG, "message too big")
        return text


def _control(op: int, payload: bytes) -> Ping | Pong:
    """A control frame's event; a close frame ends the input (:class:`_CloseReceived`)."""
    if op == OP_PING:
        return Ping(payload)
    if op == OP_PONG:
        return Pong(payload)
    raise _CloseReceived(_close(payload))


def _close(payload: bytes) -> Close:
    if not payload:
        return Close(CLOSE_NO_STATUS, "", payload)
    if len(payload) == 1:
        raise FrameError(CLOSE_PROTOCOL_ERROR, "close frame with a 1-byte payload")
    code = int.from_bytes(payload[:2], "big")
    if not valid_close_code(code):
        raise FrameError(CLOSE_PROTOCOL_ERROR, f"close code {code} may not be sent (RFC 6455 7.4)")
    try:
        reason = payload[2:].decode()
    except UnicodeDecodeError:
        raise FrameError(CLOSE_INVALID_DATA, "close reason is not valid UTF-8") from None
    return Close(code, reason, payload)
