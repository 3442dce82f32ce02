"""The embedded store refuses to be shared, to adopt strangers, to hide damage or a lost file.

Server-level behaviour (``callsys serve`` refusing, fail-stop replies, files removed under
a running server, live backups) is in ``test_store_server.py``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys

import msgpack
import pytest
import trio

from callsys.events import TicketCalled, to_row
from callsys.log import (FileLog, LogError, StoreDamaged, StoreInUse, StoreLost, StoreRefused, open_journal,
                         open_store)
from callsys.log import sqlite as sqlite_store
from callsys.log.sqlite import APPLICATION_ID, SCHEMA_VERSION, lock_path, sidecars
from conftest import hall_time
from store_support import DEMO, callsys, fill, sql


async def recovery_error(path, hall) -> BaseException:
    """The one error recovering the store at *path* raises (out of the journal's nursery)."""
    try:
        async with open_journal(f"file:{path}", hall) as journal:
            await journal.recover()
    except BaseException as exc:
        while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
            exc = exc.exceptions[0]
        return exc
    raise AssertionError("recovery succeeded")


def header(path) -> tuple[int, int]:
    """``(application_id, user_version)`` read from the file's header itself."""
    data = path.read_bytes()[:100]
    return int.from_bytes(data[68:72], "big"), int.from_bytes(data[60:64], "big")


# ---------------------------------------------------------------------- 1. one process at a time


async def test_second_open_in_this_process_is_refused_naming_the_pid(tmp_path):
    store = await FileLog.open(tmp_path / "hall.db", "demo")
    with pytest.raises(StoreInUse, match=rf"in use by another process \(pid {os.getpid()}\b") as refused:
        await FileLog.open(tmp_path / "hall.db", "demo")
    assert refused.value.pid == os.getpid()
    await store.append([b"a"])  # the holder is unaffected
    await store.aclose()
    again = await FileLog.open(tmp_path / "hall.db", "demo")  # released on close
    assert await again.last_seq() == 1
    await again.aclose()


_HOLD = """
import sys, trio
from callsys.log import FileLog
async def main():
    store = await FileLog.open(sys.argv[1], "demo")
    print("open", flush=True)
    await trio.sleep_forever()
trio.run(main)
"""


async def test_lock_held_by_another_process_is_freed_by_kill_9(tmp_path):
    path = tmp_path / "hall.db"
    async with trio.open_nursery() as nursery:
        child = await nursery.start(lambda task_status: trio.run_process(
            [sys.executable, "-c", _HOLD, str(path)], stdout=subprocess.PIPE, check=False, task_status=task_status))
        assert (await child.stdout.receive_some()).startswith(b"open")
        with pytest.raises(StoreInUse, match=rf"pid {child.pid}\b"):
            await FileLog.open(path, "demo")
        child.send_signal(signal.SIGKILL)
        await child.wait()
    store = await FileLog.open(path, "demo")  # the kernel dropped the dead holder's lock
    await store.aclose()
    assert lock_path(path).exists()  # the lock file stays (deleting it would race)


# ---------------------------------------------------------------------- 2. only callsys stores of this hall


def _foreign_sqlite(path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE contacts (name TEXT, phone TEXT)")
    conn.execute("INSERT INTO contacts VALUES ('Li', '123')")
    conn.commit()
    conn.close()


def _other_app(path) -> None:
    _foreign_sqlite(path)
    sql(path, "PRAGMA application_id = 1234")


def _look_alike(path) -> None:  # callsys's table names, but no hall row: still not ours
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                       "CREATE TABLE events (seq INTEGER PRIMARY KEY, data BLOB NOT NULL);"
                       "CREATE TABLE snapshots (seq INTEGER PRIMARY KEY, data BLOB NOT NULL);")
    conn.close()


async def _other_hall(path) -> None:
    store = await FileLog.open(path, "qingdao")
    await store.append([b"x"])
    await store.aclose()


async def _newer(path) -> None:
    store = await FileLog.open(path, "demo")
    await store.aclose()
    sql(path, f"PRAGMA user_version = {SCHEMA_VERSION + 1}")


STRANGERS = {
    "empty": (lambda p: p.write_bytes(b""), r"is empty \(0 bytes\)"),
    "text": (lambda p: p.write_text("hello, not a database\n" * 10), "not a callsys store: SQLite cannot"),
    "foreign sqlite": (_foreign_sqlite, r"another SQLite database \(tables: contacts\)"),
    "other application": (_other_app, "belongs to another application .*0x000004d2"),
    "look-alike": (_look_alike, "another SQLite database"),
    "other hall": (_other_hall, "belongs to hall 'qingdao', not 'demo'"),
    "newer format": (_newer, f"newer callsys \\(store format {SCHEMA_VERSION + 1}"),
}


@pytest.mark.parametrize("kind", sorted(STRANGERS))
async def test_strangers_are_refused_and_left_untouched(tmp_path, kind):
    path = tmp_path / "hall.db"
    make, message = STRANGERS[kind]
    made = make(path)
    if hasattr(made, "__await__"):
        await made
    before = path.read_bytes()
    around = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(StoreRefused, match=message) as refused:
        await FileLog.open(path, "demo")
    assert "\n" not in str(refused.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == around  # no lock file, no -wal beside a stranger


async def _old_code_store(path, hall_id: str, records: list[bytes], extra: str = "") -> None:
    """A store exactly as callsys wrote it before the format marks (application_id 0)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                       "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, data BLOB NOT NULL);"
                       "CREATE TABLE IF NOT EXISTS snapshots (seq INTEGER PRIMARY KEY, data BLOB NOT NULL);" + extra)
    conn.execute("INSERT INTO meta VALUES ('hall', ?)", (hall_id,))
    conn.executemany("INSERT INTO events VALUES (?, ?)", enumerate(records, 1))
    conn.close()


_OLD_CODE_CRASHED = """
import os, sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA journal_mode=WAL")
conn.executescript("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                   "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, data BLOB NOT NULL);"
                   "CREATE TABLE IF NOT EXISTS snapshots (seq INTEGER PRIMARY KEY, data BLOB NOT NULL);")
conn.execute("INSERT INTO meta VALUES ('hall', 'demo')")
conn.executemany("INSERT INTO events VALUES (?, ?)", [(1, b"a"), (2, b"b")])
os.kill(os.getpid(), 9)  # before any checkpoint: the tables exist only in the -wal
"""


@pytest.mark.parametrize("crashed", [False, True], ids=["closed", "crashed"])
async def test_a_store_of_the_code_before_format_marks_is_adopted(tmp_path, crashed):
    path = tmp_path / "hall.db"
    if crashed:
        await trio.run_process([sys.executable, "-c", _OLD_CODE_CRASHED, str(path)], check=False)
        assert sidecars(path)[0].stat().st_size > 0
    else:
        await _old_code_store(path, "demo", [b"a", b"b"])
    assert header(path) == (0, 0)
    store = await FileLog.open(path, "demo")
    assert await store.read(0, limit=10) == [(1, b"a"), (2, b"b")]
    await store.aclose()
    assert header(path) == (APPLICATION_ID, SCHEMA_VERSION)  # stamped, in the file itself


async def test_an_old_looking_store_with_more_tables_is_not_adopted(tmp_path):
    path = tmp_path / "hall.db"
    await _old_code_store(path, "demo", [b"a"], extra="CREATE TABLE notes (x);")
    before = path.read_bytes()
    with pytest.raises(StoreRefused, match="tables: events, meta, notes, snapshots"):
        await FileLog.open(path, "demo")
    assert path.read_bytes() == before


async def test_a_new_store_is_marked_and_whole(tmp_path):
    path = tmp_path / "new" / "hall.db"
    store = await FileLog.open(path, "demo")
    await store.aclose()
    assert header(path) == (APPLICATION_ID, SCHEMA_VERSION)
    assert not any(p.name.startswith(".hall.db.new") for p in path.parent.iterdir())  # the temporary is gone


# ---------------------------------------------------------------------- 6. read-only stores, masked errors


def _make_read_only(path) -> None:
    if os.geteuid() != 0:
        path.chmod(0o444)
    elif subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("root, and chattr +i is not available here: nothing can make a file read-only for root")


def _undo_read_only(path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)
    path.chmod(0o755 if path.is_dir() else 0o644)


@pytest.mark.parametrize("what", ["file", "directory"])
async def test_a_read_only_store_is_refused_at_open(tmp_path, demo_hall, what):
    path = tmp_path / "d" / "hall.db"
    await fill(path, demo_hall, 3)
    target = path if what == "file" else path.parent
    _make_read_only(target)
    try:
        with pytest.raises(StoreRefused, match="read-only" if what == "file" else "directory .* is not writable"):
            await FileLog.open(path, "demo")
    finally:
        _undo_read_only(target)
    store = await FileLog.open(path, "demo")  # writable again: fine
    assert await store.last_seq() == 3
    await store.aclose()


class _FullDisk:
    """A connection whose COMMIT fails as SQLite's does on a full disk: the transaction is
    rolled back by SQLite itself, then the error is raised."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction

    def execute(self, statement: str, *args):
        if statement == "COMMIT":
            self._conn.execute("ROLLBACK")
            raise sqlite3.OperationalError("database or disk is full")
        return self._conn.execute(statement, *args)

    def close(self) -> None:
        self._conn.close()


async def test_a_failed_commit_reports_its_own_error_not_the_rollbacks(tmp_path):
    store = await FileLog.open(tmp_path / "hall.db", "demo")
    await store.append([b"a"])
    store._conn = _FullDisk(store._conn)
    with pytest.raises(LogError) as failed:
        await store.append([b"b"])
    assert "database or disk is full" in str(failed.value)
    assert "cannot rollback" not in str(failed.value) + "".join(getattr(failed.value, "__notes__", []))
    await store.aclose()


# ---------------------------------------------------------------------- 5. files removed under an open store


@pytest.mark.parametrize("victim", ["-wal", "-shm", ".lock", ""])
async def test_a_removed_file_stops_the_store_before_the_commit_is_acknowledged(tmp_path, victim):
    path = tmp_path / "hall.db"
    store = await FileLog.open(path, "demo")
    assert await store.append([b"a", b"b"]) == 2
    os.unlink(f"{path}{victim}")
    with pytest.raises(StoreLost, match=f"{path}{victim} was removed"):
        await store.append([b"c"])
    with pytest.raises(StoreLost):  # and every later one
        await store.append([b"d"])
    await store.aclose()


async def test_the_check_stats_only_the_directory_until_it_changes(tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite_store, "FRESH_DIR_NS", 0)  # trust the directory's timestamps at once
    path = tmp_path / "hall.db"
    store = await FileLog.open(path, "demo")
    file_checks = []
    moved_files = store._moved_files
    store._moved_files = lambda: file_checks.append(1) or moved_files()
    await store.append([b"a"])
    checks_after_first = len(file_checks)
    for _ in range(5):
        await store.append([b"b"])
    assert len(file_checks) == checks_after_first <= 1  # nothing changed: the files were not looked at
    os.unlink(f"{path}-wal")  # changes the directory
    with pytest.raises(StoreLost, match="-wal was removed"):
        await store.append([b"c"])
    await store.aclose()


async def test_a_replaced_database_file_is_noticed(tmp_path):
    path = tmp_path / "hall.db"
    store = await FileLog.open(path, "demo")
    await store.append([b"a"])
    shutil.copy(path, tmp_path / "copy.db")
    os.replace(tmp_path / "copy.db", path)
    with pytest.raises(StoreLost, match="was replaced by another file"):
        await store.verify()
    await store.aclose()


_LOSE_WAL = """
import os, sys, trio
from callsys.log import FileLog
async def main():
    store = await FileLog.open(sys.argv[1], "demo")
    await store.append([b"acknowledged-%d" % i for i in range(50)])
    os.unlink(sys.argv[1] + "-wal")
    try:
        await store.verify()
    except Exception as exc:
        print(type(exc).__name__, flush=True)
    os.kill(os.getpid(), 9)  # no clean close: only what is in the database file survives
trio.run(main)
"""


async def test_events_acknowledged_before_the_wal_was_removed_survive_kill_9(tmp_path):
    path = tmp_path / "hall.db"
    done = await trio.run_process([sys.executable, "-c", _LOSE_WAL, str(path)], capture_stdout=True, check=False)
    assert done.returncode == -signal.SIGKILL
    assert done.stdout.strip() == b"StoreLost"
    store = await FileLog.open(path, "demo")
    rows = await store.read(0, limit=100)
    await store.aclose()
    assert [data for _, data in rows] == [b"acknowledged-%d" % i for i in range(50)]  # checkpointed before stopping


_LOSE_WAL_WHILE_COMMITTING = """
import os, sys, trio
from callsys.log import FileLog, StoreLost
class UnlinkOnCommit:  # the -wal disappears between the check before a commit and the commit
    def __init__(self, conn):
        self.conn = conn
    in_transaction = property(lambda self: self.conn.in_transaction)
    def execute(self, statement, *args):
        if statement == "COMMIT" and os.path.exists(sys.argv[1] + "-wal"):
            os.unlink(sys.argv[1] + "-wal")
        return self.conn.execute(statement, *args)
async def main():
    store = await FileLog.open(sys.argv[1], "demo")
    await store.append([b"before-%d" % i for i in range(20)])
    store._conn = UnlinkOnCommit(store._conn)
    print(await store.append([b"during"]), flush=True)  # saved by the checkpoint: acknowledged
    try:
        await store.append([b"after"])
    except StoreLost:
        print("StoreLost", flush=True)
    os.kill(os.getpid(), 9)
trio.run(main)
"""


async def test_a_batch_whose_wal_vanished_during_its_commit_is_acknowledged_only_once_saved(tmp_path):
    path = tmp_path / "hall.db"
    done = await trio.run_process([sys.executable, "-c", _LOSE_WAL_WHILE_COMMITTING, str(path)],
                                  capture_stdout=True, check=False)
    assert done.returncode == -signal.SIGKILL
    assert done.stdout.split() == [b"21", b"StoreLost"]
    store = await FileLog.open(path, "demo")
    rows = await store.read(0, limit=100)
    await store.aclose()
    assert [data for _, data in rows] == [b"before-%d" % i for i in range(20)] + [b"during"]


# ---------------------------------------------------------------------- 3. damage is named, with its seq


def _record(seq: int, data: bytes):
    return lambda path: sql(path, "UPDATE events SET data = ? WHERE seq = ?", data, seq)


DAMAGE = {
    "gap": (lambda path: sql(path, "DELETE FROM events WHERE seq = 7"), 7, "the record is missing .*from 6 to 8"),
    "undecodable": (_record(5, b"\xc1\xc1"), 5, "cannot be decoded"),
    "truncated": (_record(5, msgpack.packb(["ticket_issued", 1.0])[:-1]), 5, "cannot be decoded"),
    "unknown kind": (_record(9, msgpack.packb(["ticket_teleported", 1.0, 2])), 9, "unknown event kind 'ticket_teleported'"),
    "not a row": (_record(3, msgpack.packb({"kind": "ticket_issued"})), 3, "wrong shape .*not \\[kind, field...\\]"),
    "too few fields": (_record(4, msgpack.packb(["ticket_issued", 1.0, 4])), 4, "ticket_issued record has the wrong shape"),
    "does not apply": (_record(6, msgpack.packb(to_row(TicketCalled(hall_time(9, 31), 999, 1, "C999", "SOC", False)))),
                       6, "ticket_called record does not apply"),
}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
async def test_recovery_names_the_damaged_seq(tmp_path, demo_hall, kind):
    path = tmp_path / "hall.db"
    await fill(path, demo_hall, 12)
    damage, seq, message = DAMAGE[kind]
    damage(path)
    damaged = await recovery_error(path, demo_hall)
    assert isinstance(damaged, StoreDamaged)
    assert re.search(f"store {re.escape(str(path))} is damaged at seq {seq}: .*{message}", str(damaged))
    assert damaged.seq == seq
    assert "\n" not in str(damaged)


async def test_a_corrupt_snapshot_is_named(tmp_path, demo_hall):
    path = tmp_path / "hall.db"
    await fill(path, demo_hall, 12, snapshot=True)
    sql(path, "UPDATE snapshots SET data = ?", b"\x92\x01")
    damaged = await recovery_error(path, demo_hall)
    assert isinstance(damaged, StoreDamaged) and damaged.seq == 12
    assert "damaged at seq 12: the snapshot cannot be read back" in str(damaged)


async def test_recovery_of_a_healthy_store_is_unchanged(tmp_path, demo_hall):
    path = tmp_path / "hall.db"
    numbers = await fill(path, demo_hall, 12)
    async with open_journal(f"file:{path}", demo_hall) as journal:
        engine, seq = await journal.recover()
    assert seq == 12 and sorted(t.number for t in engine.state.tickets.values()) == numbers


# ---------------------------------------------------------------------- 8. a long replay leaves a snapshot


async def test_a_long_replay_writes_a_snapshot_so_the_next_start_replays_little(tmp_path, demo_hall):
    path = tmp_path / "hall.db"
    await fill(path, demo_hall, 300)  # as after kill -9: no closing snapshot
    async with open_journal(f"file:{path}", demo_hall, replay_snapshot_after=100, snapshot_on_close=False) as j:
        engine, seq = await j.recover()
        assert (seq, j.replayed, j.snapshot_seq) == (300, 300, 300)
        live = engine.snapshot()
    async with open_journal(f"file:{path}", demo_hall, replay_snapshot_after=100, snapshot_on_close=False) as j:
        engine, seq = await j.recover()
        assert (seq, j.replayed) == (300, 0)
        assert engine.snapshot() == live


async def test_a_short_replay_writes_no_snapshot(tmp_path, demo_hall):
    path = tmp_path / "hall.db"
    await fill(path, demo_hall, 50)
    async with open_journal(f"file:{path}", demo_hall, replay_snapshot_after=100, snapshot_on_close=False) as j:
        await j.recover()
        assert (j.replayed, j.snapshot_seq) == (50, 0)


# ---------------------------------------------------------------------- 4. store check / store backup


async def test_store_check_reports_a_healthy_store(tmp_path, demo_hall):
    path = tmp_path / "hall.db"
    await fill(path, demo_hall, 30, snapshot=True)
    await fill(path, demo_hall, 5)  # five more after the snapshot
    done = await callsys("store", "check", str(path), "--config", DEMO, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["healthy"] and report["damage"] is None
    assert (report["records"], report["first_seq"], report["last_seq"]) == (35, 1, 35)
    assert (report["snapshot_seq"], report["tickets"], report["hall"]) == (30, 35, "demo")
    table = await callsys("store", "check", f"file:{path}", "--config", DEMO)
    assert table.returncode == 0 and "healthy" in table.stdout and "35 (seq 1 to 35)" in table.stdout


@pytest.mark.parametrize("kind", ["gap", "unknown kind", "undecodable"])
async def test_store_check_names_the_damage_and_exits_2(tmp_path, demo_hall, kind):
    path = tmp_path / "hall.db"
    await fill(path, demo_hall, 12)
    damage, seq, message = DAMAGE[kind]
    damage(path)
    done = await callsys("store", "check", str(path), "--config", DEMO, "--json")
    assert done.returncode == 2
    report = json.loads(done.stdout)
    assert not report["healthy"] and report["damaged_seq"] == seq
    table = await callsys("store", "check", str(path), "--config", DEMO)
    assert table.returncode == 2 and "damaged" in table.stdout and f"seq {seq}" in table.stdout


async def test_store_check_compares_the_snapshot_with_the_replay(tmp_path, demo_hall):
    path = tmp_path / "hall.db"
    await fill(path, demo_hall, 10, snapshot=True)
    store = await open_store(f"file:{path}", "demo")
    _, data = await store.load_snapshot()
    await store.aclose()
    await fill(path, demo_hall, 10, snapshot=True)
    sql(path, "UPDATE snapshots SET data = ?", data)  # the state after 10 events, labelled seq 20
    done = await callsys("store", "check", str(path), "--config", DEMO, "--json")
    report = json.loads(done.stdout)
    assert done.returncode == 2 and report["damaged_seq"] == 20
    assert "snapshot differs from the replay" in report["damage"]


async def test_store_check_accepts_a_snapshot_from_before_idempotency_keys(tmp_path, demo_hall):
    path = tmp_path / "hall.db"
    await fill(path, demo_hall, 10, snapshot=True)
    store = await open_store(f"file:{path}", "demo")
    _, data = await store.load_snapshot()
    await store.aclose()
    state = msgpack.unpackb(data, raw=False)
    del state["seq"], state["keys"]  # what the code before idempotency keys wrote
    sql(path, "UPDATE snapshots SET data = ?", msgpack.packb(state, use_bin_type=True))
    done = await callsys("store", "check", str(path), "--config", DEMO, "--json")
    assert done.returncode == 0, done.stdout


async def test_store_check_refuses_what_is_not_a_store(tmp_path):
    (tmp_path / "notes.db").write_text("not a database at all, just words\n" * 5)
    done = await callsys("store", "check", str(tmp_path / "notes.db"), "--config", DEMO)
    assert done.returncode == 2 and "not a callsys store" in done.stderr and "Traceback" not in done.stderr
    missing = await callsys("store", "check", str(tmp_path / "nope.db"), "--config", DEMO)
    assert missing.returncode == 2 and "there is no store at" in missing.stderr


async def test_store_backup_copies_and_never_overwrites_without_force(tmp_path, demo_hall):
    path, copy = tmp_path / "hall.db", tmp_path / "backups" / "copy.db"
    await fill(path, demo_hall, 20)
    done = await callsys("store", "backup", str(path), str(copy), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["last_seq"] == 20
    assert not any(p.exists() for p in sidecars(copy))  # one self-contained file
    checked = await callsys("store", "check", str(copy), "--config", DEMO, "--json")
    assert checked.returncode == 0 and json.loads(checked.stdout)["last_seq"] == 20

    await fill(path, demo_hall, 5)
    before = copy.read_bytes()
    again = await callsys("store", "backup", str(path), str(copy))
    assert again.returncode == 2 and "exists: not overwriting it" in again.stderr
    assert copy.read_bytes() == before
    forced = await callsys("store", "backup", str(path), str(copy), "--force", "--json")
    assert forced.returncode == 0 and json.loads(forced.stdout)["last_seq"] == 25


async def test_store_backup_will_not_replace_a_store_in_use(tmp_path, demo_hall):
    path, other = tmp_path / "hall.db", tmp_path / "other.db"
    await fill(path, demo_hall, 3)
    held = await FileLog.open(other, "demo")
    try:
        done = await callsys("store", "backup", str(path), str(other), "--force")
    finally:
        await held.aclose()
    assert done.returncode == 2 and f"pid {os.getpid()}" in done.stderr
