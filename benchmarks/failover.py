"""Failover: the owner of a hall is kill -9'd mid-burst; how fast its standby takes over, and what is lost.

Two ``python -m callsys serve`` processes on one Redis (a redis-server of its own by
default, ``appendfsync always``): the first takes the hall's lease and serves, the second
follows as a hot standby (:mod:`callsys.server.standby`) that serves clients too and
forwards their commands to the owner. First ``--forwarded`` take-numbers are sent one at a
time to the standby (each answered via the owner); then kiosk connections **on the
standby** take numbers with idempotency keys until ``--tickets`` are acknowledged, the
owner gets SIGKILL while they keep sending, and the clock runs until the standby logs that
it took over:

* ``forward_p50_ms``, ``forward_p99_ms``: a command sent to the standby, relayed to the
  owner, committed there, followed back by the standby and answered (the client's view);
* ``takeover_s``: SIGKILL to the standby's ``event=took_over`` line (target <= 3 s with the
  default lease TTL; most of it is the TTL, :data:`~callsys.log.redis.LEASE_TTL_S`);
* ``lost_acked``: acknowledged tickets the new owner does not have with the same number (must be 0);
* ``duplicate_numbers``: numbers the new owner holds twice after the unanswered commands
  were retried with their keys (must be 0).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Sequence

import trio

from benchmarks._redis import RedisServer
from benchmarks._report import parser, report, row
from benchmarks._server import _lines
from callsys.client import ClientError, connect

CONFIG = "config/demo.toml"
TOKENS = {"kiosk": "demo-kiosk", "manager": "demo-manager"}  # the demo hall's published sample tokens
SERVICES = ("BIZ", "SOC", "MED")
CLIENTS = 4  # kiosk connections
PIPELINE = 8  # requests in flight per connection
FORWARDED = 200  # take-numbers sent one at a time through the standby for forward_p50_ms/_p99_ms


@dataclass
class Served:
    """A ``callsys serve`` child process and its log lines as ``(time.monotonic(), line)``."""

    process: trio.Process
    lines: list[tuple[float, str]] = field(default_factory=list)
    ended: bool = False
    _changed: trio.Event = field(default_factory=trio.Event)

    async def wait_for(self, text: str) -> tuple[float, str]:
        """The first log line containing *text* (waiting for it), with when it was read.

        Raises:
            RuntimeError: the process ended without logging it.
        """
        seen = 0
        while True:
            for when, line in self.lines[seen:]:
                if text in line:
                    return when, line
            seen = len(self.lines)
            if self.ended:
                raise RuntimeError(f"the server exited before logging {text!r}: "
                                   + " | ".join(line for _, line in self.lines[-4:]))
            await self._changed.wait()

    async def url(self) -> str:
        """The WebSocket URL, once the server listens (an owner or a standby: both serve clients)."""
        _, line = await self.wait_for("event=listening")
        return line.split("url=", 1)[1].split()[0]

    async def _read(self) -> None:
        async for line in _lines(self.process.stderr):
            self.lines.append((time.monotonic(), line))
            self._changed.set()
            self._changed = trio.Event()
        self.ended = True
        self._changed.set()


async def spawn(nursery: trio.Nursery, args: Sequence[str]) -> Served:
    """Start ``python -m callsys serve ARGS``; its lines are read in *nursery*. Returns at once."""
    argv = [sys.executable, "-m", "callsys", "serve", *args]
    process = await nursery.start(partial(trio.run_process, argv, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.PIPE, check=False))
    served = Served(process)
    nursery.start_soon(served._read)
    return served


def serve_args(store: str, secret: Path) -> list[str]:
    """``callsys serve`` arguments for the demo hall on *store* (no rate limit: the burst is the point)."""
    return ["--config", CONFIG, "--store", store, "--secret-file", str(secret), "--port", "0",
            "--clock", "2026-11-23T09:30", "--rate", "1e9", "--burst", str(10**9)]


async def burst(url: str, acked: dict[str, dict], unknown: dict[str, str], enough: trio.Event, tickets: int,
                *, clients: int = CLIENTS) -> None:
    """Take numbers with keys on *clients* connections until they die.

    Fills *acked* (key -> the answer) and *unknown* (key -> service: sent, never answered);
    sets *enough* once *tickets* are acknowledged.
    """

    async def worker(client, c: int, n: int) -> None:
        for i in range(n, 10**7, PIPELINE):
            key, service = f"kiosk{c}-{i}", SERVICES[i % len(SERVICES)]
            try:
                ticket = await client.request("take_number", service=service, key=key)
            except ClientError:
                unknown[key] = service
                return
            acked[key] = ticket
            if len(acked) >= tickets:
                enough.set()

    async def one_client(c: int) -> None:
        try:
            async with connect(url, role="kiosk", token=TOKENS["kiosk"]) as client:
                async with trio.open_nursery() as workers:
                    for n in range(PIPELINE):
                        workers.start_soon(worker, client, c, n)
        except ClientError:
            pass

    async with trio.open_nursery() as group:
        for c in range(clients):
            group.start_soon(one_client, c)


async def forward_latencies(url: str, count: int) -> list[float]:
    """Send *count* keyed take-numbers one at a time to *url* (a standby); each round trip in ms."""
    times = []
    async with connect(url, role="kiosk", token=TOKENS["kiosk"]) as kiosk:
        for i in range(count):
            start = time.perf_counter()
            await kiosk.request("take_number", service=SERVICES[i % len(SERVICES)], key=f"forward-{i}")
            times.append((time.perf_counter() - start) * 1000)
    return times


def percentile(values: Sequence[float], q: float) -> float:
    """The *q*-quantile of *values* (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


async def check(url: str, acked: dict[str, dict], unknown: dict[str, str]) -> tuple[int, int, int]:
    """On the new owner: retry every unanswered key, then count ``(lost_acked, duplicate_numbers, issued)``."""
    async with connect(url, role="manager", token=TOKENS["manager"]) as manager, \
            connect(url, role="kiosk", token=TOKENS["kiosk"]) as kiosk:
        lost = 0
        for ticket in acked.values():
            try:
                stored = await manager.request("ticket", ticket=ticket["ticket"])
            except ClientError:
                lost += 1
                continue
            lost += (stored["number"], stored["service"]) != (ticket["number"], ticket["service"])
        for key, service in unknown.items():  # executed before the kill or not: one ticket either way
            await kiosk.request("take_number", service=service, key=key)
        issued = (await manager.request("stats"))["totals"]["issued"]
        numbers = Counter()
        for key in [*acked, *unknown]:
            service = acked[key]["service"] if key in acked else unknown[key]
            again = await kiosk.request("take_number", service=service, key=key)
            numbers[again["number"]] += 1
        return lost, sum(n - 1 for n in numbers.values()), issued


async def run(tickets: int, store: str | None = None, forwarded: int = FORWARDED) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="callsys-failover-") as tmp:
        redis_server = None
        if store is None:
            redis_server = RedisServer.start(Path(tmp) / "redis")
            store = redis_server.url
        try:
            return await _run(tickets, store, Path(tmp) / "phones.secret", forwarded)
        finally:
            if redis_server is not None:
                redis_server.stop()


async def _run(tickets: int, store: str, secret: Path, forwarded: int) -> list[dict]:
    acked: dict[str, dict] = {}
    unknown: dict[str, str] = {}
    enough = trio.Event()
    async with trio.open_nursery() as nursery:
        owner = await spawn(nursery, serve_args(store, secret))
        await owner.url()
        standby = await spawn(nursery, serve_args(store, secret))
        await standby.wait_for("event=standby ")
        url = await standby.url()  # every client talks to the standby
        times = await forward_latencies(url, forwarded)
        nursery.start_soon(burst, url, acked, unknown, enough, tickets)
        await enough.wait()
        owner.process.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        await owner.process.wait()
        taken, _ = await standby.wait_for("event=took_over")
        lost, duplicates, issued = await check(url, acked, unknown)
        standby.process.send_signal(signal.SIGTERM)
        await standby.process.wait()
    return [
        row("forward_p50_ms", round(percentile(times, 0.5), 2), "ms"),
        row("forward_p99_ms", round(percentile(times, 0.99), 2), "ms"),
        row("takeover_s", round(taken - killed, 3), "s", "<= 3"),
        row("lost_acked", lost, "tickets", "<= 0"),
        row("duplicate_numbers", duplicates, "numbers", "<= 0"),
        row("acked_before_kill", len(acked), "tickets"),
        row("unanswered_retried", len(unknown), "commands"),
        row("issued", issued - forwarded, "tickets"),
    ]


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--tickets", type=int, default=500,
                   help="acknowledged tickets before the SIGKILL (default: %(default)s)")
    p.add_argument("--store", help="a Redis store URL whose database has no hall 'demo' yet (nothing is emptied); "
                                   "default: a redis-server of its own on a free port, removed afterwards")
    p.add_argument("--forwarded", type=int, default=FORWARDED,
                   help="take-numbers timed one at a time through the standby before the burst (default: %(default)s)")
    args = p.parse_args()
    rows = trio.run(run, args.tickets, args.store, args.forwarded)
    report("Failover: owner kill -9'd mid-burst, hot standby takes over", rows, args.json,
           notes=["takeover_s includes the lease TTL (callsys.log.redis.LEASE_TTL_S): the dead owner's lease must "
                  "expire before the standby may take it"])


if __name__ == "__main__":
    main()
