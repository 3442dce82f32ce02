"""Ratings (好差评): the evaluator's verdict after each service, folded from the events.

The tablet evaluator at a window sends the citizen's ``good``/``bad`` and an optional score
(1..5) with the clerk's ``finish`` command; the engine records both on
:class:`~callsys.events.ServiceFinished`. :class:`Ratings` folds those events into figures
per window and raises a :class:`RatingAlert` for every ``bad`` rating (the ticket, its number,
the window, the time), which the manager side shows. It is a pure projection: the same fold
serves the live server (fed the durable events) and the reports (fed a past day read back
from the event log, :mod:`callsys.reports`), so both count a rating the same way.

The live server keeps the day's ratings (``daily``: the night's ``day_reset`` starts them
again) and answers the manager's ``ratings`` query from them (docs/protocol.md). After a
restart it seeds them with :func:`ratings_of` from the recovered state, which keeps the
day's finished tickets with their verdicts until the night's reset, so a restart loses
no rating and no alert.

**Clerks are not identified in the events.** A clerk signs in with the hall's shared clerk
token and a window number (``hello`` carries no clerk id), so no event says *who* served:
figures are per window. A per-clerk figure needs a clerk id in the clerk's ``hello`` and on
the events first; until then "per clerk" is "per window".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import events as ev
from .state import DONE, HallState

GOOD = "good"
BAD = "bad"


@dataclass(frozen=True, slots=True)
class RatingAlert:
    """A ``bad`` rating: what the manager side shows (and may follow up)."""

    at: float  # POSIX seconds of the ``finish``
    ticket: int
    number: str | None  # the ticket's displayed number (None if its call was not seen)
    window: int
    score: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "ticket": self.ticket, "number": self.number, "window": self.window,
                "score": self.score}


@dataclass(slots=True)
class WindowRatings:
    """One window's ratings: counts of each verdict, and the scores given."""

    window: int
    good: int = 0
    bad: int = 0
    unrated: int = 0  # services finished without a verdict
    score_sum: int = 0
    scored: int = 0

    @property
    def rated(self) -> int:
        return self.good + self.bad

    @property
    def good_share(self) -> float | None:
        """good / (good + bad); None before the first verdict."""
        return self.good / self.rated if self.rated else None

    @property
    def mean_score(self) -> float | None:
        return self.score_sum / self.scored if self.scored else None

    def to_dict(self) -> dict[str, Any]:
        return {"window": self.window, "good": self.good, "bad": self.bad, "unrated": self.unrated,
                "good_share": self.good_share, "scored": self.scored, "mean_score": self.mean_score}


class Ratings:
    """The fold: feed it events in log order with :meth:`apply`.

    Args:
        since: only services finished at or after this time (POSIX s) count.
        until: only those finished before it count (None: no end).
        daily: forget the figures and alerts at every ``day_reset`` (the live server's
            "ratings so far today"); a report over several days keeps them.
    """

    def __init__(self, since: float = float("-inf"), until: float | None = None, *, daily: bool = False) -> None:
        self.since = since
        self.until = until
        self.daily = daily
        self.windows: dict[int, WindowRatings] = {}
        self.alerts: list[RatingAlert] = []
        self._numbers: dict[int, str] = {}  # tickets at a window -> their number (from the call)

    def apply(self, event: ev.Event) -> RatingAlert | None:
        """Fold *event*; the alert it raises (a ``bad`` rating), else None."""
        if isinstance(event, ev.TicketCalled):
            self._numbers[event.ticket] = event.number
            return None
        if isinstance(event, ev.DayReset):
            self._numbers.clear()
            if self.daily:
                self.windows.clear()
                self.alerts.clear()
            return None
        if not isinstance(event, ev.ServiceFinished):
            return None
        number = self._numbers.pop(event.ticket, None)
        if event.at < self.since or (self.until is not None and event.at >= self.until):
            return None
        figures = self.windows.get(event.window)
        if figures is None:
            figures = self.windows[event.window] = WindowRatings(event.window)
        if event.rating == GOOD:
            figures.good += 1
        elif event.rating == BAD:
            figures.bad += 1
        else:
            figures.unrated += 1
        if event.score is not None:
            figures.score_sum += event.score
            figures.scored += 1
        if event.rating != BAD:
            return None
        alert = RatingAlert(event.at, event.ticket, number, event.window, event.score)
        self.alerts.append(alert)
        return alert

    def total(self) -> WindowRatings:
        """Every window's figures summed (``window`` is 0)."""
        out = WindowRatings(0)
        for w in self.windows.values():
            out.good += w.good
            out.bad += w.bad
            out.unrated += w.unrated
            out.score_sum += w.score_sum
            out.scored += w.scored
        return out

    def to_dict(self) -> dict[str, Any]:
        """``{"all", "by_window", "clerks_identified", "alerts"}``: what reports and the ``ratings`` query show."""
        return {"all": self.total().to_dict() | {"window": None},
                "by_window": [self.windows[w].to_dict() for w in sorted(self.windows)],
                "clerks_identified": False,
                "alerts": [a.to_dict() for a in self.alerts]}


def ratings_of(state: HallState) -> Ratings:
    """The day's :class:`Ratings` (``daily``) of a recovered *state*: its finished tickets, in the
    order they finished, folded as the events that finished them (the state keeps each one's
    window, number, time and verdict until the night's reset)."""
    ratings = Ratings(daily=True)
    done = sorted((t for t in state.tickets.values() if t.status == DONE and t.window is not None
                   and t.finished_at is not None), key=lambda t: (t.finished_at, t.id))
    for t in done:
        ratings.apply(ev.TicketCalled(t.finished_at, t.id, t.window, t.number or "", t.service, False))
        ratings.apply(ev.ServiceFinished(t.finished_at, t.id, t.window, t.rating, t.score))
    return ratings
