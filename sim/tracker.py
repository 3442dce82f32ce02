"""The tracker: records what happened from the engine's own events.

The runner hands every list of events the engine returns to :meth:`Tracker.observe`, plus
the engine's queue size after each command (:meth:`Tracker.engine_queue`). From these
alone the tracker keeps, per ticket, the moments it became eligible and was first called,
its waiting spells (a ticket waits again after a transfer), each window's open and busy
time, and counts. :mod:`sim.metrics` turns the records into figures.

Waiting is attributed to the *home zone* of the ticket's service — the zone with the
most specialised windows serving it (where its citizens sit) — see :func:`home_zones`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from callsys import events as ev
from callsys.hall import Hall


def home_zones(hall: Hall) -> dict[str, str]:
    """Service code -> the zone where its citizens wait.

    That is the zone with the most windows serving it as their *primary* (first) skill;
    failing that, the most specialised windows serving it at all; failing that, the most
    universal ones. Ties go to the zone listed first.
    """
    order = {z.id: i for i, z in enumerate(hall.zones)}
    out: dict[str, str] = {}
    for service in hall.services:
        code = service.code
        for test in (lambda w: w.skills[0] == code and not w.universal,
                     lambda w: code in w.skills and not w.universal,
                     lambda w: code in w.skills):
            best = Counter(w.zone for w in hall.windows if test(w))
            if best:
                out[code] = min(best, key=lambda z: (-best[z], order[z]))
                break
        else:
            out[code] = hall.zones[0].id
    return out


@dataclass(slots=True)
class TicketRecord:
    ticket: int
    service: str
    channel: str
    green: bool
    eligible: float  # entered the queue (check-in or slot start for appointments)
    called: float | None = None  # first call
    outcome: str = "waiting"  # served | cancelled | abandoned | no_show | expired | waiting | told_early
    late: bool = False
    gone: bool = False  # left without cancelling (silent abandonment)
    estimated_at: float | None = None  # when the citizen was told an estimated wait (issue / check-in)
    estimate: float | None = None  # that estimate (s); None if the engine had none
    gave_up: float | None = None  # when the citizen gave up waiting (abandoned)
    slot_start: float | None = None  # appointments: the booked slot's start
    checked_in: float | None = None  # appointments: when the citizen checked in


@dataclass(slots=True)
class WindowRecord:
    zone: str
    open_s: float = 0.0
    busy_s: float = 0.0
    paused_s: float = 0.0
    served: int = 0
    open_since: float | None = None
    busy_since: float | None = None
    paused_since: float | None = None


@dataclass
class Tracker:
    """Collects the run's records from engine events (pass one to :class:`Simulation`).

    Args:
        hall: the hall being simulated.
        t0: measurements start here (the end of the warm-up).
        t1: and end here (the end of the horizon; clerks in overtime may act after it).
    """

    hall: Hall
    t0: float
    t1: float = float("inf")
    zone_of: Mapping[str, str] = field(default_factory=dict)
    tickets: dict[int, TicketRecord] = field(default_factory=dict)
    windows: dict[int, WindowRecord] = field(default_factory=dict)
    spells: list[tuple[float, float, str]] = field(default_factory=list)  # (start, end, zone)
    counts: Counter = field(default_factory=Counter)
    queue_area: float = 0.0  # integral of the engine's queue size from t0
    _open: dict[int, tuple[float, str]] = field(default_factory=dict)
    _q_t: float = float("-inf")
    _q_n: int = 0

    def __post_init__(self) -> None:
        self.zone_of = self.zone_of or home_zones(self.hall)
        self.windows = {w.id: WindowRecord(w.zone) for w in self.hall.windows}
        self._handlers: dict[str, Callable[[Any], None]] = {
            ev.TicketIssued.kind: self._issued,
            ev.SlotBooked.kind: self._booked,
            ev.CheckedIn.kind: self._checked_in,
            ev.TicketCalled.kind: self._called,
            ev.TicketCancelled.kind: self._cancelled,
            ev.TicketNoShow.kind: self._no_show,
            ev.ServiceFinished.kind: self._finished,
            ev.TicketTransferred.kind: self._transferred,
            ev.TicketParked.kind: self._parked,
            ev.WindowOpened.kind: self._opened,
            ev.WindowResumed.kind: self._opened,
            ev.WindowClosed.kind: self._closed,
            ev.WindowPaused.kind: self._paused,
            ev.DayReset.kind: self._day_reset,
        }

    # ------------------------------------------------------------------ inputs

    def observe(self, events: list[ev.Event]) -> None:
        """Record the events one engine command produced."""
        for event in events:
            self.counts[event.kind] += 1
            handler = self._handlers.get(event.kind)
            if handler is not None:
                handler(event)

    def engine_queue(self, at: float, waiting: int) -> None:
        """The engine's count of queued tickets right after a command at *at* (its time
        integral over [t0, t1] is Little's L)."""
        if at > self._q_t:
            lo, hi = max(self._q_t, self.t0), min(at, self.t1)
            if hi > lo:
                self.queue_area += self._q_n * (hi - lo)
            self._q_t = at
        self._q_n = waiting

    def estimated(self, ticket: int, at: float, seconds: float | None) -> None:
        """The citizen holding *ticket* was told at *at* (taking the number, or checking in
        for an appointment) that the wait is *seconds* (the engine's estimate, None: none)."""
        record = self.tickets[ticket]
        record.estimated_at, record.estimate = at, seconds

    def outcome(self, what: str, n: int = 1) -> None:
        """Count a non-engine outcome (hall closed, slot full, gave up at home...)."""
        self.counts[what] += n

    def abandoned(self, ticket: int, silent: bool, at: float | None = None) -> None:
        """The citizen holding *ticket* gave up waiting at *at* (cancelled, or left silently)."""
        record = self.tickets[ticket]
        record.gone, record.gave_up = True, at
        if silent:
            record.outcome = "abandoned"
            self.counts["abandoned_silent"] += 1

    def told_early(self, reason: str, ticket: int | None = None) -> None:
        """A citizen was told at the kiosk and went home: refused (*reason* the engine's code,
        ``daily_cap_reached`` or ``past_closing``), or warned that the call is predicted past
        closing (``"warned"``; *ticket* was issued and cancelled at once: it never queued)."""
        self.counts[f"told_early_{reason}"] += 1
        if ticket is not None:
            self.tickets[ticket].outcome = "told_early"

    def sent_home(self, ticket: int) -> None:
        """The hall closed while *ticket* still waited (its citizen had not given up)."""
        record = self.tickets[ticket]
        if record.outcome != "abandoned":
            record.outcome = "unserved"

    def finish(self, at: float) -> None:
        """Close the books at the end of the horizon *at*."""
        self.engine_queue(at, self._q_n)
        for ticket, (start, zone) in list(self._open.items()):
            self.spells.append((start, at, zone))
        self._open.clear()
        for w in self.windows.values():
            for since, attr in ((w.open_since, "open_s"), (w.busy_since, "busy_s"), (w.paused_since, "paused_s")):
                if since is not None:
                    setattr(w, attr, getattr(w, attr) + at - since)
            w.open_since = w.busy_since = w.paused_since = None

    # ------------------------------------------------------------------ tickets

    def _enter(self, ticket: int, at: float, service: str) -> None:
        self._open[ticket] = (at, self.zone_of[service])

    def _leave(self, ticket: int, at: float) -> None:
        spell = self._open.pop(ticket, None)
        if spell is not None:
            self.spells.append((spell[0], at, spell[1]))

    def _issued(self, e: ev.TicketIssued) -> None:
        self.tickets[e.ticket] = TicketRecord(e.ticket, e.service, e.channel, e.green, e.at)
        self._enter(e.ticket, e.at, e.service)
        if e.closing_warning is not None:
            self.counts["warned_past_closing"] += 1

    def _checked_in(self, e: ev.CheckedIn) -> None:
        eligible = max(e.at, e.not_before)
        record = self.tickets[e.ticket]  # made by the booking
        record.eligible, record.late, record.outcome = eligible, e.late, "waiting"
        record.checked_in = e.at
        self._enter(e.ticket, eligible, record.service)

    def _booked(self, e: ev.SlotBooked) -> None:
        self.tickets[e.ticket] = TicketRecord(e.ticket, e.service, "appointment", e.green, e.slot_start,
                                              outcome="booked", slot_start=e.slot_start)

    def _called(self, e: ev.TicketCalled) -> None:
        self._leave(e.ticket, e.at)
        record = self.tickets[e.ticket]
        if record.called is None:
            record.called = e.at
        w = self.windows[e.window]
        w.busy_since = e.at

    def _cancelled(self, e: ev.TicketCancelled) -> None:
        self._leave(e.ticket, e.at)
        record = self.tickets[e.ticket]
        record.outcome = "abandoned" if record.gone else "cancelled"

    def _release(self, window: int, at: float) -> None:
        w = self.windows[window]
        if w.busy_since is not None:
            w.busy_s += at - w.busy_since
            w.busy_since = None

    def _no_show(self, e: ev.TicketNoShow) -> None:
        self._release(e.window, e.at)
        record = self.tickets[e.ticket]
        if not record.gone:
            record.outcome = "no_show"

    def _finished(self, e: ev.ServiceFinished) -> None:
        self._release(e.window, e.at)
        self.windows[e.window].served += 1
        self.tickets[e.ticket].outcome = "served"

    def _transferred(self, e: ev.TicketTransferred) -> None:
        self._release(e.from_window, e.at)
        self._enter(e.ticket, e.at, e.service)

    def _parked(self, e: ev.TicketParked) -> None:
        self._release(e.window, e.at)

    def _day_reset(self, e: ev.DayReset) -> None:
        for ticket in e.expired:
            self._leave(ticket, e.at)
            record = self.tickets.get(ticket)
            if record is not None and record.outcome in ("waiting", "booked"):
                record.outcome = "expired" if record.outcome == "waiting" else "booked"
        for window, w in self.windows.items():  # every window closes, its citizen expired
            self._release(window, e.at)
            self._stop(w, e.at)

    # ------------------------------------------------------------------ windows

    def _opened(self, e: Any) -> None:
        w = self.windows[e.window]
        if w.paused_since is not None:
            w.paused_s += e.at - w.paused_since
            w.paused_since = None
        w.open_since = e.at

    def _stop(self, w: WindowRecord, at: float) -> None:
        if w.open_since is not None:
            w.open_s += at - w.open_since
            w.open_since = None
        if w.paused_since is not None:
            w.paused_s += at - w.paused_since
            w.paused_since = None

    def _closed(self, e: ev.WindowClosed) -> None:
        self._stop(self.windows[e.window], e.at)

    def _paused(self, e: ev.WindowPaused) -> None:
        w = self.windows[e.window]
        self._stop(w, e.at)
        w.paused_since = e.at
