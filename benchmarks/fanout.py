"""One call fanned out to N displays of one zone: push messages per second, and the clerk's ack.

The server runs as a child process (``python -m callsys serve`` on the flagship hall, a
fresh store); N display connections subscribe to one zone (``f1-tax``, 70 windows) from
``--processes`` load processes (:mod:`benchmarks._hall_load`, one epoll loop each); one
clerk at a window of that zone, in its own process, calls ``--calls`` times, one call
every ``--interval`` seconds. The subscribers grow 100 -> 1,000 -> 3,000 (``--sizes``)
on the same server.

* ``messages_per_s``: the ``window_update`` pushes of one call (N, or 3N when the clerk's
  write also started and finished the citizen before: three window events, each pushed
  to every display, the ``called`` one last) / (the last display's receipt of the
  ``called`` update - the clerk's send), the median over the calls, at the largest N —
  how fast one process pushes;
* ``clerk_ack_ms_at_N``: the clerk's ``call_next`` from send to ``ok`` (median), while
  its own call fans out to N connections;
* ``fanout_ms_at_N``: send to the last display's receipt (median);
* ``server_cpu_us_per_push_at_N``: the server's CPU time over the calls (their commits,
  queue_updates and all) per push delivered — the figure that does not depend on how
  busy the machine's other processes keep the cores.

    python -m benchmarks.fanout [--json] [--sizes 100,1000,3000] [--calls 7]
"""

from __future__ import annotations

import os
import tempfile
from statistics import median

import trio

from callsys.client import connect
from callsys.hall import load_hall

from . import _hall_load as load
from ._report import Row, parser, report, row
from ._server import cpu_seconds, spawn_server

START = "2026-11-23T09:00"  # a Monday morning: the flagship hall is open
ZONE = "f1-tax"


async def run(config: str, *, sizes: list[int], calls: int, interval: float, processes: int) -> list[Row]:
    """Grow the subscribers through *sizes*; at each, let one clerk call *calls* times."""
    hall = load_hall(config)
    window = next(w for w in hall.windows if w.zone == ZONE)
    tokens = {role: min(hall.tokens[role]) for role in ("kiosk", "clerk", "display")}
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="callsys-fanout-") as tmp:
        async with trio.open_nursery() as nursery:
            server = await spawn_server(nursery, ["--config", config, "--store", f"file:{tmp}/fanout.db",
                                                  "--port", "0", "--clock", START])
            async with connect(server.url, role="kiosk", token=tokens["kiosk"]) as kiosk:
                for _ in range(calls * len(sizes) + 1):
                    await kiosk.request("take_number", service=window.skills[0])
            subscribers: list = []
            have = 0
            for size in sizes:
                hello = {"type": "hello", "role": "display", "token": tokens["display"], "subscribe": {"zones": [ZONE]}}
                new = [load.Spec("tv", hello) for _ in range(size - have)]
                groups = [new[i::processes] for i in range(processes)]
                subscribers += await trio.to_thread.run_sync(load.spawn, server.url, [g for g in groups if g])
                have = size
                clerk_hello = {"type": "hello", "role": "clerk", "token": tokens["clerk"], "window": window.id}
                clerk = await trio.to_thread.run_sync(
                    load.spawn, server.url, [[load.Spec("clerk", clerk_hello, interval=interval, calls=calls)]])
                await trio.sleep(1.0)  # the connections' board and first queue_update are out
                cpu = cpu_seconds(server.pid)
                load.start(subscribers + clerk)
                await trio.sleep(interval * 1.5 * calls + 1.0)
                cpu = cpu_seconds(server.pid) - cpu
                clerk_result = await trio.to_thread.run_sync(load.collect, clerk)
                subs_result = await trio.to_thread.run_sync(load.collect, subscribers)
                rows += _rows(size, clerk_result, subs_result, size == sizes[-1])
                pushed = size * sum(call[4] for call in clerk_result["calls"])
                rows.append(row(f"server_cpu_us_per_push_at_{size}", cpu * 1e6 / max(1, pushed), "us", None))
                # the subscribers' processes are done; reconnect them for the next size
                subscribers = []
                have = 0
            server.process.terminate()
    return rows


def _rows(size: int, clerk: dict, subs: dict, last: bool) -> list[Row]:
    received: dict[str, list[float]] = {}
    for _label, _kind, _window, number, t in subs["records"]:
        received.setdefault(number, []).append(t)
    rates, acks, spans = [], [], []
    for _window, number, sent, acked, updates in clerk["calls"]:
        times = received.get(number, [])
        acks.append((acked - sent) * 1000)
        if len(times) == size:  # every display got it
            span = max(times) - sent
            spans.append(span * 1000)
            rates.append(updates * size / span)
    missing = sum(1 for _w, number, *_ in clerk["calls"] if len(received.get(number, [])) != size)
    rows = [
        row(f"messages_per_s_at_{size}", median(rates) if rates else 0.0, "messages/s", None),
        row(f"fanout_ms_at_{size}", median(spans) if spans else float("nan"), "ms", None),
        row(f"clerk_ack_ms_at_{size}", median(acks) if acks else float("nan"), "ms",
            "<= 10" if last else None),
        row(f"incomplete_fanouts_at_{size}", missing + sum(clerk["errors"].values()), "calls", "<= 0"),
    ]
    if last:
        rows.insert(0, row("messages_per_s", rows[0]["value"], "messages/s", ">= 50000"))
    return rows


def main() -> None:
    p = parser("One call fanned out to N displays of one zone: push messages/s and the clerk's ack.")
    p.add_argument("--config", default="config/qingdao.toml", help="hall file (default: %(default)s)")
    p.add_argument("--sizes", default="100,1000,3000", help="subscriber counts, comma-separated (default: %(default)s)")
    p.add_argument("--calls", type=int, default=7, help="calls measured at each size (default: %(default)s)")
    p.add_argument("--interval", type=float, default=0.4, help="seconds between two calls (default: %(default)s)")
    p.add_argument("--processes", type=int, default=2, help="subscriber processes (default: %(default)s)")
    args = p.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    load_before = os.getloadavg()[0]
    rows = trio.run(lambda: run(args.config, sizes=sizes, calls=args.calls, interval=args.interval,
                                processes=args.processes))
    notes = [f"displays subscribed to zone {ZONE} from {args.processes} load processes (epoll, msgpack); one clerk "
             "in its own process; the server in a child process; all on this machine's cores",
             "medians over the calls; messages_per_s = window_updates of the call's write (N or 3N) / (send -> last "
             "display's receipt of the called update)",
             f"machine load average (1 min) before / after the run: {load_before:.2f} / {os.getloadavg()[0]:.2f}"]
    report("benchmarks.fanout — one call to N displays", rows, args.json, notes=notes)


if __name__ == "__main__":
    main()
