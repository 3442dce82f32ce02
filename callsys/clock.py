"""The server's clock: the only place the server reads the time it stamps commands with.

The engine never reads a clock; the server stamps every command with ``clock.now()``
(POSIX seconds). :class:`RealClock` is wall time; :class:`ScaledClock` is virtual time that
starts at a chosen moment and runs ``speed`` times faster than real time, so a demo or a
live simulation can open the hall at 08:55 and live through a day in minutes.
"""

from __future__ import annotations

import time
from datetime import datetime, tzinfo
from typing import Protocol

from .errors import CallsysError


class ClockError(CallsysError):
    """A clock specification is wrong (bad date, speed not positive). The fault is the caller's."""

    code = "clock_error"


class Clock(Protocol):
    speed: float

    def now(self) -> float:
        """The current time as POSIX seconds."""


class RealClock:
    """Wall-clock time (``time.time()``)."""

    speed: float = 1.0

    def now(self) -> float:
        return time.time()

    def __repr__(self) -> str:
        return "RealClock()"


class ScaledClock:
    """Virtual time: *start* at construction, then ``speed`` x real time.

    Args:
        start: the virtual moment the clock shows when created (timezone-aware).
        speed: virtual seconds per real second (> 0).

    Raises:
        ClockError: *start* is naive or *speed* is not positive.
    """

    def __init__(self, start: datetime, speed: float = 1.0) -> None:
        if start.tzinfo is None:
            raise ClockError("the start time of a scaled clock needs a time zone")
        if not speed > 0:
            raise ClockError(f"clock speed must be positive, got {speed!r}")
        self.start = start
        self.speed = float(speed)
        self._origin = start.timestamp()
        self._real0 = time.monotonic()

    def now(self) -> float:
        return self._origin + (time.monotonic() - self._real0) * self.speed

    def __repr__(self) -> str:
        return f"ScaledClock({self.start.isoformat()!r}, speed={self.speed:g})"


def parse_clock(spec: str, *, speed: float = 1.0, tz: tzinfo) -> Clock:
    """The clock named by ``--clock``: ``"real"`` or an ISO date-time such as ``"2026-11-23T08:55"``.

    A date-time without a zone is read in *tz* (the hall's time zone).

    Raises:
        ClockError: *spec* is neither ``"real"`` nor an ISO date-time, or *speed* is invalid.
    """
    if spec == "real":
        if speed != 1.0:
            raise ClockError("--speed needs a start time: --clock 2026-11-23T08:55 --speed 60")
        return RealClock()
    try:
        start = datetime.fromisoformat(spec)
    except ValueError:
        raise ClockError(f"--clock must be 'real' or an ISO date-time like 2026-11-23T08:55, got {spec!r}") from None
    if start.tzinfo is None:
        start = start.replace(tzinfo=tz)
    return ScaledClock(start, speed)
