"""A small driver for engine tests: commands get increasing times, rejections are checked.

``Desk(hall, start)`` wraps a :class:`QueueEngine`; every command it sends is stamped one
second (``step``) after the previous one, so tests read as a script of what happens in the
hall. :meth:`Desk.rejects` asserts the exact error type and code *and* that the rejected
command left the engine's snapshot untouched.
"""

from __future__ import annotations

from typing import Any

import pytest

from callsys import commands as cmd
from callsys.engine import QueueEngine
from callsys.errors import EngineError, QueueEmpty
from callsys.events import Event
from callsys.hall import Hall
from callsys.state import Ticket


class Desk:
    def __init__(self, hall: Hall, start: float, *, step: float = 1.0) -> None:
        self.engine = QueueEngine(hall)
        self.now = start
        self.step = step
        self.events: list[Event] = []  # every event applied, in order (for replay checks)

    def tick(self) -> float:
        self.now += self.step
        return self.now

    def wait(self, seconds: float) -> None:
        self.now += seconds

    def until(self, at: float) -> None:
        """Jump the desk's clock to *at* (the next command comes ``step`` later)."""
        assert at >= self.now, "time only moves forward"
        self.now = at

    def do(self, kind: type[cmd.Command], **fields: Any) -> list[Event]:
        events = self.engine.execute(kind(at=self.tick(), **fields))
        self.events.extend(events)
        return events

    def rejects(self, error: type[EngineError], kind: type[cmd.Command], **fields: Any) -> EngineError:
        """Send a command that must fail with exactly *error*, changing nothing."""
        before = self.engine.snapshot()
        with pytest.raises(error) as info:
            self.do(kind, **fields)
        assert type(info.value) is error
        assert info.value.code == error.code
        assert self.engine.snapshot() == before
        return info.value

    # ------------------------------------------------------------ common steps

    def ticket(self, ref: cmd.TicketRef) -> Ticket:
        return self.engine.ticket(ref)

    def one(self, kind: type[cmd.Command], **fields: Any) -> Ticket:
        """Send a command that yields one ticket event; return that ticket."""
        (event,) = self.do(kind, **fields)
        return self.ticket(event.ticket)

    def take(self, service: str, **fields: Any) -> Ticket:
        return self.one(cmd.TakeNumber, service=service, **fields)

    def book(self, service: str, slot_start: float, **fields: Any) -> Ticket:
        return self.one(cmd.BookSlot, service=service, slot_start=slot_start, **fields)

    def check_in(self, ref: cmd.TicketRef) -> Ticket:
        return self.one(cmd.CheckIn, ticket=ref)

    def open(self, *windows: int) -> None:
        for window in windows:
            self.do(cmd.OpenWindow, window=window)

    def call(self, window: int) -> Ticket:
        return self.one(cmd.CallNext, window=window)

    def serve(self, window: int) -> Ticket:
        """Call next at *window* and finish it; return the served ticket."""
        ticket = self.call(window)
        self.do(cmd.FinishService, window=window)
        return ticket

    def drain(self, window: int) -> list[str]:
        """Serve at *window* until nobody is left for it; the numbers served, in order."""
        served = []
        while True:
            try:
                served.append(self.serve(window).number)
            except QueueEmpty:
                return served
