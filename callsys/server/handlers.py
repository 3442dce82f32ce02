"""What the server does with each validated message: one ``_handle_<type>`` per message type.

A handler returns a :data:`Reply`: ``(pending, message)``. For an engine command
*pending* is the journal's :class:`~callsys.log.Pending` and *message* the ``ok`` reply,
sent only once the events are durable (its ``seq`` filled in then); for a query
*pending* is None and the reply goes out in order with the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from .. import commands as cmd
from ..events import Event, TicketIssued, to_record
from ..identity import SENIOR_AGE, age_on, derive_key, parse_resident_id, person_key
from ..log import Pending
from ..protocol import ok
from . import queries
from .auth import phone_secret, resolve_places

if TYPE_CHECKING:
    from .serve import CallsysServer
    from .session import Session

Reply = tuple[Pending | None, dict[str, Any]]
Handler = Callable[["Session", str, Any, dict[str, Any]], Reply]


def _command(session: "Session", kind: str, fields: dict[str, Any]) -> cmd.Command:
    """The engine command for message *kind*, stamped with the server clock."""
    cls = cmd.COMMANDS[kind]
    if issubclass(cls, cmd.WindowCommand) and "window" not in fields:
        fields["window"] = session.identity.window  # a clerk acts on the window it signed in to
    if "skills" in fields:
        fields["skills"] = tuple(fields["skills"])
    return cls(at=session.server.clock.now(), **fields)


def identify(server: "CallsysServer", fields: dict[str, Any]) -> None:
    """Turn a ``resident_id`` field into the command's identity fields, in place (the
    WebSocket's ``take_number``/``book_slot`` and the HTTP API's bookings and tickets).

    The id is validated (GB 11643) and replaced by its keyed hash (``person``) and birth
    year; a resident aged :data:`~callsys.identity.SENIOR_AGE` or over on the hall's local
    date gets the green channel with reason ``"senior"``. The id itself goes no further.

    Raises:
        InvalidResidentId: the id is not valid.
    """
    text = fields.pop("resident_id", None)
    if text is None:
        return
    resident = parse_resident_id(text)
    fields["person"] = person_key(derive_key(server.secret, "person"), server.hall.id, resident)
    fields["birth_year"] = resident.birth_year
    today = server.hall.local_time(server.clock.now()).date()
    if age_on(resident.birth_date, today) >= SENIOR_AGE:
        fields["green"], fields["green_reason"] = True, "senior"


def _handle_command(session: "Session", kind: str, rid: Any, fields: dict[str, Any]) -> Reply:
    events, pending = session.server.execute(_command(session, kind, fields))
    return pending, ok(rid, _repeat({"events": [to_record(e) for e in events]}, pending))


def _repeat(result: dict[str, Any], pending: Pending) -> dict[str, Any]:
    """Mark the answer to a repeated idempotency key (the original result, executed once)."""
    if pending.repeat:
        result["repeat"] = True
    return result


def closing_warning(events: list[Event]) -> dict[str, float] | None:
    """The capacity-aware cutoff's warning on a take-number's ticket, or None: the wait it
    predicted (s) and the closing time (POSIX s) its call falls after (hall ``[issuing]``)."""
    warning = next((e.closing_warning for e in events if isinstance(e, TicketIssued)), None)
    return None if warning is None else {"predicted_wait_s": warning[0], "closing": warning[1]}


def _ticket_result(session: "Session", events: list[Event], pending: Pending, rid: Any) -> Reply:
    """The reply to a command that issues or books a ticket: the ticket, its place and its phone secret."""
    server = session.server
    tid = events[0].ticket
    ticket = server.engine.state.tickets[tid]
    position = server.engine.position(tid)
    return pending, ok(rid, _repeat({
        "ticket": tid, "number": ticket.number, "service": ticket.service, "channel": ticket.channel,
        "status": ticket.status, "rank": ticket.rank, "klass": ticket.klass, "green": ticket.green,
        "green_reason": ticket.green_reason,
        "issued_at": ticket.issued_at, "slot_start": ticket.slot_start, "slot_end": ticket.slot_end,
        "ahead": position.ahead, "estimated_wait_s": position.estimated_wait_s,
        "closing_warning": closing_warning(events),
        "secret": phone_secret(server.secret, server.hall.id, tid),
        "qr": queries.ticket_qr(server.hall, server.secret, ticket),
    }, pending))


def _handle_ticketing(session: "Session", kind: str, rid: Any, fields: dict[str, Any]) -> Reply:
    identify(session.server, fields)
    events, pending = session.server.execute(_command(session, kind, fields))
    return _ticket_result(session, events, pending, rid)


def _handle_ping(session: "Session", kind: str, rid: Any, fields: dict[str, Any]) -> Reply:
    return None, ok(rid, {"server_time": session.server.clock.now()})


def _handle_position(session: "Session", kind: str, rid: Any, fields: dict[str, Any]) -> Reply:
    ref = fields.get("ticket", session.identity.ticket)  # a phone asks about its own ticket only
    return None, ok(rid, queries.position(session.server.engine, ref))


def _handle_services(session: "Session", kind: str, rid: Any, fields: dict[str, Any]) -> Reply:
    return None, ok(rid, {"services": queries.services(session.server.engine)})


def _handle_window(session: "Session", kind: str, rid: Any, fields: dict[str, Any]) -> Reply:
    server = session.server
    wid = fields.get("window", session.identity.window)
    return None, ok(rid, queries.window(server.engine, server.hub, wid))


def _handle_ticket(session: "Session", kind: str, rid: Any, fields: dict[str, Any]) -> Reply:
    return None, ok(rid, queries.ticket(session.server.engine, fields["ticket"]))


def _handle_stats(session: "Session", kind: str, rid: Any, fields: dict[str, Any]) -> Reply:
    server = session.server
    return None, ok(rid, queries.stats(server.engine, server.connections(), server.hub, server.journal,
                                    server.loop_watch))


def _handle_ratings(session: "Session", kind: str, rid: Any, fields: dict[str, Any]) -> Reply:
    return None, ok(rid, session.server.ratings.to_dict())


def _handle_subscribe(session: "Session", kind: str, rid: Any, fields: dict[str, Any]) -> Reply:
    windows = resolve_places(session.server.hall, fields, rid)
    session.subscribe(windows)
    hub = session.server.hub
    result = {"windows": hub.board_of(windows)}
    if session.role != "speaker":  # speakers only announce
        result["services"] = hub.services_of(session)
    return None, ok(rid, result)


def _handle_cockpit(session: "Session", kind: str, rid: Any, fields: dict[str, Any]) -> Reply:
    server = session.server
    hub = server.hub
    hub.follow_cockpit(session, fields.get("follow", True))
    return None, ok(rid, {"layout": hub.layout.to_message(server.hall),
                          **hub.cockpit_message(server.clock.now())})


HANDLERS: dict[str, Handler] = {
    **{kind: _handle_command for kind in cmd.COMMANDS},
    cmd.TakeNumber.kind: _handle_ticketing,
    cmd.BookSlot.kind: _handle_ticketing,
    cmd.CheckIn.kind: _handle_ticketing,
    cmd.Reschedule.kind: _handle_ticketing,
    "ping": _handle_ping,
    "position": _handle_position,
    "services": _handle_services,
    "window": _handle_window,
    "ticket": _handle_ticket,
    "stats": _handle_stats,
    "ratings": _handle_ratings,
    "subscribe": _handle_subscribe,
    "cockpit": _handle_cockpit,
}
