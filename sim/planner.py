"""Capacity planning: the fewest windows per pool that meet a wait target, or the best use of the windows there are.

``callsys sim plan qingdao-weekday --target "p90 wait <= 15 min"`` splits the hall's
windows into *pools* — the windows of one zone, or the windows whose primary skill is one
service (universal windows form their own pool). Each pool answers for the services whose
citizens wait in it (see :func:`sim.tracker.home_zones`); a pool no service calls home
answers for every service it serves.

**Judging a staffing.** Every staffing is simulated under the same ``replications`` seeds
``seed, seed + 1, ...`` (common random numbers: the runs compare staffings, not crowds).
A service's figure (its p90 wait, say) is the mean over the replications with a one-sided
Student's t margin; the target is *met* only when the bound holds with ``confidence``
(default 90 %): for a wait limit, mean + margin <= limit; for a share within target,
mean - margin >= share. Services with fewer than :data:`MIN_CALLED` called citizens in a
run are not judged on that run.

**Fewest windows** (:meth:`Planner.run`). A parallel bisection on
``search_replications`` runs per round, judged on the mean: every round sets each
unsettled pool to the middle of its range, simulates the whole hall, and halves each
range by whether the pool's services met the target. Pools home to some service go
first (shared pools such as universal windows stay as they are); then shared pools are
bisected, judged on every service. Then, on all ``replications`` and with confidence,
the combined plan is checked — pools missing the target grow ~10 % until it holds or
their maximum is reached — trimmed (every pool gives up ~5 % at once and pools still on
target keep the cut; when none can, the pools with most slack try alone), and checked
again. The result met the target with the stated
confidence in simulation; it is close to, not proven to be, the minimum.

**Within the walls** (:meth:`Planner.within`). With at most ``max_windows`` windows,
the allocation across pools and the skills of the universal windows that minimise the
worst service's figure (mean over replications). The search starts from the better of
the current allocation (scaled to the limit if above it) and one proportional to offered
load (λ·E[S] of the services each pool answers for; shared pools keep their share of
the hall); universal windows then get the services whose own pools cannot carry their
load at :data:`PLAN_UTILISATION` (*residual* load), largest first, when that beats
serving everything. A local search then moves ``step`` windows (first ~2 % of the limit,
halved when no move helps) from the pool with the most slack to the pool of the worst
service (or to a shared pool), keeping a move only when it lowers the worst figure, and
stops when a one-window move no longer helps. The result is judged on all replications;
if it misses the target, the pools that miss are grown as in the repair step above to
show what would be needed beyond the limit.

Each run builds a resized copy of the hall (:func:`resize`); the hall itself is never
changed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Callable, Final, Mapping

from callsys.errors import ConfigError
from callsys.hall import Hall, Window

from .experiment import margin
from .runner import Simulation
from .scenario import Scenario
from .tracker import home_zones

MIN_CALLED: Final = 20  # services with fewer called citizens in a run are not judged on it
MAX_SCALE: Final = 2.0  # a pool may grow to this multiple of its current windows
MAX_REPAIRS: Final = 12  # growth rounds of a plan that misses its target
MAX_TRIMS: Final = 6  # trimming rounds
SINGLE_TRIMS: Final = 3  # pools tried alone when a joint cut keeps nothing
REPLICATIONS: Final = 5  # runs (seeds seed ... seed + N - 1) behind every judgement of a plan
SEARCH_REPLICATIONS: Final = 2  # runs per bisection round / local-search move (judged on their mean)
MAX_REPLICATIONS: Final = 100
CONFIDENCE: Final = 0.90  # one-sided confidence with which a target must hold
STEP_SHARE: Final = 0.02  # the constrained search first moves this share of the windows at once
MAX_MOVES: Final = 40  # allocations the constrained local search tries at most
PLAN_UTILISATION: Final = 0.85  # the load a pool carries per window before the rest is residual
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
        """Whether *value* is on the right side of the limit (None: not judged, so met)."""
        if value is None:
            return True
        return value <= self.limit if self.upper else value >= self.limit

    def slack(self, value: float) -> float:
        """How far *value* lies on the good side of the limit (negative: missed)."""
        return self.limit - value if self.upper else value - self.limit


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


def resize(hall: Hall, pools: Mapping[int, str], counts: Mapping[str, int],
           skills: tuple[str, ...] | None = None) -> Hall:
    """A copy of *hall* whose pools have *counts* windows (the original is untouched).

    Shrinking keeps windows spread evenly over the pool (so its skill mix stays);
    growing clones the pool's windows in turn, with new ids above the hall's highest.
    With *skills*, the universal windows serve those services (in that order) instead of
    every service.
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
    if skills:
        windows = [replace(w, skills=skills, universal=False) if w.universal else w for w in windows]
    windows.sort(key=lambda w: w.id)
    return replace(hall, windows=tuple(windows), windows_by_id=MappingProxyType({w.id: w for w in windows}))


# ---------------------------------------------------------------------- judging over replications


@dataclass(frozen=True, slots=True)
class Figure:
    """One service's target statistic over the replications of a staffing.

    Attributes:
        mean: the mean of the per-run figures.
        margin: the one-sided Student's t margin at the planner's confidence (None: one run).
        runs: the replications it was judged on (runs with at least ``MIN_CALLED`` calls).
    """

    mean: float
    margin: float | None
    runs: int

    def bound(self, target: Target) -> float:
        """The confident side: mean + margin for a wait limit, mean - margin for a share."""
        m = self.margin or 0.0
        return self.mean + m if target.upper else self.mean - m


@dataclass
class Trial:
    """A staffing simulated under the planner's first ``replications`` seeds."""

    counts: dict[str, int]
    skills: tuple[str, ...] | None  # the universal windows' services (None: every service)
    figures: dict[str, Figure]
    summary: dict[str, Any]  # the first replication's
    replications: int


@dataclass
class PoolPlan:
    """One pool of a plan; ``worst`` is its worst service's figure (mean over replications)."""

    pool: str
    services: tuple[str, ...]
    current: int
    planned: int
    worst_service: str | None = None
    worst: float | None = None
    margin: float | None = None  # one-sided Student's t margin of ``worst`` at the plan's confidence
    met: bool = True
    needed: int | None = None  # within the walls: windows it would need to meet the target


@dataclass
class Plan:
    """A plan: per pool the windows planned and the worst figure reached, judged over replications."""

    target: Target
    by: str
    pools: list[PoolPlan]
    runs: int  # simulations made, replications included
    replications: int
    confidence: float
    summary: dict[str, Any]  # the first replication of the plan
    figures: dict[str, Figure] = field(default_factory=dict)  # every judged service at the plan
    max_windows: int | None = None  # the limit of a plan within the walls
    skills: tuple[str, ...] | None = None  # the universal windows' services (None: every service)
    current: Trial | None = None  # the current allocation on the same seeds (within the walls)

    @property
    def windows(self) -> int:
        return sum(p.planned for p in self.pools)

    @property
    def met(self) -> bool:
        return all(p.met for p in self.pools)

    def worst(self) -> tuple[str | None, Figure | None]:
        """The service with the worst figure (by its mean) and that figure."""
        return worst_of(self.figures, self.target)

    def to_dict(self) -> dict[str, Any]:
        code, fig = self.worst()
        data = {
            "target": self.target.text, "stat": self.target.stat, "limit": self.target.limit, "by": self.by,
            "replications": self.replications, "confidence": self.confidence, "runs": self.runs,
            "windows_current": sum(p.current for p in self.pools), "windows_planned": self.windows,
            "met": self.met,
            "worst": None if fig is None else {"service": code, "mean": fig.mean, "margin": fig.margin,
                                               "bound": fig.bound(self.target)},
            "pools": [vars(p) | {"services": list(p.services)} for p in self.pools],
            "services": {c: {"mean": f.mean, "margin": f.margin, "runs": f.runs,
                             "met": self.target.met(f.bound(self.target))} for c, f in sorted(self.figures.items())},
            "plan_waits": self.summary["waits"]["all"],
        }
        if self.max_windows is not None:
            needed = [p.needed for p in self.pools]
            data |= {"max_windows": self.max_windows,
                     "universal_skills": None if self.skills is None else list(self.skills),
                     "windows_needed": None if None in needed else sum(needed)}
            if self.current is not None:
                c_code, c_fig = worst_of(self.current.figures, self.target)
                data["current_worst"] = None if c_fig is None else {"service": c_code, "mean": c_fig.mean,
                                                                    "margin": c_fig.margin}
        return data


def worst_of(figures: Mapping[str, Figure], target: Target, *, sure: bool = False) -> tuple[str | None, Figure | None]:
    """The service whose figure is furthest on the wrong side (by the mean, or by the bound if *sure*)."""
    best: tuple[float, str] | None = None
    for code, f in figures.items():
        if sure and f.runs < 2:
            continue
        key = (target.slack(f.bound(target) if sure else f.mean), code)
        if best is None or key < best:
            best = key
    return (None, None) if best is None else (best[1], figures[best[1]])


def apportion(total: int, weights: Mapping[str, float], floor: Mapping[str, int]) -> dict[str, int]:
    """*total* split over *weights*' keys in proportion, each at least its *floor* (largest remainder)."""
    out = {k: floor.get(k, 0) for k in weights}
    rest = total - sum(out.values())
    mass = sum(weights.values())
    if rest <= 0 or not weights:
        return out
    shares = {k: rest * (w / mass if mass > 0 else 1 / len(weights)) for k, w in weights.items()}
    for k, s in shares.items():
        out[k] += int(s)
    left = total - sum(out.values())
    for k in sorted(shares, key=lambda k: (-(shares[k] - int(shares[k])), k))[:left]:
        out[k] += 1
    return out


# ---------------------------------------------------------------------- the planner


class Planner:
    """Searches window counts per pool against a target, judged over replications.

    Args:
        scenario: the demand to plan for.
        target: what every judged service must achieve.
        by: ``"zone"`` or ``"service"``.
        max_scale: a pool may grow to ``ceil(current * max_scale)`` windows.
        seed: the first seed of the replications (the scenario's by default).
        replications: runs behind every judgement (the same seeds for every staffing).
        confidence: one-sided confidence (0.5 ... 0.999) with which a target must hold.
        search_replications: runs per bisection round or local-search move (at most
            *replications*), judged on their mean.
        progress: called with a line of text after each judgement.

    Raises:
        ConfigError: fewer than 2 replications, or a confidence outside 0.5 ... 0.999.
    """

    def __init__(self, scenario: Scenario, target: Target, *, by: str = "zone", max_scale: float = MAX_SCALE,
                 seed: int | None = None, replications: int = REPLICATIONS, confidence: float = CONFIDENCE,
                 search_replications: int = SEARCH_REPLICATIONS,
                 progress: Callable[[str], None] | None = None) -> None:
        if not 2 <= replications <= MAX_REPLICATIONS:
            raise ConfigError("--replications", "", f"a plan needs 2 ... {MAX_REPLICATIONS} replications to state "
                                                    f"a confidence, got {replications}")
        if not 0.5 <= confidence <= 0.999:
            raise ConfigError("--confidence", "", f"must be 50 ... 99.9 %, got {100 * confidence:g} %")
        self.scenario, self.target, self.by = scenario, target, by
        self.seed = scenario.seed if seed is None else seed
        self.replications, self.confidence = replications, confidence
        self.search_replications = max(1, min(search_replications, replications))
        self.max_scale = max_scale
        self.pools = pool_of(scenario.hall, by)
        self.services, self.owned = pool_services(scenario.hall, self.pools, by)
        self.shared = [p for p in self.services if not self.owned[p]]
        self.home = {code: p for p in self.services if self.owned[p] for code in self.services[p]}
        self.current = {p: sum(1 for q in self.pools.values() if q == p) for p in self.services}
        self.ceiling = {p: max(n, math.ceil(n * max_scale)) for p, n in self.current.items()}
        self.floor = {p: 1 if self.owned[p] else 0 for p in self.services}
        self.progress = progress or (lambda line: None)
        self.runs = 0

    # -- judging

    def simulate(self, counts: Mapping[str, int], replications: int | None = None,
                 skills: tuple[str, ...] | None = None) -> Trial:
        """Run the staffing *counts* under the first *replications* seeds (all by default)."""
        from .experiment import replicate

        n = self.replications if replications is None else replications
        scenario = self.scenario.with_hall(resize(self.scenario.hall, self.pools, counts, skills))
        summaries = [s for _, s in replicate(scenario, n, seed=self.seed)]
        self.runs += n
        figures = {}
        for service in self.scenario.hall.services:
            values = []
            for summary in summaries:
                stats = summary["waits"]["by_service"].get(service.code)
                if stats and stats["called"] >= MIN_CALLED and stats.get(self.target.stat) is not None:
                    values.append(stats[self.target.stat])
            if values:
                mean, m = margin(values, self.confidence)
                figures[service.code] = Figure(mean, m, len(values))
        return Trial(dict(counts), skills, figures, summaries[0], n)

    def judge(self, trial: Trial, pool: str, *, sure: bool = True) -> tuple[bool, str | None, Figure | None]:
        """(met, worst service, its figure) for *pool*'s services in *trial*.

        *sure*: judged on the confident bound (services judged on fewer than two runs are
        left out); otherwise on the mean.
        """
        figures = {c: trial.figures[c] for c in self.services[pool] if c in trial.figures}
        code, fig = worst_of(figures, self.target, sure=sure)
        if fig is None:
            return True, None, None
        return self.target.met(fig.bound(self.target) if sure else fig.mean), code, fig

    def _missing(self, trial: Trial) -> list[str]:
        return [p for p in self.services if not self.judge(trial, p)[0]]

    # -- the fewest windows

    def run(self) -> Plan:
        """Search owned pools, then shared ones, then check, trim and check the combined plan."""
        counts = dict(self.ceiling)
        self._bisect([p for p in self.services if self.owned[p]], counts, low=1)
        self._bisect(self.shared, counts, low=0)
        self._repair(counts, self.ceiling)
        self._trim(counts)
        return self._plan(self._repair(counts, self.ceiling))

    def _bisect(self, pools: list[str], counts: dict[str, int], *, low: int) -> None:
        """Halve each pool's range [low, ceiling] at once, on the search replications' mean."""
        lo = {p: low for p in pools}
        hi = {p: self.ceiling[p] for p in pools}
        first = True
        while any(lo[p] < hi[p] for p in pools):
            trial = dict(counts)
            trial.update({p: hi[p] if first else (lo[p] + hi[p]) // 2 for p in pools})
            result = self.simulate(trial, self.search_replications)
            for p in pools:
                met = self.judge(result, p, sure=False)[0]
                if first and not met:
                    lo[p] = hi[p]  # missed even at its maximum: stays there
                elif not first and lo[p] < hi[p]:
                    hi[p], lo[p] = (trial[p], lo[p]) if met else (hi[p], trial[p] + 1)
            counts.update({p: hi[p] for p in pools})
            first = False
            self.progress(f"run {self.runs}: {sum(trial.values())} windows tried, "
                          f"{sum(1 for p in pools if lo[p] < hi[p])} pools unsettled")

    def _trim(self, counts: dict[str, int], skills: tuple[str, ...] | None = None) -> None:
        """Take a few windows from every pool at once; keep the cuts of pools still on target (with confidence).

        Bisection judges each pool while the others sit at trial sizes, so a pool that
        shares skills with a starved neighbour can settle too high; these passes, with
        everyone near their final size, win such windows back.
        """
        for _ in range(MAX_TRIMS):
            trial = {p: n - max(1, n // 20) if n > self.floor[p] else n for p, n in counts.items()}
            if trial == counts:
                return
            result = self.simulate(trial, skills=skills)
            kept = [p for p in counts if trial[p] < counts[p] and self.judge(result, p)[0]]
            if not kept:  # cut together they all miss: cut alone the pools with most slack
                for p in sorted((p for p in counts if trial[p] < counts[p]),
                                key=lambda p: (-self._slack(result, p), p))[:SINGLE_TRIMS]:
                    if not self._missing(self.simulate(dict(counts, **{p: trial[p]}), skills=skills)):
                        kept = [p]
                        break
            self.progress(f"run {self.runs}: trimming, {len(kept)} pools gave up windows")
            if not kept:
                return
            counts.update({p: trial[p] for p in kept})

    def _repair(self, counts: dict[str, int], ceiling: Mapping[str, int],
                skills: tuple[str, ...] | None = None) -> Trial:
        """Judge *counts* on every replication; grow pools that miss (~10 %) until they hold or reach *ceiling*."""
        for _ in range(MAX_REPAIRS):
            result = self.simulate(counts, skills=skills)
            missing = [p for p in self._missing(result) if counts[p] < ceiling[p]]
            self.progress(f"run {self.runs}: checking {sum(counts.values())} windows on {self.replications} "
                          f"replications, {len(missing)} pools short")
            if not missing:
                return result
            for p in missing:
                counts[p] = min(ceiling[p], counts[p] + max(1, math.ceil(0.1 * counts[p])))
        return self.simulate(counts, skills=skills)

    def _plan(self, trial: Trial, *, needed: Mapping[str, int] | None = None, max_windows: int | None = None,
              current: Trial | None = None) -> Plan:
        pools = []
        for p in sorted(self.services, key=lambda q: (-self.current[q], q)):
            met = self.judge(trial, p)[0]  # every service's confident bound holds
            _, code, fig = self.judge(trial, p, sure=False)  # shown: the worst mean, as for the hall
            pools.append(PoolPlan(p, self.services[p], self.current[p], trial.counts[p], code,
                                  None if fig is None else fig.mean, None if fig is None else fig.margin, met,
                                  None if needed is None else needed[p]))
        return Plan(self.target, self.by, pools, self.runs, self.replications, self.confidence, trial.summary,
                    trial.figures, max_windows, trial.skills, current)

    # -- within the walls

    def within(self, max_windows: int, *, beyond: bool = True) -> Plan:
        """The allocation of at most *max_windows* windows that minimises the worst service's figure.

        Args:
            max_windows: windows the hall has (or may have) at most.
            beyond: if the target is missed, also find the windows each pool would need
                (``PoolPlan.needed``); costs more runs.

        Raises:
            ConfigError: *max_windows* cannot give each owned pool one window.
        """
        least = sum(self.floor.values())
        if max_windows < least:
            raise ConfigError("--max-windows", "", f"{max_windows} windows cannot staff the hall's {least} pools "
                              f"(one window each at least)")
        total = sum(self.current.values())
        today = dict(self.current) if total <= max_windows else apportion(max_windows, self.current, self.floor)
        starts = [self.proportional(max_windows)]
        if today != starts[0]:
            starts.append(today)
        trials = [self.simulate(c, self.search_replications) for c in starts]
        best = max(trials, key=self._score)
        self.progress(f"run {self.runs}: starting from the {'proportional' if best is trials[0] else 'current'} "
                      f"allocation")
        skills = self.residual_skills(best.counts)
        if skills is not None and any(w.universal for w in self.scenario.hall.windows):
            focused = self.simulate(best.counts, self.search_replications, skills)
            if self._score(focused) > self._score(best):
                best = focused
            self.progress(f"run {self.runs}: universal windows on {len(skills)} services "
                          f"{'kept' if best is focused else 'dropped'}")
        best = self._local_search(best, max_windows)
        final = self.simulate(best.counts, skills=best.skills)
        current = self.simulate(today) if today != final.counts or final.skills else final
        if current is not final and self._score(current) > self._score(final):
            final = current  # the search's few replications misled it; all of them prefer today's allocation
        needed = None
        if beyond and self._missing(final):
            ceiling = {p: max(self.ceiling[p], math.ceil(n * self.max_scale)) for p, n in final.counts.items()}
            needed = self._repair(dict(final.counts), ceiling, final.skills).counts
        return self._plan(final, needed=needed, max_windows=max_windows, current=current)

    def proportional(self, max_windows: int) -> dict[str, int]:
        """*max_windows* split over owned pools in proportion to their offered load.

        Shared pools (universal windows) keep their share of today's hall.
        """
        from .theory import offered_load

        total = sum(self.current.values())
        counts = {p: min(self.current[p], round(self.current[p] * max_windows / total)) for p in self.shared}
        load = offered_load(self.scenario)
        owned = {p: sum(load[c] for c in self.services[p]) for p in self.services if self.owned[p]}
        counts |= apportion(max_windows - sum(counts.values()), owned, self.floor)
        return counts

    def residual_skills(self, counts: Mapping[str, int]) -> tuple[str, ...] | None:
        """The services whose own pools cannot carry their load, largest residual first.

        A pool carries ``PLAN_UTILISATION`` erlangs per window; the rest of its offered load is
        residual, shared among its services by load. None when no service, or every service,
        has residual load (universal windows then keep serving everything).
        """
        from .theory import offered_load

        load = offered_load(self.scenario)
        residual = {}
        for p in self.services:
            if not self.owned[p]:
                continue
            mine = sum(load[c] for c in self.services[p])
            excess = mine - PLAN_UTILISATION * counts[p]
            if excess > 0:
                residual |= {c: load[c] * excess / mine for c in self.services[p] if load[c] > 0}
        if not residual or len(residual) == len(self.scenario.hall.services):
            return None
        return tuple(sorted(residual, key=lambda c: (-residual[c], c)))

    def _score(self, trial: Trial) -> float:
        """The worst service's slack on the mean (higher is better)."""
        code, fig = worst_of(trial.figures, self.target)
        return math.inf if fig is None else self.target.slack(fig.mean)

    def _slack(self, trial: Trial, pool: str) -> float:
        fig = self.judge(trial, pool, sure=False)[2]
        return math.inf if fig is None else self.target.slack(fig.mean)

    def _local_search(self, best: Trial, max_windows: int) -> Trial:
        """Move windows from the pool with most slack to the worst service's pool while it helps."""
        step = max(1, round(max_windows * STEP_SHARE))
        tries = 0
        while step >= 1 and tries < MAX_MOVES:
            code, _ = worst_of(best.figures, self.target)
            if code is None:
                break
            receivers = list(dict.fromkeys([self.home.get(code, self.shared[0] if self.shared else None)]
                                           + self.shared))
            receivers = [p for p in receivers if p is not None]
            donors = sorted((p for p in self.services if best.counts[p] - step >= self.floor[p]),
                            key=lambda p: (-self._slack(best, p), -best.counts[p], p))
            moved = False
            for receiver in receivers[:2]:
                for donor in [d for d in donors if d != receiver][:2]:
                    counts = dict(best.counts)
                    counts[donor] -= step
                    counts[receiver] += step
                    trial = self.simulate(counts, self.search_replications, best.skills)
                    tries += 1
                    better = self._score(trial) > self._score(best)
                    self.progress(f"run {self.runs}: {step} window(s) {donor} -> {receiver}: worst "
                                  f"{'improved' if better else 'not improved'}")
                    if better:
                        best, moved = trial, True
                        break
                if moved or tries >= MAX_MOVES:
                    break
            if not moved:
                step //= 2
        return best
