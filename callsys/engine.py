"""The merged-queue engine: ``decide(state, command) -> events`` and ``apply(state, event)``.

Pure and deterministic: no I/O, no clock (time arrives in each command), no trio. The
server and the simulator run this same code::

    engine = QueueEngine(hall)
    events = engine.execute(TakeNumber(at=t, service="PF-WD"))   # decide + apply

A rejected command raises an :class:`~callsys.errors.EngineError` and changes nothing.
``decide`` only reads the state, except that it moves the state's time horizon forward
(queueing early check-ins whose slot has begun) — a function of time alone that replay
reproduces, see :meth:`HallState.advance`. When it rejects the command it moves the
horizon back (:meth:`HallState.rewind`), so the rejection leaves the snapshot as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Callable, Iterable, Mapping

from . import commands as cmd
from . import errors as err
from . import events as ev
from .hall import UNIVERSAL, Hall
from .keys import KeyEntry, digest
from .policy import GREEN_REASONS, booking_block, rank_of, select
from .state import (BOOKED, CALLED, CLOSED, NO_SHOW, OPEN, PARKED, PAUSED, SERVING, WAITING,
                    Day, HallState, Ticket, WindowState, apply)

__all__ = ["decide", "apply", "repeat_of", "QueueEngine", "Position", "EngineStatistics"]

RATINGS = (None, "good", "bad")
CHANNELS = ("kiosk", "qr")


def decide(state: HallState, command: cmd.Command) -> list[ev.Event]:
    """The events *command* causes in *state*.

    A command with an idempotency ``key`` gets a :class:`~callsys.events.CommandKeyed`
    event first; a repeat of a key already executed today causes no event at all (``[]``;
    :func:`repeat_of` gives the original's). See :mod:`callsys.keys`.

    Raises:
        EngineError: the command is not allowed now (the caller's fault); nothing changed.
        KeyReused: its key was used today for a different command.
    """
    handler = _DECIDE.get(command.kind)
    if handler is None:
        raise err.InvalidArgument(f"unknown command {command.kind!r}")
    if command.key is not None and repeat_of(state, command) is not None:
        return []  # checked before time moves: a repeat leaves no trace
    horizon = state.horizon
    now = state.advance(command.at)
    try:
        events = handler(state, command, now)
    except err.EngineError:
        state.rewind(horizon)  # a rejected command leaves no trace, not even the time it came
        raise
    if command.key is not None:
        events.insert(0, ev.CommandKeyed(now, command.key, command.kind, digest(command), len(events)))
    return events


def repeat_of(state: HallState, command: cmd.Command) -> KeyEntry | None:
    """What the first command with *command*'s key did today, or None if the key is new.

    Raises:
        KeyReused: the key belongs to a different command (another kind or other fields).
    """
    entry = state.keys.get(command.key) if command.key is not None else None
    if entry is not None and (entry.command != command.kind or entry.digest != digest(command)):
        raise err.KeyReused(f"key {command.key!r} was used today for a different {entry.command} command",
                            key=command.key, command=entry.command)
    return entry


# ---------------------------------------------------------------------- lookups


def _window(state: HallState, window_id: int) -> WindowState:
    window = state.windows.get(window_id)
    if window is None:
        raise err.UnknownWindow(f"window {window_id} does not exist in hall {state.hall.id!r}", window=window_id)
    return window


def _service(state: HallState, code: str) -> None:
    if code not in state.hall.services_by_code:
        raise err.UnknownService(f"service {code!r} is not offered in hall {state.hall.id!r}", service=code)


def _ticket(state: HallState, ref: cmd.TicketRef) -> Ticket:
    if isinstance(ref, str):
        ticket = state.ticket_by_number(ref)
    else:
        ticket = state.tickets.get(ref)
    if ticket is None:
        raise err.UnknownTicket(f"no ticket {ref!r} today", ticket=ref)
    return ticket


def _expect(ticket: Ticket, *statuses: str) -> None:
    if ticket.status not in statuses:
        raise err.InvalidState(
            f"ticket {ticket.number or ticket.id} is {ticket.status}, expected {' or '.join(statuses)}",
            ticket=ticket.id, status=ticket.status,
        )


def _current(state: HallState, window_id: int, *statuses: str) -> tuple[WindowState, Ticket]:
    window = _window(state, window_id)
    if window.current is None:
        raise err.WindowIdle(f"window {window_id} has nobody called or in service", window=window_id)
    ticket = state.tickets[window.current]
    _expect(ticket, *statuses)
    return window, ticket


def _ready(window: WindowState) -> None:
    """A window may call only when open, unpaused and free."""
    if window.status != OPEN:
        raise err.WindowClosed(f"window {window.id} is {window.status}", window=window.id, status=window.status)
    if window.current is not None:
        raise err.WindowBusy(f"window {window.id} already has ticket {window.current} called or in service",
                             window=window.id, ticket=window.current)


def _issuing_day(state: HallState, at: float):
    """The hall's day at *at*; raises HallClosed unless numbers are handed out then."""
    today = state.calendar.day(at)
    if not today.is_issuing(at):
        raise err.HallClosed(f"hall {state.hall.id!r} is not issuing numbers at this time", at=at)
    return today


def _number(state: HallState, service: str, at: float) -> tuple[str, int, int]:
    """(display number, day, sequence) for the next ticket of *service*, issued at *at*.

    Raises:
        HallClosed: the hall is not handing out numbers at *at*.
    """
    hall = state.hall
    today = _issuing_day(state, at)  # also when numbers never reset: the hours still apply
    day = today.ordinal if hall.reset_daily else 0
    seq = (state.counters.get(service, 0) if state.day == day else 0) + 1
    prefix = hall.services_by_code[service].prefix
    return f"{prefix}{seq:0{hall.number_width}d}", day, seq


# ---------------------------------------------------------------------- fairness


def _green_reason(green: bool, reason: str | None) -> str | None:
    """The recorded reason of a citizen command's green flag (``"requested"`` by default)."""
    if reason is None:
        return "requested" if green else None
    if not green or reason not in GREEN_REASONS[:2]:
        raise err.InvalidArgument(f"green_reason must be 'senior' or 'requested' on a green ticket, got {reason!r}",
                                  green_reason=reason)
    return reason


def _identity(state: HallState, person: str | None, birth_year: int | None, service: str) -> None:
    """Check a citizen command's identity fields and the one-active-ticket rule."""
    if person is not None and (not isinstance(person, str) or not 8 <= len(person) <= 64):
        raise err.InvalidArgument("person must be a keyed hash of 8 to 64 characters")
    if birth_year is not None and (isinstance(birth_year, bool) or not isinstance(birth_year, int)
                                   or not 1850 <= birth_year <= 9999):
        raise err.InvalidArgument(f"birth_year must be a year, got {birth_year!r}", birth_year=birth_year)
    if person is None:
        return
    held = state.holding(person, service)
    if held is not None:
        ref = {"number": held.number} if held.number is not None else {"ticket": held.id}
        raise err.AlreadyHolding(f"this person already has a {held.status} ticket for {service!r}",
                                 status=held.status, **ref)


def _not_blocked(state: HallState, person: str | None, now: float) -> None:
    """Refuse a booking by a person whose appointment no-shows block booking (policy.booking_block)."""
    if person is None or person not in state.no_shows:
        return
    rules = state.hall.appointments
    block = booking_block(state.no_shows[person], state.calendar.day(now).ordinal, limit=rules.no_show_limit,
                          window_days=rules.no_show_window_days, block_days=rules.no_show_block_days)
    if block is not None:
        until, count = block
        raise err.BookingBlocked(
            f"{count} missed appointments within {rules.no_show_window_days} days: "
            f"booking is possible again from {date.fromordinal(until).isoformat()}",
            reason="no_shows", until=date.fromordinal(until).isoformat(), no_shows=count)


# ---------------------------------------------------------------------- citizen side


def _take_number(state: HallState, c: cmd.TakeNumber, now: float) -> list[ev.Event]:
    _service(state, c.service)
    if c.channel not in CHANNELS:
        raise err.InvalidArgument(f"channel must be one of {CHANNELS}, got {c.channel!r}", channel=c.channel)
    reason = _green_reason(c.green, c.green_reason)
    _identity(state, c.person, c.birth_year, c.service)
    number, day, seq = _number(state, c.service, now)
    today = state.calendar.day(now)
    _within_cap(state, c.service, today)
    warning = _cutoff(state, c.service, today, now)
    klass = "priority" if c.green else "normal"
    rank = now - state.hall.policy.green_credit_s if c.green else now
    return [ev.TicketIssued(now, state.next_id, number, c.service, c.channel, c.green, klass, rank, day, seq,
                            c.person, c.birth_year, reason, warning)]


# ---------------------------------------------------------------------- issuing (see callsys.hall.Issuing)


def _within_cap(state: HallState, service: str, today: Day) -> None:
    """Refuse a walk-in number past the service's daily cap (限号).

    Raises:
        DailyCapReached: today's walk-in numbers plus today's appointments reached the cap.
    """
    cap = state.hall.issuing.daily_cap.get(service)
    if cap is None:
        return
    if state.issued_on(today.ordinal, service) + state.booked_on(today, service) >= cap:
        raise err.DailyCapReached(f"today's {cap} numbers for {service!r} are all given out; "
                                  "please come back another day or book an appointment", service=service, cap=cap)


def new_ticket_wait(state: HallState, service: str, now: float, idle: int) -> float | None:
    """The estimated wait (s) of a ticket of *service* taken at *now*: behind everyone queued
    for it, with *idle* free open windows serving it (the one estimator, :mod:`callsys.estimate`)."""
    return state.eta.estimate(service, state.book.waiting(service), now, idle)


def idle_windows(state: HallState, service: str) -> int:
    """Open windows serving *service* with nobody called or served."""
    return sum(1 for w in state.windows.values() if w.status == OPEN and w.current is None and service in w.skillset)


def _cutoff(state: HallState, service: str, today: Day, now: float) -> tuple[float, float] | None:
    """The capacity-aware cutoff: None when the call of a new ticket is predicted in time (or
    the cutoff is off, or there is no estimate), else ``(predicted wait s, closing)`` to warn.

    The predicted call is *now* plus the estimated wait counted in opening hours
    (:meth:`Day.open_after`: the lunch break does not serve anyone); it must fall
    ``cutoff_margin_s`` before the end of the day's last session.

    Raises:
        PastClosing: it does not, and the hall's cutoff is ``"refuse"``.
    """
    rules = state.hall.issuing
    closing = today.closing
    if rules.cutoff == "off" or closing is None:
        return None
    wait = new_ticket_wait(state, service, now, 0)  # free windows only shorten it: count them if needed
    if wait is not None and today.open_after(now, wait) > closing - rules.cutoff_margin_s:
        wait = new_ticket_wait(state, service, now, idle_windows(state, service))
    if wait is None or today.open_after(now, wait) <= closing - rules.cutoff_margin_s:
        return None
    if rules.cutoff == "refuse":
        raise err.PastClosing(f"the predicted wait for {service!r} ({wait / 60:.0f} min) runs past closing today; "
                              "please come back another day or book an appointment",
                              service=service, predicted_wait_s=wait, closing=closing, margin_s=rules.cutoff_margin_s)
    return wait, closing


def _slot(state: HallState, service: str, slot_start: float, now: float) -> float:
    """The end of the bookable slot of *service* that starts at *slot_start*.

    Raises:
        InvalidSlot: the service takes no appointments, or the slot is off the grid or over.
        SlotFull: no place is left in it.
    """
    rules = state.hall.appointments
    capacity = rules.capacity[service]
    if capacity == 0:
        raise err.InvalidSlot(f"service {service!r} takes no appointments", service=service)
    slot_s = rules.slot_minutes * 60
    try:
        day, minute = state.calendar.minute(slot_start)
    except (OverflowError, OSError, ValueError):  # a time no calendar can show (1e300, nan...)
        raise err.InvalidSlot("the slot start is not a valid time", slot_start=slot_start) from None
    on_grid = any(
        start <= minute and minute + rules.slot_minutes <= end and (minute - start) % rules.slot_minutes == 0
        for start, end in state.hall.hours.sessions(day.weekday)
    )
    if not on_grid:
        raise err.InvalidSlot("the slot is not on the hall's appointment grid", slot_start=slot_start)
    if slot_start + slot_s <= now:
        raise err.InvalidSlot("the slot is over", slot_start=slot_start)
    if state.bookings[(service, slot_start)] >= capacity:
        raise err.SlotFull(f"the slot is fully booked for {service!r} ({capacity} places)",
                           service=service, slot_start=slot_start, capacity=capacity)
    return slot_start + slot_s


def _book_slot(state: HallState, c: cmd.BookSlot, now: float) -> list[ev.Event]:
    _service(state, c.service)
    reason = _green_reason(c.green, c.green_reason)
    _identity(state, c.person, c.birth_year, c.service)
    _not_blocked(state, c.person, now)
    slot_end = _slot(state, c.service, c.slot_start, now)
    return [ev.SlotBooked(now, state.next_id, c.service, c.slot_start, slot_end, c.green,
                          c.person, c.birth_year, reason)]


def _reschedule(state: HallState, c: cmd.Reschedule, now: float) -> list[ev.Event]:
    ticket = _ticket(state, c.ticket)
    _expect(ticket, BOOKED)
    if c.slot_start == ticket.slot_start:
        raise err.InvalidSlot("the appointment is already booked for that slot", ticket=ticket.id,
                              slot_start=c.slot_start)
    slot_end = _slot(state, ticket.service, c.slot_start, now)
    return [ev.SlotRescheduled(now, ticket.id, c.slot_start, slot_end)]


def _check_in(state: HallState, c: cmd.CheckIn, now: float) -> list[ev.Event]:
    ticket = _ticket(state, c.ticket)
    _expect(ticket, BOOKED)
    hall = state.hall
    rules, policy = hall.appointments, hall.policy
    if now < ticket.slot_start - rules.early_checkin_s:
        raise err.CheckInRejected("too early: check-in opens before the slot",
                                  ticket=ticket.id, opens_at=ticket.slot_start - rules.early_checkin_s)
    late = now > ticket.slot_end + rules.late_grace_s
    if late and rules.late_rule == "reject":
        raise err.CheckInRejected("too late for the booked slot; please take a number", ticket=ticket.id)
    number, day, seq = _number(state, ticket.service, now)
    if late:  # queued like a walk-in: no appointment credit
        klass = "priority" if ticket.green else "normal"
        rank = rank_of(now, green=ticket.green, credit=0.0, green_credit=policy.green_credit_s)
        not_before = now
    else:
        klass = "priority" if ticket.green or policy.appointment_class == "priority" else "normal"
        not_before = max(now, ticket.slot_start)
        rank = rank_of(not_before, green=ticket.green, credit=policy.appointment_credit_s,
                       green_credit=policy.green_credit_s)
    return [ev.CheckedIn(now, ticket.id, number, klass, rank, not_before, day, seq, late)]


def _cancel(state: HallState, c: cmd.Cancel, now: float) -> list[ev.Event]:
    ticket = _ticket(state, c.ticket)
    _expect(ticket, BOOKED, WAITING, PARKED)
    return [ev.TicketCancelled(now, ticket.id)]


def _requeue(state: HallState, c: cmd.Requeue, now: float) -> list[ev.Event]:
    ticket = _ticket(state, c.ticket)
    _expect(ticket, NO_SHOW)
    if ticket.person is not None:  # the person may have taken a new number since
        _identity(state, ticket.person, None, ticket.service)
    _issuing_day(state, now)
    rank = ticket.rank if state.hall.policy.requeue == "keep" else now
    return [ev.TicketRequeued(now, ticket.id, rank)]


def _return_ticket(state: HallState, c: cmd.ReturnTicket, now: float) -> list[ev.Event]:
    ticket = _ticket(state, c.ticket)
    _expect(ticket, PARKED)
    return [ev.TicketReturned(now, ticket.id, ticket.window)]


# ---------------------------------------------------------------------- clerk side


def _call_next(state: HallState, c: cmd.CallNext, now: float) -> list[ev.Event]:
    window = _window(state, c.window)
    _ready(window)
    tid = select(state.book, window, now, wait_threshold=state.hall.policy.wait_threshold)
    if tid is None:
        raise err.QueueEmpty(f"nobody waits for the services of window {window.id}", window=window.id)
    ticket = state.tickets[tid]
    return [ev.TicketCalled(now, tid, window.id, ticket.number, ticket.service, False)]


def _call_number(state: HallState, c: cmd.CallNumber, now: float) -> list[ev.Event]:
    window = _window(state, c.window)
    _ready(window)
    ticket = _ticket(state, c.ticket)
    _expect(ticket, WAITING)
    mine = state.book.where.get(ticket.id, (None, None))[1] == window.id
    if not mine and ticket.service not in window.skillset:
        raise err.InvalidState(f"window {window.id} does not serve {ticket.service!r}",
                               window=window.id, service=ticket.service)
    return [ev.TicketCalled(now, ticket.id, window.id, ticket.number, ticket.service, True)]


def _recall(state: HallState, c: cmd.Recall, now: float) -> list[ev.Event]:
    window, ticket = _current(state, c.window, CALLED)
    limit = state.hall.policy.recall_limit
    if ticket.recalls >= limit:
        raise err.RecallLimit(f"{ticket.number} was recalled {limit} times already; mark no-show",
                              ticket=ticket.id, recalls=ticket.recalls, limit=limit)
    return [ev.TicketRecalled(now, ticket.id, window.id, ticket.number, ticket.recalls + 1)]


def _no_show(state: HallState, c: cmd.NoShow, now: float) -> list[ev.Event]:
    window, ticket = _current(state, c.window, CALLED)
    limit = state.hall.policy.recall_limit
    if ticket.recalls < limit:
        raise err.RecallLimit(f"recall {ticket.number} {limit - ticket.recalls} more time(s) before no-show",
                              ticket=ticket.id, recalls=ticket.recalls, limit=limit)
    return [ev.TicketNoShow(now, ticket.id, window.id, window.clerk)]


def _start(state: HallState, c: cmd.StartService, now: float) -> list[ev.Event]:
    window, ticket = _current(state, c.window, CALLED)
    return [ev.ServiceStarted(now, ticket.id, window.id)]


def _finish(state: HallState, c: cmd.FinishService, now: float) -> list[ev.Event]:
    if c.rating not in RATINGS:
        raise err.InvalidArgument(f"rating must be 'good', 'bad' or none, got {c.rating!r}", rating=c.rating)
    if c.score is not None and (isinstance(c.score, bool) or not isinstance(c.score, int) or not 1 <= c.score <= 5):
        raise err.InvalidArgument(f"score must be a whole number 1..5, got {c.score!r}", score=c.score)
    window, ticket = _current(state, c.window, CALLED, SERVING)
    return [ev.ServiceFinished(now, ticket.id, window.id, c.rating, c.score, window.clerk)]


def _transfer(state: HallState, c: cmd.Transfer, now: float) -> list[ev.Event]:
    if (c.service is None) == (c.to_window is None):
        raise err.InvalidArgument("transfer takes exactly one of service or to_window")
    window, ticket = _current(state, c.window, CALLED, SERVING)
    service = ticket.service
    if c.service is not None:
        _service(state, c.service)
        service = c.service
        if ticket.person is not None and service != ticket.service:
            _identity(state, ticket.person, None, service)
    else:
        _window(state, c.to_window)
        if c.to_window == window.id:
            raise err.InvalidArgument("cannot transfer a ticket to its own window", window=window.id)
    return [ev.TicketTransferred(now, ticket.id, window.id, service, c.to_window, window.clerk)]


def _park(state: HallState, c: cmd.Park, now: float) -> list[ev.Event]:
    window, ticket = _current(state, c.window, CALLED, SERVING)
    return [ev.TicketParked(now, ticket.id, window.id)]


def _flag_green(state: HallState, c: cmd.FlagGreen, now: float) -> list[ev.Event]:
    window = _window(state, c.window)
    ticket = _ticket(state, c.ticket)
    _expect(ticket, WAITING)
    if ticket.green:
        raise err.InvalidState(f"ticket {ticket.number} already has the green credit", ticket=ticket.id,
                               status=ticket.status, green_reason=ticket.green_reason)
    rank = ticket.rank - state.hall.policy.green_credit_s
    return [ev.GreenFlagged(now, ticket.id, window.id, "priority", rank)]


def _window_move(source: tuple[str, ...], event: type[ev.Event], *, idle: bool,
                 carry: tuple[str, ...] = ()) -> Callable:
    """A window status change allowed from *source* statuses (and only when idle if *idle*);
    the event gets the command's fields named in *carry* after the window."""

    def handler(state: HallState, c: cmd.WindowCommand, now: float) -> list[ev.Event]:
        window = _window(state, c.window)
        if window.status not in source:
            raise err.InvalidState(f"window {window.id} is {window.status}", window=window.id, status=window.status)
        if idle and window.current is not None:
            raise err.WindowBusy(f"window {window.id} still has ticket {window.current}; finish, transfer or park it",
                                 window=window.id, ticket=window.current)
        return [event(now, window.id, *(getattr(c, name) for name in carry))]

    return handler


_open = _window_move((CLOSED,), ev.WindowOpened, idle=False, carry=("clerk",))


def _open_window(state: HallState, c: cmd.OpenWindow, now: float) -> list[ev.Event]:
    """Open a closed window with the staff id of the clerk signing in (checked, then kept on
    the window and named by every service that ends there)."""
    clerk = c.clerk
    if clerk is not None and not (isinstance(clerk, str) and 0 < len(clerk) <= cmd.MAX_CLERK
                                  and clerk.isprintable() and clerk == clerk.strip()):
        raise err.InvalidArgument(f"clerk must be a staff id of 1 to {cmd.MAX_CLERK} printable characters "
                                  f"without surrounding blanks, got {clerk!r}", clerk=clerk)
    return _open(state, c, now)


# ---------------------------------------------------------------------- manager side


def _reassign(state: HallState, c: cmd.ReassignSkills, now: float) -> list[ev.Event]:
    window = _window(state, c.window)
    skills = tuple(c.skills)
    if not skills:
        raise err.InvalidArgument("a window needs at least one service", window=window.id)
    if skills == (UNIVERSAL,):
        skills = tuple(s.code for s in state.hall.services)
    for code in skills:
        _service(state, code)
    if len(set(skills)) != len(skills):
        raise err.InvalidArgument("a service is listed twice", window=window.id)
    return [ev.SkillsReassigned(now, window.id, skills)]


def _reset_day(state: HallState, c: cmd.ResetDay, now: float) -> list[ev.Event]:
    open_statuses = (WAITING, CALLED, SERVING, PARKED, NO_SHOW)
    expired = tuple(
        t.id for t in state.tickets.values()
        if t.status in open_statuses or (t.status == BOOKED and t.slot_end <= now)
    )
    return [ev.DayReset(now, expired)]


_DECIDE: dict[str, Callable[[HallState, Any, float], list[ev.Event]]] = {
    cmd.TakeNumber.kind: _take_number,
    cmd.BookSlot.kind: _book_slot,
    cmd.Reschedule.kind: _reschedule,
    cmd.CheckIn.kind: _check_in,
    cmd.Cancel.kind: _cancel,
    cmd.Requeue.kind: _requeue,
    cmd.ReturnTicket.kind: _return_ticket,
    cmd.CallNext.kind: _call_next,
    cmd.CallNumber.kind: _call_number,
    cmd.Recall.kind: _recall,
    cmd.NoShow.kind: _no_show,
    cmd.StartService.kind: _start,
    cmd.FinishService.kind: _finish,
    cmd.Transfer.kind: _transfer,
    cmd.Park.kind: _park,
    cmd.FlagGreen.kind: _flag_green,
    cmd.Pause.kind: _window_move((OPEN,), ev.WindowPaused, idle=True),
    cmd.Resume.kind: _window_move((PAUSED,), ev.WindowResumed, idle=False),
    cmd.OpenWindow.kind: _open_window,
    cmd.CloseWindow.kind: _window_move((OPEN, PAUSED), ev.WindowClosed, idle=True),
    cmd.ReassignSkills.kind: _reassign,
    cmd.ResetDay.kind: _reset_day,
}


# ---------------------------------------------------------------------- the engine object


@dataclass(frozen=True, slots=True)
class Position:
    """Where a ticket stands: status, tickets ahead in its queue, estimated wait (s)."""

    ticket: int
    number: str | None
    status: str
    ahead: int
    estimated_wait_s: float | None
    window: int | None


@dataclass(frozen=True, slots=True)
class EngineStatistics:
    waiting: int
    held: int
    windows_open: int
    windows_busy: int
    windows_paused: int
    tickets: int
    totals: Mapping[str, int]
    waiting_by_service: Mapping[str, int]


class QueueEngine:
    """One hall's engine: its state plus ``decide``/``apply``.

    Args:
        hall: the compiled hall configuration.
        state: an existing state (e.g. restored from a snapshot); a fresh one by default.
    """

    def __init__(self, hall: Hall, state: HallState | None = None) -> None:
        self.hall = hall
        self.state = state if state is not None else HallState(hall)
        self._idle_seq, self._idle_counts = -1, {}  # see _idle

    def decide(self, command: cmd.Command) -> list[ev.Event]:
        return decide(self.state, command)

    def repeat_of(self, command: cmd.Command) -> KeyEntry | None:
        """The original of a repeated idempotency key, or None (raises KeyReused)."""
        return repeat_of(self.state, command)

    def apply(self, event: ev.Event) -> None:
        apply(self.state, event)

    def apply_all(self, events: Iterable[ev.Event]) -> None:
        for event in events:
            apply(self.state, event)

    def execute(self, command: cmd.Command) -> list[ev.Event]:
        """Decide and apply *command*; return its events (raises EngineError when rejected)."""
        events = decide(self.state, command)
        for event in events:
            apply(self.state, event)
        return events

    def snapshot(self) -> dict[str, Any]:
        return self.state.snapshot()

    @classmethod
    def restore(cls, hall: Hall, snapshot: Mapping[str, Any] | None, events: Iterable[ev.Event] = ()) -> "QueueEngine":
        """An engine from a snapshot (or from scratch) with *events* folded on top."""
        state = HallState.from_snapshot(hall, dict(snapshot)) if snapshot else HallState(hall)
        engine = cls(hall, state)
        engine.apply_all(events)
        return engine

    def ticket(self, ref: cmd.TicketRef) -> Ticket:
        """The ticket with this id or today's number (raises UnknownTicket)."""
        return _ticket(self.state, ref)

    def position(self, ref: cmd.TicketRef, now: float | None = None) -> Position:
        """Tickets ahead of *ref* in its queue and its estimated wait at *now* (the state's
        time horizon by default), from the hall's one estimator (:mod:`callsys.estimate`).

        The estimate is None when the ticket does not wait or no open window serves it.
        """
        state = self.state
        ticket = _ticket(state, ref)
        if ticket.id not in state.book:
            return Position(ticket.id, ticket.number, ticket.status, 0, None, ticket.window)
        ahead = state.book.ahead_of(ticket.id)
        return Position(ticket.id, ticket.number, ticket.status, ahead, self._estimate(ticket, ahead, now),
                        ticket.window)

    def estimate_new(self, service: str, now: float | None = None) -> float | None:
        """The estimated wait (s) of a ticket of *service* taken at *now* (the state's time
        horizon by default): behind everyone queued for it; None when no open window serves it."""
        state = self.state
        _service(state, service)
        return new_ticket_wait(state, service, state.horizon if now is None else now, self._idle(service))

    def estimate_at(self, service: str, ahead: int, now: float | None = None) -> float | None:
        """The estimated wait (s) of a ticket with *ahead* tickets before it in *service*'s queue."""
        state = self.state
        return state.eta.estimate(service, ahead, state.horizon if now is None else now, self._idle(service))

    def _idle(self, service: str) -> int:
        """Open windows serving *service* with nobody called or served (counted once per
        service per event folded: a phone round or a summary round asks many times)."""
        state = self.state
        if self._idle_seq != state.seq:
            self._idle_seq, self._idle_counts = state.seq, {}
        count = self._idle_counts.get(service)
        if count is None:
            count = self._idle_counts[service] = idle_windows(state, service)
        return count

    def _estimate(self, ticket: Ticket, ahead: int, now: float | None) -> float | None:
        state = self.state
        now = state.horizon if now is None else now
        held = state.book.held.get(ticket.id)
        if held is not None:  # an early check-in: called once its slot began and those ahead are
            wait = state.eta.estimate(ticket.service, ahead, now, self._idle(ticket.service))
            return None if wait is None else max(wait, held[0] - now)
        target = state.book.where[ticket.id][1]
        if isinstance(target, int):  # in one window's own queue
            return state.eta.estimate_window(ticket.service, ahead)
        return state.eta.estimate(ticket.service, ahead, now, self._idle(ticket.service))

    def statistics(self) -> EngineStatistics:
        state = self.state
        statuses = [w.status for w in state.windows.values()]
        codes = [s.code for s in self.hall.services]
        return EngineStatistics(
            waiting=len(state.book.where),
            held=len(state.book.held),
            windows_open=statuses.count(OPEN),
            windows_busy=sum(1 for w in state.windows.values() if w.current is not None),
            windows_paused=statuses.count(PAUSED),
            tickets=len(state.tickets),
            totals=dict(state.totals),
            waiting_by_service={code: state.book.waiting(code) for code in codes},
        )
