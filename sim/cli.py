"""``callsys sim run|plan|live``: the simulator's sub-commands (registered on import)."""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from callsys.cli import bounded, command

from . import _scenario_schema as schema, report
from .scenario import Scenario, load_scenario


MAX_REPLICATIONS = 1000  # runs of one `sim run`


def _scenario_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", help="scenario name in sim/scenarios/ (e.g. qingdao-peak-monday) or a .toml path")
    p.add_argument("--seed", type=bounded(int, 0, schema.MAX_SEED),
                   help="seed of the (first) run, 0 ... 2**32 - 1; the scenario's by default")
    p.add_argument("--days", type=bounded(int, 1, schema.MAX_DAYS),
                   help=f"simulate this many days (1 ... {schema.MAX_DAYS}) instead of the scenario's")
    p.add_argument("--visitors", type=bounded(float, 0, above=True),
                   help="expected visitors per day instead of the scenario's")
    p.add_argument("--out", type=Path, help="output directory (default out/sim/<scenario>)")


def scenario_from_args(args: argparse.Namespace) -> Scenario:
    scenario = load_scenario(args.scenario).adjusted(days=args.days, visitors=args.visitors)
    for warning in scenario_warnings(scenario):
        print(f"callsys: warning: {warning}", file=sys.stderr)
    return scenario


def scenario_warnings(scenario: Scenario) -> list[str]:
    """What a valid scenario will do that its author probably did not mean."""
    unserved = [code for code in scenario.hall.unserved_services() if scenario.mix.get(code, 0) > 0]
    if not unserved:
        return []
    return [f"no window serves {', '.join(unserved)}: their citizens take numbers that are never called "
            "(give a window the skill, or weight 0 in [mix])"]


def out_dir(args: argparse.Namespace, scenario: Scenario, sub: str = "") -> Path:
    base = args.out or Path("out") / "sim" / scenario.name
    return base / sub if sub else base


@contextmanager
def progress_bar(console: Console, total: int, label: str, enabled: bool = True) -> Iterator[Callable[[int, float], None]]:
    """A rich progress bar over *total* runs; yields ``update(run index, share done)``."""
    if not enabled:
        yield lambda run, share: None
        return
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda run, share: bar.update(task, completed=run + share)


# ---------------------------------------------------------------------- sim run


@command("sim", "run", help="simulate a scenario in virtual time on the real engine")
def _run_args(p: argparse.ArgumentParser) -> None:
    _scenario_args(p)
    p.add_argument("--replications", type=bounded(int, 1, MAX_REPLICATIONS), default=1,
                   help=f"runs with seeds seed, seed+1, ... (default 1, at most {MAX_REPLICATIONS})")
    p.add_argument("--top", type=bounded(int, 1), default=report.TOP_SERVICES, help="services shown in the wait table")
    p.add_argument("--no-charts", action="store_true", help="skip the PNG charts")
    p.add_argument("--json", action="store_true", help="print only the summary JSON to stdout")
    p.add_argument("--regulate", action="store_true",
                   help="a simulated manager applies the automatic flow regulation (callsys.regulator) "
                        "under the hall's [regulation] limits, every check_every_min; reassignments only")
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from .charts import write_charts
    from .experiment import combine, replicate
    from .runner import sim_regulation

    scenario = scenario_from_args(args)
    console = Console(stderr=args.json)
    label = f"{scenario.name} ({scenario.days} day(s) x {args.replications})"
    with progress_bar(console, args.replications, label, enabled=not args.json) as update:
        regulate = sim_regulation(scenario) if args.regulate else None
        runs = replicate(scenario, args.replications, seed=args.seed, progress=update, regulate=regulate)
    summary = combine(scenario, [s for _, s in runs])
    out = out_dir(args, scenario)
    files = [report.write_json(out / "summary.json", summary)]
    if not args.no_charts:
        sim, first = runs[0]
        files += write_charts(out, first, scenario.hall, sim.tracker, scenario.start + scenario.warmup_s)
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
        return 0
    report.print_summary(summary, scenario, console, top=args.top)
    console.print("wrote " + ", ".join(str(f) for f in files))
    return 0


# ---------------------------------------------------------------------- sim plan


@command("sim", "plan", help="find the fewest windows per zone or service that meet a wait target, "
                             "or the best use of at most --max-windows windows")
def _plan_args(p: argparse.ArgumentParser) -> None:
    from .planner import CONFIDENCE, MAX_REPLICATIONS, MAX_SCALE, REPLICATIONS

    _scenario_args(p)
    p.add_argument("--target", required=True, help='e.g. "p90 wait <= 15 min", "mean wait <= 600 s", '
                                                   '"within target >= 80 %%"')
    p.add_argument("--by", choices=("zone", "service"), default="zone", help="plan per zone (default) or per service")
    p.add_argument("--max-scale", type=bounded(float, 1), default=MAX_SCALE,
                   help=f"a pool may grow to this multiple of its windows (default {MAX_SCALE:g})")
    p.add_argument("--replications", type=bounded(int, 2, MAX_REPLICATIONS), default=REPLICATIONS,
                   help=f"runs (seeds seed, seed+1, ..., the same for every staffing) behind every judgement "
                        f"(default {REPLICATIONS}, 2 ... {MAX_REPLICATIONS})")
    p.add_argument("--confidence", type=bounded(float, 50, 99.9), default=100 * CONFIDENCE,
                   help=f"a target is met only when its one-sided Student's t bound over the replications holds "
                        f"with this confidence, in %% (default {100 * CONFIDENCE:g})")
    p.add_argument("--max-windows", type=bounded(int, 1),
                   help="plan within the walls: at most this many windows (moved between zones, universal "
                        "windows' skills chosen) minimising the worst service's figure, and what more the target would need")
    p.add_argument("--no-beyond", action="store_true",
                   help="with --max-windows: skip the search for the windows needed beyond the limit")
    p.add_argument("--no-charts", action="store_true", help="skip the PNG chart (with --max-windows)")
    p.add_argument("--json", action="store_true", help="print only the plan JSON to stdout")
    p.set_defaults(run=_plan)


def _plan(args: argparse.Namespace) -> int:
    from .planner import Planner, parse_target

    scenario = scenario_from_args(args)
    target = parse_target(args.target)
    console = Console(stderr=args.json)
    what = f"within {args.max_windows} windows " if args.max_windows else ""
    with console.status(f"planning {scenario.name} {what}for {target.text!r}...") as status:
        planner = Planner(scenario, target, by=args.by, max_scale=args.max_scale, seed=args.seed,
                          replications=args.replications, confidence=args.confidence / 100,
                          progress=lambda line: status.update(line))
        plan = planner.within(args.max_windows, beyond=not args.no_beyond) if args.max_windows else planner.run()
    data = plan.to_dict() | {"scenario": scenario.name, "hall": scenario.hall.id, "seed": planner.seed}
    out = out_dir(args, scenario, "plan")
    files = [report.write_json(out / "plan.json", data)]
    if args.max_windows and not args.no_charts:
        from .charts import plan_chart

        files.append(plan_chart(out / "plan.png", data, scenario.hall))
    if args.json:
        print(json.dumps(data, ensure_ascii=False))
        return 0
    report.print_plan(data, console)
    console.print("wrote " + ", ".join(str(f) for f in files))
    return 0


# ---------------------------------------------------------------------- sim live


@command("sim", "live", help="play a scenario against a running server with real WebSocket clients")
def _live_args(p: argparse.ArgumentParser) -> None:
    from .live import DURATION_S, KIOSKS, MAX_CITIZENS, MAX_PHONES, PHONE_SHARE

    _scenario_args(p)
    p.add_argument("--url", default="ws://127.0.0.1:8700/ws", help="the server (default %(default)s); loopback only")
    p.add_argument("--speed", type=float, help="the server's clock speed (checked against its welcome)")
    p.add_argument("--duration", type=float, default=DURATION_S, help="real seconds of play at most (default %(default)s)")
    p.add_argument("--max-citizens", type=int, default=MAX_CITIZENS, help="citizens played at most")
    p.add_argument("--kiosks", type=int, default=KIOSKS, help="kiosk connections (default %(default)s)")
    p.add_argument("--phones", type=float, default=PHONE_SHARE,
                   help="share of QR/appointment citizens following their ticket on a phone (default %(default)s)")
    p.add_argument("--max-phones", type=int, default=MAX_PHONES, help="phone connections at once at most")
    p.add_argument("--no-displays", action="store_true", help="no LED/TV/speaker connections")
    p.add_argument("--regulate", action="store_true",
                   help="a manager connection applies the server's flow-regulation suggestions (reassignments) "
                        "every check_every_min within the hall's [regulation] limits")
    p.add_argument("--json", action="store_true", help="print only the report JSON to stdout")
    p.set_defaults(run=_live)


def _live(args: argparse.Namespace) -> int:
    from .live import LiveSettings, check_loopback, play

    scenario = scenario_from_args(args)
    check_loopback(args.url)
    settings = LiveSettings(speed=args.speed, duration_s=args.duration, max_citizens=args.max_citizens,
                            kiosks=args.kiosks, phone_share=args.phones, max_phones=args.max_phones,
                            displays=not args.no_displays, seed=args.seed, regulate=args.regulate)
    console = Console(stderr=args.json)
    with Progress(TextColumn("[bold]live {task.description}"), BarColumn(), TaskProgressColumn(),
                  TextColumn("{task.fields[line]}"), TimeElapsedColumn(), console=console,
                  disable=args.json) as bar:
        task = bar.add_task(scenario.name, total=1.0, line="connecting...")

        def update(s: dict) -> None:
            clock = scenario.hall.local_time(s["virtual"]).strftime("%H:%M:%S")
            bar.update(task, completed=s["share"], line=f"{clock}  {s['connections']} conns  {s['issued']} tickets  "
                                                         f"{s['served']} served  {s['inflight']} in flight  "
                                                         f"{s['errors']} errors")

        result = play(scenario, args.url, settings=settings, progress=update)
    path = report.write_json(out_dir(args, scenario, "live") / "live.json", result)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        report.print_live(result, console)
        console.print(f"wrote {path}")
    return 0 if result["check"]["ok"] and not result["errors"] else 1
