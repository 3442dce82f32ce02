"""Webhooks: ticket events posted to the integration clients that ask for them.

An integration client of the hall file (``[integrations.NAME]``) with a ``webhook_url`` gets
every ticket event of the hall — issued, booked, checked in, called, finished, no-show,
cancelled, rescheduled (:data:`WEBHOOK_EVENTS`) — as one JSON ``POST`` per event, signed
``X-Callsys-Signature: sha256=<hex HMAC-SHA256 of the body with webhook_secret>``. The body's
``id`` is the event's log ``seq``: unique and increasing, so a receiver dedupes by it.
docs/protocol.md ("Webhooks") is the receiver's side of this.

**The event log is the outbox.** Nothing is queued twice: per client, the server keeps only
the ``seq`` of the newest event that client acknowledged (a 2xx answer), in a small JSON file
beside the store (``PATH.webhooks.json`` for ``file:PATH``, ``var/callsys.webhooks.json`` for
a Redis store; :class:`Cursors`), written after every acknowledged delivery. Each client's
task delivers the events after its cursor in ``seq`` order, one at a time — the next only
once the previous was acknowledged — so a receiver sees them in order. After a restart (clean, or kill -9) the task resumes from the
saved cursor by reading the log back; an event delivered whose acknowledgement was not yet
saved is delivered again (same ``id``): at least once, never lost. A client seen for the
first time starts at the log's end (it is not sent the store's history).

**Never blocking the queue.** Deliveries run in their own tasks, one per client, outside the
commit path: the journal's durable hook only appends to a bounded in-memory tail of recent
events (:data:`TAIL_EVENTS`, shared by every client) and wakes the tasks. A client that fell
further behind than the tail (a receiver down for hours) reads its events back from the log
in chunks (:data:`READ_CHUNK`), so memory stays bounded however long a receiver is away. A
failed delivery (connection refused, timeout, a non-2xx answer) is retried with capped
exponential backoff and jitter (:data:`RETRY_FIRST_S` doubling to :data:`RETRY_MAX_S`, ±
:data:`JITTER`), for as long as it takes: a slow or broken receiver delays only its own
deliveries.

The HTTP client is h11 over trio sockets (TLS through :class:`trio.SSLStream` for
``https://``): one short connection per delivery, ``connection: close``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import random
import ssl
from collections import deque
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Iterable, Mapping, Sequence
from urllib.parse import urlsplit

import h11
import trio

from .. import __version__
from ..events import Event
from ..log.journal import decode_record
from .settings import WEBHOOK_RETRY_FIRST_S as RETRY_FIRST_S
from .settings import WEBHOOK_RETRY_MAX_S as RETRY_MAX_S
from .settings import WEBHOOK_TIMEOUT_S as TIMEOUT_S

if TYPE_CHECKING:
    from ..engine import QueueEngine
    from ..log import Journal

WEBHOOK_EVENTS: Final = {  # event kind -> the webhook's "event" name
    "ticket_issued": "issued", "slot_booked": "booked", "checked_in": "checked_in", "ticket_called": "called",
    "service_finished": "finished", "ticket_no_show": "no_show", "ticket_cancelled": "cancelled",
    "slot_rescheduled": "rescheduled",
}
# The event fields a receiver gets (when the event has them): never a person's hash or id.
PUBLIC_FIELDS: Final = ("ticket", "number", "service", "channel", "green", "klass", "window", "by_number",
                        "slot_start", "slot_end", "late", "rating")
SIGNATURE_HEADER: Final = "X-Callsys-Signature"
JITTER: Final = 0.5  # ± fraction of each wait, so receivers coming back are not hit in lockstep
TAIL_EVENTS: Final = 10_000  # recent durable events kept in memory for the deliveries (all clients together)
READ_CHUNK: Final = 500  # records read back from the log at once by a client behind the tail
CURSORS_FILE: Final = Path("var/callsys.webhooks.json")  # the cursors of a store without a path (Redis)
ANSWER_BYTES: Final = 64 * 1024  # bytes of a receiver's answer head read at most

logger = logging.getLogger("callsys.webhooks")


class WebhookFailed(Exception):
    """A delivery was not acknowledged: the receiver could not be reached, timed out, or
    answered other than 2xx. The delivery is retried."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where one integration client's events go.

    Attributes:
        name: the client's name (``[integrations.NAME]``).
        url: ``http://`` or ``https://`` URL the events are posted to.
        secret: the HMAC key of the signature (the client's ``webhook_secret``, UTF-8).
    """

    name: str
    url: str
    secret: bytes

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"webhook_url of {self.name!r} must be an http:// or https:// URL, not {self.url!r}")


def targets_of(integrations: Mapping[str, Any]) -> list[Target]:
    """The webhook targets of a hall's integration clients (those with a ``webhook_url``)."""
    return [Target(name, client.webhook_url, (client.webhook_secret or "").encode())
            for name, client in sorted(integrations.items()) if client.webhook_url]


def signature(secret: bytes, body: bytes) -> str:
    """The ``X-Callsys-Signature`` value of *body*: ``sha256=`` and the hex HMAC-SHA256 with *secret*."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def payload(hall_id: str, seq: int, event: Event, engine: QueueEngine | None = None) -> dict[str, Any] | None:
    """The webhook body of *event* at *seq*, or None if it is not a ticket event receivers get.

    ``number`` and ``service`` come from the event, else from the ticket as the engine knows it
    when the event is delivered (null once the ticket left the state).
    """
    name = WEBHOOK_EVENTS.get(event.kind)
    if name is None:
        return None
    body: dict[str, Any] = {"id": seq, "event": name, "kind": event.kind, "hall": hall_id, "at": event.at}
    for field in PUBLIC_FIELDS:
        if hasattr(event, field):
            body[field] = getattr(event, field)
    if engine is not None and ("number" not in body or "service" not in body):
        ticket = engine.state.tickets.get(body["ticket"])
        body.setdefault("number", ticket.number if ticket is not None else None)
        body.setdefault("service", ticket.service if ticket is not None else None)
    return body


def encode(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


class Cursors:
    """The last acknowledged ``seq`` per client, in a JSON file written atomically (a temporary
    file renamed over it). A cursor saved late only means a repeat delivery (same ``id``).

    Args:
        path: the file, or None to keep the cursors in memory only (a store without a path).
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.seqs: dict[str, int] = {}
        self._writing = trio.Lock()
        if path is not None and path.exists():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                self.seqs = {str(k): int(v) for k, v in data.items()}
            except (ValueError, AttributeError, TypeError) as exc:
                raise ValueError(f"webhook cursors {path} cannot be read ({exc}); delete the file to start "
                                 f"every client at the log's end") from None

    @classmethod
    def for_store(cls, store: str) -> "Cursors":
        """The cursors of the store at URL *store*: ``PATH.webhooks.json`` beside a ``file:PATH``
        store, :data:`CURSORS_FILE` for a store without a path (Redis)."""
        scheme, _, rest = store.partition(":")
        return cls(Path(rest + ".webhooks.json") if scheme == "file" and rest else CURSORS_FILE)

    async def save(self, name: str, seq: int) -> None:
        """Keep *seq* as client *name*'s cursor; returns once it is on disk."""
        async with self._writing:  # one write at a time: the clients share the file
            if self.path is not None:
                data = json.dumps({**self.seqs, name: seq}, sort_keys=True).encode()
                await trio.to_thread.run_sync(_write_atomically, self.path, data)
            self.seqs[name] = seq


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


class Webhooks:
    """The deliveries of one server: a task per target, fed from the durable events.

    Args:
        targets: the clients to deliver to.
        hall_id: the hall named in every body.
        journal: the server's journal (its durable seq, and its log to read back from).
        engine: the live engine (a ticket's number and service for events without them).
        cursors: where acknowledged positions are kept.
        retry_first_s, retry_max_s, timeout_s: see :data:`RETRY_FIRST_S`, :data:`RETRY_MAX_S`,
            :data:`TIMEOUT_S`.
        tail: recent events kept in memory (:data:`TAIL_EVENTS`).

    Attributes:
        delivered: per client, the newest acknowledged seq.
        attempts, failures: per client, POSTs sent and POSTs not acknowledged (statistics).
    """

    def __init__(self, targets: Sequence[Target], hall_id: str, journal: Journal, engine: QueueEngine | None,
                 cursors: Cursors, *, retry_first_s: float = RETRY_FIRST_S, retry_max_s: float = RETRY_MAX_S,
                 timeout_s: float = TIMEOUT_S, tail: int = TAIL_EVENTS) -> None:
        self.targets = list(targets)
        self.hall_id = hall_id
        self.journal = journal
        self.engine = engine
        self.cursors = cursors
        self.retry_first_s = retry_first_s
        self.retry_max_s = retry_max_s
        self.timeout_s = timeout_s
        self._tail: deque[tuple[int, Event]] = deque(maxlen=tail)
        self._newest = journal.durable_seq
        self._arrived = trio.Event()
        self.delivered = {t.name: cursors.seqs.get(t.name, journal.durable_seq) for t in self.targets}
        self.attempts = {t.name: 0 for t in self.targets}
        self.failures = {t.name: 0 for t in self.targets}

    def on_durable(self, batch: Iterable[tuple[int, Event]]) -> None:
        """The journal's durable batch (synchronous, on the commit path: only appends and wakes)."""
        for seq, event in batch:
            self._tail.append((seq, event))
            self._newest = seq
        self._arrived.set()

    async def run(self) -> None:
        """Deliver to every target until cancelled."""
        async with trio.open_nursery() as nursery:
            for target in self.targets:
                if target.name not in self.cursors.seqs:  # a new client starts at the log's end
                    await self.cursors.save(target.name, self.delivered[target.name])
                nursery.start_soon(self._deliver_all, target, name=f"webhooks:{target.name}")

    async def _deliver_all(self, target: Target) -> None:
        while True:
            after = self.delivered[target.name]
            if self._newest <= after:
                arrived = self._arrived
                await arrived.wait()
                if arrived is self._arrived:  # the first task to wake replaces it for the next wait
                    self._arrived = trio.Event()
                continue
            for seq, event in await self._events_after(after):
                body = payload(self.hall_id, seq, event, self.engine)
                if body is not None:
                    await self._deliver(target, encode(body))
                self.delivered[target.name] = seq
                if body is not None:
                    await self.cursors.save(target.name, seq)
            if self.delivered[target.name] != self.cursors.seqs.get(target.name):
                await self.cursors.save(target.name, self.delivered[target.name])  # skipped events: move on

    async def _events_after(self, after: int) -> list[tuple[int, Event]]:
        """The durable events after *after*: from the tail if it holds them, else read back from the log."""
        tail = self._tail
        if tail and tail[0][0] <= after + 1:
            start = after + 1 - tail[0][0]
            return list(islice(tail, start, start + READ_CHUNK))
        log = self.journal.log
        records = await log.read(after, limit=min(READ_CHUNK, self._newest - after))
        return [(seq, decode_record(log.name, seq, data)) for seq, data in records]

    async def _deliver(self, target: Target, body: bytes) -> None:
        """POST *body* to *target* until acknowledged."""
        failures = 0
        while True:
            self.attempts[target.name] += 1
            try:
                await post(target.url, body, [(SIGNATURE_HEADER, signature(target.secret, body))], self.timeout_s)
                return
            except (WebhookFailed, OSError, trio.BrokenResourceError, trio.TooSlowError, h11.ProtocolError,
                    ssl.SSLError) as exc:
                self.failures[target.name] += 1
                base = min(self.retry_max_s, self.retry_first_s * 2 ** failures)
                delay = base * (1 + JITTER * (2 * random.random() - 1))
                failures += 1
                level = logging.WARNING if failures in (1, 10) or failures % 100 == 0 else logging.DEBUG
                logger.log(level, "webhook %s: delivery failed (%s attempt(s)): %s; retrying in %.1f s",
                           target.name, failures, exc, delay)
                await trio.sleep(delay)


async def post(url: str, body: bytes, headers: Sequence[tuple[str, str]], timeout_s: float) -> int:
    """POST a JSON *body* to *url* on a connection of its own; return the 2xx status.

    Raises:
        WebhookFailed: the answer was not 2xx, or the connection closed before it.
        OSError, trio.BrokenResourceError, ssl.SSLError, h11.ProtocolError: the connection failed.
        trio.TooSlowError: no answer within *timeout_s*.
    """
    parts = urlsplit(url)
    https = parts.scheme == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if https else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    with trio.fail_after(timeout_s):
        stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
        try:
            if https:
                stream = trio.SSLStream(stream, ssl.create_default_context(), server_hostname=host)
                await stream.do_handshake()
            conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=ANSWER_BYTES)
            request = h11.Request(method="POST", target=target, headers=[
                ("host", parts.netloc), ("content-type", "application/json"), ("content-length", str(len(body))),
                ("user-agent", f"callsys/{__version__}"), ("connection", "close"), *headers])
            await stream.send_all(conn.send(request) + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some(ANSWER_BYTES))
                elif type(event) is h11.Response:
                    if 200 <= event.status_code < 300:
                        return event.status_code
                    raise WebhookFailed(f"{url} answered {event.status_code}")
                elif type(event) is h11.ConnectionClosed:
                    raise WebhookFailed(f"{url} closed the connection without an answer")
        finally:
            await trio.aclose_forcefully(stream)
