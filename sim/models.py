"""The random models: who arrives when, for what, how long they take, how long they wait.

Everything draws from an explicit :class:`numpy.random.Generator`; the same seed gives the
same citizens. :func:`population` draws a whole day of citizens up front, independent of
the windows, so runs that differ only in staffing (the planner) face the same crowd.

The models:

* **Arrivals** — a non-homogeneous Poisson process whose rate follows the scenario's daily
  profile (linear between clock points), scaled so a day brings ``visitors`` on average;
  drawn by thinning (Lewis & Shedler).
* **Channels** — each arrival is a kiosk, QR or appointment citizen by the channel shares.
  Appointment citizens book the slot that holds their preferred time, may not come at all
  (``no_show``) and arrive ``late_mean_min`` ± ``late_sd_min`` (normal) around the slot.
* **Services** — by the mix weights (appointments: among the bookable services only).
* **Service times** — lognormal around the hall's expected minutes with a coefficient of
  variation, exponential (the M/M/c case), or resampled from observed times (CSV).
* **Patience** — lognormal or exponential time a citizen will wait before giving up;
  some cancel their ticket, the others just leave (and are later called in vain).
* **Walking and absence** — exponential walk from seat to window; a few are not there.
* **Transfers** — a share is sent on to another service of the same group at the end.
* **Told early** — a citizen the kiosk refuses (the hall's daily cap, or its cutoff set to
  ``"refuse"``) goes home. One it warns that the call is predicted past closing (cutoff
  ``"warn"``) goes home with probability ``warned_leave`` (0.5 by default: no published
  figure; half heed the kiosk) and otherwise queues; the draw is the citizen's own
  (:func:`leaves_when_warned`), the same whatever the staffing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Final, Mapping, Protocol

import numpy as np

from callsys.hall import Hall

from .scenario import Scenario

DAY_MIN: Final = 1440.0
WindowPicker = Callable[[Mapping[int, float], str], int]


@dataclass(slots=True)
class Citizen:
    """One visitor and everything the models decided about them (times in POSIX seconds)."""

    id: int
    channel: str  # "kiosk" | "qr" | "appointment"
    service: str
    green: bool
    arrive: float  # reaches the kiosk / the check-in desk
    slot: float | None  # appointment slot start
    shows: bool  # appointment holders: comes at all
    patience_s: float  # gives up after waiting this long (inf: never)
    silent: bool  # gives up without cancelling the ticket
    walk_s: float  # seat -> called window (inf: not there when called)
    service_s: float
    transfer: str | None  # sent on to this service at the end of the first service
    transfer_s: float
    rating: str
    ticket: int | None = None
    gone: bool = False


# ---------------------------------------------------------------------- arrivals


def profile_area(profile: tuple[tuple[float, float], ...]) -> float:
    """The integral of the profile over the day (rate x minutes)."""
    xs, ys = np.array([p[0] for p in profile]), np.array([p[1] for p in profile])
    return float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2))


def nhpp_minutes(profile: tuple[tuple[float, float], ...], expected: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted arrival minutes of a non-homogeneous Poisson process with mean *expected*.

    The rate is the profile (linear between points, 0 outside) scaled to *expected*
    arrivals per day; candidates at the peak rate are thinned by rate / peak.
    """
    xs = np.array([p[0] for p in profile])
    ys = np.array([p[1] for p in profile])
    scale = expected / profile_area(profile)
    lo, hi, peak = xs[0], xs[-1], ys.max() * scale
    n = rng.poisson(peak * (hi - lo))
    t = rng.uniform(lo, hi, n)
    keep = rng.uniform(0.0, peak, n) < np.interp(t, xs, ys * scale)
    return np.sort(t[keep])


# ---------------------------------------------------------------------- service times


class ServiceTimes(Protocol):
    def sample(self, services: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Service seconds for each service code in *services*."""


@dataclass(frozen=True)
class LognormalTimes:
    """Lognormal service times with the given mean minutes per service and one CV."""

    means: Mapping[str, float]
    cv: float

    def sample(self, services: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        mean = np.array([self.means[s] for s in services]) * 60.0
        sigma = math.sqrt(math.log1p(self.cv**2))
        return np.exp(np.log(mean) - sigma**2 / 2 + sigma * rng.standard_normal(len(services)))


@dataclass(frozen=True)
class ExponentialTimes:
    """Exponential service times (the M/M/c model)."""

    means: Mapping[str, float]

    def sample(self, services: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return rng.exponential(np.array([self.means[s] for s in services]) * 60.0)


@dataclass(frozen=True)
class EmpiricalTimes:
    """Service times resampled from observed minutes per service, times *scale*."""

    table: Mapping[str, tuple[float, ...]]
    scale: float = 1.0

    def sample(self, services: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = np.empty(len(services))
        for code in set(services):
            where = np.flatnonzero(services == code)
            out[where] = rng.choice(np.asarray(self.table[code]), size=len(where)) * 60.0 * self.scale
        return out


def service_time_model(scenario: Scenario) -> ServiceTimes:
    """The service-time model the scenario asks for."""
    st = scenario.service_times
    means = {s.code: st.minutes.get(s.code, s.minutes) * st.scale for s in scenario.hall.services}
    if st.model == "exponential":
        return ExponentialTimes(means)
    if st.model == "empirical":
        return EmpiricalTimes(scenario.empirical, st.scale)
    return LognormalTimes(means, st.cv)


def lognormal(rng: np.random.Generator, mean: float, cv: float, n: int) -> np.ndarray:
    sigma = math.sqrt(math.log1p(cv**2))
    return np.exp(math.log(mean) - sigma**2 / 2 + sigma * rng.standard_normal(n))


def patience_seconds(scenario: Scenario, n: int, rng: np.random.Generator) -> np.ndarray:
    c = scenario.citizens
    if c.patience == "none":
        return np.full(n, math.inf)
    mean = c.patience_mean_min * 60.0
    if c.patience == "exponential":
        return rng.exponential(mean, n)
    return lognormal(rng, mean, c.patience_cv, n)


# ---------------------------------------------------------------------- the crowd


def slot_grid(hall: Hall, weekday: int) -> np.ndarray:
    """Slot start minutes of the appointment grid on *weekday*."""
    step = hall.appointments.slot_minutes
    return np.array([m for start, end in hall.hours.sessions(weekday) for m in range(start, end, step)], dtype=float)


def population(scenario: Scenario, day: int, rng: np.random.Generator,
               times: ServiceTimes | None = None, first_id: int = 0) -> list[Citizen]:
    """Every citizen of simulated day *day* (0-based), drawn from *rng*.

    Args:
        scenario: the demand and behaviour tables.
        day: day index (0 = the scenario's first day).
        rng: the random stream (the same stream gives the same crowd).
        times: the service-time model (the scenario's by default).
        first_id: id of the first citizen drawn.
    """
    hall, times = scenario.hall, times or service_time_model(scenario)
    midnight = scenario.midnight(day)
    minutes = nhpp_minutes(scenario.profile, scenario.arrivals.visitors, rng)
    n = len(minutes)
    channels = np.array(["kiosk", "qr", "appointment"])[
        rng.choice(3, size=n, p=[scenario.channels[c] for c in ("kiosk", "qr", "appointment")])]
    grid = slot_grid(hall, scenario.weekday(day))
    codes = np.array(list(scenario.mix))
    bookable = np.array([hall.appointments.capacity[c] > 0 and scenario.mix[c] > 0 for c in codes])
    if not len(grid) or not bookable.any():
        channels[channels == "appointment"] = "kiosk"
    services = rng.choice(codes, size=n, p=np.array(list(scenario.mix.values())))
    booked = np.flatnonzero(channels == "appointment")
    if len(booked):
        p = np.where(bookable, list(scenario.mix.values()), 0.0)
        services[booked] = rng.choice(codes, size=len(booked), p=p / p.sum())
    a = scenario.appointments
    slots = grid[np.clip(np.searchsorted(grid, minutes, side="right") - 1, 0, len(grid) - 1)] if len(grid) else minutes
    late = rng.normal(a.late_mean_min, a.late_sd_min, n) if a.late_sd_min > 0 else np.full(n, a.late_mean_min)
    shows = rng.random(n) >= a.no_show
    c = scenario.citizens
    green = rng.random(n) < c.green_share
    patience = patience_seconds(scenario, n, rng)
    silent = rng.random(n) < c.silent_abandon
    walk = rng.exponential(c.walk_mean_s, n) if c.walk_mean_s > 0 else np.zeros(n)
    walk[rng.random(n) < c.absent] = math.inf
    service_s = times.sample(services, rng)
    transfer = _transfers(scenario, services, rng)
    transfer_s = times.sample(np.where(transfer == "", services, transfer), rng)
    bad = rng.random(n) < scenario.clerks.bad_rating
    out = []
    for i in range(n):
        appt = channels[i] == "appointment"
        slot = float(midnight + slots[i] * 60.0) if appt else None
        out.append(Citizen(
            id=first_id + i, channel=str(channels[i]), service=str(services[i]), green=bool(green[i]),
            arrive=float(slot + late[i] * 60.0 if appt else midnight + minutes[i] * 60.0), slot=slot,
            shows=bool(shows[i]) if appt else True, patience_s=float(patience[i]), silent=bool(silent[i]),
            walk_s=float(walk[i]), service_s=float(service_s[i]), transfer=str(transfer[i]) or None,
            transfer_s=float(transfer_s[i]), rating="bad" if bad[i] else "good",
        ))
    return out


def _transfers(scenario: Scenario, services: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The service each citizen is sent on to ("" = none): another service of the same group."""
    hall, mix = scenario.hall, scenario.mix
    out = np.full(len(services), "", dtype=object)
    moved = np.flatnonzero(rng.random(len(services)) < scenario.clerks.transfer)
    for i in moved:
        group = hall.services_by_code[services[i]].group
        others = [s.code for s in hall.services if s.group == group and s.code != services[i]]
        if others:
            w = np.array([mix[o] for o in others]) + 1e-9
            out[i] = others[rng.choice(len(others), p=w / w.sum())]
    return out


WARNED_STREAM: Final = 0x3A4E  # the random stream of the citizens' answers to a closing warning


def leaves_when_warned(scenario: Scenario, seed: int, citizen: Citizen) -> bool:
    """Whether *citizen*, warned at the kiosk that the call is predicted past closing, goes home.

    A draw of the citizen's own (from *seed* and its id), not of the crowd's stream: the crowd
    stays the same with or without a cutoff, and the answer with any staffing.
    """
    share = scenario.citizens.warned_leave
    return share > 0 and np.random.default_rng([seed, WARNED_STREAM, citizen.id]).random() < share


def clerk_rng(seed: int, window: int) -> np.random.Generator:
    """The random stream of one window's clerk (breaks...), independent of the other windows.

    One stream per window keeps a clerk's breaks the same when other windows are added
    or removed, so runs that differ in staffing differ only in staffing.
    """
    return np.random.default_rng([seed, 0xC1E2, window])


def break_times(scenario: Scenario, start: float, end: float, rng: np.random.Generator) -> list[float]:
    """When a clerk takes breaks in the session [start, end): uniform times, in order."""
    clerks = scenario.clerks
    n, length = clerks.breaks_per_session, clerks.break_min * 60.0
    if not n or length <= 0 or end - start <= length:
        return []
    return sorted(float(at) for at in rng.uniform(start, end - length, n))


# ---------------------------------------------------------------------- policies


def longest_idle(idle: Mapping[int, float], service: str) -> int:
    """Wake the window idle the longest (the first one in idle order)."""
    return next(iter(idle))


def lowest_id(idle: Mapping[int, float], service: str) -> int:
    """Wake the idle window with the smallest id (fills the front rows first)."""
    return min(idle)
