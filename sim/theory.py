"""Queueing theory the simulator is checked against: Erlang C for the M/M/c queue.

For c servers, Poisson arrivals at rate λ and exponential service at rate μ each, with
offered load a = λ/μ < c:

* the probability an arrival has to wait is Erlang C, ``C(c, a)``;
* the mean wait in queue is ``Wq = C(c, a) / (c·μ − λ)``;
* the wait is 0 with probability 1 − C, else exponential with rate c·μ − λ;
* Little's law gives the mean queue length ``Lq = λ·Wq``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .scenario import Scenario


def erlang_b(c: int, a: float) -> float:
    """Erlang B blocking probability, by the stable recurrence B(k) = a·B(k−1) / (k + a·B(k−1))."""
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    return b


def erlang_c(c: int, a: float) -> float:
    """The probability of waiting in an M/M/c queue with offered load *a* erlangs.

    Raises:
        ValueError: the queue is unstable (a >= c) or c < 1.
    """
    if c < 1 or a < 0 or a >= c:
        raise ValueError(f"M/M/c needs c >= 1 and 0 <= a < c (got c={c}, a={a})")
    b = erlang_b(c, a)
    return c * b / (c - a * (1 - b))


def offered_load(scenario: Scenario) -> dict[str, float]:
    """Service code -> offered load λ·E[S] in erlangs, averaged over the first day's opening hours.

    λ is the service's share of the day's visitors spread over the minutes the hall is open
    on the first simulated day (people who come before opening are served after it); a
    day the hall is closed falls back to the span of the arrival profile. E[S] is the
    scenario's mean service time (the empirical model: the observed mean). Appointment
    no-shows, abandonment and transfers are ignored: this is a starting point for
    planning, not a prediction.
    """
    open_min = sum(end - start for start, end in scenario.hall.hours.sessions(scenario.weekday(0)))
    if open_min <= 0:
        points = scenario.profile
        live = [i for i, ((_, r1), (_, r2)) in enumerate(zip(points, points[1:])) if r1 > 0 or r2 > 0]
        open_min = points[live[-1] + 1][0] - points[live[0]][0] if live else 1440.0
    st = scenario.service_times
    out = {}
    for service in scenario.hall.services:
        observed = scenario.empirical.get(service.code)
        minutes = (sum(observed) / len(observed) if observed else st.minutes.get(service.code, service.minutes)) * st.scale
        out[service.code] = scenario.arrivals.visitors * scenario.mix.get(service.code, 0.0) * minutes / open_min
    return out


@dataclass(frozen=True, slots=True)
class MMc:
    """An M/M/c queue: arrival rate and service rate per second, c servers."""

    arrival_rate: float
    service_rate: float
    servers: int

    @property
    def load(self) -> float:
        return self.arrival_rate / self.service_rate

    @property
    def utilisation(self) -> float:
        return self.load / self.servers

    @property
    def p_wait(self) -> float:
        return erlang_c(self.servers, self.load)

    @property
    def mean_wait_s(self) -> float:
        return self.p_wait / (self.servers * self.service_rate - self.arrival_rate)

    @property
    def mean_queue(self) -> float:
        return self.arrival_rate * self.mean_wait_s

    def wait_quantile_s(self, q: float) -> float:
        """The q-quantile (0..1) of the wait: 0 below 1 − C, exponential tail above."""
        tail = 1 - q
        if tail >= self.p_wait:
            return 0.0
        return math.log(self.p_wait / tail) / (self.servers * self.service_rate - self.arrival_rate)


def mmc_of(scenario: Scenario) -> MMc:
    """The M/M/c queue a scenario describes.

    Raises:
        ValueError: the scenario is not an M/M/c case (several services, a non-flat
            profile, non-exponential service, appointments, abandonment, walking, breaks...).
    """
    hall, c, z = scenario.hall, scenario.citizens, scenario.clerks
    problems = [
        (len(hall.services) != 1, "the hall offers more than one service"),
        (scenario.service_times.model != "exponential", "service times are not exponential"),
        (len({r for _, r in scenario.profile}) != 1 or scenario.profile[0][0] != 0
         or scenario.profile[-1][0] != 1440, "the arrival rate is not constant all day"),
        (scenario.channels["appointment"] > 0, "some citizens book appointments"),
        (c.patience != "none" or c.walk_mean_s or c.absent or c.green_share, "citizens give up, walk or skip"),
        (z.breaks_per_session or z.wrapup_s or z.transfer or z.staffing < 1, "clerks pause, wrap up or transfer"),
    ]
    for bad, why in problems:
        if bad:
            raise ValueError(f"scenario {scenario.name!r} is not M/M/c: {why}")
    service = hall.services[0]
    minutes = scenario.service_times.minutes.get(service.code, service.minutes) * scenario.service_times.scale
    return MMc(scenario.arrivals.visitors / 86_400.0, 1 / (minutes * 60.0), len(hall.windows))


def compare(scenario: Scenario, mean_waits_min: list[float],
            p_waits: list[float] | None = None) -> dict[str, float] | None:
    """Simulated figures (one per replication) against Erlang C; None if not M/M/c.

    Args:
        scenario: the scenario run.
        mean_waits_min: the mean wait of each replication (minutes).
        p_waits: the share of called citizens who waited more than 0 s in each replication
            (``p_wait`` of :func:`sim.metrics.wait_stats`), compared with Erlang C's P(wait).

    Returns:
        Erlang C's and the simulation's mean wait and their relative error ``rel_err``; with
        *p_waits*, also ``sim_p_wait`` and the absolute difference ``p_wait_abs_err``.
    """
    try:
        q = mmc_of(scenario)
    except ValueError:
        return None
    sim = sum(mean_waits_min) / len(mean_waits_min)
    theory = q.mean_wait_s / 60
    out = {
        "servers": q.servers,
        "utilisation": q.utilisation,
        "erlang_c_p_wait": q.p_wait,
        "erlang_c_wait_min": theory,
        "sim_wait_min": sim,
        "replications": len(mean_waits_min),
        "rel_err": abs(sim - theory) / theory,
    }
    if p_waits:
        out["sim_p_wait"] = sum(p_waits) / len(p_waits)
        out["p_wait_abs_err"] = abs(out["sim_p_wait"] - q.p_wait)
    return out
