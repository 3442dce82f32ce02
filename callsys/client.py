"""The callsys client library: one authenticated WebSocket connection, requests and pushes.

Used by the terminal tools, the simulator's live mode, the benchmarks and the tests::

    async with connect("ws://127.0.0.1:8700/ws", role="kiosk", token="demo-kiosk") as client:
        ticket = await client.request("take_number", service="BIZ")
        print(ticket["number"], ticket["ahead"])

Requests may be pipelined from several tasks: each carries an ``id`` and its reply is
matched by it. Pushes (``board``, ``window_update``, ``announce``, ``ticket_update``) and
replies without an ``id`` arrive through :meth:`Client.next_push` / :meth:`Client.pushes`.
A ``ping`` is sent every third of the server's idle timeout to keep the connection open.
"""

from __future__ import annotations

import itertools
import math
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, ClassVar, Final

import trio
from trio_websocket import ConnectionClosed, HandshakeError, WebSocketConnection, open_websocket_url

from .errors import CallsysError
from .protocol import CODECS, JSON, MSGPACK, Codec
from .wire import send_frames, take_ready

DEFAULT_URL: Final = "ws://127.0.0.1:8700/ws"
PUSH_BUFFER: Final = 10_000  # pushes held for the application before the connection stops reading
RECEIVE_QUEUE: Final = 256  # frames read ahead of the application
FORMATS: Final = {"msgpack": MSGPACK, "json": JSON}


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

    def __init__(self, close_code: int | None, reason: str | None) -> None:
        super().__init__(f"connection closed ({close_code}): {reason or ''}".rstrip(": "))
        self.close_code = close_code
        self.reason = reason


class _Waiter:
    __slots__ = ("done", "reply")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.reply: dict[str, Any] | None = None


class Client:
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

    # ------------------------------------------------------------------ pushes

    async def next_push(self) -> dict[str, Any]:
        """The next push (or id-less reply).

        Raises:
            ConnectionLost: the connection closed and no push is left.
        """
        try:
            return await self._push_recv.receive()
        except trio.EndOfChannel:
            raise self.closed or ConnectionLost(None, "closed") from None

    async def pushes(self) -> AsyncIterator[dict[str, Any]]:
        """Every push until the connection closes."""
        async for push in self._push_recv:
            yield push

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
    except (HandshakeError, OSError) as exc:
        raise ConnectionLost(None, f"cannot connect to {url}: {exc}") from None
