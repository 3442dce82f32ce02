"""Many halls on one deployment: membership in Redis, a share of the halls per process, one public port.

``callsys serve --network config/baoan.toml --store redis://...`` runs a :class:`NetworkNode`:
a member of the network's processes that serves a share of its halls (:mod:`callsys.network`
expands the file) and routes every hall's clients on one public port.

**Membership** lives in Redis, under keys hash-tagged by the network (``{network:ID}``, one
Cluster slot): ``callsys:{network:ID}:beats``, a sorted set member id -> when its heartbeat
expires (Redis's own clock, ms); ``callsys:{network:ID}:members``, a hash member id -> its
public URL; ``callsys:{network:ID}:served``, a hash hall id -> the member whose server of
that hall is running now. Every :data:`BEAT_EVERY_S` a process runs :data:`BEAT_SCRIPT`
(one atomic round trip): it renews its own heartbeat for :data:`MEMBER_TTL_S`, says again
which halls it serves (so a member whose heartbeat expired during a stall — and with it its
``served`` entries — is whole again at its next beat), drops members
whose heartbeat expired (and the halls they were serving), and returns the live members and
the ``served`` hash. A process that stops cleanly leaves at once (``beat(leave=True)``); one
that dies drops out when its heartbeat expires. Redis unreachable when a process starts is
an error (:class:`~callsys.log.base.LogError`, one line from ``callsys serve``); later, a
process that cannot beat keeps its halls as they are — each hall's lease fences it, and its
server stops if the lease runs out — and logs ``network_unreachable`` once, then
``network_reachable outage_s=...``.

**Shares** by rendezvous (highest random weight) hashing: hall *h* belongs to the live member
*m* with the largest ``blake2b(m, h)`` (:func:`assign`). Every process computes the same
assignment from the same member set, with nothing to agree on, and a member coming or going
moves only the halls it gains or loses (~1/n of them), never any other.

**Rebalance policy**: after every heartbeat a process starts the halls of its share it does
not run and stops those that left its share. A hall is run by
:func:`~callsys.server.serve.serve_callsys` on 127.0.0.1 and a free port, as a black box: it
takes the hall's lease, or stands by (following the stream, serving the hall's clients and
forwarding their commands) while the previous owner still holds it. Each hall server
advertises its hall's URL at this process's router (:meth:`NetworkNode.hall_ws`), not its
own 127.0.0.1 port, so a standby on another machine forwards through the owner's router. A hall that left the share is marked unserved first, then shut down cleanly
(``server.shutdown()``: in-flight commands answered, sockets closed with 1001, the lease
released), so its new owner takes the lease at once instead of waiting for it to expire. A
hall's start (recovery, building its server) is CPU work on the event loop, so at most
:data:`STARTS_AT_ONCE` start together: 133 at once starved the loop for seconds and the
first halls' leases expired before they were renewed. A hall server that fails (Redis gone
past its bound, the lease lost) is started again on a
later heartbeat if the hall is still in the share, :data:`RESTART_AFTER_S` after it failed.
When an owner dies, its halls move when its heartbeat expires (:data:`MEMBER_TTL_S`) and
the new owners take each lease when it expires (the lease's TTL, 2 s, runs meanwhile).

**Routing**: one public port per process. ``/halls/<hall_id>/<anything>`` (pages, static
files, the API, and the WebSocket at ``/halls/<hall_id>/ws``) goes to that hall: the router
reads the request head, strips the ``/halls/<hall_id>`` prefix and pipes the connection,
bytes both ways, to the hall's server — its local port if this process serves the hall, else
the public port of the member that does (from ``served``), with the prefix kept and an
``X-Callsys-Forwarded`` header so the next router does not forward again. A plain HTTP request
is sent with ``Connection: close`` (a kept-alive connection could carry a request for another
hall next). The router itself answers ``GET /halls`` (JSON: every hall, its owner, its URLs),
``/`` (links to every hall), ``/healthz`` and ``/readyz`` (200 once the last heartbeat
succeeded within :data:`MEMBER_TTL_S` and every hall of this process's share is served here).
An unknown hall: 404 naming it. A hall with no live server right now (rebalancing): 503 with
``Retry-After`` (:data:`RETRY_AFTER_S`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from html import escape
from typing import Any, Callable, Final, Iterable
from urllib.parse import parse_qs, urlsplit

import redis.exceptions as rex
import trio
from rich.console import Console
from rich.table import Table

from ..cli import command
from ..clock import Clock
from ..log.base import LogError
from ..log.redis import PROBE_TIMEOUT_S, Timeouts, connect, parse_url
from ..network import Network, load_network
from . import http
from .logs import log
from .serve import CallsysServer, serve_callsys
from .settings import ServerSettings
from .standby import advertised_host, owner_id

BEAT_EVERY_S: Final = 0.5  # seconds between two heartbeats (and two looks at the member set)
MEMBER_TTL_S: Final = 3.0  # seconds a member stays in the set without a heartbeat
STARTS_AT_ONCE: Final = 4  # hall servers starting (recovering, building) at once: more would starve the loop
START_SLOT_S: Final = 1.0  # seconds a start holds its slot at most (a hall standing by frees it after this)
RESTART_AFTER_S: Final = 1.0
SLOW_STOP_S: Final = 10.0  # seconds into a stop after which the halls not stopped yet are logged (then again)  # seconds before a failed hall server of the share is started again
RETRY_AFTER_S: Final = 1  # seconds a 503 (hall being moved) tells clients to wait
OPENING_TIMEOUT_S: Final = 10.0  # seconds the router waits for a request head
PIPE_BYTES: Final = 65536  # bytes per read when piping a connection
FORWARDED: Final = b"x-callsys-forwarded"  # header of a request one router sent to another
PREFIX: Final = "/halls/"

# KEYS: beats, members, served. ARGV: member id, its URL, TTL ms, '1' to leave, then the halls it serves.
# Returns {members hash as a flat list, served hash as a flat list (live members' halls only)}.
BEAT_SCRIPT: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[4] == '1' then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
else
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
  for i = 5, #ARGV do
    redis.call('HSET', KEYS[3], ARGV[i], ARGV[1])
  end
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
  redis.call('HDEL', KEYS[2], id)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local members = redis.call('HGETALL', KEYS[2])
local live = {}
for i = 1, #members, 2 do live[members[i]] = true end
local served = redis.call('HGETALL', KEYS[3])
local kept = {}
for i = 1, #served, 2 do
  if live[served[i + 1]] then
    kept[#kept + 1] = served[i]
    kept[#kept + 1] = served[i + 1]
  else
    redis.call('HDEL', KEYS[3], served[i])
  end
end
return {members, kept}
"""

# KEYS: served. ARGV: hall id, member id, '1' to mark served / '0' to unmark (only if still this member's).
SERVE_SCRIPT: Final = """
if ARGV[3] == '1' then
  return redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""


def membership_keys(network_id: str) -> tuple[str, str, str]:
    """The ``(beats, members, served)`` keys of network *network_id* (one Cluster slot)."""
    tag = f"callsys:{{network:{network_id}}}"
    return f"{tag}:beats", f"{tag}:members", f"{tag}:served"


def weight(member: str, hall_id: str) -> int:
    """The rendezvous weight of (*member*, *hall_id*): 64 bits of BLAKE2b."""
    digest = hashlib.blake2b(f"{member}\x00{hall_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def assign(members: Iterable[str], hall_id: str) -> str | None:
    """The member that owns *hall_id* among *members* (highest weight; ties by id), None if none."""
    return max(members, key=lambda m: (weight(m, hall_id), m), default=None)


def share(members: Iterable[str], hall_ids: Iterable[str], member: str) -> set[str]:
    """The halls of *hall_ids* that *member* owns among *members*."""
    members = list(members)
    return {h for h in hall_ids if assign(members, h) == member}


@dataclass(frozen=True, slots=True)
class View:
    """What the last heartbeat returned: live members (id -> public URL) and who serves which hall."""

    members: dict[str, str] = field(default_factory=dict)
    served: dict[str, str] = field(default_factory=dict)


class Membership:
    """This process's membership of the network in Redis (see the module docstring).

    The calls run redis-py's synchronous client in a worker thread, one at a time.
    """

    def __init__(self, store: str, network_id: str, member: str, url: str) -> None:
        self.member = member
        self.url = url
        self.keys = membership_keys(network_id)
        self._target = parse_url(store)
        self._client = connect(self._target, Timeouts(PROBE_TIMEOUT_S * 2, PROBE_TIMEOUT_S * 2))
        self._beat = self._client.register_script(BEAT_SCRIPT)
        self._serve = self._client.register_script(SERVE_SCRIPT)
        self._limiter = trio.CapacityLimiter(1)

    async def _call(self, fn: Callable[[], Any]) -> Any:
        try:
            return await trio.to_thread.run_sync(fn, limiter=self._limiter)
        except rex.RedisError as exc:
            raise LogError(f"network membership in {self._target.redacted}: {type(exc).__name__}: {exc}") from None

    async def beat(self, serving: Iterable[str] = (), *, leave: bool = False) -> View:
        """Renew (or with *leave* end) this member's heartbeat and say again which halls it
        serves (a member whose heartbeat once expired lost those entries); return the live view."""
        ttl = str(int(MEMBER_TTL_S * 1000))
        halls = [] if leave else sorted(serving)
        members, served = await self._call(lambda: self._beat(
            keys=list(self.keys), args=[self.member, self.url, ttl, "1" if leave else "0", *halls]))
        return View(_pairs(members), _pairs(served))

    async def mark(self, hall_id: str, serving: bool) -> None:
        """Record that this member serves *hall_id* now (or no longer, if it still says so)."""
        await self._call(lambda: self._serve(keys=[self.keys[2]],
                                             args=[hall_id, self.member, "1" if serving else "0"]))

    def close(self) -> None:
        self._client.close()


def _pairs(flat: list[bytes]) -> dict[str, str]:
    text = [v.decode() if isinstance(v, bytes) else str(v) for v in flat]
    return dict(zip(text[::2], text[1::2]))


@dataclass(slots=True)
class _HallRun:
    """One hall this process runs (or is starting: standing by until it owns the lease)."""

    hall_id: str
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    server: CallsysServer | None = None
    leaving: bool = False


class _Slot:
    """One of the :data:`STARTS_AT_ONCE` start slots, released once: when the hall serves, or
    after *seconds* (a hall standing by for its previous owner must not hold up the others)."""

    def __init__(self, semaphore: trio.Semaphore) -> None:
        self._semaphore = semaphore
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._semaphore.release()

    async def release_after(self, seconds: float) -> None:
        if self._held:
            await trio.sleep(seconds)
            self.release()


class NetworkNode:
    """One process of a network: its membership, its share of the halls and its router.

    Attributes:
        network: the halls.
        member: this process's member id (``HOST:PID:RANDOM``).
        port: the router's public port, once listening.
        view: the last heartbeat's live members and served halls.
    """

    def __init__(self, network: Network, store: str, *, host: str, port: int, clock: Clock | None = None,
                 secret: bytes | None = None, settings: ServerSettings | None = None,
                 member: str | None = None, slow_stop_s: float = SLOW_STOP_S) -> None:
        self.network = network
        self.slow_stop_s = slow_stop_s
        self.store = store
        self.host = host
        self.port = port
        self.clock = clock
        self.secret = secret
        self.settings = settings
        self.member = member or owner_id()
        self.view = View()
        self.runs: dict[str, _HallRun] = {}
        self.beats = 0  # successful heartbeats so far
        self._last_beat: float | None = None  # trio time of the last successful heartbeat
        self._failed_at: dict[str, float] = {}  # hall id -> when its server last failed
        self._unreachable_since: float | None = None  # trio time of the first failed heartbeat of an outage
        self._changed = trio.Condition()
        self._stop = trio.Event()
        self._membership: Membership | None = None
        self._halls: trio.Nursery | None = None
        self._starting = trio.Semaphore(STARTS_AT_ONCE)

    # ------------------------------------------------------------------ state

    @property
    def url(self) -> str:
        """The router's public URL, ``http://HOST:PORT``."""
        return f"http://{advertised_host(self.host)}:{self.port}"

    def hall_ws(self, hall_id: str) -> str:
        """The WebSocket URL of *hall_id* at this process's router: what its server advertises
        while it owns the hall, so another process's standby of the hall forwards its clients'
        commands through this router (its own port is on 127.0.0.1)."""
        return f"ws://{advertised_host(self.host)}:{self.port}{PREFIX}{hall_id}/ws"

    def share(self) -> set[str]:
        """The halls this process should run, by the last view."""
        if self.member not in self.view.members:
            return set()
        return share(self.view.members, (h.id for h in self.network.halls), self.member)

    def serving(self) -> set[str]:
        """The halls this process serves now (its server listening as the owner)."""
        return {h for h, run in self.runs.items() if _owns(run.server)}

    async def wait_for(self, predicate: Callable[["NetworkNode"], bool]) -> None:
        """Return once *predicate(self)* holds; it is evaluated after every heartbeat and hall change."""
        async with self._changed:
            while not predicate(self):
                await self._changed.wait()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def shutdown(self) -> None:
        """Begin a clean stop: leave the network, shut every hall down (idempotent)."""
        self._stop.set()

    # ------------------------------------------------------------------ run

    async def run(self, task_status: trio.TaskStatus["NetworkNode"] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen, join, serve the share until :meth:`shutdown`; then leave and stop every hall cleanly."""
        listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        self.port = listeners[0].socket.getsockname()[1]
        self._membership = Membership(self.store, self.network.id, self.member, self.url)
        try:
            await self._membership.beat()  # Redis unreachable at start: a clear error, not a process that waits
            async with trio.open_nursery() as outer:
                await outer.start(partial(trio.serve_listeners, self._serve_client, listeners))
                log(logging.INFO, "network_listening", url=self.url, network=self.network.id, member=self.member,
                    halls=len(self.network.halls))
                async with trio.open_nursery() as halls:
                    self._halls = halls
                    beating = trio.CancelScope()
                    halls.start_soon(self._keep_beating, beating)
                    task_status.started(self)
                    await self._stop.wait()
                    beating.cancel()
                    await self._leave()
                    outer.start_soon(self._report_slow_stop)  # cancelled with the router once every hall stopped
                outer.cancel_scope.cancel()
        finally:
            self._membership.close()
        log(logging.INFO, "network_stopped", member=self.member)

    async def _report_slow_stop(self) -> None:
        """Log, every ``slow_stop_s`` while stopping, the halls whose servers have not stopped yet."""
        while True:
            await trio.sleep(self.slow_stop_s)
            if not self.runs:
                return
            left = {h: ("standing_by" if r.server is None else "failed" if r.server.failure is not None
                        else "draining" if r.server.stopping else "serving") for h, r in sorted(self.runs.items())}
            log(logging.WARNING, "network_stopping", member=self.member, halls_left=len(left), halls=left)

    async def _keep_beating(self, scope: trio.CancelScope) -> None:
        with scope:
            while True:
                await self._heartbeat()
                await trio.sleep(BEAT_EVERY_S)

    async def _heartbeat(self) -> None:
        try:
            view = await self._membership.beat(self.serving())
        except LogError as exc:
            if self._unreachable_since is None:  # the first failure of an outage is logged, then its end
                self._unreachable_since = trio.current_time()
                log(logging.WARNING, "network_unreachable", member=self.member, error=str(exc),
                    message="the member set is unknown: keeping the halls as they are (each hall's lease still "
                            "fences it); retrying every heartbeat")
            return
        if self._unreachable_since is not None:
            log(logging.INFO, "network_reachable", member=self.member,
                outage_s=round(trio.current_time() - self._unreachable_since, 3))
            self._unreachable_since = None
        joined = set(view.members) - set(self.view.members)
        left = set(self.view.members) - set(view.members)
        if joined or left:
            log(logging.INFO, "network_members", members=sorted(view.members), joined=sorted(joined),
                left=sorted(left))
        self.view = view
        self.beats += 1
        self._last_beat = trio.current_time()
        await self._rebalance()
        await self._notify()

    async def _rebalance(self) -> None:
        wanted = self.share()
        now = trio.current_time()
        for hall_id in sorted(wanted - set(self.runs)):
            if now - self._failed_at.get(hall_id, -RESTART_AFTER_S) >= RESTART_AFTER_S:
                run = self.runs[hall_id] = _HallRun(hall_id)
                self._halls.start_soon(self._run_hall, run)
        for hall_id in sorted(set(self.runs) - wanted):
            await self._stop_hall(self.runs[hall_id])

    async def _run_hall(self, run: _HallRun) -> None:
        hall = self.network.hall(run.hall_id)
        failed = False
        try:
            with run.scope:
                async with trio.open_nursery() as nursery:
                    await self._starting.acquire()
                    slot = _Slot(self._starting)
                    nursery.start_soon(slot.release_after, START_SLOT_S)
                    try:
                        run.server = await nursery.start(partial(
                            serve_callsys, hall, self.store, host="127.0.0.1", port=0, clock=self.clock,
                            secret=self.secret, settings=self.settings, advertise=self.hall_ws(hall.id)))
                    finally:
                        slot.release()
                    if run.leaving:
                        run.server.shutdown()
                    elif _owns(run.server):  # a standby that serves is marked by the heartbeat once it owns
                        await self._mark(run.hall_id, True)
                        await self._notify()
        except Exception as exc:  # this hall only: its server failed; the others keep serving
            failed = True
            log(logging.ERROR, "network_hall_failed", hall=run.hall_id, error=_describe(exc),
                message=f"started again in {RESTART_AFTER_S:g} s if it is still this process's")
        finally:
            with trio.CancelScope(shield=True):
                if self.runs.get(run.hall_id) is run:
                    del self.runs[run.hall_id]
                if failed:
                    self._failed_at[run.hall_id] = trio.current_time()
                if run.server is not None:
                    await self._mark(run.hall_id, False)
                await self._notify()

    async def _stop_hall(self, run: _HallRun) -> None:
        """Stop serving *run*'s hall: unmark it, then shut its server down cleanly (its lease released);
        a hall still standing by is just cancelled."""
        if run.leaving:
            return
        run.leaving = True
        log(logging.INFO, "network_hall_moving", hall=run.hall_id, member=self.member)
        if run.server is None:
            run.scope.cancel()
            return
        await self._mark(run.hall_id, False)
        run.server.shutdown()

    async def _mark(self, hall_id: str, serving: bool) -> None:
        try:
            await self._membership.mark(hall_id, serving)
        except LogError as exc:
            log(logging.WARNING, "network_unreachable", member=self.member, hall=hall_id, error=str(exc))

    async def _leave(self) -> None:
        """Leave the member set first (the others take the halls at their next heartbeat), then
        stop every hall cleanly."""
        try:
            self.view = await self._membership.beat(leave=True)
        except LogError as exc:
            log(logging.WARNING, "network_unreachable", member=self.member, error=str(exc),
                message="leaving without a word: the others take the halls when this heartbeat expires")
        for run in list(self.runs.values()):
            await self._stop_hall(run)

    # ------------------------------------------------------------------ the router

    def halls_json(self) -> dict[str, Any]:
        """``GET /halls``: every hall, its owner now (None while it moves) and its URLs through that owner."""
        members = self.view.members
        assigned = list(members)
        serving = self.serving()
        halls = []
        for hall in self.network.halls:
            owner = self.view.served.get(hall.id)
            if hall.id in serving:
                owner = self.member
            url = members.get(owner) if owner is not None else None
            if owner == self.member:
                url = self.url
            entry: dict[str, Any] = {
                "id": hall.id, "kind": self.network.kinds[hall.id], "name": {"zh": hall.name.zh, "en": hall.name.en},
                "windows": len(hall.windows), "owner": owner, "assigned": assign(assigned, hall.id),
                "url": f"{url}{PREFIX}{hall.id}/" if url else None,
                "ws": f"ws{url.removeprefix('http')}{PREFIX}{hall.id}/ws" if url else None,
            }
            halls.append(entry)
        return {"network": self.network.id, "member": self.member,
                "members": [{"id": m, "url": u} for m, u in sorted(members.items())], "halls": halls}

    def ready(self) -> tuple[bool, dict[str, Any]]:
        """``/readyz``: heartbeat fresh and the whole share served here."""
        if self._last_beat is None or trio.current_time() - self._last_beat > MEMBER_TTL_S:
            return False, {"ready": False, "reason": "membership_unknown", "member": self.member}
        missing = sorted(self.share() - self.serving())
        if missing:
            return False, {"ready": False, "reason": "rebalancing", "halls_pending": len(missing),
                           "member": self.member}
        return True, {"ready": True, "member": self.member, "halls": len(self.serving())}

    async def _serve_client(self, stream: trio.SocketStream) -> None:
        try:
            opening = None
            with trio.move_on_after(OPENING_TIMEOUT_S):
                opening = await http.read_opening(stream)
            if opening is None:
                return
            if opening.request is None:
                await _answer(stream, opening, 400, b"not an HTTP/1.1 request\n")
                return
            await self._route(stream, opening)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # the client or the upstream went away: this connection only
        except Exception as exc:
            log(logging.WARNING, "network_conn_error", error=_describe(exc))
        finally:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)

    async def _route(self, stream: trio.SocketStream, opening: http.Opening) -> None:
        target = opening.request.target
        path, query = target.split(b"?", 1)[0], target.partition(b"?")[1:]
        if path == b"/halls":
            await _answer(stream, opening, 200, _json(self.halls_json()), json_body=True)
        elif path == b"/healthz":
            await _answer(stream, opening, 200, _json({"status": "ok", "member": self.member}), json_body=True)
        elif path == b"/readyz":
            ok, body = self.ready()
            await _answer(stream, opening, 200 if ok else 503, _json(body), json_body=True,
                          headers=() if ok else [(b"retry-after", str(RETRY_AFTER_S).encode())])
        elif path == b"/":
            await _answer(stream, opening, 200, self._index().encode(), content_type=b"text/html; charset=utf-8")
        elif path.startswith(PREFIX.encode()):
            hall_id, slash, rest = path[len(PREFIX):].decode(errors="replace").partition("/")
            if self.network.hall(hall_id) is None:
                body = (f"no hall {hall_id!r} in network {self.network.id}; GET /halls lists its "
                        f"{len(self.network.halls)} halls\n")
                await _answer(stream, opening, 404, body.encode())
            elif not slash:
                location = f"{PREFIX}{hall_id}/".encode() + b"".join(query)
                await _answer(stream, opening, 308, b"", headers=[(b"location", location)])
            else:
                await self._to_hall(stream, opening, hall_id, ("/" + rest).encode() + b"".join(query))
        elif (hall_id := _signed_hall(path, b"".join(query))) is not None and self.network.hall(hall_id):
            location = f"{PREFIX}{hall_id}".encode() + target  # a QR code's /phone?q= or /take?door= of a hall
            await _answer(stream, opening, 307, b"", headers=[(b"location", location)])
        else:
            body = (f"this is a router of network {self.network.id}: a hall's pages and WebSocket are at "
                    f"{PREFIX}<hall_id>/ (GET /halls lists them)\n")
            await _answer(stream, opening, 404, body.encode())

    async def _to_hall(self, stream: trio.SocketStream, opening: http.Opening, hall_id: str, inner: bytes) -> None:
        run = self.runs.get(hall_id)
        forwarded = any(name == FORWARDED for name, _ in opening.request.headers)
        if run is not None and _owns(run.server):
            address, head = ("127.0.0.1", run.server.port), _rewrite(opening, inner)
        else:
            owner = self.view.served.get(hall_id)
            url = self.view.members.get(owner) if owner not in (None, self.member) else None
            if forwarded or url is None:
                body = (f"hall {hall_id} is moving between the processes of network {self.network.id} (no server "
                        f"of it is running right now); retry after {RETRY_AFTER_S} s\n")
                await _answer(stream, opening, 503, body.encode(),
                              headers=[(b"retry-after", str(RETRY_AFTER_S).encode())])
                return
            parts = urlsplit(url)
            address = (parts.hostname, parts.port)
            head = _rewrite(opening, opening.request.target, forwarded=True)
        try:
            upstream = await trio.open_tcp_stream(*address)
        except OSError:
            body = f"hall {hall_id}: its server at {address[0]}:{address[1]} did not answer; retry after {RETRY_AFTER_S} s\n"
            await _answer(stream, opening, 503, body.encode(), headers=[(b"retry-after", str(RETRY_AFTER_S).encode())])
            return
        try:
            await upstream.send_all(head)
            await _pipe(stream, upstream)
        finally:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(upstream)

    def _index(self) -> str:
        rows = "".join(f'<li><a href="{PREFIX}{escape(h.id)}/">{escape(h.name.zh)} · {escape(h.name.en)}</a> '
                       f"<small>{escape(h.id)}, {len(h.windows)} windows</small></li>"
                       for h in self.network.halls)
        name = self.network.name
        return (f'<!doctype html><html lang="zh"><head><meta charset="utf-8"><title>{escape(name.zh)} · '
                f"{escape(name.en)}</title></head><body><h1>{escape(name.zh)} · {escape(name.en)}</h1>"
                f'<p><a href="/halls">/halls</a> (JSON) · <a href="/healthz">/healthz</a> · '
                f'<a href="/readyz">/readyz</a></p><ol>{rows}</ol></body></html>')


def _owns(server: CallsysServer | None) -> bool:
    """*server* runs and executes its hall's commands: started, not stopping, and the owner
    (it also serves while standing by)."""
    return server is not None and not server.stopping and server.owning


def _signed_hall(path: bytes, query: bytes) -> str | None:
    """The hall named by the signed payload of a root-level ``/phone?q=`` or ``/take?door=`` (what a
    ticket's or a door's QR code opens: the hall server writes its own URLs without the router's
    prefix), else None. Payloads are ``CS1.<kind>.<hall_id>....`` (:mod:`callsys.qrcodes`); the hall
    checks the signature, the router only reads where to send the phone."""
    name = {b"/phone": "q", b"/take": "door"}.get(path)
    if name is None:
        return None
    values = parse_qs(query.removeprefix(b"?").decode(errors="replace")).get(name, [])
    parts = values[0].split(".") if values else []
    return parts[2] if len(parts) > 3 and parts[0] == "CS1" else None


def _rewrite(opening: http.Opening, target: bytes, *, forwarded: bool = False) -> bytes:
    """The bytes read so far with the request line's target replaced by *target*; a plain
    HTTP request (no ``Upgrade``) gets ``Connection: close``; *forwarded* adds :data:`FORWARDED`."""
    data = opening.data
    end = data.find(b"\r\n\r\n")
    if end < 0:  # h11 also accepts bare LF line ends
        end, sep = data.find(b"\n\n"), b"\n"
    else:
        sep = b"\r\n"
    head, rest = data[:end], data[end + 2 * len(sep):]
    lines = head.split(sep)
    method, _, version = lines[0].split(b" ", 2)
    headers = lines[1:]
    upgrade = any(name == b"upgrade" for name, _ in opening.request.headers)
    if not upgrade:
        headers = [h for h in headers if h.split(b":", 1)[0].strip().lower() not in (b"connection", b"keep-alive")]
        headers.append(b"connection: close")
    if forwarded:
        headers.append(FORWARDED + b": 1")
    return sep.join([b" ".join((method, target, version)), *headers]) + sep + sep + rest


async def _pipe(client: trio.SocketStream, upstream: trio.SocketStream) -> None:
    """Copy bytes both ways until the upstream is done (its EOF or an error either side)."""
    async with trio.open_nursery() as nursery:

        async def up() -> None:
            try:
                while data := await client.receive_some(PIPE_BYTES):
                    await upstream.send_all(data)
                await upstream.send_eof()  # the client is done sending; its answer may still come
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                nursery.cancel_scope.cancel()

        async def down() -> None:
            try:
                while data := await upstream.receive_some(PIPE_BYTES):
                    await client.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
            nursery.cancel_scope.cancel()

        nursery.start_soon(up)
        nursery.start_soon(down)


async def _answer(stream: trio.SocketStream, opening: http.Opening, status: int, body: bytes, *,
                  json_body: bool = False, content_type: bytes = b"text/plain; charset=utf-8",
                  headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    """Answer the request with *body*, not cached, and close (:func:`http.respond`)."""
    await http.respond(stream, opening, status, body, [(b"cache-control", b"no-cache"), *headers],
                       content_type=b"application/json" if json_body else content_type)


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"


async def serve_network(network: Network, store: str, *, host: str, port: int,
                        task_status: trio.TaskStatus[NetworkNode] = trio.TASK_STATUS_IGNORED,
                        **options: Any) -> None:
    """Run a :class:`NetworkNode` of *network* on *store* until its :meth:`~NetworkNode.shutdown`.

    Use in a nursery: ``node = await nursery.start(serve_network, network, "redis://...", host=..., port=0)``.
    *options*: ``clock``, ``secret``, ``settings``, ``member``, ``slow_stop_s`` (see :class:`NetworkNode`).

    Raises:
        LogError: *store* is not a Redis URL (membership lives in Redis), or Redis does not
            answer the first heartbeat.
    """
    if store.startswith("file:"):
        raise LogError(f"store {store}: a network of halls needs a Redis store (redis://..., redis+cluster://...): "
                       "its processes share the halls through it")
    node = NetworkNode(network, store, host=host, port=port, **options)
    await node.run(task_status)


def network_block(node: NetworkNode) -> str:
    """What ``callsys serve --network`` prints once its router listens: where the halls are."""
    network = node.network
    first = network.halls[0]
    return "\n".join([
        f"network {network.name.en} ({network.id}, {len(network.halls)} halls, {network.windows} windows) from "
        f"{network.source}; this process is {node.member}",
        f"  halls and their owners  {node.url}/halls",
        f"  a hall's pages          {node.url}{PREFIX}{first.id}/",
        f"  a hall's WebSocket      ws{node.url.removeprefix('http')}{PREFIX}{first.id}/ws",
        f"  health, readiness       {node.url}/healthz  {node.url}/readyz",
    ])


# ---------------------------------------------------------------------- callsys network list


@command("network", "list", help="expand a network file and list its halls (checks every hall like a hall file)")
def _network_list_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="network file, e.g. config/baoan.toml")
    p.add_argument("--json", action="store_true", help="print the halls as JSON")
    p.set_defaults(run=_network_list)


def _network_list(args: argparse.Namespace) -> int:
    network = load_network(args.file)
    if args.json:
        print(json.dumps({"network": network.id, "halls": [
            {"id": h.id, "kind": network.kinds[h.id], "name": {"zh": h.name.zh, "en": h.name.en},
             "windows": len(h.windows), "services": [s.code for s in h.services]} for h in network.halls]},
            ensure_ascii=False, indent=2))
        return 0
    table = Table(title=f"{network.name.zh} · {network.name.en} ({network.id})")
    for col, justify in (("hall", "left"), ("kind", "left"), ("name", "left"), ("windows", "right"),
                         ("services", "left")):
        table.add_column(col, justify=justify)
    for hall in network.halls:
        table.add_row(hall.id, network.kinds[hall.id], f"{hall.name.zh} {hall.name.en}", str(len(hall.windows)),
                      " ".join(s.code for s in hall.services))
    console = Console()
    console.print(table)
    kinds = Counter(network.kinds.values())
    console.print(f"{len(network.halls)} halls ({', '.join(f'{n} {k}' for k, n in kinds.items())}), "
                  f"{network.windows} windows; every hall valid")
    return 0
