"""The shape of a hall file (TOML), checked by pydantic.

This module only describes *shape and types*: every table rejects unknown keys and every
value is type-checked. Cross-references (a window naming an unknown service, duplicate ids,
a slot grid outside the opening hours, ...) are checked when the file is compiled into a
:class:`callsys.hall.Hall`, where the error can name the exact key.
"""

from __future__ import annotations

import re
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

_HHMM = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NamesSpec(_Model):
    zh: str = Field(min_length=1)
    en: str = Field(min_length=1)
    ja: str | None = None
    ko: str | None = None


class HallSpec(_Model):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    name: NamesSpec
    timezone: str = "Asia/Shanghai"
    number_width: int = Field(default=3, ge=1, le=6)
    reset_numbers: Literal["daily", "never"] = "daily"


def parse_session(text: str) -> tuple[int, int]:
    """``"09:00-12:00"`` -> ``(540, 720)`` minutes after midnight."""
    m = _HHMM.match(text)
    if not m:
        raise ValueError(f"{text!r} is not of the form 'HH:MM-HH:MM'")
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    if h1 > 24 or h2 > 24 or m1 > 59 or m2 > 59:
        raise ValueError(f"{text!r} is not a valid time range")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if not 0 <= start < end <= 24 * 60:
        raise ValueError(f"{text!r}: the session must end after it starts, within one day")
    return start, end


class HoursSpec(_Model):
    mon: tuple[str, ...] = ()
    tue: tuple[str, ...] = ()
    wed: tuple[str, ...] = ()
    thu: tuple[str, ...] = ()
    fri: tuple[str, ...] = ()
    sat: tuple[str, ...] = ()
    sun: tuple[str, ...] = ()
    issue_cutoff_min: int = Field(default=0, ge=0)

    @field_validator("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    @classmethod
    def _sessions(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        spans = [parse_session(s) for s in value]
        for (_, end), (start, _) in zip(spans, spans[1:]):
            if start < end:
                raise ValueError("sessions must be listed in order and must not overlap")
        return value


class AppointmentsSpec(_Model):
    slot_minutes: int = Field(default=30, ge=5, le=240)
    default_capacity: int = Field(default=0, ge=0)
    capacity: dict[str, int] = {}
    early_checkin_min: int = Field(default=60, ge=0)
    late_grace_min: int = Field(default=15, ge=0)
    late_rule: Literal["walk_in", "reject"] = "walk_in"
    no_show_limit: int = Field(default=2, ge=0)  # 0: the no-show rule is off
    no_show_window_days: int = Field(default=30, ge=1, le=366)
    no_show_block_days: int = Field(default=90, ge=1, le=3660)

    @field_validator("capacity")
    @classmethod
    def _non_negative(cls, value: dict[str, int]) -> dict[str, int]:
        for code, cap in value.items():
            if cap < 0:
                raise ValueError(f"capacity of {code!r} must be >= 0, got {cap}")
        return value


Interleave = tuple[()] | tuple[int, int]


def _check_interleave(value: Interleave | None) -> Interleave | None:
    if value and (value[0] < 1 or value[1] < 1):
        raise ValueError("interleave takes two counts >= 1, e.g. [2, 1], or [] for off")
    return value


class PolicySpec(_Model):
    appointment_credit_min: float = Field(default=10, ge=0)
    green_credit_min: float = Field(default=30, ge=0)
    appointment_class: Literal["normal", "priority"] = "normal"
    interleave: Interleave = ()
    wait_threshold: bool = False
    skill_order: Literal["rank", "strict"] = "rank"
    recall_limit: int = Field(default=2, ge=0, le=20)
    requeue: Literal["back", "keep"] = "back"

    _interleave = field_validator("interleave")(classmethod(lambda cls, v: _check_interleave(v)))


class IssuingSpec(_Model):
    """The ``[issuing]`` table: daily caps per service (限号) and the capacity-aware cutoff."""

    daily_cap: dict[str, int] = {}  # service code -> numbers a day (walk-ins + today's appointments)
    cutoff: Literal["off", "warn", "refuse"] = "off"
    cutoff_margin_min: float = Field(default=0.0, ge=0, le=24 * 60)  # the call must be predicted this long before closing

    @field_validator("daily_cap")
    @classmethod
    def _caps(cls, value: dict[str, int]) -> dict[str, int]:
        for code, cap in value.items():
            if cap < 0:
                raise ValueError(f"daily_cap of {code!r} must be >= 0, got {cap}")
        return value


class RegulationSpec(_Model):
    """The ``[regulation]`` table: flow regulation (调流) suggestions and the automatic mode."""

    auto: bool = False  # the server applies the best suggestions itself
    scope: Literal["zone", "floor", "hall"] = "zone"  # the services a window may be given: those of its zone/floor/hall
    open_windows: bool = True  # suggest opening closed windows (a clerk must be there to staff them)
    max_moves_per_hour: int = Field(default=2, ge=1, le=60)  # reassignments of one window per hour, at most
    min_stay_min: float = Field(default=20.0, ge=0, le=24 * 60)  # before a moved window is moved again
    check_every_min: float = Field(default=5.0, gt=0, le=24 * 60)  # how often the automatic mode looks


class GroupSpec(_Model):
    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: NamesSpec


class FloorSpec(_Model):
    number: int
    name: NamesSpec
    width: float = Field(default=100.0, gt=0)
    depth: float = Field(default=60.0, gt=0)


class ZoneSpec(_Model):
    id: str = Field(min_length=1)
    floor: int
    name: NamesSpec
    area: tuple[float, float, float, float] | None = None  # x, y, width, depth on the floor (m), for drawing


class ServiceSpec(_Model):
    code: str = Field(pattern=r"^[A-Z0-9][A-Z0-9_-]*$")
    prefix: str = Field(pattern=r"^[A-Z]{1,2}$")
    name: NamesSpec
    group: str
    department: str = ""
    minutes: float = Field(gt=0, le=480)
    target_wait_min: float = Field(default=30, gt=0)


class _WindowPolicy(_Model):
    skill_order: Literal["rank", "strict"] | None = None
    interleave: Interleave | None = None

    _interleave = field_validator("interleave")(classmethod(lambda cls, v: _check_interleave(v)))


class WindowSpec(_WindowPolicy):
    id: int = Field(ge=1)
    display: str | None = None
    zone: str
    x: float = 0.0
    y: float = 0.0
    skills: tuple[str, ...] = Field(min_length=1)


class WindowBlockSpec(_WindowPolicy):
    first_id: int = Field(ge=1)
    count: int = Field(ge=1, le=1000)
    zone: str
    origin: tuple[float, float] = (0.0, 0.0)
    spacing: tuple[float, float] = (3.0, 4.0)
    per_row: int = Field(default=10, ge=1)
    skills: tuple[str, ...] = Field(min_length=1)


class TokensSpec(_Model):
    kiosk: tuple[str, ...] = ()
    clerk: tuple[str, ...] = ()
    display: tuple[str, ...] = ()
    speaker: tuple[str, ...] = ()
    manager: tuple[str, ...] = ()


class IntegrationSpec(_Model):
    """One ``[integrations.<name>]`` table: an integration client of the HTTP API (:mod:`callsys.api`)."""

    key: str = Field(min_length=16, pattern=r"^[\x21-\x7e]+$")  # printable ASCII, no spaces
    rate_per_s: float = Field(default=50, gt=0)  # requests per second on average
    burst: int = Field(default=100, ge=1)  # requests at once
    webhook_url: str | None = None
    webhook_secret: str | None = None


INTEGRATION_NAME: Final = r"^[a-z0-9][a-z0-9_-]{0,31}$"


VOICE_LANGUAGES: Final = ("zh", "en", "ja", "ko")  # the languages voice.reading can read numbers in


class VoiceSpec(_Model):
    """The ``[voice]`` table: what the speakers say (see :mod:`voice.templates`)."""

    languages: tuple[str, ...] = Field(default=("zh", "en"), min_length=1)
    templates: dict[str, str] = {}
    repeat: int = Field(default=1, ge=1, le=5)
    chime: bool = True
    rate: int = Field(default=150, ge=80, le=450)  # words per minute (espeak-ng's range)
    silent_zones: tuple[str, ...] = ()


class QrSpec(_Model):
    """The ``[qr]`` table: signed QR payloads and the door code (see :mod:`callsys.qrcodes`)."""

    ticket_valid_hours: float = Field(default=24.0, gt=0, le=24 * 30)
    door_rotate_minutes: float = Field(default=5.0, gt=0, le=24 * 60)
    doors: tuple[str, ...] = ("main",)

    @field_validator("doors")
    @classmethod
    def _door_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for door in value:
            if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,31}", door):
                raise ValueError(f"door name {door!r} must be lower-case letters, digits, '_' or '-'")
        if len(set(value)) != len(value):
            raise ValueError("a door is listed twice")
        return value


class HallFile(_Model):
    """A whole hall file, as written."""

    hall: HallSpec
    hours: HoursSpec
    appointments: AppointmentsSpec = AppointmentsSpec()
    policy: PolicySpec = PolicySpec()
    issuing: IssuingSpec = IssuingSpec()
    regulation: RegulationSpec = RegulationSpec()
    groups: tuple[GroupSpec, ...] = Field(min_length=1)
    floors: tuple[FloorSpec, ...] = Field(min_length=1)
    zones: tuple[ZoneSpec, ...] = Field(min_length=1)
    services: tuple[ServiceSpec, ...] = Field(min_length=1)
    windows: tuple[WindowSpec, ...] = ()
    window_blocks: tuple[WindowBlockSpec, ...] = ()
    tokens: TokensSpec = TokensSpec()
    voice: VoiceSpec = VoiceSpec()
    qr: QrSpec = QrSpec()
    integrations: dict[str, IntegrationSpec] = {}
