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
log, and only a restart, which recovers from the log, makes them agree again. While no
commit runs, the committer asks the store every ``verify_every_s`` whether it can still
keep what it is given (:meth:`EventLog.verify`: the embedded store checks that its files
are still in place, the Redis store that its keys and Redis's fsync setting are), so a
store lost while idle stops the server too, before it acknowledges anything more.

Recovery trusts nothing it reads: every record must decode into a known event of the
right shape and apply to the state, seqs must follow each other without a gap, and the
snapshot must decode; anything else is :class:`StoreDamaged`, one line naming the seq
(``callsys store check`` then reports the whole store). A recovery that replayed more
than ``replay_snapshot_after`` events writes a snapshot at once, before the server
listens, so the next restart does not replay them again (a crash leaves no closing
snapshot, and without new events no backstop snapshot would ever come).
"""

from __future__ import annotations

import math
from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable, Final, Sequence

import msgpack
import trio

from ..engine import QueueEngine
from ..events import EVENTS, DayReset, Event, from_row, to_row
from ..hall import Hall
from ..state import HallState
from .base import EventLog, LogError, StoreDamaged

SNAPSHOT_EVERY: Final = 200_000  # events between backstop snapshots (a busy day is ~120,000)
READ_CHUNK: Final = 20_000  # records per read while replaying
REPLAY_SNAPSHOT_AFTER: Final = 10_000  # events replayed at recovery past which a snapshot is written (~0.1 s)
VERIFY_EVERY_S: Final = 1.0  # seconds without a commit after which the store's files are checked

DurableHook = Callable[[list[tuple[int, Event]]], None]
FailureHook = Callable[[BaseException], None]


_packer = msgpack.Packer(use_bin_type=True)  # reused: packb builds a Packer per call (~0.6 us per event)


def encode(event: Event) -> bytes:
    return _packer.pack(to_row(event))


def decode(data: bytes) -> Event:
    return from_row(msgpack.unpackb(data, raw=False))


def _why(exc: BaseException) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split()).rstrip(":")
    return text if len(text) <= 120 else text[:117] + "..."


def decode_record(store: str, seq: int, data: bytes) -> Event:
    """The event in record *seq* of *store*, checked as far as a record can be.

    Raises:
        StoreDamaged: the bytes are not msgpack, not a ``[kind, field...]`` row, name an
            unknown event kind, or do not fit the kind's fields.
    """
    try:
        row = msgpack.unpackb(data, raw=False)
    except Exception as exc:
        raise StoreDamaged(f"store {store} is damaged at seq {seq}: the record cannot be decoded ({_why(exc)})",
                           seq) from None
    if type(row) is not list or not row or type(row[0]) is not str:
        raise StoreDamaged(f"store {store} is damaged at seq {seq}: the record has the wrong shape "
                           f"(not [kind, field...] but {type(row).__name__})", seq)
    if row[0] not in EVENTS:
        raise StoreDamaged(f"store {store} is damaged at seq {seq}: unknown event kind {row[0][:40]!r}", seq)
    try:
        return from_row(row)
    except Exception as exc:
        raise StoreDamaged(f"store {store} is damaged at seq {seq}: the {row[0]} record has the wrong shape "
                           f"({_why(exc)})", seq) from None


def restore_state(store: str, hall: Hall, seq: int, data: bytes) -> HallState:
    """The state saved in the snapshot at *seq*.

    Raises:
        StoreDamaged: it does not decode into a state of *hall*.
    """
    try:
        return HallState.from_snapshot(hall, msgpack.unpackb(data, raw=False))
    except Exception as exc:
        raise StoreDamaged(f"store {store} is damaged at seq {seq}: the snapshot cannot be read back "
                           f"({_why(exc)})", seq) from None


def pack_state(engine: QueueEngine) -> bytes:
    """The snapshot record of *engine*'s state."""
    return msgpack.packb(engine.snapshot(), use_bin_type=True)


async def replay(log: EventLog, engine: QueueEngine, after: int, *, upto: int | None = None,
                 applied: DurableHook | None = None) -> int:
    """Apply the records after *after* (up to *upto*, default all) to *engine*; return the last seq.

    Args:
        applied: called with each chunk of applied ``(seq, event)`` pairs, in order, right
            after they are applied (:meth:`Journal.follow` hands them to the fan-out).

    Raises:
        StoreDamaged: a record is missing (a gap in seq), cannot be decoded, or cannot be applied.
    """
    store = log.name
    seq = after
    while upto is None or seq < upto:
        rows = await log.read(seq, limit=READ_CHUNK)
        if not rows:
            break
        chunk: list[tuple[int, Event]] = []
        for row_seq, data in rows:
            if upto is not None and row_seq > upto:
                break
            if row_seq != seq + 1:
                raise StoreDamaged(f"store {store} is damaged at seq {seq + 1}: the record is missing "
                                   f"(the log jumps from {seq} to {row_seq})", seq + 1)
            event = decode_record(store, row_seq, data)
            try:
                engine.apply(event)
            except Exception as exc:
                raise StoreDamaged(f"store {store} is damaged at seq {row_seq}: the {event.kind} record does not "
                                   f"apply to the state before it ({_why(exc)})", row_seq) from None
            seq = row_seq
            if applied is not None:
                chunk.append((row_seq, event))
        if chunk:
            applied(chunk)
        if upto is not None and rows[-1][0] > upto:
            break
    return seq


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
                 snapshot_on_close: bool = True, replay_snapshot_after: int = REPLAY_SNAPSHOT_AFTER,
                 verify_every_s: float = VERIFY_EVERY_S) -> None:
        self.log = log
        self.hall = hall
        self.snapshot_every = snapshot_every
        self.snapshot_on_close = snapshot_on_close
        self.replay_snapshot_after = replay_snapshot_after
        self.verify_every_s = verify_every_s
        self.engine: QueueEngine | None = None
        self.on_durable: DurableHook | None = None
        self.on_failure: FailureHook | None = None  # called once, before the committer raises
        self.durable_seq = 0  # newest seq known to be in the store
        self.snapshot_seq = 0
        self.replayed = 0  # events the last recovery folded on top of its snapshot (statistics)
        self.batches = 0  # store writes so far (statistics)
        self._submitted_seq = 0
        self._send, self._receive = trio.open_memory_channel[Pending](math.inf)
        self._snapshot: tuple[int, bytes] | None = None
        self._failed: BaseException | None = None
        self._closed = False
        self._advanced = trio.Event()  # set (and replaced) after every commit or failure

    # ------------------------------------------------------------------ recovery

    async def recover(self) -> tuple[QueueEngine, int]:
        """Rebuild the engine from the newest snapshot plus the records after it.

        Writes a snapshot when it replayed more than ``replay_snapshot_after`` events.

        Raises:
            StoreDamaged: the snapshot or a record cannot be read back, or a record is missing.
        """
        store = self.log.name
        snap = await self.log.load_snapshot()
        start = 0
        state = HallState(self.hall)
        if snap is not None:
            start = snap[0]
            state = restore_state(store, self.hall, start, snap[1])
            state.seq = start  # the fold's position is the log's (older snapshots did not record it)
        last = await self.log.last_seq()
        if last < start:
            raise StoreDamaged(f"store {store} is damaged at seq {start}: the snapshot is newer than the "
                               f"last record ({last})", start)
        engine = QueueEngine(self.hall, state)
        seq = await replay(self.log, engine, start)
        self.engine = engine
        self.durable_seq = self._submitted_seq = seq
        self.snapshot_seq = start
        self.replayed = seq - start
        if self.replayed > self.replay_snapshot_after:
            await self.log.save_snapshot(seq, pack_state(engine))  # before serving: no client waits on it
            self.snapshot_seq = seq
        return engine, seq

    async def follow(self) -> int:
        """Apply the records another process (the hall's owner) appended after :attr:`durable_seq`;
        return the new :attr:`durable_seq`.

        A standby's way to keep current (:mod:`callsys.server.standby`): each chunk read is
        applied to the engine, counted durable (it is in the store), waiters are woken, and
        the chunk goes to ``on_durable`` — the same hook a committed batch takes, so a
        standby's screens see every followed event as the owner's see its commits.

        Raises:
            StoreDamaged: a record does not decode or apply, or a seq is missing.
            LogError: the store failed.
        """
        return await replay(self.log, self.engine, self.durable_seq, applied=self._followed)

    def _followed(self, batch: list[tuple[int, Event]]) -> None:
        self.durable_seq = self._submitted_seq = batch[-1][0]
        self._wake()
        if self.on_durable is not None:
            self.on_durable(batch)

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
        While idle it checks the store every ``verify_every_s``.
        """
        task_status.started()
        with trio.CancelScope(shield=True):
            receive = self._receive
            while True:
                first = None
                with trio.move_on_after(self.verify_every_s):
                    try:
                        first = await receive.receive()
                    except trio.EndOfChannel:
                        break
                if first is None:
                    await self._guarded(self.log.verify())
                    continue
                batch = [first]
                while True:
                    try:
                        batch.append(receive.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                await self._write(batch)
            if self.snapshot_on_close and self.engine is not None and self.snapshot_seq < self.durable_seq:
                await self._maybe_snapshot(force=True)

    async def _guarded(self, call):
        """Await *call*; if it fails, stop the journal (fail-stop) and re-raise."""
        try:
            return await call
        except BaseException as exc:
            self._failed = exc
            self._wake()
            if self.on_failure is not None:
                self.on_failure(exc)
            raise

    async def _write(self, batch: list[Pending]) -> None:
        records = [r for p in batch for r in p.records]
        self.durable_seq = await self._guarded(self.log.append(records))
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
            self._snapshot = (self._submitted_seq, pack_state(self.engine))
        if self._snapshot is not None and self._snapshot[0] <= self.durable_seq:
            seq, data = self._snapshot
            await self._guarded(self.log.save_snapshot(seq, data))
            self.snapshot_seq, self._snapshot = seq, None

    def close(self) -> None:
        """No more submissions; the committer writes what is queued and stops."""
        self._closed = True
        self._send.close()


@asynccontextmanager
async def open_journal(url: str, hall: Hall, *, snapshot_every: int = SNAPSHOT_EVERY,
                       snapshot_on_close: bool = True, replay_snapshot_after: int = REPLAY_SNAPSHOT_AFTER,
                       verify_every_s: float = VERIFY_EVERY_S) -> AsyncIterator[Journal]:
    """Open the store named by *url* for *hall* and run its committer.

    ``url`` is ``file:PATH`` (the embedded SQLite store, :mod:`callsys.log.sqlite`) or a Redis
    URL such as ``redis://HOST:PORT/DB`` (:mod:`callsys.log.redis` lists every form). On exit, queued events are
    written, even when the body is cancelled, and (unless *snapshot_on_close* is false,
    as benchmarks and tests that keep a store as it was ask) a snapshot is taken.
    The other arguments are the :class:`Journal`'s.
    """
    log = await open_store(url, hall.id)
    journal = Journal(log, hall, snapshot_every=snapshot_every, snapshot_on_close=snapshot_on_close,
                      replay_snapshot_after=replay_snapshot_after, verify_every_s=verify_every_s)
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


async def open_store(url: str, hall_id: str, *, readonly: bool = False) -> EventLog:
    """The :class:`EventLog` named by *url*: ``file:PATH`` or a Redis URL (see :func:`open_journal`).

    Args:
        readonly: open it only to read, beside whoever writes it (reports): a file store is
            opened without its lock (:meth:`FileLog.open_readonly`, one consistent read
            transaction); a Redis store takes no lock in any case.

    Raises:
        LogError: the URL names no known store, or the store cannot be opened.
    """
    scheme, _, rest = url.partition(":")
    if scheme == "file" and rest:
        from .sqlite import FileLog

        if readonly:
            return (await FileLog.open_readonly(rest, hall_id))[0]
        return await FileLog.open(rest, hall_id)
    if rest.startswith("//"):
        from .redis import SCHEMES, RedisLog

        if scheme in SCHEMES:
            return await RedisLog.open(url, hall_id)
    raise LogError(f"unknown store {url!r}: use file:PATH or redis://HOST:PORT/DB "
                   "(see `callsys serve --help` for the Redis forms)")
