"""The embedded default store: one SQLite file in WAL mode, owned by one server process.

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

**The store format** (schema version 1). The files of a store at ``PATH``:

* ``PATH``: the SQLite database. Its header says what it is: ``application_id`` =
  :data:`APPLICATION_ID` (``0x43414c4c``, "CALL") marks a callsys store and ``user_version``
  is the schema version (:data:`SCHEMA_VERSION`). Tables: ``meta`` (``hall`` = the hall
  id the store belongs to), ``events`` (``seq``, one msgpack record per event, seq 1, 2,
  3 ... without gaps) and ``snapshots`` (the newest state). The marks are checkpointed
  into the file when written (identification may read the file without its ``-wal``), so
  a future format change must stamp ``user_version`` and checkpoint the same way.
* ``PATH-wal`` and ``PATH-shm``: SQLite's write-ahead log and its index. While the store
  is open, and after a crash, the newest events live **only** in ``PATH-wal``: copying or
  deleting these files by hand loses or corrupts them. ``callsys store backup`` copies a
  live store safely.
* ``PATH.lock``: the lock file, holding the pid of the process that has the store open.
  It is never deleted (see below).

**Opening** (:meth:`FileLog.open`) refuses, with a one-line :class:`LogError`, anything
that would lose or share events:

1. *One process at a time.* ``flock(LOCK_EX | LOCK_NB)`` on ``PATH.lock``, held until
   :meth:`FileLog.aclose` or the process's death (the kernel drops it on ``kill -9`` too).
   A second open — another server, or this process again — fails with
   :class:`StoreInUse` naming the holder's pid. Why a side file rather than a lock on
   the database itself: closing *any* descriptor of a file drops all of the process's
   POSIX locks on it, SQLite's included, so a descriptor of our own on the database is a
   hazard, while an ``flock`` on another file cannot touch SQLite's locking; the side
   file also exists before the database does (so creation is serialised too) and can
   hold the pid for the message. Deleting it would let a second process lock a new file
   while the first holds the old one, so it stays, and its identity is watched (4).
   ``flock`` needs a local file system. ``callsys store check`` and ``store backup``
   take no lock: they read through SQLite's own locking, beside the running writer.
2. *Only callsys stores of this hall.* A missing file is created complete under a
   temporary name and linked into place, so ``PATH`` is either absent or a whole store.
   An existing file is read (read-only, before anything is written) and refused with
   :class:`StoreRefused` — left byte for byte as it was — when it is empty, not SQLite,
   marked by another application, of a newer schema version, or another hall's. A file
   with ``application_id`` 0 is a store written before the marks existed **only** if it
   holds exactly callsys's three tables and this hall's ``hall`` row; then it is adopted
   (stamped, and checkpointed so the stamp is in the file itself); any other file with
   ``application_id`` 0 is another application's database and is refused.
3. *Writable now, not at the first commit.* The file and its directory (where SQLite
   creates ``-wal`` and ``-shm``) must be writable, and a probe write (rolled back, so the
   file is not changed) must succeed; otherwise :class:`StoreRefused`. Opening writes
   nothing else to an existing store (a damaged one stays as it was for ``store check``).
4. *Files that stay where they are.* The device and inode of ``PATH``, ``PATH-wal``,
   ``PATH-shm`` and ``PATH.lock`` are recorded at open. SQLite keeps writing into files
   that were unlinked under it — a commit "succeeds" into a ``-wal`` that vanishes at the
   next restart — so the paths are checked again: all four before every commit (a loss
   already visible raises :class:`StoreLost` and nothing is written, so the commands of
   that batch were not executed), ``PATH`` and ``PATH-wal`` again after it, before the
   journal acknowledges anything, and all four by :meth:`FileLog.verify`, which the
   journal calls while idle. On a loss the store checkpoints the whole log into ``PATH``
   if that is still the file it opened (SQLite's descriptors still reach the unlinked
   ``-wal``), so every event acknowledged before is kept; a batch caught only by the
   check after its commit is acknowledged if that checkpoint saved it and refused if not.
   Every later call raises :class:`StoreLost`: the server stops before acknowledging
   more. Cost: the check is one ``stat`` of the directory (its timestamps move whenever
   an entry is removed, added or renamed; the files are compared only then), ~4 us,
   twice per commit. Stat-ing the four files instead cost ~20 us and, measured on these
   2-core VMs, made the next commit ~60-100 us slower (~300 us unloaded): touching the
   ``-wal``'s inode between commits slows its next fsync. With the directory check,
   ``append`` of 10 records took the same time with and without it (``python -m
   benchmarks.ingest`` too), so every commit is checked rather than one in N.

A failed commit reports SQLite's own error ("database or disk is full"), not the error of
the rollback that follows it (SQLite has usually rolled back already).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Final, Sequence

import trio

from .base import EventLog, LogError, StoreInUse, StoreLost, StoreRefused

APPLICATION_ID: Final = 0x43414C4C  # SQLite header application_id of a callsys store: b"CALL"
SCHEMA_VERSION: Final = 1  # SQLite header user_version: the store format this code writes and reads
TABLES: Final = frozenset({"meta", "events", "snapshots"})

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE events (seq INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE snapshots (seq INTEGER PRIMARY KEY, data BLOB NOT NULL);
"""


INLINE_APPEND: Final = True  # group commits run on the event loop (see the module docstring)
FRESH_DIR_NS: Final = 50_000_000  # ns: a directory changed this recently is checked file by file (coarse timestamps)
INSERT_ROWS: Final = 500  # rows per INSERT statement (2 parameters each; SQLite allows 32,766)


@lru_cache(maxsize=INSERT_ROWS)
def _insert_sql(rows: int) -> str:
    return "INSERT INTO events (seq, data) VALUES " + ",".join(["(?,?)"] * rows)


@dataclass(frozen=True, slots=True)
class StoreInfo:
    """What a store file says about itself (see the module docstring)."""

    path: Path
    application_id: int
    schema_version: int
    hall: str | None
    legacy: bool  # written before application_id existed: adopted on open


def lock_path(path: Path) -> Path:
    """The lock file of the store at *path*."""
    return path.with_name(path.name + ".lock")


def sidecars(path: Path) -> tuple[Path, Path]:
    """SQLite's ``-wal`` and ``-shm`` files of the database at *path*."""
    return path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")


def describe(conn: sqlite3.Connection, path: Path, hall_id: str | None) -> StoreInfo:
    """Read and judge what *conn* (open on *path*) holds.

    Args:
        hall_id: the hall the store must belong to, or None for any hall.

    Raises:
        StoreRefused: it is not a callsys store (of *hall_id*) this code can read.
    """
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = frozenset(name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                           if not name.startswith("sqlite_"))
        hall = None
        if "meta" in tables:
            row = conn.execute("SELECT value FROM meta WHERE key = 'hall'").fetchone()
            hall = row[0] if row is not None else None
    except sqlite3.DatabaseError as exc:
        raise StoreRefused(f"{path} is not a callsys store: SQLite cannot read it ({exc})") from None
    if app_id not in (APPLICATION_ID, 0):
        raise StoreRefused(f"{path} is not a callsys store: it belongs to another application "
                           f"(SQLite application_id 0x{app_id:08x})")
    if app_id == 0 and (tables != TABLES or hall is None or version != 0):
        listed = ", ".join(sorted(tables)) or "none"
        raise StoreRefused(f"{path} is not a callsys store: another SQLite database (tables: {listed})")
    if version > SCHEMA_VERSION:
        raise StoreRefused(f"{path} was written by a newer callsys (store format {version}; "
                           f"this one reads up to {SCHEMA_VERSION}): upgrade callsys")
    if app_id == APPLICATION_ID and (version < 1 or not TABLES <= tables or hall is None):
        raise StoreRefused(f"{path} is marked as a callsys store but is incomplete "
                           f"(format {version}, tables: {', '.join(sorted(tables)) or 'none'}, hall: {hall!r})")
    if hall_id is not None and hall != hall_id:
        raise StoreRefused(f"store {path} belongs to hall {hall!r}, not {hall_id!r}")
    return StoreInfo(path, app_id, version, hall, legacy=app_id == 0)


def connect_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection to the database at *path* through SQLite's locking (safe
    beside a running server; SQLite may create the ``-wal``/``-shm`` files it needs)."""
    return sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, isolation_level=None,
                           check_same_thread=False)


def identify(path: Path, hall_id: str | None) -> StoreInfo:
    """Judge the existing file at *path* without writing to it.

    Without a ``-wal`` file the database is read with ``immutable=1`` (no locks, no
    side files created); with one it is read through the log, read-only. Call it only
    while no other connection of this process has *path* open (it would drop their locks
    on close, see the module docstring): :meth:`FileLog.open` does so under the lock.

    Raises:
        StoreRefused: see :func:`describe`; also an empty file.
    """
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise LogError(f"cannot open store {path}: {exc}") from None
    if size == 0:
        raise StoreRefused(f"{path} is empty (0 bytes), not a callsys store: remove it or name another store")
    wal, _ = sidecars(path)
    uri = path.absolute().as_uri() + ("?mode=ro" if wal.exists() else "?mode=ro&immutable=1")
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise StoreRefused(f"{path} is not a callsys store: SQLite cannot open it ({exc})") from None
    try:
        return describe(conn, path, hall_id)
    finally:
        conn.close()


def _file_id(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


class FileLog(EventLog):
    """An :class:`EventLog` in a SQLite file. Open it with :meth:`open`."""

    def __init__(self, path: Path, hall_id: str, conn: sqlite3.Connection, *,
                 inline_append: bool = INLINE_APPEND, lock_fd: int | None = None) -> None:
        self.path = path
        self.hall_id = hall_id
        self.inline_append = inline_append
        self._conn: sqlite3.Connection | None = conn
        self._lock_fd = lock_fd
        self._limiter = trio.CapacityLimiter(1)
        self._last = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
        self._lost: StoreLost | None = None
        self._watched: tuple[Path, ...] = ()
        self._ids: tuple[tuple[int, int], ...] = ()
        self._dir_stamp: tuple[int, ...] | None = None  # the directory as it was when all files were in place
        if lock_fd is not None:
            lock = os.fstat(lock_fd)
            full = path.absolute()
            self._watched = (full, *sidecars(full), lock_path(full))
            self._dir = str(full.parent)
            self._ids = (*(_file_id(p) for p in self._watched[:3]), (lock.st_dev, lock.st_ino))

    @property
    def name(self) -> str:
        return str(self.path)

    @classmethod
    async def open(cls, path: str | Path, hall_id: str) -> "FileLog":
        """Open the store at *path* for hall *hall_id*, creating it if there is no file.

        Holds the store's lock until :meth:`aclose` (see the module docstring).

        Raises:
            StoreInUse: another process (or another open in this one) holds the store.
            StoreRefused: the file is not a writable callsys store of this hall; it was not changed.
            LogError: the file cannot be opened at all.
        """
        path = Path(path)
        return await trio.to_thread.run_sync(cls._open_sync, path, hall_id)

    @classmethod
    def _open_sync(cls, path: Path, hall_id: str) -> "FileLog":
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LogError(f"cannot open store {path}: {exc}") from None
        if path.exists():
            identify(path, hall_id)  # refuse a stranger before creating the lock file beside it
        lock_fd = _lock(path)
        try:
            return cls._open_locked(path, hall_id, lock_fd)
        except BaseException:
            os.close(lock_fd)
            raise

    @classmethod
    def _open_locked(cls, path: Path, hall_id: str, lock_fd: int) -> "FileLog":
        try:
            if path.exists():
                info = identify(path, hall_id)  # again: the file may have changed before we held the lock
            else:
                _create(path, hall_id)
                info = None
            _check_writable(path)
            conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        except (sqlite3.Error, OSError) as exc:
            raise LogError(f"cannot open store {path}: {exc}") from None
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            if info is not None and info.legacy:
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the stamp into the file itself
            _probe_write(conn)
            return cls(path, hall_id, conn, lock_fd=lock_fd)
        except (sqlite3.Error, OSError) as exc:
            conn.close()
            raise StoreRefused(f"cannot write to store {path}: {exc}") from None

    @classmethod
    async def open_readonly(cls, path: str | Path, hall_id: str | None) -> tuple["FileLog", StoreInfo]:
        """Open the store at *path* to read it beside whoever writes it (no lock taken).

        Everything read through it comes from one read transaction, one consistent point
        in time, however long the reading takes (the server keeps committing meanwhile;
        its log file grows until the reader closes).

        Raises:
            StoreRefused: no callsys store (of *hall_id*, when given) is there.
        """
        path = Path(path)
        return await trio.to_thread.run_sync(cls._open_readonly_sync, path, hall_id)

    @classmethod
    def _open_readonly_sync(cls, path: Path, hall_id: str | None) -> tuple["FileLog", StoreInfo]:
        if not path.is_file():
            raise StoreRefused(f"there is no store at {path}")
        if path.stat().st_size == 0:
            raise StoreRefused(f"{path} is empty (0 bytes), not a callsys store")
        try:
            conn = connect_readonly(path)
            conn.execute("BEGIN")
        except sqlite3.Error as exc:
            raise StoreRefused(f"{path} is not a callsys store: SQLite cannot open it ({exc})") from None
        try:
            info = describe(conn, path, hall_id)
            return cls(path, info.hall, conn), info
        except BaseException:
            conn.close()
            raise

    async def count(self) -> tuple[int, int, int]:
        """``(records, first seq, last seq)`` as stored (0s when empty)."""
        return await self._run(lambda: tuple(self._conn.execute(
            "SELECT COUNT(*), COALESCE(MIN(seq), 0), COALESCE(MAX(seq), 0) FROM events").fetchone()))

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
        if self._lost is None and (moved := self._moved()):
            self._lose(*moved)
        if self._lost is not None:
            raise self._lost  # nothing written: the commands were not executed
        first = self._last + 1
        conn = self._conn
        with _transaction(conn):
            # One multi-row INSERT per chunk, not executemany: every sqlite3_step releases
            # and retakes the GIL, and with the event loop busy each retake can wait for
            # the interpreter's switch interval (ms), so a row-by-row batch took tens of ms.
            for start in range(0, len(records), INSERT_ROWS):
                chunk = records[start:start + INSERT_ROWS]
                params = [v for pair in zip(range(first + start, first + start + len(chunk)), chunk) for v in pair]
                conn.execute(_insert_sql(len(chunk)), params)
        self._last = first + len(records) - 1
        # Moved while committing? Then the records went to unlinked files: they are
        # durable only if the checkpoint into the database file saved them.
        if (moved := self._moved()) and not self._lose(*moved):
            raise self._lost
        return self._last

    def _moved(self) -> tuple[Path, str] | None:
        """The first watched file that is gone or another file now; None if all are in place.

        Cheap while nothing changes: one ``stat`` of the directory, whose timestamps move
        whenever an entry in it is removed, added or renamed. Only then (or while the
        directory's last change is too recent for its timestamps to tell two changes
        apart) are the files themselves checked. Stat-ing the ``-wal`` itself after every
        commit made the next commit ~60 us slower here (measured), a directory stat did not.
        """
        if not self._watched:
            return None
        try:
            st = os.stat(self._dir)
        except OSError:
            return self._moved_files() or (self._watched[0].parent, "was removed")
        stamp = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
        if stamp == self._dir_stamp and time.time_ns() - st.st_ctime_ns > FRESH_DIR_NS:
            return None
        moved = self._moved_files()
        if moved is None:
            self._dir_stamp = stamp
        return moved

    def _moved_files(self) -> tuple[Path, str] | None:
        for path, expected in zip(self._watched, self._ids):
            try:
                st = os.stat(path)
            except FileNotFoundError:
                return path, "was removed"
            if (st.st_dev, st.st_ino) != expected:
                return path, "was replaced by another file"
        return None

    def _lose(self, path: Path, what: str) -> bool:
        """Record the loss as :class:`StoreLost` (raised by every later call), after saving
        the log into the database file if it is still in place; True if that worked."""
        why = ("another process could open the store beside this one" if path == self._watched[-1]
               else "what is committed now would not survive a restart")
        try:
            intact = _file_id(self.path) == self._ids[0]
        except OSError:
            intact = False
        saved = False
        if intact:
            try:
                busy, _, _ = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                saved = not busy
                outcome = (f"every event committed so far was checkpointed into {self.path}" if saved else
                           f"a reader kept part of the log from being checkpointed into {self.path}")
            except sqlite3.Error as exc:
                outcome = f"checkpointing the log into {self.path} failed too ({exc})"
        else:
            outcome = f"{self.path} is no longer the file this store wrote to: its events are not in it"
        self._lost = StoreLost(f"store {self.path}: {path} {what} while the store was open, so {why}; stopping; "
                               f"{outcome}. Never remove or copy store files by hand")
        return saved

    async def verify(self) -> None:
        if self._conn is None:
            return
        if self._lost is None:
            if self._limiter.borrowed_tokens == 0:
                self._verify_sync()
            else:
                await self._run(self._verify_sync)
        if self._lost is not None:
            raise self._lost

    def _verify_sync(self) -> None:
        if moved := self._moved():
            self._lose(*moved)

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
        with _transaction(conn):
            conn.execute("INSERT OR REPLACE INTO snapshots (seq, data) VALUES (?, ?)", (seq, data))
            conn.execute("DELETE FROM snapshots WHERE seq < ?", (seq,))

    async def load_snapshot(self) -> tuple[int, bytes] | None:
        return await self._run(self._load_snapshot_sync)

    def _load_snapshot_sync(self) -> tuple[int, bytes] | None:
        return self._conn.execute("SELECT seq, data FROM snapshots ORDER BY seq DESC LIMIT 1").fetchone()

    async def aclose(self) -> None:
        if self._conn is None:
            return
        conn, self._conn = self._conn, None
        try:
            await trio.to_thread.run_sync(conn.close, limiter=self._limiter)
        finally:
            if self._lock_fd is not None:
                fd, self._lock_fd = self._lock_fd, None
                os.close(fd)  # releases the flock


class _transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``; on failure a rollback that never hides the error.

    After SQLITE_FULL and some I/O errors SQLite has already rolled back, and a ROLLBACK
    would fail with "cannot rollback - no transaction is active", masking the cause.
    """

    __slots__ = ("conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind, exc, tb) -> None:
        if kind is None:
            try:
                self.conn.execute("COMMIT")
                return
            except sqlite3.Error as failed:
                self._rollback(failed)
                raise
        self._rollback(exc)

    def _rollback(self, exc: BaseException) -> None:
        if self.conn.in_transaction:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error as rollback:
                exc.add_note(f"the rollback failed too: {rollback}")


def _lock(path: Path) -> int:
    """Take the store's lock (see the module docstring); returns the lock file's descriptor.

    Raises:
        StoreInUse: someone holds it.
    """
    lock = lock_path(path)
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise LogError(f"cannot open store {path}: lock file {lock}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = _holder(fd)
        os.close(fd)
        raise StoreInUse(f"store {path} is in use by another process (pid {pid or 'unknown'}, holding {lock}): "
                         "stop it first; `callsys store backup` copies a live store", pid) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _holder(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


def _create(path: Path, hall_id: str) -> None:
    """Build a complete empty store beside *path*, then link it into place (never over a file)."""
    tmp = path.with_name(f".{path.name}.new-{os.getpid()}")
    for leftover in (tmp, *sidecars(tmp)):
        leftover.unlink(missing_ok=True)
    conn = sqlite3.connect(tmp, isolation_level=None)
    try:
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.executescript(_SCHEMA)
        conn.execute("INSERT INTO meta VALUES ('hall', ?)", (hall_id,))
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()  # the last connection: the log is checkpointed into the file and removed
    try:
        _fsync(tmp)
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise StoreRefused(f"{path} appeared while the store was being created; not touching it") from None
        except OSError:  # no hard links on this file system: the lock keeps other callsys processes out
            if path.exists():
                raise StoreRefused(f"{path} appeared while the store was being created; not touching it") from None
            os.rename(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync(path.parent)


def _fsync(path: Path) -> None:
    """Flush a file, or a directory's entries, to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _probe_write(conn: sqlite3.Connection) -> None:
    """Write a row and roll it back: fails on a store SQLite could open only for reading
    (even for root: immutable files, read-only mounts), and leaves the file as it was."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('probe', '')")
    finally:
        conn.execute("ROLLBACK")


def _check_writable(path: Path) -> None:
    """Refuse a store that could be read but not written (so at start, not at the first commit).

    ``os.access`` also answers for root on immutable files and read-only mounts;
    :func:`_probe_write` catches whatever it cannot see.
    """
    if not os.access(path, os.R_OK | os.W_OK):
        raise StoreRefused(f"store {path} is read-only (mode {path.stat().st_mode & 0o777:o}): "
                           "callsys must write to it")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise StoreRefused(f"store {path}: its directory {path.parent} is not writable "
                           "(SQLite keeps the store's -wal and -shm files there)")


@dataclass(frozen=True, slots=True)
class BackupInfo:
    """What :func:`backup` copied."""

    source: Path
    dest: Path
    hall: str
    records: int
    last_seq: int
    bytes: int


def backup(source: Path, dest: Path, *, force: bool = False) -> BackupInfo:
    """Copy the store at *source* to *dest* with SQLite's online backup API.

    The copy is one consistent point in time (one read transaction, in one step), taken
    beside a running server without its lock and without blocking it. It is written
    under a temporary name and renamed into place, so *dest* is never half a store.

    Args:
        force: replace an existing *dest* (refused while a server holds it).

    Raises:
        StoreRefused: *source* is not a callsys store, or *dest* exists and *force* is false.
        StoreInUse: *force* was given but a server holds *dest*.
    """
    source, dest = Path(source), Path(dest)
    if dest.absolute() == source.absolute():
        raise StoreRefused(f"the backup {dest} would overwrite its own source")
    if dest.exists() and not force:
        raise StoreRefused(f"{dest} exists: not overwriting it (add --force to replace it)")
    src, info = FileLog._open_readonly_sync(source, None)
    conn = src._conn
    lock_fd = None
    tmp = dest.with_name(f".{dest.name}.backup-{os.getpid()}")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists():
            lock_fd = _lock(dest)  # no server may be using the store we replace
        for leftover in (tmp, *sidecars(tmp)):
            leftover.unlink(missing_ok=True)
        copy = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.backup(copy)  # pages=-1: everything in one step, so one consistent snapshot
            describe(copy, tmp, info.hall)
            records, last = copy.execute("SELECT COUNT(*), COALESCE(MAX(seq), 0) FROM events").fetchone()
        finally:
            copy.close()  # the last connection: a -wal of the copy is checkpointed into it and removed
        _fsync(tmp)
        if lock_fd is not None:
            for stale in sidecars(dest):  # the replaced store's log must not be replayed onto the copy
                stale.unlink(missing_ok=True)
        os.replace(tmp, dest)
        _fsync(dest.parent)
    except sqlite3.Error as exc:
        raise LogError(f"cannot back up store {source} to {dest}: {exc}") from None
    finally:
        conn.close()
        tmp.unlink(missing_ok=True)
        if lock_fd is not None:
            os.close(lock_fd)
    return BackupInfo(source, dest, info.hall, records, last, dest.stat().st_size)
