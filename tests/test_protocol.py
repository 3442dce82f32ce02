"""The protocol layer on its own: codecs, schemas, validation order, hello rules, secrets,
rate limiting, the clock and the log format."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
import math
import time
from datetime import datetime

import msgpack
import pytest

from callsys import commands as cmd
from callsys.clock import ClockError, RealClock, ScaledClock, parse_clock
from callsys.protocol import (COMMAND_TYPES, JSON_CODEC, MSGPACK_CODEC, ROLE_MESSAGES, ROLES, SERVER_FIELDS, Forbidden,
                              HelloRequired, InvalidField, Malformed, MissingField, ProtocolError, UnexpectedHello,
                              UnknownField, UnknownType, parse, parse_hello, request_id)
from callsys.server import phone_secret
from callsys.server.limits import TokenBucket
from callsys.server.logs import KeyValueFormatter
from conftest import SHANGHAI

CODECS = (MSGPACK_CODEC, JSON_CODEC)


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.subprotocol)
def test_codecs_round_trip(codec):
    message = {"type": "take_number", "id": 7, "service": "SOC", "green": True, "at": 1.5, "names": ["请", "A023"]}
    frame = codec.encode(message)
    assert isinstance(frame, bytes if codec.binary else str)
    assert codec.decode(frame) == message


@pytest.mark.parametrize("codec, frame", [
    (MSGPACK_CODEC, b"\xc1"), (MSGPACK_CODEC, b"\x92\x01"), (MSGPACK_CODEC, msgpack.packb({}) + b"\x01"),
    (MSGPACK_CODEC, b"\x91" * 100_000), (MSGPACK_CODEC, "text"),
    (JSON_CODEC, "{"), (JSON_CODEC, '{"a": NaN}'), (JSON_CODEC, '{"a": Infinity}'), (JSON_CODEC, "[" * 100_000),
    (JSON_CODEC, b"{}"),
])
def test_unreadable_frames_are_malformed(codec, frame):
    with pytest.raises(Malformed):
        codec.decode(frame)


KIOSK = ROLE_MESSAGES["kiosk"]


@pytest.mark.parametrize("message, error", [
    ([1, 2], Malformed),
    ({"type": "ping", "id": 1.5}, InvalidField),
    ({"type": "ping", "id": "x" * 65}, InvalidField),
    ({"id": 1}, MissingField),
    ({"type": None}, MissingField),
    ({"type": 3}, InvalidField),
    ({"type": "teleport"}, UnknownType),
    ({"type": "call_next"}, Forbidden),
    ({"type": "hello"}, UnexpectedHello),
    ({"type": "take_number", "service": "A", "nope": 1}, UnknownField),
    ({"type": "take_number", "service": True}, InvalidField),
    ({"type": "take_number", "service": "A", "green": 1}, InvalidField),
    ({"type": "take_number", "service": "x" * 201}, InvalidField),
    ({"type": "book_slot", "service": "A", "slot_start": math.nan}, InvalidField),
    ({"type": "book_slot", "service": "A", "slot_start": 2**64}, InvalidField),
    ({"type": "check_in", "ticket": None}, InvalidField),
    ({"type": "take_number"}, MissingField),
])
def test_parse_rejects_with_the_right_error(message, error):
    with pytest.raises(error) as raised:
        parse(message, KIOSK, request_id(message))
    assert raised.value.code == error.code
    assert isinstance(raised.value, ProtocolError)


def test_parse_returns_type_and_fields_and_errors_carry_the_id():
    assert parse({"type": "take_number", "id": "a", "service": "A", "green": False}, KIOSK, "a") == \
        ("take_number", {"service": "A", "green": False})
    assert parse({"type": "finish", "rating": None}, ROLE_MESSAGES["clerk"]) == ("finish", {"rating": None})
    with pytest.raises(UnknownField) as raised:
        parse({"type": "ping", "id": 9, "x": 1}, KIOSK, 9)
    assert raised.value.request_id == 9 and raised.value.details["field"] == "x"


def test_every_engine_command_is_reachable_with_matching_fields():
    reachable = {kind for table in ROLE_MESSAGES.values() for kind in table}
    assert COMMAND_TYPES <= reachable
    for role, table in ROLE_MESSAGES.items():
        for kind in COMMAND_TYPES & set(table):
            names = {f.name: f for f in dataclasses.fields(cmd.COMMANDS[kind])}
            assert set(table[kind]) - SERVER_FIELDS <= set(names), (role, kind)
            implied = {"at"} | ({"window"} if role == "clerk" else set())
            required = {n for n, f in names.items() if f.default is dataclasses.MISSING}
            assert required <= set(table[kind]) | implied, (role, kind)
            assert role != "clerk" or "window" not in table[kind]


@pytest.mark.parametrize("hello, error", [
    ({"type": "ping"}, HelloRequired),
    ({"type": "hello"}, MissingField),
    ({"type": "hello", "role": "king", "token": "t"}, InvalidField),
    ({"type": "hello", "role": "kiosk"}, MissingField),
    ({"type": "hello", "role": "phone", "ticket": 1}, MissingField),
    ({"type": "hello", "role": "phone", "ticket": 1, "secret": "s", "token": "t"}, InvalidField),
    ({"type": "hello", "role": "clerk", "token": "t", "window": "1"}, InvalidField),
    ({"type": "hello", "role": "display", "token": "t", "subscribe": {"all": True}}, UnknownField),
    ({"type": "hello", "role": "speaker", "token": "t", "subscribe": {"windows": [1]}}, UnknownField),
    ({"type": "hello", "role": "kiosk", "token": "t", "subscribe": {}}, InvalidField),
])
def test_bad_hellos(hello, error):
    with pytest.raises(error):
        parse_hello(hello)


def test_good_hellos():
    assert parse_hello({"type": "hello", "role": "clerk", "token": "t", "window": 4, "id": 1}).window == 4
    phone = parse_hello({"type": "hello", "role": "phone", "ticket": 5, "secret": "s"})
    assert (phone.role, phone.ticket, phone.token) == ("phone", 5, None)
    tv = parse_hello({"type": "hello", "role": "display", "token": "t", "subscribe": {"zones": ["z"], "floors": [2]}})
    assert tv.subscribe == {"zones": ["z"], "floors": [2]}
    assert set(ROLE_MESSAGES) == set(ROLES)


def test_phone_secrets_are_per_ticket_hall_and_key():
    secret = phone_secret(b"k", "demo", 1)
    assert len(secret) == 32 and secret == phone_secret(b"k", "demo", 1)
    assert len({secret, phone_secret(b"k", "demo", 2), phone_secret(b"j", "demo", 1),
                phone_secret(b"k", "qingdao", 1)}) == 4


@pytest.mark.parametrize("key", [b"", b"k", b"x" * 64, b"y" * 65, bytes(range(256))])
def test_phone_secret_is_hmac_sha256_as_documented(key):
    for ticket in (1, 10**12):
        expected = hmac.new(key, f"qingdao:{ticket}".encode(), hashlib.sha256).hexdigest()[:32]
        assert phone_secret(key, "qingdao", ticket) == expected


async def test_token_bucket_allows_burst_then_rate(mock_clock):
    bucket = TokenBucket(rate=2.0, burst=3)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    mock_clock.jump(0.5)
    assert [bucket.take(), bucket.take()] == [True, False]
    mock_clock.jump(100)
    assert sum(bucket.take() for _ in range(10)) == 3


def test_scaled_clock_runs_faster_from_its_start():
    start = datetime(2026, 11, 23, 8, 55, tzinfo=SHANGHAI)
    clock = ScaledClock(start, speed=60)
    first = clock.now()
    time.sleep(0.01)
    assert first >= start.timestamp() and clock.now() - first >= 0.6
    assert clock.speed == 60 and RealClock().speed == 1.0


def test_parse_clock():
    assert isinstance(parse_clock("real", tz=SHANGHAI), RealClock)
    clock = parse_clock("2026-11-23T08:55", speed=30, tz=SHANGHAI)
    assert clock.start == datetime(2026, 11, 23, 8, 55, tzinfo=SHANGHAI) and clock.speed == 30
    for spec, speed in (("tomorrow", 1.0), ("real", 60.0), ("2026-11-23T08:55", 0.0), ("2026-11-23T08:55", -1.0)):
        with pytest.raises(ClockError):
            parse_clock(spec, speed=speed, tz=SHANGHAI)
    with pytest.raises(ClockError):
        ScaledClock(datetime(2026, 11, 23), 1.0)


def test_log_lines_are_key_value():
    record = logging.LogRecord("callsys.server", logging.INFO, __file__, 1, "rejected", None, None)
    record.fields = {"peer": "127.0.0.1:5", "code": "forbidden", "message": "may not send 'x'", "window": None}
    line = KeyValueFormatter().format(record)
    assert "event=rejected peer=127.0.0.1:5 code=forbidden message=\"may not send 'x'\"" in line
    assert line.startswith("ts=") and "window" not in line


def test_public_names_of_the_server_side_packages():
    import callsys.client
    import callsys.protocol
    import callsys.server

    assert {n for n in vars(callsys.server) if not n.startswith("_")} >= {
        "serve_callsys", "CallsysServer", "ServerSettings", "ServerError", "phone_secret"}
    assert {"connect", "Client", "ClientError", "RequestFailed", "ConnectionLost"} <= set(vars(callsys.client))
    assert {"CODECS", "CloseCode", "ROLE_MESSAGES", "parse", "parse_hello", "ProtocolError"} <= set(
        vars(callsys.protocol))
