"""Locate the two edges of a batch size's learning rates from trials: where training stops, and
where the loss blows up.

Each trial ends ``trained``, ``stalled`` or ``diverged`` (see ``spectral_sweep.train``). Along the
lr axis a short trial typically shows four regions, any of which may be empty:

    stalled (too small to learn)  |  trained  |  stalled (too large to learn)  |  diverged

``lr_max`` is the upper edge of the trained region: the largest lr whose trial trained, with the
bracket [lr_max, smallest lr above it that did not train]. ``lr_blowup`` is the lower edge of
the diverged region, with the bracket [largest lr that did not diverge, smallest that did]: the
quantity the curvature theory speaks of (2 / lambda_max). The search:

1. finds an lr that trains. From a diverged start it walks down by ``step``. From a stalled one
   it walks both ways, nearest first, because both a too-small and a too-large lr stall; never
   above an lr that diverged, never below ``lr_min``. If that finds nothing, it bisects the gap
   just under the first divergence down to ``tolerance`` (where a narrow trained window squeezed
   under the blow-up hides) and tries once halfway (in log space) between the other neighbouring
   trials. Nothing trained anywhere: status ``nothing_trains``, never a number.
2. brackets the upper edge of training (up by ``step`` until a trial fails to train) and bisects
   it in log space until hi / lo <= ``tolerance``. With a bracket ratio r that costs
   ceil(log2(log r / log tolerance)) bisections.
3. reads the blow-up edge off the same trials and bisects it too, adding trials only where the
   two edges are apart (a stalled region between them). ``blowup=False`` skips the added trials.
   A trial of that bisection that trains above lr_max makes it the new lr_max (the definition is
   "the largest lr that trained"), and the contradiction is listed, as below.

``max_trials`` caps the trials of the two edges (the reference trial comes on top, as in
``search=adaptive``). A search that reaches it stops where it is, and each edge says what its
trials show: a trained lr with a failure above it is ``bracketed``, its bracket wider than
``tolerance`` (``SearchResult.ratio``); trained with nothing above it that failed, ``lower_bound``;
nothing trained, ``nothing_trains``; and ``SearchResult.capped`` says the cap stopped it.

Trials that contradict the shape (a trained lr above one that failed to train, other than a
too-small stall, or an lr that did not diverge above one that did) are listed in
``SearchResult.non_monotone``: the report flags them, since an edge found among them depends on
where the search happened to look.

``find_max_lr`` knows nothing about training: ``trial`` is any callable lr -> outcome (the
strings above, a mapping or object with ``outcome``, or a bool for trained/diverged), so the
search is testable and reusable on its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from spectral_sweep.errors import UsageError
from spectral_sweep.search.result import (
    BRACKETED,
    CHOSEN_BY_LEARNER,
    LOWER_BOUND,
    NO_STABLE_LR,
    NOT_SEARCHED,
    NOTHING_TRAINS,
    SearchResult,
)
from spectral_sweep.trial.outcomes import DIVERGED, STALLED, TRAINED, outcome_of

TOLERANCE = 2 ** 0.25


class _OutOfTrials(Exception):
    """The search wanted a trial beyond its ``max_trials``."""


class _Trials:
    """The trials of one search: run each lr once, remember every outcome; at most ``limit`` of
    them (None: no limit)."""

    def __init__(self, trial: Callable[[float], object], lr_min: float, lr_max_cap: float,
                 limit: int | None = None):
        self.trial, self.lr_min, self.lr_max_cap, self.limit = trial, lr_min, lr_max_cap, limit
        self.made: list = []                 # [(lr, raw result)]
        self.outcomes: dict[float, str] = {}

    def run(self, lr: float) -> str:
        lr = min(max(lr, self.lr_min), self.lr_max_cap)
        for seen, outcome in self.outcomes.items():
            if math.isclose(seen, lr, rel_tol=1e-9):
                return outcome
        if self.limit is not None and len(self.made) >= self.limit:
            raise _OutOfTrials
        result = self.trial(lr)
        self.made.append((lr, result))
        self.outcomes[lr] = outcome_of(result)
        return self.outcomes[lr]

    def lrs(self, *kinds: str) -> list[float]:
        return sorted(lr for lr, o in self.outcomes.items() if o in kinds)

    def ceiling(self) -> float:
        """No lr at or above the smallest diverged one is worth trying for training."""
        diverged = self.lrs(DIVERGED)
        return diverged[0] if diverged else math.inf


def find_max_lr(trial: Callable[[float], object], start: float, tolerance: float = TOLERANCE,
                step: float = 4.0, lr_min: float = 1e-6, lr_max_cap: float = 100.0,
                blowup: bool = True, reference: float | None = None,
                max_trials: int | None = None) -> SearchResult:
    """Both edges (see the module doc), each within a bracket of ratio <= ``tolerance``.

    ``step`` is the bracketing factor: 4 for a cold start; a warm start (a guess from a
    neighbouring batch size scaled by the law under test) is usually within a factor of 2,
    so a smaller step there saves trials. Edge cases come back as results, not errors:
    still trained at ``lr_max_cap`` gives status "lower_bound"; nothing trained anywhere in
    [``lr_min``, ``lr_max_cap``] gives "nothing_trains".

    ``reference`` (e.g. 0.25): one more trial at ``reference`` x lr_max unless one was already
    made that far below it. The edge search only visits lrs near the edge, where a short trial
    barely trains; the reference shows what the network reaches comfortably below it (lr_best).

    ``max_trials`` (None: no cap): at most this many trials for the edges; a search stopped there
    returns what its trials show, with ``capped`` set (module doc).
    """
    if not (start > 0 and lr_min > 0 and lr_max_cap > lr_min):
        raise UsageError(f"need 0 < lr_min < lr_max_cap and start > 0; got start={start}, "
                         f"lr_min={lr_min}, lr_max_cap={lr_max_cap}")
    if not (tolerance > 1 and step > 1):
        raise UsageError(f"search tolerance and step must exceed 1; got {tolerance}, {step}")
    if max_trials is not None and max_trials < 1:
        raise UsageError(f"search.max_trials must be at least 1; got {max_trials}")
    trials = _Trials(trial, lr_min, lr_max_cap, limit=max_trials)
    lr_max, bracket, status = None, (None, None), NOTHING_TRAINS
    capped = False
    try:
        _find_trained(trials, start, step, tolerance)
        while True:
            if trials.lrs(TRAINED):
                lr_max, bracket, status = _upper_edge(trials, step, tolerance)
            edge = _blowup_edge(trials, step, tolerance, extend=blowup)
            # a trial of the blow-up bisection that trained above lr_max moves lr_max up to it
            if not trials.lrs(TRAINED) or trials.lrs(TRAINED)[-1] <= (lr_max or 0):
                break
    except _OutOfTrials:   # the cap: each edge as far as its trials go
        capped, trials.limit = True, None
        lr_max, bracket, status = _upper_edge_so_far(trials)
        edge = _blowup_edge(trials, step, tolerance, extend=False)
    if reference and lr_max is not None:
        target = max(lr_max * reference, lr_min)
        if not any(lr <= target * math.sqrt(tolerance) for lr in trials.outcomes):
            trials.run(target)
    return SearchResult(lr_max, bracket, status, trials.made, *edge, non_monotone=_contradictions(trials),
                        capped=capped)


def _find_trained(trials: _Trials, start: float, step: float, tolerance: float) -> float | None:
    """Some lr that trains, or None. Walks the lattice start * step^k, nearest first; then looks
    between the lattice's points."""
    first = trials.run(start)
    if first == TRAINED:
        return start
    if first == DIVERGED:   # too large: walk down until something does not diverge
        found, start = _walk_down(trials, start, step)
        if found is not None or start is None:
            return found
    return _walk_both_ways(trials, start, step) or _between(trials, tolerance)


def _walk_down(trials: _Trials, lr: float, step: float) -> tuple[float | None, float | None]:
    """Down from a divergence: (an lr that trained, None), (None, the first stalled lr), or
    (None, None) when everything down to lr_min diverged."""
    while lr > trials.lr_min:
        lr = max(lr / step, trials.lr_min)
        outcome = trials.run(lr)
        if outcome == TRAINED:
            return lr, None
        if outcome == STALLED:
            return None, lr
    return None, None


def _walk_both_ways(trials: _Trials, start: float, step: float) -> float | None:
    """From a stall the trained region may lie below or above: look both ways, nearest first,
    never up to an lr that diverged."""
    up = down = start
    while True:
        moved = False
        if up * step < trials.ceiling() and up < trials.lr_max_cap:
            up = min(up * step, trials.lr_max_cap)
            moved = True
            if trials.run(up) == TRAINED:
                return up
        if down > trials.lr_min:
            down = max(down / step, trials.lr_min)
            moved = True
            if trials.run(down) == TRAINED:
                return down
        if not moved:
            return None


def _between(trials: _Trials, tolerance: float) -> float | None:
    """Missed by the lattice? First the gap right under the blow-up, where a narrow window is
    squeezed between too-large stalls and divergence: bisect it to the tolerance (the blow-up
    edge needs those trials anyway). Then halfway between every other pair of neighbours."""
    while math.isfinite(trials.ceiling()):
        below = [lr for lr in trials.lrs(STALLED) if lr < trials.ceiling()]
        if not below or trials.ceiling() / below[-1] <= tolerance * (1 + 1e-12):
            break
        middle = math.sqrt(below[-1] * trials.ceiling())
        if trials.run(middle) == TRAINED:
            return middle
    tried = [lr for lr in sorted(trials.outcomes) if lr < trials.ceiling()]
    for a, b in reversed(list(zip(tried, tried[1:]))):
        if b / a > tolerance * (1 + 1e-12) and trials.run(math.sqrt(a * b)) == TRAINED:
            return math.sqrt(a * b)
    return None


def _upper_edge(trials: _Trials, step: float, tolerance: float):
    """(lr_max, bracket, status) of the trained region's upper edge, bisected to ``tolerance``."""
    def bracket():
        lo = trials.lrs(TRAINED)[-1]
        above = [lr for lr in trials.lrs(STALLED, DIVERGED) if lr > lo]
        return lo, (above[0] if above else None)

    lo, hi = bracket()
    while hi is None:
        if lo >= trials.lr_max_cap:
            return lo, (lo, None), LOWER_BOUND
        trials.run(lo * step)
        lo, hi = bracket()
    while hi / lo > tolerance * (1 + 1e-12):
        trials.run(math.sqrt(lo * hi))
        lo, hi = bracket()
    return lo, (lo, hi), BRACKETED


def _upper_edge_so_far(trials: _Trials):
    """(lr_max, bracket, status) from the trials made, adding none: where the cap stopped the search."""
    trained = trials.lrs(TRAINED)
    if not trained:
        return None, (None, None), NOTHING_TRAINS
    above = [lr for lr in trials.lrs(STALLED, DIVERGED) if lr > trained[-1]]
    if not above:
        return trained[-1], (trained[-1], None), LOWER_BOUND
    return trained[-1], (trained[-1], above[0]), BRACKETED


def _blowup_edge(trials: _Trials, step: float, tolerance: float, extend: bool):
    """(lr_blowup, bracket, status) of the diverged region's lower edge; adds trials when ``extend``."""
    def bracket():
        calm = trials.lrs(TRAINED, STALLED)
        if not calm:
            return None, (trials.lrs(DIVERGED) or [None])[0]
        above = [lr for lr in trials.lrs(DIVERGED) if lr > calm[-1]]
        return calm[-1], (above[0] if above else None)

    lo, hi = bracket()
    if lo is None:
        return None, (None, hi), NO_STABLE_LR
    while hi is None:
        if lo >= trials.lr_max_cap or not extend:
            return lo, (lo, None), LOWER_BOUND
        trials.run(lo * step)
        lo, hi = bracket()
    while extend and hi / lo > tolerance * (1 + 1e-12):
        trials.run(math.sqrt(lo * hi))
        lo, hi = bracket()
    return lo, (lo, hi), BRACKETED


def _contradictions(trials: _Trials) -> list[str]:
    """Trials that break the expected shape, in words (empty when the shape held)."""
    trained = trials.lrs(TRAINED)
    diverged = trials.lrs(DIVERGED)
    found = []
    if trained:
        for lr, outcome in sorted(trials.outcomes.items()):
            if outcome != TRAINED and lr < trained[-1] and (lr > trained[0] or outcome == DIVERGED):
                found.append(f"lr={lr:.4g} {outcome} below lr={trained[-1]:.4g} that trained")
    if diverged:
        for lr in trials.lrs(TRAINED, STALLED):
            if lr > diverged[0]:
                found.append(f"lr={lr:.4g} did not diverge above lr={diverged[0]:.4g} that did")
    return found


def bisections_needed(ratio: float, tolerance: float = TOLERANCE) -> int:
    """How many halvings (in log space) take a bracket of ``ratio`` down to ``tolerance``."""
    return max(0, math.ceil(math.log2(math.log(ratio) / math.log(tolerance)) - 1e-12))


def grid_search(trial: Callable[[float], object], lrs) -> SearchResult:
    """Train every lr of a grid (the paper's protocol); lr_max is the largest that trained.

    Each bracket is (largest lr on the edge's near side, next grid lr above it); a grid gives no
    guarantee of monotonicity, so the brackets are what the grid saw, nothing more.
    """
    lrs = sorted(float(lr) for lr in lrs)
    if not lrs or lrs[0] <= 0:
        raise UsageError("search.lrs must be a non-empty list of positive learning rates")
    trials = _Trials(trial, lrs[0], lrs[-1] * (1 + 1e-9))
    for lr in lrs:
        trials.run(lr)

    def edge(near: tuple, none_status: str):
        below = trials.lrs(*near)
        if not below:
            return None, (None, lrs[0]), none_status
        above = [lr for lr in lrs if lr > below[-1]]
        if not above:
            return below[-1], (below[-1], None), LOWER_BOUND
        return below[-1], (below[-1], above[0]), BRACKETED

    lr_max, bracket, status = edge((TRAINED,), NOTHING_TRAINS)
    return SearchResult(lr_max, bracket, status, trials.made, *edge((TRAINED, STALLED), NO_STABLE_LR),
                        non_monotone=_contradictions(trials))


def locate(search, trial: Callable[[float], object], lr: float, start: float | None = None,
           owns_lr: bool = False) -> SearchResult:
    """Run the search that ``search`` (a ``config.SearchConfig``) names.

    ``lr`` is the optimizer's configured lr (what ``fixed`` trains at); ``start`` the bisection's
    first guess (a warm start from a neighbouring batch size, else ``search.start``, else ``lr``),
    and a warm start brackets with the square root of ``search.step``. An optimizer that sets its
    own lr (``owns_lr``, the Lanczos learner) gets one trial whatever the method: trials at other
    start lrs would be the same trial.
    """
    method = str(search.method)
    if method == "none":
        return SearchResult(None, (None, None), NOT_SEARCHED, [])
    if owns_lr:
        return SearchResult(None, (None, None), CHOSEN_BY_LEARNER, grid_search(trial, [lr]).trials)
    if method == "fixed":
        return grid_search(trial, [lr])
    if method == "grid":
        return grid_search(trial, search.lrs)
    if method != "bisect":
        raise UsageError(f"unknown search method '{method}'; choose one of: bisect, fixed, grid, none")
    warm = start is not None
    first = start if warm else (search.start if search.start is not None else lr)
    return find_max_lr(trial, float(first), tolerance=search.tolerance,
                       step=math.sqrt(search.step) if warm else search.step, lr_min=search.lr_min,
                       lr_max_cap=search.lr_max_cap, blowup=search.blowup, reference=search.reference,
                       max_trials=search.max_trials)
