"""Scenario files: who comes to the hall, when, for what, and how they and the clerks behave.

A scenario is a TOML file in ``sim/scenarios/`` that names a hall file and describes one
or more days of demand. :mod:`sim._scenario_schema` checks its shape (unknown keys are
rejected); :func:`load_scenario` resolves the hall and the references into a
:class:`Scenario`, raising :class:`~callsys.errors.ConfigError` with file and key.

``callsys sim run qingdao-peak-monday`` finds ``sim/scenarios/qingdao-peak-monday.toml``;
a path works too. Paths inside a scenario (the hall, an empirical CSV) are relative to the
scenario file.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Mapping


from callsys.errors import ConfigError
from callsys.hall import Hall, compile_issuing, load_hall, read_toml, validate

from . import _scenario_schema as schema

SCENARIO_DIR: Final = Path(__file__).parent / "scenarios"
CHANNELS: Final = ("kiosk", "qr", "appointment")


@dataclass(frozen=True, slots=True)
class Scenario:
    """A loaded scenario: the hall it runs on plus the checked behaviour tables.

    Attributes:
        name: the scenario's name (file stem unless given).
        hall: the compiled hall the simulation runs on.
        first_day: the first simulated local date.
        start: local midnight of the first day, POSIX seconds.
        profile: (minute of the day, relative rate) points; linear in between, 0 outside.
        mix: every service code -> its share of demand (sums to 1).
        empirical: service code -> observed service minutes (empirical model only).
    """

    name: str
    description: str
    source: str
    hall: Hall
    first_day: date
    start: float
    days: int
    seed: int
    warmup_s: float
    arrivals: schema.ArrivalsSpec
    profile: tuple[tuple[float, float], ...]
    channels: Mapping[str, float]
    appointments: schema.AppointmentBehaviour
    citizens: schema.CitizenBehaviour
    service_times: schema.ServiceTimesSpec
    clerks: schema.ClerkBehaviour
    mix: Mapping[str, float]
    empirical: Mapping[str, tuple[float, ...]]

    @property
    def end(self) -> float:
        """Local midnight after the last day (the end of the simulated horizon)."""
        return self.midnight(self.days)

    def midnight(self, day: int) -> float:
        """Local midnight starting simulated day *day* (0-based), POSIX seconds."""
        return datetime.combine(self.first_day + timedelta(days=day), time(), self.hall.tz).timestamp()

    def weekday(self, day: int) -> int:
        """0 = Monday, of simulated day *day*."""
        return (self.first_day + timedelta(days=day)).weekday()

    def with_hall(self, hall: Hall) -> "Scenario":
        """The same scenario on another hall (the planner's resized halls)."""
        return replace(self, hall=hall)

    def adjusted(self, *, days: int | None = None, visitors: float | None = None) -> "Scenario":
        """The same scenario with another number of days and/or daily visitors (None: keep)."""
        out = self
        if days is not None:
            if not 1 <= days <= schema.MAX_DAYS:
                raise ConfigError(self.source, "scenario.days", f"days must be 1 ... {schema.MAX_DAYS}, got {days}")
            try:
                schema.check_warmup(self.warmup_s / 60.0, days)
            except ValueError as exc:
                raise ConfigError(self.source, "scenario.warmup_min", str(exc)) from None
            out = replace(out, days=days)
        if visitors is not None:
            if visitors <= 0:
                raise ConfigError(self.source, "arrivals.visitors", f"visitors must be > 0, got {visitors}")
            out = replace(out, arrivals=out.arrivals.model_copy(update={"visitors": visitors}))
        return out


def resolve(name_or_path: str | Path) -> Path:
    """The scenario file for a path, or for a bare name in ``sim/scenarios/``."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        return path
    return SCENARIO_DIR / f"{path.name}.toml"


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Read, check and resolve a scenario file.

    Raises:
        ConfigError: the file (or the hall it names) is missing or wrong; the message
            names the file, the key and the problem.
    """
    path = resolve(name_or_path)
    return scenario_from_mapping(read_toml(path), source=str(path), base=path.parent)


def scenario_from_mapping(data: Mapping[str, Any], *, source: str = "<memory>", base: Path = Path(".")) -> Scenario:
    """Check and resolve an already parsed scenario (tests build scenarios this way)."""
    return _Resolver(validate(schema.ScenarioFile, data, source), source, base).run()


class _Resolver:
    def __init__(self, spec: schema.ScenarioFile, source: str, base: Path) -> None:
        self.spec, self.source, self.base = spec, source, base

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.source, key, problem)

    def run(self) -> Scenario:
        spec = self.spec
        hall = load_hall(self.base / spec.scenario.hall)
        if spec.issuing is not None:  # the scenario's issuing policy stands in for the hall's
            hall = replace(hall, issuing=compile_issuing(spec.issuing, hall.services, source=self.source))
        codes = [s.code for s in hall.services]
        try:
            first = date.fromisoformat(spec.scenario.date)
        except ValueError:
            raise self.fail("scenario.date", f"not a date: {spec.scenario.date!r}") from None
        return Scenario(
            name=spec.scenario.name or Path(self.source).stem,
            description=spec.scenario.description,
            source=self.source,
            hall=hall,
            first_day=first,
            start=datetime.combine(first, time(), hall.tz).timestamp(),
            days=spec.scenario.days,
            seed=spec.scenario.seed,
            warmup_s=spec.scenario.warmup_min * 60.0,
            arrivals=spec.arrivals,
            profile=self.profile(),
            channels=self.channels(),
            appointments=spec.appointments,
            citizens=spec.citizens,
            service_times=spec.service_times,
            clerks=self.clerks(hall),
            mix=self.mix(codes),
            empirical=self.empirical(codes),
        )

    def profile(self) -> tuple[tuple[float, float], ...]:
        try:
            points = tuple((schema.parse_clock(t), float(r)) for t, r in self.spec.arrivals.profile)
        except ValueError as exc:
            raise self.fail("arrivals.profile", str(exc)) from None
        if any(r < 0 for _, r in points):
            raise self.fail("arrivals.profile", "rates must be >= 0")
        minutes = [m for m, _ in points]
        if minutes != sorted(minutes) or len(set(minutes)) != len(minutes):
            raise self.fail("arrivals.profile", "points must be in increasing clock order")
        area = sum((m2 - m1) * (r1 + r2) / 2 for (m1, r1), (m2, r2) in zip(points, points[1:]))
        if area < 1e-3:
            raise self.fail("arrivals.profile", "the profile is zero (or nearly) everywhere")
        return points

    def channels(self) -> Mapping[str, float]:
        shares = self.spec.channels.model_dump()
        total = sum(shares.values())
        if total <= 0:
            raise self.fail("channels", "channel shares must not all be zero")
        return MappingProxyType({c: shares[c] / total for c in CHANNELS})

    def mix(self, codes: list[str]) -> Mapping[str, float]:
        m = self.spec.mix
        for code in m.weights:
            if code not in codes:
                raise self.fail(f"mix.weights.{code}", f"unknown service {code!r} in hall")
        weights = {code: m.weights.get(code, m.default) for code in codes}
        total = sum(weights.values())
        if total <= 0:
            raise self.fail("mix", "every service has weight 0")
        return MappingProxyType({code: w / total for code, w in weights.items()})

    def clerks(self, hall: Hall) -> schema.ClerkBehaviour:
        zones = {z.id for z in hall.zones}
        for zone in self.spec.clerks.staffing_by_zone:
            if zone not in zones:
                raise self.fail(f"clerks.staffing_by_zone.{zone}", f"unknown zone {zone!r} in hall")
        return self.spec.clerks

    def empirical(self, codes: list[str]) -> Mapping[str, tuple[float, ...]]:
        st = self.spec.service_times
        for code in st.minutes:
            if code not in codes:
                raise self.fail(f"service_times.minutes.{code}", f"unknown service {code!r} in hall")
        if st.model != "empirical":
            return MappingProxyType({})
        if not st.csv:
            raise self.fail("service_times.csv", "the empirical model needs a CSV file (columns service, minutes)")
        table = read_service_times(self.base / st.csv)
        missing = [c for c in codes if c not in table]
        if missing and not table.get("*"):
            raise self.fail("service_times.csv", f"no observations for {', '.join(missing[:5])} (and no '*' rows)")
        return MappingProxyType({c: table.get(c) or table["*"] for c in codes})


def read_service_times(path: Path) -> dict[str, tuple[float, ...]]:
    """Observed service times from a CSV with columns ``service,minutes`` (``*`` = any service).

    Raises:
        ConfigError: the file is missing or a row is malformed.
    """
    table: dict[str, list[float]] = {}
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            for i, row in enumerate(csv.DictReader(fh), start=2):
                try:
                    minutes = float(row["minutes"])
                    code = row["service"].strip()
                except (KeyError, TypeError, ValueError):
                    raise ConfigError(str(path), f"line {i}", "expected columns service,minutes") from None
                if minutes <= 0:
                    raise ConfigError(str(path), f"line {i}", f"minutes must be > 0, got {minutes}")
                table.setdefault(code, []).append(minutes)
    except FileNotFoundError:
        raise ConfigError(str(path), "", "service-time CSV not found") from None
    return {code: tuple(values) for code, values in table.items()}
