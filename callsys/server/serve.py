"""The server: one WebSocket endpoint at ``/ws`` in front of the engine and its journal,
and HTTP (pages, static files, health) on the same port.

:func:`serve_callsys` recovers the engine from the store, listens, and runs until
:meth:`CallsysServer.shutdown` (clean: stop accepting, answer in-flight commands, close
every socket with 1001, write a final snapshot) or until a commit fails (fail-stop: the
engine's memory would be ahead of its log; sockets close with 1011 and
:class:`ServerError` is raised; a restart recovers from the log).

Each accepted TCP connection passes :class:`~callsys.server.limits.Admission` first
(connection caps, failed-hello throttle; the policy is in :mod:`~callsys.server.limits`):
a refused one gets HTTP 503 with ``Retry-After`` and never becomes a :class:`Session`.
An admitted one whose first request is not for ``/ws`` is handed to the HTTP app (hypercorn
+ Starlette, :mod:`~callsys.server.http`) for the rest of its life.
A window has one clerk connection: a newer clerk sign-in to it replaces the older one,
which answers its in-flight commands and closes with 4009.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from functools import partial
from typing import Any, Awaitable, Callable

import trio
from wsproto.events import Request
from wsproto.handshake import H11Handshake

from voice import http as voice_http
from voice.announcer import Announcer
from voice.render import Renderer

from .. import __version__
from ..clock import Clock, RealClock
from ..commands import Command
from ..engine import QueueEngine
from ..errors import CallsysError
from ..events import DayReset, Event
from ..hall import Hall
from ..log import Journal, LogError, Pending, open_journal
from ..protocol import CODECS, PATH, VERSION, CloseCode, Unavailable
from ..ratings import ratings_of
from ..regulator import AutoRegulator
from ..state import HallCalendar
from ..tokens import sample_api_clients, sample_token_roles
from . import _gc, _websocket, http, pages
from .auth import Identity
from .hub import Hub
from .limits import Admission, Refusal, RefusalLog
from .logs import log
from .loopwatch import LoopWatch
from .relay import RETRY_AFTER_S
from .session import Session
from .settings import DEFAULT_HOST, DEFAULT_PORT, REFUSAL_READ_S, ServerSettings
from .webhooks import Cursors, Webhooks, targets_of

SERVER_NAME = f"callsys/{__version__}"


class ServerError(CallsysError):
    """The server stopped on its own: its event log failed. The fault is the environment's."""

    code = "server_error"


class CallsysServer:
    """A running server; :func:`serve_callsys` hands it to ``nursery.start`` callers.

    Attributes:
        port: the TCP port it listens on (useful with port 0).
        url: ``ws://host:port/ws``.
        engine: the live engine (read it, never write it from outside).
        announcer: renders announcement audio, served at ``/audio/<key>.wav``.
        http: the HTTP side of the port (:class:`~callsys.server.http.HttpFrontend`).
        loop_watch: the event loop's stall figures (:mod:`~callsys.server.loopwatch`), or None
            when the run has no :class:`LoopWatch` installed.
        webhooks: the webhook deliveries (:mod:`~callsys.server.webhooks`), or None without targets.
        owning: True while this process executes the hall's commands: always on a file store; on
            a store with a lease, once it holds the lease (a standby follows and forwards until
            then, see :mod:`~callsys.server.standby`).
        owner_id, owner_url: the lease holder's id and advertised WebSocket URL (this process's
            own once it owns the hall); None on a file store, or while unknown.
    """

    def __init__(self, hall: Hall, engine: QueueEngine, journal: Journal, *, clock: Clock, secret: bytes,
                 settings: ServerSettings, announcer: Announcer | None = None,
                 loop_watch: LoopWatch | None = None, webhooks: Webhooks | None = None,
                 owning: bool = True) -> None:
        self.hall = hall
        self.owning = owning
        self.owner_id: str | None = None
        self.owner_url: str | None = None
        self._services: trio.Nursery | None = None
        self._follow: Callable[[], Awaitable[None]] | None = None  # a standby's follow task, run by run()
        self._owner_changed = trio.Event()  # set (and replaced) when owning, owner_id or owner_url change
        self.webhooks = webhooks
        self.loop_watch = loop_watch
        self.engine = engine
        self.journal = journal
        self.clock = clock
        self.secret = secret
        self.settings = settings
        self.ratings = ratings_of(engine.state)  # the day's ratings and bad-rating alerts (callsys.ratings)
        self.hub = Hub(hall, engine, self.ratings)
        self.announcer = announcer or Announcer(Renderer(None))  # renders the audio of announce pushes
        self.hub.board.prepare = self.announcer.prepare
        self.sessions: set[Session] = set()
        self._by_role: Counter[str] = Counter()  # len(sessions) by role
        self.clerks: dict[int, Session] = {}  # window -> its signed-in clerk connection
        self.admission = Admission(
            max_connections=settings.max_connections, max_per_address=settings.max_connections_per_address,
            trusted=settings.trusted_proxies, retry_after_s=settings.retry_after_s,
            hello_failures=settings.hello_failures, hello_window_s=settings.hello_failure_window_s,
            max_phones=int(settings.max_connections * settings.phone_share))
        self._refusals = RefusalLog(settings.refusal_log_interval_s)
        self.host = ""
        self.port = 0
        self.failure: BaseException | None = None
        self.stopping = False
        self._stop = trio.Event()
        self._connections_scope: trio.CancelScope | None = None
        self._websockets = 0  # connections on the fast path, from their upgrade request until closed
        self._drained = trio.Event()  # set once stopping and no WebSocket connection is left
        # Connections still waiting for their first request (a browser opens spare ones):
        # dropped at once on shutdown instead of holding it for the grace period.
        self._openings: set[trio.CancelScope] = set()
        self.http = http.HttpFrontend(http.build_app(self, [*voice_http.routes(self.announcer), *pages.routes(self)]),
                                      settings)

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}{PATH}"

    # ------------------------------------------------------------------ commands

    def execute(self, command: Command) -> tuple[list[Event], Pending]:
        """Decide, apply and submit *command* — synchronously, so log order is decide order.

        A repeated idempotency key answers the first command's events, with a *pending* that
        waits for them to be durable (see :mod:`callsys.keys`); the marker event a keyed
        command adds is logged but not returned.

        Raises:
            EngineError: the engine rejects it (KeyReused included); nothing changed.
            Unavailable: the server is stopping, or is a standby (``details``: ``owner_url``,
                ``retry``, ``retry_after_s``; a WebSocket session forwards instead, see
                :mod:`~callsys.server.standby`).
        """
        if self.stopping:
            raise Unavailable("the server is shutting down")
        if not self.owning:
            raise Unavailable(f"this process is a standby of hall {self.hall.id!r}: send commands to its owner at "
                              f"{self.owner_url or '(none right now)'}, or retry here after the takeover",
                              owner_url=self.owner_url, retry=True, retry_after_s=RETRY_AFTER_S)
        events = self.engine.decide(command)
        if not events and command.key is not None:  # a repeated key: decide wrote nothing
            original = self.engine.state.keys[command.key]
            return original.events, self.journal.pending_at(original.seq)
        try:
            self.engine.apply_all(events)
            pending = self.journal.submit(events)
        except BaseException as exc:
            self.fail(exc)
            raise Unavailable("the server stopped: its event log failed") from exc
        return (events[1:] if command.key is not None else events), pending

    def on_durable(self, batch: list[tuple[int, Event]]) -> None:
        """The journal's hook after each durable batch — committed here, or followed from the
        owner by a standby (:meth:`Journal.follow <callsys.log.journal.Journal.follow>`): fan
        the events out. A standby's webhooks keep the events but deliver nothing until it
        owns the hall (:meth:`take_over`)."""
        if self.webhooks is not None:
            self.webhooks.on_durable(batch)
        try:
            self.hub.on_durable(batch)
        except Exception:  # a bug in a projection: the log is intact, displays may lag; keep serving
            logging.getLogger("callsys.server").exception("fan-out failed at seq %s", batch[0][0])
        try:
            for _, event in batch:
                self.ratings.apply(event)
        except Exception:  # the same: the ratings may lag, the log is intact
            logging.getLogger("callsys.server").exception("ratings fold failed at seq %s", batch[0][0])
        if self.settings.manage_gc and any(type(e) is DayReset for _, e in batch):
            _gc.full_collection()  # the day is over: the quiet moment for a full scan

    # ------------------------------------------------------------------ connections

    def welcome(self, identity: Identity, rid: Any) -> dict[str, Any]:
        message = {
            "type": "welcome", "protocol": VERSION, "server": SERVER_NAME, "hall": self.hall.id,
            "hall_name": {"zh": self.hall.name.zh, "en": self.hall.name.en}, "timezone": self.hall.timezone,
            "role": identity.role,
            "server_time": self.clock.now(), "clock_speed": self.clock.speed, "limits": self.settings.limits(),
        }
        if identity.window is not None:
            message["window"] = identity.window
        if identity.ticket is not None:
            message["ticket"] = identity.ticket
        if rid is not None:
            message["id"] = rid
        return message

    def attach(self, session: Session) -> None:
        """*session* is signed in; a clerk's replaces the older clerk connection of its window."""
        if session not in self.sessions:
            self.sessions.add(session)
            self._by_role[session.role] += 1
        window = session.identity.window
        if session.role == "clerk" and window is not None:
            older = self.clerks.get(window)
            self.clerks[window] = session
            if older is not None and older is not session:
                log(logging.INFO, "clerk_replaced", window=window, peer=older.peer, by=session.peer)
                older.replace()

    def detach(self, session: Session) -> None:
        if session in self.sessions:
            self.sessions.remove(session)
            self._by_role[session.role] -= 1
        self.unsubscribe(session)
        if session.role == "clerk" and self.clerks.get(session.identity.window) is session:
            del self.clerks[session.identity.window]

    def unsubscribe(self, session: Session) -> None:
        """Stop all pushes to *session* (idempotent)."""
        if session.windows:
            self.hub.unwatch(session, session.windows, speaker=session.role == "speaker")
        if session.role == "phone":
            self.hub.unwatch_ticket(session, session.identity.ticket)
        self.hub.follow_cockpit(session, False)

    def watch_phone(self, session: Session) -> None:
        """Follow a phone's ticket and push its current state."""
        tid = session.identity.ticket
        self.hub.watch_ticket(session, tid)
        ticket = self.engine.state.tickets.get(tid)
        status, window = (ticket.status, ticket.window) if ticket else (None, None)
        self.hub.push_ticket(tid, status, window, "hello", self.clock.now(), None)

    def connections(self) -> dict[str, int]:
        """Authenticated connections by role (kept as they come and go: a manager's ``stats``
        with 11,000 connections open must not walk them all)."""
        return {role: n for role, n in self._by_role.items() if n}

    async def _serve_stream(self, stream: trio.SocketStream) -> None:
        """One TCP connection: admission, its first request head, then a :class:`Session`
        (a ``/ws`` upgrade) or the HTTP app (anything else).

        The connection counts against the caps from here (right after accept) until its
        socket is closed. Whatever a client does wrong here (resetting mid-handshake,
        sending garbage) ends this connection only; it is logged and never reaches the
        other connections.
        """
        host, peer = _peer(stream)
        refusal = self.admission.admit(host, trio.current_time())
        try:
            if refusal is not None:
                await self._refuse(stream, host, refusal)
                return
            opening = None
            with trio.move_on_after(self.settings.handshake_timeout_s) as waiting:
                self._openings.add(waiting)
                try:
                    opening = await http.read_opening(stream)
                finally:
                    self._openings.discard(waiting)
            if opening is None:
                return
            if not opening.websocket:
                await self.http.serve(stream, opening.data)
                return
            self._websockets += 1
            try:
                upgrade = await _websocket.upgrade_request(stream, opening.data)
                await self._handle_request(stream, *upgrade, host, peer)
            finally:
                self._websockets -= 1
                if self.stopping and not self._websockets:
                    self._drained.set()
        except Exception as exc:  # the client's fault or a bug: this connection only
            log(logging.WARNING, "conn_error", peer=peer, error=_describe(exc))
        finally:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)
            if refusal is None:
                self.admission.release(host)

    async def _refuse(self, stream: trio.SocketStream, host: str, refusal: Refusal) -> None:
        """Answer 503 + Retry-After to the first request if it comes soon. Logged per address, not per connection."""
        key = "*" if refusal.reason == "server_full" else host  # a full server: one line, not one per address
        stale, unlogged = self._refusals.note(key, trio.current_time())
        for address, count in stale:
            log(logging.WARNING, "refused", address=address, unlogged=count)
        if unlogged is not None:
            log(logging.WARNING, "refused", address=key, reason=refusal.reason, retry_after_s=refusal.retry_after_s,
                open=self.admission.open, unlogged=unlogged)
        try:
            with trio.move_on_after(min(REFUSAL_READ_S, self.settings.handshake_timeout_s)):
                opening = await http.read_opening(stream)
                if opening is not None:
                    await http.respond(stream, opening, 503, _refusal_body(refusal), [_retry_after(refusal)])
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # gone: nothing more to say

    async def _reject_503(self, stream: trio.SocketStream, handshake: H11Handshake, refusal: Refusal) -> None:
        await _websocket.reject(stream, handshake, 503, _refusal_body(refusal), [_retry_after(refusal)])

    async def _handle_request(self, stream: trio.SocketStream, handshake: H11Handshake, request: Request,
                              host: str, peer: str) -> None:
        codec = next((CODECS[p] for p in request.subprotocols if p in CODECS), None)
        if codec is None:
            log(logging.INFO, "rejected", peer=peer, code="subprotocol", offered=list(request.subprotocols))
            body = f"offer one of the subprotocols {', '.join(CODECS)}\n".encode()
            await _websocket.reject(stream, handshake, 400, body)
            return
        if self.stopping:
            await self._reject_503(stream, handshake, Refusal("shutting_down", self.settings.retry_after_s,
                                                              "the server is shutting down"))
            return
        ws = await _websocket.accept(stream, handshake, codec.subprotocol, max_message=self.settings.max_frame_bytes)
        await Session(self, ws, codec, peer, host).run()

    # ------------------------------------------------------------------ lifecycle

    def shutdown(self) -> None:
        """Begin a clean shutdown (idempotent)."""
        if not self.stopping:
            log(logging.INFO, "shutdown", connections=len(self.sessions))
        self.stopping = True
        self._stop.set()

    def fail(self, exc: BaseException) -> None:
        """Stop at once after a failed commit (fail-stop): in-flight commands are answered
        ``unavailable`` and every connection closes with 1011 (see :mod:`.session`)."""
        if self.failure is None:
            self.failure = exc
            log(logging.CRITICAL, "event_log_failed", error=_describe(exc), action="stopping without acknowledging more")
            for session in list(self.sessions):
                session.kill(CloseCode.INTERNAL_ERROR, "event log failure")
        self.stopping = True
        self._stop.set()
        if self._connections_scope is not None:
            self._connections_scope.cancel()

    async def run(self, host: str, port: int, task_status: trio.TaskStatus,
                  listeners: list[trio.SocketListener] | None = None) -> None:
        settings = self.settings
        async with trio.open_nursery() as connections:
            self._connections_scope = connections.cancel_scope
            async with trio.open_nursery() as services:
                self._services = services
                if listeners is None:
                    listeners = await trio.open_tcp_listeners(port, host=host)
                await services.start(partial(trio.serve_listeners, self._serve_stream, listeners,
                                             handler_nursery=connections))
                self.host, self.port = host, listeners[0].socket.getsockname()[1]
                services.start_soon(self._refresh_phones)
                services.start_soon(self.hub.deliver, settings.fanout_slice)
                services.start_soon(self.hub.push_summaries, settings.queue_push_interval_s, self.clock.now,
                                    settings.fanout_slice)
                if self.owning:
                    self._start_owning()
                elif self._follow is not None:
                    services.start_soon(self._follow)
                log(logging.INFO, "listening", url=self.url, hall=self.hall.id, windows=len(self.hall.windows),
                    role="owner" if self.owning else "standby", owner_url=self.owner_url,
                    clock=repr(self.clock), durable_seq=self.journal.durable_seq,
                    max_connections=settings.max_connections,
                    max_connections_per_address=settings.max_connections_per_address,
                    trusted_proxies=list(settings.trusted_proxies))
                if self.loop_watch is not None:
                    self.loop_watch.start()  # stalls count from here: not recovery's
                _warn_sample_tokens(self.hall)
                _note_closed_hall(self.hall, self.clock.now())
                task_status.started(self)
                await self._stop.wait()
                services.cancel_scope.cancel()
            if self.failure is None:
                self.hub.deliver_now()  # the fan-out task is gone: the last events still reach the screens
            for waiting in self._openings:
                waiting.cancel()
            for session in list(self.sessions):
                session.drain()
            if not self._websockets:
                self._drained.set()
            connections.start_soon(self._close_http_when_drained)
            connections.cancel_scope.deadline = trio.current_time() + settings.shutdown_grace_s

    def stand_by(self, owner: str, url: str, on_lost: Callable[[BaseException], None],
                 leasing: trio.Nursery) -> None:
        """Run as a standby once listening: follow the hall as *owner* (advertising *url*) until
        this process takes the lease, then keep it in *leasing* (*on_lost* told of a loss) and
        :meth:`take_over`. A store failure while following stops the server (fail-stop)."""
        self._follow = partial(self._stand_by, owner, url, on_lost, leasing)

    async def _stand_by(self, owner: str, url: str, on_lost: Callable[[BaseException], None],
                        leasing: trio.Nursery) -> None:
        from . import standby  # loaded with the store that has a lease (Redis), never for a file store

        try:
            await standby.follow(self.journal, self.journal.log, owner, url=url, seen=self.saw_owner)
        except LogError as exc:
            self.fail(exc)
            return
        leasing.start_soon(standby.keep_lease, self.journal.log, on_lost)
        self.take_over(owner, url)

    def _start_owning(self) -> None:
        """Start what only the owner runs: webhook deliveries and the automatic regulation."""
        if self.webhooks is not None:
            self._services.start_soon(self.webhooks.run)
        if self.hall.regulation.auto:
            self._services.start_soon(self._regulate)

    def _resume_webhooks(self) -> None:
        """A standby taking over delivers from the cursors file as the old owner left it (when
        the processes share it: the same working directory or ``var/``), never from further back
        than what it followed since it started (at least once: an event may be posted again)."""
        if self.webhooks is None:
            return
        saved = Cursors(self.webhooks.cursors.path)
        delivered = self.webhooks.delivered
        for name, seq in saved.seqs.items():
            if name in delivered:
                delivered[name] = max(delivered[name], seq)
        self.webhooks.cursors = saved
        if self.hall.regulation.auto:
            self._services.start_soon(self._regulate)

    async def owner_change(self) -> None:
        """Wait until :attr:`owning`, :attr:`owner_id` or :attr:`owner_url` next change."""
        await self._owner_changed.wait()

    def _note_owner(self, owner_id: str | None, owner_url: str | None, why: str) -> None:
        self.owner_id, self.owner_url = owner_id, owner_url
        for session in list(self.sessions):
            session.owner_changed(why)
        changed, self._owner_changed = self._owner_changed, trio.Event()
        changed.set()

    def saw_owner(self, owner_id: str | None, owner_url: str | None) -> None:
        """A standby learned who holds the lease now (:func:`~callsys.server.standby.follow`)."""
        self._note_owner(owner_id, owner_url, "the hall's owner changed")

    def take_over(self, owner_id: str, owner_url: str) -> None:
        """This standby holds the lease now and its engine is at the log's end: execute
        commands from here on. Clients stay connected; relayed commands still waiting for the
        old owner are answered ``unavailable`` (retry with their keys)."""
        self.owning = True
        self._note_owner(owner_id, owner_url, "this process took over the hall from its previous owner")
        if self._services is not None and not self.stopping:
            self._resume_webhooks()
            self._start_owning()
        log(logging.INFO, "took_over", hall=self.hall.id, url=owner_url, connections=len(self.sessions),
            durable_seq=self.journal.durable_seq)

    async def _close_http_when_drained(self) -> None:
        """Kept-alive HTTP connections answer (``/readyz``: 503) while the WebSocket connections
        drain, then close when idle."""
        await self._drained.wait()
        await self.http.close_idle()

    async def _regulate(self) -> None:
        """The hall's automatic flow regulation (``[regulation] auto``): every
        ``check_every_min`` of the server clock, the :class:`~callsys.regulator.AutoRegulator`'s
        commands are executed like a manager's — logged, durable, pushed to every screen."""
        auto = AutoRegulator(self.hall)
        while True:
            await trio.sleep(auto.policy.every_s / self.clock.speed)
            now = self.clock.now()
            for command in auto.step(self.hub.cockpit(now), self.engine.state, now):
                try:
                    self.execute(command)
                except CallsysError as exc:  # the hall moved meanwhile (e.g. a clerk closed the window)
                    log(logging.WARNING, "regulation_refused", command=command.kind, window=command.window,
                        error=str(exc))
                    continue
                log(logging.INFO, "regulated", command=command.kind, window=command.window,
                    skills=list(getattr(command, "skills", ())))

    async def _refresh_phones(self) -> None:
        while True:
            await trio.sleep(self.settings.phone_refresh_s)
            await self.hub.refresh_phones(self.clock.now(), self.settings.fanout_slice)


class _LeaseLoss:
    """Where :func:`~callsys.server.standby.keep_lease` reports a lost lease: the server, once
    it exists (the lease is renewed from the moment it is taken, while the server is built)."""

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self._server: CallsysServer | None = None

    def attach(self, server: CallsysServer) -> None:
        """Report to *server* from now on (at once if the lease is lost already)."""
        self._server = server
        if self.error is not None:
            server.fail(self.error)

    def __call__(self, exc: BaseException) -> None:
        self.error = exc
        if self._server is not None:
            self._server.fail(exc)


def _describe(exc: BaseException) -> str:
    """``Type: message`` of *exc*, or of the exceptions inside a group."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"


def _refusal_body(refusal: Refusal) -> bytes:
    return f"{refusal.message}; retry after {refusal.retry_after_s} s\n".encode()


def _retry_after(refusal: Refusal) -> tuple[bytes, bytes]:
    return b"retry-after", str(refusal.retry_after_s).encode()


def _peer(stream: trio.SocketStream) -> tuple[str, str]:
    """The remote ``(host, "host:port")`` of *stream*."""
    try:
        host, port, *_ = stream.socket.getpeername()
    except OSError:  # already gone
        return "?", "?"
    return host, f"{host}:{port}"


def next_opening(hall: Hall, at: float) -> float | None:
    """When *hall* next starts handing out numbers after *at* (POSIX seconds); None if it
    hands them out at *at* (or never within a week)."""
    calendar = HallCalendar(hall)
    if calendar.day(at).is_issuing(at):
        return None
    day_start = at
    for _ in range(8):
        day = calendar.day(day_start)
        for start, end in day.issuing:
            if start > at and end > start:
                return start
        day_start = day.end
    return None


def _note_closed_hall(hall: Hall, now: float) -> None:
    """Log when a closed hall opens, and how to see it working right now."""
    opens = next_opening(hall, now)
    if opens is None:
        return
    log(logging.INFO, "hall_closed", now=hall.local_time(now).strftime("%a %Y-%m-%d %H:%M"),
        opens=hall.local_time(opens).strftime("%a %Y-%m-%d %H:%M"), timezone=hall.timezone,
        message="kiosks get hall_closed until it opens; to see the hall working now, run `make demo` "
                "(a day on a virtual clock with a live crowd) or start with --clock TIME --speed N")


def _warn_sample_tokens(hall: Hall) -> None:
    roles = sample_token_roles(hall)
    if roles:
        log(logging.WARNING, "sample_tokens", roles=roles, hall_file=hall.source,
            message="these roles accept the tokens published with callsys: anyone who can reach this server can "
                    "use them; generate real ones with `callsys config tokens HALL_FILE --write`")
    clients = sample_api_clients(hall)
    if clients:
        log(logging.WARNING, "sample_api_keys", clients=clients, hall_file=hall.source,
            message="these integration clients have the API keys published with callsys: anyone who can reach "
                    "this server can use the API as them; generate real keys with "
                    "`callsys config api-key HALL_FILE NAME --write`")


async def serve_callsys(hall: Hall, store: str, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                        clock: Clock | None = None, secret: bytes | None = None,
                        settings: ServerSettings | None = None, loop_watch: LoopWatch | None = None,
                        advertise: str | None = None,
                        task_status: trio.TaskStatus[CallsysServer] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve *hall* with its events in *store* until shut down.

    Use in a nursery: ``server = await nursery.start(serve_callsys, hall, "file:var/x.db", port=0)``
    then ``server.port``; ``server.shutdown()`` stops it cleanly.

    Args:
        hall: the compiled hall configuration.
        store: the event store URL, e.g. ``file:var/callsys.db``.
        host: the interface to listen on.
        port: the TCP port (0 picks a free one).
        clock: the clock commands are stamped with (wall time by default).
        secret: the key phone secrets are derived from (random, so valid for this run only, by default).
        settings: limits and timeouts.
        loop_watch: a :class:`LoopWatch` installed in this trio run (``trio.run(instruments=)``
            or ``trio.lowlevel.add_instrument``): its figures go into ``stats`` and the
            ``stopped`` log line.
        advertise: on a store with a lease, the WebSocket URL other processes forward commands
            to while this one owns the hall (default ``ws://HOST:PORT/ws``, this machine's
            name for a wildcard *host*).

    On a store with a lease (Redis) the server first tries to take the hall's lease; while
    another process holds it, this one is a hot standby (:mod:`~callsys.server.standby`):
    it serves clients from the followed state, forwards their commands to the owner, and
    takes over in place when the owner's lease ends. Losing the lease stops it like a
    failed commit.

    Raises:
        LogError: the store cannot be opened or recovered.
        ServerError: a commit failed while serving, or the lease was lost (fail-stop).
    """
    loss = _LeaseLoss()
    async with open_journal(store, hall) as journal, trio.open_nursery() as leasing:
        engine, _ = await journal.recover()
        listeners = await trio.open_tcp_listeners(port, host=host)  # first: the advertised URL names the port
        owning, owner, url = True, None, None
        if journal.log.leased:  # one owner per hall: a standby until this process holds the lease
            # Imported now, not while building the server: ~0.5 s in which the loop cannot renew the lease
            # (or, for a standby that takes over, ~0.5 s more of the takeover).
            from .. import api  # noqa: F401
            from . import standby

            owner = standby.owner_id()
            url = standby.advertised_url(host, listeners[0].socket.getsockname()[1], advertise)
            try:
                owning = await standby.own(journal, journal.log, owner, url=url) is not None
                holder = (owner, url) if owning else await journal.log.owner()  # where to forward from the start
            except BaseException:
                for listener in listeners:
                    await trio.aclose_forcefully(listener)
                raise
            if owning:
                leasing.start_soon(standby.keep_lease, journal.log, loss)  # renewed from here, not once listening
        settings = settings or ServerSettings()
        deliveries = None
        if targets := targets_of(hall.integrations):  # the clients with a webhook_url
            deliveries = Webhooks(targets, hall.id, journal, engine, Cursors.for_store(store),
                                  retry_first_s=settings.webhook_retry_first_s,
                                  retry_max_s=settings.webhook_retry_max_s, timeout_s=settings.webhook_timeout_s)
        server = CallsysServer(hall, engine, journal, clock=clock or RealClock(),
                               secret=secret if secret is not None else os.urandom(32),
                               settings=settings, announcer=Announcer.for_store(store),
                               loop_watch=loop_watch, webhooks=deliveries, owning=owning)
        if owner is not None:
            server.owner_id, server.owner_url = holder
        if not owning:
            server.stand_by(owner, url, loss, leasing)
        journal.on_durable = server.on_durable
        journal.on_failure = server.fail
        loss.attach(server)
        try:
            async with trio.open_nursery() as nursery:
                if server.settings.manage_gc:
                    _gc.start()
                    nursery.start_soon(_gc.collect)
                await server.run(host, port, task_status, listeners)
                nursery.cancel_scope.cancel()
        finally:
            leasing.cancel_scope.cancel()
            server.announcer.close()
            if server.settings.manage_gc:
                _gc.stop()
            if loop_watch is not None:
                loop_watch.stop()
    log(logging.INFO, "stopped", durable_seq=journal.durable_seq, failed=server.failure is not None,
        **(loop_watch.log_fields() if loop_watch is not None else {}))
    if server.failure is not None:
        raise ServerError(f"stopped after an event log failure: {server.failure}") from server.failure
