"""The journal: group commit, durability before acknowledgement, snapshots and recovery."""

from __future__ import annotations

import random

import msgpack
import pytest
import trio

from callsys import (CallNext, FinishService, OpenWindow, QueueEngine, StartService, TakeNumber)
from callsys.errors import EngineError
from callsys.events import TicketIssued
from callsys.log import LogError, decode, encode, open_journal, open_store


def _store(tmp_path) -> str:
    return f"file:{tmp_path / 'hall.db'}"


async def _day_of_work(journal, engine: QueueEngine, t0: float, n: int, seed: int = 7) -> float:
    """Take *n* numbers and serve most of them through the journal; returns the last time."""
    rng = random.Random(seed)
    services = [s.code for s in engine.hall.services]
    t = t0
    for window in engine.hall.windows:
        await journal.commit(engine.execute(OpenWindow(t, window.id)))
    for i in range(n):
        t += rng.uniform(1, 20)
        await journal.commit(engine.execute(TakeNumber(t, rng.choice(services), green=rng.random() < 0.1)))
        if i % 3 == 2:
            window = rng.choice(engine.hall.windows).id
            for command in (CallNext(t, window), StartService(t, window), FinishService(t, window, "good", 5)):
                try:
                    await journal.commit(engine.execute(command))
                except EngineError:
                    break
    return t


def test_event_codec_round_trip(monday_0930):
    event = TicketIssued(monday_0930, 7, "A007", "SOC", "qr", True, "priority", monday_0930 - 1800, 739943, 7)
    assert decode(encode(event)) == event


async def test_recovery_equals_live_state(tmp_path, demo_hall, monday_0930):
    async with open_journal(_store(tmp_path), demo_hall, snapshot_every=10**9) as journal:
        engine, seq = await journal.recover()
        assert seq == 0
        await _day_of_work(journal, engine, monday_0930, 120)
        live = engine.snapshot()
        durable = journal.durable_seq
    async with open_journal(_store(tmp_path), demo_hall) as journal:
        recovered, seq = await journal.recover()
        assert seq == durable
        assert recovered.snapshot() == live


async def test_recovery_from_snapshot_plus_tail(tmp_path, demo_hall, monday_0930):
    async with open_journal(_store(tmp_path), demo_hall, snapshot_every=50) as journal:
        engine, _ = await journal.recover()
        await _day_of_work(journal, engine, monday_0930, 150)
        live = engine.snapshot()
        assert journal.snapshot_seq > 0
    store = await open_store(_store(tmp_path), demo_hall.id)
    snap_seq, data = await store.load_snapshot()
    last = await store.last_seq()
    await store.aclose()
    assert snap_seq == last  # the clean close took a final snapshot
    assert msgpack.unpackb(data, raw=False) == msgpack.unpackb(msgpack.packb(live), raw=False)
    async with open_journal(_store(tmp_path), demo_hall) as journal:
        recovered, _ = await journal.recover()
        assert recovered.snapshot() == live


async def test_mid_log_snapshot_then_replay_of_the_rest(tmp_path, demo_hall, monday_0930):
    """A snapshot taken mid-day plus the events after it rebuild the state exactly."""
    async with open_journal(_store(tmp_path), demo_hall, snapshot_every=40, snapshot_on_close=False) as journal:
        engine, _ = await journal.recover()
        await _day_of_work(journal, engine, monday_0930, 90)
        live = engine.snapshot()
    store = await open_store(_store(tmp_path), demo_hall.id)
    snap_seq, _ = await store.load_snapshot()
    last = await store.last_seq()
    await store.aclose()
    assert 0 < snap_seq < last  # a periodic snapshot, with events after it to replay
    async with open_journal(_store(tmp_path), demo_hall) as journal:
        recovered, _ = await journal.recover()
        assert recovered.snapshot() == live


async def test_concurrent_submits_are_group_committed(tmp_path, demo_hall, monday_0930):
    acked: list[int] = []
    async with open_journal(_store(tmp_path), demo_hall) as journal:
        engine, _ = await journal.recover()

        async def kiosk(k: int) -> None:
            for i in range(20):
                events = engine.execute(TakeNumber(monday_0930 + k + i / 100, "SOC"))
                acked.append(await journal.submit(events).wait())

        async with trio.open_nursery() as nursery:
            for k in range(25):
                nursery.start_soon(kiosk, k)
        assert sorted(acked) == list(range(1, 501))
        assert journal.batches < 500  # fewer store writes than commands: batching happened
        numbers = {t.number for t in engine.state.tickets.values()}
        assert len(numbers) == 500


async def test_one_commit_wakes_every_waiter_up_to_its_seq(tmp_path, demo_hall, monday_0930):
    woken: list[tuple[int, int]] = []
    async with open_journal(_store(tmp_path), demo_hall) as journal:
        engine, _ = await journal.recover()
        pendings = [journal.submit(engine.execute(TakeNumber(monday_0930 + i, "SOC"))) for i in range(40)]
        assert not any(p.durable for p in pendings)

        async def waiter(seq: int) -> None:
            await journal.wait_durable(seq)
            woken.append((seq, journal.batches))

        async with trio.open_nursery() as nursery:
            for seq in (40, 1, 20):
                nursery.start_soon(waiter, seq)
        assert all(p.durable for p in pendings)
        await journal.wait_durable(40)  # already durable: returns at once
    assert sorted(s for s, _ in woken) == [1, 20, 40]
    assert {batches for _, batches in woken} == {1}  # all 40 in one group commit, one wake-up


async def test_durable_hook_sees_events_in_log_order(tmp_path, demo_hall, monday_0930):
    seen: list[tuple[int, str]] = []
    async with open_journal(_store(tmp_path), demo_hall) as journal:
        engine, _ = await journal.recover()
        journal.on_durable = lambda batch: seen.extend((seq, e.number) for seq, e in batch)
        pendings = [journal.submit(engine.execute(TakeNumber(monday_0930 + i, "MED"))) for i in range(30)]
        for pending in pendings:
            await pending.wait()
    assert [seq for seq, _ in seen] == list(range(1, 31))
    assert [number for _, number in seen] == [f"D{i:03d}" for i in range(1, 31)]


async def test_failed_commit_is_never_acknowledged_and_stops_the_journal(tmp_path, demo_hall, monday_0930):
    with pytest.raises(BaseException) as info:
        async with open_journal(_store(tmp_path), demo_hall) as journal:
            engine, _ = await journal.recover()
            await journal.log.aclose()  # the disk goes away underneath
            pending = journal.submit(engine.execute(TakeNumber(monday_0930, "SOC")))
            with pytest.raises(LogError):
                await pending.wait()
            with pytest.raises(LogError, match="stopped"):
                journal.submit(engine.execute(TakeNumber(monday_0930 + 1, "SOC")))
            await trio.sleep_forever()  # the failed committer must take the server down
    assert info.group_contains(LogError) if isinstance(info.value, BaseExceptionGroup) else isinstance(info.value, LogError)


async def test_empty_submit_is_acknowledged_at_once(tmp_path, demo_hall):
    async with open_journal(_store(tmp_path), demo_hall) as journal:
        await journal.recover()
        assert await journal.commit([]) == 0


async def test_day_reset_takes_a_snapshot_of_the_small_state(tmp_path, demo_hall, monday_0930):
    from callsys import ResetDay

    async with open_journal(_store(tmp_path), demo_hall, snapshot_on_close=False) as journal:
        engine, _ = await journal.recover()
        t = await _day_of_work(journal, engine, monday_0930, 30)
        seq = await journal.commit(engine.execute(ResetDay(t + 3600 * 12)))
    # closing waited for the committer, which writes the reset's snapshot right after its batch
    assert journal.snapshot_seq == seq
    store = await open_store(_store(tmp_path), demo_hall.id)
    store_snapshot = await store.load_snapshot()
    await store.aclose()
    assert store_snapshot[0] == seq
    assert msgpack.unpackb(store_snapshot[1], raw=False)["tickets"] == []
