"""Read models folded from *durable* events only, and the push messages built from them.

The engine's state runs ahead of the log by the events still being committed, so what
displays, speakers and phones see is folded here from the events the journal hands over
once they are durable: a display never shows a call that a crash could undo.

* :class:`Board` — every window's status and current citizen (``window_update`` pushes,
  the ``board`` snapshot a display gets when it subscribes);
* speaker ``announce`` texts for calls and recalls;
* the status of each ticket for phones (``ticket_update``);
* service summaries (waiting count, open windows, estimated wait of a new ticket) for the
  ``services`` query, the ``board`` and the coalesced ``queue_update`` push. These are
  read from the live engine when they are sent (see :mod:`~callsys.server.hub`), like
  every query: they are counts, not calls, and are at most a few milliseconds ahead of
  the log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from voice.templates import Announcements

from .. import events as ev
from ..engine import QueueEngine
from ..hall import Hall
from ..state import CALLED, SERVING

Message = dict[str, Any]


@dataclass(slots=True)
class WindowView:
    """What a display shows for one window."""

    id: int
    display: str
    zone: str
    floor: int
    status: str = "closed"
    ticket: int | None = None
    number: str | None = None
    service: str | None = None
    stage: str | None = None  # "called" | "serving" | None
    recalls: int = 0

    def clear(self) -> None:
        self.ticket = self.number = self.service = self.stage = None
        self.recalls = 0

    def to_message(self) -> Message:
        return {
            "window": self.id, "display": self.display, "zone": self.zone, "floor": self.floor,
            "status": self.status, "ticket": self.ticket, "number": self.number, "service": self.service,
            "stage": self.stage, "recalls": self.recalls,
        }


# event kind -> what it did to the window, as the ``event`` field of window_update
_WINDOW_EVENTS = {
    ev.TicketCalled.kind: "called", ev.TicketRecalled.kind: "recalled", ev.ServiceStarted.kind: "started",
    ev.ServiceFinished.kind: "finished", ev.TicketNoShow.kind: "no_show", ev.TicketTransferred.kind: "transferred",
    ev.TicketParked.kind: "parked", ev.WindowOpened.kind: "opened", ev.WindowClosed.kind: "closed",
    ev.WindowPaused.kind: "paused", ev.WindowResumed.kind: "resumed", ev.SkillsReassigned.kind: "reassigned",
}
# event kind -> the ticket status it leaves behind (for phones)
TICKET_STATUS = {
    ev.TicketIssued.kind: "waiting", ev.SlotBooked.kind: "booked", ev.CheckedIn.kind: "waiting",
    ev.TicketCancelled.kind: "cancelled", ev.TicketCalled.kind: "called", ev.TicketRecalled.kind: "called",
    ev.TicketNoShow.kind: "no_show", ev.TicketRequeued.kind: "waiting", ev.ServiceStarted.kind: "serving",
    ev.ServiceFinished.kind: "done", ev.TicketTransferred.kind: "waiting", ev.TicketParked.kind: "parked",
    ev.TicketReturned.kind: "waiting", ev.SlotRescheduled.kind: "booked", ev.GreenFlagged.kind: "waiting",
}


class Board:
    """Every window's :class:`WindowView`, kept in step with the durable events."""

    def __init__(self, hall: Hall, engine: QueueEngine) -> None:
        self.hall = hall
        self.voice = Announcements(hall.voice)
        self.prepare: Callable[[Message], None] | None = None  # starts an announce's audio (the server's Announcer)
        self.windows = {w.id: WindowView(w.id, w.display, w.zone, w.floor) for w in hall.windows}
        state = engine.state
        for wid, window in state.windows.items():
            view = self.windows[wid]
            view.status = window.status
            if window.current is not None:
                ticket = state.tickets[window.current]
                view.ticket, view.number, view.service = ticket.id, ticket.number, ticket.service
                view.stage = {CALLED: "called", SERVING: "serving"}.get(ticket.status)
                view.recalls = ticket.recalls

    def apply(self, event: ev.Event) -> list[int]:
        """Fold *event*; return the ids of the windows it changed."""
        handler = _BOARD.get(event.kind)
        return handler(self, event) if handler is not None else []

    def update(self, window: int, event: ev.Event, seq: int) -> Message:
        """The ``window_update`` push for *window* after *event*."""
        return {"type": "window_update", **self.windows[window].to_message(),
                "event": _WINDOW_EVENTS.get(event.kind, "reset"), "at": event.at, "seq": seq}

    def announce(self, event: ev.TicketCalled | ev.TicketRecalled, seq: int) -> Message | None:
        """The speaker's ``announce`` push for a call or recall; None in a silent zone.

        Its texts, spoken texts and audio URLs follow the hall's ``[voice]`` table
        (:mod:`voice.templates`); :attr:`prepare`, when set, is handed each push so the
        audio starts rendering now.
        """
        view = self.windows[event.window]
        if self.voice.silent(view.zone):
            return None
        message = {
            "type": "announce", "window": view.id, "display": view.display, "zone": view.zone,
            "number": event.number, "recall": getattr(event, "recalls", 0), "at": event.at, "seq": seq,
            **self.voice.fields(event.number, view.display),
        }
        if self.prepare is not None:
            self.prepare(message)
        return message


def _called(board: Board, e: ev.TicketCalled) -> list[int]:
    view = board.windows[e.window]
    view.ticket, view.number, view.service, view.stage, view.recalls = e.ticket, e.number, e.service, "called", 0
    return [e.window]


def _recalled(board: Board, e: ev.TicketRecalled) -> list[int]:
    board.windows[e.window].recalls = e.recalls
    return [e.window]


def _started(board: Board, e: ev.ServiceStarted) -> list[int]:
    board.windows[e.window].stage = "serving"
    return [e.window]


def _released(attr: str) -> Callable[[Board, Any], list[int]]:
    def handler(board: Board, e: Any) -> list[int]:
        window = getattr(e, attr)
        board.windows[window].clear()
        return [window]
    return handler


def _status(status: str) -> Callable[[Board, Any], list[int]]:
    def handler(board: Board, e: Any) -> list[int]:
        board.windows[e.window].status = status
        return [e.window]
    return handler


def _reassigned(board: Board, e: ev.SkillsReassigned) -> list[int]:
    return [e.window]


def _day_reset(board: Board, e: ev.DayReset) -> list[int]:
    changed = []
    for view in board.windows.values():
        if view.status != "closed" or view.ticket is not None:
            view.status = "closed"
            view.clear()
            changed.append(view.id)
    return changed


_BOARD: dict[str, Callable[[Board, Any], list[int]]] = {
    ev.TicketCalled.kind: _called,
    ev.TicketRecalled.kind: _recalled,
    ev.ServiceStarted.kind: _started,
    ev.ServiceFinished.kind: _released("window"),
    ev.TicketNoShow.kind: _released("window"),
    ev.TicketParked.kind: _released("window"),
    ev.TicketTransferred.kind: _released("from_window"),
    ev.WindowOpened.kind: _status("open"),
    ev.WindowClosed.kind: _status("closed"),
    ev.WindowPaused.kind: _status("paused"),
    ev.WindowResumed.kind: _status("open"),
    ev.SkillsReassigned.kind: _reassigned,
    ev.DayReset.kind: _day_reset,
}


def service_summaries(engine: QueueEngine) -> dict[str, Message]:
    """Every service's summary by code, in the hall's order: its queue length, the windows
    open for it and the estimated wait of a new ticket (:meth:`QueueEngine.estimate_new`,
    the hall's one estimator; None when no open window serves it)."""
    state = engine.state
    book, servers = state.book, state.servers
    out = {}
    for s in engine.hall.services:
        waiting = book.waiting(s.code)
        out[s.code] = {"code": s.code, "prefix": s.prefix, "name": {"zh": s.name.zh, "en": s.name.en},
                       "group": s.group, "waiting": waiting, "windows_open": servers[s.code],
                       "estimated_wait_s": engine.estimate_at(s.code, waiting)}
    return out


def ticket_window(event: ev.Event) -> int | None:
    """The window a ticket event sends the citizen to (for phones), if any."""
    if isinstance(event, ev.TicketTransferred):
        return event.to_window
    return getattr(event, "window", None)
