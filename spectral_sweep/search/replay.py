"""The search replayed on real trial outcomes: does its interval cover the edge that a brute force
of many real trials puts there, and at what cost? (pure numpy; tests and scripts/replay_bank.py)

A bank (scripts/outcome_bank.py) holds one point's real trials on a log grid of lrs, many fresh
seeds at each. A replay runs the real ``find_edges`` against it: a proposed lr is answered by the
nearest grid lr's next unused seed, in an order shuffled per replay, so each replay sees one
possible sequence of real outcomes. The bank's own edge, fitted on all of its trials at once, is
the truth a replay's interval should cover. Unlike the planted calibration (calibration.py), the
outcomes here have whatever plateau, lapses and spread the real network has at that budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import ndtr
from scipy.stats import chi2

from spectral_sweep.search import edge, optimum
from spectral_sweep.search.adaptive import blowup_data, find_edges, upper_edge_data
from spectral_sweep.search.result import BRACKETED, INCONCLUSIVE
from spectral_sweep.trial.outcomes import DIVERGED, TRAINED, near_threshold, noise_check


@dataclass(frozen=True)
class Bank:
    """Real outcomes of one sweep point: ``outcomes[i]`` are the trials at ``lrs[i]``, one per seed."""

    lrs: np.ndarray
    outcomes: list                  # [[outcome, ...] per grid lr]
    name: str = ""
    accuracies: list | None = None  # [[test accuracy or None, ...] per grid lr], beside ``outcomes``
    num_classes: int | None = None  # what decided trained from stalled: the judge's own noise
    test_size: int | None = None    # (outcomes.decided_by_noise), applied by a replay as by a job

    @classmethod
    def from_dict(cls, data: dict, name: str = "") -> Bank:
        lrs = list(data["lrs"])
        outcomes, accuracies = [[] for _ in lrs], [[] for _ in lrs]
        for trial in data["trials"]:
            outcomes[trial["grid"]].append(trial["outcome"])
            accuracies[trial["grid"]].append(trial.get("test_acc"))
        return cls(np.asarray(lrs, dtype=float), outcomes, name, accuracies, data.get("num_classes"),
                   data.get("test_size"))

    @classmethod
    def merged(cls, banks: list[Bank], name: str = "") -> Bank:
        """One bank from several of the same point (a grid below another's, to reach its peak)."""
        rows = sorted((lr, o, a) for b in banks for lr, o, a in zip(b.lrs, b.outcomes, b.accuracies or
                                                                    [[None] * len(o) for o in b.outcomes]))
        return cls(np.array([r[0] for r in rows]), [r[1] for r in rows], name, [r[2] for r in rows],
                   banks[0].num_classes, banks[0].test_size)

    def noise_check(self):
        """The judge's own noise as a job applies it (None: the bank does not say its test set)."""
        return noise_check(self.num_classes, self.test_size) if self.accuracies is not None else None

    def near_threshold(self) -> float | None:
        """The share of the bank's finite trials within the judge's noise of its threshold (what a
        replay's inconclusive points answer to; None: the bank does not say its test set)."""
        if self.accuracies is None or not (self.num_classes and self.test_size):
            return None
        accs = [a for found, got in zip(self.outcomes, self.accuracies) for o, a in zip(found, got) if o != DIVERGED]
        near, judged, _, _ = near_threshold(accs, self.num_classes, self.test_size)
        return near / judged if judged else None

    def all_trials(self) -> list[tuple[float, str]]:
        return [(float(lr), o) for lr, found in zip(self.lrs, self.outcomes) for o in found]

    def truth(self) -> tuple[Truth | None, Truth | None]:
        """The bank's own edges (training's upper edge, blow-up), from all of its trials at once, by a
        model independent of the search's: ``fit_truth``. The upper edge's trials start where training
        is at its plateau: grid lrs below the peak share of trained trials count while their share
        stays above half the peak's (below them lies the too-small side, which a sigmoid falling in lr
        does not describe)."""
        trials = self.all_trials()
        shares = [sum(o == TRAINED for o in found) / max(len(found), 1) for found in self.outcomes]
        peak = int(np.argmax(shares))
        floor = peak
        while floor > 0 and shares[floor - 1] >= shares[peak] / 2:
            floor -= 1
        upper = [(lr, o) for lr, o in trials if lr >= self.lrs[floor] or o == DIVERGED]
        fits = []
        for lrs, ok in (upper_edge_data(upper), blowup_data(trials)):
            fits.append(fit_truth(lrs, ok) if edge.has_edge(ok) else None)
        return fits[0], fits[1]


@dataclass(frozen=True)
class Truth:
    """A bank's edge by maximum likelihood: where the sigmoid is half way between its floor and
    plateau, with a 95% profile-likelihood interval; the plateau's and floor's shares beside it."""

    lr: float
    lo: float
    hi: float
    spread: float
    lapse: float          # failures far below the edge: 1 - the plateau
    guess: float          # successes far above it


def _nll(params, x, s) -> float:
    """Binomial negative log likelihood of ``s`` = (successes, trials) at each distinct log lr ``x``."""
    mu, log_spread, lapse, guess = params
    p = guess + (1 - guess - lapse) * ndtr((mu - x) / math.exp(log_spread))
    p = np.clip(p, 1e-12, 1 - 1e-12)
    k, n = s
    return -float(np.sum(k * np.log(p) + (n - k) * np.log1p(-p)))


def _fit_at(x, s, mu: float | None, starts) -> tuple[float, np.ndarray]:
    """The best (negative log likelihood, params) over ``starts``; ``mu`` fixed when given."""
    bounds = [(x.min() - 3, x.max() + 3), (math.log(0.01), math.log(5.0)), (0.0, 0.5), (0.0, 0.5)]
    best = (math.inf, None)
    for start in starts:
        if mu is None:
            found = minimize(_nll, start, args=(x, s), bounds=bounds, method="L-BFGS-B")
            value, params = found.fun, found.x
        else:
            found = minimize(lambda q: _nll([mu, *q], x, s), start[1:], bounds=bounds[1:], method="L-BFGS-B")
            value, params = found.fun, np.r_[mu, found.x]
        if value < best[0]:
            best = (value, params)
    return best


def _profile_end(x, s, params, limit: float, direction: int, step: float = 0.02) -> float:
    """Where mu's profile likelihood, walked from the optimum in ``direction`` (each fit started from
    the last), leaves ``limit``; the edge of the 95% interval."""
    mu, start = float(params[0]), list(params)
    for _ in range(300):
        value, found = _fit_at(x, s, mu + direction * step, [start])
        if value > limit:
            return mu
        mu, start = mu + direction * step, list(found)
    return mu


def fit_truth(lrs, successes) -> Truth:
    """The edge of many (lr, success) trials by maximum likelihood of guess + (1 - guess - lapse)
    Phi((mu - log lr) / spread), lapse and guess free up to one half: nothing assumed that a search's
    own prior might share. The interval is mu's profile likelihood within chi2(1)'s 95% quantile."""
    x, where = np.unique(np.log(np.asarray(lrs, dtype=float)), return_inverse=True)
    s = (np.bincount(where, weights=np.asarray(successes, dtype=float)), np.bincount(where).astype(float))
    starts = [[m, math.log(0.3), lapse, 0.02] for m in np.linspace(x.min(), x.max(), 7) for lapse in (0.02, 0.3)]
    best, params = _fit_at(x, s, None, starts)
    limit = best + chi2.ppf(0.95, 1) / 2
    ends = [_profile_end(x, s, params, limit, direction) for direction in (-1, 1)]
    return Truth(math.exp(params[0]), math.exp(ends[0]), math.exp(ends[1]), math.exp(params[1]),
                 float(params[2]), float(params[3]))


class Replay:
    """lrs -> outcomes from the bank: the nearest grid lr, its next unused seed (shuffled per replay)."""

    def __init__(self, bank: Bank, rng: np.random.Generator):
        self.bank, self.log_lrs = bank, np.log(bank.lrs)
        self.order = [rng.permutation(len(found)) for found in bank.outcomes]
        self.used = np.zeros(len(bank.lrs), dtype=int)
        self.reused = 0              # draws past a grid lr's last seed (wrapped round: not fresh)

    def __call__(self, lrs) -> list:
        """Outcome strings, or {"outcome", "test_acc"} where the bank holds accuracies (lr_opt's replay)."""
        out = []
        for lr in lrs:
            i = int(np.argmin(np.abs(self.log_lrs - math.log(lr))))
            found = self.bank.outcomes[i]
            k = self.used[i]
            self.reused += k >= len(found)
            j = self.order[i][k % len(found)]
            out.append(found[j] if self.bank.accuracies is None else
                       {"outcome": found[j], "test_acc": self.bank.accuracies[i][j]})
            self.used[i] += 1
        return out


@dataclass(frozen=True)
class ReplayOutcome:
    status: str
    trials: int
    covered: bool | None            # the 95% interval holds the bank's edge (None: no interval)
    half_width: float | None
    reused: int


def replay_once(bank: Bank, truth: Truth, rng: np.random.Generator, *, start: float,
                precision: float = 0.3, max_trials: int = 30, parallel: int = 2, **kwargs) -> ReplayOutcome:
    """One search of the point against the bank's outcomes."""
    run = Replay(bank, rng)
    result = find_edges(run, start, precision=precision, max_trials=max_trials, parallel=parallel,
                        reference=None, noise=bank.noise_check(), **kwargs)
    fit = result.estimate
    covered = None if fit is None else bool(fit.lo <= truth.lr <= fit.hi)
    return ReplayOutcome(result.status, len(result.trials), covered,
                         None if fit is None else fit.half_width, run.reused)


def replay(bank: Bank, n: int, *, start: float, seed: int = 0, **kwargs) -> dict:
    """Coverage, cost and statuses of ``n`` replays of the search against ``bank``."""
    truth, _ = bank.truth()
    if truth is None:
        raise ValueError(f"bank {bank.name}: its trials show no upper edge of training")
    rng = np.random.default_rng(seed)
    runs = [replay_once(bank, truth, rng, start=start, **kwargs) for _ in range(n)]
    judged = [r for r in runs if r.covered is not None and r.status == BRACKETED]   # inconclusive: no claim
    return {
        "bank": bank.name, "replays": n, "truth": truth.lr, "truth_lo": truth.lo, "truth_hi": truth.hi,
        "truth_spread": truth.spread, "truth_lapse": truth.lapse, "bank_near_threshold": bank.near_threshold(),
        "coverage": float(np.mean([r.covered for r in judged])) if judged else float("nan"),
        "covered_or_inconclusive": sum(r.status == INCONCLUSIVE or (r.status == BRACKETED and bool(r.covered))
                                       for r in runs) / n,
        "bracketed": len(judged) / n,
        "statuses": {s: sum(r.status == s for r in runs) / n for s in sorted({r.status for r in runs})},
        "trials_per_point": float(np.mean([r.trials for r in runs])),
        "half_width": float(np.median([r.half_width for r in judged])) if judged else float("nan"),
        "reused_share": float(np.sum([r.reused for r in runs]) / max(1, np.sum([r.trials for r in runs]))),
    }


# ============================================================================================
# lr_opt replayed
# ============================================================================================

@dataclass(frozen=True)
class OptimumTruth:
    """A bank's brute-force lr_opt: where the kernel-smoothed mean test accuracy of its trained
    trials peaks (Gaussian kernel in log lr, ``BANDWIDTH`` wide, on accuracy itself), with a 95%
    interval from resampling its trials. None of the search's model (a window, a parabola, the
    angle scale) is shared, and a real peak need not be symmetric."""

    lr: float
    lo: float
    hi: float
    best_mean: float      # the smoothed mean accuracy at the peak


BANDWIDTH = 0.4           # natural log: about the banks' grid step (0.5), so each mean pools 2-3 grid lrs


def _smoothed(x: np.ndarray, y: np.ndarray, grid: np.ndarray) -> np.ndarray:
    w = np.exp(-0.5 * ((grid[:, None] - x[None, :]) / BANDWIDTH) ** 2)
    return w @ y / w.sum(axis=1)


def _trained_accuracies(bank: Bank, ceiling: float) -> tuple[np.ndarray, np.ndarray]:
    """(log lr, test accuracy) of the bank's trained trials below ``ceiling``."""
    pairs = [(math.log(lr), a) for lr, found, accs in zip(bank.lrs, bank.outcomes, bank.accuracies)
             for o, a in zip(found, accs) if o == TRAINED and a is not None and lr < ceiling]
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


def optimum_truth(bank: Bank, ceiling: float, resamples: int = 1000, seed: int = 0) -> OptimumTruth | None:
    """The bank's lr_opt from its trained trials below ``ceiling`` (the bank's edge of training:
    above it quality falls off a cliff); None where the peak lies within a grid step of the
    lowest or highest lr (the grid does not bracket it)."""
    x, y = _trained_accuracies(bank, ceiling)
    if len(x) < 3:
        return None
    grid = np.linspace(x.min(), x.max(), 400)
    curve = _smoothed(x, y, grid)
    peak = grid[int(np.argmax(curve))]
    if peak - x.min() < BANDWIDTH or x.max() - peak < BANDWIDTH:
        return None
    rng = np.random.default_rng(seed)
    found = [grid[int(np.argmax(_smoothed(x[i], y[i], grid)))]
             for i in (rng.integers(0, len(x), len(x)) for _ in range(resamples))]
    lo, hi = np.quantile(found, [0.025, 0.975])
    return OptimumTruth(math.exp(peak), math.exp(lo), math.exp(hi), float(curve.max()))


def replay_optimum(bank: Bank, n: int, *, start: float, seed: int = 0, precision: float = 0.3,
                   opt: optimum.OptimumSearch | None = None, parallel: int = 2, step: float = 4.0) -> dict:
    """``n`` searches of the point as `make demo` runs it (edges, the reference trial at lr_max/4,
    lr_opt's own trials) against the bank's trials; how often lr_opt's 95% interval holds the
    bank's brute-force lr_opt, how the points end, and what lr_opt costs."""
    edge_truth, _ = bank.truth()
    truth = optimum_truth(bank, edge_truth.lo) if edge_truth is not None else None
    if truth is None:
        raise ValueError(f"bank {bank.name}: its grid does not bracket the peak of accuracy")
    rng, runs = np.random.default_rng(seed), []
    x, y = _trained_accuracies(bank, edge_truth.lo)      # what training at an lr gives, on average
    for _ in range(n):
        found = find_edges(Replay(bank, rng), start, precision=precision, parallel=parallel, step=step,
                           opt=opt or optimum.OptimumSearch(), noise=bank.noise_check())
        fit = found.optimum
        bracketed = fit is not None and fit.status == optimum.BRACKETED
        at = float(_smoothed(x, y, np.array([math.log(fit.lr)]))[0]) if bracketed else None
        runs.append((fit.status if fit is not None else "none", found.optimum_trials,
                     bool(fit.lo <= truth.lr <= fit.hi) if bracketed else None,
                     fit.half_width() if bracketed else None,
                     _bound_holds(fit, truth.lr), at))
    judged = [r for r in runs if r[2] is not None]
    bounds = [r for r in runs if r[0] in (optimum.UPPER_BOUND, optimum.LOWER_BOUND)]
    return {"bank": bank.name, "replays": n, "truth": truth.lr, "truth_lo": truth.lo, "truth_hi": truth.hi,
            "best_mean": truth.best_mean,
            "statuses": {s: sum(r[0] == s for r in runs) / n for s in sorted({r[0] for r in runs})},
            "coverage": float(np.mean([r[2] for r in judged])) if judged else float("nan"),
            "bounds_hold": float(np.mean([r[4] for r in bounds])) if bounds else float("nan"),
            "opt_trials": float(np.mean([r[1] for r in runs])),
            "accuracy_lost": float(np.median([truth.best_mean - r[5] for r in judged])) if judged else float("nan"),
            "half_width": float(np.median([r[3] for r in judged])) if judged else float("nan")}


def _bound_holds(fit, lr: float) -> bool:
    """A bound is right where the truth lies on its side (at most ``hi``, at least ``lo``)."""
    if fit is None:
        return False
    return (fit.status == optimum.UPPER_BOUND and lr <= fit.hi) or (fit.status == optimum.LOWER_BOUND and lr >= fit.lo)
