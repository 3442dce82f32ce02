"""The callsys client library: one authenticated WebSocket connection, requests and pushes.

Used by the terminal tools, the simulator's live mode, the benchmarks and the tests::

    async with connect("ws://127.0.0.1:8700/ws", role="kiosk", token="demo-kiosk") as client:
        ticket = await client.request("take_number", service="BIZ")
        print(ticket["number"], ticket["ahead"])

Requests may be pipelined from several tasks: each carries an ``id`` and its reply is
matched by it. Pushes (``board``, ``window_update``, ``announce``, ``ticket_update``) and
replies without an ``id`` arrive through :meth:`Client.next_push` / :meth:`Client.pushes`.
A ``ping`` is sent every third of the server's idle timeout to keep the connection open.

A :class:`Client` is one connection. A device that must ride out broken connections and
server restarts uses :func:`connect_device` instead: the :class:`Device` reconnects by
itself with jittered exponential backoff, gives every command an idempotency key, and
retries a request whose answer was lost with the same key — so a kiosk whose connection
breaks after ``take_number`` gets its one ticket, never two::

    async with connect_device(url, role="kiosk", token="demo-kiosk") as kiosk:
        ticket = await kiosk.request("take_number", service="BIZ")   # retried if need be
"""

from __future__ import annotations

import itertools
import math
import random
import secrets
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, ClassVar, Final

import trio
from trio_websocket import (ConnectionClosed, ConnectionRejected, HandshakeError, WebSocketConnection,
                            open_websocket_url)

from .errors import CallsysError
from .protocol import CODECS, COMMAND_TYPES, JSON, MSGPACK, CloseCode, Codec
from .wire import send_frames, take_ready

DEFAULT_URL: Final = "ws://127.0.0.1:8700/ws"
PUSH_BUFFER: Final = 10_000  # pushes held for the application before the connection stops reading
RECEIVE_QUEUE: Final = 256  # frames read ahead of the application
FORMATS: Final = {"msgpack": MSGPACK, "json": JSON}
RETRY_FOR_S: Final = 60.0  # how long a Device keeps retrying one request across reconnects
BACKOFF_FIRST_S: Final = 0.25  # a Device's first reconnect delay (then doubled, with jitter)
BACKOFF_MAX_S: Final = 10.0  # its longest reconnect delay
CLOSE_TIMEOUT_S: Final = 2.0  # how long a closing Device waits for the server's close frame
# Closes after which reconnecting cannot help: the server refused who the device says it is,
# or another console took the clerk's window over (reconnecting would take it back, forever).
FINAL_CLOSES: Final = frozenset({CloseCode.HANDSHAKE_FAILED, CloseCode.UNAUTHORIZED, CloseCode.REPLACED})


class ClientError(CallsysError):
    """Base of client-side errors."""

    code: ClassVar[str] = "client_error"


class RequestFailed(ClientError):
    """The server answered a request with an ``error`` frame. The fault is the request's.

    Attributes:
        code: the server's error code (``unknown_ticket``, ``forbidden``, ``rate_limited``...).
        message: its explanation; ``details``: its machine-readable facts.
    """

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code  # type: ignore[misc]
        self.message = message
        self.details = details or {}


class ConnectionLost(ClientError):
    """The connection closed (by the server, the network, or before it was established).

    Attributes:
        close_code: the WebSocket close code (see docs/protocol.md), or None without one.
        reason: the close reason text.
    """

    code = "connection_lost"

    def __init__(self, close_code: int | None, reason: str | None, *, retry_after_s: float | None = None) -> None:
        super().__init__(f"connection closed ({close_code}): {reason or ''}".rstrip(": "))
        self.close_code = close_code
        self.reason = reason
        self.retry_after_s = retry_after_s  # the server's Retry-After when it refused the connection


class _Waiter:
    __slots__ = ("done", "reply")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.reply: dict[str, Any] | None = None


class _Pushes:
    """Pushes (and id-less replies) as they arrive, for :class:`Client` and :class:`Device`."""

    _push_recv: trio.MemoryReceiveChannel[dict[str, Any]]

    def _ended(self) -> ClientError | None:
        """Why no more pushes come (the close, or the failure), if known."""
        raise NotImplementedError

    async def next_push(self) -> dict[str, Any]:
        """The next push.

        Raises:
            ConnectionLost: the connection (a device: for good) closed and no push is left.
        """
        try:
            return await self._push_recv.receive()
        except trio.EndOfChannel:
            raise self._ended() or ConnectionLost(None, "closed") from None

    async def pushes(self) -> AsyncIterator[dict[str, Any]]:
        """Every push until the connection (a device: for good) closes."""
        async for push in self._push_recv:
            yield push


class Client(_Pushes):
    """An authenticated connection; build it with :func:`connect`."""

    def __init__(self, ws: WebSocketConnection, codec: Codec) -> None:
        self.ws = ws
        self.codec = codec
        self.welcome: dict[str, Any] = {}
        self.closed: ConnectionLost | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[Any, _Waiter] = {}
        self._push_send, self._push_recv = trio.open_memory_channel[dict[str, Any]](PUSH_BUFFER)
        self._out_send, self._out_recv = trio.open_memory_channel[str | bytes](math.inf)

    @property
    def role(self) -> str:
        return self.welcome["role"]

    def _ended(self) -> ClientError | None:
        return self.closed

    # ------------------------------------------------------------------ requests

    async def request(self, type: str, **fields: Any) -> Any:
        """Send a message of *type* with *fields*; return the ``result`` of its ``ok`` reply.

        Raises:
            RequestFailed: the server answered with an error.
            ConnectionLost: the connection closed before the reply.
        """
        rid = next(self._ids)
        waiter = self._waiting[rid] = _Waiter()
        try:
            await self.send({"type": type, "id": rid, **fields})
            await waiter.done.wait()
        finally:
            self._waiting.pop(rid, None)
        reply = waiter.reply
        if reply is None:
            raise self.closed or ConnectionLost(None, "closed")
        if reply["type"] == "error":
            raise RequestFailed(reply["code"], reply["message"], reply.get("details"))
        return reply["result"]

    async def send(self, message: dict[str, Any]) -> None:
        """Send *message* as is (no reply matching)."""
        await self.send_raw(self.codec.encode(message))

    async def send_raw(self, frame: str | bytes) -> None:
        """Queue a frame exactly as given (tests use it for malformed input).

        Frames queued together go out in one write (see :mod:`callsys.wire`).

        Raises:
            ConnectionLost: the connection is already closed.
        """
        if self.closed is not None:
            raise self.closed
        self._out_send.send_nowait(frame)
        await trio.lowlevel.checkpoint()

    # ------------------------------------------------------------------ background

    async def _read(self) -> None:
        async with self._push_send:
            try:
                while True:
                    message = self.codec.decode(await self.ws.get_message())
                    waiter = self._waiting.get(message.get("id")) if message.get("type") in ("ok", "error") else None
                    if waiter is None:
                        await self._push_send.send(message)
                    else:
                        waiter.reply = message
                        waiter.done.set()
            except ConnectionClosed as exc:
                self._lost(exc)
            finally:
                for waiter in self._waiting.values():
                    waiter.done.set()

    async def _write(self) -> None:
        receive = self._out_recv
        try:
            async for frame in receive:
                await send_frames(self.ws, take_ready(receive, frame))
        except ConnectionClosed as exc:
            self._lost(exc)

    def _lost(self, exc: ConnectionClosed) -> ConnectionLost:
        if self.closed is None:
            reason = exc.reason
            self.closed = ConnectionLost(reason.code if reason else None, reason.reason if reason else None)
        return self.closed

    async def _keepalive(self, interval: float) -> None:
        while True:
            await trio.sleep(interval)
            try:
                await self.request("ping")
            except ClientError:
                return

    async def _hello(self, hello: dict[str, Any]) -> None:
        message = {"type": "hello", **{k: v for k, v in hello.items() if v is not None}}
        try:
            await self.ws.send_message(self.codec.encode(message))
            reply = self.codec.decode(await self.ws.get_message())
        except ConnectionClosed as exc:
            raise self._lost(exc) from None
        if reply.get("type") == "error":
            raise RequestFailed(reply["code"], reply["message"], reply.get("details"))
        self.welcome = reply


@asynccontextmanager
async def connect(url: str = DEFAULT_URL, *, role: str, token: str | None = None, window: int | None = None,
                  ticket: int | None = None, secret: str | None = None, subscribe: dict[str, Any] | None = None,
                  fmt: str = "msgpack", keepalive: bool = True) -> AsyncIterator[Client]:
    """Connect, say hello and yield the :class:`Client`; close on exit.

    Args:
        url: the server's WebSocket URL.
        role: kiosk, clerk, display, speaker, manager or phone.
        token: the device token (all roles but phone).
        window: a clerk's window.
        ticket, secret: a phone's ticket id and the secret from the take-number reply.
        subscribe: a display's, speaker's or manager's subscription.
        fmt: ``"msgpack"`` (binary frames) or ``"json"`` (text frames).
        keepalive: ping in the background so the idle timeout never fires.

    Raises:
        RequestFailed: the server rejected the hello (``unauthorized``, ``invalid_field``...).
        ConnectionLost: the server could not be reached or refused the WebSocket handshake.
    """
    codec = CODECS[FORMATS[fmt]]
    try:
        async with open_websocket_url(url, subprotocols=[codec.subprotocol], message_queue_size=RECEIVE_QUEUE) as ws:
            client = Client(ws, codec)
            await client._hello({"token": token, "role": role, "window": window, "ticket": ticket,
                                 "secret": secret, "subscribe": subscribe})
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client._read)
                nursery.start_soon(client._write)
                idle = client.welcome.get("limits", {}).get("idle_timeout_s", math.inf)
                if keepalive and math.isfinite(idle):
                    nursery.start_soon(client._keepalive, idle / 3)
                try:
                    yield client
                finally:
                    nursery.cancel_scope.cancel()
    except ConnectionRejected as exc:
        raise ConnectionLost(None, f"{url} refused the connection: HTTP {exc.status_code}",
                              retry_after_s=_retry_after(exc.headers)) from None
    except (HandshakeError, OSError) as exc:
        raise ConnectionLost(None, f"cannot connect to {url}: {exc}") from None


def _retry_after(headers: Any) -> float | None:
    for name, value in headers or ():
        if bytes(name).lower() == b"retry-after":
            try:
                return float(value)
            except ValueError:
                return None
    return None


class Device(_Pushes):
    """A device that stays connected; build it with :func:`connect_device`.

    It has :class:`Client`'s ``request``, ``next_push``, ``pushes`` and ``welcome``; what
    differs is what happens when the connection breaks:

    * the device reconnects by itself (same hello), after a jittered delay that doubles
      from ``BACKOFF_FIRST_S`` to ``BACKOFF_MAX_S`` (or the server's ``Retry-After``), so
      thousands of devices coming back after a restart do not arrive at once;
    * a request whose answer was lost (connection closed, or ``unavailable`` from a server
      going down) is sent again on the next connection, for up to ``retry_for_s`` — or on the
      same one after ``details.retry_after_s`` when the ``unavailable`` says ``retry: true``
      (a standby that could not get the hall's owner's answer, see docs/protocol.md); commands
      carry an idempotency ``key`` (a fresh one unless the caller gives one), so the retry
      answers the original result instead of executing twice;
    * after a final close (a refused hello, or a clerk's window taken over by a newer
      sign-in) it stops: requests and pushes raise that error.

    Pushes continue across connections; after a reconnect the server sends the fresh
    ``board`` (or ``ticket_update``) a new connection gets, so a view resyncs by itself.

    Attributes:
        connects: connections established so far (1 + reconnects).
        failure: the error that stopped the device for good, or None.
    """

    def __init__(self, url: str, hello: dict[str, Any], *, fmt: str = "msgpack", keepalive: bool = True,
                 retry_for_s: float = RETRY_FOR_S) -> None:
        self.url = url
        self.hello = hello
        self.fmt = fmt
        self.keepalive = keepalive
        self.retry_for_s = retry_for_s
        self.connects = 0
        self.failure: ClientError | None = None
        self.welcome: dict[str, Any] = {}
        self._client: Client | None = None
        self._closing = False
        self._changed = trio.Event()  # set (and replaced) whenever the connection changes
        self._prefix = secrets.token_hex(8)  # keys: 16 random hex characters, '-', a counter
        self._keys = itertools.count(1)
        self._push_send, self._push_recv = trio.open_memory_channel[dict[str, Any]](PUSH_BUFFER)

    @property
    def role(self) -> str:
        return self.welcome["role"]

    def _ended(self) -> ClientError | None:
        return self.failure

    def new_key(self) -> str:
        """A fresh idempotency key, unique to this device (well under the 64-character limit)."""
        return f"{self._prefix}-{next(self._keys)}"

    async def request(self, type: str, **fields: Any) -> Any:
        """Send a message; return its ``result``, retrying on the next connection if need be.

        Raises:
            RequestFailed: the server answered with an error (other than ``unavailable``).
            ConnectionLost: no answer within ``retry_for_s``, or the device stopped for good.
        """
        if type in COMMAND_TYPES:
            fields.setdefault("key", self.new_key())
        deadline = trio.current_time() + self.retry_for_s
        client = None
        while True:
            client = await self._connection(deadline, other_than=client)
            try:
                return await client.request(type, **fields)
            except ConnectionLost:
                pass
            except RequestFailed as exc:
                if exc.code != "unavailable":  # unavailable: the server is going down; ask the next one
                    raise
                if exc.details.get("retry"):  # a standby could not get the owner's answer: same connection, later
                    wait = exc.details.get("retry_after_s") or BACKOFF_FIRST_S
                    if trio.current_time() + wait >= deadline:
                        raise ConnectionLost(None, f"no answer from {self.url} for {self.retry_for_s:g} s: "
                                                   f"{exc}") from None
                    await trio.sleep(wait)
                    client = None

    async def _connection(self, deadline: float, other_than: Client | None) -> Client:
        """A live connection, not *other_than* (the one that just failed a request)."""
        while True:
            client = self._client
            if client is not None and client is not other_than and client.closed is None:
                return client
            if self.failure is not None:
                raise self.failure
            with trio.move_on_at(deadline):
                await self._changed.wait()
                continue
            raise ConnectionLost(None, f"no connection to {self.url} for {self.retry_for_s:g} s")

    async def aclose(self) -> None:
        """Close the current connection with 1000 and stop reconnecting."""
        self._closing = True
        client = self._client
        if client is not None:
            with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT_S):
                await client.ws.aclose()

    def _set(self, client: Client | None) -> None:
        self._client = client
        if client is not None:
            self.welcome = client.welcome
            self.connects += 1
        changed, self._changed = self._changed, trio.Event()
        changed.set()

    async def _run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Hold a connection, reconnecting until a final close; the first attempt must succeed."""
        delay = BACKOFF_FIRST_S
        started = False
        async with self._push_send:
            while True:
                try:
                    async with connect(self.url, fmt=self.fmt, keepalive=self.keepalive, **self.hello) as client:
                        self._set(client)
                        delay = BACKOFF_FIRST_S
                        if not started:
                            started = True
                            task_status.started()
                        async for push in client.pushes():
                            await self._push_send.send(push)
                        lost: ClientError = client.closed or ConnectionLost(None, "closed")
                except (ConnectionLost, RequestFailed) as exc:
                    if not started:
                        raise  # the first connection: the caller learns at once
                    lost = exc
                self._set(None)
                if self._closing:
                    return
                if _final(lost):
                    self.failure = lost
                    return
                retry_after = getattr(lost, "retry_after_s", None)
                await trio.sleep(retry_after if retry_after is not None else random.uniform(delay / 2, delay))
                delay = min(delay * 2, BACKOFF_MAX_S)


def _final(error: ClientError) -> bool:
    """True when reconnecting cannot help (see :data:`FINAL_CLOSES`)."""
    if isinstance(error, RequestFailed):  # the hello was refused
        return error.code != "rate_limited"
    return isinstance(error, ConnectionLost) and error.close_code in FINAL_CLOSES


@asynccontextmanager
async def connect_device(url: str = DEFAULT_URL, *, role: str, token: str | None = None, window: int | None = None,
                         ticket: int | None = None, secret: str | None = None,
                         subscribe: dict[str, Any] | None = None, fmt: str = "msgpack", keepalive: bool = True,
                         retry_for_s: float = RETRY_FOR_S) -> AsyncIterator[Device]:
    """Connect a :class:`Device` (first connection made before this returns); stop it on exit.

    Takes :func:`connect`'s arguments, plus *retry_for_s*: how long one request is retried.

    Raises:
        RequestFailed: the server rejected the first hello.
        ConnectionLost: the server could not be reached the first time.
    """
    hello = {"role": role, "token": token, "window": window, "ticket": ticket, "secret": secret,
             "subscribe": subscribe}
    device = Device(url, hello, fmt=fmt, keepalive=keepalive, retry_for_s=retry_for_s)
    refused: ClientError | None = None
    async with trio.open_nursery() as nursery:
        try:
            await nursery.start(device._run)
        except ClientError as exc:
            refused = exc  # raised below, outside the nursery: the caller gets it, not a group around it
        else:
            try:
                yield device
            finally:
                await device.aclose()  # a clean close handshake, not a dropped connection
                nursery.cancel_scope.cancel()
    if refused is not None:
        raise refused
