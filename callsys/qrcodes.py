"""Signed QR payloads: tickets, appointments and the rotating door code.

A payload is short printable text (it must fit a small QR code and a URL without escaping)::

    CS1.<kind>.<hall_id>.<ident>.<expires_at>.<sig>

* ``kind`` — ``t`` a ticket (follow it on the phone), ``a`` an appointment (check in at the
  door with it), ``d`` the door code (take a number on site);
* ``ident`` — the ticket id, or for the door code ``<door>:<period index>``;
* ``expires_at`` — epoch seconds (an integer);
* ``sig`` — the first 22 characters of base64url(HMAC-SHA256(key, everything before the last
  dot)), i.e. 132 bits.

Verification refuses, with the reason in ``details["reason"]`` of :class:`QrRefused`: text that is
not such a payload (``malformed``), a signature that does not match (``forged`` — any altered
character lands here or in ``malformed``), a payload of another hall (``wrong_hall``), of a kind
the scanner does not take (``wrong_kind``) and one past its expiry (``expired``). The
signature is checked before anything the payload claims, so an attacker learns nothing from the
other reasons. "Already used" is the server's decision (the appointment is no longer booked).

The door code rotates every ``rotate_s`` seconds: period ``n = floor(now / rotate_s)``; the code of
period ``n`` expires at the end of period ``n + 1``, so a phone that scanned the entrance board just
before the rotation is not refused, while a photo of the board stops working within two periods.

Pure: no I/O and no clock (``now`` is passed in).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Final

from .errors import QrRefused

QR_VERSION: Final = "CS1"
TICKET: Final = "t"
APPOINTMENT: Final = "a"
DOOR: Final = "d"
KINDS: Final = frozenset({TICKET, APPOINTMENT, DOOR})

SIG_CHARS: Final = 22
"""Characters of base64url signature kept (132 bits)."""

MAX_PAYLOAD: Final = 512
"""Longest payload text accepted for verification (characters)."""

_FIELD: Final = re.compile(r"[A-Za-z0-9_:\-]{1,64}")
_EXPIRY: Final = re.compile(r"0|[1-9][0-9]{0,11}")
_SIG: Final = re.compile(r"[A-Za-z0-9_\-]{%d}" % SIG_CHARS)


@dataclass(frozen=True, slots=True)
class QrClaim:
    """What a verified payload says.

    Attributes:
        kind: ``"t"``, ``"a"`` or ``"d"``.
        hall_id: the hall that signed it.
        ident: the ticket id, or ``"<door>:<period>"`` for a door code.
        expires_at: epoch seconds after which it is refused.
    """

    kind: str
    hall_id: str
    ident: str
    expires_at: float


def _signature(key: bytes, body: str) -> str:
    mac = hmac.new(key, body.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode()[:SIG_CHARS]


def sign(key: bytes, kind: str, hall_id: str, ident: str | int, expires_at: float) -> str:
    """The signed payload text for one ticket, appointment or door period.

    Args:
        key: the ``"qr"`` sub-key (:func:`callsys.identity.derive_key`).
        kind: one of :data:`KINDS`.
        hall_id: the hall's id.
        ident: the ticket id (or ``"<door>:<period>"``).
        expires_at: epoch seconds; stored as an integer (rounded down).

    Raises:
        ValueError: a kind outside :data:`KINDS`, or a hall id / ident with characters other than
            letters, digits, ``_``, ``-`` and ``:`` (or longer than 64), or a negative expiry.
            That is the caller's bug, not the citizen's.
    """
    ident = str(ident)
    if kind not in KINDS:
        raise ValueError(f"unknown QR kind {kind!r}")
    for name, value in (("hall_id", hall_id), ("ident", ident)):
        if not _FIELD.fullmatch(value):
            raise ValueError(f"QR {name} {value!r} has characters a payload cannot carry")
    if not expires_at >= 0:
        raise ValueError(f"QR expiry {expires_at!r} must be a non-negative time")
    body = f"{QR_VERSION}.{kind}.{hall_id}.{ident}.{int(expires_at)}"
    return f"{body}.{_signature(key, body)}"


def verify(key: bytes, hall_id: str, text: str, now: float, kinds: Collection[str]) -> QrClaim:
    """Checks a scanned payload and returns what it claims.

    Args:
        key: the ``"qr"`` sub-key.
        hall_id: the hall doing the scanning.
        text: the scanned text.
        now: the current time (epoch seconds); a payload is valid while ``now <= expires_at``.
        kinds: the kinds this scanner accepts.

    Raises:
        QrRefused: ``details["reason"]`` is ``malformed``, ``forged``, ``wrong_hall``,
            ``wrong_kind`` or ``expired`` (checked in that order).
    """
    if not isinstance(text, str) or len(text) > MAX_PAYLOAD:
        raise QrRefused("this is not a callsys QR code", reason="malformed")
    parts = text.split(".")
    if len(parts) != 6 or parts[0] != QR_VERSION or parts[1] not in KINDS \
            or not _FIELD.fullmatch(parts[2]) or not _FIELD.fullmatch(parts[3]) \
            or not _EXPIRY.fullmatch(parts[4]) or not _SIG.fullmatch(parts[5]):
        raise QrRefused("this is not a callsys QR code", reason="malformed")
    body = text[: text.rindex(".")]
    if not hmac.compare_digest(_signature(key, body), parts[5]):
        raise QrRefused("this QR code was not issued by this hall or has been altered", reason="forged")
    kind, claim_hall, ident, expires_at = parts[1], parts[2], parts[3], float(parts[4])
    if claim_hall != hall_id:
        raise QrRefused(f"this QR code belongs to hall {claim_hall!r}", reason="wrong_hall", hall=claim_hall)
    if kind not in kinds:
        raise QrRefused("this QR code is not accepted here", reason="wrong_kind", kind=kind,
                        accepted=sorted(kinds))
    if now > expires_at:
        raise QrRefused("this QR code has expired", reason="expired", expires_at=int(expires_at))
    return QrClaim(kind, claim_hall, ident, expires_at)


def door_period(now: float, rotate_s: float) -> int:
    """The index of the door-code period that contains *now*."""
    if not rotate_s > 0:
        raise ValueError(f"door code rotation {rotate_s!r} must be positive seconds")
    return math.floor(now / rotate_s)


def door_code(key: bytes, hall_id: str, door: str, now: float, rotate_s: float) -> str:
    """The door code payload to show at entrance *door* at time *now*.

    Its ident is ``"<door>:<period index>"``; it expires at the end of the period after the
    current one, so the code on the board stays valid one rotation after it is replaced.

    Args:
        key: the ``"qr"`` sub-key.
        hall_id: the hall's id.
        door: the entrance name (letters, digits, ``_``, ``-``).
        now: the current time, epoch seconds.
        rotate_s: seconds between rotations.
    """
    if ":" in door:
        raise ValueError(f"door name {door!r} may not contain ':'")
    period = door_period(now, rotate_s)
    return sign(key, DOOR, hall_id, f"{door}:{period}", (period + 2) * rotate_s)
