"""A busy hall: clerks calling at every window while thousands of screens and phones listen.

The server runs as a child process (``python -m callsys serve`` on the flagship hall, 400
windows in 18 zones, a fresh store). Before the run a kiosk issues enough waiting tickets
for every window's skills. Then, from separate load processes (:mod:`benchmarks._hall_load`,
one epoll loop each, so the measuring side is not the bottleneck):

* ``--windows`` clerks (400: every window) open their window and call continuously: every
  ``--interval`` seconds on average (jittered) each writes ``start``, ``finish`` and
  ``call_next`` at once — three commands, three ``window_update`` pushes per call;
* ``--subscribers`` (2,000) connections spread as in a real hall: every window's LED
  strip (a display on its window), ``--tvs`` TV boards and ``--speakers`` speakers per
  zone, and phones following the tickets called first (the rest of the 2,000).

Latencies are between processes on CLOCK_MONOTONIC (system-wide on Linux), from the
clerk's write of its ``call_next`` to:

* ``next_to_led_p50_ms`` / ``next_to_led_p99_ms``: the window's LED receiving the
  ``window_update`` of the call;
* ``next_to_tv_p99_ms``: every TV of the zone receiving it;
* ``next_to_speaker_p99_ms``: every speaker of the zone receiving its ``announce``;
* ``clerk_ack_p99_ms``: the clerk receiving the ``ok`` of its ``call_next``.

    python -m benchmarks.call_latency [--json] [--windows 400] [--subscribers 2000] [--seconds 10]
"""

from __future__ import annotations

import os
import tempfile
from statistics import quantiles

import trio

from callsys.hall import load_hall

from . import _hall_load as load
from ._report import Row, parser, report, row
from ._server import cpu_seconds, spawn_server
from ._kiosks import Kiosk

START = "2026-11-23T09:00"  # a Monday morning: the flagship hall is open
WARMUP_S = 2.0
TAIL_S = 1.0  # seconds before the load stops: calls sent later are not measured


async def issue(url: str, token: str, services: list[str], per_connection: int = 300) -> list[dict]:
    """Take a ticket for each of *services*, in that order, over several kiosk connections (each
    within its rate limit's burst); the ``ok`` results in the same order."""
    chunks = [services[i:i + per_connection] for i in range(0, len(services), per_connection)]
    results: list[list[dict]] = [[] for _ in chunks]

    async def one(i: int) -> None:
        kiosk = await Kiosk.connect(url, token, chunks[i], keyed=False)
        try:
            for start in range(0, len(chunks[i]), 64):
                n = min(64, len(chunks[i]) - start)
                await kiosk.send_requests(n, trio.current_time())
                got = 0
                while got < n:
                    for reply in await kiosk.receive():
                        got += 1
                        if reply["type"] != "ok":
                            raise load.LoadError(f"take_number refused: {reply}")
                        results[i].append(reply["result"])
        finally:
            await kiosk.aclose()

    async with trio.open_nursery() as nursery:
        for i in range(len(chunks)):
            nursery.start_soon(one, i)
    return [r for chunk in results for r in chunk]


async def run(config: str, *, windows: int, subscribers: int, tvs: int, speakers: int, interval: float,
              seconds: float, processes: int) -> list[Row]:
    hall = load_hall(config)
    tokens = {role: min(hall.tokens[role]) for role in ("kiosk", "clerk", "display", "speaker")}
    chosen = hall.windows[:windows]
    zones = sorted({w.zone for w in chosen})
    calls_per_window = int((WARMUP_S + seconds) / interval * 1.5) + 3
    services = [w.skills[i % len(w.skills)] for i in range(calls_per_window) for w in chosen]
    with tempfile.TemporaryDirectory(prefix="callsys-call-latency-") as tmp:
        async with trio.open_nursery() as nursery:
            server = await spawn_server(nursery, ["--config", config, "--store", f"file:{tmp}/calls.db",
                                                  "--port", "0", "--clock", START])
            tickets = await issue(server.url, tokens["kiosk"], services)
            specs = [load.Spec("led", _display(tokens, {"windows": [w.id]})) for w in chosen]
            for zone in zones:
                specs += [load.Spec("tv", _display(tokens, {"zones": [zone]})) for _ in range(tvs)]
                specs += [load.Spec("speaker", {"type": "hello", "role": "speaker", "token": tokens["speaker"],
                                                "subscribe": {"zones": [zone]}}) for _ in range(speakers)]
            for ticket in tickets[:max(0, subscribers - len(specs))]:
                specs.append(load.Spec("phone", {"type": "hello", "role": "phone", "ticket": ticket["ticket"],
                                                 "secret": ticket["secret"]}))
            clerks = [load.Spec("clerk", {"type": "hello", "role": "clerk", "token": tokens["clerk"], "window": w.id},
                                interval=interval) for w in chosen]
            groups = [specs[i::processes] for i in range(processes)] + [clerks[i::2] for i in range(2)]
            workers = await trio.to_thread.run_sync(load.spawn, server.url, [g for g in groups if g])
            await trio.sleep(1.0)  # boards and first queue_updates out
            load.start(workers)
            await trio.sleep(WARMUP_S)
            cpu = cpu_seconds(server.pid)
            await trio.sleep(seconds)
            cpu = cpu_seconds(server.pid) - cpu
            result = await trio.to_thread.run_sync(load.collect, workers)
            server.process.terminate()
    return _rows(result, hall, len(specs), cpu / seconds)


def _display(tokens: dict[str, str], subscribe: dict) -> dict:
    return {"type": "hello", "role": "display", "token": tokens["display"], "subscribe": subscribe}


def _rows(result: dict, hall, subscribers: int, server_cpu: float) -> list[Row]:
    sent = {(window, number): (s, a) for window, number, s, a, _ in result["calls"]}
    start = min((s for s, _ in sent.values()), default=0.0) + WARMUP_S
    end = max((s for s, _ in sent.values()), default=0.0) - TAIL_S  # later calls may still be on their way
    sent = {key: (s, a) for key, (s, a) in sent.items() if s <= end}
    lat: dict[str, list[float]] = {"led": [], "tv": [], "speaker": [], "phone": []}
    for label, _kind, window, number, t in result["records"]:
        s = sent.get((window, number))
        if s is not None and s[0] >= start:
            lat[label].append((t - s[0]) * 1000)
    acks = [(a - s) * 1000 for s, a in sent.values() if s >= start]
    measured = sum(1 for s, _ in sent.values() if s >= start)
    return [
        row("next_to_led_p50_ms", _pct(lat["led"], 50), "ms", None),
        row("next_to_led_p99_ms", _pct(lat["led"], 99), "ms", "<= 20"),
        row("next_to_tv_p99_ms", _pct(lat["tv"], 99), "ms", None),
        row("next_to_speaker_p99_ms", _pct(lat["speaker"], 99), "ms", "<= 20"),
        row("next_to_phone_p99_ms", _pct(lat["phone"], 99), "ms", None),
        row("clerk_ack_p99_ms", _pct(acks, 99), "ms", "<= 10"),
        row("calls_per_s", measured / max(1e-9, _span(sent, start)), "calls/s", None),
        row("led_updates_missing", max(0, measured - len(lat["led"])), "calls", "<= 0"),
        row("subscribers", subscribers, "connections", None),
        row("server_cpu", 100 * server_cpu, "% of a core", None),
        row("clerk_errors", sum(result["errors"].values()), "replies", "<= 0"),
    ]


def _span(sent: dict, start: float) -> float:
    times = [s for s, _ in sent.values() if s >= start]
    return (max(times) - start) if times else 0.0


def _pct(values: list[float], q: int) -> float:
    return quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else float("nan")


def main() -> None:
    p = parser("Call latency in a busy hall: clerks calling at every window, thousands of screens listening.")
    p.add_argument("--config", default="config/qingdao.toml", help="hall file (default: %(default)s)")
    p.add_argument("--windows", type=int, default=400, help="windows with a calling clerk (default: %(default)s)")
    p.add_argument("--subscribers", type=int, default=2000,
                   help="display/speaker/phone connections in all (default: %(default)s)")
    p.add_argument("--tvs", type=int, default=5, help="TV boards per zone (default: %(default)s)")
    p.add_argument("--speakers", type=int, default=2, help="speakers per zone (default: %(default)s)")
    p.add_argument("--interval", type=float, default=1.0,
                   help="mean seconds between two calls of one clerk (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds, after a 2 s warm-up "
                   "(default: %(default)s)")
    p.add_argument("--processes", type=int, default=2, help="subscriber processes (clerks: 2 more) "
                   "(default: %(default)s)")
    args = p.parse_args()
    load_before = os.getloadavg()[0]
    rows = trio.run(lambda: run(args.config, windows=args.windows, subscribers=args.subscribers, tvs=args.tvs,
                                speakers=args.speakers, interval=args.interval, seconds=args.seconds,
                                processes=args.processes))
    notes = [f"{args.windows} clerks (start+finish+call_next every ~{args.interval:g} s each) and {args.subscribers} "
             f"subscribers (an LED per window, {args.tvs} TVs and {args.speakers} speakers per zone, phones) in "
             f"{args.processes + 2} load processes; the server in a child process; all on this machine's cores",
             "latency from the clerk's write of call_next to the receipt, CLOCK_MONOTONIC across processes",
             f"machine load average (1 min) before / after the run: {load_before:.2f} / {os.getloadavg()[0]:.2f}"]
    report("benchmarks.call_latency — a busy hall", rows, args.json, notes=notes)


if __name__ == "__main__":
    main()
