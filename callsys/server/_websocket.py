"""The server's WebSocket transport: wsproto's opening handshake, then lean framing.

:func:`upgrade_request` parses the HTTP upgrade with wsproto's ``H11Handshake`` (a
well-kept library: header checks, the accept token, rejections with a body); an accepted
connection becomes a :class:`WebSocket` that frames messages with :mod:`callsys._wsframe`
— every message of one ``receive_some`` in one call, every frame of one ``send`` in one
write. Why not trio-websocket here: see :mod:`callsys._wsframe` and
``docs/performance.md``. Clients (``callsys.client``, browsers) are unaffected: this is
plain RFC 6455.

One task reads (:meth:`WebSocket.receive`); any number of tasks may send (a lock orders
their writes). Pings are answered by the reader.

Pushes may also be written without a task (:meth:`WebSocket.write_nowait`): when no
write is in progress and the socket has room, the bytes go straight into the kernel's
send buffer from the hub's fan-out, with no task wake-up (:func:`send_nowait`); when the
socket takes only a part, the rest is kept as the connection's *backlog*, which every
later write sends first — so frames are never interleaved, whoever writes them.

How a connection ends (RFC 6455 sections 7.1 and 7.2), tested frame by frame in
``tests/test_websocket_conformance.py``:

* Messages come first. Messages read before the client's close frame or before a frame
  that breaks the protocol are returned by :meth:`WebSocket.receive` as usual; the close
  or the failure is acted on at the next call, after the application answered them.
* The client closes: its close frame is answered (its code echoed; no code -> an empty
  close body) and the server drops the TCP connection at once (the server closes TCP
  first, section 7.1.1).
* The client breaks the protocol: the server sends a close frame with the violation's
  code (1002, 1007 or 1009) and drops the TCP connection at once ("Fail the WebSocket
  Connection", 7.1.7): it neither parses what follows nor waits for the client's close.
* The server closes (:meth:`WebSocket.aclose`): it sends its close frame, waits for the
  client's (the caller bounds the wait) while discarding data frames, then drops TCP.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from typing import Sequence

import trio
from wsproto import ConnectionType
from wsproto.events import AcceptConnection, RejectConnection, RejectData, Request
from wsproto.handshake import H11Handshake
from wsproto.utilities import RemoteProtocolError

from .._wsframe import OP_PONG, Close, FrameError, FrameReader, Ping, Pong, close_frame, frame, message_frames

RECEIVE_BYTES = 65536  # bytes asked of the socket per receive_some
ABNORMAL_CLOSURE = 1006  # no close frame: the TCP connection broke


@dataclass(frozen=True, slots=True)
class CloseReason:
    """Why a connection closed: the close code and reason, as trio-websocket reports them."""

    code: int
    reason: str | None


class ConnectionClosed(Exception):
    """The connection is closed (or closing); ``reason`` says by whom and why."""

    def __init__(self, reason: CloseReason) -> None:
        super().__init__(reason)
        self.reason = reason


_write = os.write


def send_nowait(stream: trio.abc.Stream, data: bytes | memoryview) -> int | None:
    """Write what the kernel takes of *data* to *stream*'s socket now, without blocking.

    The one place callsys writes to a socket behind trio's back. trio's sockets are
    always in non-blocking mode (``O_NONBLOCK``, set when trio wraps them; checked by
    ``tests/test_server_fanout.py``), so a plain ``write(2)`` on the descriptor returns
    at once: all of *data*, a part of it, or nothing when the send buffer is full.
    trio keeps no write buffer of its own, so bytes written here are simply the next
    bytes on the wire; the caller makes sure no trio write is in progress on the stream.

    Returns:
        The number of bytes written (0: the socket is full); None when the bytes cannot
        be written this way: *stream* is not a socket stream, the socket is closed, or
        the connection broke — the caller then writes through trio, which reports it.
    """
    sock = getattr(stream, "socket", None)
    if sock is None:
        return None
    try:
        return _write(sock.fileno(), data)  # fileno() is -1 once closed: EBADF, never another socket
    except BlockingIOError:
        return 0
    except OSError:
        return None


class Written(enum.Enum):
    """What :meth:`WebSocket.write_nowait` did with the bytes."""

    SENT = "sent"  # all on the wire
    OWED = "owed"  # a part on the wire, the rest in the backlog: call flush() (a task) to send it
    REFUSED = "refused"  # nothing written (a write in progress, a backlog, a full or closed socket)


class HandshakeFailed(Exception):
    """The client's HTTP upgrade request was not a valid WebSocket handshake. The client's fault."""


async def upgrade_request(stream: trio.abc.SendStream, head: bytes) -> tuple[H11Handshake, Request]:
    """Parse the client's upgrade request from *head*, the bytes read so far (a whole
    request head; :func:`callsys.server.http.read_opening` read them).

    Raises:
        HandshakeFailed: it is not a valid WebSocket upgrade (answered 400 here).
    """
    handshake = H11Handshake(ConnectionType.SERVER)
    try:
        handshake.receive_data(head)
    except RemoteProtocolError as exc:
        await _send_quietly(stream, handshake.send(RejectConnection(status_code=400)))
        raise HandshakeFailed(str(exc)) from None
    for event in handshake.events():
        if isinstance(event, Request):
            return handshake, event
    raise HandshakeFailed("the request head is incomplete")  # not reached: its head was read whole


async def reject(stream: trio.abc.Stream, handshake: H11Handshake, status: int, body: bytes,
                 extra_headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    """Refuse the upgrade with HTTP *status*, *extra_headers* (e.g. ``Retry-After``) and *body*."""
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
               *extra_headers]
    data = handshake.send(RejectConnection(status_code=status, headers=headers, has_body=True))
    data += handshake.send(RejectData(data=body, body_finished=True))
    await _send_quietly(stream, data)


async def accept(stream: trio.abc.Stream, handshake: H11Handshake, subprotocol: str | None, *,
                 max_message: int) -> "WebSocket":
    """Accept the upgrade with *subprotocol*; return the open connection."""
    await stream.send_all(handshake.send(AcceptConnection(subprotocol=subprotocol)))
    # Bytes the client sent right behind its request (a compliant client waits for our
    # answer, a hostile one may not) belong to the WebSocket stream now.
    trailing = handshake._h11_connection.trailing_data[0]  # noqa: SLF001 (wsproto keeps it there)
    return WebSocket(stream, subprotocol, max_message=max_message, trailing=bytes(trailing))


async def _send_quietly(stream: trio.abc.Stream, data: bytes) -> None:
    try:
        await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


class WebSocket:
    """An open server-side WebSocket connection over *stream*."""

    def __init__(self, stream: trio.abc.Stream, subprotocol: str | None, *, max_message: int,
                 trailing: bytes = b"") -> None:
        self.stream = stream
        self.subprotocol = subprotocol
        self.closed: CloseReason | None = None  # set once a close frame went either way, or the TCP broke
        self._reader = FrameReader(max_message=max_message)
        self._send_lock = trio.Lock()
        self._backlog = b""  # the rest of a write the socket took only in part: sent before anything else
        self._trailing = trailing
        self._end: Close | FrameError | None = None  # the client's close or violation, not yet acted on
        self._close_sent = False
        self._input_done = False  # nothing more to read: the client's close came, it failed, or the TCP broke

    async def receive(self) -> list[bytes | str]:
        """The next messages: every complete one received so far (at least one).

        Raises:
            ConnectionClosed: the client closed (its close frame is answered here), broke
                the protocol (closed here with 1002/1007/1009), or the TCP connection broke.
                In the first two cases the TCP connection is dropped before this is raised.
        """
        while True:
            if self._end is not None:
                await self._finish()
            if self.closed is not None:
                raise ConnectionClosed(self.closed)
            data = await self._read()
            if not data:
                continue  # the TCP connection broke: raised above
            messages: list[bytes | str] = []
            for item in self._reader.feed(data):
                kind = type(item)
                if kind is bytes or kind is str:
                    messages.append(item)
                elif kind is Ping:
                    await self._write(frame(OP_PONG, item.payload))
                elif kind is not Pong:  # a close frame or a violation: always the last item
                    self._end = item
            if messages:
                return messages

    async def _read(self) -> bytes:
        """The next bytes of the stream; b"" (and the connection counts as lost) at its end."""
        if self._trailing:
            data, self._trailing = self._trailing, b""
            return data
        try:
            data = await self.stream.receive_some(RECEIVE_BYTES)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if not data:
            self._input_done = True
            self._set_closed(ABNORMAL_CLOSURE, "connection lost")
        return data

    async def _finish(self) -> None:
        """Act on the client's close frame (answer it) or violation (fail), then drop the TCP connection."""
        end, self._end = self._end, None
        self._input_done = True
        if type(end) is Close:
            self._set_closed(end.code, end.reason)
            if not self._close_sent:
                self._close_sent = True
                await self._write(close_frame(end.code, end.reason))  # echo its code (none -> empty body)
        else:
            await self._send_close(end.code, end.reason)
        await trio.aclose_forcefully(self.stream)

    async def send(self, messages: Sequence[bytes | str]) -> None:
        """Send *messages* (bytes -> binary, str -> text frames) in one write.

        Raises:
            ConnectionClosed: the connection is closed or broke while writing.
        """
        if self._close_sent or self.closed is not None:
            raise ConnectionClosed(self.closed or CloseReason(ABNORMAL_CLOSURE, "closing"))
        if not await self._write(message_frames(messages)):
            raise ConnectionClosed(self.closed)

    async def send_message(self, message: bytes | str) -> None:
        await self.send((message,))

    async def send_frames(self, data: bytes) -> None:
        """Send *data*, frames already built (:func:`~callsys._wsframe.message_frames`), and the backlog first.

        Raises:
            ConnectionClosed: the connection is closed or broke while writing.
        """
        if self._close_sent or self.closed is not None:
            raise ConnectionClosed(self.closed or CloseReason(ABNORMAL_CLOSURE, "closing"))
        if not await self._write(data):
            raise ConnectionClosed(self.closed)

    def write_nowait(self, data: bytes) -> Written:
        """Write *data* (frames already built) now if nothing else is being written and the
        socket has room; never blocks, never switches tasks.

        After :attr:`Written.OWED` the caller must have :meth:`send_frames` (with b"") run
        by a task soon: the rest of *data* waits in the backlog, and the client needs it
        to read the frame.
        """
        if self._backlog or self._send_lock.locked() or self._close_sent or self.closed is not None:
            return Written.REFUSED
        sent = send_nowait(self.stream, data)
        if not sent:  # None (not writable this way) or 0 (full)
            return Written.REFUSED
        if sent == len(data):
            return Written.SENT
        self._backlog = data[sent:]
        return Written.OWED

    async def aclose(self, code: int, reason: str) -> None:
        """Close with *code*: send the close frame, wait for the client's, drop the TCP stream.

        A close frame or violation of the client's already read is acted on instead (see
        the module docstring). Call it when no other task is receiving; bound it with a
        timeout (a client may never answer); the TCP stream is dropped however it ends.
        """
        try:
            if self._end is not None:
                await self._finish()
                return
            if not self._close_sent:
                await self._send_close(code, reason)
            while not self._input_done:  # data frames are discarded; the close frame ends it
                data = await self._read()
                for item in self._reader.feed(data):
                    if type(item) is Close or type(item) is FrameError:
                        self._input_done = True
        finally:
            await trio.aclose_forcefully(self.stream)

    async def _send_close(self, code: int, reason: str) -> None:
        self._close_sent = True
        self._set_closed(code, reason)
        await self._write(close_frame(code, reason))

    def _set_closed(self, code: int, reason: str | None) -> None:
        if self.closed is None:
            self.closed = CloseReason(code, reason)

    async def _write(self, data: bytes) -> bool:
        """Write *data*; False (and the connection counts as lost) if the TCP connection broke."""
        async with self._send_lock:
            if self._backlog:
                data, self._backlog = self._backlog + data, b""
            if not data:
                return True
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._set_closed(ABNORMAL_CLOSURE, "connection lost")
                self._input_done = True  # nothing more will come
                return False
        return True
