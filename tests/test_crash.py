"""kill -9 mid-burst loses no acknowledged ticket, numbering goes on without reuse, and
retries with idempotency keys issue each ticket exactly once.

The server runs as a real subprocess (``python -m callsys serve``); several clients fire
keyed take-number commands, the server is killed with SIGKILL while they do, then
restarted on the same store: the SQLite file, or the same Redis (the Redis store's twin of
the test). Every command whose answer never came (some were executed,
some were not) is retried with its key, as a kiosk does on reconnect, and so is every
acknowledged one: each key ends with exactly one ticket, the acknowledged ones unchanged.
"""

from __future__ import annotations

import signal
from collections import defaultdict
from functools import partial
from pathlib import Path

import pytest
import trio

from benchmarks._server import spawn_server
from benchmarks.failover import burst  # the same keyed burst the failover benchmark sends
from callsys.client import connect
from callsys.log import open_journal
from conftest import CONFIG
from redis_support import redis_server, redis_url  # noqa: F401  (fixtures)
from server_support import TOKENS, guard

SERVICES = ("BIZ", "SOC", "MED")
CLIENTS = 6
KILL_AFTER = 300  # acknowledged tickets before the SIGKILL


@pytest.fixture(params=["file", "redis"])
def store(request, tmp_path) -> str:
    """The store URL the server runs on: a SQLite file, or the session's redis-server (emptied)."""
    return f"file:{tmp_path / 'hall.db'}" if request.param == "file" else request.getfixturevalue("redis_url")


async def start_server(nursery: trio.Nursery, store: str, secret: Path) -> tuple[trio.Process, str]:
    """``python -m callsys serve`` on a free port; returns the process and its URL."""
    # --rate/--burst: the retries after the restart (~400 requests on one connection) would
    # otherwise meet the per-connection rate limit on a fast machine. --secret-file: the
    # retried tickets' secrets must match the acknowledged ones, and a Redis store's default
    # key file (var/callsys.secret) is relative to the working directory, not the test's
    server = await spawn_server(nursery, ["--config", str(CONFIG / "demo.toml"), "--store", store,
                                          "--secret-file", str(secret), "--port", "0",
                                          "--clock", "2026-11-23T09:30", "--rate", "1e9", "--burst", str(10**9)])
    return server.process, server.url


@guard(120)
async def test_sigkill_mid_burst_loses_no_acknowledged_ticket(demo_hall, tmp_path, store):
    secret = tmp_path / "phones.secret"
    acked: dict[str, dict] = {}
    unknown: dict[str, str] = {}
    enough = trio.Event()
    async with trio.open_nursery() as nursery:
        process, url = await start_server(nursery, store, secret)
        nursery.start_soon(partial(burst, url, acked, unknown, enough, KILL_AFTER, clients=CLIENTS))
        await enough.wait()
        process.send_signal(signal.SIGKILL)  # mid-burst: the clients are still sending
        assert await process.wait() == -signal.SIGKILL
    assert len(acked) >= KILL_AFTER

    async with trio.open_nursery() as nursery:
        process, url = await start_server(nursery, store, secret)
        async with connect(url, role="manager", token=TOKENS["manager"]) as manager, \
                connect(url, role="kiosk", token=TOKENS["kiosk"]) as kiosk:
            for ticket in acked.values():
                stored = await manager.request("ticket", ticket=ticket["ticket"])
                assert (stored["number"], stored["rank"], stored["status"]) == \
                    (ticket["number"], ticket["rank"], ticket["status"])
            issued_before = (await manager.request("stats"))["totals"]["issued"]
            for key, ticket in acked.items():  # a retry of an answered command: the same ticket
                again = await kiosk.request("take_number", service=ticket["service"], key=key)
                assert again["repeat"] is True
                assert (again["ticket"], again["number"], again["secret"]) == \
                    (ticket["ticket"], ticket["number"], ticket["secret"])
            retried = {}
            for key, service in unknown.items():  # executed before the kill or not: one ticket either way
                retried[key] = await kiosk.request("take_number", service=service, key=key)
                again = await kiosk.request("take_number", service=service, key=key)
                assert (again["ticket"], again["number"]) == (retried[key]["ticket"], retried[key]["number"])
            fresh_by_retry = sum(1 for t in retried.values() if not t.get("repeat"))
            issued_after = (await manager.request("stats"))["totals"]["issued"]
            assert issued_after == issued_before + fresh_by_retry  # no key issued twice
            assert issued_after == len(acked) + len(unknown)  # each key exactly once
            assert len({t["ticket"] for t in [*acked.values(), *retried.values()]}) == issued_after
            highest = defaultdict(int)
            for ticket in [*acked.values(), *retried.values()]:
                highest[ticket["service"]] = max(highest[ticket["service"]], int(ticket["number"][1:]))
            for service in SERVICES:
                fresh = await kiosk.request("take_number", service=service)
                assert int(fresh["number"][1:]) > highest[service]
        process.send_signal(signal.SIGTERM)  # a clean stop this time
        assert await process.wait() == 0

    async with open_journal(store, demo_hall) as journal:
        engine, _ = await journal.recover()
    numbers = [t.number for t in engine.state.tickets.values()]
    assert len(numbers) == len(set(numbers)), "a number was handed out twice"
    assert {t["ticket"] for t in acked.values()} <= set(engine.state.tickets)
    assert set(acked) | set(unknown) <= set(engine.state.keys)  # the keys survived the restarts
