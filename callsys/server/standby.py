"""One owner per hall, and hot standbys that serve its clients and take over: the policy around the Redis lease.

Every ``callsys serve`` on a store with a lease (:attr:`EventLog.leased
<callsys.log.base.EventLog.leased>`: Redis) tries to take the hall's lease
(:meth:`RedisLog.acquire <callsys.log.redis.RedisLog.acquire>`), advertising the URL
its clients reach it at (``callsys serve --advertise``, stored beside the lease). The one
that gets it is the **owner**: it executes commands and commits, fenced by its token, and
:func:`keep_lease` renews the lease every :data:`~callsys.log.redis.RENEW_EVERY_S`. Any
other is a **standby**, and a full server all the same: it listens on its port from the
start, and

* **follows** the hall (:func:`follow`): ``XREAD BLOCK`` on the hall's stream in a worker
  thread, then :meth:`Journal.follow <callsys.log.journal.Journal.follow>`, which applies the
  new records to its engine and hands them to the same ``on_durable`` hook a commit takes —
  so its boards, LEDs, speakers, phones and the manager's cockpit see every call live, a
  few milliseconds after the owner's. Queries and subscriptions are answered from this
  followed state.
* **forwards commands** (:class:`~callsys.server.relay.Upstream`): a command a client sends to a standby is relayed
  to the owner over a WebSocket of the client's session, opened on its first command with
  the client's own hello (same role, token and window, or a phone's ticket and secret: the
  processes of a hall share the secret, ``$CALLSYS_SECRET`` or ``--secret-file``), and the
  owner's answer — ``ok`` with the owner's ``seq``, or its typed error, with the client's
  ``id`` — goes back in order with the session's other replies. The owner validates, rate
  limits, dedupes idempotency keys and decides, so the answer is the one it would give a
  client connected to it. A forwarded ``ok`` is sent once this process has applied its
  ``seq`` (at most :data:`~callsys.server.relay.FOLLOW_WAIT_S` later), so what the client asks next reflects it.
  The HTTP API's writes are checked here as on the owner (API key, rate limits, validation),
  then sent to the owner's HTTP port with ``X-Forwarded-For`` naming the client, and the
  owner's answer is returned unchanged (:mod:`callsys.api.forward`); the owner counts the
  client's address when the standby is one of its ``trusted_proxies``.
* **takes over** in place: it tries the lease every :data:`FOLLOW_BLOCK_S`. When the owner
  stops cleanly it releases the lease and a standby takes it at once; when the owner dies,
  the lease expires after :data:`~callsys.log.redis.LEASE_TTL_S` and a standby takes it
  then, with a new token, reads what the old owner committed last (pushing it to its
  screens), and executes commands from then on. Its clients stay connected and keep
  receiving pushes. A relayed command still waiting for the old owner's answer is answered
  ``unavailable`` with ``details.retry = true`` (the old owner is fenced: it either
  committed the command before the takeover or never will), and so is one sent while no
  owner can be reached; the client resends it with its idempotency key, and the engine's
  key table (:mod:`callsys.keys`) makes it execute exactly once. Nothing is answered ``ok``
  that is not durable in the store.

Webhooks are delivered by the owner only; a standby starts delivering when it takes over,
from its cursors file (:mod:`~callsys.server.webhooks`).

``/healthz`` names the role, the owner and its URL; ``/readyz`` says 200 on a standby that
knows where to forward (it serves clients like the owner), 503 ``no_owner`` while no
process holds the lease, and 503 ``store_unreachable`` while Redis does not answer.

An owner whose renewal is refused (its lease expired while it was paused, or another
process took it) stops at once (:class:`~callsys.log.base.StoreFenced`); one that cannot
reach Redis keeps trying until its lease would have expired, then stops the same way.
Its appends are refused by the append script in any case, so it acknowledges nothing more.
So a Redis outage (a restart, a pause) shorter than the lease's remaining TTL (1.5 to 2 s:
renewals come every 0.5 s) keeps the owner, whose commits wait for Redis
(:data:`~callsys.log.redis.OUTAGE_S`, the same 2 s); a longer one stops it, and a standby
(which keeps following through the outage, retrying every :data:`UNREACHABLE_RETRY_S`) or a
restart takes the hall once Redis is back.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from typing import Callable, Final

import trio

from ..log.base import LogError, StoreDamaged, StoreFenced, StoreRefused
from ..log.journal import Journal
from ..log.redis import LEASE_TTL_S, OUTAGE_S, RENEW_EVERY_S, RedisLog
from ..protocol import PATH
from .logs import log

FOLLOW_BLOCK_S: Final = 0.25  # seconds a standby waits for new records before it tries the lease again
UNREACHABLE_RETRY_S: Final = 0.5  # seconds a standby waits before it follows again after Redis failed


def owner_id() -> str:
    """This process's id in a lease: ``HOST:PID:RANDOM`` (unique even across restarts)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def advertised_url(host: str, port: int, advertise: str | None = None) -> str:
    """The WebSocket URL this process's clients (and the standbys' relays) reach it at:
    *advertise* if given, else ``ws://HOST:PORT/ws`` with this machine's name for a wildcard *host*."""
    return advertise or f"ws://{advertised_host(host)}:{port}{PATH}"


def advertised_host(host: str) -> str:
    """The host other processes and clients reach a listener on *host* at: this machine's
    name for a wildcard, an IPv6 address in brackets."""
    if host in ("", "0.0.0.0", "::"):
        return socket.gethostname()
    return f"[{host}]" if ":" in host else host


async def own(journal: Journal, store: RedisLog, owner: str, *, ttl_s: float = LEASE_TTL_S,
              previous: str | None = None, url: str = "") -> int | None:
    """Take the hall's lease if it is free, advertising *url*, then bring *journal*'s engine
    up to the log's end (the events read go to ``on_durable`` like followed ones).

    Returns:
        The new fencing token, or None if another process holds the lease.

    Raises:
        StoreDamaged: a record does not decode or apply, or the log ends short of its mark.
        LogError: Redis failed.
    """
    token = await store.acquire(owner, ttl_s, url)
    if token is None:
        return None
    last = await store.last_seq()  # nobody appends now: the previous owner is fenced
    seq = await journal.follow()
    if seq != last:
        raise StoreDamaged(f"store {store.name} is damaged at seq {seq + 1}: hall {store.hall_id!r} says its "
                           f"log ends at seq {last}, its stream at {seq}", seq + 1)
    log(logging.INFO, "owner", hall=store.hall_id, token=token, seq=seq, previous=previous, url=url or None)
    return token


OwnerSeen = Callable[[str | None, str | None], None]


async def follow(journal: Journal, store: RedisLog, owner: str, *, ttl_s: float = LEASE_TTL_S,
                 block_s: float = FOLLOW_BLOCK_S, url: str = "", seen: OwnerSeen | None = None) -> int:
    """Follow the hall's stream until this process takes the lease (:func:`own`); return its fencing token.

    *journal* must be recovered (its engine at the store's position); every record followed
    goes through its ``on_durable`` hook (:meth:`Journal.follow`). *seen* is called with the
    lease holder's id and advertised URL whenever they change. A Redis that fails (restarting,
    unreachable) is retried every :data:`UNREACHABLE_RETRY_S` until it answers again. On
    return the engine holds every record the previous owner committed, and the store appends
    after them with the new token.

    Raises:
        StoreDamaged: a followed record does not decode or apply, or the log ends short of its mark.
        StoreFenced, StoreRefused: the store refused this process.
    """
    store.following = True
    announced: tuple[str | None, str | None] = (None, None)
    previous: str | None = None  # the last owner seen
    failing = False
    # Stopped mid-replay, the engine may be ahead of the journal's position: no closing snapshot then.
    closing_snapshot, journal.snapshot_on_close = journal.snapshot_on_close, False
    while True:
        try:
            token = await own(journal, store, owner, ttl_s=ttl_s, previous=previous, url=url)
            if token is not None:
                journal.snapshot_on_close = closing_snapshot
                return token
            holder = await store.owner()
            if holder != announced:
                announced = holder
                if seen is not None:
                    seen(*holder)
                if holder[0] is not None:
                    previous = holder[0]
                    log(logging.INFO, "standby", hall=store.hall_id, owner=holder[0], owner_url=holder[1],
                        seq=journal.durable_seq, message="following the owner's events, serving its clients and "
                        "forwarding their commands; taking over when its lease expires")
            await store.wait_appended(journal.durable_seq, block_s)
            await journal.follow()
        except (StoreDamaged, StoreFenced, StoreRefused):
            raise
        except LogError as exc:
            store.following = True  # an own() that took the lease and then failed: its lease just expires
            if not failing:
                log(logging.WARNING, "store_unreachable", hall=store.hall_id, error=str(exc),
                    message=f"the standby retries every {UNREACHABLE_RETRY_S:g} s")
            failing = True
            await trio.sleep(UNREACHABLE_RETRY_S)
            continue
        if failing:
            failing = False
            log(logging.INFO, "store_reachable", hall=store.hall_id)


async def keep_lease(store: RedisLog, on_lost: Callable[[BaseException], None], *,
                     ttl_s: float = LEASE_TTL_S, every_s: float = RENEW_EVERY_S) -> None:
    """Renew the lease at once, then every *every_s* until cancelled; call *on_lost* once it is lost.

    A refused renewal is final (:class:`StoreFenced`); an unreachable Redis is retried until
    *ttl_s* have passed since the last renewal, then the lease counts as lost. The first
    failed renewal of an outage logs ``event=store_unreachable``, the first renewal after it
    ``event=store_reachable outage_s=...`` (from the first failure to this renewal).
    """
    renewed = trio.current_time()
    failing_since: float | None = None
    while True:
        try:
            await store.renew(ttl_s)
        except StoreFenced as exc:
            on_lost(exc)
            return
        except LogError as exc:
            now = trio.current_time()
            if now - renewed >= ttl_s:
                on_lost(StoreFenced(f"{exc}; the lease of hall {store.hall_id!r} ran out meanwhile: stopping"))
                return
            if failing_since is None:
                failing_since = now
                log(logging.WARNING, "store_unreachable", hall=store.hall_id, error=str(exc),
                    message=f"commands wait for Redis up to {OUTAGE_S:g} s; this process stops if the lease "
                            f"cannot be renewed within {renewed + ttl_s - now:.1f} s")
        else:
            renewed = trio.current_time()
            if failing_since is not None:
                log(logging.INFO, "store_reachable", hall=store.hall_id,
                    outage_s=round(renewed - failing_since, 3))
                failing_since = None
        await trio.sleep(every_s)
