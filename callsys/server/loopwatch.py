"""How long the event loop is kept from answering: the longest task step, turn and GC pause.

The server runs on one trio loop: while one task step runs (a command decided and
committed, a slice of a fan-out, a phone refresh), no other connection is served, so
the longest step bounds the latency every push and reply can add. :class:`LoopWatch` is
a trio :class:`~trio.abc.Instrument` that times

* every **task step** (``before_task_step`` / ``after_task_step``): the longest, and
  how many took 5 / 10 / 20 / 50 ms or more (each count includes the longer ones);
* every **turn** of the loop (``after_io_wait`` to the next ``before_io_wait``: the run
  batch of all tasks that were ready, plus trio's own bookkeeping): the longest — the
  most a readiness that arrives just after an I/O wait waits to be seen — and the most
  CPU time (``time.thread_time``) one turn used: wall time beyond it is time the process
  waited for a core;
* every **garbage collection** (a ``gc.callbacks`` hook): the longest. A collection runs
  inside whatever step allocated the object that triggered it, so the same pause is in
  the step figures as well; this figure says how much of it was the collector.

``callsys serve`` installs it for the whole run (``trio.run(..., instruments=[watch])``)
and hands it to :func:`~callsys.server.serve.serve_callsys`, which calls :meth:`start`
once it listens (so recovery and the startup collection do not count) and :meth:`stop`
when it stops. The figures are in the manager's ``stats`` answer (``"loop"``) and in the
``stopped`` log line.

Cost: two ``time.perf_counter`` calls and a comparison per step, two clock reads of each
kind per turn, nothing per message; trio's own dispatch of the hooks costs more than the
hooks (measured in docs/performance.md, "Ten thousand phones").
"""

from __future__ import annotations

import gc
from time import perf_counter, thread_time
from typing import Any, Final

import trio

STEP_THRESHOLDS_MS: Final = (5, 10, 20, 50)  # task steps counted at or above each of these (ms)
_THRESHOLDS_S: Final = tuple(ms / 1000 for ms in STEP_THRESHOLDS_MS)


class LoopWatch(trio.abc.Instrument):
    """The longest task step, loop turn and garbage collection since :meth:`start`.

    Attributes:
        max_step_s: the longest task step, seconds.
        max_step_task: the name of the task that took that step.
        max_turn_s: the longest loop turn (one run batch), seconds.
        max_turn_cpu_s: the most CPU time of this thread one turn used, seconds: a turn much
            longer than this one waited for a core (the machine was busy), it did not work.
        max_gc_s: the longest garbage collection, seconds.
        max_gc_generation: the generation that collection collected (0, 1, 2; -1 before any).
        steps_over: per threshold of :data:`STEP_THRESHOLDS_MS`, the steps that took at least that long.
    """

    def __init__(self, clock: Any = perf_counter, cpu_clock: Any = thread_time) -> None:
        self._clock = clock  # a callable returning seconds; tests pass a hand-moved one
        self._cpu_clock = cpu_clock  # this thread's CPU seconds
        self._step_began = 0.0
        self._turn_began: float | None = None
        self._turn_cpu_began = 0.0
        self._gc_began: float | None = None
        self._watching_gc = False
        self.reset()

    def reset(self) -> None:
        """Forget every figure so far."""
        self.max_step_s = 0.0
        self.max_step_task = ""  # the name of the task that took it
        self.max_turn_s = 0.0
        self.max_turn_cpu_s = 0.0  # the most CPU time one turn used (less than its length: preempted)
        self.max_gc_s = 0.0
        self.max_gc_generation = -1  # the generation the longest collection collected (-1: none yet)
        self.steps_over = [0] * len(_THRESHOLDS_S)

    def start(self) -> None:
        """Count from now, and time garbage collections too (idempotent).

        Called from inside a task step (and a turn): those count from here.
        """
        self.reset()
        self._step_began = self._turn_began = self._clock()
        self._turn_cpu_began = self._cpu_clock()
        if not self._watching_gc:
            gc.callbacks.append(self._on_gc)
            self._watching_gc = True

    def stop(self) -> None:
        """Stop timing garbage collections (the step figures stay readable)."""
        if self._watching_gc:
            gc.callbacks.remove(self._on_gc)
            self._watching_gc = False
            self._gc_began = None

    def figures(self) -> dict[str, Any]:
        """The figures in milliseconds, as ``stats`` reports them under ``"loop"``."""
        return {
            "max_step_ms": round(self.max_step_s * 1000, 3),
            "max_step_task": self.max_step_task,
            "max_turn_ms": round(self.max_turn_s * 1000, 3),
            "max_turn_cpu_ms": round(self.max_turn_cpu_s * 1000, 3),
            "steps_over_ms": {str(ms): n for ms, n in zip(STEP_THRESHOLDS_MS, self.steps_over)},
            "max_gc_ms": round(self.max_gc_s * 1000, 3),
            "max_gc_generation": self.max_gc_generation,
        }

    def log_fields(self) -> dict[str, Any]:
        """The figures as flat log fields (``max_step_ms=… steps_over_20ms=…``)."""
        figures = self.figures()
        figures["max_step_task"] = figures["max_step_task"] or None
        over = figures.pop("steps_over_ms")
        return {**figures, **{f"steps_over_{ms}ms": n for ms, n in over.items()}}

    # ------------------------------------------------------------------ trio hooks

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._step_began = self._clock()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        took = self._clock() - self._step_began
        if took > self.max_step_s:
            self.max_step_s = took
            self.max_step_task = task.name
        if took >= _THRESHOLDS_S[0]:
            for i, bound in enumerate(_THRESHOLDS_S):
                if took >= bound:
                    self.steps_over[i] += 1

    def after_io_wait(self, timeout: float) -> None:
        self._turn_began = self._clock()

    def before_io_wait(self, timeout: float) -> None:
        # One CPU clock read per turn (a system call, unlike perf_counter): the CPU since
        # the last turn ended is this turn's plus the I/O wait's, which waits without working.
        cpu = self._cpu_clock()
        if self._turn_began is not None:
            took = self._clock() - self._turn_began
            if took > self.max_turn_s:
                self.max_turn_s = took
            if cpu - self._turn_cpu_began > self.max_turn_cpu_s:
                self.max_turn_cpu_s = cpu - self._turn_cpu_began
        self._turn_cpu_began = cpu

    # ------------------------------------------------------------------ gc hook

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_began = self._clock()
        elif self._gc_began is not None:
            took = self._clock() - self._gc_began
            self._gc_began = None
            if took > self.max_gc_s:
                self.max_gc_s = took
                self.max_gc_generation = info["generation"]
