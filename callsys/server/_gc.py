"""The process's garbage-collector policy while it serves a hall (``callsys serve`` only).

CPython's cyclic collector stops the event loop while it scans. A busy day keeps tens of
thousands of tickets alive, and the default full collections scan all of them: measured
under ``python -m benchmarks.ingest`` they paused the loop for up to ~120 ms (and starved
the commit thread of the GIL meanwhile), which alone broke the p99 <= 10 ms target. The
hall's state is freed by reference counting (tickets leave at the nightly reset); the
collector is only needed for short-lived cycles (tasks, exceptions, closed connections).
So, while serving:

* after recovery everything alive is frozen (``gc.freeze``): the recovered state is
  never scanned again;
* young and middle collections run by the clock (:func:`collect`: every 10 ms, every
  tenth a middle one), not by CPython's allocation count, and automatic collections are
  off. CPython 3.11 counts allocations minus deallocations of *any* generation, and a
  server's waits are exactly that pattern: a connection's coroutine chain is allocated
  when it starts waiting and freed, old, when its data comes. Measured in the 11,000-client
  restart of ``benchmarks.phones``, the count stayed near its threshold of 700 while the
  young generation held 15,000–200,000 objects: collections of 5–110 ms, middle ones up to
  126 ms. By the clock, a collection scans what ten milliseconds left behind;
* a full collection runs at the quiet moment the hall's day ends (after ``day_reset``)
  and the survivors are frozen again.

Cyclic garbage that survives two young collections waits for the night: a bounded cost
(a connection's cycle is a few KiB) for a loop that never stops for a full scan.
"""

from __future__ import annotations

import gc
from typing import Final

import trio

TICK_S: Final = 0.010  # seconds between young collections
MIDDLE_EVERY: Final = 10  # every tenth is a middle-generation one (CPython's ratio)


def start() -> None:
    """Freeze what is alive now and turn automatic collections off: run :func:`collect`."""
    gc.collect()
    gc.freeze()
    gc.disable()


async def collect(tick_s: float = TICK_S) -> None:
    """Collect the young generation every *tick_s*, the middle one every :data:`MIDDLE_EVERY` ticks."""
    ticks = 0
    while True:
        await trio.sleep(tick_s)
        ticks += 1
        gc.collect(1 if ticks % MIDDLE_EVERY == 0 else 0)


def full_collection() -> None:
    """Collect everything (at a quiet moment), then freeze the survivors again."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def stop() -> None:
    """Back to CPython's defaults."""
    gc.unfreeze()
    gc.enable()
