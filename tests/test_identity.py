"""Resident ids (GB 11643 check digit, birth date), the keyed person hash, age and sub-keys."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callsys.errors import EngineError, InvalidResidentId
from callsys.identity import (
    SENIOR_AGE, ResidentId, age_on, check_digit, derive_key, parse_resident_id, person_key,
)

SETTINGS = settings(max_examples=300, derandomize=True, database=None, deadline=None)

# The standard's worked example (GB 11643-1999 annex): check digit X.
EXAMPLE_X = "11010519491231002X"
EXAMPLE_DIGIT = "440524188001010014"

births = st.dates(min_value=datetime.date(1900, 1, 1), max_value=datetime.date(2025, 12, 31))
regions = st.integers(100000, 999999)
sequences = st.integers(0, 999)


def make_id(region: int, birth: datetime.date, seq: int) -> str:
    first17 = f"{region:06d}{birth:%Y%m%d}{seq:03d}"
    return first17 + check_digit(first17)


valid_ids = st.builds(make_id, regions, births, sequences)


def test_standard_examples() -> None:
    rid = parse_resident_id(EXAMPLE_X)
    assert rid.birth_date == datetime.date(1949, 12, 31) and rid.birth_year == 1949
    assert parse_resident_id(EXAMPLE_DIGIT).birth_date == datetime.date(1880, 1, 1)


def test_lower_case_x_and_spaces_are_read() -> None:
    assert parse_resident_id(" 11010519491231002x ").text == EXAMPLE_X


def test_error_is_an_engine_error_with_code_and_never_repeats_the_id() -> None:
    with pytest.raises(InvalidResidentId) as info:
        parse_resident_id("110105194912310021")
    assert isinstance(info.value, EngineError)
    assert info.value.to_dict()["code"] == "invalid_resident_id"
    assert info.value.details == {"reason": "check_digit"}
    assert "110105" not in str(info.value)
    assert "110105" not in repr(parse_resident_id(EXAMPLE_X))


@pytest.mark.parametrize("text", [
    "", "1101051949123100", "11010519491231002XX", "1101051949123100ZX", "X1010519491231002X",
    "११०१०५१९४९१२३१००२X",  # Devanagari digits are digits to str.isdigit, not to the standard
    "11010519491231002 ", None, 110105194912310020,
])
def test_bad_format(text: object) -> None:
    with pytest.raises(InvalidResidentId) as info:
        parse_resident_id(text)  # type: ignore[arg-type]
    assert info.value.details["reason"] == "format"


@pytest.mark.parametrize("date", ["19490230", "19491301", "19490001", "19490100", "18491231", "20230229"])
def test_bad_birth_dates(date: str) -> None:
    first17 = f"110105{date}002"
    with pytest.raises(InvalidResidentId) as info:
        parse_resident_id(first17 + check_digit(first17))
    assert info.value.details["reason"] == "birth_date"


def test_leap_day_birth_is_valid() -> None:
    first17 = "11010520000229123"
    assert parse_resident_id(first17 + check_digit(first17)).birth_date == datetime.date(2000, 2, 29)


@SETTINGS
@given(region=regions, birth=births, seq=sequences)
def test_generated_ids_are_accepted(region: int, birth: datetime.date, seq: int) -> None:
    rid = parse_resident_id(make_id(region, birth, seq))
    assert rid.birth_date == birth and rid.birth_year == birth.year


@SETTINGS
@given(text=valid_ids, index=st.integers(0, 17), char=st.sampled_from("0123456789X"))
def test_any_single_character_change_is_refused(text: str, index: int, char: str) -> None:
    """MOD 11-2 detects every single substitution (weights are all nonzero mod 11)."""
    if text[index] == char or (index < 17 and char == "X"):
        return
    changed = text[:index] + char + text[index + 1:]
    with pytest.raises(InvalidResidentId):
        parse_resident_id(changed)


@SETTINGS
@given(text=valid_ids, index=st.integers(0, 16))
def test_adjacent_transpositions_of_different_digits_are_refused(text: str, index: int) -> None:
    a, b = text[index], text[index + 1]
    if a == b or "X" in (a, b):
        return
    with pytest.raises(InvalidResidentId):
        parse_resident_id(text[:index] + b + a + text[index + 2:])


def test_check_digit_x_is_produced_when_the_sum_needs_it() -> None:
    assert check_digit(EXAMPLE_X[:17]) == "X"
    with pytest.raises(InvalidResidentId):
        parse_resident_id(EXAMPLE_X[:17] + "0")


@SETTINGS
@given(text=valid_ids)
def test_person_key_is_stable_and_keyed(text: str) -> None:
    rid = parse_resident_id(text)
    key = derive_key(b"secret", "person")
    first = person_key(key, "demo", rid)
    assert first == person_key(key, "demo", parse_resident_id(text.lower()))
    assert len(first) == 32 and int(first, 16) >= 0
    assert first != person_key(derive_key(b"other", "person"), "demo", rid)
    assert first != person_key(key, "qingdao", rid)
    assert text not in first


def test_person_keys_of_different_ids_differ() -> None:
    key = derive_key(b"secret", "person")
    ids = [make_id(110105, datetime.date(1980, 1, 1), seq) for seq in range(500)]
    assert len({person_key(key, "demo", parse_resident_id(i)) for i in ids}) == 500


def test_derive_key_separates_purposes_and_secrets() -> None:
    assert derive_key(b"s", "person") != derive_key(b"s", "qr")
    assert derive_key(b"s", "qr") != derive_key(b"t", "qr")
    assert derive_key(b"s", "qr") == derive_key(b"s", "qr") and len(derive_key(b"s", "qr")) == 32


@pytest.mark.parametrize(("birth", "day", "age"), [
    ((1966, 5, 10), (2026, 5, 9), 59),
    ((1966, 5, 10), (2026, 5, 10), 60),
    ((1966, 5, 10), (2026, 5, 11), 60),
    ((2000, 2, 29), (2060, 2, 28), 59),
    ((2000, 2, 29), (2060, 2, 29), 60),
    ((2000, 2, 29), (2061, 2, 28), 60),
    ((2000, 2, 29), (2061, 3, 1), 61),
    ((1990, 12, 31), (1991, 1, 1), 0),
])
def test_age_on(birth: tuple[int, int, int], day: tuple[int, int, int], age: int) -> None:
    assert age_on(datetime.date(*birth), datetime.date(*day)) == age


@SETTINGS
@given(birth=births, days=st.integers(0, 40000))
def test_age_is_monotonic_and_matches_anniversaries(birth: datetime.date, days: int) -> None:
    day = birth + datetime.timedelta(days=days)
    age = age_on(birth, day)
    assert 0 <= age <= age_on(birth, day + datetime.timedelta(days=1)) <= age + 1
    if (day.month, day.day) == (birth.month, birth.day):
        assert age == day.year - birth.year
    assert (age >= SENIOR_AGE) == (day >= _anniversary(birth, SENIOR_AGE))


def _anniversary(birth: datetime.date, years: int) -> datetime.date:
    try:
        return birth.replace(year=birth.year + years)
    except ValueError:  # 29 February in a common year: the day after 28 February
        return datetime.date(birth.year + years, 3, 1)


def test_resident_id_is_frozen() -> None:
    rid = parse_resident_id(EXAMPLE_X)
    assert isinstance(rid, ResidentId)
    with pytest.raises(AttributeError):
        rid.text = "x"  # type: ignore[misc]
