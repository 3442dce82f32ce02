"""Who a connection is: tokens from the hall file, phone secrets, subscriptions.

A phone authenticates with its ticket id and a per-ticket secret the server derives with
HMAC-SHA256 from the server secret; the secret is handed out in the ``take_number``,
``book_slot`` and ``check_in`` acknowledgements, so only the citizen holding the ticket
can follow it. Nothing per phone is stored.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final, Mapping

from ..hall import Hall
from ..protocol import Hello, InvalidField, Unauthorized

SECRET_HEX: Final = 32  # hex characters of a phone secret (128 bits)
_SHA256_BLOCK: Final = 64  # bytes


def phone_secret(key: bytes, hall_id: str, ticket: int) -> str:
    """The secret that lets a phone follow *ticket* of hall *hall_id*: HMAC-SHA256, hex, cut.

    Every take-number computes one, so the key's padded inner and outer hash states are
    computed once per key (RFC 2104) and copied per ticket: ~0.8 us instead of ~2.4 us
    for ``hmac.digest``, with the same result.
    """
    inner, outer = _hmac_pads(key)
    inner = inner.copy()
    inner.update(f"{hall_id}:{ticket}".encode())
    outer = outer.copy()
    outer.update(inner.digest())
    return outer.digest()[:SECRET_HEX // 2].hex()


@lru_cache(maxsize=16)
def _hmac_pads(key: bytes) -> tuple[Any, Any]:
    """SHA-256 states after the HMAC inner and outer key pads of *key*."""
    if len(key) > _SHA256_BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_SHA256_BLOCK, b"\0")
    return hashlib.sha256(bytes(b ^ 0x36 for b in key)), hashlib.sha256(bytes(b ^ 0x5C for b in key))


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated connection: its role and what it is bound to."""

    role: str
    window: int | None = None  # a clerk's window
    ticket: int | None = None  # a phone's ticket


def authenticate(hello: Hello, hall: Hall, key: bytes) -> Identity:
    """Check *hello* against the hall's tokens (or the phone secret).

    Raises:
        Unauthorized: unknown token, a token of another role, or a wrong phone secret.
        InvalidField: a clerk names a window the hall does not have.
    """
    if hello.role == "phone":
        expected = phone_secret(key, hall.id, hello.ticket)
        if not hmac.compare_digest(expected, hello.secret or ""):
            raise Unauthorized("wrong secret for this ticket", request_id=hello.id)
        return Identity("phone", ticket=hello.ticket)
    if hall.role_of(hello.token or "") != hello.role:
        raise Unauthorized(f"the token is not valid for role {hello.role!r}", request_id=hello.id)
    if hello.role == "clerk" and hello.window not in hall.windows_by_id:
        raise InvalidField(f"window {hello.window} does not exist in hall {hall.id!r}",
                           request_id=hello.id, field="window")
    return Identity(hello.role, window=hello.window)


def resolve_places(hall: Hall, places: Mapping[str, Any], rid: Any = None) -> frozenset[int]:
    """The window ids named by a subscription ``{windows, zones, floors, all}``.

    Raises:
        InvalidField: a window, zone or floor the hall does not have.
    """
    if places.get("all"):
        return frozenset(hall.windows_by_id)
    wanted: set[int] = set()
    for wid in places.get("windows", ()):
        if wid not in hall.windows_by_id:
            raise InvalidField(f"window {wid} does not exist", request_id=rid, field="windows", value=wid)
        wanted.add(wid)
    _add_matching(hall, wanted, places.get("zones", ()), "zone", {z.id for z in hall.zones}, rid)
    _add_matching(hall, wanted, places.get("floors", ()), "floor", {f.number for f in hall.floors}, rid)
    return frozenset(wanted)


def _add_matching(hall: Hall, wanted: set[int], keys: Any, attr: str, known: set[Any], rid: Any) -> None:
    for key in keys:
        if key not in known:
            raise InvalidField(f"{attr} {key!r} does not exist", request_id=rid, field=f"{attr}s", value=key)
        wanted.update(w.id for w in hall.windows if getattr(w, attr) == key)
