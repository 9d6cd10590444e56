"""Simulated sweeps with a planted law: does the adaptive search's interval cover the truth, and
is a sweep decisive, at what cost in trials? (pure numpy; tests and scripts/calibrate_search.py)

The simulated trial is the real one's statistical model: each trial has its own seed, and a seed's
edge is drawn from N(mu_B, spread^2) with mu_B = log(c) + p log B on the planted power law; a trial
at lr trains when log lr lies below its seed's edge. With probability ``flip`` the outcome is
flipped (a seed that stalls at a comfortable lr, or trains above the edge: the non-monotone
trials real sweeps show). A failure is a divergence, as for the BatchNorm networks of the
quickstart, so both edges coincide.

Points run in the sweep's order; each starts warm from the previous point's lr_max scaled by the
law, with the previous points' nuisance evidence as its prior, and stops early once the group's
verdict is settled (``search/group.py``), as ``point/run.py`` does; the exponent is fitted on the
group's joint estimates (as the report does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from spectral_sweep import theory
from spectral_sweep.search import edge, optimum
from spectral_sweep.search.adaptive import Priors, find_edges
from spectral_sweep.search.group import settles_verdict
from spectral_sweep.search.result import BRACKETED


@dataclass(frozen=True)
class SweepOutcome:
    fit: theory.PowerLawFit | None
    verdict: str
    trials: list            # trials per point
    covered: list           # whether each point's 95% interval covers its planted edge
    settled: list = ()      # whether each point stopped early, its group's verdict settled


def planted_trial(mu: float, spread: float, flip: float, rng: np.random.Generator):
    """lrs -> outcomes of fresh-seed trials whose edges are N(mu, spread^2) in log lr."""
    def run(lrs):
        edges = rng.normal(mu, spread, size=len(lrs))
        trained = np.log(lrs) < edges
        trained ^= rng.random(len(lrs)) < flip
        return ["trained" if t else "diverged" for t in trained]
    return run


def simulate_sweep(batch_sizes, exponent: float, expected: float, rng: np.random.Generator, *,
                   spread: float = 0.25, flip: float = 0.03, prefactor: float = 1e-3,
                   precision: float = 0.2, max_trials: int = 30, parallel: int = 2,
                   start: float = 0.05, placement: str = "levels",
                   verdict_precision: float | None = 0.5) -> SweepOutcome:
    """One simulated sweep of one group: its fitted exponent, verdict, cost and per-point coverage.
    ``verdict_precision``: as ``search.verdict_precision`` (its default; None: every point to ``precision``)."""
    points, priors, first, bracketed = [], Priors(), start, []
    for i, b in enumerate(batch_sizes):
        mu = math.log(prefactor) + exponent * math.log(b)
        if i:
            first = points[-1][2] * (b / batch_sizes[i - 1]) ** expected
        result = find_edges(planted_trial(mu, spread, flip, rng), first, precision=precision,
                            max_trials=max_trials, parallel=parallel, step=2.0 if i else 4.0,
                            reference=None, priors=priors, placement=placement,
                            settled=settles_verdict(bracketed, b, expected, verdict_precision))
        lrs = [lr for lr, _ in result.trials]
        ok = [o == "trained" for _, o in result.trials]
        points.append((lrs, ok, result.lr_max or first, mu, result.status, result.settled))
        priors = _add_evidence(priors, lrs, ok)
        if result.status == BRACKETED:
            bracketed.append((b, result.lr_max, result.estimate.log_se))
    return _outcome(points, batch_sizes, expected)


def _add_evidence(priors: Priors, lrs, ok) -> Priors:
    if not edge.has_edge(ok):
        return priors
    evidence = edge.posterior(lrs, ok).evidence()
    total = evidence if priors.trained is None else priors.trained + evidence
    return Priors(trained=total, blowup=total)


def _outcome(points, batch_sizes, expected) -> SweepOutcome:
    fits = edge.fit_group([(lrs, ok) for lrs, ok, *_ in points])
    trials, settled = [len(p[0]) for p in points], [p[5] for p in points]
    covered = [f is not None and f.lo <= math.exp(p[3]) <= f.hi for f, p in zip(fits, points)]
    usable = [(b, f) for b, f, p in zip(batch_sizes, fits, points) if f is not None and p[4] == BRACKETED]
    if len(usable) < 2:
        return SweepOutcome(None, "inconclusive", trials, covered, settled)
    fit = theory.fit_power_law([b for b, _ in usable], [f.lr for _, f in usable],
                               se=[f.log_se for _, f in usable])
    return SweepOutcome(fit, theory.verdict(fit, expected), trials, covered, settled)


def calibrate(n_sweeps: int, batch_sizes=(128, 256, 512), exponent: float = 1.0, expected: float = 1.0,
              seed: int = 0, **kwargs) -> dict:
    """Coverage of the exponent's interval, decisiveness and cost over ``n_sweeps`` simulated sweeps."""
    rng = np.random.default_rng(seed)
    runs = [simulate_sweep(list(batch_sizes), exponent, expected, rng, **kwargs) for _ in range(n_sweeps)]
    fitted = [r for r in runs if r.fit is not None]
    return {
        "sweeps": n_sweeps,
        "coverage": float(np.mean([r.fit.ci_low <= exponent <= r.fit.ci_high for r in fitted])),
        "decisive": float(np.mean([r.verdict != "inconclusive" for r in runs])),
        "correct": float(np.mean([r.verdict == ("consistent" if exponent == expected else "inconsistent")
                                  for r in runs])),
        "trials_per_point": float(np.mean([t for r in runs for t in r.trials])),
        "point_coverage": float(np.mean([c for r in runs for c in r.covered])),
        "settled": float(np.mean([s for r in runs for s in r.settled])),
        "half_width": float(np.median([(r.fit.ci_high - r.fit.ci_low) / 2 for r in fitted])),
    }


# --------------------------------------------------------------------------------------------
# lr_opt: a planted peak of quality below the edges
# --------------------------------------------------------------------------------------------

def planted_quality_trial(mu: float, x_opt: float, rng: np.random.Generator, *, spread: float = 0.25,
                          gap: float = 0.3, curvature: float = 0.1, noise: float = 0.06, top: float = 0.6,
                          chance: float = 0.1, margin: float = 0.05, half_stalled: float = 0.0):
    """lrs -> fresh-seed trials with both edges and a quality: a trial diverges above its seed's
    edge ``mu + gap``, stalls (quality ``chance``) above ``mu``, else trains to a quality that
    peaks at ``exp(x_opt)``: a parabola in log lr with seed noise, floored at chance, an accuracy
    (within [0, 1]); a trial whose quality is within ``margin`` of chance stalled (too small an lr
    to learn in the budget). A share ``half_stalled`` of seeds learn only partly: their quality
    falls anywhere between chance and the curve (as one seed of the demo's B = 64 did, 0.14 beside
    its twin's 0.90)."""
    def run(lrs):
        out = []
        for lr in lrs:
            x = math.log(lr)
            if x + rng.normal(0, spread) > mu + gap:
                out.append({"outcome": "diverged"})
            elif x + rng.normal(0, spread) > mu:
                out.append({"outcome": "stalled", "test_acc": chance})
            else:
                q = max(chance, top - curvature * (x - x_opt) ** 2) + rng.normal(0, noise)
                if half_stalled and rng.random() < half_stalled:
                    q = rng.uniform(chance, max(q, chance))
                q = min(max(q, 0.0), 1.0)
                out.append({"outcome": "trained" if q > chance + margin else "stalled", "test_acc": q})
        return out
    return run


def calibrate_optimum(n_sweeps: int, batch_sizes=(128, 256, 512), exponent: float = 1.0, below: float = 8.0,
                      seed: int = 0, parallel: int = 2, opt_trials: int = 8, precision: float = 0.35,
                      **kwargs) -> dict:
    """lr_opt in simulated sweeps: lr_max on a planted power law, lr_opt ``below`` times lower (so
    on the same law); each point searched as a real one is (warm start, reference trial, lr_opt's
    own trials). Coverage of each point's interval and of lr_opt's exponent, and the trials lr_opt adds."""
    rng = np.random.default_rng(seed)
    covered, statuses, added, total, exponents = [], {}, [], [], []
    for _ in range(n_sweeps):
        fits, first = [], 0.05
        for b in batch_sizes:
            mu = math.log(1e-3) + exponent * math.log(b)
            x_opt = mu - math.log(below)
            run = planted_quality_trial(mu, x_opt, rng, **kwargs)
            result = find_edges(run, first * math.exp(rng.uniform(-1, 1)), parallel=parallel,
                                opt=optimum.OptimumSearch(precision=precision, max_trials=opt_trials))
            f = result.optimum
            statuses[f.status if f else None] = statuses.get(f.status if f else None, 0) + 1
            if f is not None and f.status == optimum.BRACKETED:
                covered.append(f.lo <= math.exp(x_opt) <= f.hi)
                fits.append((b, f))
            added.append(result.optimum_trials)
            total.append(len(result.trials))
            first = (result.lr_max or first) * 2 ** exponent
        if len(fits) >= 2:
            fit = theory.fit_power_law([b for b, _ in fits], [f.lr for _, f in fits], se=[f.log_se for _, f in fits])
            exponents.append((fit.ci_low <= exponent <= fit.ci_high, (fit.ci_high - fit.ci_low) / 2))
    return {"sweeps": n_sweeps, "points": n_sweeps * len(batch_sizes), "statuses": statuses,
            "point_coverage": float(np.mean(covered)) if covered else math.nan,
            "exponent_coverage": float(np.mean([c for c, _ in exponents])) if exponents else math.nan,
            "exponent_half_width": float(np.median([h for _, h in exponents])) if exponents else math.nan,
            "fitted_sweeps": len(exponents), "added_per_point": float(np.mean(added)),
            "trials_per_point": float(np.mean(total))}
