"""The shape of a scenario file (TOML), checked by pydantic; unknown keys are rejected.

Each table documents its knobs. Units are in the key names (``_min``, ``_s``); shares are
fractions 0..1. References to the hall (service codes, zones) are checked when the
scenario is resolved against its hall, see :mod:`sim.scenario`.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, model_validator

from callsys._schema import IssuingSpec

_CLOCK = re.compile(r"^(\d{2}):(\d{2})$")
Share = float


def parse_clock(text: str) -> float:
    """``"09:30"`` -> 570.0 minutes after midnight (``"24:00"`` allowed)."""
    m = _CLOCK.match(text)
    if not m or int(m.group(1)) > 24 or int(m.group(2)) > 59 or (int(m.group(1)) == 24 and int(m.group(2))):
        raise ValueError(f"{text!r} is not a clock time HH:MM")
    return int(m.group(1)) * 60.0 + int(m.group(2))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


MAX_DAYS = 3650  # simulated days in one run (ten years)
MAX_SEED = 2**32 - 1  # numpy's seeds are 0 ... 2**32 - 1


def check_warmup(warmup_min: float, days: int) -> None:
    """A warm-up must leave part of the run to measure.

    Raises:
        ValueError: it covers the whole run.
    """
    if warmup_min >= days * 24 * 60:
        raise ValueError(f"warmup_min {warmup_min:g} leaves nothing of a {days}-day run to measure "
                         f"(it must be below {days * 24 * 60})")


class ScenarioSpec(_Model):
    name: str = ""
    description: str = ""
    hall: str  # hall file, relative to the scenario file
    date: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")  # first simulated day (local)
    days: int = Field(default=1, ge=1, le=MAX_DAYS)
    seed: int = Field(default=1, ge=0, le=MAX_SEED)
    warmup_min: float = Field(default=0.0, ge=0)  # measurements ignore this start of the run

    @model_validator(mode="after")
    def _warmup_inside_the_run(self) -> "ScenarioSpec":
        check_warmup(self.warmup_min, self.days)
        return self


class ArrivalsSpec(_Model):
    visitors: float = Field(gt=0)  # expected demand per day: walk-ins + booking requests
    # (clock time, relative rate): a non-homogeneous Poisson process, linear between points
    profile: tuple[tuple[str, float], ...] = Field(min_length=2)
    door_wait_min: float = Field(default=30.0, ge=0)  # early birds wait this long for opening


class ChannelsSpec(_Model):
    kiosk: Share = Field(default=0.5, ge=0)
    qr: Share = Field(default=0.3, ge=0)
    appointment: Share = Field(default=0.2, ge=0)


class AppointmentBehaviour(_Model):
    no_show: Share = Field(default=0.3, ge=0, le=1)  # booked but never come
    late_mean_min: float = 0.0  # arrival minus slot start; negative = early
    late_sd_min: float = Field(default=10.0, ge=0)
    slot_full: Literal["walk_in", "give_up"] = "walk_in"  # what a refused booker does


class CitizenBehaviour(_Model):
    green_share: Share = Field(default=0.05, ge=0, le=1)
    patience: Literal["none", "exponential", "lognormal"] = "lognormal"
    patience_mean_min: float = Field(default=90.0, gt=0)
    patience_cv: float = Field(default=0.5, gt=0)
    silent_abandon: Share = Field(default=0.5, ge=0, le=1)  # leave without cancelling
    walk_mean_s: float = Field(default=40.0, ge=0)  # from the seat to the called window
    absent: Share = Field(default=0.02, ge=0, le=1)  # not there when called (never come)
    # told at the kiosk that the call is predicted past closing (hall [issuing] cutoff = "warn"):
    # this share goes home at once, the others queue anyway
    warned_leave: Share = Field(default=0.5, ge=0, le=1)


class ServiceTimesSpec(_Model):
    model: Literal["lognormal", "exponential", "empirical"] = "lognormal"
    cv: float = Field(default=0.6, gt=0)  # lognormal coefficient of variation
    scale: float = Field(default=1.0, gt=0)  # multiplies every mean (e.g. 1.1 on a bad day)
    minutes: dict[str, PositiveFloat] = {}  # per-service mean overrides (else the hall's minutes)
    csv: str = ""  # empirical: columns service,minutes; "*" rows serve any service


class ClerkBehaviour(_Model):
    staffing: Share = Field(default=1.0, ge=0, le=1)  # share of windows opened
    staffing_by_zone: dict[str, Share] = {}
    breaks_per_session: int = Field(default=1, ge=0, le=10)
    break_min: float = Field(default=10.0, ge=0)
    recall_interval_s: float = Field(default=30.0, gt=0)
    wrapup_s: float = Field(default=10.0, ge=0)  # between finishing and calling next
    transfer: Share = Field(default=0.02, ge=0, le=1)  # sent on to another service
    overtime_min: float = Field(default=20.0, ge=0)  # keep serving past the session end
    bad_rating: Share = Field(default=0.02, ge=0, le=1)
    reset_day: bool = True  # send ResetDay at each local midnight (off: sessions run on through midnight)


class MixSpec(_Model):
    default: float = Field(default=1.0, ge=0)  # weight of services not listed
    weights: dict[str, float] = {}


class ScenarioFile(_Model):
    """A whole scenario file, as written."""

    scenario: ScenarioSpec
    arrivals: ArrivalsSpec
    channels: ChannelsSpec = ChannelsSpec()
    appointments: AppointmentBehaviour = AppointmentBehaviour()
    citizens: CitizenBehaviour = CitizenBehaviour()
    service_times: ServiceTimesSpec = ServiceTimesSpec()
    clerks: ClerkBehaviour = ClerkBehaviour()
    mix: MixSpec = MixSpec()
    # the hall's daily caps and cutoff for this scenario (the hall file's [issuing] shape);
    # absent: the hall's own
    issuing: IssuingSpec | None = None
