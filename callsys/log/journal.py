"""The journal: events in, durable records out, with group commit, snapshots and recovery.

The server's hot path is::

    events = engine.execute(command)   # pure, synchronous
    pending = journal.submit(events)   # synchronous: no await between, so log order == decide order
    seq = await pending.wait()         # back once the events are durable -> acknowledge

One committer task drains everything submitted since its last write and appends it in one
store call (one fsync for the whole batch), then wakes the waiters and hands the durable
events, in order, to ``on_durable`` (the fan-out to displays, which therefore never show a
call that a crash could undo).

Snapshots: capturing one walks the whole state on the event loop (tens of milliseconds
for a busy day), so the journal takes them when the state is small — right after a
``day_reset`` (the night's reset drops the day's finished tickets) and on clean shutdown —
and otherwise only every ``snapshot_every`` events as a backstop. Replaying a whole busy
day takes under a second (``python -m benchmarks.recovery``), so recovery stays fast
without loading the day with snapshot pauses.

If a write fails the journal stops the server (fail-stop): memory is then ahead of the
log, and only a restart, which recovers from the log, makes them agree again.
"""

from __future__ import annotations

import math
from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable, Final, Sequence

import msgpack
import trio

from ..engine import QueueEngine
from ..events import DayReset, Event, from_row, to_row
from ..hall import Hall
from ..state import HallState
from .base import EventLog, LogError

SNAPSHOT_EVERY: Final = 200_000  # events between backstop snapshots (a busy day is ~120,000)
READ_CHUNK: Final = 20_000  # records per read while replaying

DurableHook = Callable[[list[tuple[int, Event]]], None]


_packer = msgpack.Packer(use_bin_type=True)  # reused: packb builds a Packer per call (~0.6 us per event)


def encode(event: Event) -> bytes:
    return _packer.pack(to_row(event))


def decode(data: bytes) -> Event:
    return from_row(msgpack.unpackb(data, raw=False))


class Pending:
    """A submitted batch; ``await pending.wait()`` returns its last seq once durable."""

    __slots__ = ("events", "records", "last_seq", "repeat", "_journal")

    def __init__(self, journal: "Journal", events: Sequence[Event], last_seq: int, *, repeat: bool = False) -> None:
        self.events = events
        self.records = [] if repeat else [encode(e) for e in events]
        self.repeat = repeat  # True: a repeated idempotency key, its events were submitted before
        self.last_seq = last_seq
        self._journal = journal

    @property
    def durable(self) -> bool:
        """True once the events are in the store."""
        return self._journal.durable_seq >= self.last_seq

    async def wait(self) -> int:
        """Raises:
            LogError: the store failed; the events are not durable and must not be acknowledged.
        """
        await self._journal.wait_durable(self.last_seq)
        return self.last_seq


class Journal:
    """The engine's durable side. Build it with :func:`open_journal`."""

    def __init__(self, log: EventLog, hall: Hall, *, snapshot_every: int = SNAPSHOT_EVERY,
                 snapshot_on_close: bool = True) -> None:
        self.log = log
        self.hall = hall
        self.snapshot_every = snapshot_every
        self.snapshot_on_close = snapshot_on_close
        self.engine: QueueEngine | None = None
        self.on_durable: DurableHook | None = None
        self.durable_seq = 0  # newest seq known to be in the store
        self.snapshot_seq = 0
        self.batches = 0  # store writes so far (statistics)
        self._submitted_seq = 0
        self._send, self._receive = trio.open_memory_channel[Pending](math.inf)
        self._snapshot: tuple[int, bytes] | None = None
        self._failed: BaseException | None = None
        self._closed = False
        self._advanced = trio.Event()  # set (and replaced) after every commit or failure

    # ------------------------------------------------------------------ recovery

    async def recover(self) -> tuple[QueueEngine, int]:
        """Rebuild the engine from the newest snapshot plus the records after it."""
        snap = await self.log.load_snapshot()
        seq = 0
        state = HallState(self.hall)
        if snap is not None:
            seq, data = snap
            state = HallState.from_snapshot(self.hall, msgpack.unpackb(data, raw=False))
            state.seq = seq  # the fold's position is the log's (older snapshots did not record it)
        engine = QueueEngine(self.hall, state)
        while True:
            rows = await self.log.read(seq, limit=READ_CHUNK)
            if not rows:
                break
            for row_seq, data in rows:
                engine.apply(decode(data))
            seq = rows[-1][0]
        self.engine = engine
        self.durable_seq = self._submitted_seq = self.snapshot_seq = seq
        if snap is not None:
            self.snapshot_seq = snap[0]
        return engine, seq

    # ------------------------------------------------------------------ hot path

    def submit(self, events: Sequence[Event]) -> Pending:
        """Queue *events* (already applied to the engine) for the next group commit."""
        if self._failed is not None:
            raise LogError(f"the journal stopped after a failed commit: {self._failed}")
        if self._closed:
            raise LogError("the journal is closed")
        self._submitted_seq += len(events)
        pending = Pending(self, events, self._submitted_seq)
        if events:
            self._send.send_nowait(pending)
        return pending

    def pending_at(self, seq: int) -> Pending:
        """A :class:`Pending` for events submitted earlier, up to *seq* (nothing new to write)."""
        return Pending(self, (), seq, repeat=True)

    async def wait_durable(self, seq: int) -> None:
        """Wait until every event up to *seq* is durable.

        One event per commit wakes every waiter of that commit: a connection with many
        commands in flight waits once, for its newest.

        Raises:
            LogError: the store failed before *seq* became durable.
        """
        while self.durable_seq < seq:
            if self._failed is not None:
                raise LogError(f"commit failed: {self._failed}") from self._failed
            await self._advanced.wait()

    async def commit(self, events: Sequence[Event]) -> int:
        """``submit`` then ``wait``: for callers with no ordering constraint of their own."""
        return await self.submit(events).wait()

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """The committer task: write batches until the submit side closes, then snapshot.

        Shielded from cancellation: once submitted, events are written even while the
        server shuts down; the task ends when :func:`open_journal` closes the channel.
        """
        task_status.started()
        with trio.CancelScope(shield=True):
            async for first in self._receive:
                batch = [first]
                while True:
                    try:
                        batch.append(self._receive.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                await self._write(batch)
            if self.snapshot_on_close and self.engine is not None and self.snapshot_seq < self.durable_seq:
                await self._maybe_snapshot(force=True)

    async def _write(self, batch: list[Pending]) -> None:
        records = [r for p in batch for r in p.records]
        try:
            self.durable_seq = await self.log.append(records)
        except BaseException as exc:
            self._failed = exc
            self._wake()
            raise
        self.batches += 1
        self._wake()
        if self.on_durable is not None:
            first = batch[0].last_seq - len(batch[0].events) + 1
            self.on_durable(list(zip(range(first, first + len(records)), (e for p in batch for e in p.events))))
        await self._maybe_snapshot(force=any(isinstance(e, DayReset) for p in batch for e in p.events))

    def _wake(self) -> None:
        advanced, self._advanced = self._advanced, trio.Event()
        advanced.set()

    async def _maybe_snapshot(self, *, force: bool = False) -> None:
        due = self._submitted_seq - self.snapshot_seq >= self.snapshot_every
        if self._snapshot is None and self.engine is not None and (due or force):
            # Captured synchronously: the engine holds exactly the submitted events now.
            data = msgpack.packb(self.engine.snapshot(), use_bin_type=True)
            self._snapshot = (self._submitted_seq, data)
        if self._snapshot is not None and self._snapshot[0] <= self.durable_seq:
            seq, data = self._snapshot
            await self.log.save_snapshot(seq, data)
            self.snapshot_seq, self._snapshot = seq, None

    def close(self) -> None:
        """No more submissions; the committer writes what is queued and stops."""
        self._closed = True
        self._send.close()


@asynccontextmanager
async def open_journal(url: str, hall: Hall, *, snapshot_every: int = SNAPSHOT_EVERY,
                       snapshot_on_close: bool = True) -> AsyncIterator[Journal]:
    """Open the store named by *url* for *hall* and run its committer.

    ``url`` is ``file:PATH`` (the embedded SQLite store). On exit, queued events are
    written, even when the body is cancelled, and (unless *snapshot_on_close* is false,
    as benchmarks and tests that keep a store as it was ask) a snapshot is taken.
    """
    log = await open_store(url, hall.id)
    journal = Journal(log, hall, snapshot_every=snapshot_every, snapshot_on_close=snapshot_on_close)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(journal.run)
            try:
                yield journal
            finally:
                journal.close()
    finally:
        with trio.CancelScope(shield=True):
            await log.aclose()


async def open_store(url: str, hall_id: str) -> EventLog:
    """The :class:`EventLog` named by *url*.

    Raises:
        LogError: the URL names no known store.
    """
    scheme, _, rest = url.partition(":")
    if scheme == "file" and rest:
        from .sqlite import FileLog

        return await FileLog.open(rest, hall_id)
    raise LogError(f"unknown store {url!r}: use file:PATH")
