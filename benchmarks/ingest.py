"""Durable ticket issue over WebSocket: many kiosks taking numbers from one server.

The server runs as a child process (``python -m callsys serve`` on the flagship hall with
the embedded SQLite store, a fresh store in a temporary directory) and this process is the
load generator: ``--connections`` kiosk connections speaking msgpack through
:mod:`callsys.client`. Every number counted was acknowledged, i.e. durable. Both
processes share the machine's cores; their CPU use is reported so the limit is visible.

* ``tickets_per_s``: closed loop, each connection keeping ``--pipeline`` requests in
  flight, for ``--seconds`` after a warm-up;
* ``p50_ms_at_1000`` / ``p99_ms_at_1000``: open loop at a fixed offered rate (``--rate``,
  1,000/s) for ``--latency-seconds``; latency runs from a request's *scheduled* send time
  to its acknowledgement, so a stall is not hidden (no coordinated omission).

    python -m benchmarks.ingest [--json] [--connections 100] [--seconds 5]
"""

from __future__ import annotations

import resource
import tempfile
from contextlib import AsyncExitStack
from statistics import quantiles
from typing import Any

import trio

from callsys.client import Client, RequestFailed, connect
from callsys.hall import load_hall

from ._report import Row, parser, report, row
from ._server import cpu_seconds, spawn_server

START = "2026-11-23T09:00"  # a Monday morning: the flagship hall issues numbers
WARMUP_S = 1.0


class Load:
    """The kiosk connections and what they have seen."""

    def __init__(self, clients: list[Client], services: list[str]) -> None:
        self.clients = clients
        self.services = services
        self.sent = 0
        self.rejected: dict[str, int] = {}

    async def take(self, i: int) -> bool:
        """One take-number on connection ``i % connections``; False when rejected."""
        self.sent += 1
        try:
            await self.clients[i % len(self.clients)].request("take_number", service=self.services[i % len(self.services)])
            return True
        except RequestFailed as exc:
            self.rejected[exc.code] = self.rejected.get(exc.code, 0) + 1
            return False

    async def closed_loop(self, seconds: float, pipeline: int) -> tuple[int, float, list[float]]:
        """(acks, elapsed s, latencies s) with *pipeline* requests in flight per connection."""
        acks = 0
        latencies: list[float] = []
        start = trio.current_time()
        deadline = start + seconds

        async def worker(n: int) -> None:
            nonlocal acks
            i = n
            while trio.current_time() < deadline:
                sent = trio.current_time()
                if await self.take(i):
                    acks += 1
                    latencies.append(trio.current_time() - sent)
                i += pipeline * len(self.clients)

        async with trio.open_nursery() as nursery:
            for n in range(pipeline * len(self.clients)):
                nursery.start_soon(worker, n)
        return acks, trio.current_time() - start, latencies

    async def open_loop(self, rate: float, seconds: float) -> tuple[list[float], float]:
        """(latencies s from the scheduled send, achieved acks/s) at a fixed offered *rate*."""
        latencies: list[float] = []
        count = int(rate * seconds)
        start = trio.current_time() + 0.05

        async def one(i: int, scheduled: float) -> None:
            if await self.take(i):
                latencies.append(trio.current_time() - scheduled)

        async with trio.open_nursery() as nursery:
            for i in range(count):
                scheduled = start + i / rate
                await trio.sleep_until(scheduled)
                nursery.start_soon(one, i, scheduled)
        return latencies, len(latencies) / (trio.current_time() - start)


def _ms(values: list[float], q: int) -> float:
    """The q-th percentile of *values* (seconds) in milliseconds."""
    return quantiles(values, n=100, method="inclusive")[q - 1] * 1000 if len(values) > 1 else float("nan")


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run(config: str, *, connections: int, pipeline: int, seconds: float, rate: float,
              latency_seconds: float) -> list[Row]:
    """Run both phases against a fresh server; return the report rows."""
    hall = load_hall(config)
    services = [s.code for s in hall.services]
    with tempfile.TemporaryDirectory(prefix="callsys-ingest-") as tmp:
        async with trio.open_nursery() as nursery:
            server = await spawn_server(nursery, ["--config", config, "--store", f"file:{tmp}/ingest.db",
                                                  "--port", "0", "--clock", START])
            async with AsyncExitStack() as stack:
                clients = [await stack.enter_async_context(connect(server.url, role="kiosk",
                                                                   token=min(hall.tokens["kiosk"])))
                           for _ in range(connections)]
                manager = await stack.enter_async_context(
                    connect(server.url, role="manager", token=min(hall.tokens["manager"])))
                load = Load(clients, services)
                await load.closed_loop(WARMUP_S, pipeline)
                before = (cpu_seconds(server.pid), _cpu_self(), await manager.request("stats"))
                acks, elapsed, saturated = await load.closed_loop(seconds, pipeline)
                after = (cpu_seconds(server.pid), _cpu_self(), await manager.request("stats"))
                latencies, achieved = await load.open_loop(rate, latency_seconds)
            server.process.terminate()
    commits = after[2]["commits"] - before[2]["commits"]
    events = after[2]["durable_seq"] - before[2]["durable_seq"]
    return [
        row("tickets_per_s", acks / elapsed, "tickets/s", ">= 10000"),
        row("p50_ms_at_1000", _ms(latencies, 50), "ms", None),
        row("p99_ms_at_1000", _ms(latencies, 99), "ms", "<= 10"),
        row("achieved_rate_at_1000", achieved, "tickets/s", None),
        row("p99_ms_saturated", _ms(saturated, 99), "ms", None),
        row("events_per_commit", events / max(commits, 1), "events", None),
        row("server_cpu", 100 * (after[0] - before[0]) / elapsed, "% of a core", None),
        row("loadgen_cpu", 100 * (after[1] - before[1]) / elapsed, "% of a core", None),
        row("rejected", sum(load.rejected.values()), "requests", "<= 0"),
    ]


def main() -> None:
    p = parser("Durable ticket issue over WebSocket from many kiosk connections.")
    p.add_argument("--config", default="config/qingdao.toml", help="hall file (default: %(default)s)")
    p.add_argument("--connections", type=int, default=100, help="kiosk connections (default: %(default)s)")
    p.add_argument("--pipeline", type=int, default=4, help="requests in flight per connection (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=5.0, help="throughput phase (default: %(default)s)")
    p.add_argument("--rate", type=float, default=1000.0, help="offered rate of the latency phase (default: %(default)s)")
    p.add_argument("--latency-seconds", type=float, default=5.0, help="latency phase (default: %(default)s)")
    args = p.parse_args()
    rows = trio.run(lambda: run(args.config, connections=args.connections, pipeline=args.pipeline,
                                seconds=args.seconds, rate=args.rate, latency_seconds=args.latency_seconds))
    notes = [f"{args.connections} kiosk connections (msgpack) x {args.pipeline} in flight in this process; "
             "the server in a child process; both on this machine's cores",
             "every ticket counted was acknowledged after its fsync'd group commit (SQLite WAL, synchronous=FULL)"]
    report("benchmarks.ingest — durable ticket issue over WebSocket", rows, args.json, notes=notes)


if __name__ == "__main__":
    main()
