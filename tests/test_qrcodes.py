"""Signed QR payloads: round trip, forgery, expiry, hall and kind checks, door-code rotation."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callsys.errors import EngineError, QrRefused
from callsys.identity import derive_key
from callsys.qrcodes import (
    APPOINTMENT, DOOR, KINDS, QR_VERSION, SIG_CHARS, TICKET, QrClaim, door_code, door_period, sign, verify,
)

SETTINGS = settings(max_examples=300, derandomize=True, database=None, deadline=None)
KEY = derive_key(b"hall secret", "qr")
NOW = 1_780_000_000.0
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_:.~ /+="

idents = st.one_of(st.integers(0, 10**9), st.from_regex(r"[A-Za-z0-9_\-]{1,20}", fullmatch=True))
halls = st.from_regex(r"[a-z0-9][a-z0-9_\-]{0,15}", fullmatch=True)


def reason(key: bytes, hall: str, text: str, now: float = NOW, kinds: tuple[str, ...] = (TICKET,)) -> str:
    with pytest.raises(QrRefused) as info:
        verify(key, hall, text, now, kinds)
    assert isinstance(info.value, EngineError) and info.value.code == "qr_refused"
    return info.value.details["reason"]


def test_payload_shape() -> None:
    text = sign(KEY, TICKET, "demo", 42, NOW + 3600.9)
    prefix, kind, hall, ident, expiry, sig = text.split(".")
    assert (prefix, kind, hall, ident, expiry) == (QR_VERSION, "t", "demo", "42", str(int(NOW) + 3600))
    assert len(sig) == SIG_CHARS
    assert verify(KEY, "demo", text, NOW, KINDS) == QrClaim("t", "demo", "42", float(int(NOW) + 3600))


@SETTINGS
@given(kind=st.sampled_from(sorted(KINDS)), hall=halls, ident=idents, ttl=st.integers(0, 10**6))
def test_round_trip(kind: str, hall: str, ident: str | int, ttl: int) -> None:
    text = sign(KEY, kind, hall, ident, NOW + ttl)
    claim = verify(KEY, hall, text, NOW, [kind])
    assert claim == QrClaim(kind, hall, str(ident), float(int(NOW) + ttl))


@SETTINGS
@given(kind=st.sampled_from(sorted(KINDS)), ident=idents, index=st.integers(0, 200),
       char=st.sampled_from(ALPHABET))
def test_every_single_character_alteration_is_refused(kind: str, ident: str | int, index: int, char: str) -> None:
    text = sign(KEY, kind, "demo", ident, NOW + 600)
    index %= len(text)
    if text[index] == char:
        return
    altered = text[:index] + char + text[index + 1:]
    assert reason(KEY, "demo", altered, kinds=tuple(KINDS)) in ("forged", "malformed")


@SETTINGS
@given(kind=st.sampled_from(sorted(KINDS)), ident=idents, index=st.integers(0, 200))
def test_deleting_or_inserting_a_character_is_refused(kind: str, ident: str | int, index: int) -> None:
    text = sign(KEY, kind, "demo", ident, NOW + 600)
    index %= len(text)
    assert reason(KEY, "demo", text[:index] + text[index + 1:], kinds=tuple(KINDS)) in ("forged", "malformed")
    assert reason(KEY, "demo", text[:index] + "7" + text[index:], kinds=tuple(KINDS)) in ("forged", "malformed")


def test_other_key_is_forged() -> None:
    text = sign(derive_key(b"another hall's secret", "qr"), TICKET, "demo", 7, NOW + 60)
    assert reason(KEY, "demo", text) == "forged"
    assert reason(derive_key(b"hall secret", "person"), "demo", sign(KEY, TICKET, "demo", 7, NOW + 60)) == "forged"


def test_extended_expiry_with_old_signature_is_forged() -> None:
    text = sign(KEY, TICKET, "demo", 7, NOW - 1)
    parts = text.split(".")
    parts[4] = str(int(NOW) + 10**6)
    assert reason(KEY, "demo", ".".join(parts)) == "forged"


@pytest.mark.parametrize("text", [
    "", "hello", "CS1.t.demo.7.100", "CS2.t.demo.7.100.AAAAAAAAAAAAAAAAAAAAAA",
    "CS1.x.demo.7.100.AAAAAAAAAAAAAAAAAAAAAA", "CS1.t.demo.7.-100.AAAAAAAAAAAAAAAAAAAAAA",
    "CS1.t.demo.7.0100.AAAAAAAAAAAAAAAAAAAAAA", "CS1.t.demo.7.100.AAAA", "CS1.t..7.100.AAAAAAAAAAAAAAAAAAAAAA",
    "CS1.t.demo.7.100.AAAAAAAAAAAAAAAAAAAAAA.x", "CS1.t.demo.7.1e9.AAAAAAAAAAAAAAAAAAAAAA",
    "CS1.t.demo.7.100.AAAAAAAAAAAAAAAAAAAAA=", "CS1.t.dé.7.100.AAAAAAAAAAAAAAAAAAAAAA", "x" * 10_000,
])
def test_malformed(text: str) -> None:
    assert reason(KEY, "demo", text) == "malformed"


def test_not_a_string_is_malformed() -> None:
    assert reason(KEY, "demo", None) == "malformed"  # type: ignore[arg-type]


def test_well_formed_garbage_signature_is_forged() -> None:
    assert reason(KEY, "demo", f"CS1.t.demo.7.{int(NOW) + 9}.AAAAAAAAAAAAAAAAAAAAAA") == "forged"


def test_expiry_boundary() -> None:
    text = sign(KEY, APPOINTMENT, "demo", 9, NOW)
    assert verify(KEY, "demo", text, NOW, [APPOINTMENT]).ident == "9"
    assert reason(KEY, "demo", text, NOW + 0.001, (APPOINTMENT,)) == "expired"
    with pytest.raises(QrRefused) as info:
        verify(KEY, "demo", text, NOW + 1, [APPOINTMENT])
    assert info.value.details == {"reason": "expired", "expires_at": int(NOW)}


def test_wrong_hall_and_wrong_kind() -> None:
    text = sign(KEY, TICKET, "qingdao", 9, NOW + 60)
    assert reason(KEY, "demo", text) == "wrong_hall"
    text = sign(KEY, TICKET, "demo", 9, NOW + 60)
    assert reason(KEY, "demo", text, kinds=(APPOINTMENT,)) == "wrong_kind"
    assert reason(KEY, "demo", text, kinds=(DOOR,)) == "wrong_kind"


def test_reasons_are_checked_signature_first() -> None:
    """A forged code says "forged" even when it is also for another hall, kind and past expiry."""
    other = sign(b"x" * 32, TICKET, "qingdao", 9, NOW - 600)
    assert reason(KEY, "demo", other, kinds=(APPOINTMENT,)) == "forged"
    expired_elsewhere = sign(KEY, TICKET, "qingdao", 9, NOW - 600)
    assert reason(KEY, "demo", expired_elsewhere, kinds=(APPOINTMENT,)) == "wrong_hall"


@pytest.mark.parametrize(("kind", "hall", "ident", "expires"), [
    ("z", "demo", 1, NOW), ("t", "de.mo", 1, NOW), ("t", "demo", "a.b", NOW), ("t", "", 1, NOW),
    ("t", "demo", "", NOW), ("t", "demo", 1, -1.0), ("t", "demo", 1, float("nan")), ("t", "demo", "x" * 65, NOW),
])
def test_sign_refuses_what_a_payload_cannot_carry(kind: str, hall: str, ident: str | int, expires: float) -> None:
    with pytest.raises(ValueError):
        sign(KEY, kind, hall, ident, expires)


ROTATE = 300.0


def test_door_code_rotates_with_the_period() -> None:
    start = 5_933_333 * ROTATE  # a period boundary
    first = door_code(KEY, "demo", "main", start, ROTATE)
    assert door_code(KEY, "demo", "main", start + ROTATE - 0.001, ROTATE) == first
    second = door_code(KEY, "demo", "main", start + ROTATE, ROTATE)
    assert second != first
    claim = verify(KEY, "demo", first, start, [DOOR])
    assert claim.ident == "main:5933333" and claim.expires_at == start + 2 * ROTATE
    assert verify(KEY, "demo", second, start + ROTATE, [DOOR]).ident == "main:5933334"


def test_previous_door_code_is_accepted_until_its_expiry() -> None:
    start = 5_933_333 * ROTATE
    first = door_code(KEY, "demo", "main", start + 299, ROTATE)  # scanned one second before rotation
    assert verify(KEY, "demo", first, start + ROTATE + 1, [DOOR]).kind == DOOR  # board shows the next code
    assert verify(KEY, "demo", first, start + 2 * ROTATE, [DOOR]).kind == DOOR
    assert reason(KEY, "demo", first, start + 2 * ROTATE + 0.5, (DOOR,)) == "expired"


@SETTINGS
@given(now=st.floats(0, 4e9), rotate=st.sampled_from([60.0, 120.0, 300.0, 600.0]))
def test_door_code_always_valid_for_between_one_and_two_periods(now: float, rotate: float) -> None:
    claim = verify(KEY, "demo", door_code(KEY, "demo", "main", now, rotate), now, [DOOR])
    assert rotate < claim.expires_at - now + 1 and claim.expires_at - now <= 2 * rotate
    assert claim.ident == f"main:{door_period(now, rotate)}"


def test_door_codes_differ_per_door_and_are_not_tickets() -> None:
    main = door_code(KEY, "demo", "main", NOW, ROTATE)
    assert main != door_code(KEY, "demo", "east", NOW, ROTATE)
    assert reason(KEY, "demo", main, kinds=(TICKET, APPOINTMENT)) == "wrong_kind"
    with pytest.raises(ValueError):
        door_code(KEY, "demo", "a:b", NOW, ROTATE)
    with pytest.raises(ValueError):
        door_code(KEY, "demo", "main", NOW, 0)
