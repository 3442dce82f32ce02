"""Ten thousand phones and a thousand devices on one server, clerks calling, then a restart.

The server runs as a child process (``python -m callsys serve`` on the flagship hall,
400 windows in 18 zones, a fresh store). This process first issues ``--phones`` tickets
(kiosk connections, spread over the windows' services), then hands each (ticket, secret)
to a phone in the load processes (:mod:`benchmarks._hall_load`, one epoll loop each, with
``reconnect``):

* ``--phones`` (10,000) phones, each following its ticket (``hello`` role phone), in
  ``--phone-processes`` processes;
* ``--devices`` (1,000) devices in two more processes: 40 % clerks (one per window, 400),
  as many window LEDs, 10 % TV boards and 10 % speakers spread over the zones. The
  clerks call continuously, ``--calls-per-s`` in all (jittered), each call writing
  ``start``, ``finish``, ``call_next``: the called phones hear at once, the others'
  places move and the 5 s phone refresh pushes them.

After ``--seconds`` of calling the server gets SIGTERM (``--signal KILL``: SIGKILL, a
crash), and is started again on the same
store and port; every load process brings its connections back with the client library's
jittered backoff (0.25 s doubling to 10 s). The run goes on for ``--after`` seconds.

Metrics:

* ``rss_mib``: the server's peak RSS (``VmHWM``), the larger of its two runs;
* ``next_to_led_p99_ms``: a clerk's write of ``call_next`` -> the window's LED receiving
  the ``called`` update (CLOCK_MONOTONIC across processes), calls before the restart after
  a warm-up;
* ``max_loop_stall_ms``: the longest task step of the server's event loop (``stats``
  ``loop.max_step_ms`` over a manager connection, before the restart and at the end —
  the larger); the longest loop turn and GC pause are reported beside it;
* ``reconnect_all_s``: from the restarted server's ``listening`` line to the last of the
  clients welcomed again;
* ``phones_updated`` (``ticket_update`` pushes the phones received) and ``connections``
  (clients welcomed before the restart).

    python -m benchmarks.phones [--json] [--phones 10000] [--devices 1000] [--seconds 20]
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from datetime import datetime, timedelta
from statistics import quantiles
from typing import Any

import trio

from callsys.client import connect
from callsys.hall import Hall, load_hall

from . import _hall_load as load
from ._report import Row, parser, report, row
from ._server import cpu_seconds, spawn_server
from .call_latency import issue

START = "2026-11-23T09:00"  # a Monday morning: the flagship hall is open
WARMUP_S = 2.0  # calls in the first seconds are not measured
TAIL_S = 1.0  # nor calls sent in the last second before the restart
BACK_TIMEOUT_S = 120.0  # the run fails if the clients are not back by then


def peak_rss_mib(pid: int) -> float:
    """The peak resident set (``VmHWM``) of process *pid*, MiB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def layout(hall: Hall, devices: int) -> dict[str, Any]:
    """How *devices* split into clerks (and their windows' LEDs), TVs and speakers per zone."""
    clerks = min(len(hall.windows), devices * 2 // 5)
    windows = hall.windows[:clerks]
    zones = sorted({w.zone for w in windows}) or sorted({w.zone for w in hall.windows})
    rest = max(0, devices - 2 * clerks)
    tvs = rest // 2
    return {"windows": windows, "zones": zones, "tvs": tvs, "speakers": rest - tvs}


def device_specs(hall: Hall, devices: int, interval: float) -> list[load.Spec]:
    tokens = {role: min(hall.tokens[role]) for role in ("clerk", "display", "speaker")}
    plan = layout(hall, devices)
    specs = []
    for w in plan["windows"]:
        specs.append(load.Spec("clerk", {"type": "hello", "role": "clerk", "token": tokens["clerk"], "window": w.id},
                               interval=interval))
        specs.append(load.Spec("led", {"type": "hello", "role": "display", "token": tokens["display"],
                                       "subscribe": {"windows": [w.id]}}))
    zones = plan["zones"]
    for i in range(plan["tvs"]):
        specs.append(load.Spec("tv", {"type": "hello", "role": "display", "token": tokens["display"],
                                      "subscribe": {"zones": [zones[i % len(zones)]]}}))
    for i in range(plan["speakers"]):
        specs.append(load.Spec("speaker", {"type": "hello", "role": "speaker", "token": tokens["speaker"],
                                           "subscribe": {"zones": [zones[i % len(zones)]]}}))
    return specs


async def stats(url: str, token: str) -> dict[str, Any]:
    async with connect(url, role="manager", token=token) as manager:
        return await manager.request("stats")


async def wait_all_back(url: str, token: str, clients: int) -> None:
    """Until the server counts *clients* signed-in connections besides this manager."""
    with trio.fail_after(BACK_TIMEOUT_S):
        async with connect(url, role="manager", token=token) as manager:
            while sum((await manager.request("stats"))["connections"].values()) - 1 < clients:
                await trio.sleep(0.05)


async def run(config: str, *, phones: int, devices: int, calls_per_s: float, seconds: float, after: float,
              phone_processes: int, stop_signal: signal.Signals = signal.SIGTERM) -> tuple[list[Row], dict[str, Any]]:
    hall = load_hall(config)
    kiosk, manager = min(hall.tokens["kiosk"]), min(hall.tokens["manager"])
    devs = device_specs(hall, devices, 1.0)
    clerks = [s for s in devs if s.label == "clerk"]
    for s in clerks:
        s.interval = len(clerks) / calls_per_s
    skills = [w.skills for w in layout(hall, devices)["windows"]] or [w.skills for w in hall.windows]
    services = [skills[i % len(skills)][(i // len(skills)) % len(skills[i % len(skills)])] for i in range(phones)]
    info: dict[str, Any] = {"clerks": len(clerks), "leds": sum(s.label == "led" for s in devs),
                            "tvs": sum(s.label == "tv" for s in devs),
                            "speakers": sum(s.label == "speaker" for s in devs)}
    with tempfile.TemporaryDirectory(prefix="callsys-phones-") as tmp:
        store = f"file:{tmp}/phones.db"
        args = ["--config", config, "--store", store, "--max-connections", "16000"]
        async with trio.open_nursery() as nursery:
            old_log: list[tuple[float, str]] = []
            server = await spawn_server(nursery, [*args, "--port", "0", "--clock", START], old_log)
            started = time.monotonic()
            port = server.url.rsplit(":", 1)[1].split("/")[0]
            tickets = await issue(server.url, kiosk, services)
            specs = [load.Spec("phone", {"type": "hello", "role": "phone", "ticket": t["ticket"],
                                         "secret": t["secret"]}) for t in tickets]
            groups = [specs[i::phone_processes] for i in range(phone_processes)] + [devs[i::2] for i in range(2)]
            groups = [g for g in groups if g]
            t = time.monotonic()
            workers = await trio.to_thread.run_sync(lambda: load.spawn(server.url, groups, reconnect=True))
            info["connect_s"] = time.monotonic() - t
            clients = len(specs) + len(devs)
            before = await stats(server.url, manager)
            info["connections"] = sum(before["connections"].values()) - 1
            load.start(workers)
            go = time.monotonic()
            await trio.sleep(seconds)
            steady = await stats(server.url, manager)
            rss = [peak_rss_mib(server.pid)]
            stop_at = time.monotonic()
            server.process.send_signal(stop_signal)
            await server.process.wait()
            info["exit_s"] = time.monotonic() - stop_at
            info["shutdown"] = _shutdown_timeline(old_log, stop_at)
            clock = datetime.fromisoformat(START) + timedelta(seconds=time.monotonic() - started + 1)
            server = await spawn_server(nursery, [*args, "--port", port, "--clock",
                                                  clock.isoformat(timespec="seconds")])
            listening = time.monotonic()
            cpu = cpu_seconds(server.pid)
            await wait_all_back(server.url, manager, clients)
            info["storm_cpu_s"] = cpu_seconds(server.pid) - cpu
            info["storm_s"] = time.monotonic() - listening
            await trio.sleep(after)
            final = await stats(server.url, manager)
            rss.append(peak_rss_mib(server.pid))
            result = await trio.to_thread.run_sync(load.collect, workers)
            server.process.terminate()
    info |= {"steady": steady["loop"], "after_restart": final["loop"], "clients": clients,
             "stopped_at": stop_at - go, "sigterm_at": stop_at, "waiting_at_start": before["waiting"],
             "errors": result["errors"]}
    return _rows(result, go + WARMUP_S, stop_at - TAIL_S, listening, rss, steady, final, info), info


def _rows(result: dict, start: float, end: float, listening: float, rss: list[float], steady: dict, final: dict,
          info: dict) -> list[Row]:
    sent = {(w, n): s for w, n, s, _a, _c in result["calls"] if start <= s <= end}
    led = [(t - sent[(w, n)]) * 1000 for label, _k, w, n, t in result["records"]
           if label == "led" and (w, n) in sent]
    loops = [steady["loop"], final["loop"]]
    back = result["back_at"] - listening if result["back_at"] else float("nan")
    returns = [t - listening for t in result["back"]]
    return [
        row("rss_mib", max(rss), "MiB", "<= 1024"),
        row("next_to_led_p50_ms", _pct(led, 50), "ms", None),
        row("next_to_led_p99_ms", _pct(led, 99), "ms", "<= 20"),
        row("max_loop_stall_ms", max(loop["max_step_ms"] for loop in loops), "ms", "<= 20"),
        row("max_loop_turn_ms", max(loop["max_turn_ms"] for loop in loops), "ms", None),
        row("max_gc_ms", max(loop["max_gc_ms"] for loop in loops), "ms", None),
        row("steps_over_20ms", sum(loop["steps_over_ms"]["20"] for loop in loops), "steps", None),
        row("reconnect_all_s", back, "s", "<= 15"),
        row("reconnect_p50_s", _pct(returns, 50), "s", None),
        row("reconnect_p90_s", _pct(returns, 90), "s", None),
        row("reconnect_failed_attempts", result["refused"], "attempts", None),
        row("restart_downtime_s", listening - info["sigterm_at"], "s", None),
        row("storm_server_cpu", 100 * info["storm_cpu_s"] / info["storm_s"], "% of a core", None),
        row("storm_server_cpu_per_client_ms", 1000 * info["storm_cpu_s"] / info["clients"], "ms", None),
        row("phones_updated", result["counts"].get("phone:ticket_update", 0), "pushes", None),
        row("connections", info["connections"], "connections", f">= {info['clients']}"),
        row("reconnected", result["drops"], "connections", f">= {info['clients']}"),
        row("calls_measured", len(sent), "calls", None),
        row("led_updates_missing", max(0, len(sent) - len(led)), "calls", "<= 0"),
        row("clerk_errors", sum(result["errors"].values()), "replies", None),
    ]


def _shutdown_timeline(log: list[tuple[float, str]], sigterm: float) -> str:
    """When the old server logged its shutdown and its stop, seconds after SIGTERM, and its
    ``stopped`` line (the loop figures over its whole run, the shutdown included)."""
    out = []
    for t, line in log:
        if t >= sigterm and any(f"event={e} " in line + " " for e in ("shutdown", "stopped")):
            out.append(f"+{t - sigterm:.2f} s: {line.split('event=', 1)[1]}")
    return "; ".join(out)


def _pct(values: list[float], q: int) -> float:
    return quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else float("nan")


def main() -> None:
    p = parser("Ten thousand phones and a thousand devices on one server: call latency, loop stalls, memory, "
               "and every client back after a restart.")
    p.add_argument("--config", default="config/qingdao.toml", help="hall file (default: %(default)s)")
    p.add_argument("--phones", type=int, default=10_000, help="phones, one per ticket (default: %(default)s)")
    p.add_argument("--devices", type=int, default=1000,
                   help="clerks, LEDs, TVs and speakers in all (40 %% clerks up to one per window, as many LEDs, "
                        "the rest TVs and speakers) (default: %(default)s)")
    p.add_argument("--calls-per-s", type=float, default=20.0,
                   help="calls per second of all clerks together (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=20.0,
                   help="seconds of calling before the restart (default: %(default)s)")
    p.add_argument("--after", type=float, default=5.0,
                   help="seconds of calling after every client is back (default: %(default)s)")
    p.add_argument("--signal", default="TERM", choices=("TERM", "KILL"),
                   help="how the server is stopped mid-run: TERM (a clean shutdown) or KILL (a crash: the "
                        "downtime is only the restart's) (default: %(default)s)")
    p.add_argument("--phone-processes", type=int, default=4, help="load processes for the phones; the devices "
                   "take 2 more (default: %(default)s)")
    args = p.parse_args()
    load_before = os.getloadavg()[0]
    rows, info = trio.run(lambda: run(args.config, phones=args.phones, devices=args.devices,
                                      calls_per_s=args.calls_per_s, seconds=args.seconds, after=args.after,
                                      phone_processes=args.phone_processes,
                                      stop_signal=signal.Signals[f"SIG{args.signal}"]))
    notes = [f"{args.phones} phones in {args.phone_processes} load processes; {info['clerks']} clerks (together "
             f"~{args.calls_per_s:g} calls/s of start+finish+call_next), {info['leds']} LEDs, {info['tvs']} TVs, "
             f"{info['speakers']} speakers in 2 more; epoll, msgpack, nice {load.LOAD_NICENESS}; the server in a "
             "child process; all on this machine's cores",
             f"connected in {info['connect_s']:.1f} s; SIG{args.signal} after {info['stopped_at']:.1f} s of calling; the old "
             f"server exited {info['exit_s']:.1f} s later; clerk errors {info['errors']}",
             f"old server after the signal: {info['shutdown'] or '-'}",
             f"loop before the restart: {info['steady']}; after: {info['after_restart']}",
             f"machine load average (1 min) before / after the run: {load_before:.2f} / {os.getloadavg()[0]:.2f}"]
    report("benchmarks.phones — 10,000 phones, 1,000 devices, a restart", rows, args.json, notes=notes)


if __name__ == "__main__":
    main()
