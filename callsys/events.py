"""Events: the facts the engine decided. The event log stores them; state is their fold.

Each event is a frozen record whose fields are plain data (str, int, float, bool, None,
tuples of those), so :func:`to_record` / :func:`from_record` turn it into a dict for
msgpack or JSON and back without loss. Events carry everything ``apply`` needs: applying
never decides anything.

Fields added later come last with a default (e.g. the ``clerk`` of
:class:`WindowOpened` and of the events that end a service), so rows and records written
before them still load.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Any, ClassVar


@dataclass(frozen=True, slots=True)
class Event:
    kind: ClassVar[str] = "event"
    at: float


@dataclass(frozen=True, slots=True)
class TicketIssued(Event):
    """A numbered ticket joined the queue (kiosk or QR), with a closing warning when the hall's
    capacity-aware cutoff warns (see :class:`callsys.hall.Issuing`)."""

    kind = "ticket_issued"
    ticket: int
    number: str
    service: str
    channel: str
    green: bool
    klass: str
    rank: float
    day: int
    seq: int
    person: str | None = None  # keyed hash of the resident id (never shown, see callsys.identity)
    birth_year: int | None = None
    green_reason: str | None = None  # "senior" | "requested" when green
    # the hall's cutoff is "warn" and the call is predicted past closing: (predicted wait s, closing POSIX)
    closing_warning: tuple[float, float] | None = None


@dataclass(frozen=True, slots=True)
class SlotBooked(Event):
    """An appointment was booked; it holds slot capacity but is not queued until check-in."""

    kind = "slot_booked"
    ticket: int
    service: str
    slot_start: float
    slot_end: float
    green: bool
    person: str | None = None
    birth_year: int | None = None
    green_reason: str | None = None


@dataclass(frozen=True, slots=True)
class SlotRescheduled(Event):
    """A booked appointment moved to another slot (same ticket, same service)."""

    kind = "slot_rescheduled"
    ticket: int
    slot_start: float
    slot_end: float


@dataclass(frozen=True, slots=True)
class GreenFlagged(Event):
    """The clerk at ``by_window`` gave waiting ``ticket`` the green credit: its new class and rank."""

    kind = "green_flagged"
    ticket: int
    by_window: int
    klass: str
    rank: float


@dataclass(frozen=True, slots=True)
class CheckedIn(Event):
    """An appointment holder arrived and got a number; eligible from ``not_before``."""

    kind = "checked_in"
    ticket: int
    number: str
    klass: str
    rank: float
    not_before: float
    day: int
    seq: int
    late: bool


@dataclass(frozen=True, slots=True)
class TicketCancelled(Event):
    kind = "ticket_cancelled"
    ticket: int


@dataclass(frozen=True, slots=True)
class TicketCalled(Event):
    """A ticket was called to a window (by "next", or by number when ``by_number``)."""

    kind = "ticket_called"
    ticket: int
    window: int
    number: str
    service: str
    by_number: bool


@dataclass(frozen=True, slots=True)
class TicketRecalled(Event):
    kind = "ticket_recalled"
    ticket: int
    window: int
    number: str
    recalls: int


@dataclass(frozen=True, slots=True)
class TicketNoShow(Event):
    kind = "ticket_no_show"
    ticket: int
    window: int
    clerk: str | None = None


@dataclass(frozen=True, slots=True)
class TicketRequeued(Event):
    """A no-show ticket is queued again with ``rank``."""

    kind = "ticket_requeued"
    ticket: int
    rank: float


@dataclass(frozen=True, slots=True)
class ServiceStarted(Event):
    kind = "service_started"
    ticket: int
    window: int


@dataclass(frozen=True, slots=True)
class ServiceFinished(Event):
    """Service done at ``window`` by ``clerk`` (the staff id the window was opened with, None
    when anonymous or logged before clerks were named), with the evaluator's verdict."""

    kind = "service_finished"
    ticket: int
    window: int
    rating: str | None
    score: int | None
    clerk: str | None = None


@dataclass(frozen=True, slots=True)
class TicketTransferred(Event):
    """The ticket left ``from_window`` for another service or a specific window, rank kept."""

    kind = "ticket_transferred"
    ticket: int
    from_window: int
    service: str
    to_window: int | None
    clerk: str | None = None


@dataclass(frozen=True, slots=True)
class TicketParked(Event):
    kind = "ticket_parked"
    ticket: int
    window: int


@dataclass(frozen=True, slots=True)
class TicketReturned(Event):
    """A parked ticket is queued at the window that parked it."""

    kind = "ticket_returned"
    ticket: int
    window: int


@dataclass(frozen=True, slots=True)
class WindowOpened(Event):
    """The window opened, with ``clerk`` signed in at it (staff id, or None)."""

    kind = "window_opened"
    window: int
    clerk: str | None = None


@dataclass(frozen=True, slots=True)
class WindowClosed(Event):
    kind = "window_closed"
    window: int


@dataclass(frozen=True, slots=True)
class WindowPaused(Event):
    kind = "window_paused"
    window: int


@dataclass(frozen=True, slots=True)
class WindowResumed(Event):
    kind = "window_resumed"
    window: int


@dataclass(frozen=True, slots=True)
class SkillsReassigned(Event):
    kind = "skills_reassigned"
    window: int
    skills: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DayReset(Event):
    """End of day: ``expired`` tickets leave, windows close, numbering starts again."""

    kind = "day_reset"
    expired: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class CommandKeyed(Event):
    """The next ``events`` events are those of a ``command`` sent with idempotency ``key``.

    ``digest`` fingerprints the command's fields (see :mod:`callsys.keys`).
    """

    kind = "command_keyed"
    key: str
    command: str
    digest: str
    events: int


EVENTS: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (
        CommandKeyed, TicketIssued, SlotBooked, CheckedIn, TicketCancelled, TicketCalled, TicketRecalled,
        SlotRescheduled, GreenFlagged, TicketNoShow, TicketRequeued, ServiceStarted, ServiceFinished, TicketTransferred,
        TicketParked, TicketReturned, WindowOpened, WindowClosed, WindowPaused,
        WindowResumed, SkillsReassigned, DayReset,
    )
}
_FIELDS = {kind: tuple(f.name for f in fields(cls)) for kind, cls in EVENTS.items()}
_VALUES = {kind: attrgetter(*names) for kind, names in _FIELDS.items()}  # every event has >= 2 fields: a tuple


def to_record(event: Event) -> dict[str, Any]:
    """``event`` as a plain dict with its ``kind`` (for msgpack/JSON)."""
    record = {"kind": event.kind}
    for name in _FIELDS[event.kind]:
        record[name] = getattr(event, name)
    return record


def to_row(event: Event) -> list[Any]:
    """``event`` as a compact list ``[kind, field, ...]`` (what the event log stores)."""
    return [event.kind, *_VALUES[event.kind](event)]


def from_row(row: list[Any]) -> Event:
    """The inverse of :func:`to_row`."""
    cls = EVENTS[row[0]]
    return cls(*[tuple(v) if isinstance(v, list) else v for v in row[1:]])


def from_record(record: dict[str, Any]) -> Event:
    """The inverse of :func:`to_record` (lists become tuples again)."""
    cls = EVENTS[record["kind"]]
    values = {name: record[name] for name in _FIELDS[cls.kind] if name in record}  # older records lack new fields
    for name, value in values.items():
        if isinstance(value, list):
            values[name] = tuple(value)
    return cls(**values)
