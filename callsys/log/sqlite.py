"""The embedded default store: one SQLite file in WAL mode, owned by the server.

Why SQLite: it ships with Python (no service to install), commits are atomic, and in WAL
mode with ``synchronous=FULL`` a commit is one append + fsync of the write-ahead log, so a
group commit of many events costs one fsync.

Where the calls run: opening, reading (recovery) and snapshots run in a worker thread, one
at a time. The group commit (:meth:`FileLog.append`) runs on the event loop itself
(``inline_append``): measured under ``python -m benchmarks.ingest`` on these 2-core
machines, a commit takes ~0.3 ms (p99 ~2 ms), but handing it to a thread cost more than
it saved: the thread must win the GIL back from the busy loop after every SQLite call
(up to the 5 ms switch interval each), and its result waits for the loop's next turn,
so a commit took ~1 ms at p50 and 30-45 ms at p99, and p99 ticket latency at 1,000/s was
~15 ms against ~4 ms inline. The cost of inline commits: while the disk stalls, the
whole server waits (it could not acknowledge anything meanwhile anyway).
"""

from __future__ import annotations

import sqlite3
from functools import lru_cache
from pathlib import Path
from typing import Final, Sequence

import trio

from .base import EventLog, LogError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS snapshots (seq INTEGER PRIMARY KEY, data BLOB NOT NULL);
"""


INLINE_APPEND: Final = True  # group commits run on the event loop (see the module docstring)
INSERT_ROWS: Final = 500  # rows per INSERT statement (2 parameters each; SQLite allows 32,766)


@lru_cache(maxsize=INSERT_ROWS)
def _insert_sql(rows: int) -> str:
    return "INSERT INTO events (seq, data) VALUES " + ",".join(["(?,?)"] * rows)


class FileLog(EventLog):
    """An :class:`EventLog` in a SQLite file. Open it with :meth:`open`."""

    def __init__(self, path: Path, hall_id: str, conn: sqlite3.Connection, *,
                 inline_append: bool = INLINE_APPEND) -> None:
        self.path = path
        self.hall_id = hall_id
        self.inline_append = inline_append
        self._conn: sqlite3.Connection | None = conn
        self._limiter = trio.CapacityLimiter(1)
        self._last = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]

    @classmethod
    async def open(cls, path: str | Path, hall_id: str) -> "FileLog":
        """Open (or create) the store at *path* for hall *hall_id*.

        Raises:
            LogError: the file cannot be opened, is not a callsys store, or belongs to another hall.
        """
        path = Path(path)
        return await trio.to_thread.run_sync(cls._open_sync, path, hall_id)

    @classmethod
    def _open_sync(cls, path: Path, hall_id: str) -> "FileLog":
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(_SCHEMA)
            row = conn.execute("SELECT value FROM meta WHERE key = 'hall'").fetchone()
            if row is None:
                conn.execute("INSERT INTO meta VALUES ('hall', ?)", (hall_id,))
            elif row[0] != hall_id:
                conn.close()
                raise LogError(f"store {path} belongs to hall {row[0]!r}, not {hall_id!r}")
        except (sqlite3.Error, OSError) as exc:
            raise LogError(f"cannot open store {path}: {exc}") from None
        return cls(path, hall_id, conn)

    async def _run(self, fn, *args):
        if self._conn is None:
            raise LogError(f"store {self.path} is closed")
        try:
            return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)
        except sqlite3.Error as exc:
            raise LogError(f"store {self.path}: {exc}") from None

    async def append(self, records: Sequence[bytes]) -> int:
        if self.inline_append and self._conn is not None and self._limiter.borrowed_tokens == 0:
            try:
                return self._append_sync(records)
            except sqlite3.Error as exc:
                raise LogError(f"store {self.path}: {exc}") from None
        return await self._run(self._append_sync, records)

    def _append_sync(self, records: Sequence[bytes]) -> int:
        first = self._last + 1
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            # One multi-row INSERT per chunk, not executemany: every sqlite3_step releases
            # and retakes the GIL, and with the event loop busy each retake can wait for
            # the interpreter's switch interval (ms), so a row-by-row batch took tens of ms.
            for start in range(0, len(records), INSERT_ROWS):
                chunk = records[start:start + INSERT_ROWS]
                params = [v for pair in zip(range(first + start, first + start + len(chunk)), chunk) for v in pair]
                conn.execute(_insert_sql(len(chunk)), params)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._last = first + len(records) - 1
        return self._last

    async def read(self, after: int, *, limit: int) -> list[tuple[int, bytes]]:
        return await self._run(self._read_sync, after, limit)

    def _read_sync(self, after: int, limit: int) -> list[tuple[int, bytes]]:
        return self._conn.execute(
            "SELECT seq, data FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
        ).fetchall()

    async def last_seq(self) -> int:
        return self._last

    async def save_snapshot(self, seq: int, data: bytes) -> None:
        await self._run(self._save_snapshot_sync, seq, data)

    def _save_snapshot_sync(self, seq: int, data: bytes) -> None:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT OR REPLACE INTO snapshots (seq, data) VALUES (?, ?)", (seq, data))
        conn.execute("DELETE FROM snapshots WHERE seq < ?", (seq,))
        conn.execute("COMMIT")

    async def load_snapshot(self) -> tuple[int, bytes] | None:
        return await self._run(self._load_snapshot_sync)

    def _load_snapshot_sync(self) -> tuple[int, bytes] | None:
        return self._conn.execute("SELECT seq, data FROM snapshots ORDER BY seq DESC LIMIT 1").fetchone()

    async def aclose(self) -> None:
        if self._conn is None:
            return
        conn, self._conn = self._conn, None
        await trio.to_thread.run_sync(conn.close, limiter=self._limiter)
