"""Durable bookings over the integration API: ``POST /api/v1/appointments`` from several processes.

The server runs as a child process (``python -m callsys serve`` on the flagship hall plus a
benchmark client ``[integrations.bench]`` without a practical rate limit, a fresh SQLite
store in a temporary directory). The load comes from ``--processes`` worker processes
(``python -m benchmarks.api --worker ...``), each holding ``--connections`` kept-alive HTTP/1.1
connections and sending one booking at a time per connection (closed loop): raw request
bytes, the status line and ``content-length`` read back — a lean client, so the figure is
the server's. Every booking counted was answered 201, i.e. durable. The places booked are
exactly the hall's appointment grid (every slot of every bookable service, as many times as
its capacity, from the day after the start on), spread over the workers, so no request is
refused for a full slot. All processes share the machine's cores; the server's CPU is reported.

* ``bookings_per_s``: 201 answers per second over ``--seconds`` (all workers at once);
* ``p50_ms_at_500`` / ``p99_ms_at_500``: open loop at an offered 500 bookings/s
  (``--rate``) for ``--latency-seconds`` from this process over a pool of connections;
  latency runs from a request's *scheduled* send time to its answer (no coordinated omission).

    python -m benchmarks.api [--json] [--processes 3] [--connections 16] [--seconds 5]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from statistics import quantiles
from typing import Iterator

import trio

from callsys.hall import Hall, load_hall

from ._report import Row, parser, report, row
from ._server import cpu_seconds, spawn_server

START = "2026-11-23T09:00"  # a Monday morning (the bookings are for the days after it)
BENCH_KEY = "benchmark-api-key-0123456789"
TARGET = ">= 2000"
SPAWN_GRACE_S = 3.0  # seconds the workers get to start and connect before the measured span begins
PATH = "/api/v1/appointments"


# ---------------------------------------------------------------------- the places to book


def places(hall: Hall, first_day: datetime) -> Iterator[tuple[str, float]]:
    """Every bookable place of *hall* from *first_day* on: ``(service, slot_start)``, each slot
    as many times as its capacity, day after day for a year."""
    rules = hall.appointments
    for offset in range(366):
        day = (first_day + timedelta(days=offset)).date()
        for service in hall.services:
            capacity = rules.capacity[service.code]
            for first, end in hall.hours.sessions(day.weekday()) if capacity else ():
                for minute in range(first, end - rules.slot_minutes + 1, rules.slot_minutes):
                    start = datetime(day.year, day.month, day.day, minute // 60, minute % 60,
                                     tzinfo=hall.tz).timestamp()
                    for _ in range(capacity):
                        yield service.code, start


def request_bytes(service: str, slot_start: float, host: str) -> bytes:
    body = json.dumps({"service": service, "slot_start": slot_start}).encode()
    head = (f"POST {PATH} HTTP/1.1\r\nhost: {host}\r\nx-api-key: {BENCH_KEY}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n").encode()
    return head + body


# ---------------------------------------------------------------------- a lean keep-alive client


class Connection:
    """One kept-alive HTTP/1.1 connection: a request, then its answer (reconnects when the
    server closes it after its ``http_max_requests``)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stream: trio.SocketStream | None = None
        self.buffer = b""
        self.opened = 0

    async def exchange(self, data: bytes) -> int:
        """Send *data* (one request), return the answer's status."""
        if self.stream is None:
            self.stream = await trio.open_tcp_stream("127.0.0.1", self.port)
            self.buffer = b""
            self.opened += 1
        await self.stream.send_all(data)
        while b"\r\n\r\n" not in self.buffer:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection mid-answer")
            self.buffer += chunk
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        length = int(lower.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
        while len(rest) < length:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection mid-body")
            rest += chunk
        self.buffer = rest[length:]
        if b"connection: close" in lower:
            await self.stream.aclose()
            self.stream = None
        return status

    async def aclose(self) -> None:
        if self.stream is not None:
            await self.stream.aclose()


# ---------------------------------------------------------------------- a worker process


async def work(port: int, config: str, index: int, workers: int, connections: int, begin: float,
               seconds: float) -> dict:
    """One worker: *connections* closed loops from wall time *begin* for *seconds*."""
    hall = load_hall(config)
    first_day = datetime.fromisoformat(START).replace(tzinfo=hall.tz) + timedelta(days=1)
    host = f"127.0.0.1:{port}"
    mine = (request_bytes(s, t, host) for i, (s, t) in enumerate(places(hall, first_day)) if i % workers == index)
    conns = [Connection(port) for _ in range(connections)]
    statuses: dict[int, int] = {}
    booked = 0
    await trio.sleep(max(0.0, begin - time.time()))
    end = begin + seconds

    async def loop(conn: Connection) -> None:
        nonlocal booked
        for data in mine:  # the deadline is checked after each answer: every loop books at least once,
            status = await conn.exchange(data)  # even when a starved worker starts after the span
            statuses[status] = statuses.get(status, 0) + 1
            booked += status == 201
            if time.time() >= end:
                return

    async with trio.open_nursery() as nursery:
        for conn in conns:
            nursery.start_soon(loop, conn)
    for conn in conns:
        await conn.aclose()
    return {"booked": booked, "statuses": statuses, "reconnects": sum(c.opened for c in conns) - connections}


def _worker_main(argv: list[str]) -> None:
    port, config, index, workers, connections, begin, seconds = argv
    result = trio.run(work, int(port), config, int(index), int(workers), int(connections), float(begin),
                      float(seconds))
    print(json.dumps(result))


# ---------------------------------------------------------------------- the run


async def open_loop(port: int, hall: Hall, first_day: datetime, rate: float, seconds: float,
                    pool: int) -> tuple[list[float], int]:
    """(latencies s from the scheduled send, non-201 answers) at an offered *rate*."""
    host = f"127.0.0.1:{port}"
    it = places(hall, first_day)
    count = int(rate * seconds)
    requests = [request_bytes(*next(it), host) for _ in range(count)]
    free = trio.Semaphore(pool)
    conns = [Connection(port) for _ in range(pool)]
    idle = list(conns)
    latencies: list[float] = []
    refused = 0

    async def one(data: bytes, scheduled: float) -> None:
        nonlocal refused
        async with free:
            conn = idle.pop()
            try:
                status = await conn.exchange(data)
            finally:
                idle.append(conn)
        latencies.append(trio.current_time() - scheduled)
        refused += status != 201

    start = trio.current_time() + 0.05
    async with trio.open_nursery() as nursery:
        for i, data in enumerate(requests):
            scheduled = start + i / rate
            await trio.sleep_until(scheduled)
            nursery.start_soon(one, data, scheduled)
    for conn in conns:
        await conn.aclose()
    return latencies, refused


def _ms(values: list[float], q: int) -> float:
    return quantiles(values, n=100, method="inclusive")[q - 1] * 1000 if len(values) > 1 else float("nan")


def bench_hall_file(config: str, directory: str) -> str:
    """*config* plus the benchmark's client, written into *directory*."""
    text = Path(config).read_text(encoding="utf-8")
    text += f'\n[integrations.bench]\nkey = "{BENCH_KEY}"\nrate_per_s = 1e9\nburst = 1000000000\n'
    path = Path(directory) / "bench-hall.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


async def run(config: str, *, processes: int, connections: int, seconds: float, rate: float,
              latency_seconds: float, pool: int) -> list[Row]:
    """Both phases against a fresh server; the report rows."""
    with tempfile.TemporaryDirectory(prefix="callsys-api-") as tmp:
        hall_file = bench_hall_file(config, tmp)
        hall = load_hall(hall_file)
        async with trio.open_nursery() as nursery:
            server = await spawn_server(nursery, ["--config", hall_file, "--store", f"file:{tmp}/api.db",
                                                  "--port", "0", "--clock", START])
            port = int(server.url.rsplit(":", 1)[1].split("/", 1)[0])
            begin = time.time() + SPAWN_GRACE_S
            argv = [sys.executable, "-m", "benchmarks.api", "--worker", str(port), hall_file]
            workers = [subprocess.Popen([*argv, str(i), str(processes), str(connections), str(begin), str(seconds)],
                                        stdout=subprocess.PIPE, text=True) for i in range(processes)]
            await trio.sleep(max(0.0, begin - time.time()))
            cpu_before = cpu_seconds(server.pid)
            outputs = [await trio.to_thread.run_sync(w.communicate) for w in workers]
            server_cpu = cpu_seconds(server.pid) - cpu_before
            if any(w.returncode for w in workers):
                raise RuntimeError(f"a worker failed: {[w.returncode for w in workers]}")
            results = [json.loads(out) for out, _ in outputs]
            # the latency phase books the places after the ones the workers could have taken
            first_day = datetime.fromisoformat(START).replace(tzinfo=hall.tz) + timedelta(days=200)
            latencies, refused = await open_loop(port, hall, first_day, rate, latency_seconds, pool)
            server.process.terminate()
    booked = sum(r["booked"] for r in results)
    statuses: dict[str, int] = {}
    for r in results:
        for status, n in r["statuses"].items():
            statuses[status] = statuses.get(status, 0) + n
    return [
        row("bookings_per_s", booked / seconds, "bookings/s", TARGET),
        row("p50_ms_at_500", _ms(latencies, 50), "ms", None),
        row("p99_ms_at_500", _ms(latencies, 99), "ms", None),
        row("server_cpu", 100 * server_cpu / seconds, "% of a core", None),
        row("server_cpu_per_booking", 1e6 * server_cpu / max(booked, 1), "us", None),
        row("refused", sum(n for s, n in statuses.items() if s != "201") + refused, "requests", "<= 0"),
    ]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _worker_main(sys.argv[2:])
        return
    p = parser("Durable bookings over the integration API (HTTP keep-alive) from several processes.")
    p.add_argument("--config", default="config/qingdao.toml", help="hall file (default: %(default)s)")
    p.add_argument("--processes", type=int, default=3, help="load worker processes (default: %(default)s)")
    p.add_argument("--connections", type=int, default=16, help="connections per worker (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=5.0, help="throughput phase (default: %(default)s)")
    p.add_argument("--rate", type=float, default=500.0, help="offered rate of the latency phase (default: %(default)s)")
    p.add_argument("--latency-seconds", type=float, default=5.0, help="latency phase (default: %(default)s)")
    p.add_argument("--pool", type=int, default=64, help="connections of the latency phase (default: %(default)s)")
    args = p.parse_args()
    load_before = os.getloadavg()[0]
    rows = trio.run(lambda: run(args.config, processes=args.processes, connections=args.connections,
                                seconds=args.seconds, rate=args.rate, latency_seconds=args.latency_seconds,
                                pool=args.pool))
    notes = [f"{args.processes} worker processes x {args.connections} kept-alive connections, one booking in "
             "flight per connection; the server in a child process; all on this machine's cores",
             "every booking counted was answered 201 after its fsync'd group commit (SQLite WAL, synchronous=FULL)",
             f"latency phase: open loop at {args.rate:g}/s over {args.pool} connections, from the scheduled send",
             f"machine load average (1 min) before / after the run: {load_before:.2f} / {os.getloadavg()[0]:.2f}"]
    report("benchmarks.api — durable bookings over the HTTP API", rows, args.json, notes=notes)


if __name__ == "__main__":
    main()
