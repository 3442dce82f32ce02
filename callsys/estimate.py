"""The one wait estimator: how long until a waiting ticket is called.

Policy. A service's queue is served at some rate (calls per second) by the open windows
that serve it — its own windows and its share of windows shared with other services.
The estimator measures that rate from the hall's own events and predicts::

    estimated wait = (tickets ahead + 1) / rate

* **Measured rate.** Per service, the tickets that left its queue after waiting there —
  called, or cancelled: the queue drains both ways; a ticket called the instant it arrived
  at a free window says nothing about capacity — are counted against the *backlog clock*:
  the seconds during which the service had tickets waiting *and* an open window serving
  it. Departures / backlog seconds over the last ``HISTORY_CALLS`` of them (at most
  ``HISTORY_S`` of backlog back) is the rate the queue actually moves. It is read at the
  last departure, not at the clock: an estimate changes when the hall moves, so phones
  and screens are pushed then and not on every tick.
* **Prior.** With little history the measured rate is noise, so it is blended with the
  configured one: every open window serving the service gives it ``60 / minutes`` calls
  per hour times its share (a window serving *k* services gives each 1/*k*). The blend
  weight of the measurement is ``n / (n + PRIOR_CALLS)`` for *n* counted calls.
* **Before its windows open.** Kiosks hand out numbers before the clerks open their
  windows (the reason the kiosk used to print "wait -"): until a window serving a service
  has opened today, the prior counts the hall's *configured* windows for it instead, as
  the staffing the hall is built for.
* **Free windows.** The open windows serving the service with nobody at them call the
  first tickets in line at once: with *k* free, the estimate is
  ``max(0, ahead + 1 - k) / rate`` (0 for the first *k*).
* **Nothing serves it** — its windows were open today and are all closed or paused now, or
  no window of the hall serves it: None; there is no honest number.

Not modelled (measured in ``benchmarks.sim``, see docs/protocol.md "Wait estimates"): the
wait threshold's reordering across services sharing windows, the interleave of priority
tickets, breaks and the lunch pause. They are what keeps the error on ``qingdao-weekday``
at about 6 minutes.

The estimator is pure (no clock: every time is an argument) and its state is plain data
(:meth:`WaitEstimator.snapshot`), kept in :class:`callsys.state.HallState` and fed by
``apply``; replay therefore gives the same estimates as the live server, and the simulator
measures this very code.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Final, Iterable, Mapping

HISTORY_CALLS: Final = 200  # counted departures a service's measured rate looks back over
HISTORY_S: Final = 7200.0  # seconds of backlog clock the measured rate looks back over, at most
PRIOR_CALLS: Final = 8.0  # counted departures the configured rate weighs as, in the blend
RATE_CAP: Final = 5.0  # the measured rate is taken as at most this many times the configured one


@dataclass(slots=True)
class Flow:
    """One service's measured flow: the backlog clock and the counted calls."""

    banked: float = 0.0  # backlog seconds before `since`
    since: float | None = None  # the backlog clock runs since then (None: stopped)
    calls: deque = field(default_factory=deque)  # backlog clock reading at each counted call

    def clock(self, now: float) -> float:
        """Backlog seconds so far, at *now*."""
        return self.banked + (max(0.0, now - self.since) if self.since is not None else 0.0)


class WaitEstimator:
    """Measured service rates per service and the estimate built from them.

    Args:
        minutes: every service's configured minutes at the window, by code.
        windows: the skills of every window of the hall, as configured.
    """

    def __init__(self, minutes: Mapping[str, float], windows: Iterable[Iterable[str]] = ()) -> None:
        self.minutes = dict(minutes)
        self.flows: dict[str, Flow] = {code: Flow() for code in self.minutes}
        self.share: dict[str, Fraction] = {code: Fraction(0) for code in self.minutes}
        self.configured: dict[str, Fraction] = {code: Fraction(0) for code in self.minutes}
        for skills in windows:
            skills = tuple(skills)
            for code in skills:
                self.configured[code] += Fraction(1, len(skills))
        self.opened: set[str] = set()  # services a window serving them was open for today
        self._rates: dict[str, float] = {}  # cached rate per service, dropped when its inputs change

    # ------------------------------------------------------------------ inputs

    def window_active(self, skills: Iterable[str], active: bool) -> None:
        """A window serving *skills* opened/resumed (*active*) or closed/paused."""
        skills = tuple(skills)
        step = Fraction(1 if active else -1, len(skills))
        for code in skills:
            self.share[code] += step
            self._rates.pop(code, None)
        if active:
            self.opened.update(skills)

    def backlog(self, code: str, at: float, running: bool) -> None:
        """Start or stop *code*'s backlog clock at *at* (it runs while tickets wait and a
        window serves the service)."""
        flow = self.flows[code]
        if running and flow.since is None:
            flow.since = at
        elif not running and flow.since is not None:
            flow.banked += max(0.0, at - flow.since)
            flow.since = None

    def departed(self, code: str, at: float, waited: bool) -> None:
        """A ticket left *code*'s queue at *at* (called or cancelled); *waited*: it had waited
        there (only those count for the rate)."""
        if not waited:
            return
        flow = self.flows[code]
        calls = flow.calls
        calls.append(flow.clock(at))
        if len(calls) > HISTORY_CALLS + 1:  # one more: the start of the span
            calls.popleft()
        self._rates.pop(code, None)

    def reset(self) -> None:
        """Forget the measured flows (a new day: yesterday's rates are not today's)."""
        for code in self.flows:
            self.flows[code] = Flow()
        self.opened.clear()
        self._rates.clear()

    # ------------------------------------------------------------------ estimates

    def prior_rate(self, code: str) -> float:
        """Calls per second the open windows give *code* by configuration (their shares); the
        hall's configured windows for it until one of them opened today."""
        share = self.share[code] if code in self.opened else self.configured[code]
        return float(share) / (self.minutes[code] * 60.0)

    def measured(self, code: str) -> tuple[int, float]:
        """(counted departures, backlog seconds they took) of *code*'s recent history."""
        calls = self.flows[code].calls
        if not calls:
            return 0, 0.0
        last = calls[-1]
        start = calls[0] if len(calls) > HISTORY_CALLS else 0.0  # 0: the clock's start today
        start = max(start, last - HISTORY_S)
        return len(calls) - bisect_right(calls, start), last - start

    def rate(self, code: str) -> float:
        """Departures per second expected from *code*'s queue: the measured rate blended with
        the prior; 0.0 when no open window serves *code*.

        It changes only when the service's own flow or windows do (not with the clock), so
        the summaries and phones are pushed when the hall moves, not on every tick.
        """
        rate = self._rates.get(code)
        if rate is None:
            rate = prior = self.prior_rate(code)
            if prior > 0.0:
                n, span = self.measured(code)
                if n:
                    measured = n / max(span, n / (RATE_CAP * prior))  # a burst in no time is no rate
                    weight = n / (n + PRIOR_CALLS)
                    rate = weight * measured + (1.0 - weight) * prior
            self._rates[code] = rate
        return rate

    def estimate(self, code: str, ahead: int, now: float, idle: int = 0) -> float | None:
        """Seconds (whole) until the ticket with *ahead* tickets before it in *code*'s queue is
        called, as seen at *now*, with *idle* open windows serving *code* free right now (they
        take the first *idle* in line at once); None when no open window serves *code*."""
        rate = self.rate(code)
        if rate <= 0.0:
            return None
        return float(round(max(0, ahead + 1 - idle) / rate))

    def estimate_window(self, code: str, ahead: int) -> float:
        """Seconds until a ticket of *code* with *ahead* before it in one window's own queue
        (a transfer to that window, a return from parking) is called: that window alone
        serves it, at the configured minutes (a paused window comes back; a closing one sends
        its queue back to the services)."""
        return float(round((ahead + 1) * self.minutes[code] * 60.0))

    # ------------------------------------------------------------------ snapshot

    def snapshot(self) -> dict[str, Any]:
        """The measured flows as plain data (the window shares follow from the windows)."""
        flows = {code: [f.banked, f.since, list(f.calls)] for code, f in sorted(self.flows.items())
                 if f.calls or f.banked or f.since is not None}
        return {"flows": flows, "opened": sorted(self.opened)}

    def restore(self, data: Mapping[str, Any]) -> None:
        """Load flows from :meth:`snapshot` output (services no longer offered are dropped)."""
        for code, (banked, since, calls) in data.get("flows", {}).items():
            if code in self.flows:
                self.flows[code] = Flow(banked, since, deque(calls))
        self.opened = {code for code in data.get("opened", ()) if code in self.flows}
        self._rates.clear()
