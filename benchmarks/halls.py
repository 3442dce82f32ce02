"""Many halls on one Redis: tickets/s across the 133 Bao'an halls with 1, 2 and 4 server processes.

One ``redis-server`` of its own (``--appendonly yes --appendfsync always``, in a temporary
directory), then, for each process count, that many ``python -m callsys serve --network
config/baoan.toml`` processes on it (:mod:`callsys.server.network`); the run waits until every
hall is owned by the process its rendezvous hash gives (``GET /halls``), then drives keyed
kiosk ``take_number`` requests across all 133 halls: ``--per-hall`` closed-loop connections
per hall (msgpack, the lean client of :mod:`benchmarks._kiosks`), each keeping ``--pipeline``
requests in flight, for ``--span`` seconds after a warm-up. Each hall's connections go to
**the router of the process that owns the hall** (``ws://OWNER/halls/<id>/ws``), which pipes
them to the hall's server in the same process. A second phase of the same length sends
every connection to **the first process's router** instead (``*_any`` rows): with several
processes most halls are then a hop away (router -> owner's router -> hall server).

Every ticket counted was acknowledged, i.e. in Redis's fsync'd AOF. The processes and this
load generator share the machine's cores (2 on the reference machine): the figures are
bounded by those cores, not by Redis — more processes add parallelism only up to the cores.
The caches are emptied (``FLUSHALL``) between the cases.

    python -m benchmarks.halls [--json] [--span 5] [--processes 1,2,4] [--per-hall 1] [--pipeline 4]
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from statistics import quantiles
from typing import Any

import redis
import trio

from callsys.network import Network, load_network

from ._kiosks import Kiosk, closed_loop
from ._redis import RedisServer
from ._report import Row, parser, report, row
from ._server import _lines, cpu_seconds

CONFIG = "config/baoan.toml"
START = "2026-11-23T09:00"  # a Monday morning: every Bao'an hall issues numbers
TOKEN = "demo-kiosk"  # the network's published sample kiosk token ([defaults.tokens])
WARMUP_S = 1.0
TARGET = ">= 10000"  # design.md's ingest target, per case
SETTLE_S = 120.0  # seconds the processes may take to own every hall before the run gives up
POLL_S = 0.2  # seconds between two looks at GET /halls while the halls are being taken
STOP_S = 60.0  # seconds a process may take to stop cleanly after SIGTERM before it is killed


async def spawn(nursery: trio.Nursery, config: str, store: str, secret: Path,
                log: list[str]) -> tuple[trio.Process, str]:
    """Start one network process; return it and its router's URL once it listens. Its warnings
    and errors are appended to *log*."""
    argv = [sys.executable, "-m", "callsys", "serve", "--network", config, "--store", store, "--port", "0",
            "--host", "127.0.0.1", "--clock", START, "--secret-file", str(secret)]
    process = await nursery.start(partial(trio.run_process, argv, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.PIPE, check=False,
                                          env={**os.environ, "PYTHONUNBUFFERED": "1"}))
    lines = _lines(process.stderr)
    async for line in lines:
        if "event=network_listening" in line:
            nursery.start_soon(_drain, lines, log)
            return process, line.split("url=", 1)[1].split()[0]
    raise RuntimeError(f"a network process exited with {await process.wait()} before listening")


async def _drain(lines: Any, log: list[str]) -> None:
    async for line in lines:
        if "level=warning" in line or "level=error" in line or "level=critical" in line:
            log.append(line)


async def get_json(url: str, path: str) -> dict[str, Any]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(f"GET {path} HTTP/1.1\r\nhost: {host}\r\n\r\n".encode())
        data = b""
        while chunk := await stream.receive_some():
            data += chunk
    return json.loads(data.partition(b"\r\n\r\n")[2])


async def wait_owned(url: str, members: int) -> dict[str, Any]:
    """``GET /halls`` once *members* processes are live and every hall is served by its assigned owner."""
    with trio.fail_after(SETTLE_S):
        while True:
            listed = await get_json(url, "/halls")
            if (len(listed["members"]) == members
                    and all(h["owner"] is not None and h["owner"] == h["assigned"] for h in listed["halls"])):
                return listed
            await trio.sleep(POLL_S)


async def connect_all(network: Network, urls: dict[str, str], per_hall: int) -> list[Kiosk]:
    """*per_hall* kiosk connections to every hall, hall *h* at ``urls[h]`` (a router's http URL)."""
    kiosks = []
    for hall in network.halls:
        ws = f"ws{urls[hall.id].removeprefix('http')}/halls/{hall.id}/ws"
        services = [s.code for s in hall.services]
        for _ in range(per_hall):
            kiosks.append(await Kiosk.connect(ws, TOKEN, services, keyed=True))
    return kiosks


async def close_all(kiosks: list[Kiosk]) -> None:
    for kiosk in kiosks:
        await kiosk.aclose()


async def one_case(network: Network, server: RedisServer, tmp: Path, processes: int, *, span: float,
                   per_hall: int, pipeline: int) -> dict[str, Any]:
    """Run *processes* network processes on *server* and both phases; return the figures."""
    client = redis.Redis(port=server.port)
    try:
        client.flushall()
    finally:
        client.close()
    async with trio.open_nursery() as nursery:
        started = time.monotonic()
        stop_log: list[str] = []
        spawned = [await spawn(nursery, network.source, server.url, tmp / "secret", stop_log)
                   for _ in range(processes)]
        listed = await wait_owned(spawned[0][1], processes)
        settle_s = time.monotonic() - started
        owners = {m["id"]: m["url"] for m in listed["members"]}
        by_owner = {h["id"]: owners[h["owner"]] for h in listed["halls"]}
        shares = sorted(list(by_owner.values()).count(u) for u in owners.values())
        figures: dict[str, Any] = {"settle_s": settle_s, "shares": shares}
        for phase, urls in (("owner", by_owner), ("any", {h.id: spawned[0][1] for h in network.halls})):
            kiosks = await connect_all(network, urls, per_hall)
            await closed_loop(kiosks, WARMUP_S, pipeline, drop_closed=True)
            cpu_before = [cpu_seconds(p.pid) for p, _ in spawned]
            acks, elapsed, latencies = await closed_loop(kiosks, span, pipeline, drop_closed=True)
            cpu = sum(cpu_seconds(p.pid) for p, _ in spawned) - sum(cpu_before)
            rejected = sum(sum(k.rejected.values()) for k in kiosks)
            closed = [k.closed for k in kiosks if k.closed]
            await close_all(kiosks)
            figures[phase] = {"tickets_per_s": acks / elapsed, "p99_ms": _ms(latencies, 99),
                              "server_cpu": 100 * cpu / elapsed, "rejected": rejected, "closed": closed}
            if processes == 1:
                figures["any"] = figures["owner"]  # one process: every router is the owner's
                break
        for process, _ in spawned:  # a clean stop of every hall (leases released), waited for
            process.terminate()
        figures["stop_s"] = []
        stopping = time.monotonic()
        for process, _ in spawned:
            with trio.move_on_after(STOP_S):
                await process.wait()
            if process.returncode is None:
                process.kill()
                figures["stop_s"].append(float("inf"))
            else:
                figures["stop_s"].append(time.monotonic() - stopping)
    figures["stop_log"] = [line for line in stop_log if "event=network_stopping" in line][-2:]
    figures["failed_halls"] = sorted({line.split(" hall=", 1)[1].split()[0] for line in stop_log
                                      if "event=network_hall_failed" in line})
    return figures


def _ms(values: list[float], q: int) -> float:
    return quantiles(values, n=100, method="inclusive")[q - 1] * 1000 if len(values) > 1 else float("nan")


async def run(counts: list[int], *, span: float, per_hall: int, pipeline: int, config: str = CONFIG,
              closed_reasons: list[str] | None = None) -> list[Row]:
    """One case per process count in *counts*; the report's rows. Why connections were closed
    by a server during the run goes into *closed_reasons*."""
    closed_reasons = [] if closed_reasons is None else closed_reasons
    network = load_network(config)
    rows: list[Row] = []
    extra: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="callsys-halls-") as tmp, \
            RedisServer.start(Path(tmp) / "redis") as server:
        for n in counts:
            figures = await one_case(network, server, Path(tmp), n, span=span, per_hall=per_hall, pipeline=pipeline)
            rows.append(row(f"tickets_per_s_{n}p", figures["owner"]["tickets_per_s"], "tickets/s", TARGET))
            extra += [
                row(f"p99_ms_{n}p", figures["owner"]["p99_ms"], "ms", None),
                row(f"tickets_per_s_{n}p_any", figures["any"]["tickets_per_s"], "tickets/s", None),
                row(f"p99_ms_{n}p_any", figures["any"]["p99_ms"], "ms", None),
                row(f"server_cpu_{n}p", figures["owner"]["server_cpu"], "% of a core", None),
                row(f"settle_s_{n}p", figures["settle_s"], "s", None),
                row(f"halls_per_process_min_{n}p", figures["shares"][0], "halls", None),
                row(f"halls_per_process_max_{n}p", figures["shares"][-1], "halls", None),
                row(f"rejected_{n}p", figures["owner"]["rejected"] + figures["any"]["rejected"], "requests", "<= 0"),
                row(f"connections_closed_{n}p", len(figures["owner"]["closed"]) + len(figures["any"]["closed"]),
                    "connections", "<= 0"),
                row(f"hall_servers_failed_{n}p", len(figures["failed_halls"]), "halls", "<= 0"),
                row(f"stop_s_{n}p", max(figures["stop_s"]), "s", None),
            ]
            closed_reasons.extend(f"{n}p, a process stopping slowly: {line[:400]}" for line in figures["stop_log"])
            if figures["failed_halls"]:
                closed_reasons.append(f"{n}p: hall servers that failed (restarted): {', '.join(figures['failed_halls'][:10])}")
            for reason in sorted(set(figures["owner"]["closed"] + figures["any"]["closed"])):
                closed_reasons.append(f"{n}p: a connection closed by the server: {reason}")
    return rows + extra


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    p = parser("Tickets/s across the 133 Bao'an halls with 1, 2 and 4 network processes on one Redis.")
    p.add_argument("--span", type=float, default=5.0, help="seconds of each measured phase (default: %(default)s)")
    p.add_argument("--processes", default="1,2,4",
                   help="comma-separated process counts, one case each (default: %(default)s)")
    p.add_argument("--per-hall", type=int, default=1, help="kiosk connections per hall (default: %(default)s)")
    p.add_argument("--pipeline", type=int, default=4, help="requests in flight per connection (default: %(default)s)")
    p.add_argument("--network", default=CONFIG,
                   help="network file (default: %(default)s; the smoke test runs a smaller one)")
    args = p.parse_args()
    try:
        counts = [int(n) for n in args.processes.split(",")]
    except ValueError:
        p.error(f"--processes: not a comma-separated list of numbers: {args.processes!r}")
    if not counts or any(not 1 <= n <= 8 for n in counts):
        p.error("--processes: each count must be 1 to 8")
    if args.span <= 0 or args.per_hall < 1 or args.pipeline < 1:
        p.error("--span must be > 0, --per-hall and --pipeline >= 1")
    load_before = os.getloadavg()[0]
    cpu_before = _cpu_self()
    network = load_network(args.network)
    closed_reasons: list[str] = []
    rows = trio.run(lambda: run(counts, span=args.span, per_hall=args.per_hall, pipeline=args.pipeline,
                                config=args.network, closed_reasons=closed_reasons))
    kinds = list(network.kinds.values())
    notes = [f"{args.network}: {len(network.halls)} halls ({kinds.count('district')} district of "
             f"{len(network.halls[0].windows)} windows, {kinds.count('street')} street, {kinds.count('community')} "
             "community); one redis-server, "
             "appendonly yes + appendfsync always; every ticket counted was acknowledged (durable)",
             f"{args.per_hall} keyed kiosk connection(s) per hall x {args.pipeline} in flight, closed loop, "
             f"{args.span:g} s after a {WARMUP_S:g} s warm-up, in this process (lean client benchmarks._kiosks)",
             "tickets_per_s_Np: each hall's connections to the router of the process that owns it (GET /halls); "
             "*_any: every connection to the first process's router (a hall of another process is one hop more)",
             "the processes, Redis and this load generator share this machine's cores: the target of 10,000/s "
             "(design.md's ingest target) is bounded by them, not by the number of processes",
             *closed_reasons,
             f"load generator CPU over the run: {_cpu_self() - cpu_before:.1f} s; machine load average (1 min) "
             f"before / after: {load_before:.2f} / {os.getloadavg()[0]:.2f}"]
    report("benchmarks.halls — tickets/s across the Bao'an network on one Redis", rows, args.json, notes=notes)


if __name__ == "__main__":
    main()
