"""Hall configuration: a TOML file compiled into typed, immutable objects.

``load_hall(path)`` reads a file such as ``config/qingdao.toml``; :mod:`callsys._schema`
checks its shape and types, and :func:`compile_hall` checks what refers to what. Every
problem raises :class:`ConfigError` naming the file, the key and the problem, e.g.::

    config/demo.toml: windows[3].skills[1]: unknown service 'XYZ'

The engine reads only the compiled :class:`Hall`: plain frozen dataclasses with times in
seconds and lookup tables built once.
"""

from __future__ import annotations

import re
import string
import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Mapping, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ValidationError

from . import _schema as schema
from .errors import ConfigError

ROLES: Final = ("kiosk", "clerk", "display", "speaker", "manager")
WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
UNIVERSAL: Final = "*"
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Names:
    zh: str
    en: str
    ja: str | None = None
    ko: str | None = None

    def get(self, lang: str) -> str:
        """The name in *lang*, falling back to English."""
        return getattr(self, lang, None) or self.en


@dataclass(frozen=True, slots=True)
class Hours:
    """Weekly opening sessions as (start, end) minutes after local midnight, Monday first."""

    week: tuple[tuple[tuple[int, int], ...], ...]
    issue_cutoff_min: int = 0

    def sessions(self, weekday: int) -> tuple[tuple[int, int], ...]:
        return self.week[weekday]

    def is_open(self, weekday: int, minute: float) -> bool:
        return any(start <= minute < end for start, end in self.week[weekday])


@dataclass(frozen=True, slots=True)
class Appointments:
    slot_minutes: int
    capacity: Mapping[str, int]  # every service code -> bookings per slot (0 = not bookable)
    early_checkin_s: float
    late_grace_s: float
    late_rule: str  # "walk_in" | "reject"
    no_show_limit: int = 2  # appointment no-shows within the window that block booking; 0 = rule off
    no_show_window_days: int = 30
    no_show_block_days: int = 90


@dataclass(frozen=True, slots=True)
class Policy:
    """Calling rules; credits in seconds."""

    appointment_credit_s: float
    green_credit_s: float
    appointment_class: str  # "normal" | "priority"
    interleave: tuple[int, ...]  # (normal, priority) calls per cycle, () = off
    wait_threshold: bool
    skill_order: str  # "rank" | "strict"
    recall_limit: int
    requeue: str  # "back" | "keep"


CUTOFFS: Final = ("off", "warn", "refuse")


@dataclass(frozen=True, slots=True)
class Issuing:
    """The ``[issuing]`` table: how many numbers a day, and what the kiosk says near closing.

    Attributes:
        daily_cap: service code -> numbers a day (限号). Walk-in numbers (kiosk and QR)
            taken today plus appointments booked for today's slots (booked or checked in;
            a cancelled booking frees its place) count against it; a take-number past it is
            refused ``daily_cap_reached``. Bookings themselves are limited by the slot
            capacity only. A service not listed has no cap.
        cutoff: ``"off"``; ``"warn"``: a take-number whose predicted call (now plus the
            estimated wait of a new ticket, counted in open hours) falls later than
            ``cutoff_margin_s`` before the day's last session ends is issued with a warning;
            ``"refuse"``: it is refused ``past_closing``.
        cutoff_margin_s: seconds before closing by which the call must be predicted.
    """

    daily_cap: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    cutoff: str = "off"
    cutoff_margin_s: float = 0.0


REGULATION_SCOPES: Final = ("zone", "floor", "hall")


@dataclass(frozen=True, slots=True)
class Regulation:
    """The ``[regulation]`` table: flow regulation (调流), see :mod:`callsys.regulator`.

    Attributes:
        auto: the server applies the best suggestions itself, within the limits below.
        scope: which services a window may be given: those some window of its ``"zone"``
            (default), of its ``"floor"`` or of the ``"hall"`` serves by configuration.
        open_windows: whether opening a closed window is suggested (and, in the automatic
            mode, done): only where a clerk is there to staff it.
        max_moves_per_hour: reassignments (or openings) of one window in any hour, at most.
        min_stay_s: seconds a moved window stays as it is before it is moved again.
        every_s: seconds between two looks of the automatic mode.
    """

    auto: bool = False
    scope: str = "zone"
    open_windows: bool = True
    max_moves_per_hour: int = 2
    min_stay_s: float = 1200.0
    every_s: float = 300.0


@dataclass(frozen=True, slots=True)
class Group:
    code: str
    name: Names


@dataclass(frozen=True, slots=True)
class Floor:
    number: int
    name: Names
    width: float
    depth: float


@dataclass(frozen=True, slots=True)
class Zone:
    id: str
    floor: int
    name: Names
    area: tuple[float, float, float, float] | None = None  # x, y, width, depth (m); None: around its windows


@dataclass(frozen=True, slots=True)
class Service:
    code: str
    prefix: str
    name: Names
    group: str
    department: str
    minutes: float
    target_wait_s: float


@dataclass(frozen=True, slots=True)
class Window:
    id: int
    display: str
    floor: int
    zone: str
    x: float
    y: float
    skills: tuple[str, ...]  # service codes, primary first ("*" already expanded)
    universal: bool
    skill_order: str  # resolved: "rank" | "strict"
    interleave: tuple[int, ...]  # resolved: () = off


@dataclass(frozen=True, slots=True)
class Voice:
    """The ``[voice]`` table: what the speakers say; the wording rules are in :mod:`voice.templates`."""

    languages: tuple[str, ...] = ("zh", "en")  # spoken in this order
    templates: Mapping[str, str] = field(default_factory=dict)  # the hall's own, by language; others default
    repeat: int = 1  # times each announcement is played
    chime: bool = True
    rate: int = 150  # words per minute
    silent_zones: frozenset[str] = frozenset()  # calls shown on screens, never spoken


@dataclass(frozen=True, slots=True)
class Integration:
    """An integration client of the HTTP API: its key and rate limit (``[integrations.<name>]``).

    Attributes:
        name: the client's name (the table's name), e.g. ``"wechat"``.
        key: its API key (header ``X-API-Key``).
        rate_per_s: requests per second it may send on average.
        burst: requests it may send at once.
        webhook_url: where ticket events are posted, or None.
        webhook_secret: the HMAC key of those posts, or None.
    """

    name: str
    key: str
    rate_per_s: float
    burst: int
    webhook_url: str | None = None
    webhook_secret: str | None = None


@dataclass(frozen=True, slots=True)
class Qr:
    """The ``[qr]`` table: how long signed QR payloads live and how the door code rotates."""

    ticket_valid_s: float = 24 * 3600.0  # ticket QR lifetime after issue (appointments: at least to slot end + grace)
    door_rotate_s: float = 300.0
    doors: tuple[str, ...] = ("main",)  # entrances that show a door code


@dataclass(frozen=True, slots=True)
class Hall:
    id: str
    name: Names
    timezone: str
    number_width: int
    reset_daily: bool
    hours: Hours
    appointments: Appointments
    policy: Policy
    groups: tuple[Group, ...]
    floors: tuple[Floor, ...]
    zones: tuple[Zone, ...]
    services: tuple[Service, ...]
    windows: tuple[Window, ...]
    tokens: Mapping[str, frozenset[str]]
    voice: Voice = Voice()
    qr: Qr = Qr()
    issuing: Issuing = Issuing()
    regulation: Regulation = Regulation()
    source: str = ""
    services_by_code: Mapping[str, Service] = field(default_factory=dict, repr=False)
    windows_by_id: Mapping[int, Window] = field(default_factory=dict, repr=False)
    zones_by_id: Mapping[str, Zone] = field(default_factory=dict, repr=False)
    tz: ZoneInfo = field(default=None, repr=False)  # type: ignore[assignment]
    integrations: Mapping[str, Integration] = field(default_factory=dict, repr=False)  # name -> client

    def local_time(self, at: float) -> datetime:
        """The hall's local wall-clock time at POSIX time *at*."""
        return datetime.fromtimestamp(at, self.tz)

    def unserved_services(self) -> tuple[str, ...]:
        """Codes of the services no window has the skill for: their tickets can never be called."""
        served = {code for w in self.windows for code in w.skills}
        return tuple(s.code for s in self.services if s.code not in served)

    def role_of(self, token: str) -> str | None:
        """The role a device token belongs to, or None."""
        for role, tokens in self.tokens.items():
            if token in tokens:
                return role
        return None

    def summary(self) -> dict[str, Any]:
        """A plain-data view of the hall (what ``callsys config show --json`` prints)."""
        return _plain(self)


def _plain(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return {
            name: _plain(getattr(value, name))
            for name in value.__dataclass_fields__
            if name not in {"services_by_code", "windows_by_id", "zones_by_id", "tz"}
            and getattr(value, name) is not None
        }
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list, frozenset, set)):
        items = [_plain(v) for v in value]
        return sorted(items) if isinstance(value, (frozenset, set)) else items
    return value


# --------------------------------------------------------------------------- loading


def load_hall(path: str | Path) -> Hall:
    """Read and compile the hall file at *path*.

    Raises:
        ConfigError: the file is missing, is not TOML, or breaks the schema or a rule;
            the message names the file, the key and the problem.
    """
    return hall_from_mapping(read_toml(path), source=str(path))


def hall_from_mapping(data: Mapping[str, Any], *, source: str = "<memory>") -> Hall:
    """Validate and compile an already parsed hall file (the tests build halls this way)."""
    return compile_hall(validate(schema.HallFile, data, source), source=source)


def read_toml(path: str | Path) -> dict[str, Any]:
    """The parsed TOML file at *path* (hall files, scenario files).

    Raises:
        ConfigError: the file is missing or is not TOML.
    """
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(str(path), "", "file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), "", f"not valid TOML: {exc}") from None


def validate(model: type[M], data: Mapping[str, Any], source: str) -> M:
    """*data* checked against the pydantic *model*; the first problem as a ConfigError."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(source, _key(first["loc"]), _problem(first)) from None


def _key(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not str(part).startswith(("tuple[", "function-")):
            out += ("." if out else "") + str(part)
    return out


def _problem(error: Mapping[str, Any]) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "missing":
        return "required key is missing"
    return f"{error['msg']} (got {error.get('input')!r})"


class _Compiler:
    """Turns a schema-checked :class:`HallFile` into a :class:`Hall`, checking references."""

    def __init__(self, spec: schema.HallFile, source: str) -> None:
        self.spec = spec
        self.source = source

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.source, key, problem)

    def unique(self, items: tuple[Any, ...], attr: str, table: str) -> None:
        seen: dict[Any, int] = {}
        for i, item in enumerate(items):
            value = getattr(item, attr)
            if value in seen:
                raise self.fail(f"{table}[{i}].{attr}", f"duplicate {attr} {value!r} (also {table}[{seen[value]}])")
            seen[value] = i

    def run(self) -> Hall:
        spec = self.spec
        try:
            tz = ZoneInfo(spec.hall.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise self.fail("hall.timezone", f"unknown time zone {spec.hall.timezone!r}") from None
        groups = self.groups()
        floors = self.floors()
        zones = self.zones(floors)
        services = self.services(groups)
        policy = self.policy()
        windows = self.windows(zones, services, policy, floors)
        hours = self.hours()
        appointments = self.appointments(services, hours)
        tokens = self.tokens()
        voice = self.voice(zones)
        return Hall(
            id=spec.hall.id,
            name=_names(spec.hall.name),
            timezone=spec.hall.timezone,
            number_width=spec.hall.number_width,
            reset_daily=spec.hall.reset_numbers == "daily",
            hours=hours,
            appointments=appointments,
            policy=policy,
            groups=groups,
            floors=floors,
            zones=zones,
            services=services,
            windows=windows,
            tokens=tokens,
            voice=voice,
            qr=Qr(spec.qr.ticket_valid_hours * 3600, spec.qr.door_rotate_minutes * 60, tuple(spec.qr.doors)),
            issuing=self.issuing(services),
            regulation=self.regulation(),
            source=self.source,
            services_by_code=MappingProxyType({s.code: s for s in services}),
            windows_by_id=MappingProxyType({w.id: w for w in windows}),
            zones_by_id=MappingProxyType({z.id: z for z in zones}),
            tz=tz,
            integrations=self.integrations(tokens),
        )

    def groups(self) -> tuple[Group, ...]:
        self.unique(self.spec.groups, "code", "groups")
        return tuple(Group(g.code, _names(g.name)) for g in self.spec.groups)

    def floors(self) -> tuple[Floor, ...]:
        self.unique(self.spec.floors, "number", "floors")
        return tuple(Floor(f.number, _names(f.name), f.width, f.depth) for f in self.spec.floors)

    def zones(self, floors: tuple[Floor, ...]) -> tuple[Zone, ...]:
        self.unique(self.spec.zones, "id", "zones")
        by_number = {f.number: f for f in floors}
        for i, z in enumerate(self.spec.zones):
            if z.floor not in by_number:
                raise self.fail(f"zones[{i}].floor", f"unknown floor {z.floor} (floors: {sorted(by_number)})")
            if z.area is not None:
                x, y, width, depth = z.area
                floor = by_number[z.floor]
                if width <= 0 or depth <= 0 or x < 0 or y < 0 or x + width > floor.width or y + depth > floor.depth:
                    raise self.fail(f"zones[{i}].area", f"zone {z.id!r} area {list(z.area)} must have a positive "
                                                        f"size and lie inside floor {z.floor} "
                                                        f"({floor.width:g} x {floor.depth:g} m)")
        return tuple(Zone(z.id, z.floor, _names(z.name), z.area) for z in self.spec.zones)

    def services(self, groups: tuple[Group, ...]) -> tuple[Service, ...]:
        self.unique(self.spec.services, "code", "services")
        self.unique(self.spec.services, "prefix", "services")
        codes = {g.code for g in groups}
        for i, s in enumerate(self.spec.services):
            if s.group not in codes:
                raise self.fail(f"services[{i}].group", f"unknown group {s.group!r}")
        return tuple(
            Service(s.code, s.prefix, _names(s.name), s.group, s.department, s.minutes, s.target_wait_min * 60)
            for s in self.spec.services
        )

    def policy(self) -> Policy:
        p = self.spec.policy
        return Policy(
            appointment_credit_s=p.appointment_credit_min * 60,
            green_credit_s=p.green_credit_min * 60,
            appointment_class=p.appointment_class,
            interleave=tuple(p.interleave),
            wait_threshold=p.wait_threshold,
            skill_order=p.skill_order,
            recall_limit=p.recall_limit,
            requeue=p.requeue,
        )

    def issuing(self, services: tuple[Service, ...]) -> Issuing:
        return compile_issuing(self.spec.issuing, services, source=self.source)

    def regulation(self) -> Regulation:
        r = self.spec.regulation
        return Regulation(r.auto, r.scope, r.open_windows, r.max_moves_per_hour, r.min_stay_min * 60.0,
                          r.check_every_min * 60.0)

    def windows(self, zones, services, policy, floors) -> tuple[Window, ...]:
        zone_by_id = {z.id: z for z in zones}
        floor_by_no = {f.number: f for f in floors}
        codes = [s.code for s in services]
        windows: list[tuple[str, Window]] = []
        for i, w in enumerate(self.spec.windows):
            key = f"windows[{i}]"
            windows.append((key, self.window(key, w, w.id, w.display, w.x, w.y, zone_by_id, codes, policy)))
        for b, block in enumerate(self.spec.window_blocks):
            key = f"window_blocks[{b}]"
            for n in range(block.count):
                row, col = divmod(n, block.per_row)
                x = block.origin[0] + col * block.spacing[0]
                y = block.origin[1] + row * block.spacing[1]
                window = self.window(key, block, block.first_id + n, None, x, y, zone_by_id, codes, policy)
                windows.append((key, window))
        if not windows:
            raise self.fail("windows", "the hall has no windows (add [[windows]] or [[window_blocks]])")
        seen_id: dict[int, str] = {}
        seen_display: dict[str, str] = {}
        for key, w in windows:
            if w.id in seen_id:
                raise self.fail(f"{key}.id", f"duplicate window id {w.id} (also in {seen_id[w.id]})")
            if w.display in seen_display:
                raise self.fail(f"{key}.display", f"duplicate display number {w.display!r} (also in {seen_display[w.display]})")
            seen_id[w.id] = key
            seen_display[w.display] = key
            floor = floor_by_no[w.floor]
            if not (0 <= w.x <= floor.width and 0 <= w.y <= floor.depth):
                raise self.fail(f"{key}", f"window {w.id} at ({w.x:g}, {w.y:g}) lies outside floor {w.floor} "
                                          f"({floor.width:g} x {floor.depth:g} m)")
        return tuple(w for _, w in windows)

    def window(self, key, spec, wid, display, x, y, zone_by_id, codes, policy) -> Window:
        if spec.zone not in zone_by_id:
            raise self.fail(f"{key}.zone", f"unknown zone {spec.zone!r}")
        universal = UNIVERSAL in spec.skills
        if universal and len(spec.skills) > 1:
            raise self.fail(f"{key}.skills", "'*' (every service) must stand alone")
        for j, code in enumerate(spec.skills):
            if not universal and code not in codes:
                raise self.fail(f"{key}.skills[{j}]", f"unknown service {code!r}")
        if len(set(spec.skills)) != len(spec.skills):
            raise self.fail(f"{key}.skills", "a service is listed twice")
        return Window(
            id=wid,
            display=display or str(wid),
            floor=zone_by_id[spec.zone].floor,
            zone=spec.zone,
            x=x,
            y=y,
            skills=tuple(codes) if universal else tuple(spec.skills),
            universal=universal,
            skill_order=spec.skill_order or policy.skill_order,
            interleave=tuple(spec.interleave if spec.interleave is not None else policy.interleave),
        )

    def hours(self) -> Hours:
        h = self.spec.hours
        week = tuple(tuple(schema.parse_session(s) for s in getattr(h, day)) for day in WEEKDAYS)
        if not any(week):
            raise self.fail("hours", "the hall is never open")
        for d, day in enumerate(WEEKDAYS):
            for start, end in week[d]:
                if end - start <= h.issue_cutoff_min:
                    raise self.fail(f"hours.{day}", "a session is shorter than issue_cutoff_min")
        return Hours(week, h.issue_cutoff_min)

    def appointments(self, services, hours: Hours) -> Appointments:
        a = self.spec.appointments
        codes = {s.code for s in services}
        for code in a.capacity:
            if code not in codes:
                raise self.fail(f"appointments.capacity.{code}", f"unknown service {code!r}")
        for d, day in enumerate(WEEKDAYS):
            for start, end in hours.week[d]:
                if (end - start) % a.slot_minutes:
                    raise self.fail(
                        "appointments.slot_minutes",
                        f"a slot grid of {a.slot_minutes} min does not fit the session "
                        f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d} on {day}",
                    )
        capacity = {s.code: a.capacity.get(s.code, a.default_capacity) for s in services}
        return Appointments(
            slot_minutes=a.slot_minutes,
            capacity=MappingProxyType(capacity),
            early_checkin_s=a.early_checkin_min * 60,
            late_grace_s=a.late_grace_min * 60,
            late_rule=a.late_rule,
            no_show_limit=a.no_show_limit,
            no_show_window_days=a.no_show_window_days,
            no_show_block_days=a.no_show_block_days,
        )

    def tokens(self) -> Mapping[str, frozenset[str]]:
        owner: dict[str, str] = {}
        for role in ROLES:
            for i, token in enumerate(getattr(self.spec.tokens, role)):
                if token in owner:
                    raise self.fail(f"tokens.{role}[{i}]", f"token already given to role {owner[token]!r}")
                owner[token] = role
        return MappingProxyType({role: frozenset(getattr(self.spec.tokens, role)) for role in ROLES})

    def integrations(self, tokens: Mapping[str, frozenset[str]]) -> Mapping[str, Integration]:
        owner: dict[str, str] = {token: f"tokens.{role}" for role, values in tokens.items() for token in values}
        clients = {}
        for name, spec in self.spec.integrations.items():
            if not re.match(schema.INTEGRATION_NAME, name):
                raise self.fail(f"integrations.{name}", "a client name is 1-32 of a-z, 0-9, '_' and '-'")
            if spec.key in owner:
                raise self.fail(f"integrations.{name}.key", f"key already given to {owner[spec.key]}")
            owner[spec.key] = f"integrations.{name}"
            if spec.webhook_url is not None:  # callsys.server.webhooks posts there
                if not re.match(r"^https?://[^/?#\s]+", spec.webhook_url):
                    raise self.fail(f"integrations.{name}.webhook_url", "an http:// or https:// URL")
                if not spec.webhook_secret:
                    raise self.fail(f"integrations.{name}.webhook_secret",
                                    "required with webhook_url: the posts are signed with it")
            clients[name] = Integration(name, spec.key, spec.rate_per_s, spec.burst, spec.webhook_url,
                                        spec.webhook_secret)
        return MappingProxyType(clients)

    def voice(self, zones: tuple[Zone, ...]) -> Voice:
        v = self.spec.voice
        known = schema.VOICE_LANGUAGES
        for i, lang in enumerate(v.languages):
            if lang not in known:
                raise self.fail(f"voice.languages[{i}]", f"unknown language {lang!r} (known: {', '.join(known)})")
            if lang in v.languages[:i]:
                raise self.fail(f"voice.languages[{i}]", f"language {lang!r} is listed twice")
        for lang, template in v.templates.items():
            if lang not in known:
                raise self.fail(f"voice.templates.{lang}", f"unknown language {lang!r} (known: {', '.join(known)})")
            problem = _template_problem(template)
            if problem:
                raise self.fail(f"voice.templates.{lang}", problem)
        zone_ids = [z.id for z in zones]
        for i, zone in enumerate(v.silent_zones):
            if zone not in zone_ids:
                raise self.fail(f"voice.silent_zones[{i}]", f"unknown zone {zone!r}")
        return Voice(tuple(v.languages), MappingProxyType(dict(v.templates)), v.repeat, v.chime, v.rate,
                     frozenset(v.silent_zones))


_PLACEHOLDERS: Final = ("number", "window")


def _template_problem(template: str) -> str | None:
    """What is wrong with an announcement template, or None: it must use {number} and {window} only."""
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        return f"not a valid template: {exc} (got {template!r})"
    if any(spec or conv for _, name, spec, conv in string.Formatter().parse(template) if name is not None):
        return f"{{number}} and {{window}} take no format spec or conversion (got {template!r})"
    unknown = sorted(set(fields) - set(_PLACEHOLDERS))
    if unknown:
        return f"unknown placeholder {{{unknown[0]}}}; a template may use {{number}} and {{window}} (got {template!r})"
    missing = [name for name in _PLACEHOLDERS if name not in fields]
    if missing:
        return f"the template must contain {{{missing[0]}}} (got {template!r})"
    return None


def compile_issuing(spec: schema.IssuingSpec, services: tuple[Service, ...], *, source: str) -> Issuing:
    """The :class:`Issuing` policy of an ``[issuing]`` table (a hall file's, or a simulator
    scenario's that stands in for its hall's).

    Raises:
        ConfigError: a cap names a service the hall does not offer.
    """
    codes = {s.code for s in services}
    for code in spec.daily_cap:
        if code not in codes:
            raise ConfigError(source, f"issuing.daily_cap.{code}", f"unknown service {code!r}")
    return Issuing(MappingProxyType(dict(spec.daily_cap)), spec.cutoff, spec.cutoff_margin_min * 60)


def compile_hall(spec: schema.HallFile, *, source: str = "<memory>") -> Hall:
    """Check the references in *spec* and build the :class:`Hall` the engine reads."""
    return _Compiler(spec, source).run()


def _names(n: schema.NamesSpec) -> Names:
    return Names(n.zh, n.en, n.ja, n.ko)
