"""The server and its store: refusing at start, failing stop with answers, files removed
under it, and live backups. The store's own rules are in ``test_store_integrity.py``."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
from collections import defaultdict
from functools import partial
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from callsys.client import ConnectionLost, RequestFailed, connect
from callsys.clock import ScaledClock
from callsys.log import open_journal
from callsys.protocol import CODECS, MSGPACK, CloseCode
from callsys.server import ServerSettings, serve_callsys
from callsys.wire import send_frames
from server_support import SECRET, START, TOKENS, guard, start_server
from store_support import DEMO, callsys, fill, serve, serve_refused, sql


def _take(rid: str) -> dict[str, Any]:
    return {"type": "take_number", "id": rid, "service": "SOC"}


async def _kiosk(url: str):
    """A bare msgpack WebSocket that said hello as a kiosk (to send frames in one write)."""
    codec = CODECS[MSGPACK]
    ws_cm = open_websocket_url(url, subprotocols=[codec.subprotocol])
    ws = await ws_cm.__aenter__()
    await ws.send_message(codec.encode({"type": "hello", "role": "kiosk", "token": TOKENS["kiosk"]}))
    assert codec.decode(await ws.get_message())["type"] == "welcome"
    return ws_cm, ws, codec


# ---------------------------------------------------------------------- refusing at start


@guard(60)
async def test_a_second_server_on_the_store_is_refused_naming_the_first(tmp_path):
    store = tmp_path / "hall.db"
    async with trio.open_nursery() as nursery:
        first = await serve(nursery, store)
        code, lines = await serve_refused(store)
        assert code == 2
        assert len(lines) == 1 and f"in use by another process (pid {first.pid}" in lines[0]
        async with connect(first.url, role="kiosk", token=TOKENS["kiosk"]) as kiosk:
            assert (await kiosk.request("take_number", service="SOC"))["number"] == "C001"  # untouched
        first.process.send_signal(signal.SIGKILL)
        await first.exited.wait()
    async with trio.open_nursery() as nursery:  # kill -9 freed the lock
        again = await serve(nursery, store)
        async with connect(again.url, role="kiosk", token=TOKENS["kiosk"]) as kiosk:
            assert (await kiosk.request("take_number", service="SOC"))["number"] == "C002"
        again.process.send_signal(signal.SIGTERM)


def _foreign(path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE accounts (id INTEGER, owner TEXT)")
    conn.commit()
    conn.close()


async def _gap(path, hall) -> None:
    await fill(path, hall, 10)
    sql(path, "DELETE FROM events WHERE seq = 4")


async def _bad_snapshot(path, hall) -> None:
    await fill(path, hall, 10, snapshot=True)
    sql(path, "UPDATE snapshots SET data = ?", b"\x00garbage")


REFUSED = {
    "empty file": (lambda path, hall: path.write_bytes(b""), "is empty (0 bytes)"),
    "foreign sqlite": (lambda path, hall: _foreign(path), "another SQLite database (tables: accounts)"),
    "gap in seq": (_gap, "is damaged at seq 4: the record is missing (the log jumps from 3 to 5)"),
    "corrupt snapshot": (_bad_snapshot, "is damaged at seq 10: the snapshot cannot be read back"),
}


@pytest.mark.parametrize("kind", sorted(REFUSED))
@guard(60)
async def test_serve_refuses_with_one_line_and_exit_2(tmp_path, demo_hall, kind):
    path = tmp_path / "hall.db"
    make, message = REFUSED[kind]
    made = make(path, demo_hall)
    if hasattr(made, "__await__"):
        await made
    before = path.read_bytes()
    code, lines = await serve_refused(path)
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("callsys: ") and message in lines[0], lines
    assert path.read_bytes() == before


# ---------------------------------------------------------------------- failing, stopping: every reply has its id


def _disk_full(records):
    raise sqlite3.OperationalError("database or disk is full")


@pytest.mark.parametrize("max_in_flight", [1, 64])
@guard()
async def test_when_the_log_fails_in_flight_commands_get_unavailable_with_their_ids(demo_hall, tmp_path, max_in_flight):
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage() + " " + json.dumps(
        getattr(record, "fields", {}), default=str))
    logger = logging.getLogger("callsys.server")
    logger.addHandler(handler)
    stopped: list[BaseException] = []

    async def run_server(task_status=trio.TASK_STATUS_IGNORED) -> None:
        try:
            await serve_callsys(demo_hall, f"file:{tmp_path / 'hall.db'}", port=0, clock=ScaledClock(START),
                                secret=SECRET, settings=ServerSettings(max_in_flight=max_in_flight),
                                task_status=task_status)
        except BaseException as exc:
            stopped.append(exc)

    try:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(run_server)
            ws_cm, ws, codec = await _kiosk(server.url)
            try:
                await send_frames(ws, [codec.encode(_take("ok"))])
                assert codec.decode(await ws.get_message())["id"] == "ok"
                server.journal.log._append_sync = _disk_full  # the disk fills up
                await send_frames(ws, [codec.encode(_take(rid)) for rid in ("a", "b", "c")])  # one write
                replies = [codec.decode(await ws.get_message()) for _ in range(3)]
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.get_message()
            finally:
                await ws_cm.__aexit__(None, None, None)
    finally:
        logger.removeHandler(handler)
    assert [(r["type"], r.get("id"), r["code"]) for r in replies] == [("error", rid, "unavailable") for rid in "abc"]
    assert closed.value.reason.code == CloseCode.INTERNAL_ERROR
    assert len(stopped) == 1 and "database or disk is full" in repr(stopped[0])
    failed = [line for line in lines if line.startswith("event_log_failed")]
    assert len(failed) == 1 and "database or disk is full" in failed[0] and "rollback" not in failed[0]


@guard()
async def test_unavailable_replies_during_shutdown_carry_their_ids(demo_hall, tmp_path):
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, demo_hall, tmp_path / "hall.db", max_in_flight=1)
        append = server.journal.log.append
        entered, release = trio.Event(), trio.Event()

        async def held(records):
            entered.set()
            await release.wait()
            return await append(records)

        server.journal.log.append = held
        ws_cm, ws, codec = await _kiosk(server.url)
        try:
            await send_frames(ws, [codec.encode(_take(rid)) for rid in ("a", "b", "c")])  # one write, one read
            await entered.wait()  # "a" is being committed; "b" and "c" wait in the connection's inbox
            (session,) = server.sessions
            assert len(session._inbox) == 2
            server.shutdown()
            release.set()
            replies = [codec.decode(await ws.get_message()) for _ in range(3)]
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
        finally:
            await ws_cm.__aexit__(None, None, None)
    assert (replies[0]["type"], replies[0]["id"]) == ("ok", "a")
    assert [(r["type"], r.get("id"), r["code"]) for r in replies[1:]] == [("error", "b", "unavailable"),
                                                                        ("error", "c", "unavailable")]
    assert closed.value.reason.code == CloseCode.GOING_AWAY


def _can_mount_a_small_tmpfs() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                            "mount -t tmpfs -o size=64k tmpfs /mnt"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_a_small_tmpfs(), reason="needs root to mount a small tmpfs in a mount namespace")
@guard(60)
async def test_a_really_full_disk_is_reported_as_such_and_the_command_in_flight_answered(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    prefix = ["unshare", "-m", "--propagation", "private", "sh", "-c",
              'mount -t tmpfs -o size=160k tmpfs "$0" && exec "$@"', str(disk)]
    acked = 0
    async with trio.open_nursery() as nursery:
        served = await serve(nursery, disk / "hall.db", prefix=prefix)
        async with connect(served.url, role="kiosk", token=TOKENS["kiosk"]) as kiosk:
            with pytest.raises(RequestFailed) as refused:
                while True:
                    await kiosk.request("take_number", service="SOC")
                    acked += 1
        await served.exited.wait()
    assert refused.value.code == "unavailable"  # the one in flight, matched to its id
    assert served.process.returncode == 2
    text = "\n".join(served.lines)
    assert "event_log_failed" in text and "database or disk is full" in text
    assert "cannot rollback" not in text
    assert acked > 0


# ---------------------------------------------------------------------- files removed under a running server


async def _take_some(url: str, n: int) -> list[dict]:
    async with connect(url, role="kiosk", token=TOKENS["kiosk"]) as kiosk:
        return [await kiosk.request("take_number", service="SOC") for _ in range(n)]


async def _restart_has(store, acked: list[dict]) -> None:
    """A new server on *store* knows every acknowledged ticket and numbers on after them."""
    async with trio.open_nursery() as nursery:
        served = await serve(nursery, store)
        async with connect(served.url, role="manager", token=TOKENS["manager"]) as manager:
            for ticket in acked:
                assert (await manager.request("ticket", ticket=ticket["ticket"]))["number"] == ticket["number"]
        fresh = (await _take_some(served.url, 1))[0]
        assert int(fresh["number"][1:]) > max(int(t["number"][1:]) for t in acked)
        served.process.send_signal(signal.SIGTERM)


@guard(60)
async def test_a_removed_wal_stops_the_server_before_it_acknowledges_more(tmp_path):
    store = tmp_path / "hall.db"
    async with trio.open_nursery() as nursery:
        served = await serve(nursery, store)
        acked = await _take_some(served.url, 30)
        os.unlink(f"{store}-wal")
        async with connect(served.url, role="kiosk", token=TOKENS["kiosk"]) as kiosk:
            with pytest.raises(RequestFailed) as refused:
                await kiosk.request("take_number", service="SOC")
        assert refused.value.code == "unavailable"
        if served.process.returncode is None:
            served.process.send_signal(signal.SIGKILL)  # as the operator in the issue did
        await served.exited.wait()
    text = "\n".join(served.lines)
    assert f"{store}-wal was removed" in text and "event_log_failed" in text
    await _restart_has(store, acked)  # nothing acknowledged was lost, no number handed out twice


@guard(60)
async def test_an_idle_server_notices_a_removed_wal_by_itself(tmp_path):
    store = tmp_path / "hall.db"
    async with trio.open_nursery() as nursery:
        served = await serve(nursery, store)
        acked = await _take_some(served.url, 10)
        os.unlink(f"{store}-wal")
        await served.exited.wait()  # within a second, without any command
    assert served.process.returncode == 2
    assert f"{store}-wal was removed" in "\n".join(served.lines)
    await _restart_has(store, acked)


@guard(60)
async def test_a_removed_database_stops_the_server_before_it_acknowledges_more(tmp_path):
    store = tmp_path / "hall.db"
    async with trio.open_nursery() as nursery:
        served = await serve(nursery, store)
        await _take_some(served.url, 5)
        os.unlink(store)
        async with connect(served.url, role="kiosk", token=TOKENS["kiosk"]) as kiosk:
            with pytest.raises((RequestFailed, ConnectionLost)) as refused:
                await kiosk.request("take_number", service="SOC")
        await served.exited.wait()
    assert getattr(refused.value, "code", "unavailable") == "unavailable"
    assert served.process.returncode == 2
    assert f"{store} was removed" in "\n".join(served.lines)


# ---------------------------------------------------------------------- live backup


@guard(90)
async def test_backup_and_check_of_a_live_store(tmp_path, demo_hall):
    """The backup holds every ticket acknowledged before it; the live store checks healthy."""
    store, copy = tmp_path / "hall.db", tmp_path / "copy.db"
    acked: list[dict] = []
    before_backup: list[dict] = []
    enough, backed_up = trio.Event(), trio.Event()

    async def keep_taking(url: str) -> None:
        async with connect(url, role="kiosk", token=TOKENS["kiosk"]) as kiosk:
            while not backed_up.is_set() or len(acked) < len(before_backup) + 50:
                acked.append(await kiosk.request("take_number", service="BIZ"))
                if len(acked) >= 200:
                    enough.set()

    async with trio.open_nursery() as nursery:
        # the kiosks send as fast as the server answers: lift the per-connection rate limit
        # (200/s, burst 400), which a quiet machine reaches during the backup
        served = await serve(nursery, store, extra=["--rate", "1e9", "--burst", str(10**9)])
        async with trio.open_nursery() as kiosks:
            for _ in range(3):
                kiosks.start_soon(keep_taking, served.url)
            await enough.wait()
            before_backup = list(acked)
            done = await callsys("store", "backup", str(store), str(copy), "--json")  # the server keeps writing
            live = await callsys("store", "check", str(store), "--config", DEMO, "--json")  # and still does
            backed_up.set()
        assert done.returncode == 0, done.stderr
        assert live.returncode == 0 and json.loads(live.stdout)["last_seq"] >= len(before_backup), live.stdout
        served.process.send_signal(signal.SIGTERM)
    assert len(acked) > len(before_backup)  # writes went on during and after the backup
    checked = await callsys("store", "check", str(copy), "--config", DEMO, "--json")
    assert checked.returncode == 0, checked.stdout
    async with open_journal(f"file:{copy}", demo_hall, snapshot_on_close=False) as journal:
        engine, _ = await journal.recover()
    assert {t["ticket"] for t in before_backup} <= set(engine.state.tickets)
    numbers = defaultdict(set)
    for ticket in engine.state.tickets.values():
        assert ticket.number not in numbers[ticket.service]
        numbers[ticket.service].add(ticket.number)
