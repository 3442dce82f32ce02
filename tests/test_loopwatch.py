"""The loop watch: the longest task step, loop turn and garbage collection, in ``stats`` and the log.

No wall clock: the watch reads a hand-moved clock, and a test task "takes" as long as it
moves that clock inside one synchronous step (everything else takes no time on it).
"""

from __future__ import annotations

import gc
import logging
import math
from functools import partial
from pathlib import Path

import pytest
import trio

from callsys.clock import ScaledClock
from callsys.hall import Hall
from callsys.server import ServerSettings, serve_callsys
from callsys.server.loopwatch import STEP_THRESHOLDS_MS, LoopWatch
from server_support import SECRET, START, captured_log, client, guard


class HandClock:
    """Seconds that pass only when a test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def watching(clock: HandClock) -> LoopWatch:
    """A started watch on *clock* (for CPU time too), installed in the current trio run."""
    watch = LoopWatch(clock, clock)
    trio.lowlevel.add_instrument(watch)
    watch.start()
    return watch


async def step_taking(clock: HandClock, seconds: float) -> None:
    """One synchronous task step that lasts *seconds* on *clock*, between two checkpoints."""
    await trio.lowlevel.checkpoint()
    clock.now += seconds  # the busy part of the step
    await trio.lowlevel.checkpoint()


async def test_a_long_step_is_the_longest_and_counted_at_every_threshold_it_passes():
    clock = HandClock()
    watch = watching(clock)
    clock.now += 0.2  # before start(): the step that started the watch counts from start()
    watch.start()
    try:
        await step_taking(clock, 0.003)
        await step_taking(clock, 0.030)
        await step_taking(clock, 0.012)
    finally:
        trio.lowlevel.remove_instrument(watch)
        watch.stop()
    assert watch.max_step_s == pytest.approx(0.030)
    assert dict(zip(STEP_THRESHOLDS_MS, watch.steps_over)) == {5: 2, 10: 2, 20: 1, 50: 0}
    assert watch.max_turn_s >= 0.030 and watch.max_turn_cpu_s >= 0.030  # the turn holds the step
    assert watch.max_step_task == trio.lowlevel.current_task().name
    figures = watch.figures()
    assert figures["max_step_ms"] == 30.0 and figures["steps_over_ms"] == {"5": 2, "10": 2, "20": 1, "50": 0}


async def test_a_busy_step_of_counted_iterations_is_a_step_over_every_threshold():
    clock = HandClock()
    watch = watching(clock)

    def busy(iterations: int) -> int:  # pure computation, no checkpoint: one step of the loop
        total = 0
        for i in range(iterations):
            total += i * i
            clock.now += 0.001  # a millisecond per iteration on the hand clock
        return total

    try:
        await trio.lowlevel.checkpoint()
        busy(60)
        await trio.lowlevel.checkpoint()
    finally:
        trio.lowlevel.remove_instrument(watch)
        watch.stop()
    assert watch.max_step_s == pytest.approx(0.060)
    assert watch.steps_over == [1, 1, 1, 1]


async def test_a_collection_is_timed_on_its_own_and_inside_its_step():
    clock = HandClock()
    watch = watching(clock)

    def slow_collector(phase: str, info: dict) -> None:  # after the watch's hook: the collection "takes" 25 ms
        if phase == "start":
            clock.now += 0.025

    enabled = gc.isenabled()
    gc.disable()  # only the collection below: an automatic one (another generation) would "take" 25 ms too
    gc.callbacks.append(slow_collector)
    try:
        await trio.lowlevel.checkpoint()
        gc.collect(0)
        await trio.lowlevel.checkpoint()
    finally:
        gc.callbacks.remove(slow_collector)
        if enabled:
            gc.enable()
        trio.lowlevel.remove_instrument(watch)
        watch.stop()
    assert watch.max_gc_s == pytest.approx(0.025) and watch.max_step_s == pytest.approx(0.025)
    assert watch.figures()["max_gc_ms"] == 25.0 and watch.max_gc_generation == 0
    assert watch._on_gc not in gc.callbacks  # stop() unhooks it  # noqa: SLF001


async def test_start_forgets_what_came_before():
    clock = HandClock()
    watch = watching(clock)
    try:
        await step_taking(clock, 0.1)
        watch.start()
        await step_taking(clock, 0.001)
    finally:
        trio.lowlevel.remove_instrument(watch)
        watch.stop()
    assert watch.max_step_s == pytest.approx(0.001) and watch.steps_over == [0, 0, 0, 0]


@guard()
async def test_stats_and_the_stopped_line_carry_the_loop_figures(demo_hall: Hall, tmp_path: Path):
    clock = HandClock()
    watch = LoopWatch(clock, clock)
    trio.lowlevel.add_instrument(watch)
    try:
        with captured_log(logging.INFO) as records:
            async with trio.open_nursery() as nursery:
                server = await nursery.start(partial(
                    serve_callsys, demo_hall, f"file:{tmp_path / 'hall.db'}", port=0, clock=ScaledClock(START),
                    secret=SECRET, settings=ServerSettings(phone_refresh_s=math.inf), loop_watch=watch))
                await step_taking(clock, 0.021)  # a step of the server's run, 21 ms long
                async with client(server, "manager") as manager:
                    loop = (await manager.request("stats"))["loop"]
                server.shutdown()
    finally:
        trio.lowlevel.remove_instrument(watch)
    assert loop == {"max_step_ms": 21.0, "max_step_task": trio.lowlevel.current_task().name,
                    "max_turn_ms": loop["max_turn_ms"], "max_turn_cpu_ms": loop["max_turn_cpu_ms"],
                    "steps_over_ms": {"5": 1, "10": 1, "20": 1, "50": 0}, "max_gc_ms": loop["max_gc_ms"],
                    "max_gc_generation": loop["max_gc_generation"]}
    assert loop["max_turn_ms"] >= 21.0
    stopped = next(r for r in records if r.getMessage() == "stopped")
    assert stopped.fields["max_step_ms"] == 21.0 and stopped.fields["steps_over_20ms"] == 1  # type: ignore[attr-defined]


async def test_stats_has_no_loop_figures_without_a_watch(nursery, demo_hall: Hall, tmp_path: Path):
    server = await nursery.start(partial(serve_callsys, demo_hall, f"file:{tmp_path / 'hall.db'}", port=0,
                                         clock=ScaledClock(START), secret=SECRET,
                                         settings=ServerSettings(phone_refresh_s=math.inf)))
    async with client(server, "manager") as manager:
        assert (await manager.request("stats"))["loop"] is None
    server.shutdown()
