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
* young collections keep CPython's thresholds (a middle-generation collection scans
  at most ~7,000 objects, a few ms), and automatic full collections are off;
* a full collection runs at the quiet moment the hall's day ends (after ``day_reset``)
  and the survivors are frozen again.

Cyclic garbage that survives two young collections waits for the night: a bounded cost
(a connection's cycle is a few KiB) for a loop that never stops for a full scan.
"""

from __future__ import annotations

import gc
from typing import Final

YOUNG: Final = 700  # allocations between young collections (CPython's default; 5,000 made
MIDDLE: Final = 10  # middle-generation pauses of ~35 ms: every survivor is scanned there)
NO_AUTOMATIC_FULL: Final = 2**31 - 1  # full collections only when we ask


def start() -> None:
    """Freeze what is alive now and switch to young-only automatic collections."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG, MIDDLE, NO_AUTOMATIC_FULL)


def full_collection() -> None:
    """Collect everything (at a quiet moment), then freeze the survivors again."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def stop() -> None:
    """Back to CPython's defaults."""
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
