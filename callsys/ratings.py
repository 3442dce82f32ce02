"""Ratings (好差评): the evaluator's verdict after each service, folded from the events.

The tablet evaluator at a window sends the citizen's ``good``/``bad`` and an optional score
(1..5) with the clerk's ``finish`` command; the engine records both on
:class:`~callsys.events.ServiceFinished`, with the staff id (工号) of the clerk the window
was opened with. :class:`Ratings` folds those events into figures per window and per clerk
and raises a :class:`RatingAlert` for every ``bad`` rating (the ticket, its number, the
window, the clerk, the time), which the manager side shows. It is a pure projection: the same fold
serves the live server (fed the durable events) and the reports (fed a past day read back
from the event log, :mod:`callsys.reports`), so both count a rating the same way.

The live server keeps the day's ratings (``daily``: the night's ``day_reset`` starts them
again) and answers the manager's ``ratings`` query from them (docs/protocol.md). After a
restart it seeds them with :func:`ratings_of` from the recovered state, which keeps the
day's finished tickets with their verdicts until the night's reset, so a restart loses
no rating and no alert.

**Who served** comes from the event, not from a lookup: a clerk signs in with a staff id
(``open_window``'s ``clerk``, docs/protocol.md), the window keeps it until it closes, and the
engine writes it on every ``service_finished`` there. So a past day's report names the
clerks exactly as the live server did, whoever sits at the window now. A service finished at
a window opened without a staff id (or logged before clerks were named) counts for its
window only; ``clerks_identified`` says whether any counted service named its clerk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

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
    clerk: str | None = None  # staff id of the clerk who served (None: not named)

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "ticket": self.ticket, "number": self.number, "window": self.window,
                "clerk": self.clerk, "score": self.score}


@dataclass(slots=True)
class WindowRatings:
    """One window's ratings — or one clerk's (``clerk`` set, ``window`` None): counts of each
    verdict, and the scores given."""

    window: int | None
    good: int = 0
    bad: int = 0
    unrated: int = 0  # services finished without a verdict
    score_sum: int = 0
    scored: int = 0
    clerk: str | None = None

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
        return {"window": self.window, "clerk": self.clerk, "good": self.good, "bad": self.bad, "unrated": self.unrated,
                "good_share": self.good_share, "scored": self.scored, "mean_score": self.mean_score}


# Events after which a called ticket is no longer at a window without a rated service.
_LEFT_WINDOW: Final = frozenset({ev.TicketNoShow, ev.TicketTransferred, ev.TicketParked, ev.TicketCancelled})


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
        self.clerks: dict[str, WindowRatings] = {}  # services that named their clerk, by staff id
        self.alerts: list[RatingAlert] = []
        self._numbers: dict[int, str] = {}  # tickets at a window -> their number (from the call)

    def apply(self, event: ev.Event) -> RatingAlert | None:
        """Fold *event*; the alert it raises (a ``bad`` rating), else None."""
        if isinstance(event, ev.TicketCalled):
            self._numbers[event.ticket] = event.number
            return None
        if type(event) in _LEFT_WINDOW:  # no rating follows: a later call records the number again
            self._numbers.pop(event.ticket, None)
            return None
        if isinstance(event, ev.DayReset):
            self._numbers.clear()
            if self.daily:
                self.windows.clear()
                self.clerks.clear()
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
        _count(figures, event)
        if event.clerk is not None:
            figures = self.clerks.get(event.clerk)
            if figures is None:
                figures = self.clerks[event.clerk] = WindowRatings(None, clerk=event.clerk)
            _count(figures, event)
        if event.rating != BAD:
            return None
        alert = RatingAlert(event.at, event.ticket, number, event.window, event.score, event.clerk)
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
        """``{"all", "by_window", "by_clerk", "clerks_identified", "alerts"}``: what reports and the
        ``ratings`` query show (``by_clerk`` by staff id; ``clerks_identified`` false when no
        counted service named its clerk)."""
        return {"all": self.total().to_dict() | {"window": None},
                "by_window": [self.windows[w].to_dict() for w in sorted(self.windows)],
                "by_clerk": [self.clerks[c].to_dict() for c in sorted(self.clerks)],
                "clerks_identified": bool(self.clerks),
                "alerts": [a.to_dict() for a in self.alerts]}


def ratings_of(state: HallState) -> Ratings:
    """The day's :class:`Ratings` (``daily``) of a recovered *state*: its finished tickets, in the
    order they finished, folded as the events that finished them (the state keeps each one's
    window, clerk, number, time and verdict until the night's reset)."""
    ratings = Ratings(daily=True)
    done = sorted((t for t in state.tickets.values() if t.status == DONE and t.window is not None
                   and t.finished_at is not None), key=lambda t: (t.finished_at, t.id))
    for t in done:
        ratings.apply(ev.TicketCalled(t.finished_at, t.id, t.window, t.number or "", t.service, False))
        ratings.apply(ev.ServiceFinished(t.finished_at, t.id, t.window, t.rating, t.score, t.clerk))
    return ratings


def _count(figures: WindowRatings, event: ev.ServiceFinished) -> None:
    if event.rating == GOOD:
        figures.good += 1
    elif event.rating == BAD:
        figures.bad += 1
    else:
        figures.unrated += 1
    if event.score is not None:
        figures.score_sum += event.score
        figures.scored += 1
