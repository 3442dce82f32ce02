"""One owner per hall, and a hot standby that takes over: the policy around the Redis lease.

Every ``callsys serve`` on a Redis store tries to take the hall's lease
(:meth:`RedisLog.acquire <callsys.log.redis.RedisLog.acquire>`). The one that gets it is
the owner: it serves clients and commits, fenced by its token, and :func:`keep_lease`
renews the lease every :data:`~callsys.log.redis.RENEW_EVERY_S`. Any other is a standby:
:func:`follow` keeps its engine current by applying the hall's new records as they arrive
(``XREAD BLOCK`` in a worker thread, then the same :func:`~callsys.log.journal.replay`
that recovery uses), and tries the lease every :data:`FOLLOW_BLOCK_S`. When the owner stops
cleanly it releases the lease and the standby takes it at once; when the owner dies, the
lease expires after :data:`~callsys.log.redis.LEASE_TTL_S` and the standby takes it then,
with a new token, reads what the old owner committed last, and becomes the owner.

A standby does not serve the hall: it listens on its port with a :class:`StandbyDoor` that
answers every request with HTTP 503, ``Retry-After`` (:data:`RETRY_AFTER_S`) and a body
naming the owner — the same refusal a full or stopping server gives, so clients back off and
reconnect, then resend unanswered commands with their idempotency keys (see
:mod:`callsys.keys`) — except ``/healthz`` (200: the process is alive) and ``/readyz`` (503,
``"reason": "standby"``, so a load balancer sends clients to the owner). On takeover the
door closes and the server listens on the same port.

An owner whose renewal is refused (its lease expired while it was paused, or another
process took it) stops at once (:class:`~callsys.log.base.StoreFenced`); one that cannot
reach Redis keeps trying until its lease would have expired, then stops the same way.
Its appends are refused by the append script in any case, so it acknowledges nothing more.
So a Redis outage (a restart, a pause) shorter than the lease's remaining TTL (1.5 to 2 s:
renewals come every 0.5 s) keeps the owner, whose commits wait for Redis
(:data:`~callsys.log.redis.OUTAGE_S`, the same 2 s); a longer one stops it, and a standby
or a restart takes the hall once Redis is back.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from typing import Callable, Final

import json

import trio

from ..log.base import LogError, StoreDamaged, StoreFenced
from ..log.journal import Journal, replay
from ..log.redis import LEASE_TTL_S, OUTAGE_S, RENEW_EVERY_S, RedisLog
from . import http
from .logs import log

FOLLOW_BLOCK_S: Final = 0.25  # seconds a standby waits for new records before it tries the lease again
RETRY_AFTER_S: Final = 1  # seconds a standby's 503 tells clients to wait (a takeover takes ~2-3 s)
OPENING_TIMEOUT_S: Final = 10.0  # seconds a standby waits for a request head before it hangs up


class StandbyDoor:
    """What a standby answers on its port (see the module docstring).

    Attributes:
        hall_id: the hall this process stands by for.
        owner: the owner's lease id, once known.
    """

    def __init__(self, hall_id: str) -> None:
        self.hall_id = hall_id
        self.owner: str | None = None

    def answer(self, target: bytes) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        """``(status, body, extra headers)`` for a request of *target*."""
        path = target.split(b"?", 1)[0]
        if path == b"/healthz":
            return 200, json.dumps({"status": "ok", "role": "standby", "owner": self.owner}).encode(), []
        retry = [(b"retry-after", str(RETRY_AFTER_S).encode())]
        if path == b"/readyz":
            body = json.dumps({"ready": False, "reason": "standby", "owner": self.owner}).encode()
            return 503, body, retry
        line = (f"standby: hall {self.hall_id} is served by its owner {self.owner or '(unknown)'}; this process "
                f"takes over when the owner's lease expires; retry after {RETRY_AFTER_S} s\n")
        return 503, line.encode(), retry

    async def serve(self, stream: trio.SocketStream) -> None:
        """Answer one connection's first request, then close it."""
        try:
            with trio.move_on_after(OPENING_TIMEOUT_S):
                opening = await http.read_opening(stream)
                if opening is not None:
                    target = opening.request.target if opening.request is not None else b"/"
                    status, body, headers = self.answer(target)
                    await http.respond(stream, opening, status, body, headers)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # gone: nothing more to say
        finally:
            await trio.aclose_forcefully(stream)


def owner_id() -> str:
    """This process's id in a lease: ``HOST:PID:RANDOM`` (unique even across restarts)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


async def own(journal: Journal, store: RedisLog, owner: str, *, ttl_s: float = LEASE_TTL_S,
              previous: str | None = None) -> int | None:
    """Take the hall's lease if it is free, then bring *journal*'s engine up to the log's end.

    Returns:
        The new fencing token, or None if another process holds the lease.

    Raises:
        StoreDamaged: a record does not decode or apply, or the log ends short of its mark.
        LogError: Redis failed.
    """
    token = await store.acquire(owner, ttl_s)
    if token is None:
        return None
    last = await store.last_seq()  # nobody appends now: the previous owner is fenced
    seq = await replay(store, journal.engine, journal.durable_seq)
    if seq != last:
        raise StoreDamaged(f"store {store.name} is damaged at seq {seq + 1}: hall {store.hall_id!r} says its "
                           f"log ends at seq {last}, its stream at {seq}", seq + 1)
    journal.followed(seq)
    log(logging.INFO, "owner", hall=store.hall_id, token=token, seq=seq, previous=previous)
    return token


async def follow(journal: Journal, store: RedisLog, owner: str, *, ttl_s: float = LEASE_TTL_S,
                 block_s: float = FOLLOW_BLOCK_S, door: StandbyDoor | None = None) -> int:
    """Follow the hall's stream until this process takes the lease (:func:`own`); return its fencing token.

    *journal* must be recovered (its engine at the store's position). On return the engine
    holds every record the previous owner committed, and the store appends after them with
    the new token.

    Raises:
        StoreDamaged: a followed record does not decode or apply, or the log ends short of its mark.
        LogError: Redis failed.
    """
    store.following = True
    announced: str | None = None
    # Stopped mid-replay, the engine may be ahead of the journal's position: no closing snapshot then.
    closing_snapshot, journal.snapshot_on_close = journal.snapshot_on_close, False
    while True:
        token = await own(journal, store, owner, ttl_s=ttl_s, previous=announced)
        if token is not None:
            journal.snapshot_on_close = closing_snapshot
            return token
        holder = await store.holder()
        if holder != announced and holder is not None:
            announced = holder
            if door is not None:
                door.owner = holder
            log(logging.INFO, "standby", hall=store.hall_id, owner=holder, seq=journal.durable_seq,
                message="following the owner's events; taking over when its lease expires")
        await store.wait_appended(journal.durable_seq, block_s)
        journal.followed(await replay(store, journal.engine, journal.durable_seq))


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
