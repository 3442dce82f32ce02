"""Redis operations (issue 12, items 4-5): a hall's server through a Redis restart and a Redis pause.

Real ``redis-server`` processes (``--appendonly yes --appendfsync always``) and real
``callsys serve`` processes, never a mock. What is checked is what README's "Operations:
the Redis store" promises: an outage shorter than :data:`~callsys.log.redis.OUTAGE_S`
(the 2 s lease TTL) delays commands, which then complete, on the same connections, with
nothing acknowledged lost; ``/readyz`` says 503 ``store_unreachable`` meanwhile; a longer
one stops the owner (fail-stop) and a restarted server has every acknowledged ticket.
"""

from __future__ import annotations

import json
import signal

import pytest
import trio
import trio.testing

from benchmarks._redis import RedisServer
from benchmarks.failover import SERVICES, check, serve_args, spawn
from callsys.client import ClientError, connect
from callsys.log.redis import RedisLog, RedisUnreachable, Timeouts
from server_support import TOKENS, guard, http_get, readyz_until

RESTART_AFTER = 60  # tickets acknowledged before Redis is restarted
THEN = 60  # tickets acknowledged after the restart: the server resumed by itself
READYZ_POLL_S = 0.05  # between /readyz requests while waiting for it to change (a poll, not a limit)


class Burst:
    """Kiosk connections taking numbers with idempotency keys until :attr:`stop` is set.

    Attributes:
        acked: key -> the answer, for every acknowledged command.
        failed: key -> the error, for every command that got no ticket.
    """

    def __init__(self) -> None:
        self.acked: dict[str, dict] = {}
        self.failed: dict[str, ClientError] = {}
        self.stop = trio.Event()
        self._changed = trio.Event()

    async def until(self, count: int) -> None:
        """Return once *count* commands are acknowledged."""
        while len(self.acked) < count:
            await self._changed.wait()

    async def run(self, url: str, *, clients: int = 4, pipeline: int = 8) -> None:
        async def worker(client, c: int, n: int) -> None:
            i = n
            while not self.stop.is_set():
                key = f"kiosk{c}-{i}"
                try:
                    self.acked[key] = await client.request("take_number", service=SERVICES[i % len(SERVICES)],
                                                           key=key)
                except ClientError as exc:
                    self.failed[key] = exc
                    return
                self._changed.set()
                self._changed = trio.Event()
                i += pipeline

        async def one_client(c: int) -> None:
            async with connect(url, role="kiosk", token=TOKENS["kiosk"]) as client:
                async with trio.open_nursery() as workers:
                    for n in range(pipeline):
                        workers.start_soon(worker, client, c, n)
                key = f"kiosk{c}-after"  # the same connection, after everything: still open
                self.acked[key] = await client.request("take_number", service="BIZ", key=key)

        async with trio.open_nursery() as group:
            for c in range(clients):
                group.start_soon(one_client, c)


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


async def test_an_append_started_while_redis_is_down_completes_once_it_is_back(tmp_path):
    """The append's connection is refused; it reconnects and resends until Redis is back
    (kept down until the store reports the wait, longer than a few quick retries)."""
    with RedisServer.start(tmp_path) as server:
        store = await RedisLog.open(server.url, "demo")
        try:
            assert await store.append([b"a"]) == 1
            server.kill()  # SIGKILL: only the AOF survives
            results = []

            async def append() -> None:
                results.append(await store.append([b"b"]))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(append)
                while (why := store.unavailable()) is None:  # down until the append has waited 0.5 s
                    await trio.sleep(READYZ_POLL_S)
                assert why.startswith(f"store {server.url}: Redis has not answered for 0.")
                assert results == []
                await trio.to_thread.run_sync(server.restart)  # the same port and AOF
            assert results == [2]
            assert await store.read(0, limit=10) == [(1, b"a"), (2, b"b")]
            assert store.unavailable() is None
        finally:
            await store.aclose()


async def test_an_idle_check_tolerates_redis_down_within_the_bound_and_stops_past_it(tmp_path):
    with RedisServer.start(tmp_path) as server:
        store = await RedisLog.open(server.url, "demo")
        strict = await RedisLog.open(server.url, "other", timeouts=Timeouts(outage_s=0))
        try:
            await store.verify()
            assert store.unavailable() is None
            server.kill()
            await store.verify()  # refused, within the 2 s: not a failure yet
            assert store.unavailable().startswith(f"store {server.url}: Redis has been unreachable for ")
            with pytest.raises(RedisUnreachable, match=r"Redis is unreachable \(.*\) for \d\.\d s, longer than "
                                                       r"the 0 s a command waits for it; stopping"):
                await strict.verify()
            await trio.to_thread.run_sync(server.restart)
            await store.verify()
            assert store.unavailable() is None
            assert await store.append([b"a"]) == 1
        finally:
            await store.aclose()
            await strict.aclose()


@guard(120)
async def test_redis_restarted_mid_burst_loses_nothing_and_keeps_connections(tmp_path):
    """Redis SIGKILL'd while kiosks send keyed commands and a display and a clerk are
    connected, kept down until /readyz says so (commands have waited 0.5 s), then started
    again on its AOF: the commands in flight complete, no connection drops, every
    acknowledged ticket is there, every key gives one ticket."""
    secret = tmp_path / "phones.secret"
    with RedisServer.start(tmp_path / "redis") as redis_server:
        async with trio.open_nursery() as nursery:
            owner = await spawn(nursery, serve_args(redis_server.url, secret))
            url = await owner.url()
            async with connect(url, role="display", token=TOKENS["display"], subscribe={"windows": [1]}) as display, \
                    connect(url, role="clerk", token=TOKENS["clerk"], window=1) as clerk:
                burst = Burst()
                async with trio.open_nursery() as kiosks:
                    kiosks.start_soon(burst.run, url)
                    await burst.until(RESTART_AFTER)
                    redis_server.kill()  # SIGKILL, mid-burst
                    assert (await readyz_until(port_of(url), False))["reason"] == "store_unreachable"
                    await owner.wait_for("event=store_unreachable")  # a renewal was refused
                    await trio.to_thread.run_sync(redis_server.restart)  # the same port, directory and AOF
                    _, line = await owner.wait_for("event=store_reachable")
                    assert float(line.split("outage_s=", 1)[1].split()[0]) > 0
                    restarted = len(burst.acked)
                    await burst.until(restarted + THEN)  # resumed by itself
                    burst.stop.set()
                assert burst.failed == {}  # no command failed, no connection dropped
                await clerk.request("open_window")
                called = await clerk.request("call_next")  # on the clerk's old connection
                while (update := await display.next_push())["type"] != "window_update" or \
                        update["event"] != "called":
                    pass
                assert update["seq"] == called["seq"]  # the display's old connection gets the push
            lost, duplicates, issued = await check(url, burst.acked, {})
            assert (lost, duplicates) == (0, 0)
            assert issued == len(burst.acked)  # every key exactly once
            assert owner.process.returncode is None  # the same process, still the owner
            assert (await readyz_until(port_of(url), True))["ready"] is True
            owner.process.send_signal(signal.SIGTERM)
            assert await owner.process.wait() == 0


@guard(120)
async def test_a_short_redis_pause_delays_a_command_and_readyz_says_why(tmp_path):
    """Redis SIGSTOP'd for less than the bound: /readyz turns 503 store_unreachable (/healthz
    stays 200), the command sent meanwhile is answered after SIGCONT, nothing is lost."""
    secret = tmp_path / "phones.secret"
    with RedisServer.start(tmp_path / "redis") as redis_server:
        async with trio.open_nursery() as nursery:
            owner = await spawn(nursery, serve_args(redis_server.url, secret))
            url = await owner.url()
            port = port_of(url)
            assert (await readyz_until(port, True))["ready"] is True
            async with connect(url, role="kiosk", token=TOKENS["kiosk"]) as kiosk:
                before = await kiosk.request("take_number", service="BIZ", key="before")
                answers = []

                async def during() -> None:
                    answers.append(await kiosk.request("take_number", service="BIZ", key="during"))

                redis_server.process.send_signal(signal.SIGSTOP)
                try:
                    async with trio.open_nursery() as waiting:
                        waiting.start_soon(during)
                        answer = await readyz_until(port, False)
                        assert answer["reason"] == "store_unreachable"
                        assert f"store {redis_server.url}: Redis has" in answer["detail"]
                        status, _, body = await http_get(port, "/healthz")
                        assert status == 200 and json.loads(body)["status"] == "ok"
                        assert answers == []  # waiting for Redis
                        redis_server.process.send_signal(signal.SIGCONT)
                finally:
                    redis_server.process.send_signal(signal.SIGCONT)
                assert answers[0]["number"] == "A002" and not answers[0].get("repeat")
                await readyz_until(port, True)
                again = await kiosk.request("take_number", service="BIZ", key="during")  # the same connection
                assert again["repeat"] is True and again["number"] == "A002"
                assert (await kiosk.request("take_number", service="BIZ", key="before"))["number"] == before["number"]
            assert owner.process.returncode is None
            owner.process.send_signal(signal.SIGTERM)
            assert await owner.process.wait() == 0


@pytest.mark.parametrize("outage", ["kill", "sigstop"])
@guard(120)
async def test_redis_gone_longer_than_the_bound_stops_the_owner_and_a_restart_recovers(tmp_path, outage):
    """Redis killed (or SIGSTOP'd) until the owner gives up: the command waiting fails with a
    clear error, the owner stops (fail-stop), and a server started once Redis is back has
    the acknowledged ticket; the failed command's key, retried, gives exactly one ticket."""
    secret = tmp_path / "phones.secret"
    with RedisServer.start(tmp_path / "redis") as redis_server:
        async with trio.open_nursery() as nursery:
            owner = await spawn(nursery, serve_args(redis_server.url, secret))
            url = await owner.url()
            async with connect(url, role="kiosk", token=TOKENS["kiosk"]) as kiosk:
                before = await kiosk.request("take_number", service="BIZ", key="before")
                if outage == "kill":
                    redis_server.kill()
                else:
                    redis_server.process.send_signal(signal.SIGSTOP)
                try:
                    with pytest.raises(ClientError):
                        await kiosk.request("take_number", service="BIZ", key="during")
                    assert await owner.process.wait() != 0
                finally:
                    if outage == "sigstop":
                        redis_server.process.send_signal(signal.SIGCONT)
            await owner.wait_for("Redis is unreachable")
            if outage == "kill":  # refused at once: a renewal failed before the 2 s were up
                await owner.wait_for("event=store_unreachable")
            if outage == "kill":
                await trio.to_thread.run_sync(redis_server.restart)
            second = await spawn(nursery, serve_args(redis_server.url, secret))
            url = await second.url()
            async with connect(url, role="kiosk", token=TOKENS["kiosk"]) as kiosk, \
                    connect(url, role="manager", token=TOKENS["manager"]) as manager:
                again = await kiosk.request("take_number", service="BIZ", key="before")
                assert again["repeat"] is True and again["number"] == before["number"]
                retried = await kiosk.request("take_number", service="BIZ", key="during")
                assert retried["number"] == "A002"  # written before the stop or now: once either way
                assert (await manager.request("stats"))["totals"]["issued"] == 2
            second.process.send_signal(signal.SIGTERM)
            assert await second.process.wait() == 0


@guard(120)
async def test_a_standby_rides_out_a_redis_restart_and_takes_over_from_the_stopped_owner(tmp_path):
    """Redis killed longer than the bound with an owner and a standby: the owner stops
    (fail-stop), the standby keeps following (retrying Redis) with its clients connected, and
    takes the hall once Redis is back on its AOF; the acknowledged ticket is there, and the
    command that failed, retried with its key through the standby, gives exactly one ticket.
    (Before standbys retried Redis, the standby died with the owner.)"""
    secret = tmp_path / "phones.secret"
    with RedisServer.start(tmp_path / "redis") as redis_server:
        async with trio.open_nursery() as nursery:
            owner = await spawn(nursery, serve_args(redis_server.url, secret))
            await owner.url()
            second = await spawn(nursery, serve_args(redis_server.url, secret))
            await second.wait_for("event=standby ")
            url = await second.url()
            async with connect(url, role="kiosk", token=TOKENS["kiosk"]) as kiosk, \
                    connect(url, role="display", token=TOKENS["display"], subscribe={"windows": [1]}) as board:
                before = await kiosk.request("take_number", service="BIZ", key="before")  # forwarded
                redis_server.kill()
                with pytest.raises(ClientError) as failed:
                    await kiosk.request("take_number", service="BIZ", key="during")
                assert failed.value.code == "unavailable"
                assert await owner.process.wait() != 0
                await second.wait_for("event=store_unreachable")
                await trio.to_thread.run_sync(redis_server.restart)
                await second.wait_for("event=took_over")
                again = await kiosk.request("take_number", service="BIZ", key="before")
                assert again["repeat"] is True and again["number"] == before["number"]
                retried = await kiosk.request("take_number", service="BIZ", key="during")
                assert retried["number"] == "A002"  # written before the stop or now: once either way
                assert board.closed is None and kiosk.closed is None
            second.process.send_signal(signal.SIGTERM)
            assert await second.process.wait() == 0
