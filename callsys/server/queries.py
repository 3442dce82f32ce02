"""Read-only answers built from the live engine: positions, services, windows, tickets, stats.

Queries read the engine's current state, which may include events still being committed
(a few milliseconds at most); a failed commit stops the server, so nothing read here can
be undone without a restart.
"""

from __future__ import annotations

import heapq
from dataclasses import asdict
from datetime import date, datetime
from typing import Any, Final

from .. import qrcodes
from ..commands import TicketRef
from ..engine import QueueEngine
from ..errors import UnknownService, UnknownWindow
from ..hall import Hall
from ..identity import derive_key
from ..log import Journal
from ..queues import CLASSES
from ..state import BOOKED, PRIVATE_FIELDS, Ticket
from .hub import Hub
from .loopwatch import LoopWatch
from .projections import service_summaries

QUEUE_PREVIEW: Final = 5  # best-ranked waiting tickets shown to a clerk


def position(engine: QueueEngine, ref: TicketRef) -> dict[str, Any]:
    """Where ticket *ref* stands (raises UnknownTicket)."""
    p = engine.position(ref)
    return {"ticket": p.ticket, "number": p.number, "status": p.status, "ahead": p.ahead,
            "estimated_wait_s": p.estimated_wait_s, "window": p.window}


def services(engine: QueueEngine) -> list[dict[str, Any]]:
    """Every service with its queue length and the estimated wait of a new ticket."""
    return list(service_summaries(engine).values())


def window(engine: QueueEngine, hub: Hub, wid: int) -> dict[str, Any]:
    """A window's live state, its current citizen and the queue for its skills (raises UnknownWindow)."""
    state = engine.state
    w = state.windows.get(wid)
    if w is None:
        raise UnknownWindow(f"window {wid} does not exist in hall {engine.hall.id!r}", window=wid)
    current = None
    if w.current is not None:
        t = state.tickets[w.current]
        current = {"ticket": t.id, "number": t.number, "service": t.service, "status": t.status,
                   "recalls": t.recalls, "called_at": t.called_at}
    view = hub.board.windows[wid]
    return {
        "window": wid, "display": view.display, "zone": view.zone, "floor": view.floor,
        "status": w.status, "clerk": w.clerk, "skills": list(w.skills), "served": w.served, "current": current,
        "waiting": {code: state.book.waiting(code) for code in w.skills},
        "own_queue": len(state.book.direct.get(wid, ())),
        "next": _preview(engine, w.skills, wid),
    }


def _preview(engine: QueueEngine, skills: tuple[str, ...], wid: int) -> list[dict[str, Any]]:
    """The best-ranked waiting tickets a window may call (by rank; the policy may reorder)."""
    book, tickets = engine.state.book, engine.state.tickets
    heads = [book.queues[(code, klass)].islice(0, QUEUE_PREVIEW) for code in skills for klass in CLASSES]
    heads.append(book.direct[wid].islice(0, QUEUE_PREVIEW) if wid in book.direct else iter(()))
    best = heapq.nsmallest(QUEUE_PREVIEW, (entry for it in heads for entry in it))
    return [{"ticket": tid, "number": tickets[tid].number, "service": tickets[tid].service,
             "klass": tickets[tid].klass} for _, tid in best]


def ticket(engine: QueueEngine, ref: TicketRef) -> dict[str, Any]:
    """Every field of ticket *ref* (raises UnknownTicket)."""
    return _ticket_record(engine.ticket(ref))


def _ticket_record(t: Ticket) -> dict[str, Any]:
    return {name: getattr(t, name) for name in Ticket.__slots__ if name not in PRIVATE_FIELDS}


def ticket_qr(hall: Hall, secret: bytes, t: Ticket) -> str:
    """The signed QR payload of ticket *t* (see :mod:`callsys.qrcodes`).

    A booking gets an appointment code (``"a"``, shown at the door to check in), any other
    ticket a ticket code (``"t"``, to follow it on a phone). It expires ``[qr]
    ticket_valid_hours`` after issue, and an appointment's not before its slot end plus the late
    grace. Computed from the ticket alone, so a repeated request gets the same text.
    """
    expires = t.issued_at + hall.qr.ticket_valid_s
    if t.slot_end is not None:
        expires = max(expires, t.slot_end + hall.appointments.late_grace_s)
    kind = qrcodes.APPOINTMENT if t.status == BOOKED else qrcodes.TICKET
    return qrcodes.sign(derive_key(secret, "qr"), kind, hall.id, t.id, expires)


def stats(engine: QueueEngine, connections: dict[str, int], hub: Hub, journal: Journal,
          loop_watch: LoopWatch | None = None) -> dict[str, Any]:
    """Engine statistics plus the server's connections, fan-out and commit counters, and
    the event loop's stall figures (None without a loop watch)."""
    return {**asdict(engine.statistics()), "connections": connections, "pushes": hub.pushes,
            "durable_seq": journal.durable_seq, "commits": journal.batches,
            "loop": loop_watch.figures() if loop_watch is not None else None}


def slots(engine: QueueEngine, service: str, day: date, now: float) -> list[dict[str, Any]]:
    """The appointment slots of *service* on the hall's local *day* that are not over at *now*,
    with their capacity and the places left (raises UnknownService; none if it takes no
    appointments)."""
    hall = engine.hall
    if service not in hall.services_by_code:
        raise UnknownService(f"service {service!r} does not exist in hall {hall.id!r}", service=service)
    rules = hall.appointments
    capacity = rules.capacity[service]
    if capacity == 0:
        return []
    bookings = engine.state.bookings
    out = []
    for first, end in hall.hours.sessions(day.weekday()):
        for minute in range(first, end - rules.slot_minutes + 1, rules.slot_minutes):
            start = datetime(day.year, day.month, day.day, minute // 60, minute % 60, tzinfo=hall.tz).timestamp()
            slot_end = start + rules.slot_minutes * 60
            if slot_end > now:
                out.append({"slot_start": start, "slot_end": slot_end, "capacity": capacity,
                            "remaining": max(0, capacity - bookings[(service, start)])})
    return out
