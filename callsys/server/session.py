"""One WebSocket connection: hello, then two tasks — the request loop and the push writer.

* The **request loop** takes turns: read every message that has arrived (one socket
  read), then decode, rate-limit, validate and execute each, then wait once for the
  newest command among them to be durable, then answer them all, in arrival order, in one
  write. Executing a command is synchronous (decide, apply, submit to the journal), so
  commands from all connections reach the log in the order the engine decided them; the
  log is ordered, so once the newest is durable the others are too, and the journal wakes
  every connection waiting on a commit with one event. One task per connection and no
  hand-over between tasks is what keeps a ticket cheap (see ``docs/performance.md``).
  At most ``max_in_flight`` messages are executed per turn; the rest wait for the next
  turn. A client that sends while waiting for answers is pipelining: its messages wait in
  the socket for the next turn and are then executed together. A client that does not
  read its replies only stalls itself (back-pressure).
* **Pushes** arrive from the hub as ready-made frame bytes (encoded and framed once per
  format for all subscribers, see :mod:`~callsys.server.hub`). While nothing is queued
  and no write is in progress, a push is written straight to the socket
  (:meth:`WebSocket.write_nowait`: no task wakes up, ~one system call); otherwise — the
  socket is full, a reply or an earlier push is being written — it joins the
  connection's bounded push queue, which the **push writer** task drains, as many
  frames per write as are waiting. Either way pushes leave in the order they came, and
  a frame is never split by another write. When the queue overflows the client is too
  slow and is closed with code 4008; the hub never waits for it.

Shutdown (:meth:`Session.drain`) stops reading only; commands already executed are
still committed and answered before the close frame (1001) goes out. A clerk connection
replaced by a newer sign-in to its window is drained the same way (close 4009), except
that messages it has read but not yet executed are dropped unanswered: after the newer
sign-in, nothing more from the older console reaches the engine. When the event log
fails (fail-stop), every message of the turn in flight and every one read but not yet
executed is answered ``unavailable`` (commands already durable get their ``ok``) before
the close frame (1011); those answers are written even though the server is being
cancelled, within ``CLOSE_TIMEOUT_S``.

Every error reply carries the ``id`` of the message it answers, whichever layer raised
the error (:meth:`Session._handle` fills it in).

On a standby (a process that does not own the hall, :mod:`~callsys.server.standby`) a
command passes the same decoding, rate limit and validation, then is relayed to the owner
over the session's :class:`~callsys.server.relay.Upstream` instead of executed; the turn
waits for the owner's answers (and for this process to have followed their ``seq``) and
sends them in arrival order with the turn's other replies. Queries and subscriptions are
answered locally.

A ``hello`` answered with an error counts against the client's address, and a hello
from an address with too many failures is not checked at all (``rate_limited``, close
4029); so is a phone's hello once the phones' share of the connections is taken (the rest
is kept for the hall's devices). See :mod:`~callsys.server.limits`.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING, Any

import trio

from ..errors import EngineError
from ..log import LogError
from ..protocol import (COMMAND_TYPES, ROLE_MESSAGES, Codec, CloseCode, Hello, HelloThrottled, Internal,
                        ProtocolError, RateLimited, Unavailable, error, parse, parse_hello, request_id)
from .._wsframe import message_frames
from ..wire import take_ready
from ._websocket import ConnectionClosed, WebSocket, Written
from .auth import Identity, authenticate, resolve_places
from .handlers import HANDLERS, Reply
from .limits import TokenBucket
from .logs import log
from .settings import CLOSE_TIMEOUT_S
from .relay import FOLLOW_WAIT_S, Relay, Upstream

if TYPE_CHECKING:
    from .serve import CallsysServer


class Session:
    """A client connection of *server* over *ws*, speaking *codec*, from *host* (``peer`` is host:port)."""

    def __init__(self, server: "CallsysServer", ws: WebSocket, codec: Codec, peer: str, host: str = "?") -> None:
        settings = server.settings
        self.server = server
        self.ws = ws
        self.codec = codec
        self.binary = codec.binary
        self.encode = codec.encode
        self.peer = peer
        self.host = host
        self.identity: Identity | None = None
        self.windows: frozenset[int] = frozenset()
        self.services_seen: dict[str, Any] = {}  # service summaries last sent (kept by the hub)
        self.messages = self.rejected = self.rate_limited = 0
        self._table: dict[str, Any] = {}
        self._bucket = TokenBucket(settings.rate_per_s, settings.rate_burst)
        self._max_in_flight = settings.max_in_flight
        self._inbox: deque[Any] = deque()  # frames read and not yet handled
        self._out_send, self._out_recv = trio.open_memory_channel[bytes](settings.outbox_frames)
        self._unsent = 0  # pushes handed to the writer task and not yet written
        self.pushed_direct = self.pushed_queued = 0  # pushes written without a task / through the writer
        self._scope = trio.CancelScope()
        self._hello_scope = trio.CancelScope()
        self._input_scope = trio.CancelScope()  # the read in progress (a new scope per read)
        self._reading = True  # False once drained or killed: no more reads
        self._close_code, self._close_reason = CloseCode.NORMAL, "bye"
        self._client_close: Any = None
        self._killed = False
        self._phone_counted = False  # counted in the admission's signed-in phones
        self._hello: Hello | None = None  # the client's hello, repeated to the owner by a standby's relay
        self._upstream: Upstream | None = None  # a standby's connection to the owner, opened on the first command
        self._relays: trio.Nursery | None = None  # where the upstream's tasks run
        self._relaying = False  # the turn being handled has commands for the owner (a standby)

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
            if self._phone_counted:
                self.server.admission.phone_left()
            await self._close()
            log(self._log_level(), "conn_close", peer=self.peer, role=self.role, code=int(self._close_code),
                reason=self._close_reason, client_close=self._client_close, messages=self.messages,
                rejected=self.rejected, rate_limited=self.rate_limited,
                duration_s=round(trio.current_time() - opened, 3))

    def drain(self) -> None:
        """Stop reading; answer what is in flight, then close with 1001 (server shutdown)."""
        self._stop_reading(CloseCode.GOING_AWAY, "server shutting down")

    def replace(self) -> None:
        """A newer clerk sign-in took this connection's window over: drop the messages read
        but not executed, answer those executed, then close with 4009 — within
        ``shutdown_grace_s``, whether the client has read its answers by then or not."""
        self._inbox.clear()
        self._stop_reading(CloseCode.REPLACED, "replaced by a newer sign-in to this window")
        self._scope.deadline = min(self._scope.deadline, trio.current_time() + self.server.settings.shutdown_grace_s)

    def kill(self, code: int, reason: str) -> None:
        """Close soon, dropping whatever is queued: stop reading and pushing, finish the frame
        being written, send the close frame; after ``CLOSE_TIMEOUT_S`` give up on the client."""
        if self._killed:
            return
        self._killed = True
        self._stop_reading(code, reason)
        self._scope.deadline = trio.current_time() + CLOSE_TIMEOUT_S

    def _stop_reading(self, code: int, reason: str) -> None:
        self._set_close(code, reason)
        self._reading = False
        self._hello_scope.cancel()
        self._input_scope.cancel()

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
                frame = await self._next_frame()
            if timer.cancelled_caught:
                self._set_close(CloseCode.IDLE_TIMEOUT, f"no hello within {timeout:g} s")
        if frame is None:
            return False
        admission = self.server.admission
        try:
            hello = parse_hello(self.codec.decode(frame))
            wait = admission.hello_wait(self.host, trio.current_time())
            if wait:  # failures from this address while this connection was open: no more guesses
                raise HelloThrottled(f"too many failed hellos from your address; retry after {wait} s",
                                     request_id=hello.id, retry_after_s=wait)
            self.identity = authenticate(hello, self.server.hall, self.server.secret)
            self._hello = hello
            windows = self._places(hello)
            if self.identity.role == "phone":
                self._join_phone(hello.id)
        except ProtocolError as exc:
            if not isinstance(exc, HelloThrottled):
                admission.hello_failed(self.host, trio.current_time())
            self._log_rejected("hello", exc.code, exc.message)
            await self._send_now(error(exc.request_id, exc.code, exc.message, exc.details))
            self._set_close(exc.close_code or CloseCode.HANDSHAKE_FAILED, exc.code)
            return False
        self._table = ROLE_MESSAGES[self.identity.role]
        await self._send_now(self.server.welcome(self.identity, hello.id))
        self.server.attach(self)
        log(self._log_level(), "conn_open", peer=self.peer, role=self.role, subprotocol=self.codec.subprotocol,
            window=self.identity.window, ticket=self.identity.ticket)
        self._greet(windows)
        return True

    def _join_phone(self, request_id: Any) -> None:
        """Count this phone, or raise ``rate_limited`` (close 4029) when the phones' share is taken."""
        refusal = self.server.admission.join_phone()
        if refusal is not None:
            raise HelloThrottled(f"{refusal.message}; retry after {refusal.retry_after_s} s",
                                 request_id=request_id, retry_after_s=refusal.retry_after_s)
        self._phone_counted = True

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
            if self.identity.role == "speaker":  # speakers only announce: get the voice ready
                self.server.announcer.warm()
            else:
                self.push(self.frame({"type": "board", "windows": hub.board_of(windows),
                                      "services": hub.services_of(self)}))
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
            await self.ws.send((self.encode(message),))
        except ConnectionClosed:
            pass

    # ------------------------------------------------------------------ serving

    async def _serve(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._write_loop)
            async with trio.open_nursery() as self._relays:
                async with self._out_send:  # the writer ends once the request loop has
                    await self._request_loop()
                self._relays.cancel_scope.cancel()  # the upstream connection, if any, ends with the session

    def owner_changed(self, why: str) -> None:
        """The hall's owner changed (or this process became it): drop the upstream connection;
        relayed commands still waiting for its answer get ``unavailable`` (retry)."""
        if self._upstream is not None:
            self._upstream.close(why)

    async def _next_frame(self) -> Any:
        """The next frame, or None when the client closed."""
        if not self._inbox and not await self._receive():
            return None
        return self._inbox.popleft()

    async def _receive(self) -> bool:
        """Read the next frames into the inbox; False when the client closed."""
        try:
            self._inbox.extend(await self.ws.receive())
            return True
        except ConnectionClosed as exc:
            reason = exc.reason
            self._client_close = f"{reason.code} {reason.reason or ''}".strip()
            if reason.code == CloseCode.MESSAGE_TOO_BIG:
                self._set_close(CloseCode.MESSAGE_TOO_BIG, "frame too big")
                self._log_rejected("frame", "message_too_big", reason.reason or "")
            return False

    async def _request_loop(self) -> None:
        """Read, execute, wait for the log, answer; one turn per socket read."""
        idle = self.server.settings.idle_timeout_s
        inbox = self._inbox
        while True:
            if not inbox:
                if not self._reading:
                    return
                received = None
                with trio.CancelScope(deadline=trio.current_time() + idle) as self._input_scope:
                    received = await self._receive()
                if received is None:  # cancelled: drained, killed, or the client fell silent
                    if self._reading:
                        self._set_close(CloseCode.IDLE_TIMEOUT, f"no message for {idle:g} s")
                    return
                if not received:
                    return
            now = trio.current_time()
            replies = [self._handle(inbox.popleft(), now) for _ in range(min(len(inbox), self._max_in_flight))]
            if not await self._answer(replies):
                return

    def _handle(self, frame: Any, now: float) -> Reply:
        rid = kind = None
        try:
            message = self.codec.decode(frame)
            rid = request_id(message)
            kind = message.get("type") if type(message.get("type")) is str else None
            if not self._bucket.take(now):
                raise RateLimited("too many messages: slow down", request_id=rid,
                                  rate_per_s=self._bucket.rate, burst=self._bucket.burst)
            kind, fields = parse(message, self._table, rid)
            self.messages += 1
            if kind in COMMAND_TYPES and not self.server.owning:  # a standby: the owner executes it
                self._relaying = True
                return Relay(rid, message), None
            return HANDLERS[kind](self, kind, rid, fields)
        except ProtocolError as exc:
            rid = exc.request_id if exc.request_id is not None else rid  # raised below the message layer
            return None, self._reject(rid, kind, exc.code, exc.message, exc.details)
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

    def _log_level(self) -> int:
        """Phones open and close at DEBUG: ten thousand of them would drown the devices' lines."""
        return logging.DEBUG if self.role == "phone" else logging.INFO

    def _log_rejected(self, kind: str | None, code: str, message: str) -> None:
        log(logging.INFO, "rejected", peer=self.peer, role=self.role, type=kind, code=code, message=message)

    async def _answer(self, replies: list[Reply]) -> bool:
        """Wait until the commands among *replies* are durable, then send them all in one write.

        False when the connection is done: it broke, or the log failed (the server stops).
        """
        journal = self.server.journal
        if self._relaying:
            self._relaying = False
            await self._relayed(replies)
        newest = max((pending.last_seq for pending, _ in replies if pending is not None), default=0)
        if newest > journal.durable_seq:
            try:
                await journal.wait_durable(newest)
            except LogError as exc:
                self.server.fail(exc)
        if self.server.failure is not None:
            await self._answer_failed(replies)
            return False
        encode = self.encode
        frames = []
        for pending, message in replies:
            if pending is not None:
                message["result"]["seq"] = pending.last_seq
            frames.append(encode(message))
        if self._killed:
            return False
        try:
            await self.ws.send(frames)
        except ConnectionClosed:
            self._scope.cancel()
            return False
        return True

    async def _relayed(self, replies: list[Any]) -> None:
        """Send this turn's relays to the owner, wait for their answers and put them in their
        places in *replies*; then wait (at most :data:`FOLLOW_WAIT_S`) until this process has
        followed the newest ``seq`` among them, so what the client asks next reflects its command."""
        relays = [pending for pending, _ in replies if type(pending) is Relay]
        if self._upstream is None:
            hello = self._hello
            self._upstream = Upstream(self._relays, self.codec, {
                "role": hello.role, "token": hello.token, "window": hello.window, "ticket": hello.ticket,
                "secret": hello.secret})
        await self._upstream.send(relays, self.server.owner_url)
        for relay in relays:
            await relay.done.wait()
        for i, (pending, _) in enumerate(replies):
            if type(pending) is Relay:
                replies[i] = (None, pending.answer)
                if pending.answer.get("type") == "error":
                    self._log_rejected(pending.message.get("type"), pending.answer.get("code"),
                                       pending.answer.get("message", ""))
        newest = max(relay.seq for relay in relays)
        if newest > self.server.journal.durable_seq:
            with trio.move_on_after(FOLLOW_WAIT_S):
                try:
                    await self.server.journal.wait_durable(newest)
                except LogError:
                    pass  # the owner has it durable: the answer stands

    async def _answer_failed(self, replies: list[Reply]) -> None:
        """The event log failed: durable commands get their ``ok``, rejections their error,
        everything else — and the messages read but not yet executed — ``unavailable``
        with its id. Written even while cancelled, within ``CLOSE_TIMEOUT_S``."""
        failed = Unavailable("the server stopped: its event log failed; retry once it is back")
        frames = []
        for pending, message in replies:
            if pending is not None and pending.durable:
                message["result"]["seq"] = pending.last_seq
            elif message["type"] != "error":
                message = error(message.get("id"), failed.code, failed.message)
            frames.append(self.encode(message))
        while self._inbox:  # read, never executed: answered too, so no client waits in vain
            try:
                rid = request_id(self.codec.decode(self._inbox.popleft()))
            except Exception:  # unreadable: nothing to answer
                continue
            frames.append(self.encode(error(rid, failed.code, failed.message)))
        with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT_S):
            try:
                await self.ws.send(frames)
            except ConnectionClosed:
                pass

    async def _write_loop(self) -> None:
        """Write what is queued, as many frames per write as are waiting (and the socket's backlog first)."""
        receive = self._out_recv
        try:
            async for data in receive:
                batch = take_ready(receive, data)
                if self._killed:
                    return
                await self.ws.send_frames(b"".join(batch))
                self._unsent -= len(batch)
        except ConnectionClosed:
            self._scope.cancel()

    def frame(self, message: dict[str, Any]) -> bytes:
        """*message* encoded and framed for this connection (what :meth:`push` takes)."""
        return message_frames((self.encode(message),))

    def push(self, data: bytes) -> None:
        """Send a push (*data*: frame bytes) without blocking: now if the socket has room and
        nothing is queued before it, else through the writer task (the hub)."""
        if self._killed:
            return
        if not self._unsent:
            written = self.ws.write_nowait(data)
            if written is Written.SENT:
                self.pushed_direct += 1
                return
            if written is Written.OWED:  # the rest waits in the socket's backlog: the writer sends it
                self.pushed_direct += 1
                data = b""
        try:
            self._out_send.send_nowait(data)
        except trio.WouldBlock:
            self.kill(CloseCode.SLOW_CONSUMER, "send queue overflow: the client reads too slowly")
            return
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return
        self._unsent += 1
        if data:
            self.pushed_queued += 1
