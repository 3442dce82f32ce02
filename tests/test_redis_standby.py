"""One owner per hall, fenced, and a hot standby that takes over (issue 12, item 2).

The lease and the fencing token in the append script (in-process, real redis-server), a
standby's follow-then-take-over, and real processes: a stale owner woken by SIGCONT after
its lease expired writes nothing; an owner kill -9'd mid-burst of commands sent through
its standby is replaced by that standby, whose display never disconnects, with no
acknowledged ticket lost and no number issued twice. (What a standby serves before it
takes over: ``tests/test_standby_serving.py``.)
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
import trio
import trio.testing

from benchmarks.failover import burst, check, serve_args, spawn
from callsys import TakeNumber
from callsys.client import ClientError, RequestFailed, connect
from callsys.log import StoreFenced, open_journal, open_store
from callsys.log.redis import lease_key
from callsys.server import standby
from conftest import hall_time
from redis_support import raw, redis_server, redis_url  # noqa: F401  (fixtures)
from server_support import TOKENS, guard

LONG_TTL_S = 60.0  # in-process tests end leases by deleting the key (what expiry does), never by waiting


async def test_one_owner_and_a_new_token_fences_the_old_one(redis_server, redis_url):
    first = await open_store(redis_url, "demo")
    second = await open_store(redis_url, "demo")
    client = raw(redis_server)
    try:
        token = await first.acquire("A", LONG_TTL_S)
        assert token == 1 and first.token == 1
        assert await second.acquire("B", LONG_TTL_S) is None  # held: one owner
        assert await second.holder() == "A"
        intruder = await open_store(redis_url, "demo")
        with pytest.raises(StoreFenced):  # no lease, and someone holds it: refused
            await intruder.append([b"intruder"])
        await intruder.aclose()
        assert await first.append([b"a"]) == 1
        await first.renew(LONG_TTL_S)
        client.delete(lease_key("demo"))  # A's lease expired (it was paused)
        assert await second.acquire("B", LONG_TTL_S) == 2  # a larger token
        with pytest.raises(StoreFenced, match="no longer owns hall 'demo' \\(it holds its token 1, the hall's "
                                              "fencing token is 2\\)"):
            await first.append([b"stale"])
        with pytest.raises(StoreFenced):  # and it stays stopped
            await first.append([b"stale again"])
        assert await second.append([b"b"]) == 2  # the new owner writes after what A committed
        assert await second.read(0, limit=10) == [(1, b"a"), (2, b"b")]
    finally:
        await first.aclose()  # fenced: releases nothing
        assert client.get(lease_key("demo")) == b"B"
        await second.aclose()  # the owner's clean close releases the lease
        assert client.get(lease_key("demo")) is None
        client.close()


async def test_an_expired_lease_fences_its_owner_even_with_no_successor(redis_server, redis_url):
    store = await open_store(redis_url, "demo")
    client = raw(redis_server)
    try:
        await store.acquire("A", LONG_TTL_S)
        assert await store.append([b"a"]) == 1
        client.delete(lease_key("demo"))  # expired while paused; nobody took it
        with pytest.raises(StoreFenced):
            await store.append([b"late"])
        assert client.xlen("callsys:{demo}:events") == 1
    finally:
        await store.aclose()
        client.close()


async def test_a_refused_renewal_reports_the_loss_once(redis_server, redis_url):
    store = await open_store(redis_url, "demo")
    client = raw(redis_server)
    lost = []
    try:
        await store.acquire("A", LONG_TTL_S)
        client.set(lease_key("demo"), "B")  # another process holds it now
        with trio.move_on_after(30):  # a hang guard, not a timing assumption: keep_lease returns on the loss
            await standby.keep_lease(store, lost.append, ttl_s=LONG_TTL_S, every_s=0)
        assert len(lost) == 1 and isinstance(lost[0], StoreFenced)
        with pytest.raises(StoreFenced):
            await store.append([b"x"])
    finally:
        await store.aclose()
        client.close()


@guard(60)
async def test_standby_follows_the_owner_and_takes_over_on_release(demo_hall, redis_url):
    taken = []
    async with open_journal(redis_url, demo_hall, snapshot_on_close=False) as owner_journal:
        engine, _ = await owner_journal.recover()
        await owner_journal.log.acquire("owner", LONG_TTL_S)
        for i in range(5):
            await owner_journal.commit(engine.execute(TakeNumber(hall_time(9, 30) + i, "BIZ")))
        async with open_journal(redis_url, demo_hall) as standby_journal:
            followed, _ = await standby_journal.recover()
            seen: list[tuple[int, object]] = []
            standby_journal.on_durable = seen.extend  # the hook a commit takes: followed events take it too
            async with trio.open_nursery() as nursery:
                async def take() -> None:
                    taken.append(await standby.follow(standby_journal, standby_journal.log, "standby",
                                                      ttl_s=LONG_TTL_S, block_s=0.05))
                nursery.start_soon(take)
                for i in range(5):  # committed while the standby follows
                    await owner_journal.commit(engine.execute(TakeNumber(hall_time(10) + i, "SOC")))
                await owner_journal.log.aclose()  # the owner stops cleanly: releases the lease
            assert taken == [2]
            assert standby_journal.durable_seq == owner_journal.durable_seq
            assert [seq for seq, _ in seen] == list(range(6, owner_journal.durable_seq + 1))  # each once, in order
            assert {type(event).__name__ for _, event in seen} == {"TicketIssued"}
            assert followed.state.tickets.keys() == engine.state.tickets.keys()
            assert [t.number for t in followed.state.tickets.values()] == \
                [t.number for t in engine.state.tickets.values()]
            await standby_journal.commit(followed.execute(TakeNumber(hall_time(11), "BIZ")))
            assert followed.state.tickets[max(followed.state.tickets)].number == "A006"


@guard(120)
async def test_a_paused_owner_is_fenced_and_writes_nothing(redis_server, redis_url, tmp_path):
    """SIGSTOP the owner past its lease; the standby takes over; SIGCONT: the old owner's
    command that waited in its socket is refused, not acknowledged, and it stops."""
    secret = tmp_path / "phones.secret"
    async with trio.open_nursery() as nursery:
        owner = await spawn(nursery, serve_args(redis_url, secret))
        old_url = await owner.url()
        second = await spawn(nursery, serve_args(redis_url, secret))
        await second.wait_for("event=standby")
        async with connect(old_url, role="kiosk", token=TOKENS["kiosk"]) as stale:
            before = await stale.request("take_number", service="BIZ", key="before")
            owner.process.send_signal(signal.SIGSTOP)
            await second.wait_for("event=took_over")  # the lease expired: the standby took over
            new_url = await second.url()
            answers = []

            async def late_command() -> None:
                try:
                    answers.append(await stale.request("take_number", service="BIZ", key="late"))
                except ClientError as exc:
                    answers.append(exc)

            async with trio.open_nursery() as waiting:
                waiting.start_soon(late_command)
                await trio.testing.wait_all_tasks_blocked()  # sent: it waits in the stopped owner's socket
                owner.process.send_signal(signal.SIGCONT)
            assert len(answers) == 1 and isinstance(answers[0], ClientError)
        assert await owner.process.wait() != 0
        await owner.wait_for("error=\"StoreFenced: ")
        async with connect(new_url, role="manager", token=TOKENS["manager"]) as manager, \
                connect(new_url, role="kiosk", token=TOKENS["kiosk"]) as kiosk:
            assert (await manager.request("ticket", ticket=before["ticket"]))["number"] == before["number"]
            assert (await manager.request("stats"))["totals"]["issued"] == 1  # "late" was never written
            again = await kiosk.request("take_number", service="BIZ", key="late")  # the kiosk's retry
            assert again["number"] == "A002" and not again.get("repeat")
        second.process.send_signal(signal.SIGTERM)
        assert await second.process.wait() == 0
    client = raw(redis_server)
    try:
        assert client.get(lease_key("demo")) is None  # the clean stop released it
    finally:
        client.close()


@guard(120)
async def test_owner_killed_mid_burst_through_its_standby_which_takes_over_without_loss(demo_hall, redis_url,
                                                                                         tmp_path):
    """The kiosks and a display are connected to the standby; the kiosks' commands are
    forwarded to the owner, which is kill -9'd mid-burst. The standby takes over, the
    display stays connected and sees the new owner's calls, the unanswered commands got
    ``unavailable`` with ``retry``, and retried with their keys nothing is lost or doubled."""
    secret = tmp_path / "phones.secret"
    acked: dict[str, dict] = {}
    unknown: dict[str, str] = {}
    enough = trio.Event()
    async with trio.open_nursery() as nursery:
        owner = await spawn(nursery, serve_args(redis_url, secret))
        await owner.url()
        second = await spawn(nursery, serve_args(redis_url, secret))
        await second.wait_for("event=standby ")
        url = await second.url()
        async with connect(url, role="display", token=TOKENS["display"], subscribe={"windows": [2]}) as led, \
                connect(url, role="kiosk", token=TOKENS["kiosk"]) as kiosk:
            assert (await led.next_push())["type"] == "board"
            nursery.start_soon(burst, url, acked, unknown, enough, 300)
            await enough.wait()
            owner.process.send_signal(signal.SIGKILL)  # mid-burst: the clients are still sending
            assert await owner.process.wait() == -signal.SIGKILL
            await second.wait_for("event=took_over")
            lost, duplicates, issued = await check(url, acked, unknown)
            assert (lost, duplicates) == (0, 0)
            assert issued == len(acked) + len(unknown)  # every key exactly once, retried or not
            for key, ticket in list(acked.items())[:50]:  # an answered command, retried: the same ticket
                again = await kiosk.request("take_number", service=ticket["service"], key=key)
                assert again["repeat"] is True and again["number"] == ticket["number"]
            async with connect(url, role="clerk", token=TOKENS["clerk"], window=2) as clerk:
                await clerk.request("open_window")
                called = await clerk.request("call_next")
            while (push := await led.next_push())["type"] != "window_update" or push["event"] != "called":
                pass  # the board's updates of the followed burst, then the new owner's call
            assert (push["window"], push["seq"]) == (2, called["seq"])
            assert led.closed is None and kiosk.closed is None  # never disconnected
        second.process.send_signal(signal.SIGTERM)
        assert await second.process.wait() == 0
    async with open_journal(redis_url, demo_hall, snapshot_on_close=False) as journal:  # the store itself
        engine, _ = await journal.recover()
    tickets = engine.state.tickets
    numbers = [t.number for t in tickets.values()]
    assert len(numbers) == len(set(numbers)) == len(acked) + len(unknown)  # every key once, no number twice
    for ticket in acked.values():
        assert tickets[ticket["ticket"]].number == ticket["number"]


@guard(120)
async def test_a_relayed_command_whose_owner_went_away_is_answered_unavailable_with_retry(redis_url, tmp_path):
    """A standby's upstream connection dies before the owner answered: the client gets
    ``unavailable`` with ``retry: true`` and its id, and the connection stays open."""
    async with trio.open_nursery() as nursery:
        owner = await spawn(nursery, serve_args(redis_url, tmp_path / "phones.secret"))
        await owner.url()
        second = await spawn(nursery, serve_args(redis_url, tmp_path / "phones.secret"))
        await second.wait_for("event=standby ")
        async with connect(await second.url(), role="kiosk", token=TOKENS["kiosk"]) as kiosk:
            assert (await kiosk.request("take_number", service="BIZ", key="a"))["number"] == "A001"
            owner.process.send_signal(signal.SIGSTOP)  # answers nothing from now on

            async def late() -> None:
                with pytest.raises(RequestFailed) as failed:
                    await kiosk.request("take_number", service="BIZ", key="b")
                assert failed.value.code == "unavailable" and failed.value.details["retry"] is True

            async with trio.open_nursery() as waiting:
                waiting.start_soon(late)  # waits for the stopped owner until the standby takes the hall over
            await second.wait_for("event=took_over")
            again = await kiosk.request("take_number", service="BIZ", key="b")  # the retry, executed here once
            assert again["number"] == "A002" and not again.get("repeat")
            owner.process.kill()
            await owner.process.wait()
        second.process.send_signal(signal.SIGTERM)
        assert await second.process.wait() == 0


def test_owner_ids_are_unique_per_process_start():
    """The lease holds ``HOST:PID:RANDOM``: a restarted process with a reused pid is another owner."""
    owner = standby.owner_id()
    host, pid, tag = owner.split(":")
    assert host and pid.isdigit() and len(tag) == 8
    assert standby.owner_id() != owner


def test_failover_benchmark_prints_its_json_rows():
    out = subprocess.run([sys.executable, "-m", "benchmarks.failover", "--json", "--tickets", "60", "--forwarded", "20"],
                         capture_output=True, text=True, check=True).stdout
    rows = {r["metric"]: r for r in json.loads(out)}
    assert list(rows) == ["forward_p50_ms", "forward_p99_ms", "takeover_s", "lost_acked", "duplicate_numbers",
                          "acked_before_kill", "unanswered_retried", "issued"]
    assert 0 < rows["forward_p50_ms"]["value"] <= rows["forward_p99_ms"]["value"]
    assert rows["takeover_s"]["target"] == "<= 3" and rows["takeover_s"]["value"] > 0
    assert rows["lost_acked"]["value"] == 0 and rows["duplicate_numbers"]["value"] == 0
    assert rows["acked_before_kill"]["value"] >= 60


async def test_a_process_that_finds_the_lease_free_catches_up_before_it_owns(demo_hall, redis_url):
    """Recovered, then another owner committed and stopped before this process asked for
    the lease: own() reads those events before it returns, so no number is issued twice."""
    async with open_journal(redis_url, demo_hall) as late:
        engine, _ = await late.recover()
        async with open_journal(redis_url, demo_hall, snapshot_on_close=False) as first:
            other, _ = await first.recover()
            await first.log.acquire("first", LONG_TTL_S)
            for i in range(3):
                await first.commit(other.execute(TakeNumber(hall_time(9, 30) + i, "BIZ")))
        assert await standby.own(late, late.log, "late", ttl_s=LONG_TTL_S) == 2
        assert late.durable_seq == first.durable_seq and len(engine.state.tickets) == 3
        await late.commit(engine.execute(TakeNumber(hall_time(9, 40), "BIZ")))
        assert engine.state.tickets[max(engine.state.tickets)].number == "A004"
