"""Engine alone: take-number and call-next operations per second on the flagship hall.

The Qingdao hall (400 windows, all open) holds 10,000 waiting tickets spread over its
services; each measured operation is a full ``QueueEngine.execute`` (decide + apply).
Calls are timed in rounds of one call per window; between rounds (untimed) the windows
finish their citizens and the queue is topped up to 10,000 again.

Each figure is the best of ``--repeat`` runs on a fresh engine (the timeit convention:
the machine is shared, and the best run is the one least disturbed by others). As in the
server, the objects built before the measurement are moved out of the garbage
collector's way with ``gc.freeze()``.

    python -m benchmarks.engine [--json] [--config config/qingdao.toml]
"""

from __future__ import annotations

import gc
import random
import time
from datetime import datetime
from typing import Final

from callsys import CallNext, FinishService, OpenWindow, QueueEngine, TakeNumber, load_hall
from callsys.errors import QueueEmpty

from ._report import parser, report, row

WAITING: Final = 10_000
TAKES: Final = 20_000
CALL_ROUNDS: Final = 25
TARGET: Final = ">= 100000"


def _setup(config: str, seed: int) -> tuple[QueueEngine, list[str], float]:
    hall = load_hall(config)
    engine = QueueEngine(hall)
    t = datetime(2026, 11, 23, 9, 0, tzinfo=hall.tz).timestamp()
    for window in hall.windows:
        engine.execute(OpenWindow(t, window.id))
    rng = random.Random(seed)
    services = [s.code for s in hall.services]
    for i in range(WAITING):
        engine.execute(TakeNumber(t + i * 0.01, rng.choice(services), green=rng.random() < 0.05))
    gc.collect()
    gc.freeze()
    return engine, services, t + WAITING * 0.01


def bench_take(engine: QueueEngine, services: list[str], t: float, seed: int, *,
               keyed: bool = False) -> tuple[float, float]:
    """Take-number operations per second; *keyed*: each with an idempotency key, as devices send them."""
    rng = random.Random(seed)
    commands = [TakeNumber(t + i * 0.001, rng.choice(services), green=rng.random() < 0.05,
                           key=f"{seed}-{i}" if keyed else None) for i in range(TAKES)]
    execute = engine.execute
    start = time.perf_counter()
    for command in commands:
        execute(command)
    elapsed = time.perf_counter() - start
    return TAKES / elapsed, t + TAKES * 0.001


def bench_call(engine: QueueEngine, services: list[str], t: float, seed: int) -> float:
    rng = random.Random(seed)
    windows = [w.id for w in engine.hall.windows]
    execute = engine.execute
    calls, elapsed = 0, 0.0
    for _ in range(CALL_ROUNDS):
        t += 1.0
        commands = [CallNext(t + i * 1e-4, w) for i, w in enumerate(windows)]
        start = time.perf_counter()
        for command in commands:
            try:
                execute(command)
                calls += 1
            except QueueEmpty:
                pass
        elapsed += time.perf_counter() - start
        t += 1.0
        for w in windows:  # untimed: free the windows, keep the queue at its size
            if engine.state.windows[w].current is not None:
                execute(FinishService(t, w))
        waiting = engine.statistics().waiting
        for i in range(max(0, WAITING - waiting)):
            execute(TakeNumber(t + i * 1e-4, rng.choice(services)))
    return calls / elapsed


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--config", default="config/qingdao.toml", help="hall file (default: the flagship)")
    p.add_argument("--seed", type=int, default=1, help="random seed for the service mix")
    p.add_argument("--repeat", type=int, default=5, help="runs per figure; the best is reported")
    args = p.parse_args()
    takes, keyed, calls = [], [], []
    for run in range(args.repeat):
        engine, services, t = _setup(args.config, args.seed + run)
        takes.append(bench_take(engine, services, t, args.seed + run)[0])
        engine, services, t = _setup(args.config, args.seed + run)
        keyed.append(bench_take(engine, services, t, args.seed + run, keyed=True)[0])
        engine, services, t = _setup(args.config, args.seed + run)
        calls.append(bench_call(engine, services, t, args.seed + run))
    hall = engine.hall
    report(
        f"Engine on {hall.name.en}: {len(hall.windows)} windows, {WAITING:,} waiting",
        [row("take_per_s", max(takes), "ops/s", TARGET), row("take_keyed_per_s", max(keyed), "ops/s", None),
         row("call_per_s", max(calls), "ops/s", TARGET)],
        args.json,
        notes=[f"best of {args.repeat} runs (median take {sorted(takes)[len(takes) // 2]:,.0f}/s, "
               f"median call {sorted(calls)[len(calls) // 2]:,.0f}/s)",
               f"take: {TAKES:,} TakeNumber on top of {WAITING:,} waiting (keyed: each with an idempotency "
               f"key, which adds a command_keyed event and a key entry); call: {CALL_ROUNDS} rounds x "
               f"{len(hall.windows)} windows; policy: interleave {list(hall.policy.interleave)}, "
               f"wait threshold {hall.policy.wait_threshold}"],
    )


if __name__ == "__main__":
    main()
