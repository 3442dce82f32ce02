"""Commands: what a kiosk, phone, booking platform, clerk or manager asks the engine to do.

A command is a frozen record. Time arrives inside it (``at``, POSIX seconds); the engine
never reads a clock. A ticket is referred to by its id (``int``) or by today's display
number (``str``, e.g. ``"A023"``).

Any command may carry an idempotency ``key`` (keyword-only, at most :data:`MAX_KEY`
characters), chosen by the client: the engine executes a key once per day and answers
every repeat with the original events (see :mod:`callsys.keys`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Final

TicketRef = int | str
MAX_KEY: Final = 64  # characters of an idempotency key
MAX_CLERK: Final = 32  # characters of a clerk's staff id (工号)


@dataclass(frozen=True, slots=True)
class Command:
    kind: ClassVar[str] = "command"
    at: float
    key: str | None = field(default=None, kw_only=True)


# ------------------------------------------------------------------ citizen side


@dataclass(frozen=True, slots=True)
class TakeNumber(Command):
    """Take a number on site: at a kiosk (``channel="kiosk"``) or by scanning the QR code (``"qr"``).

    Identity (optional, decided by the server from a resident id, see :mod:`callsys.identity`):
    ``person`` is the keyed hash that stands for the citizen (one active ticket per person and
    service), ``birth_year`` the year of birth. ``green_reason`` says why ``green`` is set:
    ``"senior"`` (60 or over) or ``"requested"`` (the default for a green ticket).
    """

    kind = "take_number"
    service: str
    channel: str = "kiosk"
    green: bool = False
    person: str | None = None
    birth_year: int | None = None
    green_reason: str | None = None


@dataclass(frozen=True, slots=True)
class BookSlot(Command):
    """Book an appointment for *service* in the slot that starts at *slot_start*.

    ``person``, ``birth_year`` and ``green_reason`` as for :class:`TakeNumber`; a person who
    missed too many appointments recently may not book (see :mod:`callsys.policy`).
    """

    kind = "book_slot"
    service: str
    slot_start: float
    green: bool = False
    person: str | None = None
    birth_year: int | None = None
    green_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Reschedule(Command):
    """Move a booked (not yet checked-in) appointment to the slot that starts at *slot_start*.

    The ticket keeps its id; the old slot's place is freed and the new one taken at once.
    """

    kind = "reschedule"
    ticket: TicketRef
    slot_start: float


@dataclass(frozen=True, slots=True)
class CheckIn(Command):
    """An appointment holder arrives: the booking becomes a numbered ticket in the queue."""

    kind = "check_in"
    ticket: TicketRef


@dataclass(frozen=True, slots=True)
class Cancel(Command):
    """Withdraw a booking, a waiting ticket or a parked one (the citizen leaves)."""

    kind = "cancel"
    ticket: TicketRef


@dataclass(frozen=True, slots=True)
class Requeue(Command):
    """A citizen marked no-show turns up late and is queued again (rank per hall rule)."""

    kind = "requeue"
    ticket: TicketRef


@dataclass(frozen=True, slots=True)
class ReturnTicket(Command):
    """A parked citizen is back: queued at the window that parked them, original rank kept.

    If that window has closed since, the citizen waits for their service at any window.
    """

    kind = "return_ticket"
    ticket: TicketRef


# ------------------------------------------------------------------ clerk side


@dataclass(frozen=True, slots=True)
class WindowCommand(Command):
    window: int


@dataclass(frozen=True, slots=True)
class CallNext(WindowCommand):
    """Call the best-ranked eligible citizen for this window."""

    kind = "call_next"


@dataclass(frozen=True, slots=True)
class CallNumber(WindowCommand):
    """Call a specific waiting ticket to this window."""

    kind = "call_number"
    ticket: TicketRef


@dataclass(frozen=True, slots=True)
class Recall(WindowCommand):
    """Announce the current called number again."""

    kind = "recall"


@dataclass(frozen=True, slots=True)
class NoShow(WindowCommand):
    """The called citizen did not come after the hall's recall limit."""

    kind = "no_show"


@dataclass(frozen=True, slots=True)
class StartService(WindowCommand):
    """The called citizen has arrived at the window; service begins."""

    kind = "start"


@dataclass(frozen=True, slots=True)
class FinishService(WindowCommand):
    """Service is done; the citizen's rating from the tablet evaluator may come with it.

    ``rating`` is ``"good"``, ``"bad"`` or ``None``; ``score`` 1..5 or ``None``.
    """

    kind = "finish"
    rating: str | None = None
    score: int | None = None


@dataclass(frozen=True, slots=True)
class Transfer(WindowCommand):
    """Send the current citizen to another service or another window, keeping the rank."""

    kind = "transfer"
    service: str | None = None
    to_window: int | None = None


@dataclass(frozen=True, slots=True)
class Park(WindowCommand):
    """Set the current citizen aside (e.g. to fetch a document); the window is free again."""

    kind = "park"


@dataclass(frozen=True, slots=True)
class FlagGreen(WindowCommand):
    """The clerk gives a waiting citizen the green-channel credit (elderly, disabled, pregnant...)."""

    kind = "flag_green"
    ticket: TicketRef


@dataclass(frozen=True, slots=True)
class Pause(WindowCommand):
    """The clerk takes a break; the window calls nobody until resumed."""

    kind = "pause"


@dataclass(frozen=True, slots=True)
class Resume(WindowCommand):
    kind = "resume"


@dataclass(frozen=True, slots=True)
class OpenWindow(WindowCommand):
    """Open the window; ``clerk`` is the staff id (工号) of the clerk who signs in at it.

    The id (1 to :data:`MAX_CLERK` printable characters, no surrounding blanks) stays on the
    window until it closes, and every service ended there names it (see
    :class:`~callsys.events.ServiceFinished`). ``None``: an anonymous clerk.
    """

    kind = "open_window"
    clerk: str | None = None


@dataclass(frozen=True, slots=True)
class CloseWindow(WindowCommand):
    kind = "close_window"


# ------------------------------------------------------------------ manager side


@dataclass(frozen=True, slots=True)
class ReassignSkills(WindowCommand):
    """Change the services a window serves, live (``("*",)`` = every service)."""

    kind = "reassign"
    skills: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ResetDay(Command):
    """Close the day: open tickets expire, windows close, numbers start again from 1."""

    kind = "reset_day"


COMMANDS: dict[str, type[Command]] = {
    cls.kind: cls
    for cls in (
        TakeNumber, BookSlot, Reschedule, CheckIn, Cancel, Requeue, ReturnTicket,
        CallNext, CallNumber, Recall, NoShow, StartService, FinishService,
        Transfer, Park, FlagGreen, Pause, Resume, OpenWindow, CloseWindow,
        ReassignSkills, ResetDay,
    )
}
