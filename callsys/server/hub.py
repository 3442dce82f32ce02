"""The fan-out hub: durable events in, pushes out to the subscribers that asked for them.

Each push is encoded at most once per format (msgpack, JSON) and the same frame object is
queued to every subscriber of that format. Queuing never blocks: a subscriber whose send
queue is full is closed as a slow consumer (close code 4008), so one slow display never
holds up the engine or the other displays.

Subscriptions are indexed by window: a display that follows a zone or a floor is entered
under each window of it, so routing an event costs one dict lookup.
"""

from __future__ import annotations

from typing import Any, Iterable, Protocol

from .. import events as ev
from ..engine import QueueEngine
from ..errors import UnknownTicket
from ..hall import Hall
from .projections import TICKET_STATUS, Board, Message, ticket_window

_ANNOUNCED = (ev.TicketCalled.kind, ev.TicketRecalled.kind)


class Subscriber(Protocol):
    binary: bool

    def push(self, frame: Any) -> None:
        """Queue *frame* without blocking."""

    def encode(self, message: Message) -> Any:
        """*message* as a frame of this subscriber's format."""


class Hub:
    """Routes the pushes of durable events to displays, speakers, managers, clerks and phones.

    Args:
        hall: the hall.
        engine: the live engine (read for phone positions only).
    """

    def __init__(self, hall: Hall, engine: QueueEngine) -> None:
        self.hall = hall
        self.engine = engine
        self.board = Board(hall, engine)
        self.displays: dict[int, set[Subscriber]] = {wid: set() for wid in hall.windows_by_id}
        self.speakers: dict[int, set[Subscriber]] = {wid: set() for wid in hall.windows_by_id}
        self.phones: dict[int, set[Subscriber]] = {}
        self._phone_last: dict[int, tuple[Any, ...]] = {}
        self.pushes = 0  # frames queued to subscribers so far

    # ------------------------------------------------------------------ subscriptions

    def watch(self, sub: Subscriber, windows: Iterable[int], *, speaker: bool = False) -> None:
        index = self.speakers if speaker else self.displays
        for wid in windows:
            index[wid].add(sub)

    def unwatch(self, sub: Subscriber, windows: Iterable[int], *, speaker: bool = False) -> None:
        index = self.speakers if speaker else self.displays
        for wid in windows:
            index[wid].discard(sub)

    def watch_ticket(self, sub: Subscriber, ticket: int) -> None:
        self.phones.setdefault(ticket, set()).add(sub)

    def unwatch_ticket(self, sub: Subscriber, ticket: int) -> None:
        subs = self.phones.get(ticket)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self.phones[ticket]
                self._phone_last.pop(ticket, None)

    def board_of(self, windows: Iterable[int]) -> list[Message]:
        """The current view of *windows* (the ``board`` a display gets when it subscribes)."""
        return [self.board.windows[w].to_message() for w in sorted(windows)]

    # ------------------------------------------------------------------ fan-out

    def on_durable(self, batch: list[tuple[int, ev.Event]]) -> None:
        """The journal's hook: fold and push each durable event, in log order."""
        board = self.board
        for seq, event in batch:
            for wid in board.apply(event):
                subs = self.displays[wid]
                if subs:
                    self.publish(subs, board.update(wid, event, seq))
            if event.kind in _ANNOUNCED:
                subs = self.speakers[event.window]
                message = board.announce(event, seq) if subs else None
                if message is not None:  # None: a silent zone
                    self.publish(subs, message)
            if self.phones:
                self._ticket_event(seq, event)

    def publish(self, subs: Iterable[Subscriber], message: Message) -> None:
        """Queue *message* to *subs*, encoding it once per format."""
        frames: list[Any] = [None, None]
        count = 0
        for sub in subs:
            fmt = sub.binary
            frame = frames[fmt]
            if frame is None:
                frame = frames[fmt] = sub.encode(message)
            sub.push(frame)
            count += 1
        self.pushes += count

    # ------------------------------------------------------------------ phones

    def _ticket_event(self, seq: int, event: ev.Event) -> None:
        if isinstance(event, ev.DayReset):
            for tid in event.expired:
                if tid in self.phones:
                    self.push_ticket(tid, "expired", None, "day_reset", event.at, seq)
            return
        tid = getattr(event, "ticket", None)
        status = TICKET_STATUS.get(event.kind)
        if status is not None and tid in self.phones:
            self.push_ticket(tid, status, ticket_window(event), event.kind, event.at, seq)

    def ticket_message(self, tid: int, status: str, window: int | None, event: str, at: float,
                       seq: int | None) -> Message:
        """The ``ticket_update`` push for a phone following ticket *tid*."""
        ahead = wait = number = None
        ticket = self.engine.state.tickets.get(tid)
        if ticket is not None:
            number = ticket.number
            if status == "waiting":
                position = self.engine.position(tid)
                ahead, wait = position.ahead, position.estimated_wait_s
        view = self.board.windows.get(window) if window is not None else None
        return {"type": "ticket_update", "ticket": tid, "number": number, "status": status, "window": window,
                "display": view.display if view else None, "ahead": ahead, "estimated_wait_s": wait,
                "event": event, "at": at, "seq": seq}

    def push_ticket(self, tid: int, status: str, window: int | None, event: str, at: float,
                    seq: int | None) -> None:
        message = self.ticket_message(tid, status, window, event, at, seq)
        self._phone_last[tid] = (status, message["ahead"], message["estimated_wait_s"])
        self.publish(self.phones[tid], message)

    def refresh_phones(self, now: float) -> None:
        """Push a new position to phones whose waiting ticket moved up since their last push."""
        state = self.engine.state
        for tid in list(self.phones):
            last = self._phone_last.get(tid)
            ticket = state.tickets.get(tid)
            if last is None or last[0] != "waiting" or ticket is None or ticket.status != "waiting":
                continue
            try:
                position = self.engine.position(tid)
            except UnknownTicket:
                continue
            if (position.ahead, position.estimated_wait_s) != last[1:]:
                self.push_ticket(tid, "waiting", None, "position", now, None)
