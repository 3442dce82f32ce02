"""The Redis store beyond the conformance suite: URLs, the durability check, refusing keys
that are not ours, two writers on one hall, retried appends, lost keys, and Redis itself
killed and restarted (the AOF keeps every acknowledged record). Real redis-server
processes throughout (``redis_support``)."""

from __future__ import annotations

import signal

import pytest
import redis
import trio
import trio.testing
from redis.exceptions import MovedError

from benchmarks._redis import Certificates, RedisCluster, RedisServer, free_port
from callsys import TakeNumber
from callsys.log import (LogError, StoreDamaged, StoreFenced, StoreInUse, StoreLost, StoreRefused, open_journal,
                         open_store)
from callsys.log.redis import RedisLog, Timeouts, keys, lease_key, parse_url
from conftest import hall_time
from redis_support import raw, redis_server, redis_url  # noqa: F401  (fixtures)
from store_support import SERVE


def test_url_forms():
    plain = parse_url("redis://10.0.0.5:6380/3")
    assert (plain.scheme, plain.hosts, plain.db) == ("redis", (("10.0.0.5", 6380),), 3)
    assert parse_url("rediss://cache.example").hosts == (("cache.example", 6379),)
    sentinel = parse_url("redis+sentinel://:pw@s1:26379,s2,[::1]:26380/mymaster/2")
    assert sentinel.hosts == (("s1", 26379), ("s2", 26379), ("::1", 26380))
    assert (sentinel.service, sentinel.db, sentinel.password) == ("mymaster", 2, "pw")
    cluster = parse_url("redis+cluster://alice:s%40cret@n1:7000,n2:7001")
    assert cluster.hosts == (("n1", 7000), ("n2", 7001))
    assert (cluster.username, cluster.password, cluster.db) == ("alice", "s@cret", 0)
    assert cluster.redacted == "redis+cluster://alice:***@n1:7000,n2:7001"
    assert parse_url("unix:///run/redis.sock?db=1").scheme == "unix"


@pytest.mark.parametrize(("url", "problem"), [
    ("redis://h:port/0", "port 'port' is not a number"),
    ("redis://h:70000/0", "port 70000 is out of range"),
    ("redis://h/zero", "database 'zero' is not a number"),
    ("redis://h/0/1", "at most a database number"),
    ("redis://a,b/0", "one host only"),
    ("redis+sentinel://s1:26379", "name the Sentinel service"),
    ("redis+cluster://n1:7000/1", "only database 0"),
    ("redis://:pw@/0", "no host"),
])
async def test_bad_url_is_a_clear_error(url, problem):
    with pytest.raises(LogError, match=problem):
        await open_store(url, "demo")


async def test_unreachable_redis_is_a_clear_error():
    with pytest.raises(LogError, match=r"redis://127\.0\.0\.1:\d+/0: Redis is unreachable"):
        await open_store(f"redis://127.0.0.1:{free_port()}/0", "demo")


async def test_redis_without_fsync_on_every_write_is_refused(tmp_path):
    with RedisServer.start(tmp_path, "--appendfsync", "everysec") as server:
        with pytest.raises(StoreRefused, match="appendonly yes, appendfsync everysec.*needs appendonly yes "
                                               "and appendfsync always"):
            await open_store(server.url, "demo")
        client = raw(server)
        try:
            assert client.dbsize() == 0  # refused before writing anything
        finally:
            client.close()


async def test_password_never_appears_in_messages(redis_server):
    client = raw(redis_server)
    client.config_set("requirepass", "hunter2")
    try:
        with pytest.raises(StoreRefused, match=r"redis://:\*\*\*@127\.0\.0\.1:\d+/0: Redis refused the "
                                               "credentials") as refused:
            await open_store(f"redis://:wrong@127.0.0.1:{redis_server.port}/0", "demo")
        assert "wrong" not in str(refused.value)
        store = await open_store(f"redis://:hunter2@127.0.0.1:{redis_server.port}/0", "demo")
        assert store.name == f"redis://:***@127.0.0.1:{redis_server.port}/0"
        assert await store.append([b"a"]) == 1  # the commit connection authenticates too
        await store.aclose()
    finally:
        client.execute_command("AUTH", "hunter2")
        client.config_set("requirepass", "")
        client.close()


@pytest.mark.parametrize(("plant", "problem"), [
    (lambda c, meta, events: c.set(meta, "x"), "are not a callsys store .*WRONGTYPE"),
    (lambda c, meta, events: c.xadd(events, {"d": "x"}, id="1-0"), "exists without"),
    (lambda c, meta, events: c.hset(meta, mapping={"app": "other"}), "belong to another application"),
    (lambda c, meta, events: c.hset(meta, mapping={"app": "callsys", "schema": 9, "hall": "demo", "last": 0}),
     "newer callsys .*schema '9'"),
    (lambda c, meta, events: c.hset(meta, mapping={"app": "callsys", "schema": 1, "hall": "x", "last": 0}),
     "belong to hall 'x'"),
])
async def test_keys_that_are_not_this_halls_store_are_refused_untouched(redis_server, redis_url, plant, problem):
    meta, events, _ = keys("demo")
    client = raw(redis_server)
    try:
        plant(client, meta, events)
        before = {k: client.dump(k) for k in client.keys()}
        with pytest.raises(StoreRefused, match=problem):
            await open_store(redis_url, "demo")
        assert {k: client.dump(k) for k in client.keys()} == before
    finally:
        client.close()


async def test_stream_that_disagrees_with_the_marks_is_damaged(redis_server, redis_url):
    store = await open_store(redis_url, "demo")
    await store.append([b"a", b"b"])
    await store.aclose()
    client = raw(redis_server)
    try:
        client.hset(keys("demo")[0], "last", 1)
    finally:
        client.close()
    with pytest.raises(StoreDamaged, match="damaged at seq 2: hall 'demo' says its log ends at seq 1, its stream at 2"):
        await open_store(redis_url, "demo")


async def test_a_second_writer_on_one_hall_is_stopped_without_writing(redis_url):
    first = await open_store(redis_url, "demo")
    second = await open_store(redis_url, "demo")
    try:
        assert await first.append([b"first"]) == 1
        with pytest.raises(StoreInUse, match="another process appended to hall 'demo' \\(its log is at seq 1, "
                                             "this process wrote up to 0\\)"):
            await second.append([b"second"])
        with pytest.raises(StoreInUse):  # and it stays stopped
            await second.append([b"again"])
        with pytest.raises(StoreInUse):
            await second.verify()
        assert await first.read(0, limit=10) == [(1, b"first")]
        assert await first.append([b"more"]) == 2
    finally:
        await first.aclose()
        await second.aclose()


async def test_a_retried_append_is_written_once(redis_url):
    """A reply lost after Redis executed the script: the retry (same expected seq, same
    records) finds its own records and succeeds without writing them again."""
    store = await open_store(redis_url, "demo")
    try:
        assert isinstance(store, RedisLog)
        assert await store.append([b"a", b"b"]) == 2
        store._last = 0  # as if the first reply had never arrived
        assert await store.append([b"a", b"b"]) == 2
        assert await store.read(0, limit=10) == [(1, b"a"), (2, b"b")]
        store._last = 0  # a different batch at the same seqs is another writer's
        with pytest.raises(StoreInUse):
            await store.append([b"a", b"c"])
    finally:
        await store.aclose()


async def test_keys_flushed_while_open_stop_the_store(redis_server, redis_url):
    store = await open_store(redis_url, "demo")
    await store.append([b"a"])
    client = raw(redis_server)
    try:
        client.flushall()
    finally:
        client.close()
    with pytest.raises(StoreLost, match="keys of hall 'demo' vanished from Redis"):
        await store.verify()
    with pytest.raises(StoreLost):
        await store.append([b"b"])
    await store.aclose()


async def test_fsync_turned_down_while_open_stops_the_store(tmp_path):
    with RedisServer.start(tmp_path) as server:
        store = await open_store(server.url, "demo")
        await store.append([b"a"])
        await store.verify()  # all is well
        client = raw(server)
        try:
            client.config_set("appendfsync", "everysec")
        finally:
            client.close()
        with pytest.raises(StoreLost, match="appendfsync everysec.*changed while the store was open"):
            await store.verify()
        with pytest.raises(StoreLost):
            await store.append([b"b"])
        await store.aclose()


async def test_redis_killed_and_restarted_keeps_every_acknowledged_record(tmp_path, demo_hall):
    """kill -9 of Redis itself between two opens: the AOF (fsync'd before each answer) has it all."""
    with RedisServer.start(tmp_path / "redis") as server:
        numbers = []
        async with open_journal(server.url, demo_hall, snapshot_every=40) as journal:
            engine, seq = await journal.recover()
            for i in range(100):
                events = engine.execute(TakeNumber(hall_time(9, 30) + i, "SOC"))
                await journal.commit(events)
                numbers.append(events[0].number)
        server.kill()
        server.restart()
        async with open_journal(server.url, demo_hall) as journal:
            engine, seq = await journal.recover()
            assert seq == 100
            assert journal.snapshot_seq == 100  # the clean close's snapshot came back too
            assert sorted(t.number for t in engine.state.tickets.values()) == sorted(numbers)
            events = engine.execute(TakeNumber(hall_time(9, 45), "SOC"))
            assert events[0].number not in numbers
            assert await journal.commit(events) == 101
        server.restart()
        store = await open_store(server.url, demo_hall.id)
        assert await store.last_seq() == 101
        assert len(await store.read(0, limit=1000)) == 101
        await store.aclose()


async def test_redis_restarted_under_an_open_store_is_reconnected(tmp_path):
    """The writer's connection breaks when Redis restarts: the append reconnects, finds the
    script gone (NOSCRIPT) and sends it again; nothing acknowledged before is lost."""
    with RedisServer.start(tmp_path) as server:
        store = await open_store(server.url, "demo")
        try:
            assert await store.append([b"a", b"b"]) == 2
            server.restart()
            assert await store.append([b"c"]) == 3
            await store.verify()
            assert await store.read(0, limit=10) == [(1, b"a"), (2, b"b"), (3, b"c")]
        finally:
            await store.aclose()


async def test_redis_gone_while_open_is_a_clear_error(tmp_path):
    with RedisServer.start(tmp_path) as server:
        store = await open_store(server.url, "demo")
        try:
            await store.append([b"a"])
            server.kill()
            with pytest.raises(LogError, match=r"redis://127\.0\.0\.1:\d+/0: Redis is unreachable"):
                await store.append([b"b"])
        finally:
            await store.aclose()


def test_phone_secret_key_of_a_redis_store_survives_a_restart(tmp_path, monkeypatch):
    """A Redis store has no path to keep the key beside: it was a new random key at every
    start (every phone link and signed code broke on restart); now var/callsys.secret."""
    from callsys.server.cli import REDIS_SECRET_FILE, SECRET_ENV, load_secret

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(SECRET_ENV, raising=False)
    first = load_secret("redis://127.0.0.1:6379/0", None)
    assert load_secret("redis://127.0.0.1:6379/0", None) == first
    assert (tmp_path / REDIS_SECRET_FILE).read_text().strip().encode() == first


async def test_sentinel_url_finds_the_master(tmp_path):
    with RedisServer.start(tmp_path / "master") as master, \
            RedisServer.sentinel(tmp_path / "sentinel", master) as sentinel:
        url = f"redis+sentinel://127.0.0.1:{sentinel.port}/mymaster/0"
        store = await open_store(url, "demo")
        try:
            assert await store.append([b"a", b"b"]) == 2
            await store.verify()
        finally:
            await store.aclose()
        client = raw(master)
        try:
            assert client.xlen(keys("demo")[1]) == 2  # written to the master the Sentinel named
        finally:
            client.close()
        again = await open_store(url, "demo")
        assert await again.read(0, limit=10) == [(1, b"a"), (2, b"b")]
        await again.aclose()


async def test_cluster_keeps_each_hall_on_one_shard(tmp_path):
    """Three primaries; several halls; each hall's keys share one slot (its hash tag), and
    the halls spread over the shards."""
    with RedisCluster.start(tmp_path) as cluster:
        halls = ["demo", "qingdao", "baoan-district", "xixiang", "shajing", "fuyong"]
        for i, hall in enumerate(halls):
            store = await open_store(cluster.url, hall)
            try:
                assert await store.append([hall.encode()] * (i + 1)) == i + 1
                await store.save_snapshot(i + 1, b"state")
                await store.verify()
            finally:
                await store.aclose()
        holders = {}
        for hall in halls:
            homes = set()
            for node in cluster.nodes:
                client = raw(node)
                try:
                    homes.update(node.port for key in keys(hall) if node_holds(client, key))
                finally:
                    client.close()
            assert len(homes) == 1, f"{hall}'s keys are spread over {homes}"
            holders[hall] = homes.pop()
        assert len(set(holders.values())) >= 2  # the halls are spread over the shards
        for i, hall in enumerate(halls):
            store = await open_store(cluster.url, hall)
            try:
                assert await store.read(0, limit=10) == [(n + 1, hall.encode()) for n in range(i + 1)]
                assert await store.load_snapshot() == (i + 1, b"state")
            finally:
                await store.aclose()


def node_holds(client, key: str) -> bool:
    """True if the cluster node behind *client* (a plain client) has *key* itself."""
    try:
        return client.exists(key) == 1
    except MovedError:  # the key's slot is another node's
        return False


async def test_webhook_cursors_of_a_redis_store_survive_a_restart(tmp_path, monkeypatch):
    """A Redis store has no path to keep the cursors beside: they were kept in memory only,
    so after a restart every client started at the log's end and missed what came between."""
    from callsys.server.webhooks import Cursors

    monkeypatch.chdir(tmp_path)
    cursors = Cursors.for_store("redis://127.0.0.1:6379/0")
    await cursors.save("crm", 41)
    assert Cursors.for_store("redis://127.0.0.1:6379/0").seqs == {"crm": 41}


async def test_database_number_is_used_by_every_connection(redis_server, redis_url):
    store = await open_store(f"redis://127.0.0.1:{redis_server.port}/3", "demo")
    try:
        assert await store.append([b"a", b"b"]) == 2
    finally:
        await store.aclose()
    client = redis.Redis(port=redis_server.port, db=3)
    try:
        assert client.xlen(keys("demo")[1]) == 2 and client.hget(keys("demo")[0], "last") == b"2"
    finally:
        client.close()
    assert await (other := await open_store(redis_url, "demo")).last_seq() == 0  # db 0 has nothing
    await other.aclose()


async def test_a_stalled_redis_is_a_bounded_wait_then_a_clear_error(tmp_path):
    """Redis stopped (SIGSTOP: connections accepted by the kernel, never answered): the
    commit gives up after its outage bound instead of waiting for ever, and stays stopped."""
    with RedisServer.start(tmp_path) as server:
        store = await RedisLog.open(server.url, "demo",
                                    timeouts=Timeouts(connect_s=0.5, reply_s=0.5, outage_s=1.0))
        try:
            assert await store.append([b"a"]) == 1
            server.process.send_signal(signal.SIGSTOP)
            try:
                with pytest.raises(LogError, match=r"Redis is unreachable \(no answer within 1 s\) for 1\.\d s, "
                                                   r"longer than the 1 s a command waits for it; stopping"):
                    await store.append([b"b"])
            finally:
                server.process.send_signal(signal.SIGCONT)
            with pytest.raises(LogError, match="Redis is unreachable"):  # fail-stop: memory may be ahead
                await store.append([b"c"])
        finally:
            await store.aclose()


async def test_serve_refuses_a_redis_without_fsync_in_one_line(tmp_path):
    with RedisServer.start(tmp_path / "redis", "--appendfsync", "everysec") as server:
        done = await trio.run_process([*SERVE, "--store", server.url, "--secret-file", str(tmp_path / "secret")],
                                      capture_stderr=True, check=False)
    lines = [line for line in done.stderr.decode().splitlines() if not line.startswith("ts=")]
    assert done.returncode == 2
    assert lines == [f"callsys: store {server.url}: Redis would acknowledge writes it has not fsync'd (appendonly "
                     "yes, appendfsync everysec); callsys needs appendonly yes and appendfsync always "
                     "(redis-server --appendonly yes --appendfsync always, or CONFIG SET)"]


async def test_tls_url_reaches_redis_over_tls(tmp_path):
    """rediss:// with the URL's CA: redis-py's connections and the commit connection both
    verify the server's certificate."""
    with RedisServer.start(tmp_path / "redis", tls=Certificates.make(tmp_path / "tls")) as server:
        assert server.url.startswith("rediss://localhost:")
        store = await open_store(server.url, "demo")
        try:
            assert await store.append([b"a", b"b"]) == 2
            assert await store.read(0, limit=10) == [(1, b"a"), (2, b"b")]
            await store.verify()
        finally:
            await store.aclose()
        untrusted = server.url.split("?")[0]  # the system's CAs do not know the test CA
        with pytest.raises(LogError, match="certificate verify failed"):
            await open_store(untrusted, "demo")


async def test_renewals_and_idle_checks_need_no_worker_thread(redis_server, redis_url):
    """Issue 12, many halls: every owner's renewal and idle check ran in a trio worker thread,
    and under load they ran so late that leases expired. With every token of trio's default
    thread limiter held, a renewal (and its refused path) and an idle check still complete:
    they run on the loop. Before, each one queued for a thread (the watcher saw it waiting)."""
    store = await open_store(redis_url, "demo")
    client = raw(redis_server)
    limiter = trio.to_thread.current_default_thread_limiter()
    borrowers = [object() for _ in range(int(limiter.total_tokens))]
    done = trio.Event()

    async def never_waits_for_a_thread() -> None:
        while not done.is_set():  # woken whenever every task is blocked: on Redis, or on the limiter
            await trio.testing.wait_all_tasks_blocked()
            assert limiter.statistics().tasks_waiting == 0, "a renewal or check waited for a worker thread"

    try:
        assert isinstance(store, RedisLog) and await store.acquire("A", 60.0) == 1
        client.pexpire(lease_key("demo"), 5_000)
        for borrower in borrowers:  # every worker thread busy
            limiter.acquire_on_behalf_of_nowait(borrower)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(never_waits_for_a_thread)
            await store.renew(60.0)
            assert client.pttl(lease_key("demo")) > 5_000  # renewed for the 60 s asked
            await store.verify()
            client.set(lease_key("demo"), "B")  # another process holds it now
            with pytest.raises(StoreFenced, match=r"it holds its token 1, the hall's fencing token is 1\)"):
                await store.renew(60.0)
            done.set()
    finally:
        for borrower in borrowers:
            if borrower in limiter.statistics().borrowers:
                limiter.release_on_behalf_of(borrower)
        await store.aclose()
        client.close()


async def test_a_unix_socket_url_commits_renews_and_checks_over_the_socket(tmp_path):
    """``unix://``: the commit's connection and the renewals' and checks' connection open the
    socket too (and redis-py's client for the rest)."""
    socket = tmp_path / "redis.sock"
    with RedisServer.start(tmp_path / "redis", "--unixsocket", str(socket), "--unixsocketperm", "700") as server:
        store = await open_store(f"unix://{socket}?db=2", "demo")
        client = redis.Redis(port=server.port, db=2)
        try:
            assert isinstance(store, RedisLog) and await store.acquire("A", 60.0) == 1
            assert await store.append([b"a"]) == 1
            await store.renew(60.0)
            await store.verify()
            assert await store.read(0, limit=10) == [(1, b"a")]
            assert client.get(lease_key("demo")) == b"A" and client.pttl(lease_key("demo")) > 50_000
        finally:
            await store.aclose()
            client.close()


async def test_a_process_that_finds_the_lease_held_does_not_take_the_owners_appends_for_a_rival(redis_url):
    """A network process starting a hall whose lease another process still holds: ``serve``'s
    journal checks the store every second from the moment it opens, before the server starts
    following. The owner's appends in that window stopped the hall's server with StoreInUse
    ("another process appended ... two servers run on one hall"; seen in ``benchmarks.halls
    --processes 2`` when a hall moved under load)."""
    owner = await open_store(redis_url, "demo")
    late = await open_store(redis_url, "demo")
    try:
        assert await owner.acquire("A", 60.0) == 1
        assert await late.acquire("B", 60.0) is None  # held: this one stands by
        assert await owner.append([b"a"]) == 1
        await late.verify()  # the log moved: the owner's, expected
        assert await late.read(0, limit=10) == [(1, b"a")]
    finally:
        await owner.aclose()
        await late.aclose()
