"""Durable ticket issue over WebSocket: many kiosks taking numbers from one server.

The server runs as a child process (``python -m callsys serve`` on the flagship hall with
a fresh store: by default the embedded SQLite store in a temporary directory; ``--store
redis`` starts a ``redis-server`` of its own there, ``--appendonly yes --appendfsync
always``; ``--store URL`` names a store, e.g. ``redis://127.0.0.1:6379/15``, where the hall
must have no events yet) and this process is the load generator: ``--connections`` kiosk
connections speaking msgpack over real WebSocket frames through the lean client of
:mod:`benchmarks._kiosks` (every reply read, decoded and matched to its request). Every number counted was acknowledged, i.e. durable. Both
processes share the machine's cores; their CPU use is reported so the limit is visible.

* ``tickets_per_s``: closed loop, each connection keeping ``--pipeline`` requests in
  flight, for ``--seconds`` after a warm-up;
* ``p50_ms_at_1000`` / ``p99_ms_at_1000``: open loop at a fixed offered rate (``--rate``,
  1,000/s) for ``--latency-seconds``; latency runs from a request's *scheduled* send time
  to its acknowledgement, so a stall is not hidden (no coordinated omission).

    python -m benchmarks.ingest [--json] [--connections 100] [--seconds 5] [--store file|redis|URL]
"""

from __future__ import annotations

import os
import resource
import tempfile
from contextlib import contextmanager
from pathlib import Path
from statistics import quantiles
from typing import Iterator

import trio

from callsys.client import connect
from callsys.hall import load_hall
from callsys.log import open_store

from ._kiosks import Kiosk, closed_loop
from ._redis import RedisServer
from ._report import Row, parser, report, row
from ._server import cpu_seconds, spawn_server

START = "2026-11-23T09:00"  # a Monday morning: the flagship hall issues numbers
WARMUP_S = 1.0
STORE_KINDS = {"file": "SQLite WAL, synchronous=FULL",
               "redis": "a redis-server of its own, appendonly yes + appendfsync always"}


@contextmanager
def store_url(store: str, tmp: Path) -> Iterator[str]:
    """The URL of the store to benchmark: ``file`` and ``redis`` are fresh ones in *tmp*
    (``redis`` starts a redis-server there, stopped on exit); anything else is a store URL."""
    if store == "file":
        yield f"file:{tmp}/ingest.db"
    elif store == "redis":
        with RedisServer.start(tmp / "redis") as server:
            yield server.url
    else:
        yield store


async def require_empty(url: str, hall_id: str) -> None:
    """Refuse a named store where the hall already has events (the figures assume a fresh day)."""
    log = await open_store(url, hall_id)
    try:
        if await log.last_seq():
            raise SystemExit(f"benchmarks.ingest: hall {hall_id!r} already has {await log.last_seq()} events in "
                             f"{log.name}; name an empty store (e.g. a spare Redis database) or --store redis")
    finally:
        await log.aclose()


class Load:
    """The kiosk connections and what they have seen."""

    def __init__(self, kiosks: list[Kiosk]) -> None:
        self.kiosks = kiosks

    @property
    def rejected(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for kiosk in self.kiosks:
            for code, n in kiosk.rejected.items():
                counts[code] = counts.get(code, 0) + n
        return counts

    async def closed_loop(self, seconds: float, pipeline: int) -> tuple[int, float, list[float]]:
        """(acks, elapsed s, latencies s) with *pipeline* requests in flight per connection."""
        return await closed_loop(self.kiosks, seconds, pipeline)

    async def open_loop(self, rate: float, seconds: float) -> tuple[list[float], float]:
        """(latencies s from the scheduled send, achieved acks/s) at a fixed offered *rate*.

        Request *i* goes out on connection ``i % connections`` at ``start + i / rate``; a
        request sent late (the generator stalled) still counts from its scheduled time.
        """
        latencies: list[float] = []
        count = int(rate * seconds)
        remaining = count
        done = trio.Event()
        start = trio.current_time() + 0.05

        async def read(kiosk: Kiosk) -> None:
            nonlocal remaining
            while True:
                replies = await kiosk.receive()
                latencies.extend(kiosk.latencies(replies, trio.current_time()))  # from the scheduled send
                remaining -= len(replies)
                if remaining <= 0:
                    done.set()

        async with trio.open_nursery() as nursery:
            for kiosk in self.kiosks:
                nursery.start_soon(read, kiosk)
            for i in range(count):
                scheduled = start + i / rate
                await trio.sleep_until(scheduled)
                await self.kiosks[i % len(self.kiosks)].send_requests(1, scheduled)
            if count:
                await done.wait()
            nursery.cancel_scope.cancel()
        return latencies, len(latencies) / (trio.current_time() - start)


def _ms(values: list[float], q: int) -> float:
    """The q-th percentile of *values* (seconds) in milliseconds."""
    return quantiles(values, n=100, method="inclusive")[q - 1] * 1000 if len(values) > 1 else float("nan")


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run(config: str, *, connections: int, pipeline: int, seconds: float, rate: float,
              latency_seconds: float, keyed: bool = True, store: str = "file") -> list[Row]:
    """Run both phases against a fresh server on *store* (see :func:`store_url`); return the report rows."""
    hall = load_hall(config)
    services = [s.code for s in hall.services]
    with tempfile.TemporaryDirectory(prefix="callsys-ingest-") as tmp, store_url(store, Path(tmp)) as url:
        if store not in STORE_KINDS:
            await require_empty(url, hall.id)
        async with trio.open_nursery() as nursery:
            server = await spawn_server(nursery, ["--config", config, "--store", url, "--port", "0",
                                                  "--clock", START, "--secret-file", f"{tmp}/secret"])
            async with connect(server.url, role="manager", token=min(hall.tokens["manager"])) as manager:
                kiosks = [await Kiosk.connect(server.url, min(hall.tokens["kiosk"]), services, keyed=keyed)
                          for _ in range(connections)]
                load = Load(kiosks)
                await load.closed_loop(WARMUP_S, pipeline)
                before = (cpu_seconds(server.pid), _cpu_self(), await manager.request("stats"))
                acks, elapsed, saturated = await load.closed_loop(seconds, pipeline)
                after = (cpu_seconds(server.pid), _cpu_self(), await manager.request("stats"))
                latencies, achieved = await load.open_loop(rate, latency_seconds)
                for kiosk in kiosks:
                    await kiosk.aclose()
            server.process.terminate()
    commits = after[2]["commits"] - before[2]["commits"]
    events = after[2]["durable_seq"] - before[2]["durable_seq"]
    per_ticket = 1e6 / max(acks, 1)
    return [
        row("tickets_per_s", acks / elapsed, "tickets/s", ">= 10000"),
        row("p50_ms_at_1000", _ms(latencies, 50), "ms", None),
        row("p99_ms_at_1000", _ms(latencies, 99), "ms", "<= 10"),
        row("achieved_rate_at_1000", achieved, "tickets/s", None),
        row("p99_ms_saturated", _ms(saturated, 99), "ms", None),
        row("events_per_commit", events / max(commits, 1), "events", None),
        row("server_cpu", 100 * (after[0] - before[0]) / elapsed, "% of a core", None),
        row("loadgen_cpu", 100 * (after[1] - before[1]) / elapsed, "% of a core", None),
        row("server_cpu_per_ticket", (after[0] - before[0]) * per_ticket, "us", None),
        row("loadgen_cpu_per_ticket", (after[1] - before[1]) * per_ticket, "us", None),
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
    p.add_argument("--no-keys", dest="keyed", action="store_false",
                   help="send take_number without idempotency keys (devices of callsys.client always send them)")
    p.add_argument("--store", default="file",
                   help="'file' (a fresh SQLite store), 'redis' (a redis-server started for the run, "
                        "appendfsync always) or a store URL such as redis://127.0.0.1:6379/15 whose hall has no "
                        "events yet (default: %(default)s)")
    args = p.parse_args()
    load_before = os.getloadavg()[0]
    rows = trio.run(lambda: run(args.config, connections=args.connections, pipeline=args.pipeline,
                                seconds=args.seconds, rate=args.rate, latency_seconds=args.latency_seconds,
                                keyed=args.keyed, store=args.store))
    notes = [f"{args.connections} kiosk connections (msgpack, lean client benchmarks._kiosks) x {args.pipeline} "
             "in flight in this process; the server in a child process; both on this machine's cores",
             "every ticket counted was acknowledged after its fsync'd group commit "
             f"({STORE_KINDS.get(args.store, args.store)})",
             "each take_number " + ("with" if args.keyed else "without") + " an idempotency key",
             f"machine load average (1 min) before / after the run: {load_before:.2f} / {os.getloadavg()[0]:.2f}"]
    report("benchmarks.ingest — durable ticket issue over WebSocket", rows, args.json, notes=notes)


if __name__ == "__main__":
    main()
