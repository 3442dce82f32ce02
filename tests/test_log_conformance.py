"""What every event-log store must do. A new backend adds itself to ``STORES``."""

from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable

import pytest
import trio

from callsys.log import EventLog, FileLog, LogError, open_store

StoreFactory = Callable[[Path, str], Awaitable[EventLog]]


async def _file_store(tmp: Path, hall_id: str) -> EventLog:
    return await open_store(f"file:{tmp / 'store.db'}", hall_id)


STORES: dict[str, StoreFactory] = {"file": _file_store}


@pytest.fixture(params=sorted(STORES))
async def make_store(request, tmp_path) -> AsyncIterator[Callable[[str], Awaitable[EventLog]]]:
    opened: list[EventLog] = []

    async def make(hall_id: str = "demo") -> EventLog:
        store = await STORES[request.param](tmp_path, hall_id)
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


async def test_store_of_another_hall_is_refused(make_store):
    store = await make_store("demo")
    await store.append([b"a"])
    await store.aclose()
    with pytest.raises(LogError, match="belongs to hall 'demo'"):
        await make_store("qingdao")


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
