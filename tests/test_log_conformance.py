"""What every event-log store must do. A new backend adds itself to ``STORES``.

Each store runs against the real thing: the file store in a temporary directory, the Redis
store against a ``redis-server`` started for the session (``redis_support``; its database
is emptied before each test).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable

import pytest
import trio

from callsys.log import EventLog, FileLog, LogError, open_store
from redis_support import redis_server, redis_url  # noqa: F401  (fixtures)


@dataclass(frozen=True)
class Store:
    """How to open one kind of store in a test."""

    url: Callable[[pytest.FixtureRequest, Path], str]  # the store URL, from the test's fixtures
    one_hall: bool  # True: the store holds one hall and refuses another; False: halls live side by side


STORES: dict[str, Store] = {
    "file": Store(lambda request, tmp: f"file:{tmp / 'store.db'}", one_hall=True),
    "redis": Store(lambda request, tmp: request.getfixturevalue("redis_url"), one_hall=False),
}


@pytest.fixture(params=sorted(STORES))
def kind(request) -> Store:
    return STORES[request.param]


@pytest.fixture
async def make_store(request, kind, tmp_path) -> AsyncIterator[Callable[[str], Awaitable[EventLog]]]:
    opened: list[EventLog] = []
    url = kind.url(request, tmp_path)

    async def make(hall_id: str = "demo") -> EventLog:
        store = await open_store(url, hall_id)
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.aclose()


async def test_empty_store(make_store):
    store = await make_store()
    assert await store.last_seq() == 0
    assert await store.read(0, limit=10) == []
    assert await store.load_snapshot() is None


async def test_append_numbers_records_in_order(make_store):
    store = await make_store()
    assert await store.append([b"a", b"b"]) == 2
    assert await store.append([b"c"]) == 3
    assert await store.read(0, limit=10) == [(1, b"a"), (2, b"b"), (3, b"c")]
    assert await store.read(1, limit=1) == [(2, b"b")]
    assert await store.last_seq() == 3


async def test_records_survive_reopen(make_store):
    store = await make_store()
    await store.append([b"x" * 100, b"y"])
    await store.aclose()
    again = await make_store()
    assert await again.last_seq() == 2
    assert [data for _, data in await again.read(0, limit=5)] == [b"x" * 100, b"y"]
    assert await again.append([b"z"]) == 3


async def test_snapshot_keeps_newest(make_store):
    store = await make_store()
    await store.append([b"1", b"2", b"3"])
    await store.save_snapshot(2, b"state-after-2")
    await store.save_snapshot(3, b"state-after-3")
    assert await store.load_snapshot() == (3, b"state-after-3")


async def test_store_never_hands_a_hall_another_halls_records(make_store, kind):
    store = await make_store("demo")
    await store.append([b"a"])
    await store.aclose()
    if kind.one_hall:
        with pytest.raises(LogError, match="belongs to hall 'demo'"):
            await make_store("qingdao")
    else:
        other = await make_store("qingdao")
        assert await other.last_seq() == 0
        assert await other.append([b"q1", b"q2"]) == 2
        await other.aclose()
    again = await make_store("demo")
    assert await again.read(0, limit=10) == [(1, b"a")]


async def test_closed_store_refuses_appends(make_store):
    store = await make_store()
    await store.aclose()
    await store.aclose()  # twice is fine
    with pytest.raises(LogError, match="closed"):
        await store.append([b"a"])


async def test_concurrent_appends_never_share_a_seq(make_store):
    store = await make_store()
    seqs: list[int] = []

    async def writer(k: int) -> None:
        for i in range(20):
            seqs.append(await store.append([f"{k}-{i}".encode()]))

    async with trio.open_nursery() as nursery:
        for k in range(5):
            nursery.start_soon(writer, k)
    assert sorted(seqs) == list(range(1, 101))
    records = await store.read(0, limit=1000)
    assert len({data for _, data in records}) == 100


async def test_unknown_store_url_is_a_clear_error():
    with pytest.raises(LogError, match="unknown store 'nosuch:x'"):
        await open_store("nosuch:x", "demo")


async def test_unopenable_file_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(LogError, match="cannot open store"):
        await FileLog.open(blocker / "store.db", "demo")
