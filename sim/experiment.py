"""Replications: the same scenario under consecutive seeds, with a confidence interval.

One run of a busy day is one sample; its mean wait has its own noise. Replications run
seeds ``seed, seed + 1, ...`` and report the mean of the per-run figures with a 95 %
interval (Student's t over the runs) — for the whole hall and per service — and, for an
M/M/c scenario, the comparison with Erlang C (mean wait and P(wait > 0)).
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Final

from scipy.stats import t as student_t

from . import theory
from .runner import Simulation
from .scenario import Scenario

HEADLINE: Final = ("mean_min", "p90_min", "p_wait", "within_target")  # combined for the hall and per service


def replicate(scenario: Scenario, replications: int = 1, *, seed: int | None = None,
              progress: Callable[[int, float], None] | None = None, **parts: Any) -> list[tuple[Simulation, dict]]:
    """Run *scenario* under *replications* consecutive seeds.

    Args:
        scenario: what to run.
        replications: how many runs.
        seed: the first seed (the scenario's by default).
        progress: called with (replication index, share of virtual time done).
        **parts: passed on to :class:`~sim.runner.Simulation`.

    Returns:
        (simulation, summary) per run; each summary has ``runtime_s``.
    """
    first = scenario.seed if seed is None else seed
    out = []
    for r in range(replications):
        report = None if progress is None else (lambda share, r=r: progress(r, share))
        sim = Simulation(scenario, seed=first + r, progress=report, **parts)
        started = time.perf_counter()
        summary = sim.run()
        summary["runtime_s"] = time.perf_counter() - started
        out.append((sim, summary))
    return out


def combine(scenario: Scenario, summaries: list[dict]) -> dict[str, Any]:
    """The first run's summary, plus the replications and the theory check.

    With several runs, ``replications`` holds the per-run headline figures (``runs``), the
    :func:`interval` of each :data:`HEADLINE` figure over the runs, and the same per service
    (``by_service``: code -> figure -> interval; a run where nobody of the service was
    called gives no value for it).
    """
    main = dict(summaries[0])
    if len(summaries) > 1:
        main["replications"] = spread(summaries)
    waits = [s["waits"]["all"].get("mean_min") for s in summaries]
    if all(w is not None for w in waits):
        check = theory.compare(scenario, waits, [s["waits"]["all"]["p_wait"] for s in summaries])
        if check is not None:
            main["theory"] = check
    return main


def spread(summaries: list[dict]) -> dict[str, Any]:
    """The :data:`HEADLINE` figures over runs: ``runs`` (one row per run), the :func:`interval`
    of each figure for the hall, and ``by_service`` (code -> figure -> interval; a run where
    nobody of the service was called gives no value for it)."""
    rows = [{"seed": s["seed"], **{k: s["waits"]["all"].get(k) for k in HEADLINE},
             "served": s["flow"]["served"], "abandoned": s["flow"]["abandoned"]} for s in summaries]
    codes = dict.fromkeys(code for s in summaries for code in s["waits"]["by_service"])
    by_service = {code: {k: interval([s["waits"]["by_service"].get(code, {}).get(k) for s in summaries])
                         for k in HEADLINE} for code in codes}
    return {"runs": rows, **{k: interval([r[k] for r in rows]) for k in HEADLINE}, "by_service": by_service}


def interval(values: list[float | None]) -> dict[str, float | None]:
    """Mean and 95 % half-width over runs (None values skipped).

    The half-width is Student's t (n - 1 degrees of freedom) times the standard error: with
    the few replications a manager runs, the normal 1.96 is too narrow (n = 4: 3.18).
    """
    mean, half = margin(values, 0.975)
    return {"mean": mean, "ci95": half}


def margin(values: list[float | None], quantile: float) -> tuple[float | None, float | None]:
    """Mean over runs and Student's t margin ``t(quantile, n - 1) * sd / sqrt(n)`` (None values skipped).

    ``quantile`` 0.975 gives the half-width of a two-sided 95 % interval; 0.9 the margin of
    a one-sided 90 % bound (``mean + margin`` is a 90 % upper bound). The mean is None with
    no values, the margin None with fewer than two.
    """
    xs = [v for v in values if v is not None]
    if not xs:
        return None, None
    mean = sum(xs) / len(xs)
    if len(xs) < 2:
        return mean, None
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))
    return mean, float(student_t.ppf(quantile, len(xs) - 1)) * sd / math.sqrt(len(xs))
