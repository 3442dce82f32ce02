"""Helpers for the store tests: stores with a morning of tickets, raw edits, CLI runs, and
``callsys serve`` in a child process whose log lines the test can read."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Sequence

import trio

from benchmarks._server import _lines
from callsys import TakeNumber
from callsys.hall import Hall
from callsys.log import open_journal
from conftest import CONFIG, hall_time

DEMO = str(CONFIG / "demo.toml")
SERVE = [sys.executable, "-m", "callsys", "serve", "--config", DEMO, "--port", "0", "--clock", "2026-11-23T09:30"]


async def fill(path: Path, hall: Hall, n: int, *, snapshot: bool = False, **journal: Any) -> list[str]:
    """A store at *path* holding *n* take-number events (seq 1..n); returns the numbers."""
    numbers = []
    async with open_journal(f"file:{path}", hall, snapshot_on_close=snapshot, **journal) as j:
        engine, seq = await j.recover()
        for i in range(n):
            events = engine.execute(TakeNumber(hall_time(9, 30) + seq + i, "SOC"))
            await j.commit(events)
            numbers.append(events[0].number)
    return numbers


def sql(path: Path, statement: str, *params: Any) -> None:
    """Edit the database at *path* behind callsys's back (the store must be closed)."""
    conn = sqlite3.connect(path)
    try:
        conn.execute(statement, params)
        conn.commit()
    finally:
        conn.close()


async def callsys(*args: str) -> subprocess.CompletedProcess:
    """``python -m callsys ARGS`` to completion, output captured as text."""
    done = await trio.run_process([sys.executable, "-m", "callsys", *args], capture_stdout=True,
                                  capture_stderr=True, check=False)
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(), done.stderr.decode())


async def serve_refused(store: Path) -> tuple[int, list[str]]:
    """Run ``callsys serve`` on *store*, which must refuse at start; its exit code and the stderr
    lines other than the server's own log records (e.g. a warning about the open-file limit)."""
    done = await trio.run_process([*SERVE, "--store", f"file:{store}"], capture_stderr=True, check=False)
    return done.returncode, [line for line in done.stderr.decode().strip().splitlines()
                             if not line.startswith("ts=")]


@dataclass
class Served:
    """A ``callsys serve`` child process and every log line it wrote so far."""

    process: trio.Process
    url: str
    lines: list[str] = field(default_factory=list)
    exited: trio.Event = field(default_factory=trio.Event)

    @property
    def pid(self) -> int:
        return self.process.pid


async def serve(nursery: trio.Nursery, store: Path, extra: Sequence[str] = (), prefix: Sequence[str] = ()) -> Served:
    """Start ``callsys serve`` on *store* in *nursery* (behind the command *prefix*, if any);
    return once it listens."""
    argv = [*prefix, *SERVE, "--store", f"file:{store}", *extra]
    process = await nursery.start(partial(trio.run_process, argv, stderr=subprocess.PIPE, check=False))
    lines = _lines(process.stderr)
    seen: list[str] = []
    async for line in lines:
        seen.append(line)
        if "event=listening" in line:
            served = Served(process, line.split("url=", 1)[1].split()[0], seen)
            nursery.start_soon(_collect, served, lines)
            return served
    raise RuntimeError(f"the server exited with {await process.wait()} before listening: {seen}")


async def _collect(served: Served, lines) -> None:
    async for line in lines:
        served.lines.append(line)
    await served.process.wait()
    served.exited.set()
