"""The hall's state and ``apply``: the fold of events.

``HallState`` is owned by one writer (the server's engine task, or the simulator) and is
mutated in place by :func:`apply` — copying a 400-window hall with 10,000 waiting tickets
on every event would make each operation O(n) instead of O(log n). ``apply`` never
decides anything: everything it needs is in the event, so folding the log from scratch
rebuilds the same state (see :meth:`HallState.snapshot`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, Sequence

from . import events as ev
from .estimate import WaitEstimator
from .hall import Hall
from .keys import KeyEntry
from .policy import next_cycle
from .queues import QueueBook

# Ticket statuses. Open ones hold a place in the hall; final ones are history.
BOOKED = "booked"          # appointment, not yet checked in (not queued)
WAITING = "waiting"        # queued (or checked in early and held until the slot)
CALLED = "called"          # called to a window, citizen walking there
SERVING = "serving"        # at the window
PARKED = "parked"          # set aside by a clerk, will return to that window
NO_SHOW = "no_show"        # did not come after the recall limit (may be re-queued)
DONE = "done"
CANCELLED = "cancelled"
EXPIRED = "expired"
FINAL = frozenset({DONE, CANCELLED, EXPIRED})
ACTIVE = frozenset({BOOKED, WAITING, CALLED, SERVING, PARKED})  # one per person and service

# Window statuses.
CLOSED, OPEN, PAUSED = "closed", "open", "paused"


@dataclass(slots=True)
class Ticket:
    id: int
    service: str
    channel: str
    green: bool
    status: str
    issued_at: float
    number: str | None = None
    klass: str = "normal"
    rank: float | None = None
    day: int | None = None
    slot_start: float | None = None
    slot_end: float | None = None
    checked_in_at: float | None = None
    late: bool = False
    eligible_at: float | None = None
    called_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    window: int | None = None
    recalls: int = 0
    transfers: int = 0
    rating: str | None = None
    score: int | None = None
    person: str | None = None  # keyed hash of the resident id: engine state and log only, never shown
    birth_year: int | None = None
    green_reason: str | None = None  # "senior" | "requested" | "clerk" when green
    clerk: str | None = None  # staff id of the clerk who finished the service (None: anonymous)


PRIVATE_FIELDS = frozenset({"person", "birth_year"})  # ticket fields no query or push shows
_TICKET_FIELDS_BEFORE_PERSONS = 23  # snapshot rows written before tickets had persons


@dataclass(slots=True)
class WindowState:
    id: int
    skills: tuple[str, ...]
    skill_order: str
    interleave: tuple[int, ...]
    status: str = CLOSED
    current: int | None = None
    cycle: int = 0
    skillset: frozenset[str] = field(default=frozenset())
    served: int = 0
    clerk: str | None = None  # staff id signed in with the window's ``open_window`` (None: anonymous)

    def __post_init__(self) -> None:
        self.skillset = frozenset(self.skills)


@dataclass(frozen=True, slots=True)
class Day:
    """One local calendar day of the hall, as POSIX seconds."""

    ordinal: int
    weekday: int  # 0 = Monday
    start: float  # local midnight
    end: float  # next local midnight
    issuing: tuple[tuple[float, float], ...]  # when numbers are handed out, as POSIX spans
    sessions: tuple[tuple[float, float], ...] = ()  # when the hall is open, as POSIX spans

    @property
    def closing(self) -> float | None:
        """When the day's last session ends (None on a closed day)."""
        return self.sessions[-1][1] if self.sessions else None

    def open_after(self, at: float, seconds: float) -> float:
        """The moment *seconds* of opening hours after *at* have passed (the closed spans in
        between, such as the lunch break, skipped); past closing, the surplus is added to it."""
        for start, end in self.sessions:
            if end <= at:
                continue
            begin = max(start, at)
            if begin + seconds <= end:
                return begin + seconds
            seconds -= end - begin
            at = end
        return at + seconds

    def is_issuing(self, at: float) -> bool:
        for start, end in self.issuing:
            if start <= at < end:
                return True
        return False


class HallCalendar:
    """Maps POSIX time to the hall's local days (memoised: the same day is asked often)."""

    def __init__(self, hall: Hall) -> None:
        self.hall = hall
        self._last: Day | None = None

    def day(self, at: float) -> Day:
        last = self._last
        if last is not None and last.start <= at < last.end:
            return last
        local = self.hall.local_time(at)
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        following = (midnight + timedelta(days=1)).replace(tzinfo=None)
        end = datetime(following.year, following.month, following.day, tzinfo=self.hall.tz).timestamp()
        hours = self.hall.hours
        cut = hours.issue_cutoff_min
        spans = hours.sessions(midnight.weekday())
        issuing = tuple((self._at(midnight, a), self._at(midnight, b - cut)) for a, b in spans)
        sessions = tuple((self._at(midnight, a), self._at(midnight, b)) for a, b in spans)
        self._last = Day(midnight.toordinal(), midnight.weekday(), midnight.timestamp(), end, issuing, sessions)
        return self._last

    def _at(self, midnight: datetime, minute: int) -> float:
        """POSIX time of *minute* after *midnight*, local wall clock (right across DST changes)."""
        wall = midnight.replace(tzinfo=None) + timedelta(minutes=minute)
        return wall.replace(tzinfo=self.hall.tz).timestamp()

    def minute(self, at: float) -> tuple[Day, float]:
        """(day, minutes since local midnight) at *at*."""
        day = self.day(at)
        return day, (at - day.start) / 60.0


class HallState:
    """Everything the engine knows about one hall, right now."""

    def __init__(self, hall: Hall) -> None:
        self.hall = hall
        self.calendar = HallCalendar(hall)
        self.tickets: dict[int, Ticket] = {}
        self.windows: dict[int, WindowState] = {
            w.id: WindowState(w.id, w.skills, w.skill_order, w.interleave) for w in hall.windows
        }
        self.book = QueueBook({s.code: s.target_wait_s for s in hall.services})
        self.numbers: dict[str, int] = {}  # today's display number -> ticket id
        self.counters: dict[str, int] = {}  # service -> last sequence number today
        # walk-in numbers (kiosk, QR) taken per service on local day `issued_day` (the daily caps)
        self.issued: Counter[str] = Counter()
        self.issued_day: int | None = None
        self.day: int | None = None  # local day ordinal the counters belong to
        self.bookings: Counter[tuple[str, float]] = Counter()  # (service, slot start) -> booked
        self.servers: Counter[str] = Counter()  # service -> open windows serving it
        self.next_id = 1
        self.horizon = float("-inf")  # latest time seen; held tickets up to it are released
        self.released: Sequence[int] = ()  # what the last advance released (see rewind)
        self.totals: Counter[str] = Counter()  # issued, called, served, no_show, ...
        self.seq = 0  # events folded in so far: the log seq of the newest (the log numbers from 1)
        self.keys: dict[str, KeyEntry] = {}  # today's idempotency keys (see callsys.keys)
        self.keying: KeyEntry | None = None  # the keyed command whose events are being folded (until its seq)
        # Fairness (callsys.policy): the ticket last given to (person, service) — it holds that
        # pair while it is active — and each person's appointment no-show days (local ordinals).
        self.holders: dict[tuple[str, str], int] = {}
        self.no_shows: dict[str, list[int]] = {}
        self.eta = WaitEstimator({s.code: s.minutes for s in hall.services},
                                 [w.skills for w in hall.windows])  # see callsys.estimate
        # services whose backlog clock the next apply re-checks -> the earliest moment it may start
        self.eta_touched: dict[str, float] = {}

    # ------------------------------------------------------------------ time

    def advance(self, now: float) -> float:
        """Move the time horizon to *now* (never back) and queue early check-ins whose slot began.

        A function of time alone: doing it early (while deciding) or late (while applying
        the next event) gives the same state, which is why replay equals live.
        """
        if now > self.horizon:
            self.horizon = now
            self.released = self.book.release(now) if self.book.pending else ()
            for tid in self.released:  # their services' backlog clocks may start (see _eta_backlog)
                self._eta_touch(self.tickets[tid].service, self.book.where[tid][2])
        return self.horizon

    def rewind(self, horizon: float) -> None:
        """Undo the last :meth:`advance` back to *horizon*: its released tickets are held again.

        ``decide`` calls this when it rejects a command, so that a rejection changes
        nothing (the horizon is part of the snapshot, and replay never sees the command).
        """
        if horizon < self.horizon:
            for ticket in self.released:
                self.book.unrelease(ticket)
            self.horizon, self.released = horizon, ()

    # ------------------------------------------------------------------ helpers

    def ticket_by_number(self, number: str) -> Ticket | None:
        tid = self.numbers.get(number)
        return None if tid is None else self.tickets[tid]

    def issued_on(self, day: int, service: str) -> int:
        """Walk-in numbers of *service* taken on local day *day* (ordinal) since the last reset."""
        return self.issued[service] if self.issued_day == day else 0

    def booked_on(self, day: Day, service: str) -> int:
        """Appointments of *service* booked for slots of *day* (booked or checked in)."""
        step = self.hall.appointments.slot_minutes
        if not self.hall.appointments.capacity[service]:
            return 0
        return sum(self.bookings[(service, day.start + m * 60.0)]
                   for start, end in self.hall.hours.sessions(day.weekday) for m in range(start, end, step))

    def holding(self, person: str, service: str) -> Ticket | None:
        """The active ticket *person* holds for *service*, or None."""
        ticket = self.tickets.get(self.holders.get((person, service), 0))
        if ticket is None or ticket.status not in ACTIVE or ticket.service != service:
            return None
        return ticket

    def hold_for(self, ticket: Ticket) -> None:
        """Record *ticket* as its person's ticket for its service (no person: nothing)."""
        if ticket.person is not None:
            self.holders[(ticket.person, ticket.service)] = ticket.id

    def count_no_show(self, ticket: Ticket) -> None:
        """Count an appointment no-show of *ticket*'s person on its slot's local day."""
        if ticket.person is not None and ticket.slot_start is not None:
            days = self.no_shows.setdefault(ticket.person, [])
            days.append(self.calendar.day(ticket.slot_start).ordinal)
            days.sort()

    def _count_issued(self) -> None:
        """Rebuild the walk-in counts of a snapshot written before the daily caps from its
        tickets (every walk-in ticket since the last day reset is in the state): those issued
        on the day of the latest one, each under its service now (a transferred one under
        the service it was sent on to)."""
        walk_ins = [t for t in self.tickets.values() if t.channel != "appointment"]
        if not walk_ins:
            return
        day = self.calendar.day(max(t.issued_at for t in walk_ins)).ordinal
        self.issued_day = day
        self.issued = Counter(t.service for t in walk_ins if self.calendar.day(t.issued_at).ordinal == day)

    def queue_key(self, ticket: Ticket) -> tuple[str, str]:
        return (ticket.service, ticket.klass)

    def set_window_active(self, window: WindowState, active: bool) -> None:
        step = 1 if active else -1
        for code in window.skills:
            self.servers[code] += step
        self.eta.window_active(window.skills, active)
        for code in window.skills:
            self._eta_touch(code, self.horizon)

    def _eta_touch(self, code: str, at: float) -> None:
        touched = self.eta_touched
        touched[code] = min(at, touched.get(code, at))

    def snapshot(self) -> dict[str, Any]:
        """The logical state as plain data: what a snapshot stores and what replay must equal."""
        held = {tid: not_before for tid, (not_before, _, _) in self.book.held.items()}
        return {
            "hall": self.hall.id,
            "next_id": self.next_id,
            "day": self.day,
            "horizon": self.horizon if self.horizon != float("-inf") else None,
            "counters": dict(sorted(self.counters.items())),
            "issued": [self.issued_day, dict(sorted((k, n) for k, n in self.issued.items() if n))],
            "bookings": sorted([s, t, n] for (s, t), n in self.bookings.items() if n),
            "totals": dict(sorted(self.totals.items())),
            "seq": self.seq,
            "keys": [[k.key, k.command, k.digest, k.seq, [ev.to_row(e) for e in k.events]]
                     for k in sorted(self.keys.values(), key=lambda k: k.seq)],
            "tickets": [
                [getattr(t, name) for name in Ticket.__slots__] + [self._queue_of(t.id), held.get(t.id)]
                for t in sorted(self.tickets.values(), key=lambda t: t.id)
            ],
            "windows": [
                [w.id, w.status, list(w.skills), w.current, w.cycle, w.served, w.clerk]
                for w in sorted(self.windows.values(), key=lambda w: w.id)
            ],
            "ticket_fields": len(Ticket.__slots__),
            "no_shows": sorted([person, list(days)] for person, days in self.no_shows.items()),
            "eta": self.eta.snapshot(),
        }

    def _queue_of(self, tid: int) -> Any:
        if tid in self.book.held:
            key = self.book.held[tid][2]
        elif tid in self.book.where:
            key = self.book.where[tid][1]
        else:
            return None
        return key if isinstance(key, int) else list(key)

    @classmethod
    def from_snapshot(cls, hall: Hall, data: dict[str, Any]) -> "HallState":
        """Rebuild a state from :meth:`snapshot` output."""
        if data["hall"] != hall.id:
            raise ValueError(f"snapshot of hall {data['hall']!r} does not belong to hall {hall.id!r}")
        state = cls(hall)
        state.next_id = data["next_id"]
        state.day = data["day"]
        state.horizon = data["horizon"] if data["horizon"] is not None else float("-inf")
        state.counters = dict(data["counters"])
        state.bookings = Counter({(s, t): n for s, t, n in data["bookings"]})
        state.totals = Counter(data["totals"])
        state.seq = data.get("seq", 0)  # snapshots before idempotency keys had neither
        for key, command, digest, seq, rows in data.get("keys", ()):
            state.keys[key] = KeyEntry(key, command, digest, seq, [ev.from_row(row) for row in rows])
        names = Ticket.__slots__[: data.get("ticket_fields", _TICKET_FIELDS_BEFORE_PERSONS)]
        for row in data["tickets"]:
            ticket = Ticket(**dict(zip(names, row[: len(names)])))
            queue, held = row[len(names)], row[len(names) + 1]
            state.tickets[ticket.id] = ticket
            if ticket.status in ACTIVE:
                state.hold_for(ticket)
            if ticket.number is not None and ticket.day == state.day:  # as live: final ones too
                state.numbers[ticket.number] = ticket.id
            if queue is not None:
                key = queue if isinstance(queue, int) else tuple(queue)
                if held is not None:
                    state.book.hold(ticket.id, held, ticket.rank, key)
                else:
                    state.book.add(ticket.id, ticket.rank, key, ticket.eligible_at)
        for wid, status, skills, current, cycle, served, *clerk in data["windows"]:  # no clerk before clerks
            window = state.windows[wid]
            window.clerk = clerk[0] if clerk else None
            window.skills, window.skillset = tuple(skills), frozenset(skills)
            window.status, window.current, window.cycle, window.served = status, current, cycle, served
            if status == OPEN:
                state.set_window_active(window, True)
        state.no_shows = {person: list(days) for person, days in data.get("no_shows", ())}
        if "issued" in data:
            state.issued_day, state.issued = data["issued"][0], Counter(data["issued"][1])
        else:  # snapshots before the daily caps: today's walk-in tickets are all still in the state
            state._count_issued()
        if "eta" in data:  # snapshots before the estimator had none
            state.eta.restore(data["eta"])
        state.eta_touched.clear()
        return state


# ---------------------------------------------------------------------- apply


def apply(state: HallState, event: ev.Event) -> None:
    """Fold one event into *state*."""
    state.advance(event.at)
    state.seq += 1
    keying = state.keying
    if keying is not None:
        keying.events.append(event)
        if state.seq == keying.seq:  # its last event
            state.keying = None
    if event.kind in _ETA_DEPARTURES:
        _eta_departed(state, event)
    _APPLY[event.kind](state, event)
    _eta_backlog(state, event)


_ETA_DEPARTURES = frozenset((ev.TicketCalled.kind, ev.TicketCancelled.kind))


def _eta_departed(state: HallState, e: ev.TicketCalled | ev.TicketCancelled) -> None:
    """A ticket leaves its service queue (called, or cancelled: the queue drains both ways):
    it counts toward the service's rate if it had waited there."""
    ticket = state.tickets[e.ticket]
    queued = state.book.where.get(e.ticket)
    if queued is not None and not isinstance(queued[1], int):
        state.eta.departed(ticket.service, e.at, e.at > queued[2])


def _eta_backlog(state: HallState, event: ev.Event) -> None:
    """Run each touched service's backlog clock while its tickets wait and a window serves it."""
    touched = state.eta_touched
    if event.kind == ev.DayReset.kind:
        state.eta.reset()
        touched.clear()
        return
    tid = getattr(event, "ticket", None)
    if tid is not None and tid in state.tickets:
        state._eta_touch(state.tickets[tid].service, event.at)
    book, servers = state.book, state.servers
    for code, at in touched.items():
        state.eta.backlog(code, min(at, event.at), servers[code] > 0 and book.waiting(code) > 0)
    touched.clear()


def _command_keyed(state: HallState, e: ev.CommandKeyed) -> None:
    entry = state.keys[e.key] = KeyEntry(e.key, e.command, e.digest, state.seq + e.events)
    state.keying = entry if e.events else None


def _issue(state: HallState, ticket: Ticket, number: str, day: int, seq: int) -> None:
    if state.day != day:
        state.day = day
        state.counters.clear()
        state.numbers.clear()
    state.counters[ticket.service] = seq
    state.numbers[number] = ticket.id
    ticket.number, ticket.day = number, day


def _ticket_issued(state: HallState, e: ev.TicketIssued) -> None:
    ticket = Ticket(e.ticket, e.service, e.channel, e.green, "waiting", e.at,
                    klass=e.klass, rank=e.rank, eligible_at=e.at,
                    person=e.person, birth_year=e.birth_year, green_reason=e.green_reason)
    state.tickets[e.ticket] = ticket
    state.hold_for(ticket)
    state.next_id = e.ticket + 1
    _issue(state, ticket, e.number, e.day, e.seq)
    state.book.add(e.ticket, e.rank, (e.service, e.klass), e.at)
    state.totals["issued"] += 1
    day = state.calendar.day(e.at).ordinal
    if state.issued_day != day:
        state.issued_day = day
        state.issued.clear()
    state.issued[e.service] += 1
    if e.closing_warning is not None:
        state.totals["warned_past_closing"] += 1


def _slot_booked(state: HallState, e: ev.SlotBooked) -> None:
    ticket = state.tickets[e.ticket] = Ticket(
        e.ticket, e.service, "appointment", e.green, BOOKED, e.at, slot_start=e.slot_start, slot_end=e.slot_end,
        person=e.person, birth_year=e.birth_year, green_reason=e.green_reason)
    state.hold_for(ticket)
    state.next_id = e.ticket + 1
    state.bookings[(e.service, e.slot_start)] += 1
    state.totals["booked"] += 1


def _slot_rescheduled(state: HallState, e: ev.SlotRescheduled) -> None:
    ticket = state.tickets[e.ticket]
    state.bookings[(ticket.service, ticket.slot_start)] -= 1
    state.bookings[(ticket.service, e.slot_start)] += 1
    ticket.slot_start, ticket.slot_end = e.slot_start, e.slot_end
    state.totals["rescheduled"] += 1


def _green_flagged(state: HallState, e: ev.GreenFlagged) -> None:
    """Re-ranked where it waits: a service queue becomes the priority one, a window's own stays."""
    ticket = state.tickets[e.ticket]
    ticket.green, ticket.green_reason, ticket.klass, ticket.rank = True, "clerk", e.klass, e.rank
    book = state.book
    if e.ticket in book.held:
        not_before, _, key = book.held[e.ticket]
        book.remove(e.ticket)
        book.hold(e.ticket, not_before, e.rank, key if isinstance(key, int) else state.queue_key(ticket))
    else:
        _, key, since = book.where[e.ticket]
        book.remove(e.ticket)
        book.add(e.ticket, e.rank, key if isinstance(key, int) else state.queue_key(ticket), since)
    state.totals["green_flagged"] += 1


def _checked_in(state: HallState, e: ev.CheckedIn) -> None:
    ticket = state.tickets[e.ticket]
    ticket.status, ticket.klass, ticket.rank = WAITING, e.klass, e.rank
    ticket.checked_in_at, ticket.late, ticket.eligible_at = e.at, e.late, max(e.at, e.not_before)
    _issue(state, ticket, e.number, e.day, e.seq)
    key = state.queue_key(ticket)
    if e.not_before > state.horizon:
        state.book.hold(ticket.id, e.not_before, e.rank, key)
    else:
        state.book.add(ticket.id, e.rank, key, ticket.eligible_at)
    state.totals["checked_in"] += 1


def _cancelled(state: HallState, e: ev.TicketCancelled) -> None:
    ticket = state.tickets[e.ticket]
    if ticket.status == BOOKED:
        state.bookings[(ticket.service, ticket.slot_start)] -= 1
    elif e.ticket in state.book:
        state.book.remove(e.ticket)
    ticket.status, ticket.finished_at = CANCELLED, e.at
    state.totals["cancelled"] += 1


def _called(state: HallState, e: ev.TicketCalled) -> None:
    ticket = state.tickets[e.ticket]
    window = state.windows[e.window]
    state.book.remove(e.ticket)
    window.cycle = next_cycle(window, ticket.klass)
    window.current = e.ticket
    ticket.status, ticket.window, ticket.called_at, ticket.recalls = CALLED, e.window, e.at, 0
    state.totals["called"] += 1


def _recalled(state: HallState, e: ev.TicketRecalled) -> None:
    state.tickets[e.ticket].recalls = e.recalls


def _release_window(state: HallState, window_id: int) -> None:
    state.windows[window_id].current = None


def _no_show(state: HallState, e: ev.TicketNoShow) -> None:
    ticket = state.tickets[e.ticket]
    ticket.status, ticket.finished_at = NO_SHOW, e.at
    _release_window(state, e.window)
    state.totals["no_show"] += 1


def _requeued(state: HallState, e: ev.TicketRequeued) -> None:
    ticket = state.tickets[e.ticket]
    ticket.status, ticket.rank, ticket.window, ticket.eligible_at = WAITING, e.rank, None, e.at
    ticket.finished_at = None
    state.hold_for(ticket)
    state.book.add(ticket.id, e.rank, state.queue_key(ticket), e.at)
    state.totals["requeued"] += 1


def _started(state: HallState, e: ev.ServiceStarted) -> None:
    ticket = state.tickets[e.ticket]
    ticket.status, ticket.started_at = SERVING, e.at


def _finished(state: HallState, e: ev.ServiceFinished) -> None:
    ticket = state.tickets[e.ticket]
    ticket.status, ticket.finished_at, ticket.rating, ticket.score = DONE, e.at, e.rating, e.score
    ticket.clerk = e.clerk
    if ticket.started_at is None:
        ticket.started_at = e.at
    _release_window(state, e.window)
    state.windows[e.window].served += 1
    state.totals["served"] += 1
    if e.rating:
        state.totals[f"rated_{e.rating}"] += 1


def _transferred(state: HallState, e: ev.TicketTransferred) -> None:
    """Into the target window's own queue — or, when that window is closed (a closed window
    keeps no queue), into the service queue, so nobody waits for a window that is not there."""
    ticket = state.tickets[e.ticket]
    _release_window(state, e.from_window)
    to_window = e.to_window if e.to_window is not None and state.windows[e.to_window].status != CLOSED else None
    ticket.status, ticket.service, ticket.window = WAITING, e.service, to_window
    state.hold_for(ticket)
    ticket.transfers += 1
    ticket.eligible_at, ticket.started_at, ticket.called_at = e.at, None, None
    key = to_window if to_window is not None else state.queue_key(ticket)
    state.book.add(ticket.id, ticket.rank, key, e.at)
    state.totals["transferred"] += 1


def _parked(state: HallState, e: ev.TicketParked) -> None:
    ticket = state.tickets[e.ticket]
    ticket.status = PARKED
    _release_window(state, e.window)


def _returned(state: HallState, e: ev.TicketReturned) -> None:
    """Back to the parking window's own queue; to the service queue if that window has closed."""
    ticket = state.tickets[e.ticket]
    ticket.status, ticket.eligible_at = WAITING, e.at
    if state.windows[e.window].status == CLOSED:  # a closed window keeps no queue (see _window_closed)
        ticket.window = None
        state.book.add(ticket.id, ticket.rank, state.queue_key(ticket), e.at)
    else:
        state.book.add(ticket.id, ticket.rank, e.window, e.at)


def _window_status(status: str) -> Callable[[HallState, Any], None]:
    def handler(state: HallState, e: Any) -> None:
        window = state.windows[e.window]
        was, window.status = window.status == OPEN, status
        if was != (status == OPEN):
            state.set_window_active(window, status == OPEN)
    return handler


def _window_opened(state: HallState, e: ev.WindowOpened) -> None:
    _window_status(OPEN)(state, e)
    state.windows[e.window].clerk = e.clerk


def _window_closed(state: HallState, e: ev.WindowClosed) -> None:
    """Closing a window sends the citizens waiting for it alone back to their service queues."""
    _window_status(CLOSED)(state, e)
    state.windows[e.window].clerk = None
    queue = state.book.direct.get(e.window)
    for _, tid in list(queue or ()):
        ticket = state.tickets[tid]
        state.book.remove(tid)
        ticket.window = None
        state.book.add(tid, ticket.rank, state.queue_key(ticket), ticket.eligible_at)


def _reassigned(state: HallState, e: ev.SkillsReassigned) -> None:
    window = state.windows[e.window]
    active = window.status == OPEN
    if active:
        state.set_window_active(window, False)
    window.skills, window.skillset = e.skills, frozenset(e.skills)
    if active:
        state.set_window_active(window, True)


def _day_reset(state: HallState, e: ev.DayReset) -> None:
    for tid in e.expired:
        ticket = state.tickets.pop(tid)
        if tid in state.book:
            state.book.remove(tid)
        if ticket.status == BOOKED:
            state.bookings[(ticket.service, ticket.slot_start)] -= 1
            state.count_no_show(ticket)  # booked, never checked in
        elif ticket.status == NO_SHOW and ticket.channel == "appointment":
            state.count_no_show(ticket)  # checked in, then did not come when called
    # Finished tickets are history (kept in the event log), not state.
    for tid in [t.id for t in state.tickets.values() if t.status in FINAL or t.status == NO_SHOW]:
        del state.tickets[tid]
    _forget_persons(state, state.calendar.day(e.at).ordinal)
    state.bookings = Counter({k: n for k, n in state.bookings.items() if n > 0})
    for window in state.windows.values():
        if window.status == OPEN:
            state.set_window_active(window, False)
        window.status, window.current, window.cycle, window.clerk = CLOSED, None, 0, None
    state.numbers.clear()
    state.counters.clear()
    state.issued.clear()
    state.issued_day = None
    state.day = None
    state.keys = {k: entry for k, entry in state.keys.items() if entry.seq >= state.seq}  # a keyed reset keeps its own
    state.totals["expired"] += len(e.expired)


def _forget_persons(state: HallState, today: int) -> None:
    """Day reset: drop holders of tickets gone and no-show days too old to block anyone."""
    state.holders = {pair: tid for pair, tid in state.holders.items() if tid in state.tickets}
    rules = state.hall.appointments
    oldest = today - rules.no_show_window_days - rules.no_show_block_days
    for person in list(state.no_shows):
        days = [d for d in state.no_shows[person] if d > oldest]
        if days:
            state.no_shows[person] = days
        else:
            del state.no_shows[person]


_APPLY: dict[str, Callable[[HallState, Any], None]] = {
    ev.CommandKeyed.kind: _command_keyed,
    ev.TicketIssued.kind: _ticket_issued,
    ev.SlotBooked.kind: _slot_booked,
    ev.SlotRescheduled.kind: _slot_rescheduled,
    ev.GreenFlagged.kind: _green_flagged,
    ev.CheckedIn.kind: _checked_in,
    ev.TicketCancelled.kind: _cancelled,
    ev.TicketCalled.kind: _called,
    ev.TicketRecalled.kind: _recalled,
    ev.TicketNoShow.kind: _no_show,
    ev.TicketRequeued.kind: _requeued,
    ev.ServiceStarted.kind: _started,
    ev.ServiceFinished.kind: _finished,
    ev.TicketTransferred.kind: _transferred,
    ev.TicketParked.kind: _parked,
    ev.TicketReturned.kind: _returned,
    ev.WindowOpened.kind: _window_opened,
    ev.WindowClosed.kind: _window_closed,
    ev.WindowPaused.kind: _window_status(PAUSED),
    ev.WindowResumed.kind: _window_status(OPEN),
    ev.SkillsReassigned.kind: _reassigned,
    ev.DayReset.kind: _day_reset,
}
