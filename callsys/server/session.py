"""One WebSocket connection: hello, then three tasks — reader, acknowledger, writer.

* The **reader** decodes, rate-limits, validates and executes each message. Executing a
  command is synchronous (decide, apply, submit to the journal), so commands from all
  connections reach the log in the order the engine decided them.
* The **acknowledger** answers in arrival order, waiting for each command's events to be
  durable before its ``ok``; up to ``max_in_flight`` commands of a connection may wait at
  once, so a client can pipeline. Replies that are ready together go out in one write.
  A client that does not read its replies only stalls itself (back-pressure).
* The **writer** drains the connection's bounded push queue. When the queue overflows the
  client is too slow and is closed with code 4008; the hub never waits for it.

Shutdown (:meth:`Session.drain`) stops the reader only; in-flight commands are still
committed and answered before the close frame (1001) goes out.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from ..errors import EngineError
from ..log import LogError
from ..protocol import (ROLE_MESSAGES, Codec, CloseCode, Hello, Internal, ProtocolError, RateLimited, error,
                        parse, parse_hello, request_id)
from ..wire import send_frames, take_ready
from .auth import Identity, authenticate, resolve_places
from .handlers import HANDLERS, Reply
from .limits import TokenBucket
from .logs import log
from .settings import CLOSE_TIMEOUT_S

if TYPE_CHECKING:
    from .serve import CallsysServer


class Session:
    """A client connection of *server* over *ws*, speaking *codec*."""

    def __init__(self, server: "CallsysServer", ws: WebSocketConnection, codec: Codec, peer: str) -> None:
        settings = server.settings
        self.server = server
        self.ws = ws
        self.codec = codec
        self.binary = codec.binary
        self.encode = codec.encode
        self.peer = peer
        self.identity: Identity | None = None
        self.windows: frozenset[int] = frozenset()
        self.messages = self.rejected = self.rate_limited = 0
        self._table: dict[str, Any] = {}
        self._bucket = TokenBucket(settings.rate_per_s, settings.rate_burst)
        self._slots = trio.Semaphore(settings.max_in_flight)
        self._out_send, self._out_recv = trio.open_memory_channel[Any](settings.outbox_frames)
        self._replies_send, self._replies_recv = trio.open_memory_channel[Reply](math.inf)
        self._scope = trio.CancelScope()
        self._hello_scope = trio.CancelScope()
        self._input_scope = trio.CancelScope()
        self._close_code, self._close_reason = CloseCode.NORMAL, "bye"
        self._client_close: Any = None
        self._killed = False

    @property
    def role(self) -> str | None:
        return self.identity.role if self.identity else None

    @property
    def killed(self) -> bool:
        """True once the connection is being closed for a fault (slow consumer, fail-stop)."""
        return self._killed

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        opened = trio.current_time()
        try:
            with self._scope:
                if await self._handshake():
                    await self._serve()
        finally:
            self.server.detach(self)
            await self._close()
            log(logging.INFO, "conn_close", peer=self.peer, role=self.role, code=int(self._close_code),
                reason=self._close_reason, client_close=self._client_close, messages=self.messages,
                rejected=self.rejected, rate_limited=self.rate_limited,
                duration_s=round(trio.current_time() - opened, 3))

    def drain(self) -> None:
        """Stop reading; answer what is in flight, then close with 1001 (server shutdown)."""
        self._set_close(CloseCode.GOING_AWAY, "server shutting down")
        self._hello_scope.cancel()
        self._input_scope.cancel()

    def kill(self, code: int, reason: str) -> None:
        """Close soon, dropping whatever is queued: stop reading and pushing, finish the frame
        being written, send the close frame; after ``CLOSE_TIMEOUT_S`` give up on the client."""
        if self._killed:
            return
        self._killed = True
        self._set_close(code, reason)
        self._hello_scope.cancel()
        self._input_scope.cancel()
        self._scope.deadline = trio.current_time() + CLOSE_TIMEOUT_S

    def _set_close(self, code: int, reason: str) -> None:
        if self._close_code == CloseCode.NORMAL:
            self._close_code, self._close_reason = code, reason

    async def _close(self) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT_S):
            await self.ws.aclose(int(self._close_code), self._close_reason)

    # ------------------------------------------------------------------ hello

    async def _handshake(self) -> bool:
        timeout = self.server.settings.hello_timeout_s
        frame = None
        with self._hello_scope:
            with trio.move_on_after(timeout) as timer:
                frame = await self._receive()
            if timer.cancelled_caught:
                self._set_close(CloseCode.IDLE_TIMEOUT, f"no hello within {timeout:g} s")
        if frame is None:
            return False
        try:
            hello = parse_hello(self.codec.decode(frame))
            self.identity = authenticate(hello, self.server.hall, self.server.secret)
            windows = self._places(hello)
        except ProtocolError as exc:
            self._log_rejected("hello", exc.code, exc.message)
            await self._send_now(error(exc.request_id, exc.code, exc.message, exc.details))
            self._set_close(exc.close_code or CloseCode.HANDSHAKE_FAILED, exc.code)
            return False
        self._table = ROLE_MESSAGES[self.identity.role]
        await self._send_now(self.server.welcome(self.identity, hello.id))
        self.server.attach(self)
        log(logging.INFO, "conn_open", peer=self.peer, role=self.role, subprotocol=self.codec.subprotocol,
            window=self.identity.window, ticket=self.identity.ticket)
        self._greet(windows)
        return True

    def _places(self, hello: Hello) -> frozenset[int]:
        identity = self.identity
        if identity.role == "clerk":
            return frozenset({identity.window})
        return resolve_places(self.server.hall, hello.subscribe or {}, hello.id)

    def _greet(self, windows: frozenset[int]) -> None:
        """First pushes: the board of the subscribed windows, or a phone's ticket."""
        hub = self.server.hub
        if windows:
            self.subscribe(windows)
            if self.identity.role != "speaker":  # speakers only announce
                self.push(self.encode({"type": "board", "windows": hub.board_of(windows)}))
        if self.identity.role == "phone":
            self.server.watch_phone(self)

    def subscribe(self, windows: frozenset[int]) -> None:
        """Replace this connection's window subscription."""
        hub = self.server.hub
        speaker = self.identity.role == "speaker"
        hub.unwatch(self, self.windows, speaker=speaker)
        self.windows = windows
        hub.watch(self, windows, speaker=speaker)

    async def _send_now(self, message: dict[str, Any]) -> None:
        try:
            await self.ws.send_message(self.encode(message))
        except ConnectionClosed:
            pass

    # ------------------------------------------------------------------ serving

    async def _serve(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._write_loop)
            nursery.start_soon(self._ack_loop)
            with self._input_scope:
                await self._read_loop()
            self._replies_send.close()

    async def _receive(self) -> Any:
        """The next frame, or None when the client closed."""
        try:
            return await self.ws.get_message()
        except ConnectionClosed as exc:
            reason = exc.reason
            self._client_close = f"{reason.code} {reason.reason or ''}".strip() if reason else None
            if reason is not None and reason.code == CloseCode.MESSAGE_TOO_BIG:
                self._set_close(CloseCode.MESSAGE_TOO_BIG, "frame too big")
                self._log_rejected("frame", "message_too_big", reason.reason or "")
            return None

    async def _read_loop(self) -> None:
        idle = self.server.settings.idle_timeout_s
        with trio.CancelScope() as timer:  # one scope whose deadline moves on with every message
            while True:
                timer.deadline = trio.current_time() + idle
                frame = await self._receive()
                if frame is None:
                    return
                await self._slots.acquire()
                self._replies_send.send_nowait(self._handle(frame))
        self._set_close(CloseCode.IDLE_TIMEOUT, f"no message for {idle:g} s")

    def _handle(self, frame: Any) -> Reply:
        rid = kind = None
        try:
            message = self.codec.decode(frame)
            rid = request_id(message)
            kind = message.get("type") if type(message.get("type")) is str else None
            if not self._bucket.take():
                raise RateLimited("too many messages: slow down", request_id=rid,
                                  rate_per_s=self._bucket.rate, burst=self._bucket.burst)
            kind, fields = parse(message, self._table, rid)
            self.messages += 1
            return HANDLERS[kind](self, kind, rid, fields)
        except ProtocolError as exc:
            return None, self._reject(exc.request_id, kind, exc.code, exc.message, exc.details)
        except EngineError as exc:
            return None, self._reject(rid, kind, exc.code, exc.message, exc.details)
        except Exception as exc:  # a bug: reported to the client, logged, the server keeps serving
            logging.getLogger("callsys.server").exception("handler failed on %s", kind)
            failure = Internal(f"internal error: {type(exc).__name__}")
            return None, self._reject(rid, kind, failure.code, failure.message, {})

    def _reject(self, rid: Any, kind: str | None, code: str, message: str, details: dict) -> dict[str, Any]:
        self.rejected += 1
        if code == RateLimited.code:
            self.rate_limited += 1
            if self.rate_limited > 1:  # one line per connection, the count goes in conn_close
                return error(rid, code, message, details)
        self._log_rejected(kind, code, message)
        return error(rid, code, message, details)

    def _log_rejected(self, kind: str | None, code: str, message: str) -> None:
        log(logging.INFO, "rejected", peer=self.peer, role=self.role, type=kind, code=code, message=message)

    async def _ack_loop(self) -> None:
        """Answer in arrival order; replies that are ready go out together in one write."""
        receive = self._replies_recv
        async with self._out_send:
            async for reply in receive:
                ready: list[Any] = []
                while reply is not None:
                    if not self._settled(reply):
                        await self._send(ready)  # what is ready first, then wait for the log
                        ready = []
                        if not await self._durable(reply[0]):
                            return
                    ready.append(self._reply_frame(reply))
                    reply = _next_ready(receive)
                await self._send(ready)

    def _settled(self, reply: Reply) -> bool:
        pending = reply[0]
        return pending is None or self.server.journal.durable_seq >= pending.last_seq

    async def _durable(self, pending: Any) -> bool:
        """Wait for *pending* to be durable; False (and the server stops) if its commit failed."""
        try:
            await pending.wait()
        except LogError as exc:
            self.server.fail(exc)
            return False
        return True

    def _reply_frame(self, reply: Reply) -> Any:
        pending, message = reply
        if pending is not None:
            message["result"]["seq"] = pending.last_seq
        self._slots.release()
        return self.encode(message)

    async def _send(self, frames: list[Any]) -> None:
        if frames and not self._killed:
            try:
                await send_frames(self.ws, frames)
            except ConnectionClosed:
                self._scope.cancel()

    async def _write_loop(self) -> None:
        """Send what is queued, as many frames per write as are waiting."""
        receive = self._out_recv
        try:
            async for frame in receive:
                batch = take_ready(receive, frame)
                if self._killed:
                    return
                await send_frames(self.ws, batch)
        except ConnectionClosed:
            self._scope.cancel()

    def push(self, frame: Any) -> None:
        """Queue *frame* to this client without blocking (hub and acknowledger)."""
        if self._killed:
            return
        try:
            self._out_send.send_nowait(frame)
        except trio.WouldBlock:
            self.kill(CloseCode.SLOW_CONSUMER, "send queue overflow: the client reads too slowly")
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass


def _next_ready(receive: trio.MemoryReceiveChannel[Reply]) -> Reply | None:
    try:
        return receive.receive_nowait()
    except (trio.WouldBlock, trio.EndOfChannel):
        return None
