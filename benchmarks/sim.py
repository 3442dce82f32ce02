"""Simulator: a peak Monday of the 400-window hall in virtual time, Erlang C accuracy, live latency.

* ``qingdao_day_s``: wall seconds to simulate the scenario ``qingdao-peak-monday`` (about
  30,000 visitors at 400 windows) on the real engine in virtual time — drawing the crowd,
  the discrete-event loop, and the summary. Best of ``--repeat`` runs (the machine is
  shared; the best run is the least disturbed one).
* ``erlang_c_rel_err``: |simulated − Erlang C| / Erlang C of the mean wait of the M/M/2
  scenario ``mmc`` over ``--replications`` seeded runs of 60 days each.

* ``eta_mae_min`` / ``eta_p90_abs_err_min``: how good the wait estimates are (``callsys.estimate``,
  the one estimator the server uses): for every called citizen of ``--eta-scenario``
  (``qingdao-weekday``), the estimate told at issue (at check-in for appointments) against
  the actual wait until the first call — mean and 90th percentile of the absolute error, in
  minutes. ``eta_mae_min_NAME`` / ``eta_p90_abs_err_min_NAME``: the same for each scenario of
  ``--eta-others`` (no target).

* ``peak_told_early_share``: honest issuing on that Monday (the hall's ``[issuing]`` daily caps
  and cutoff, ``sim.metrics.issuing``): of the citizens turned away, the share told so at the
  kiosk rather than giving up after queueing — told early / (told early + gave up). No target:
  a hall trades it against the citizens it serves (the note gives both, and the median wait of
  those who gave up).

* ``plan_weekday_400_p90_min``: the constrained plan (``sim plan qingdao-weekday --target
  "p90 wait <= 15 min" --max-windows 400``, :meth:`sim.planner.Planner.within`): the worst
  service's p90 wait it reaches (mean over ``--plan-replications`` replications; its margin,
  the allocation and the wall time are in the notes). The search for what more would be
  needed is skipped. ``--plan-replications 0`` skips the plan; ``--plan-scenario``,
  ``--plan-windows`` shrink it (smoke tests).

* ``weekday_p90_static_min`` / ``weekday_p90_regulated_min``: flow regulation proven in the
  simulator (:mod:`callsys.regulator`). ``--regulate-scenario`` (``qingdao-weekday``, the
  hall's 400 windows as staffed by the scenario) run ``--regulate-replications`` times with
  windows keeping their skills, then on the same seeds with the automatic regulator as a
  simulated manager (``sim run --regulate``: the hall's ``[regulation]`` limits,
  reassignments only): the worst service's p90 wait (per service the mean over the
  replications, then the worst), and ``weekday_within_target_static`` /
  ``weekday_within_target_regulated``, the share called within its service's target.
  ``--regulate-replications 0`` skips them; ``--regulate-visitors`` shrinks the day (smoke tests).

* ``live_*``: the same Monday played live (``sim.live``) against a real server started in
  a separate process (``callsys serve`` on the flagship hall, a fresh store in a temporary
  directory, its clock at 08:50 running ``--live-speed`` times real time) for
  ``--live-seconds``: every device connected (20 kiosks, 400 clerks, 400 LED displays, a TV
  and a speaker per zone, phones for a fifth of the QR/appointment tickets). Command ->
  acknowledgement and clerk "next" -> LED/TV/speaker/phone latencies; errors, dropped pushes
  and the end-of-run server-vs-clients check. Player and server share the machine.

    python -m benchmarks.sim [--json] [--repeat 3] [--replications 40] [--live-speed 60] [--live-seconds 70]
                             [--eta-scenario qingdao-weekday] [--eta-others qingdao-peak-monday,demo,mmc]
                             [--plan-replications 3] [--plan-scenario qingdao-weekday] [--plan-windows 400]
                             [--regulate-replications 3] [--regulate-scenario qingdao-weekday]
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from sim.experiment import combine, interval, replicate, spread
from sim.live import LivePlayer, LiveSettings
from sim.planner import Planner, parse_target
from sim.runner import Simulation, sim_regulation
from sim.scenario import load_scenario

from ._report import parser, report, row

DAY_TARGET = "<= 10"
ERLANG_TARGET = "<= 0.05"
ETA_TARGET = "<= 3"  # minutes of mean absolute error of the wait estimates
ETA_OTHERS = "qingdao-peak-monday,demo,mmc"
PLAN_TARGET = "p90 wait <= 15 min"
REGULATE_REPLICATIONS = 3  # seeds of the static vs regulated comparison
PLAN_REPLICATIONS = 3  # replications per judgement of the benchmark's plan (the CLI's default is 5)
LIVE_CLOCK = "2026-11-23T08:50"  # ten virtual minutes to connect every device before 09:00
SERVER_START_S = 30.0  # real seconds the server may take to listen
LIVE_MEASURES = ("command -> ack", "call -> led", "call -> tv", "call -> speaker", "call -> phone")


def bench_day(name: str, repeat: int) -> tuple[float, dict[str, Any], Simulation]:
    """Best wall time of *repeat* runs of scenario *name*, with the last run's summary."""
    scenario = load_scenario(name)
    best = float("inf")
    for _ in range(repeat):
        sim = Simulation(scenario)
        started = time.perf_counter()
        summary = sim.run()
        best = min(best, time.perf_counter() - started)
    return best, summary, sim


def bench_erlang(replications: int) -> dict[str, Any]:
    scenario = load_scenario("mmc")
    summaries = [s for _, s in replicate(scenario, replications)]
    check = combine(scenario, summaries)["theory"]
    ci = interval([s["waits"]["all"]["mean_min"] for s in summaries])["ci95"]
    return check | {"ci95_rel": ci / check["erlang_c_wait_min"], "citizens": sum(s["waits"]["all"]["called"] for s in summaries)}


def bench_eta(name: str, visitors: int | None = None) -> dict[str, Any]:
    """One run of scenario *name* (optionally with *visitors* a day): its ``eta`` figures."""
    scenario = load_scenario(name).adjusted(visitors=visitors) if visitors else load_scenario(name)
    return Simulation(scenario).run()["eta"]


def eta_rows(name: str, eta: dict[str, Any], target: bool) -> list[dict[str, Any]]:
    suffix = "" if target else "_" + name.replace("-", "_")
    return [row(f"eta_mae_min{suffix}", eta["mae_min"], "min", ETA_TARGET if target else None),
            row(f"eta_p90_abs_err_min{suffix}", eta["p90_abs_err_min"], "min")]


def bench_plan(name: str, windows: int, replications: int) -> tuple[dict[str, Any], float]:
    """The plan of *name* within *windows* windows for ``PLAN_TARGET``: (its dict, wall seconds)."""
    started = time.perf_counter()
    plan = Planner(load_scenario(name), parse_target(PLAN_TARGET), replications=replications).within(windows, beyond=False)
    return plan.to_dict(), time.perf_counter() - started


def plan_note(name: str, plan: dict[str, Any], seconds: float) -> str:
    worst, moved = plan["worst"], [p for p in plan["pools"] if p["planned"] != p["current"]]
    skills, today = plan["universal_skills"], plan.get("current_worst") or {"service": "–", "mean": float("nan")}
    return (f"plan {name} within {plan['max_windows']} windows for {plan['target']!r}: worst {worst['service']} p90 "
            f"{worst['mean']:.1f} ± {worst['margin'] or 0:.1f} min (one-sided {100 * plan['confidence']:g} %, "
            f"{plan['replications']} replications), met: {'yes' if plan['met'] else 'no'}; today's allocation "
            f"{today['service']} {today['mean']:.1f} min; moved: "
            + (", ".join(f"{p['pool']} {p['current']}->{p['planned']}" for p in moved) or "nothing")
            + f"; universal windows serve {'everything' if skills is None else ', '.join(skills)}; "
              f"{plan['runs']} runs in {seconds:.0f} s")


def bench_regulation(name: str, replications: int, visitors: int | None = None) -> dict[str, dict[str, Any]]:
    """*name* with windows keeping their skills (``static``) and with the automatic regulator
    (``regulated``), same seeds: per mode the worst service, its p90 wait (mean over the
    runs), the mean share called within target, the regulator's commands and wall seconds."""
    scenario = load_scenario(name).adjusted(visitors=visitors) if visitors else load_scenario(name)
    out = {}
    for mode, regulate in (("static", None), ("regulated", sim_regulation(scenario))):
        started = time.perf_counter()
        summaries = [s for _, s in replicate(scenario, replications, regulate=regulate)]
        runs = spread(summaries)
        p90 = {code: figures["p90_min"]["mean"] for code, figures in runs["by_service"].items()}
        worst = max((c for c in p90 if p90[c] is not None), key=lambda c: p90[c])
        out[mode] = {"worst_service": worst, "p90_min": p90[worst], "within_target": runs["within_target"]["mean"],
                     "p90_all_min": runs["p90_min"]["mean"],
                     "commands": sum(s.get("regulation", {}).get("commands", 0) for s in summaries),
                     "seconds": time.perf_counter() - started}
    return out


def regulation_rows(result: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [row("weekday_p90_static_min", result["static"]["p90_min"], "min", "<= 15"),
            row("weekday_p90_regulated_min", result["regulated"]["p90_min"], "min", "<= 15"),
            row("weekday_within_target_static", result["static"]["within_target"], "share"),
            row("weekday_within_target_regulated", result["regulated"]["within_target"], "share")]


def start_server(directory: Path, speed: float) -> tuple[subprocess.Popen, str]:
    """``callsys serve`` on the flagship hall in a child process; (process, its URL)."""
    log = open(directory / "server.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "callsys", "serve", "--config", "config/qingdao.toml", "--store",
         f"file:{directory / 'live.db'}", "--port", "0", "--clock", LIVE_CLOCK, "--speed", str(speed),
         "--log-level", "info"], stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline and process.poll() is None:
        found = re.search(r"url=(ws://\S+)", (directory / "server.log").read_text())
        if found:
            return process, found.group(1)
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"the server did not start; see {directory / 'server.log'}")


def bench_live(speed: float, seconds: float) -> dict[str, Any]:
    """The peak Monday played live against a server in another process."""
    with tempfile.TemporaryDirectory() as tmp:
        process, url = start_server(Path(tmp), speed)
        try:
            settings = LiveSettings(speed=speed, duration_s=seconds)
            return trio.run(LivePlayer(load_scenario("qingdao-peak-monday"), url, settings=settings).run)
        finally:
            process.terminate()
            process.wait(timeout=30)


def live_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for measure in LIVE_MEASURES:
        stats = result["latency"][measure]
        name = measure.replace(" -> ", "_to_").replace(" ", "_")
        rows += [row(f"live_{name}_{q}_ms", stats.get(f"{q}_ms", 0.0), "ms") for q in ("p50", "p90", "p99", "max")]
    return rows + [
        row("live_connections", sum(result["connections"].values()), "connections"),
        row("live_requests", result["requests"], "requests"),
        row("live_errors", sum(result["errors"].values()), "errors", "<= 0"),
        row("live_dropped", sum(result["dropped"].values()), "pushes", "<= 0"),
        row("live_check_ok", float(result["check"]["ok"]), "1 = server agrees with clients", ">= 1"),
    ]


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--scenario", default="qingdao-peak-monday", help="the day to time")
    p.add_argument("--repeat", type=int, default=3, help="timed runs of the day; the best is reported")
    p.add_argument("--replications", type=int, default=40, help="M/M/2 runs for the Erlang C check")
    p.add_argument("--live-speed", type=float, default=60.0, help="server clock speed of the live play")
    p.add_argument("--live-seconds", type=float, default=70.0, help="real seconds of live play (0: skip)")
    p.add_argument("--eta-scenario", default="qingdao-weekday",
                   help=f"the day whose wait estimates are held to the target ({ETA_TARGET} min mean absolute error)")
    p.add_argument("--eta-others", default=ETA_OTHERS,
                   help="comma-separated scenarios whose wait estimates are reported too ('' for none)")
    p.add_argument("--eta-visitors", type=int, default=None,
                   help="visitors a day for the wait-estimate runs instead of each scenario's (smoke tests)")
    p.add_argument("--plan-replications", type=int, default=PLAN_REPLICATIONS,
                   help=f"replications per judgement of the constrained plan (default {PLAN_REPLICATIONS}; 0: skip it)")
    p.add_argument("--plan-scenario", default="qingdao-weekday", help="the scenario of the constrained plan")
    p.add_argument("--plan-windows", type=int, default=400, help="windows the constrained plan may use")
    p.add_argument("--regulate-replications", type=int, default=REGULATE_REPLICATIONS,
                   help=f"seeds of the static vs regulated comparison (default {REGULATE_REPLICATIONS}; 0: skip it)")
    p.add_argument("--regulate-scenario", default="qingdao-weekday", help="the scenario of the regulation comparison")
    p.add_argument("--regulate-visitors", type=int, default=None,
                   help="visitors a day for the regulation comparison instead of the scenario's (smoke tests)")
    args = p.parse_args()
    seconds, summary, sim = bench_day(args.scenario, args.repeat)
    erlang = bench_erlang(args.replications)
    flow = summary["flow"]
    visitors = len(sim.citizens)
    rows = [
        row("qingdao_day_s", seconds, "s", DAY_TARGET),
        row("qingdao_visitors", visitors, "citizens"),
        row("qingdao_commands_per_s", sim.commands / seconds, "engine commands/s"),
        row("erlang_c_rel_err", erlang["rel_err"], "fraction", ERLANG_TARGET),
        row("peak_told_early_share", summary["issuing"]["told_early_share"] or 0.0, "share"),
    ]
    issuing = summary["issuing"]
    notes = [f"issuing on {args.scenario}: {issuing['told_early']:,} told early at the kiosk "
             f"({', '.join(f'{k} {v:,}' for k, v in issuing['told_early_by_reason'].items())}), "
             f"{issuing['gave_up']:,} gave up after queueing (median wait "
             f"{issuing['gave_up_waited_median_min'] or 0:.0f} min), {flow['served']:,} served"]
    for name in [args.eta_scenario] + [n for n in args.eta_others.split(",") if n]:
        eta = bench_eta(name, args.eta_visitors)
        rows += eta_rows(name, eta, name == args.eta_scenario)
        notes.append(f"wait estimates on {name}: {eta['estimated']:,} of {eta['called']:,} called citizens told one; "
                     f"bias {eta['bias_min']:+.2f} min (mean estimate {eta['mean_estimate_min']:.1f} min, "
                     f"actual {eta['mean_actual_min']:.1f} min)")
    if args.plan_replications > 0:
        plan, plan_s = bench_plan(args.plan_scenario, args.plan_windows, args.plan_replications)
        rows.append(row("plan_weekday_400_p90_min", plan["worst"]["mean"], "min", "<= 15"))
        notes.append(plan_note(args.plan_scenario, plan, plan_s))
    if args.regulate_replications > 0:
        regulation = bench_regulation(args.regulate_scenario, args.regulate_replications, args.regulate_visitors)
        rows += regulation_rows(regulation)
        notes.append(f"regulation on {args.regulate_scenario}, {args.regulate_replications} seed(s): " + "; ".join(
            f"{mode}: worst {r['worst_service']} p90 {r['p90_min']:.1f} min, all p90 {r['p90_all_min']:.1f} min, "
            f"{100 * r['within_target']:.1f} % within target, {r['commands']:,} regulator commands, "
            f"{r['seconds']:.0f} s" for mode, r in regulation.items()))
    if args.live_seconds > 0:
        live = bench_live(args.live_speed, args.live_seconds)
        rows += live_rows(live)
        notes.append(f"live: qingdao-peak-monday at speed {args.live_speed:g} from 08:50 for {live['real_s']:.0f} s "
                     f"real: {live['flow'].get('issued', 0):,} numbers taken, {live['flow'].get('called', 0):,} "
                     f"calls, {live['requests']:,} requests; connections {live['connections']}")
        notes.append("live command -> ack p99 (ms) per 5 s of play: "
                     + " ".join(f"{b['p99_ms']:.0f}" for b in live["timeline"]))
    report(
        f"Simulator: {args.scenario} in virtual time; M/M/2 against Erlang C",
        rows, args.json,
        notes=[f"{args.scenario}: {visitors:,} citizens drawn, {flow['queued']:,} queued, {flow['served']:,} served, "
               f"{sim.commands:,} engine commands; best of {args.repeat} runs",
               f"M/M/2 at utilisation 0.6: Erlang C {erlang['erlang_c_wait_min']:.3f} min, simulated "
               f"{erlang['sim_wait_min']:.3f} min ± {100 * erlang['ci95_rel']:.1f} % (95 %) over "
               f"{erlang['replications']} runs x 60 days ({erlang['citizens']:,} citizens)", *notes],
    )


if __name__ == "__main__":
    main()
