"""Resident ids: validation, the keyed hash the queue stores, and age.

A booking or ticket may carry the citizen's 18-character resident id (GB 11643-1999):
six digits of region, the birth date as ``YYYYMMDD``, a three-digit sequence and a check
digit (``0``-``9`` or ``X``) computed with ISO 7064 MOD 11-2 over the first seventeen.

Policy — store only what the queue needs:

* the id text itself is never stored, logged or shown; the engine sees a keyed hash
  (:func:`person_key`) that is stable for one hall and key, so "one active ticket per
  person per service" and the no-show record work, but the hash cannot be reversed by
  enumerating ids without the hall's secret;
* the birth year travels with the hash (statistics); seniority (:data:`SENIOR_AGE`) is
  decided by the server from the full birth date and the hall's local date, then dropped.

Keys: the server has one secret; :func:`derive_key` gives an independent sub-key per
purpose (``"person"`` for the hash, ``"qr"`` for signed QR payloads).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
from dataclasses import dataclass
from typing import Final

from .errors import InvalidResidentId

SENIOR_AGE: Final = 60
"""Age in whole years from which a resident gets the green-channel credit."""

ID_LENGTH: Final = 18
"""Characters in a resident id."""

_WEIGHTS: Final = tuple(pow(2, 17 - i, 11) for i in range(17))
_CHECK: Final = "10X98765432"
_EARLIEST_BIRTH: Final = datetime.date(1850, 1, 1)
_PERSON_KEY_HEX: Final = 32


@dataclass(frozen=True, slots=True)
class ResidentId:
    """A validated resident id.

    Attributes:
        text: the 18 characters, upper case (a final ``x`` is read as ``X``).
        birth_date: the birth date it encodes.
    """

    text: str
    birth_date: datetime.date

    @property
    def birth_year(self) -> int:
        """The year of birth (what the queue may keep)."""
        return self.birth_date.year

    def __repr__(self) -> str:  # never print the id itself
        return f"ResidentId(birth_year={self.birth_year})"


def check_digit(first17: str) -> str:
    """The GB 11643 (ISO 7064 MOD 11-2) check character for 17 digits."""
    return _CHECK[sum(int(c) * w for c, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def parse_resident_id(text: str) -> ResidentId:
    """Validates *text* as a resident id.

    Args:
        text: the id as typed or read (surrounding spaces are ignored; ``x`` = ``X``).

    Returns:
        The validated id.

    Raises:
        InvalidResidentId: wrong length or characters, an impossible or implausible birth
            date (before 1850), or a wrong check digit; ``details["reason"]`` is
            ``"format"``, ``"birth_date"`` or ``"check_digit"``. The message never repeats the id.
    """
    if not isinstance(text, str):
        raise InvalidResidentId("resident id must be a string", reason="format")
    value = text.strip().upper()
    if len(value) != ID_LENGTH or not (value[:17].isascii() and value[:17].isdigit()) \
            or value[17] not in "0123456789X":
        raise InvalidResidentId("resident id must be 17 digits followed by a digit or X", reason="format")
    try:
        birth = datetime.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        raise InvalidResidentId("resident id has an impossible birth date", reason="birth_date") from None
    if birth < _EARLIEST_BIRTH:
        raise InvalidResidentId("resident id has an implausible birth date", reason="birth_date")
    if check_digit(value[:17]) != value[17]:
        raise InvalidResidentId("resident id check digit does not match", reason="check_digit")
    return ResidentId(value, birth)


def derive_key(secret: bytes, purpose: str) -> bytes:
    """An independent sub-key of the server's *secret* for one *purpose* (HMAC-SHA256)."""
    return hmac.new(secret, purpose.encode(), hashlib.sha256).digest()


def person_key(key: bytes, hall_id: str, rid: ResidentId) -> str:
    """The keyed hash that stands for a person in the queue.

    Args:
        key: the ``"person"`` sub-key (:func:`derive_key`).
        hall_id: the hall; the same person hashes differently in two halls sharing a secret.
        rid: the validated id.

    Returns:
        32 hex characters: HMAC-SHA256(key, hall id, NUL, id text), truncated. Stable for the
        same key and hall; unrelated across keys or halls.
    """
    message = f"{hall_id}\0{rid.text}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:_PERSON_KEY_HEX]


def age_on(birth: datetime.date, day: datetime.date) -> int:
    """Age in whole years on *day* of someone born on *birth* (29 February birthdays count from 1 March)."""
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))
