"""kill -9 mid-burst loses no acknowledged ticket, and numbering goes on without reuse.

The server runs as a real subprocess (``python -m callsys serve``); several clients fire
take-number commands, the server is killed with SIGKILL while they do, then restarted on
the same store.
"""

from __future__ import annotations

import signal
from collections import defaultdict
from pathlib import Path

import trio

from benchmarks._server import spawn_server
from callsys.client import ClientError, connect
from callsys.log import open_journal
from conftest import CONFIG
from server_support import TOKENS, guard

SERVICES = ("BIZ", "SOC", "MED")
CLIENTS = 6
PIPELINE = 8  # requests in flight per client
KILL_AFTER = 300  # acknowledged tickets before the SIGKILL


async def start_server(nursery: trio.Nursery, store: Path) -> tuple[trio.Process, str]:
    """``python -m callsys serve`` on a free port; returns the process and its URL."""
    server = await spawn_server(nursery, ["--config", str(CONFIG / "demo.toml"), "--store", f"file:{store}",
                                          "--port", "0", "--clock", "2026-11-23T09:30"])
    return server.process, server.url


async def burst(url: str, acked: list[dict], enough: trio.Event) -> None:
    """Take numbers from CLIENTS connections x PIPELINE tasks until the connection dies."""

    async def worker(client, n: int) -> None:
        for i in range(n, 10**6, PIPELINE):
            try:
                ticket = await client.request("take_number", service=SERVICES[i % len(SERVICES)])
            except ClientError:
                return
            acked.append(ticket)
            if len(acked) >= KILL_AFTER:
                enough.set()

    async def one_client() -> None:
        try:
            async with connect(url, role="kiosk", token=TOKENS["kiosk"]) as client:
                async with trio.open_nursery() as workers:
                    for n in range(PIPELINE):
                        workers.start_soon(worker, client, n)
        except ClientError:
            pass

    async with trio.open_nursery() as clients:
        for _ in range(CLIENTS):
            clients.start_soon(one_client)


@guard(120)
async def test_sigkill_mid_burst_loses_no_acknowledged_ticket(demo_hall, tmp_path):
    store = tmp_path / "hall.db"
    acked: list[dict] = []
    enough = trio.Event()
    async with trio.open_nursery() as nursery:
        process, url = await start_server(nursery, store)
        nursery.start_soon(burst, url, acked, enough)
        await enough.wait()
        process.send_signal(signal.SIGKILL)  # mid-burst: the clients are still sending
        assert await process.wait() == -signal.SIGKILL
    assert len(acked) >= KILL_AFTER

    async with trio.open_nursery() as nursery:
        process, url = await start_server(nursery, store)
        async with connect(url, role="manager", token=TOKENS["manager"]) as manager, \
                connect(url, role="kiosk", token=TOKENS["kiosk"]) as kiosk:
            for ticket in acked:
                stored = await manager.request("ticket", ticket=ticket["ticket"])
                assert (stored["number"], stored["rank"], stored["status"]) == \
                    (ticket["number"], ticket["rank"], ticket["status"])
            highest = defaultdict(int)
            for ticket in acked:
                highest[ticket["service"]] = max(highest[ticket["service"]], int(ticket["number"][1:]))
            for service in SERVICES:
                fresh = await kiosk.request("take_number", service=service)
                assert int(fresh["number"][1:]) > highest[service]
        process.send_signal(signal.SIGTERM)  # a clean stop this time
        assert await process.wait() == 0

    async with open_journal(f"file:{store}", demo_hall) as journal:
        engine, _ = await journal.recover()
    numbers = [t.number for t in engine.state.tickets.values()]
    assert len(numbers) == len(set(numbers)), "a number was handed out twice"
    assert {t["ticket"] for t in acked} <= set(engine.state.tickets)
