"""Recovery: the time to start on a store holding a day of events (30,000 tickets).

Builds a Monday at the flagship hall in a fresh SQLite store: 30,000 citizens take a
number between 09:00 and 17:00, and the 400 windows call, start and finish them (about
105,000 events). Then it times opening the store and rebuilding the engine:

* ``replay_s``: the worst case after kill -9 late in the day — the newest snapshot is the
  one taken at the night's reset, so every event of the day is folded from scratch;
* ``restart_s``: after a clean shutdown — the closing snapshot is loaded, nothing replayed.

    python -m benchmarks.recovery [--json] [--tickets 30000]
"""

from __future__ import annotations

import shutil
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Iterator

import trio
from rich.progress import Progress

from callsys import (CallNext, FinishService, OpenWindow, QueueEngine, StartService, TakeNumber, load_hall)
from callsys.errors import QueueEmpty
from callsys.events import Event
from callsys.hall import Hall
from callsys.log import encode, open_journal, open_store

from ._report import parser, report, row

CHUNK = 5_000


def play_day(engine: QueueEngine, tickets: int) -> Iterator[list[Event]]:
    """A busy Monday: takes spread over opening hours, each window serving in turn."""
    hall = engine.hall
    monday = datetime(2026, 11, 23, tzinfo=hall.tz).timestamp()
    cutoff = hall.hours.issue_cutoff_min
    spans = [(monday + a * 60, monday + (b - cutoff) * 60) for a, b in hall.hours.sessions(0)]
    total = sum(b - a for a, b in spans)
    services = [s.code for s in hall.services]
    windows = [w.id for w in hall.windows]
    for w in windows:
        yield engine.execute(OpenWindow(spans[0][0], w))
    for i in range(tickets):
        t = _in_spans(spans, total * i / tickets)
        yield engine.execute(TakeNumber(t, services[(i * 7919) % len(services)], green=i % 20 == 0))
        w = windows[i % len(windows)]
        if engine.state.windows[w].current is not None:
            yield engine.execute(FinishService(t, w, "good", 5))
        try:
            yield engine.execute(CallNext(t, w))
        except QueueEmpty:
            continue
        yield engine.execute(StartService(t, w))


def _in_spans(spans: list[tuple[float, float]], offset: float) -> float:
    for a, b in spans:
        if offset < b - a:
            return a + offset
        offset -= b - a
    return spans[-1][1]


async def build_store(hall: Hall, path: Path, tickets: int) -> int:
    """Write the day into *path* (no snapshot); return the number of events."""
    engine = QueueEngine(hall)
    records: list[bytes] = []
    with Progress(transient=True) as progress:
        task = progress.add_task("building a day of events", total=tickets)
        for events in play_day(engine, tickets):
            records.extend(encode(e) for e in events)
            progress.update(task, completed=engine.state.totals["issued"])
    store = await open_store(f"file:{path}", hall.id)
    for start in range(0, len(records), CHUNK):
        await store.append(records[start:start + CHUNK])
    await store.aclose()
    return len(records)


async def time_recovery(hall: Hall, path: Path, *, closing_snapshot: bool) -> float:
    """Seconds from opening the store to a rebuilt engine."""
    start = time.perf_counter()
    async with open_journal(f"file:{path}", hall, snapshot_on_close=closing_snapshot) as journal:
        await journal.recover()
        elapsed = time.perf_counter() - start
    return elapsed


async def run(config: str, tickets: int) -> list[dict]:
    hall = load_hall(config)
    workdir = Path(tempfile.mkdtemp(prefix="callsys-recovery-"))
    try:
        path = workdir / "day.db"
        events = await build_store(hall, path, tickets)
        replay = await time_recovery(hall, path, closing_snapshot=True)  # leaves a closing snapshot
        restart = await time_recovery(hall, path, closing_snapshot=False)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return [
        row("replay_s", replay, "s", "<= 2"),
        row("restart_s", restart, "s", "<= 2"),
        row("events", events, "events"),
    ]


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--config", default="config/qingdao.toml", help="hall file (default: the flagship)")
    p.add_argument("--tickets", type=int, default=30_000, help="citizens in the day")
    args = p.parse_args()
    rows = trio.run(run, args.config, args.tickets)
    report(f"Recovery of a day ({args.tickets:,} tickets) from the embedded store", rows, args.json,
           notes=["replay_s: every event of the day folded (crash before the night's snapshot); "
                  "restart_s: the closing snapshot of a clean shutdown loaded"])


if __name__ == "__main__":
    main()
