"""The embedded default store: one SQLite file in WAL mode, owned by the server.

Why SQLite: it ships with Python (no service to install), commits are atomic, and in WAL
mode with ``synchronous=FULL`` a commit is one append + fsync of the write-ahead log, so a
group commit of many events costs one fsync. All calls run in a worker thread, one at a
time, so the event loop never blocks on the disk.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Sequence

import trio

from .base import EventLog, LogError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS snapshots (seq INTEGER PRIMARY KEY, data BLOB NOT NULL);
"""


class FileLog(EventLog):
    """An :class:`EventLog` in a SQLite file. Open it with :meth:`open`."""

    def __init__(self, path: Path, hall_id: str, conn: sqlite3.Connection) -> None:
        self.path = path
        self.hall_id = hall_id
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
        return await self._run(self._append_sync, records)

    def _append_sync(self, records: Sequence[bytes]) -> int:
        first = self._last + 1
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("INSERT INTO events (seq, data) VALUES (?, ?)",
                             zip(range(first, first + len(records)), records))
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
