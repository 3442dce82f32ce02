"""A standby's relay of its clients' commands to the hall's owner (policy: :mod:`callsys.server.standby`).

Each client session of a standby that sends a command gets an :class:`Upstream`: a
WebSocket to the owner's advertised URL, opened with the client's own hello, on which the
session's commands travel verbatim (only their ``id`` is the relay's own, so answers are
matched) and the owner's answers come back (:class:`Relay`, with the client's ``id``).
Anything that keeps an answer from coming — the owner unreachable or unknown, its
connection closed, the owner changed, no answer within :data:`RELAY_TIMEOUT_S` — answers
``unavailable`` with ``details.retry = true``: the client resends with the same
idempotency key and the engine executes the command once (:mod:`callsys.keys`).

Kept out of :mod:`.standby` so a server on a file store, which never relays, does not load
the Redis store's module.
"""

from __future__ import annotations

import itertools
from typing import Any, Final

import trio
from trio_websocket import ConnectionClosed, HandshakeError, WebSocketConnection, connect_websocket_url

from ..protocol import Codec, Unavailable, error

RETRY_AFTER_S: Final = 1  # seconds a client told ``unavailable`` by a standby should wait (a takeover takes ~2 s)
FOLLOW_WAIT_S: Final = 2.0  # seconds a forwarded ``ok`` waits for this process to apply its seq, at most
RELAY_CONNECT_TIMEOUT_S: Final = 2.0  # seconds to open the upstream connection and get the owner's welcome
RELAY_TIMEOUT_S: Final = 5.0  # seconds a relayed command waits for the owner's answer: the owner waits up to
#   2 s for Redis (callsys.log.redis.OUTAGE_S), and 2 s more without its lease (LEASE_TTL_S) fences it
RELAY_QUEUE: Final = 1024  # answers from the owner buffered per upstream connection


class Relay:
    """A client's command on its way to the owner; :attr:`answer` (with the client's ``id``) once back.

    Attributes:
        rid: the client's ``id`` of the command.
        message: the decoded command as the client sent it.
        answer: the owner's ``ok``/``error`` with *rid*, or the ``unavailable`` error that replaced it.
        seq: the owner's ``seq`` of an ``ok`` (0 otherwise).
    """

    __slots__ = ("rid", "message", "answer", "done")

    def __init__(self, rid: Any, message: dict[str, Any]) -> None:
        self.rid = rid
        self.message = message
        self.answer: dict[str, Any] | None = None
        self.done = trio.Event()

    @property
    def seq(self) -> int:
        result = self.answer.get("result") if self.answer and self.answer.get("type") == "ok" else None
        seq = result.get("seq") if isinstance(result, dict) else None
        return seq if type(seq) is int else 0

    def settle(self, answer: dict[str, Any]) -> None:
        """Answer the relay (the first answer wins)."""
        if not self.done.is_set():
            if self.rid is None:
                answer.pop("id", None)
            else:
                answer["id"] = self.rid
            self.answer = answer
            self.done.set()

    def fail(self, why: str, owner_url: str | None) -> None:
        """Answer ``unavailable`` with ``retry: true``: resend with the same idempotency key."""
        failed = Unavailable(why)
        self.settle(error(self.rid, failed.code, failed.message,
                          {"retry": True, "retry_after_s": RETRY_AFTER_S, "owner_url": owner_url}))


class Upstream:
    """A client session's connection to the hall's owner, for its commands (see the module docstring).

    Opened on the first :meth:`send`, with *hello* (the client's own: role, token, window,
    ticket, secret; no subscription) in the client's format *codec*; reopened after it
    closed. Runs its tasks in *nursery* (the session's).
    """

    def __init__(self, nursery: trio.Nursery, codec: Codec, hello: dict[str, Any]) -> None:
        self._nursery = nursery
        self._codec = codec
        self._hello = {"type": "hello", **{k: v for k, v in hello.items() if v is not None}}
        self._ws: WebSocketConnection | None = None
        self._url: str | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, Relay] = {}

    async def send(self, relays: list[Relay], url: str | None) -> None:
        """Send *relays* to the owner at *url*, in order; each is answered (:meth:`Relay.settle`)
        by the owner, or ``unavailable`` if the owner cannot be reached or goes away first."""
        if url is None:
            for relay in relays:
                relay.fail("no process owns the hall right now (a standby takes over within seconds); retry "
                           "with the same idempotency key", None)
            return
        if self._ws is not None and (self._url != url or self._ws.closed):
            self.close("the hall's owner changed")
        if self._ws is None:
            try:
                await self._connect(url)
            except _Refused as exc:
                for relay in relays:
                    relay.settle(dict(exc.answer))
                return
            except (OSError, HandshakeError, ConnectionClosed, trio.TooSlowError) as exc:
                for relay in relays:
                    relay.fail(f"this process forwards commands to the hall's owner at {url}, which cannot be "
                               f"reached ({type(exc).__name__}); retry with the same idempotency key", url)
                return
        ws = self._ws
        for i, relay in enumerate(relays):
            uid = next(self._ids)
            self._waiting[uid] = relay
            try:
                await ws.send_message(self._codec.encode({**relay.message, "id": uid}))
            except ConnectionClosed:  # the reader fails what waits for an answer; the rest was never sent
                for unsent in relays[i + 1:]:
                    unsent.fail("the hall's owner went away (a standby takes over within seconds); retry with the "
                                "same idempotency key", url)
                break
        self._nursery.start_soon(self._expire, relays, url)

    async def _connect(self, url: str) -> None:
        with trio.fail_after(RELAY_CONNECT_TIMEOUT_S):
            ws = await connect_websocket_url(self._nursery, url, subprotocols=[self._codec.subprotocol],
                                             message_queue_size=RELAY_QUEUE)
            try:
                await ws.send_message(self._codec.encode(self._hello))
                welcome = self._codec.decode(await ws.get_message())
            except BaseException:
                self._nursery.start_soon(ws.aclose)
                raise
        if welcome.get("type") != "welcome":
            self._nursery.start_soon(ws.aclose)
            raise _Refused(welcome)
        self._ws, self._url = ws, url
        self._nursery.start_soon(self._read, ws, url)

    async def _read(self, ws: WebSocketConnection, url: str) -> None:
        try:
            while True:
                answer = self._codec.decode(await ws.get_message())
                relay = self._waiting.pop(answer.get("id"), None) if answer.get("type") in ("ok", "error") else None
                if relay is not None:
                    relay.settle(answer)
        except ConnectionClosed:
            pass
        finally:
            if self._ws is ws:
                self._ws = None
            self._fail_waiting("the hall's owner went away before answering (a standby takes over within "
                               "seconds); retry with the same idempotency key", url)

    async def _expire(self, relays: list[Relay], url: str) -> None:
        """Answer ``unavailable`` what the owner has not answered within :data:`RELAY_TIMEOUT_S`."""
        with trio.move_on_after(RELAY_TIMEOUT_S):
            for relay in relays:
                await relay.done.wait()
            return
        for relay in relays:
            relay.fail(f"the hall's owner at {url} did not answer within {RELAY_TIMEOUT_S:g} s; retry with the "
                       "same idempotency key", url)

    def _fail_waiting(self, why: str, url: str | None) -> None:
        waiting, self._waiting = self._waiting, {}
        for relay in waiting.values():
            relay.fail(why, url)

    def close(self, why: str) -> None:
        """Drop the connection; what waits for an answer gets ``unavailable`` (retry)."""
        ws, self._ws = self._ws, None
        self._fail_waiting(f"{why} before answering; retry with the same idempotency key", self._url)
        if ws is not None:
            self._nursery.start_soon(ws.aclose)


class _Refused(Exception):
    """The owner answered the relayed hello with an error (*answer*)."""

    def __init__(self, answer: dict[str, Any]) -> None:
        super().__init__(answer.get("message"))
        self.answer = answer
