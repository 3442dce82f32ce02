"""Message schemas: which message types each role may send, their fields, and validation.

Every client message is a map with ``type``, an optional ``id`` (echoed in the reply) and
the fields of its type. :func:`parse` checks a decoded message against the sender's role
table and returns ``(type, id, fields)``; it raises a typed
:class:`~callsys.protocol.errors.ProtocolError` for the first problem it finds, in this
order: not a map -> bad ``id`` -> missing/bad ``type`` -> unknown type -> forbidden for
the role -> each field in message order (unknown field, wrong type) -> missing required field.

A clerk's window commands carry no ``window``: the window is the one the clerk signed in
to. A manager names the window in every window command.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Final, Mapping

from ..commands import COMMANDS, MAX_KEY
from .codes import ROLES
from .errors import (Forbidden, HelloRequired, InvalidField, Malformed, MissingField, UnexpectedHello,
                     UnknownField, UnknownType)

MAX_STR: Final = 200  # characters in any string field
MAX_ITEMS: Final = 1000  # items in any list field
MAX_ID: Final = 64  # characters of a string request id
_INT_LIMIT: Final = 2**63


def _is_int(v: Any) -> bool:
    return type(v) is int and -_INT_LIMIT <= v < _INT_LIMIT


def _is_num(v: Any) -> bool:
    return _is_int(v) or (type(v) is float and math.isfinite(v))


def _is_str(v: Any) -> bool:
    return type(v) is str and 0 < len(v) <= MAX_STR


def _list_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: type(v) is list and 0 < len(v) <= MAX_ITEMS and all(check(x) for x in v)


# kind -> (check, description used in error messages)
KINDS: Final[dict[str, tuple[Callable[[Any], bool], str]]] = {
    "int": (_is_int, "a whole number"),
    "num": (_is_num, "a finite number"),
    "str": (_is_str, f"a string of 1..{MAX_STR} characters"),
    "bool": (lambda v: type(v) is bool, "true or false"),
    "ref": (lambda v: _is_int(v) or _is_str(v), "a ticket id (number) or a display number (string)"),
    "ints": (_list_of(_is_int), f"a list of 1..{MAX_ITEMS} whole numbers"),
    "strs": (_list_of(_is_str), f"a list of 1..{MAX_ITEMS} strings"),
    "map": (lambda v: type(v) is dict, "a map"),
    "key": (lambda v: type(v) is str and 0 < len(v) <= MAX_KEY, f"a string of 1..{MAX_KEY} characters"),
}


@dataclass(frozen=True, slots=True)
class Field:
    kind: str
    required: bool = False
    nullable: bool = False


Spec = Mapping[str, Field]
_TICKET: Final = {"ticket": Field("ref", required=True)}
_WINDOW: Final = {"window": Field("int", required=True)}
_WINDOW_MOVES: Final = ("pause", "resume", "open_window", "close_window")
_CLERK_ID: Final = {"clerk": Field("str")}  # open_window: staff id of the clerk signing in (checked by the engine)

# Fields the server turns into command fields before the engine sees them: a resident id
# becomes the keyed ``person`` hash, the ``birth_year`` and, from 60, the green channel.
SERVER_FIELDS: Final = frozenset({"resident_id"})
_RESIDENT: Final = {"resident_id": Field("str")}

_CITIZEN: dict[str, Spec] = {
    "take_number": {"service": Field("str", True), "channel": Field("str"), "green": Field("bool"), **_RESIDENT},
    "book_slot": {"service": Field("str", True), "slot_start": Field("num", True), "green": Field("bool"),
                  **_RESIDENT},
    "reschedule": {**_TICKET, "slot_start": Field("num", True)},
    "check_in": _TICKET,
    "cancel": _TICKET,
    "requeue": _TICKET,
}
_CLERK: dict[str, Spec] = {
    "call_next": {},
    "call_number": _TICKET,
    "recall": {},
    "no_show": {},
    "start": {},
    "finish": {"rating": Field("str", nullable=True), "score": Field("int", nullable=True)},
    "transfer": {"service": Field("str"), "to_window": Field("int")},
    "park": {},
    "flag_green": _TICKET,
    "return_ticket": _TICKET,
    **{kind: {} for kind in _WINDOW_MOVES},
    "open_window": _CLERK_ID,
    "window": {},
}
_PLACES: Final = {"windows": Field("ints"), "zones": Field("strs"), "floors": Field("ints")}
_MANAGER: dict[str, Spec] = {
    "reassign": {"window": Field("int", True), "skills": Field("strs", True)},
    "reset_day": {},
    **{kind: _WINDOW for kind in _WINDOW_MOVES},
    "open_window": {**_WINDOW, **_CLERK_ID},
    "stats": {},
    "ratings": {},
    "ticket": _TICKET,
    "window": _WINDOW,
    "services": {},
    "subscribe": {**_PLACES, "all": Field("bool")},
    "cockpit": {"follow": Field("bool")},
}
_PING: dict[str, Spec] = {"ping": {}}

_KEY: Final = Field("key")  # every command may carry an idempotency key (see callsys.keys)


def _keyed(table: dict[str, Spec]) -> dict[str, Spec]:
    """*table* with the optional ``key`` field added to its engine commands."""
    return {kind: {**spec, "key": _KEY} if kind in COMMANDS else spec for kind, spec in table.items()}


ROLE_MESSAGES: Final[dict[str, dict[str, Spec]]] = {
    "kiosk": _keyed({**_CITIZEN, "position": _TICKET, "services": {}, **_PING}),
    "clerk": _keyed({**_CLERK, **_PING}),
    "display": {"subscribe": _PLACES, **_PING},
    "speaker": {"subscribe": {"zones": Field("strs")}, **_PING},
    "manager": _keyed({**_MANAGER, **_PING}),
    "phone": {"position": {}, **_PING},
}
MESSAGE_TYPES: Final = frozenset({"hello"} | {t for table in ROLE_MESSAGES.values() for t in table})
COMMAND_TYPES: Final = frozenset(COMMANDS)  # the types that run an engine command

HELLO: Final[Spec] = {
    "token": Field("str"), "role": Field("str", True), "window": Field("int"),
    "ticket": Field("int"), "secret": Field("str"), "subscribe": Field("map"),
}
# role -> (fields it must give, fields it may give) in hello, besides role
_HELLO_RULES: Final[dict[str, tuple[frozenset[str], frozenset[str]]]] = {
    "kiosk": (frozenset({"token"}), frozenset({"token"})),
    "clerk": (frozenset({"token", "window"}), frozenset({"token", "window"})),
    "display": (frozenset({"token"}), frozenset({"token", "subscribe"})),
    "speaker": (frozenset({"token"}), frozenset({"token", "subscribe"})),
    "manager": (frozenset({"token"}), frozenset({"token", "subscribe"})),
    "phone": (frozenset({"ticket", "secret"}), frozenset({"ticket", "secret"})),
}


@dataclass(frozen=True, slots=True)
class Hello:
    """A validated ``hello``: who the client says it is (not yet checked against tokens)."""

    role: str
    id: Any = None
    token: str | None = None
    window: int | None = None
    ticket: int | None = None
    secret: str | None = None
    subscribe: Mapping[str, Any] | None = None


def request_id(message: Any) -> Any:
    """The ``id`` of a decoded message, or None (raises InvalidField/Malformed when unusable)."""
    if type(message) is not dict:
        raise Malformed("a message must be a map")
    rid = message.get("id")
    if rid is None or _is_int(rid) or (type(rid) is str and len(rid) <= MAX_ID):
        return rid
    raise InvalidField(f"'id' must be a whole number or a string of up to {MAX_ID} characters", field="id")


def parse(message: Any, table: Mapping[str, Spec], rid: Any = None) -> tuple[str, dict[str, Any]]:
    """Check *message* against a role *table*; return ``(type, fields)``.

    Args:
        message: the decoded frame.
        table: the sender's ``ROLE_MESSAGES[role]``.
        rid: its ``id`` (from :func:`request_id`), attached to any error raised.

    Raises:
        ProtocolError: the first problem found (see the module docstring for the order).
    """
    kind = message.get("type")
    if kind is None:
        raise MissingField("'type' is required", request_id=rid, field="type")
    if type(kind) is not str:
        raise InvalidField("'type' must be a string", request_id=rid, field="type")
    spec = table.get(kind)
    if spec is None:
        if kind == "hello":
            raise UnexpectedHello("already authenticated: hello is only the first message", request_id=rid)
        if kind in MESSAGE_TYPES:
            raise Forbidden(f"this role may not send {kind!r}", request_id=rid, type=kind)
        raise UnknownType(f"unknown message type {kind[:MAX_STR]!r}", request_id=rid, type=kind[:MAX_STR])
    return kind, check_fields(message, spec, rid, skip=("type", "id"))


def check_fields(message: Mapping[Any, Any], spec: Spec, rid: Any = None, *, skip: tuple[str, ...] = (),
                 prefix: str = "") -> dict[str, Any]:
    """The fields of *message* checked against *spec* (names in errors get *prefix*)."""
    fields: dict[str, Any] = {}
    for name, value in message.items():
        if name in skip:
            continue
        field = spec.get(name) if type(name) is str else None
        if field is None:
            shown = f"{prefix}{name}"[:MAX_STR] if type(name) is str else repr(name)[:MAX_STR]
            raise UnknownField(f"unknown field {shown!r}", request_id=rid, field=shown, allowed=sorted(spec))
        if not (value is None and field.nullable):
            check, what = KINDS[field.kind]
            if not check(value):
                raise InvalidField(f"{prefix}{name!s} must be {what}", request_id=rid, field=f"{prefix}{name}")
        fields[name] = value
    for name, field in spec.items():
        if field.required and name not in fields:
            raise MissingField(f"{prefix}{name} is required", request_id=rid, field=f"{prefix}{name}")
    return fields


def parse_hello(message: Any) -> Hello:
    """Validate the first message of a connection.

    Raises:
        HelloRequired: it is not a ``hello``.
        ProtocolError: a field is unknown, missing or wrong for the role.
    """
    rid = request_id(message)
    if message.get("type") != "hello":
        raise HelloRequired("the first message must be 'hello'", request_id=rid)
    fields = check_fields(message, HELLO, rid, skip=("type", "id"))
    role = fields["role"]
    if role not in ROLES:
        raise InvalidField(f"role must be one of {', '.join(ROLES)}", request_id=rid, field="role", allowed=list(ROLES))
    required, allowed = _HELLO_RULES[role]
    extra = sorted(fields.keys() - {"role"} - allowed)
    if extra:
        raise InvalidField(f"a {role} does not send {extra[0]!r} in hello", request_id=rid, field=extra[0])
    missing = sorted(required - fields.keys())
    if missing:
        raise MissingField(f"a {role} must send {missing[0]!r} in hello", request_id=rid, field=missing[0])
    if "subscribe" in fields:
        spec = ROLE_MESSAGES[role]["subscribe"]
        fields["subscribe"] = check_fields(fields["subscribe"], spec, rid, prefix="subscribe.")
    return Hello(id=rid, **fields)


def ok(rid: Any, result: Any) -> dict[str, Any]:
    """The ``ok`` reply to request *rid*."""
    message = {"type": "ok", "result": result}
    if rid is not None:
        message["id"] = rid
    return message


def error(rid: Any, code: str, message: str, details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``error`` reply to request *rid* (or to an unreadable frame when *rid* is None)."""
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if rid is not None:
        frame["id"] = rid
    if details:
        frame["details"] = dict(details)
    return frame
