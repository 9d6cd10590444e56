"""Locate the maximal stable learning rate from trials: bracket geometrically, then bisect in log space.

Stability is assumed monotone in lr (stable below the edge, diverged above it). From a start lr the
search multiplies (or divides) by ``step`` until one stable and one diverged trial bracket the
edge, then bisects the bracket at its geometric midpoint until hi / lo <= ``tolerance``. With a
bracket ratio r that costs ceil(log2(log r / log tolerance)) bisections: a handful of trials where
a grid of the same resolution over [1e-4, 10] would need 66.

``find_max_lr`` knows nothing about training: ``trial`` is any callable lr -> stable? (a bool, or
an object with a ``.stable`` attribute), so the search is testable and reusable on its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .errors import UsageError

TOLERANCE = 2 ** 0.25


@dataclass
class SearchResult:
    lr_max: float | None          # the largest stable lr found (None: nothing stable)
    bracket: tuple                # (largest stable, smallest diverged); None where not found
    status: str                   # "bracketed" | "lower_bound" | "no_stable_lr"
    trials: list = field(default_factory=list)   # [(lr, outcome)] in the order they ran

    @property
    def ratio(self) -> float | None:
        lo, hi = self.bracket
        return hi / lo if lo and hi else None


def _is_stable(outcome) -> bool:
    """A trial's verdict: a bool, a mapping with "stable", or an object with ``.stable``."""
    if isinstance(outcome, Mapping):
        return bool(outcome["stable"])
    return bool(getattr(outcome, "stable", outcome))


def find_max_lr(trial: Callable[[float], object], start: float, tolerance: float = TOLERANCE,
                step: float = 4.0, lr_min: float = 1e-6, lr_max_cap: float = 100.0) -> SearchResult:
    """The largest stable lr within a bracket of ratio <= ``tolerance``.

    ``step`` is the bracketing factor: 4 for a cold start; a warm start (a guess from a
    neighbouring batch size scaled by the law under test) is usually within a factor of 2,
    so a smaller step there saves trials. Edge cases come back as results, not errors:
    still stable at ``lr_max_cap`` gives status "lower_bound"; nothing stable down to
    ``lr_min`` gives "no_stable_lr".
    """
    if not (start > 0 and lr_min > 0 and lr_max_cap > lr_min):
        raise UsageError(f"need 0 < lr_min < lr_max_cap and start > 0; got start={start}, "
                         f"lr_min={lr_min}, lr_max_cap={lr_max_cap}")
    if not (tolerance > 1 and step > 1):
        raise UsageError(f"search tolerance and step must exceed 1; got {tolerance}, {step}")
    trials = []

    def run(lr):
        outcome = trial(lr)
        trials.append((lr, outcome))
        return _is_stable(outcome)

    lr = min(max(start, lr_min), lr_max_cap)
    lo = hi = None
    if run(lr):
        lo = lr
        while hi is None:
            if lo >= lr_max_cap:
                return SearchResult(lo, (lo, None), "lower_bound", trials)
            lr = min(lo * step, lr_max_cap)
            if run(lr):
                lo = lr
            else:
                hi = lr
    else:
        hi = lr
        while lo is None:
            if hi <= lr_min:
                return SearchResult(None, (None, hi), "no_stable_lr", trials)
            lr = max(hi / step, lr_min)
            if run(lr):
                lo = lr
            else:
                hi = lr
    while hi / lo > tolerance * (1 + 1e-12):
        mid = math.sqrt(lo * hi)
        if run(mid):
            lo = mid
        else:
            hi = mid
    return SearchResult(lo, (lo, hi), "bracketed", trials)


def bisections_needed(ratio: float, tolerance: float = TOLERANCE) -> int:
    """How many halvings (in log space) take a bracket of ``ratio`` down to ``tolerance``."""
    return max(0, math.ceil(math.log2(math.log(ratio) / math.log(tolerance)) - 1e-12))


def grid_search(trial: Callable[[float], object], lrs) -> SearchResult:
    """Train every lr of a grid (the paper's protocol); lr_max is the largest stable one.

    The bracket is (largest stable, next grid lr above it) when that one diverged; a grid gives
    no guarantee of monotonicity, so the bracket is what the grid saw, nothing more.
    """
    lrs = sorted(float(lr) for lr in lrs)
    if not lrs or lrs[0] <= 0:
        raise UsageError("search.lrs must be a non-empty list of positive learning rates")
    trials = [(lr, trial(lr)) for lr in lrs]
    stable = [lr for lr, o in trials if _is_stable(o)]
    if not stable:
        return SearchResult(None, (None, lrs[0]), "no_stable_lr", trials)
    lo = max(stable)
    above = [lr for lr in lrs if lr > lo]
    if not above:
        return SearchResult(lo, (lo, None), "lower_bound", trials)
    return SearchResult(lo, (lo, above[0]), "bracketed", trials)
