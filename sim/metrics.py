"""Figures from a run's records: waits, service levels, utilisation, queues, Little's law.

Definitions (also in ``docs/simulator.md``):

* **wait** — from the moment a ticket can be called (number taken; for an appointment the
  later of check-in and slot start) to its first call. Only citizens still present when
  called count; those who gave up are *abandoned*.
* **P(wait > 0)** — the share of those called citizens (the same ones the wait quantiles
  describe) whose wait was more than 0 s: a number taken while a window was free and
  called at once did not wait. Citizens who gave up before their call are left out, as in
  every wait figure (all of them waited; *within target* counts them as misses). Without
  abandonment this is the probability of waiting that Erlang C gives for the M/M/c queue.
* **within target** — citizens called within their service's ``target_wait_min``, as a
  share of *everyone who queued* (abandoned and never-called citizens count as misses).
* **punctuality** — for appointment holders who checked in: when they arrived against
  their slot's start (negative = early), and their *wait after slot start*, first call −
  slot start. Early arrivals are held until the slot begins, so for them it is the wait;
  late ones add their own lateness (those past the slot and its grace queue as walk-ins).
  ``within_target_after_slot`` is the share of them called within their service's target
  after the slot start (those who gave up or were never called count as misses).
* **utilisation** — time a window had a citizen called or at the counter, over the time
  it was open and not on a break.
* **waiting citizens** — the time-average number of tickets in the queue, per zone (the
  home zone of the ticket's service) and per time bin.
* **Little's law** — L, the time-average queue size as counted by *the engine* after each
  command, against λ·W from the tracker's waiting spells; both over the measured period.
* **issuing** — honest issuing (the hall's ``[issuing]``): citizens *told early* at the kiosk
  and sent home — refused by a daily cap, refused by the cutoff, or warned that their call is
  predicted past closing and leaving (their ticket, cancelled at once, never counts as
  queued) — against citizens who *gave up* after queueing (abandoned), with how long those
  had waited (median, minutes) and the share told early = told early / (told early + gave up).
  Counted over the whole run (the refusals leave no ticket to date).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Final, Iterable

import numpy as np

from .scenario import Scenario
from .tracker import TicketRecord, Tracker

QUANTILES: Final = (50, 90, 99)
QUEUE_BIN_S: Final = 300.0  # queue-over-the-day resolution
MAX_QUEUE_BINS: Final = 600
CHANNEL_ORDER: Final = ("kiosk", "qr", "appointment")

__all__ = ["Tracker", "summarise", "wait_stats", "punctuality_stats", "appointment_holders", "binned_average",
           "little"]


def wait_stats(records: Iterable[TicketRecord], targets: dict[str, float]) -> dict[str, Any]:
    """Wait figures for *records* (tickets that queued in the measured period).

    Args:
        records: the tickets that queued.
        targets: service code -> target wait (s).

    Returns:
        ``queued``, ``called`` (called while still present), ``p_wait`` (share of the called
        who waited more than 0 s), ``mean_min``, ``p50_min``, ``p90_min``, ``p99_min``,
        ``max_min`` (the wait of the called, minutes; absent when nobody was called) and
        ``within_target`` (share of *all* who queued called within their service's target).
    """
    records = list(records)
    waits = np.array([r.called - r.eligible for r in records if r.called is not None and not r.gone])
    within = sum(1 for r in records
                 if r.called is not None and not r.gone and r.called - r.eligible <= targets[r.service])
    out: dict[str, Any] = {"queued": len(records), "called": int(waits.size),
                           "p_wait": float(np.mean(waits > 0)) if waits.size else None}
    if waits.size:
        out["mean_min"] = float(waits.mean() / 60)
        for q, v in zip(QUANTILES, np.percentile(waits, QUANTILES)):
            out[f"p{q}_min"] = float(v / 60)
        out["max_min"] = float(waits.max() / 60)
    out["within_target"] = within / len(records) if records else None
    return out


def eta_stats(records: Iterable[TicketRecord]) -> dict[str, Any]:
    """How good the wait estimates were: for every called citizen who was told one (at issue,
    or at check-in for appointments), |estimate - actual wait until the first call|."""
    told = [r for r in records if r.called is not None and r.estimated_at is not None]
    pairs = np.array([(r.estimate, r.called - r.estimated_at) for r in told if r.estimate is not None],
                     dtype=float).reshape(-1, 2) / 60.0
    out: dict[str, Any] = {"called": len(told), "estimated": len(pairs), "no_estimate": len(told) - len(pairs)}
    if len(pairs):
        error = pairs[:, 0] - pairs[:, 1]
        out |= {"mae_min": float(np.mean(np.abs(error))), "p90_abs_err_min": float(np.percentile(np.abs(error), 90)),
                "bias_min": float(np.mean(error)), "mean_estimate_min": float(np.mean(pairs[:, 0])),
                "mean_actual_min": float(np.mean(pairs[:, 1]))}
    else:
        out |= dict.fromkeys(("mae_min", "p90_abs_err_min", "bias_min", "mean_estimate_min", "mean_actual_min"))
    return out


def appointment_holders(records: Iterable[TicketRecord]) -> list[TicketRecord]:
    """The appointment tickets among *records* that were checked in (their slot start known)."""
    return [r for r in records if r.slot_start is not None and r.checked_in is not None]


def punctuality_stats(records: Iterable[TicketRecord], targets: dict[str, float]) -> dict[str, Any]:
    """Appointment punctuality for the checked-in appointment holders among *records*.

    Args:
        records: tickets that queued in the measured period (others are skipped).
        targets: service code -> target wait (s).

    Returns:
        ``checked_in``; ``early`` / ``late`` (shares who checked in before / after their slot
        start); ``late_walk_in`` (so late that they queued as walk-ins); ``arrival_p10_min``,
        ``arrival_p50_min``, ``arrival_p90_min`` (check-in − slot start); ``called`` (called
        while present); ``after_slot_mean_min``, ``after_slot_p50_min``, ``after_slot_p90_min``
        (first call − slot start, of the called); ``within_target_after_slot`` (share of the
        checked-in called within their service's target after the slot start). Figures
        without citizens are None.
    """
    holders = appointment_holders(records)
    called = [r for r in holders if r.called is not None and not r.gone]
    arrival = np.array([r.checked_in - r.slot_start for r in holders]) / 60
    after = np.array([r.called - r.slot_start for r in called]) / 60
    out: dict[str, Any] = {
        "checked_in": len(holders),
        "early": float(np.mean(arrival < 0)) if holders else None,
        "late": float(np.mean(arrival > 0)) if holders else None,
        "late_walk_in": sum(1 for r in holders if r.late),
        "called": len(called),
        "within_target_after_slot": (sum(1 for r in called if r.called - r.slot_start <= targets[r.service])
                                     / len(holders)) if holders else None,
    }
    for q in (10, 50, 90):
        out[f"arrival_p{q}_min"] = float(np.percentile(arrival, q)) if holders else None
    out["after_slot_mean_min"] = float(after.mean()) if called else None
    for q in (50, 90):
        out[f"after_slot_p{q}_min"] = float(np.percentile(after, q)) if called else None
    return out


def binned_average(spells: np.ndarray, t0: float, bin_s: float, nbins: int) -> np.ndarray:
    """Time-average number of open spells per bin; *spells* is an (n, 2) array of (start, end)."""
    edges = t0 + bin_s * np.arange(nbins + 1)
    if not len(spells):
        return np.zeros(nbins)
    times = np.concatenate([spells[:, 0], spells[:, 1]])
    steps = np.concatenate([np.ones(len(spells)), -np.ones(len(spells))])
    order = np.argsort(times, kind="stable")
    times, level = times[order], np.cumsum(steps[order])
    area = np.concatenate([[0.0], np.cumsum(level[:-1] * np.diff(times))])  # integral up to times[k]
    k = np.searchsorted(times, edges, side="right") - 1
    inside = k >= 0
    at_edges = np.zeros(len(edges))
    kk = k[inside]
    at_edges[inside] = area[kk] + level[kk] * (edges[inside] - times[kk])
    return np.diff(at_edges) / bin_s


def little(tracker: Tracker, t0: float, t1: float) -> dict[str, float]:
    """Little's law over [t0, t1]: engine-measured L against λ·W from the waiting spells."""
    span = t1 - t0
    starts = np.array([s for s, _, _ in tracker.spells if t0 <= s < t1])
    ends = np.array([min(e, t1) for s, e, _ in tracker.spells if t0 <= s < t1])
    n = len(starts)
    lam = n / span
    w = float((ends - starts).mean()) if n else 0.0
    L = tracker.queue_area / span
    return {"L": L, "lambda_per_min": lam * 60, "W_min": w / 60, "lambda_W": lam * w,
            "rel_err": abs(L - lam * w) / L if L else 0.0}


def _queue_window(scenario: Scenario) -> tuple[float, float]:
    """Where the queue-over-time chart looks: the open hours (day 1), or the whole horizon."""
    if scenario.days > 1:
        return scenario.start, scenario.end
    sessions = scenario.hall.hours.sessions(scenario.weekday(0))
    if not sessions:
        return scenario.start, scenario.end
    lo = max(0, sessions[0][0] - 60) * 60.0
    hi = min(1440, sessions[-1][1] + 90) * 60.0
    return scenario.start + lo, scenario.start + hi


def summarise(scenario: Scenario, tracker: Tracker, *, seed: int) -> dict[str, Any]:
    """The run's figures as plain data (what ``sim run`` prints and writes as JSON)."""
    hall = scenario.hall
    t0, t1 = scenario.start + scenario.warmup_s, scenario.end
    targets = {s.code: s.target_wait_s for s in hall.services}
    queued = [r for r in tracker.tickets.values() if r.outcome not in ("booked", "told_early") and r.eligible >= t0]
    by_service: dict[str, list[TicketRecord]] = {}
    by_channel: dict[str, list[TicketRecord]] = {}
    for r in queued:
        by_service.setdefault(r.service, []).append(r)
        by_channel.setdefault(r.channel, []).append(r)
    zones = [z.id for z in hall.zones]
    return {
        "scenario": scenario.name,
        "hall": hall.id,
        "seed": seed,
        "days": scenario.days,
        "windows": {"total": len(hall.windows), "opened": sum(1 for w in tracker.windows.values() if w.open_s > 0)},
        "flow": _flow(tracker, queued),
        "waits": {
            "all": wait_stats(queued, targets),
            "green": wait_stats([r for r in queued if r.green], targets),
            "by_channel": {c: wait_stats(by_channel[c], targets) for c in CHANNEL_ORDER if c in by_channel},
            "by_service": {s.code: wait_stats(by_service[s.code], targets)
                           for s in hall.services if s.code in by_service},
        },
        "eta": eta_stats(queued),
        "punctuality": punctuality_stats(queued, targets),
        "utilisation": _utilisation(tracker, zones),
        "queue": _queue(scenario, tracker, zones),
        "heatmap": _heatmap(scenario, tracker, zones),
        "little": little(tracker, t0, t1),
        "issuing": issuing(tracker),
    }


def issuing(tracker: Tracker) -> dict[str, Any]:
    """Told early at the kiosk versus gave up after queueing (see the module docstring)."""
    c = tracker.counts
    told = {"cap": c["told_early_daily_cap_reached"], "cutoff": c["told_early_past_closing"],
            "warned": c["told_early_warned"]}
    waited = np.array([r.gave_up - r.eligible for r in tracker.tickets.values()
                       if r.gone and r.gave_up is not None], dtype=float)
    told_early, gave_up = sum(told.values()), len(waited)
    return {
        "told_early": told_early,
        "told_early_by_reason": told,
        "warned": c["warned_past_closing"],
        "gave_up": gave_up,
        "gave_up_waited_median_min": float(np.median(waited) / 60) if gave_up else None,
        "told_early_share": told_early / (told_early + gave_up) if told_early + gave_up else None,
    }


def _flow(tracker: Tracker, queued: list[TicketRecord]) -> dict[str, int]:
    c = tracker.counts
    outcomes = Counter(r.outcome for r in queued)
    left = sum(1 for r in queued if r.outcome in ("waiting", "expired", "unserved"))  # incl. transferred ones
    return {
        "tickets_issued": c["ticket_issued"],
        "bookings": c["slot_booked"],
        "slot_full": c["slot_full"],
        "appointment_no_show": c["appointment_no_show"],
        "checked_in": c["checked_in"],
        "late_checkins": sum(1 for r in queued if r.late),
        "hall_closed": c["hall_closed"],
        "queued": len(queued),
        "served": outcomes["served"],
        "abandoned": outcomes["abandoned"],
        "abandoned_silent": c["abandoned_silent"],
        "cancelled": outcomes["cancelled"],
        "no_show_called": outcomes["no_show"],
        "transferred": c["ticket_transferred"],
        "recalls": c["ticket_recalled"],
        "breaks": c["window_paused"],
        "unserved": left,
        "sent_home": outcomes["unserved"],  # by a close-out (the rest of `unserved`: cut off by the reset)
    }


def _utilisation(tracker: Tracker, zones: list[str]) -> dict[str, Any]:
    busy, open_ = Counter(), Counter()
    for w in tracker.windows.values():
        busy[w.zone] += w.busy_s
        open_[w.zone] += w.open_s
    total_open = sum(open_.values())
    return {
        "hall": sum(busy.values()) / total_open if total_open else None,
        "by_zone": {z: busy[z] / open_[z] if open_[z] else None for z in zones},
    }


def _spells_by_zone(tracker: Tracker, zones: list[str]) -> dict[str, np.ndarray]:
    grouped: dict[str, list[tuple[float, float]]] = {z: [] for z in zones}
    for start, end, zone in tracker.spells:
        grouped[zone].append((start, end))
    return {z: np.array(v, dtype=float).reshape(-1, 2) for z, v in grouped.items()}


def _queue(scenario: Scenario, tracker: Tracker, zones: list[str]) -> dict[str, Any]:
    lo, hi = _queue_window(scenario)
    bin_s = max(QUEUE_BIN_S, np.ceil((hi - lo) / MAX_QUEUE_BINS / QUEUE_BIN_S) * QUEUE_BIN_S)
    nbins = int(np.ceil((hi - lo) / bin_s))
    spells = _spells_by_zone(tracker, zones)
    series = {z: binned_average(spells[z], lo, bin_s, nbins) for z in zones}
    return {
        "t0": lo,
        "bin_s": float(bin_s),
        "by_zone": {z: [round(float(v), 3) for v in s] for z, s in series.items()},
        "total": [round(float(v), 3) for v in sum(series.values())],
    }


def _heatmap(scenario: Scenario, tracker: Tracker, zones: list[str]) -> dict[str, Any]:
    """Average waiting citizens per zone and hour of the day (averaged over the days).

    Hours are counted from the first local midnight in steps of 3600 s, so in a time zone
    with daylight saving the hours after a clock change shift by one.
    """
    spells = _spells_by_zone(tracker, zones)
    values = []
    for z in zones:
        hourly = binned_average(spells[z], scenario.start, 3600.0, 24 * scenario.days)
        values.append([round(float(v), 3) for v in hourly.reshape(scenario.days, 24).mean(axis=0)])
    return {"zones": zones, "hours": list(range(24)), "values": values}
