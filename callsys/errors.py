"""Every error callsys raises on purpose, one base class per layer.

Each error carries a stable machine-readable ``code`` (sent to clients in error frames)
and says in its docstring who is at fault.
"""

from __future__ import annotations

from typing import Any, ClassVar


class CallsysError(Exception):
    """Base of all callsys errors."""

    code: ClassVar[str] = "error"


class ConfigError(CallsysError):
    """A hall file is wrong. The fault is the file's author; the message names file and key."""

    code = "config_error"

    def __init__(self, file: str, key: str, problem: str) -> None:
        self.file, self.key, self.problem = file, key, problem
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {problem}")


class EngineError(CallsysError):
    """A command the engine rejects. The fault is the caller's; the state is unchanged.

    ``details`` holds the values that explain the rejection (window id, ticket, status...),
    so a client can act on them without parsing the message.
    """

    code = "rejected"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **({"details": self.details} if self.details else {})}


class UnknownWindow(EngineError):
    """The command names a window the hall does not have."""

    code = "unknown_window"


class UnknownService(EngineError):
    """The command names a service the hall does not offer."""

    code = "unknown_service"


class UnknownTicket(EngineError):
    """No ticket (or booking) with that id or number exists today."""

    code = "unknown_ticket"


class InvalidState(EngineError):
    """The ticket or window is not in a state that allows the command."""

    code = "invalid_state"


class WindowClosed(EngineError):
    """The window is closed or paused; open or resume it first."""

    code = "window_closed"


class WindowBusy(EngineError):
    """The window already has a citizen called or in service (e.g. a double "next")."""

    code = "window_busy"


class WindowIdle(EngineError):
    """The command acts on the window's current citizen, but it has none."""

    code = "window_idle"


class QueueEmpty(EngineError):
    """Nobody is waiting for any service this window serves."""

    code = "queue_empty"


class HallClosed(EngineError):
    """The hall is not issuing numbers at this time (outside opening hours or past cut-off)."""

    code = "hall_closed"


class DailyCapReached(EngineError):
    """Today's numbers for the service are all given out (the hall's ``[issuing]`` ``daily_cap``, 限号).

    ``details``: ``service``, ``cap`` (numbers a day, walk-ins plus today's appointments).
    """

    code = "daily_cap_reached"


class PastClosing(EngineError):
    """The hall's capacity-aware cutoff refuses the number: the predicted wait runs past closing.

    ``details``: ``service``, ``predicted_wait_s`` (the estimate a new ticket would be told),
    ``closing`` (POSIX time the day's last session ends), ``margin_s``.
    """

    code = "past_closing"


class InvalidSlot(EngineError):
    """The appointment slot is not on the hall's slot grid, is in the past, or the service is not bookable."""

    code = "invalid_slot"


class SlotFull(EngineError):
    """The appointment slot has no capacity left for that service."""

    code = "slot_full"


class CheckInRejected(EngineError):
    """Check-in is too early or too late for the booked slot under the hall's rules."""

    code = "checkin_rejected"


class RecallLimit(EngineError):
    """Recall asked past the hall's recall limit, or no-show asked before reaching it."""

    code = "recall_limit"


class InvalidArgument(EngineError):
    """A command field has a value outside its domain (bad rating, empty skill list...)."""

    code = "invalid_argument"


class KeyReused(EngineError):
    """The idempotency key was used today for a different command (or other fields)."""

    code = "key_reused"


class InvalidResidentId(EngineError):
    """The resident id is not a valid 18-character GB 11643 citizen id (length, digits, birth date or check digit)."""

    code = "invalid_resident_id"


class QrRefused(EngineError):
    """A scanned QR payload is refused; ``details["reason"]`` says why.

    Reasons: ``malformed`` (not a callsys payload), ``forged`` (the signature does not match:
    altered or made without the hall's key), ``wrong_hall``, ``wrong_kind`` (e.g. a ticket code
    shown at the check-in scanner), ``expired``, ``already_used`` (an appointment already checked in
    or cancelled; decided by the server, not the signature).
    """

    code = "qr_refused"


class AlreadyHolding(EngineError):
    """The person already has an active ticket or booking for that service (one per person per service)."""

    code = "already_holding"


class BookingBlocked(EngineError):
    """The person missed too many appointments recently and may not book until ``details["until"]``."""

    code = "booking_blocked"
