"""The Redis store: one hall's events in a Redis Stream, its snapshot and marks beside it.

Why Redis: it is the distributed engine the deployment shares (a standby follows the
hall's stream, many halls live on one Redis or one Cluster); with ``appendfsync always``
a write is in the append-only file, fsync'd, before Redis answers it.

**URLs** (``callsys serve --store URL``)::

    redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]          plain TCP (port 6379, db 0 by default)
    rediss://[[USER]:PASSWORD@]HOST[:PORT][/DB]         TLS
    unix://[[USER]:PASSWORD@]/PATH/redis.sock[?db=DB]   a local socket
    redis+sentinel://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT...]/SERVICE[/DB]
                                                        the master of SERVICE, found through
                                                        these Sentinels (password: the master's)
    redis+cluster://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT...]
                                                        a Redis Cluster through these seed nodes
                                                        (no DB: a Cluster has only db 0)

**Keys** (schema version 1), hash-tagged by hall so a hall lives on one Cluster shard and
one Lua script may touch all of its keys:

* ``callsys:{HALL}:meta``: a hash, ``app`` = ``callsys``, ``schema`` = :data:`SCHEMA_VERSION`,
  ``hall`` = the hall id, ``last`` = the seq of the newest record (0 when empty); once a
  process took the lease, ``token`` (the fencing token) and ``url`` (where its owner is reached).
* ``callsys:{HALL}:events``: a Stream, record *seq* is the entry ``SEQ-0`` with one field
  ``d`` = the record's bytes (seq 1, 2, 3 ... without gaps).
* ``callsys:{HALL}:snapshot``: a hash, ``seq`` and ``data`` of the newest snapshot.

One Redis database holds any number of halls: a hall only ever reads and writes its own
keys, so opening another hall's id on the same Redis is another, separate store (the
file store refuses instead, as a file holds exactly one hall).

**Appends** (the group commit) are one ``EVALSHA`` of :data:`APPEND_SCRIPT`, one round trip
per batch. The script is atomic in Redis: it checks that the log still ends where this
process left it (``last`` = the seq it expects), adds the records and moves ``last``. A
log that moved under it means another process appended to the hall: the script writes
nothing and the store raises :class:`StoreInUse` (the server stops: two writers would fork
the hall's history). The same check makes a retried append safe: if the connection dropped
after Redis executed it, the retry finds exactly its own records at the expected seqs and
succeeds without writing them twice.

**Ownership** (one owner per hall, fenced). ``callsys:{HALL}:lease`` holds the owner's id
with a time to live (:data:`LEASE_TTL_S`); taking it (:meth:`RedisLog.acquire`, ``SET NX PX``
in :data:`ACQUIRE_SCRIPT`) also increments the meta hash's ``token`` field, the fencing
token: every acquisition gets a larger one, and sets the meta hash's ``url`` field to the
URL the owner advertises (``callsys serve --advertise``), where standbys forward their
clients' commands (:meth:`RedisLog.owner`). The owner renews the lease every
:data:`RENEW_EVERY_S` (:meth:`RedisLog.renew`), far inside its TTL. The append script takes
the token and the owner id: it refuses (``CALLSYS_FENCED``, :class:`StoreFenced`) an append
whose token is not the hall's current one or whose owner does not hold the lease now, and an
append without a token while any process holds the lease. So an owner that was paused
(``SIGSTOP``, a long GC, a VM migration) past its TTL writes nothing when it wakes up, whether
or not a standby took over meanwhile, and stops; the journal acknowledges only what the
script accepted. A store opened without :meth:`RedisLog.acquire` (tests, ``callsys store``)
writes unfenced while nobody holds the lease. Snapshots are not fenced: a snapshot is the
state after a prefix of the log, right whoever writes it, and the newest seq wins. A clean stop releases the lease
(:meth:`RedisLog.aclose`) so a standby takes over at once. The standby's side (following the
stream, taking the lease) is :mod:`callsys.server.standby`.

**Durability.** Opening refuses (:class:`StoreRefused`) a Redis whose ``CONFIG GET`` does not
show ``appendonly yes`` and ``appendfsync always`` (on every primary of a Cluster): only
then has Redis written and fsync'd a write to its append-only file before it answers, so
an acknowledged event survives ``kill -9`` of callsys, of Redis, and power loss of the
Redis machine. A Redis where ``CONFIG`` is disabled (some hosted services) is refused too:
callsys cannot tell whether it keeps what it acknowledges. The journal acknowledges only
after the script returned. Replicas are not waited for (``WAITAOF`` needs Redis 7.2; this
machine has 7.0): after a Sentinel failover, events the old master had not yet sent to the
new one are lost, so run Sentinel with ``min-replicas-to-write`` or accept that window.
While idle, :meth:`RedisLog.verify` (every second, from the journal) checks the hall's
``last`` and the durability settings again (of the node that holds the hall: in a Cluster,
its slot's primary, the one its writes go to): keys that vanished (``FLUSHALL``, a restart
without the AOF), another writer, or ``appendfsync`` turned down at run time stop the server
(:class:`StoreLost` / :class:`StoreInUse`) before it acknowledges anything more.

**Where the calls run.** The event loop never waits on Redis. The calls a store makes once
or now and then — opening, recovery reads, snapshots, taking and releasing the lease, a
standby's look at the lease holder — use redis-py's synchronous client in a worker thread,
one call at a time per store (``trio.to_thread.run_sync`` with a ``CapacityLimiter(1)``);
a standby's ``XREAD BLOCK`` has a client and a thread of its own. The calls an owner makes
for as long as it owns the hall do not: the group commit, the lease's renewals
(:meth:`RedisLog.renew`, with its refused path: read the hall's token, raise
:class:`StoreFenced`) and the idle checks (:meth:`RedisLog.verify`) are written and answered
on trio sockets of the store's own (:class:`_Connection`: the command packed by redis-py's
RESP serializer, the reply parsed on the loop), to the node that holds the hall (the URL's
node, the Cluster node of the hall's slot — both known without a round trip — or the master
the Sentinels name when the connection opens, asked in a worker thread). Two connections:
one for the appends (``EVALSHA`` of :data:`APPEND_SCRIPT`), one for the renewals and idle
checks with the probe timeouts (below), so a stalled append never holds a renewal up.

Why not threads: the reason the file store commits on the loop (:mod:`callsys.log.sqlite`)
holds for redis-py as well — a worker thread must win the GIL back from the busy loop at
every step of its Python code (packing the command, parsing the reply), up to the 5 ms
switch interval each, and its result waits for the loop's next turn. Instrumented under
``python -m benchmarks.ingest --store redis`` (load average ~5), thread commits took 2-50 ms
inside the thread but 20-240 ms as the loop saw them: up to ~200 ms before the thread
started and ~180 ms before its result was picked up. On the loop, a call is packing plus
one ``send`` and one ``recv``. For the commit, whole ``benchmarks.ingest`` runs did not
separate the two versions beyond the shared machine's noise; for the renewals they do: a
network process (:mod:`callsys.server.network`) owning 133 halls makes ~400 renewals and
checks a second, which as thread calls cost it 0.28-0.36 of a core while idle (0.19-0.22
on the loop) and, under load, came so late that halls' leases expired
(``docs/performance.md``).

**Outages** (a Redis restart on its AOF, a pause): every call is bounded (:class:`Timeouts`).
An append waits for Redis up to :data:`OUTAGE_S`, the lease's TTL: a refused or dropped
connection is reconnected every :data:`RECONNECT_CAP_S` at most and the batch sent again
(the append script makes the resend safe), a missing reply is waited for; Redis back
within the bound, the append completes and nobody sees more than a delay. Past the bound
the store raises :class:`RedisUnreachable` and stays stopped (the journal fails the
server: fail-stop). Why the TTL: an owner that cannot reach Redis for that long has lost
its lease anyway (:func:`callsys.server.standby.keep_lease` stops it), and a standby may
own the hall by the time Redis is back. The lease's renewals and the idle checks
(:meth:`RedisLog.verify`, which tolerates failures for the same bound) run on their own
connection: an attempt (connecting if need be, the command, its reply) gets twice
:data:`PROBE_TIMEOUT_S` (to connect, then to answer), a failed one is retried
:data:`PROBE_RETRIES` time(s) on a new connection, and then the call fails with
:class:`RedisUnreachable` (:func:`callsys.server.standby.keep_lease` renews again until the
lease would have expired). :meth:`RedisLog.unavailable` says, for ``/readyz``, whether the
last call found Redis unreachable or a call has waited longer than :data:`PROBE_TIMEOUT_S`.
The other calls (recovery reads, snapshots) take
:data:`CONNECT_TIMEOUT_S` to connect, :data:`SOCKET_TIMEOUT_S` per reply and :data:`RETRIES`
retries; then the store raises :class:`LogError` (:class:`RedisUnreachable` when Redis did not
answer) naming the URL (password hidden) and Redis's own error. A ``MOVED``
answer to an append, a renewal or an idle check (the hall's slot moved to another Cluster
node while open) stops the store the same way; a restart finds the new node. ``rediss://``
URLs take redis-py's ``ssl_*`` query settings (e.g. ``?ssl_ca_certs=/etc/callsys/redis-ca.pem``)
for every connection.
"""

from __future__ import annotations

import hashlib
import math
import ssl
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Final, Iterator, Sequence
from urllib.parse import parse_qs, unquote

import redis
import redis.exceptions as rex
import trio
from redis.backoff import ExponentialBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.connection import Encoder, PythonRespSerializer, SSLConnection
from redis.retry import Retry
from redis.sentinel import Sentinel

from .base import EventLog, LogError, StoreDamaged, StoreFenced, StoreInUse, StoreLost, StoreRefused

SCHEMES: Final = ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster")
APP: Final = "callsys"  # the meta hash's ``app`` field: these keys are a callsys store
SCHEMA_VERSION: Final = 1  # the meta hash's ``schema`` field: the key layout this code writes and reads
DEFAULT_PORT: Final = 6379
SENTINEL_PORT: Final = 26379
CONNECT_TIMEOUT_S: Final = 2.0  # seconds to open a connection to Redis
SOCKET_TIMEOUT_S: Final = 5.0  # seconds for one reply (an fsync'd batch takes ~1 ms; a stalled disk longer)
RETRIES: Final = 2  # retries of a call whose connection failed (appends are safe to retry, see above)
BACKOFF_BASE_S: Final = 0.05  # seconds before the first retry, doubling
BACKOFF_CAP_S: Final = 0.5  # seconds between retries at most
MAX_REPLY_BYTES: Final = 64 * 1024  # an append's reply is one line (":SEQ" or an error); longer is not Redis
LEASE_TTL_S: Final = 2.0  # seconds a hall's lease lives without renewal: a dead owner's hall is free after this
RENEW_EVERY_S: Final = 0.5  # seconds between the owner's renewals (a quarter of the TTL: three may fail)
OUTAGE_S: Final = LEASE_TTL_S  # seconds an append waits for an unreachable Redis, reconnecting, before it fails
RECONNECT_CAP_S: Final = 0.1  # seconds between an append's reconnection attempts at most (resumes this soon)
PROBE_TIMEOUT_S: Final = 0.5  # seconds to connect plus as many for the reply: a renewal's or idle check's attempt
PROBE_RETRIES: Final = 1  # retries of a renewal or idle check whose connection failed (a pooled one went stale)

# KEYS: meta, events. ARGV: app, schema, hall. Creates the marks of a new hall; returns the meta hash.
OPEN_SCRIPT: Final = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  if redis.call('EXISTS', KEYS[2]) == 1 then
    return redis.error_reply('CALLSYS_REFUSED ' .. KEYS[2] .. ' exists without ' .. KEYS[1])
  end
  redis.call('HSET', KEYS[1], 'app', ARGV[1], 'schema', ARGV[2], 'hall', ARGV[3], 'last', 0)
end
return redis.call('HGETALL', KEYS[1])
"""

# KEYS: meta, events, lease. ARGV: the seq the log must end at, the fencing token ('' = unfenced),
# the owner id, then the records. Returns the new last seq.
APPEND_SCRIPT: Final = """
if ARGV[2] ~= '' then
  local token = redis.call('HGET', KEYS[1], 'token')
  if redis.call('GET', KEYS[3]) ~= ARGV[3] or token ~= ARGV[2] then
    return redis.error_reply('CALLSYS_FENCED ' .. tostring(token))
  end
elseif redis.call('EXISTS', KEYS[3]) == 1 then
  return redis.error_reply('CALLSYS_FENCED ' .. tostring(redis.call('HGET', KEYS[1], 'token')))
end
local last = redis.call('HGET', KEYS[1], 'last')
if not last then
  return redis.error_reply('CALLSYS_LOST')
end
last = tonumber(last)
local expected = tonumber(ARGV[1])
local n = #ARGV - 3
if last ~= expected then
  if last == expected + n then
    local rows = redis.call('XRANGE', KEYS[2], (expected + 1) .. '-0', last .. '-0')
    local same = #rows == n
    for i = 1, n do
      if not same then break end
      local fields = rows[i][2]
      same = fields[1] == 'd' and fields[2] == ARGV[i + 3]
    end
    if same then
      return last
    end
  end
  return redis.error_reply('CALLSYS_CONFLICT ' .. last)
end
for i = 1, n do
  redis.call('XADD', KEYS[2], (expected + i) .. '-0', 'd', ARGV[i + 3])
end
redis.call('HSET', KEYS[1], 'last', expected + n)
return expected + n
"""

# KEYS: meta, lease. ARGV: owner id, TTL in ms, the URL clients reach the owner at ('' = none).
# Returns the new fencing token, or 0 if the lease is held.
ACQUIRE_SCRIPT: Final = """
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('HSET', KEYS[1], 'url', ARGV[3])
  return redis.call('HINCRBY', KEYS[1], 'token', 1)
end
return 0
"""

# KEYS: meta, lease. ARGV: owner id, TTL in ms, token. 1: renewed; 0: the lease or the token is another's.
RENEW_SCRIPT: Final = """
if redis.call('GET', KEYS[2]) == ARGV[1] and redis.call('HGET', KEYS[1], 'token') == ARGV[3] then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  return 1
end
return 0
"""

# KEYS: meta, lease. ARGV: owner id, token. Deletes the lease if it is still this owner's.
RELEASE_SCRIPT: Final = """
if redis.call('GET', KEYS[2]) == ARGV[1] and redis.call('HGET', KEYS[1], 'token') == ARGV[2] then
  return redis.call('DEL', KEYS[2])
end
return 0
"""

# KEYS: snapshot. ARGV: seq, data. Keeps the newest snapshot only.
SNAPSHOT_SCRIPT: Final = """
local current = redis.call('HGET', KEYS[1], 'seq')
if current and tonumber(current) > tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'seq', ARGV[1], 'data', ARGV[2])
return 1
"""


@dataclass(frozen=True, slots=True)
class RedisURL:
    """A parsed store URL (see the module docstring)."""

    url: str
    scheme: str
    hosts: tuple[tuple[str, int], ...] = ()
    db: int = 0
    username: str | None = None
    password: str | None = None
    service: str | None = None

    @property
    def redacted(self) -> str:
        """The URL with its password replaced by ``***`` (for messages and logs)."""
        if self.password is None:
            return self.url
        head, _, rest = self.url.partition("://")
        userinfo, _, hosts = rest.rpartition("@")
        return f"{head}://{userinfo.partition(':')[0]}:***@{hosts}"


def parse_url(url: str) -> RedisURL:
    """Parse a Redis store URL.

    Raises:
        LogError: the URL has no host, a bad port, a bad database number, or a form this
            module does not know.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in SCHEMES:
        raise LogError(f"unknown store {url!r}: use file:PATH or a Redis URL "
                       f"({', '.join(s + '://' for s in SCHEMES)})")
    userinfo, at, location = rest.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    if scheme == "unix":
        # redis-py parses unix:// itself; only make sure there is a path
        if not location.split("?", 1)[0]:
            raise LogError(f"bad store URL {url!r}: unix:// needs a socket path")
        return RedisURL(url, scheme, username=username, password=password)
    location, _, query = location.partition("?")
    netloc, _, path = location.partition("/")
    hosts = tuple(_host(url, h, SENTINEL_PORT if scheme == "redis+sentinel" else DEFAULT_PORT)
                  for h in netloc.split(","))
    parts = [p for p in path.split("/") if p]
    service = None
    if scheme == "redis+sentinel":
        if not parts:
            raise LogError(f"bad store URL {url!r}: name the Sentinel service, e.g. "
                           "redis+sentinel://HOST:26379/mymaster/0")
        service, parts = parts[0], parts[1:]
    if len(parts) > 1:
        raise LogError(f"bad store URL {url!r}: after the host comes at most a database number")
    db = _db(url, parts[0]) if parts else 0
    if "db" in parse_qs(query):
        db = _db(url, parse_qs(query)["db"][0])
    if scheme == "redis+cluster" and db != 0:
        raise LogError(f"bad store URL {url!r}: a Redis Cluster has only database 0")
    if scheme in ("redis", "rediss") and len(hosts) != 1:
        raise LogError(f"bad store URL {url!r}: one host only (several are for redis+sentinel:// "
                       "or redis+cluster://)")
    return RedisURL(url, scheme, hosts, db, username, password, service)


def _host(url: str, text: str, default_port: int) -> tuple[str, int]:
    if text.startswith("["):  # [IPv6]:port
        host, _, port = text[1:].partition("]")
        port = port.removeprefix(":")
    else:
        host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    if not host:
        raise LogError(f"bad store URL {url!r}: no host")
    try:
        number = int(port) if port else default_port
    except ValueError:
        raise LogError(f"bad store URL {url!r}: port {port!r} is not a number") from None
    if not 0 < number < 65536:
        raise LogError(f"bad store URL {url!r}: port {number} is out of range")
    return host, number


def _db(url: str, text: str) -> int:
    if not text.isdigit():
        raise LogError(f"bad store URL {url!r}: database {text!r} is not a number")
    return int(text)


def keys(hall_id: str) -> tuple[str, str, str]:
    """The ``(meta, events, snapshot)`` keys of hall *hall_id* (one Cluster slot: ``{hall_id}``)."""
    return f"callsys:{{{hall_id}}}:meta", f"callsys:{{{hall_id}}}:events", f"callsys:{{{hall_id}}}:snapshot"


def lease_key(hall_id: str) -> str:
    """The key of hall *hall_id*'s lease (the owner's id, with a TTL); same slot as :func:`keys`."""
    return f"callsys:{{{hall_id}}}:lease"


class RedisUnreachable(LogError):
    """Redis did not answer: connection refused or dropped, or no reply in time.

    An append raises it once Redis has been unreachable for the store's outage bound
    (:attr:`Timeouts.outage_s`, :data:`OUTAGE_S`); the server then stops (fail-stop).
    """

    code = "store_unreachable"

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason  # Redis's or the socket's own words


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long a store waits for Redis (seconds); see the module docstring.

    Attributes:
        connect_s: to open a connection.
        reply_s: for one reply.
        outage_s: how long an append keeps reconnecting and resending while Redis does not
            answer before it fails with :class:`RedisUnreachable` (also how long an idle
            store tolerates failed checks).
    """

    connect_s: float = CONNECT_TIMEOUT_S
    reply_s: float = SOCKET_TIMEOUT_S
    outage_s: float = OUTAGE_S


def connect(target: RedisURL, timeouts: Timeouts = Timeouts(), *, retries: int = RETRIES) -> redis.Redis | RedisCluster:
    """A redis-py client for *target* (no round trip yet), with *timeouts* and *retries*."""
    retry = Retry(ExponentialBackoff(cap=BACKOFF_CAP_S, base=BACKOFF_BASE_S), retries)
    limits: dict[str, Any] = dict(socket_timeout=timeouts.reply_s, socket_connect_timeout=timeouts.connect_s)
    common: dict[str, Any] = dict(limits, retry=retry, username=target.username, password=target.password)
    if target.scheme in ("redis", "rediss", "unix"):
        return redis.Redis.from_url(target.url, retry=retry, **limits)
    if target.scheme == "redis+sentinel":
        sentinel = Sentinel(list(target.hosts), **limits)
        return sentinel.master_for(target.service, db=target.db, **common)
    return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in target.hosts], **common)


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


@dataclass(frozen=True, slots=True)
class _Address:
    """Where the writer connects: a TCP host and port (TLS or not) or a unix socket path."""

    host: str | None
    port: int
    path: str | None = None
    tls: dict[str, Any] | None = None  # redis-py's ssl_* settings of the URL (TLS), else None
    db: int = 0
    username: str | None = None
    password: str | None = None


def _address(client: redis.Redis | RedisCluster, target: RedisURL, meta: str) -> _Address:
    """The node that holds *meta*'s hall now (a blocking call: run it in a thread)."""
    if isinstance(client, RedisCluster):
        node = client.get_node_from_key(meta)
        return _Address(node.host, node.port, username=target.username, password=target.password)
    pool = client.connection_pool
    kwargs = pool.connection_kwargs
    if target.scheme == "redis+sentinel":
        host, port = pool.get_master_address()
        return _Address(host, port, db=target.db, username=target.username, password=target.password)
    tls = ({k: v for k, v in kwargs.items() if k.startswith("ssl_")}
           if issubclass(pool.connection_class, SSLConnection) else None)
    return _Address(kwargs.get("host"), kwargs.get("port", DEFAULT_PORT), kwargs.get("path"), tls=tls,
                    db=kwargs.get("db", 0) or 0, username=kwargs.get("username"), password=kwargs.get("password"))


def _tls_context(settings: dict[str, Any]) -> ssl.SSLContext:
    """The TLS context redis-py would build from a ``rediss://`` URL's ``ssl_*`` query settings
    (``ssl_ca_certs``, ``ssl_certfile``/``ssl_keyfile``, ``ssl_cert_reqs``, ``ssl_check_hostname``)."""
    context = ssl.create_default_context(cafile=settings.get("ssl_ca_certs"))
    if settings.get("ssl_certfile"):
        context.load_cert_chain(settings["ssl_certfile"], settings.get("ssl_keyfile"))
    if settings.get("ssl_cert_reqs") in ("none", ssl.CERT_NONE):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif settings.get("ssl_check_hostname") in (False, "false", "False"):
        context.check_hostname = False
    return context


class _Connection:
    """A connection of the store's own on a trio socket, to the node that holds the hall.

    Speaks RESP2 for what the store sends on the loop: ``AUTH``/``SELECT`` after connecting,
    then one command at a time (:meth:`command`, :meth:`script`), its reply parsed here —
    simple string, error, integer, bulk string or nil, array. The command is packed by
    redis-py's RESP serializer. A reply that is an error is raised as
    :class:`redis.exceptions.ResponseError`.

    Two retry policies, by *retries*: None (the group commit) resends a command whose
    connection was refused or dropped, or whose reply took longer than ``connect_s +
    reply_s``, on a new connection (every :data:`RECONNECT_CAP_S` at most) until
    ``outage_s`` have passed since it began; a number (renewals and idle checks, with the
    probe timeouts) resends it that many times, then fails.
    """

    def __init__(self, locate: Callable[[], Any], timeouts: Timeouts, *, retries: int | None = None) -> None:
        self._locate = locate  # async: the _Address to connect to
        self._timeouts = timeouts
        self._retries = retries
        self._stream: trio.abc.Stream | None = None
        self._buffer = bytearray()
        self._packer = PythonRespSerializer(6000, Encoder("utf-8", "strict", False).encode)
        self._busy = trio.Lock()  # one command and its reply at a time on the connection

    async def command(self, *command: Any) -> Any:
        """Send *command*; its reply (retried as the policy says).

        Raises:
            redis.exceptions.ResponseError: Redis answered with an error.
            redis.exceptions.AuthenticationError: Redis refused the credentials.
            redis.exceptions.ConnectionError / TimeoutError: Redis did not answer (see above).
        """
        return await self._retrying(lambda: self._request(command))

    async def script(self, source: str, keys: Sequence[str], *args: Any) -> Any:
        """Run the Lua script *source* (``EVALSHA``; on ``NOSCRIPT`` — Redis restarted, or
        ``SCRIPT FLUSH`` — the script itself, once); its reply, as :meth:`command`."""
        sha = hashlib.sha1(source.encode()).hexdigest()

        async def attempt() -> Any:
            try:
                return await self._request(("EVALSHA", sha, len(keys), *keys, *args))
            except rex.NoScriptError:
                return await self._request(("EVAL", source, len(keys), *keys, *args))

        return await self._retrying(attempt)

    async def _retrying(self, attempt: Callable[[], Any]) -> Any:
        backoff = ExponentialBackoff(cap=RECONNECT_CAP_S, base=BACKOFF_BASE_S)
        limit = self._timeouts.connect_s + self._timeouts.reply_s
        if self._retries is None:
            bound = f"{self._timeouts.outage_s:g} s"
            deadline = trio.current_time() + self._timeouts.outage_s
        else:
            bound, deadline = f"{limit:g} s", math.inf
        failures = 0
        async with self._busy:
            while True:
                why = f"no answer within {bound}"  # unless the connection itself failed
                with trio.move_on_at(min(deadline, trio.current_time() + limit)):
                    try:
                        return await attempt()
                    except rex.AuthenticationError:
                        raise  # an answer, not a lost connection: retrying changes nothing
                    except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, rex.ConnectionError) as exc:
                        reason = str(exc) or type(exc).__name__
                        why = f"no connection for {bound}: {reason}" if self._retries is None else reason
                await self._drop()
                failures += 1
                now = trio.current_time()
                if now >= deadline or (self._retries is not None and failures > self._retries):
                    raise (rex.TimeoutError if why.startswith("no answer") else rex.ConnectionError)(why)
                await trio.sleep(min(backoff.compute(failures), deadline - now))

    async def _request(self, command: Sequence[Any]) -> Any:
        """One command and its reply on the connection (connecting first if need be). Anything
        but an answer (a lost connection, a cancellation) drops the connection: a reply may
        still be on its way, and the next command must not read it as its own."""
        try:
            stream = self._stream or await self._connect()
            await stream.send_all(b"".join(self._packer.pack(*command)))
            reply = await self._reply()
        except BaseException:
            await self._drop()
            raise
        if isinstance(reply, rex.ResponseError):
            raise reply
        return reply

    async def _connect(self) -> trio.abc.Stream:
        address: _Address = await self._locate()
        if address.path is not None:
            stream: trio.abc.Stream = await trio.open_unix_socket(address.path)
        else:
            stream = await trio.open_tcp_stream(address.host, address.port)
            if address.tls is not None:
                stream = trio.SSLStream(stream, _tls_context(address.tls), server_hostname=address.host)
        self._stream, self._buffer = stream, bytearray()
        hello = []
        if address.password is not None:
            hello.append(("AUTH", address.username, address.password) if address.username
                         else ("AUTH", address.password))
        if address.db:
            hello.append(("SELECT", address.db))
        if hello:
            await stream.send_all(b"".join(b"".join(self._packer.pack(*c)) for c in hello))
            for command in hello:
                reply = await self._reply()
                if isinstance(reply, rex.ResponseError):
                    raise rex.AuthenticationError(str(reply)) if command[0] == "AUTH" else reply
        return stream

    async def _reply(self) -> Any:
        """The next reply: bytes (simple or bulk string), int, None (nil), a list (array), or
        a :class:`redis.exceptions.ResponseError` (an error reply, ``NOSCRIPT`` as
        :class:`~redis.exceptions.NoScriptError`)."""
        line = await self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest
        if kind == b"-":
            text = rest.decode(errors="replace")
            return rex.NoScriptError(text) if text.startswith("NOSCRIPT") else rex.ResponseError(text)
        if kind == b":":
            return int(rest)
        if kind in (b"$", b"*") and rest.lstrip(b"-").isdigit():
            size = int(rest)
            if size < 0:
                return None
            if kind == b"*":
                return [await self._reply() for _ in range(size)]
            if size > MAX_REPLY_BYTES:
                raise rex.ResponseError(f"a reply of {size} bytes: longer than any this store reads")
            while len(self._buffer) < size + 2:
                await self._receive()
            data = bytes(self._buffer[:size])
            del self._buffer[:size + 2]
            return data
        raise rex.ResponseError(f"unexpected answer {line[:80]!r}")

    async def _line(self) -> bytes:
        """The next reply line, without its CRLF."""
        while (end := self._buffer.find(b"\r\n")) < 0:
            if len(self._buffer) > MAX_REPLY_BYTES:
                raise rex.ResponseError(f"a reply line longer than {MAX_REPLY_BYTES} bytes: not Redis")
            await self._receive()
        line = bytes(self._buffer[:end])
        del self._buffer[:end + 2]
        return line

    async def _receive(self) -> None:
        chunk = await self._stream.receive_some()
        if not chunk:
            raise rex.ConnectionError("Redis closed the connection")
        self._buffer += chunk

    async def _drop(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def aclose(self) -> None:
        await self._drop()


class RedisLog(EventLog):
    """An :class:`EventLog` in Redis. Open it with :meth:`open`."""

    leased = True  # one owner per hall, the other processes stand by (see the module docstring)

    def __init__(self, target: RedisURL, hall_id: str, client: redis.Redis | RedisCluster, last: int,
                 timeouts: Timeouts = Timeouts()) -> None:
        self.target = target
        self.hall_id = hall_id
        self._client: redis.Redis | RedisCluster | None = client
        self._meta, self._events, self._snapshot = keys(hall_id)
        self._lease = lease_key(hall_id)
        self._save = client.register_script(SNAPSHOT_SCRIPT)
        self._acquire = client.register_script(ACQUIRE_SCRIPT)
        self._release = client.register_script(RELEASE_SCRIPT)
        self._fence = ("", "")  # (fencing token, owner id) once acquire() took the lease
        self.following = False  # a standby follows the stream: verify() expects it to move
        self._follower: redis.Redis | RedisCluster | None = None  # its own client for XREAD BLOCK
        self._limiter = trio.CapacityLimiter(1)
        self._writer = _Connection(self._locate, timeouts)
        self._writing = trio.Lock()  # one append at a time on the writer's connection
        self._last = last
        self._lost: LogError | None = None
        self._timeouts = timeouts
        # renewals and idle checks: a connection of their own on the loop, short timeouts, few retries
        self._probe = _Connection(self._locate, Timeouts(PROBE_TIMEOUT_S, PROBE_TIMEOUT_S), retries=PROBE_RETRIES)
        self._down: tuple[float, str] | None = None  # (since, why): Redis failed every call since
        self._calls: dict[object, float] = {}  # appends and probes in flight -> when they began

    @property
    def name(self) -> str:
        return self.target.redacted

    @classmethod
    async def open(cls, url: str, hall_id: str, *, timeouts: Timeouts = Timeouts()) -> "RedisLog":
        """Open hall *hall_id*'s store in the Redis at *url*, creating its keys if there are none.

        Args:
            timeouts: how long to wait for Redis to connect and to answer each call.

        Raises:
            StoreRefused: Redis does not fsync before it answers (see the module docstring),
                refused the credentials, or the hall's keys are not a callsys store this code reads.
            StoreDamaged: the stream does not end at the seq the marks say.
            LogError: the URL is bad, or Redis is unreachable or answered with an error.
        """
        target = parse_url(url)
        return await trio.to_thread.run_sync(cls._open_sync, target, hall_id, timeouts)

    @classmethod
    def _open_sync(cls, target: RedisURL, hall_id: str, timeouts: Timeouts) -> "RedisLog":
        name = target.redacted
        try:
            client = connect(target, timeouts)
        except rex.RedisError as exc:
            raise _error(name, exc) from None
        try:
            _check_durable(name, client)
            meta, events, _ = keys(hall_id)
            try:
                marks = client.register_script(OPEN_SCRIPT)(keys=[meta, events], args=[APP, SCHEMA_VERSION, hall_id])
            except rex.ResponseError as exc:
                if "WRONGTYPE" in str(exc) or "CALLSYS_REFUSED" in str(exc):
                    raise StoreRefused(f"store {name}: the keys of hall {hall_id!r} are not a callsys store "
                                       f"({_reason(exc)}); not touching them") from None
                raise
            last = _check_marks(name, hall_id, dict(zip(marks[::2], marks[1::2])))
            newest = client.xrevrange(events, count=1)
            stream_last = int(newest[0][0].split(b"-")[0]) if newest else 0
            if stream_last != last:
                raise StoreDamaged(f"store {name} is damaged at seq {min(last, stream_last) + 1}: hall {hall_id!r} "
                                   f"says its log ends at seq {last}, its stream at {stream_last}",
                                   min(last, stream_last) + 1)
            return cls(target, hall_id, client, last, timeouts)
        except BaseException as exc:
            client.close()
            if isinstance(exc, rex.RedisError):
                raise _error(name, exc) from None
            raise

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._client is None:
            raise LogError(f"store {self.name} is closed")
        if self._lost is not None:
            raise self._lost
        try:
            return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)
        except rex.RedisError as exc:
            raise _error(self.name, exc) from None

    async def _probing(self, fn: Callable[[_Connection], Awaitable[Any]]) -> Any:
        """``await fn(probe)`` on the renewals' and idle checks' own connection, watched (:meth:`_watch`)."""
        if self._client is None:
            raise LogError(f"store {self.name} is closed")
        if self._lost is not None:
            raise self._lost
        with self._watch():
            try:
                return await fn(self._probe)
            except rex.ResponseError as exc:
                if str(exc).startswith("MOVED"):  # the hall's slot is on another Cluster node now
                    self._lost = LogError(f"store {self.name}: Redis answered {_reason(exc)}: hall "
                                          f"{self.hall_id!r} moved to another Cluster node; stopping (a restart "
                                          "finds it)")
                    raise self._lost from None
                raise _error(self.name, exc) from None
            except rex.RedisError as exc:
                raise _error(self.name, exc) from None

    @contextmanager
    def _watch(self) -> Iterator[None]:
        """Count a call in flight (for :meth:`unavailable`); note whether Redis answered it."""
        call = object()
        self._calls[call] = trio.current_time()
        try:
            yield
        except RedisUnreachable as exc:
            if self._down is None:
                self._down = (self._calls[call], exc.reason or str(exc))
            raise
        else:
            self._down = None
        finally:
            del self._calls[call]

    def unavailable(self) -> str | None:
        """Why Redis cannot take a write now: the last call found it unreachable, or a call
        has waited for its answer longer than :data:`PROBE_TIMEOUT_S`; else None."""
        now = trio.current_time()
        if self._down is not None:
            return f"store {self.name}: Redis has been unreachable for {now - self._down[0]:.1f} s"
        waiting = min(self._calls.values(), default=now)
        if now - waiting > PROBE_TIMEOUT_S:
            return f"store {self.name}: Redis has not answered for {now - waiting:.1f} s"
        return None

    async def _locate(self) -> _Address:
        """Where the store's own connections go (:class:`_Connection`): the URL's node, or the
        Cluster node of the hall's slot (both known without a round trip, on the loop), or the
        master a Sentinel names now (asked in a worker thread, not behind the store's limiter:
        a stalled recovery read must not hold up a renewal's reconnection)."""
        if self._client is None:
            raise LogError(f"store {self.name} is closed")
        if self.target.scheme != "redis+sentinel":
            return _address(self._client, self.target, self._meta)
        return await trio.to_thread.run_sync(_address, self._client, self.target, self._meta, abandon_on_cancel=True)

    async def append(self, records: Sequence[bytes]) -> int:
        async with self._writing:
            if self._client is None:
                raise LogError(f"store {self.name} is closed")
            if self._lost is not None:
                raise self._lost
            if not records:
                return self._last
            try:
                with self._watch():
                    try:
                        last = await self._writer.script(APPEND_SCRIPT, (self._meta, self._events, self._lease),
                                                         self._last, *self._fence, *records)
                    except rex.ResponseError as exc:
                        self._lost = self._refusal(exc)
                        raise self._lost from None
                    except rex.RedisError as exc:
                        raise _error(self.name, exc) from None
            except RedisUnreachable as exc:
                self._lost = self._gone(exc.reason, self._timeouts.outage_s)
                raise self._lost from None
            self._last = last
            return last

    def _refusal(self, exc: rex.ResponseError) -> LogError:
        """The error to stop with when Redis refused an append or a check."""
        reason = str(exc)
        if reason.startswith("CALLSYS_LOST"):
            return self._vanished()
        if reason.startswith("CALLSYS_CONFLICT"):
            return self._conflict(int(reason.split()[1]))
        if reason.startswith("CALLSYS_FENCED"):
            return self._fenced(reason.split()[1] if len(reason.split()) > 1 else "?")
        return LogError(f"store {self.name}: Redis refused the append: {reason}")

    def _gone(self, why: str, waited: float) -> RedisUnreachable:
        return RedisUnreachable(f"store {self.name}: Redis is unreachable ({why}) for {waited:.1f} s, longer than "
                                f"the {self._timeouts.outage_s:g} s a command waits for it; stopping", why)

    def _vanished(self) -> StoreLost:
        return StoreLost(f"store {self.name}: the keys of hall {self.hall_id!r} vanished from Redis while the "
                         "store was open (FLUSHALL/FLUSHDB, DEL, or Redis restarted without its append-only "
                         "file), so what is committed now would not survive; stopping")

    def _conflict(self, last: int) -> StoreInUse:
        return StoreInUse(f"store {self.name}: another process appended to hall {self.hall_id!r} (its log is at "
                          f"seq {last}, this process wrote up to {self._last}): two servers run on one hall; "
                          "stopping without writing")

    def _fenced(self, token: str) -> StoreFenced:
        held = f"its token {self._fence[0]}" if self._fence[0] else "no lease"
        return StoreFenced(f"store {self.name}: this process no longer owns hall {self.hall_id!r} (it holds {held}, "
                           f"the hall's fencing token is {token}): its lease expired or another process took it; "
                           "stopping without writing")

    # ------------------------------------------------------------------ ownership

    @property
    def token(self) -> int | None:
        """The fencing token this process holds, or None without the lease."""
        return int(self._fence[0]) if self._fence[0] else None

    async def acquire(self, owner: str, ttl_s: float = LEASE_TTL_S, url: str = "") -> int | None:
        """Take the hall's lease as *owner* if nobody holds it; the new fencing token, or None.

        On success the store appends fenced with the token from here on, after the log's
        current end (a standby's catch-up reads up to :meth:`last_seq`), and *url* is where
        the hall's owner is reached (:meth:`owner`). Held by another process, the store
        follows it from here on (:attr:`following`): the owner's appends move the log, and
        :meth:`verify` must not take them for another writer's.
        """
        token = await self._run(lambda: self._acquire(keys=[self._meta, self._lease],
                                                      args=[owner, _ms(ttl_s), url]))
        if not token:
            self.following = True
            return None
        last = await self._run(self._client.hget, self._meta, "last")
        self._fence = (str(int(token)), owner)
        self._last = int(last or 0)
        self.following = False
        return int(token)

    async def renew(self, ttl_s: float = LEASE_TTL_S) -> None:
        """Extend the lease by *ttl_s*.

        Raises:
            StoreFenced: the lease expired or another process holds it now (the store stops).
            LogError: Redis is unreachable (the lease still runs until its TTL).
        """
        token, owner = self._fence
        renewed = await self._probing(lambda probe: probe.script(RENEW_SCRIPT, (self._meta, self._lease),
                                                                 owner, _ms(ttl_s), token))
        if not renewed:
            current = await self._probing(lambda probe: probe.command("HGET", self._meta, "token"))
            self._lost = self._fenced(_text(current) if current is not None else "?")
            raise self._lost

    async def holder(self) -> str | None:
        """The id of the process holding the hall's lease now, or None."""
        return (await self.owner())[0]

    async def owner(self) -> tuple[str | None, str | None]:
        """``(id, url)`` of the process holding the hall's lease now: its owner id and the URL it
        advertised when it took the lease (None when it advertised none); ``(None, None)`` when
        nobody holds it."""
        def both() -> tuple[Any, Any]:
            return self._client.get(self._lease), self._client.hget(self._meta, "url")

        holder, url = await self._run(both)
        if holder is None:
            return None, None
        return _text(holder), (_text(url) or None) if url is not None else None

    async def wait_appended(self, after: int, timeout_s: float) -> None:
        """Return when the stream has a record after *after*, or after *timeout_s*.

        ``XREAD BLOCK`` on a client of its own in a worker thread, so the loop never waits
        on it; a cancelled wait abandons the thread (it ends within *timeout_s*).
        """
        if self._client is None:
            raise LogError(f"store {self.name} is closed")
        if self._follower is None:
            self._follower = connect(self.target, Timeouts(reply_s=SOCKET_TIMEOUT_S + timeout_s))
        follower, stream, block = self._follower, self._events, _ms(timeout_s)
        try:
            await trio.to_thread.run_sync(lambda: follower.xread({stream: f"{after}-0"}, count=1, block=block),
                                          abandon_on_cancel=True)
        except rex.RedisError as exc:
            raise _error(self.name, exc) from None

    async def verify(self) -> None:
        if self._client is None or self.following:
            return
        async with self._writing:  # an append in flight would look like another writer's
            try:
                await self._probing(self._verify)
            except RedisUnreachable as exc:
                waited = trio.current_time() - self._down[0]
                if waited < self._timeouts.outage_s:
                    return  # the next check or append tries again
                self._lost = self._gone(exc.reason, waited)
                raise self._lost from None

    async def _verify(self, probe: _Connection) -> None:
        last = await probe.command("HGET", self._meta, "last")
        if last is None:
            self._lost = self._vanished()
        elif int(last) != self._last:
            self._lost = self._conflict(int(last))
        else:
            config: dict[Any, Any] | rex.ResponseError
            try:
                reply = await probe.command("CONFIG", "GET", "append*")  # the hall's node (a Cluster's: its slot's)
                config = dict(zip(reply[::2], reply[1::2]))
            except rex.ResponseError as exc:
                config = exc
            try:
                _judge_durable(self.name, config)
            except StoreRefused as exc:
                self._lost = StoreLost(f"{exc}; it was changed while the store was open: stopping")
        if self._lost is not None:
            raise self._lost

    async def read(self, after: int, *, limit: int) -> list[tuple[int, bytes]]:
        return await self._run(self._read_sync, after, limit)

    def _read_sync(self, after: int, limit: int) -> list[tuple[int, bytes]]:
        rows = []
        for entry_id, fields in self._client.xrange(self._events, min=f"{after + 1}-0", count=limit):
            seq = int(entry_id.split(b"-")[0])
            data = fields.get(b"d")
            if data is None:
                raise StoreDamaged(f"store {self.name} is damaged at seq {seq}: stream entry "
                                   f"{_text(entry_id)} has no 'd' field", seq)
            rows.append((seq, data))
        return rows

    async def last_seq(self) -> int:
        return self._last

    async def save_snapshot(self, seq: int, data: bytes) -> None:
        await self._run(lambda: self._save(keys=[self._snapshot], args=[seq, data]))

    async def load_snapshot(self) -> tuple[int, bytes] | None:
        return await self._run(self._load_snapshot_sync)

    def _load_snapshot_sync(self) -> tuple[int, bytes] | None:
        seq, data = self._client.hmget(self._snapshot, ["seq", "data"])
        if seq is None:
            return None
        if data is None or not seq.isdigit():
            raise StoreDamaged(f"store {self.name} is damaged: the snapshot of hall {self.hall_id!r} is "
                               "incomplete", int(seq) if seq.isdigit() else 0)
        return int(seq), data

    async def aclose(self) -> None:
        if self._client is None:
            return
        if self._fence[0] and self._lost is None:  # a clean stop: a standby need not wait for the TTL
            token, owner = self._fence
            try:
                await self._run(lambda: self._release(keys=[self._meta, self._lease], args=[owner, token]))
            except LogError:
                pass  # unreachable: the lease expires by itself
        client, self._client = self._client, None
        try:
            await self._writer.aclose()
        finally:
            if self._follower is not None:
                await trio.to_thread.run_sync(self._follower.close)
            await self._probe.aclose()
            await trio.to_thread.run_sync(client.close, limiter=self._limiter)


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _check_marks(name: str, hall_id: str, marks: dict[bytes, bytes]) -> int:
    """The ``last`` seq of a hall's meta hash, after judging it is a callsys store of *hall_id*."""
    app, schema = _text(marks.get(b"app", b"")), _text(marks.get(b"schema", b""))
    hall, last = _text(marks.get(b"hall", b"")), _text(marks.get(b"last", b""))
    if app != APP:
        raise StoreRefused(f"store {name}: the keys of hall {hall_id!r} belong to another application "
                           f"(app {app!r}); not touching them")
    if not schema.isdigit() or int(schema) > SCHEMA_VERSION:
        raise StoreRefused(f"store {name}: hall {hall_id!r} was written by a newer callsys (key schema "
                           f"{schema!r}; this one reads up to {SCHEMA_VERSION}): upgrade callsys")
    if hall != hall_id:
        raise StoreRefused(f"store {name}: its keys of hall {hall_id!r} say they belong to hall {hall!r}")
    if not last.isdigit():
        raise StoreDamaged(f"store {name} is damaged: hall {hall_id!r} has no valid last seq ({last!r})", 0)
    return int(last)


def _check_durable(name: str, client: redis.Redis | RedisCluster) -> None:
    """Refuse a Redis (every primary of a Cluster) that answers before its write is fsync'd."""
    if isinstance(client, RedisCluster):
        nodes = [(node.name, client.get_redis_connection(node)) for node in client.get_primaries()]
    else:
        nodes = [(None, client)]
    for node, conn in nodes:
        where = f"{name} (node {node})" if node else name
        try:
            config = conn.config_get("append*")
        except rex.ResponseError as exc:
            _judge_durable(where, exc)
        _judge_durable(where, config)


def _judge_durable(where: str, config: dict[Any, Any] | rex.ResponseError) -> None:
    """Refuse a node whose ``CONFIG GET append*`` answer (*config*: its settings, or the error
    it answered) does not show that it fsyncs every write before it answers."""
    if isinstance(config, rex.ResponseError):
        raise StoreRefused(f"store {where}: cannot check that Redis fsyncs every write before it answers "
                           f"(CONFIG GET failed: {config}); callsys needs appendonly yes, "
                           "appendfsync always") from None
    settings = {_text(k): _text(v) for k, v in config.items()}
    on, fsync = settings.get("appendonly"), settings.get("appendfsync")
    if on != "yes" or fsync != "always":
        raise StoreRefused(f"store {where}: Redis would acknowledge writes it has not fsync'd (appendonly "
                           f"{on}, appendfsync {fsync}); callsys needs appendonly yes and appendfsync always "
                           "(redis-server --appendonly yes --appendfsync always, or CONFIG SET)")


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _error(name: str, exc: rex.RedisError) -> LogError:
    """The :class:`LogError` for a redis-py error."""
    if isinstance(exc, (rex.AuthenticationError, rex.AuthorizationError, rex.NoPermissionError)):
        return StoreRefused(f"store {name}: Redis refused the credentials ({_reason(exc)})")
    if isinstance(exc, (rex.ConnectionError, rex.TimeoutError)):
        return RedisUnreachable(f"store {name}: Redis is unreachable ({_reason(exc)})", _reason(exc))
    return LogError(f"store {name}: Redis answered with an error: {_reason(exc)}")
