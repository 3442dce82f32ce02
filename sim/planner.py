"""Capacity planning: the fewest windows per zone (or per service) that meet a wait target.

``callsys sim plan qingdao-weekday --target "p90 wait <= 15 min"`` splits the hall's
windows into *pools* — the windows of one zone, or the windows whose primary skill is one
service (universal windows form their own pool) — and searches each pool's window count.

Each pool answers for the services whose citizens wait in it (see
:func:`sim.tracker.home_zones`); a pool no service calls home answers for every service it
serves. The search is a parallel bisection: every round sets each unsettled pool to the
middle of its range, simulates the whole hall once, and halves each range by whether the
pool's services met the target. Pools home to some service go first (shared pools such as
universal windows stay as they are); then shared pools are bisected, judged on every
service, with the others at their result. Pools share citizens (a universal window serves
them all), so the combined plan is then checked — pools still missing the target get more
windows until it holds or their maximum is reached — trimmed (every pool gives up ~5 % at
once; pools still on target keep the cut), and checked again. The result is a plan that
met the target in simulation, close to but not proven to be the minimum.

Each run uses the same seed, so the citizens are the same in every run (common random
numbers) and the comparison is between staffings, not between crowds. The hall itself is
never changed: each run builds a resized copy (:func:`resize`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Callable, Final, Mapping

from callsys.errors import ConfigError
from callsys.hall import Hall, Window

from .runner import Simulation
from .scenario import Scenario
from .tracker import home_zones

MIN_CALLED: Final = 20  # services with fewer called citizens in a run are not judged
MAX_SCALE: Final = 2.0  # a pool may grow to this multiple of its current windows
MAX_REPAIRS: Final = 12
MAX_TRIMS: Final = 6
UNIVERSAL_POOL: Final = "*"

_TARGET = re.compile(
    r"^\s*(?:(?P<stat>mean|p50|p90|p99)\s+wait\s*<=\s*(?P<limit>[\d.]+)\s*(?P<unit>min|s)?"
    r"|within\s+target\s*>=\s*(?P<share>[\d.]+)\s*(?P<pct>%)?)\s*$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Target:
    """What a service must achieve: ``stat`` (``mean_min``, ``p90_min``, ... or ``within_target``)."""

    stat: str
    limit: float
    text: str

    @property
    def upper(self) -> bool:
        """True when the statistic must stay at or below the limit (waits)."""
        return self.stat != "within_target"

    def met(self, value: float | None) -> bool:
        if value is None:
            return True
        return value <= self.limit if self.upper else value >= self.limit


def parse_target(text: str) -> Target:
    """``"p90 wait <= 15 min"``, ``"mean wait <= 600 s"`` or ``"within target >= 80 %"``.

    Raises:
        ConfigError: the text is not one of these forms.
    """
    m = _TARGET.match(text)
    if not m:
        raise ConfigError("--target", "", f"cannot read {text!r}; try \"p90 wait <= 15 min\" or "
                                          "\"within target >= 80 %\"")
    if m["stat"]:
        limit = float(m["limit"]) / (60.0 if (m["unit"] or "min").lower() == "s" else 1.0)
        if not limit > 0:
            raise ConfigError("--target", "", f"{text.strip()!r}: a wait limit must be above 0")
        return Target(f"{m['stat'].lower()}_min", limit, text.strip())
    share = float(m["share"])
    share = share / 100 if m["pct"] or share > 1 else share
    if not 0 < share <= 1:
        raise ConfigError("--target", "", f"{text.strip()!r}: a share within target must be above 0 and at most 100 %")
    return Target("within_target", share, text.strip())


# ---------------------------------------------------------------------- pools


def pool_of(hall: Hall, by: str) -> dict[int, str]:
    """Window id -> its pool: its zone (``by="zone"``) or its primary service (``"service"``)."""
    if by == "zone":
        return {w.id: w.zone for w in hall.windows}
    if by == "service":
        return {w.id: UNIVERSAL_POOL if w.universal else w.skills[0] for w in hall.windows}
    raise ValueError(f"plan by 'zone' or 'service', not {by!r}")


def pool_services(hall: Hall, pools: Mapping[int, str], by: str) -> tuple[dict[str, tuple[str, ...]], dict[str, bool]]:
    """Pool -> the services it answers for, and pool -> whether they are its own.

    A pool answers for its home services; a *shared* pool (home to none, e.g. universal
    windows) answers for every service in the hall.
    """
    home = home_zones(hall) if by == "zone" else _home_pools(hall, pools)
    services: dict[str, tuple[str, ...]] = {}
    owned: dict[str, bool] = {}
    for pool in sorted(set(pools.values())):
        mine = tuple(code for code, p in home.items() if p == pool)
        services[pool], owned[pool] = mine or tuple(s.code for s in hall.services), bool(mine)
    return services, owned


def _home_pools(hall: Hall, pools: Mapping[int, str]) -> dict[str, str]:
    """Service -> its own pool if it has one, else the specialised pool with most windows serving it."""
    out = {}
    names = set(pools.values())
    for s in hall.services:
        if s.code in names:
            out[s.code] = s.code
            continue
        counts: dict[str, int] = {}
        for w in hall.windows:
            if s.code in w.skills and not w.universal:
                counts[pools[w.id]] = counts.get(pools[w.id], 0) + 1
        if counts:
            out[s.code] = min(counts, key=lambda p: (-counts[p], p))
    return out


def resize(hall: Hall, pools: Mapping[int, str], counts: Mapping[str, int]) -> Hall:
    """A copy of *hall* whose pools have *counts* windows (the original is untouched).

    Shrinking keeps windows spread evenly over the pool (so its skill mix stays);
    growing clones the pool's windows in turn, with new ids above the hall's highest.
    """
    members: dict[str, list[Window]] = {}
    for w in hall.windows:
        members.setdefault(pools[w.id], []).append(w)
    next_id = max(w.id for w in hall.windows) + 1
    windows: list[Window] = []
    for pool, ws in members.items():
        n = counts.get(pool, len(ws))
        if n <= len(ws):  # n == 0 drops the pool
            windows.extend(ws[(i * len(ws)) // n] for i in range(n))
            continue
        windows.extend(ws)
        for k in range(n - len(ws)):
            windows.append(replace(ws[k % len(ws)], id=next_id, display=str(next_id)))
            next_id += 1
    windows.sort(key=lambda w: w.id)
    return replace(hall, windows=tuple(windows), windows_by_id=MappingProxyType({w.id: w for w in windows}))


# ---------------------------------------------------------------------- the search


@dataclass
class PoolPlan:
    pool: str
    services: tuple[str, ...]
    current: int
    planned: int
    worst: float | None = None  # the pool's worst service figure at the plan
    worst_service: str | None = None
    met: bool = True


@dataclass
class Plan:
    target: Target
    by: str
    pools: list[PoolPlan]
    runs: int
    summary: dict[str, Any]  # the simulation of the final plan

    @property
    def windows(self) -> int:
        return sum(p.planned for p in self.pools)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target.text, "by": self.by, "runs": self.runs,
            "windows_current": sum(p.current for p in self.pools), "windows_planned": self.windows,
            "met": all(p.met for p in self.pools),
            "pools": [vars(p) | {"services": list(p.services)} for p in self.pools],
            "plan_waits": self.summary["waits"]["all"],
        }


class Planner:
    """Searches window counts per pool against a target.

    Args:
        scenario: the demand to plan for.
        target: what every judged service must achieve.
        by: ``"zone"`` or ``"service"``.
        max_scale: a pool may grow to ``ceil(current * max_scale)`` windows.
        seed: the seed of every run (the scenario's by default).
        progress: called with a line of text after each run.
    """

    def __init__(self, scenario: Scenario, target: Target, *, by: str = "zone", max_scale: float = MAX_SCALE,
                 seed: int | None = None, progress: Callable[[str], None] | None = None) -> None:
        self.scenario, self.target, self.by = scenario, target, by
        self.seed = scenario.seed if seed is None else seed
        self.pools = pool_of(scenario.hall, by)
        self.services, self.owned = pool_services(scenario.hall, self.pools, by)
        self.current = {p: sum(1 for q in self.pools.values() if q == p) for p in self.services}
        self.ceiling = {p: max(n, math.ceil(n * max_scale)) for p, n in self.current.items()}
        self.progress = progress or (lambda line: None)
        self.runs = 0

    def simulate(self, counts: Mapping[str, int]) -> dict[str, Any]:
        hall = resize(self.scenario.hall, self.pools, counts)
        self.runs += 1
        return Simulation(self.scenario.with_hall(hall), seed=self.seed).run()

    def judge(self, summary: Mapping[str, Any], pool: str) -> tuple[bool, float | None, str | None]:
        """(met, worst figure, worst service) for *pool*'s services in a run."""
        worst, worst_code = None, None
        for code in self.services[pool]:
            stats = summary["waits"]["by_service"].get(code)
            if not stats or stats["called"] < MIN_CALLED:
                continue
            value = stats.get(self.target.stat)
            if value is None:
                continue
            if worst is None or (value > worst if self.target.upper else value < worst):
                worst, worst_code = value, code
        return self.target.met(worst), worst, worst_code

    def run(self) -> Plan:
        """Search owned pools, then shared ones, then check and repair the combined plan."""
        shared = [p for p in self.services if not self.owned[p]]
        counts = dict(self.ceiling)
        self._bisect([p for p in self.services if self.owned[p]], counts, low=1)
        self._bisect(shared, counts, low=0)
        self._repair(counts)
        self._trim(counts)
        return self._repair(counts)

    def _bisect(self, pools: list[str], counts: dict[str, int], *, low: int) -> None:
        """Halve each pool's range [low, ceiling] at once, one simulated day per round."""
        lo = {p: low for p in pools}
        hi = {p: self.ceiling[p] for p in pools}
        first = True
        while any(lo[p] < hi[p] for p in pools):
            trial = dict(counts)
            trial.update({p: hi[p] if first else (lo[p] + hi[p]) // 2 for p in pools})
            summary = self.simulate(trial)
            for p in pools:
                met = self.judge(summary, p)[0]
                if first and not met:
                    lo[p] = hi[p]  # missed even at its maximum: stays there
                elif not first and lo[p] < hi[p]:
                    hi[p], lo[p] = (trial[p], lo[p]) if met else (hi[p], trial[p] + 1)
            counts.update({p: hi[p] for p in pools})
            first = False
            self.progress(f"run {self.runs}: {sum(trial.values())} windows tried, "
                          f"{sum(1 for p in pools if lo[p] < hi[p])} pools unsettled")

    def _trim(self, counts: dict[str, int]) -> None:
        """Take a few windows from every pool at once; keep the cuts of pools still on target.

        Bisection judges each pool while the others sit at trial sizes, so a pool that
        shares skills with a starved neighbour can settle too high; these passes, with
        everyone near their final size, win such windows back.
        """
        for _ in range(MAX_TRIMS):
            trial = {p: n - max(1, n // 20) if n > (0 if not self.owned[p] else 1) else n for p, n in counts.items()}
            if trial == counts:
                return
            summary = self.simulate(trial)
            kept = [p for p in counts if trial[p] < counts[p] and self.judge(summary, p)[0]]
            self.progress(f"run {self.runs}: trimming, {len(kept)} pools gave up windows")
            if not kept:
                return
            counts.update({p: trial[p] for p in kept})

    def _repair(self, counts: dict[str, int]) -> Plan:
        """Check the combined plan; grow pools that miss the target until it holds."""
        for _ in range(MAX_REPAIRS):
            summary = self.simulate(counts)
            missing = [p for p in self.services
                       if not self.judge(summary, p)[0] and counts[p] < self.ceiling[p]]
            self.progress(f"run {self.runs}: checking the plan ({sum(counts.values())} windows), "
                          f"{len(missing)} pools short")
            if not missing:
                break
            for p in missing:
                counts[p] = min(self.ceiling[p], counts[p] + max(1, math.ceil(0.1 * counts[p])))
        else:
            summary = self.simulate(counts)
        pools = []
        for p in sorted(self.services, key=lambda q: -self.current[q]):
            met, worst, code = self.judge(summary, p)
            pools.append(PoolPlan(p, self.services[p], self.current[p], counts[p], worst, code, met))
        return Plan(self.target, self.by, pools, self.runs, summary)
