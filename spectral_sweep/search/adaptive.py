"""The default search: each edge of a batch size's learning rates as a threshold of a random
outcome, placed adaptively from trials with fresh seeds, with a measured interval.

Every trial draws its own seed, so the outcome at one lr is a sample of P(trained | lr), and the
edge estimated is the population's, not one seed's (a single seed's edge is chaotic in the float
summation order). ``search/edge.py`` models P(trained | log lr) as a sigmoid and gives each edge with its
95% interval. The search runs in synchronous rounds of ``parallel`` trials (so the records do not
depend on which trial finished first):

1. locate: find an lr that trains and one above it that does not, on the lattice
   ``start * step^k`` nearest first (never at or above an lr that diverged); a gap under the first
   divergence is searched last, as in ``search.find_max_lr``, after every lattice lr that stalled
   is tried once more with a fresh seed (near a budget's limit only some seeds train). Nothing trained anywhere in
   [lr_min, lr_max_cap]: ``nothing_trains``; still trained at the cap: ``lower_bound``.
2. refine: place each round's trials where the upper edge's posterior learns most, until the
   half-width of its 95% interval (in log lr) is at most ``precision``, or ``settled`` says the
   group's verdict no longer depends on this point (``search/group.py``), or ``max_trials`` trials
   are made. With ``blowup`` every third trial goes to the blow-up edge (P(diverged | log lr)) while
   its interval is wider than ``blowup_precision``; it is reported with the interval its trials
   give, never below the upper edge's (a trial that diverged did not train: ``edge.EdgePosterior.fit``).
3. reference: one trial at ``reference`` x lr_max, so that a comfortable lr is among the trials
   (``lr_best`` is the lr of the trial with the best test accuracy); both edges are then fitted
   from every trial, this one included.
4. check the fit (``edge.problem``): trials that the posterior's own replicates do not resemble
   make the point ``inconclusive``, with the reason; its interval would rest on a model they reject.

Trials below the lowest lr that trained are the too-small side of the trained window and do not
inform the upper edge (diverged trials always do). ``prior`` carries the nuisance evidence of the
group's batch sizes already measured (``edge.EdgePosterior.evidence``): the spread is shared.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from spectral_sweep.errors import UsageError
from spectral_sweep.search import edge, optimum
from spectral_sweep.search.result import (
    BRACKETED,
    INCONCLUSIVE,
    LOWER_BOUND,
    NO_STABLE_LR,
    NOTHING_TRAINS,
    SearchResult,
)
from spectral_sweep.trial.outcomes import DIVERGED, STALLED, TRAINED, outcome_of

Batch = Callable[[list[float]], Sequence[object]]   # lrs -> one result per lr, run as one round


@dataclass
class Priors:
    """Nuisance evidence (log, over edge.NUISANCE) from the group's other batch sizes, per edge."""

    trained: np.ndarray | None = None
    blowup: np.ndarray | None = None


class _Trials:
    """All trials of the point, in the order they ran (an lr may repeat: each trial has its own seed)."""

    def __init__(self, run: Batch, lr_min: float, lr_max_cap: float):
        self.run_batch, self.lr_min, self.lr_max_cap = run, lr_min, lr_max_cap
        self.made: list = []          # [(lr, raw result)]
        self.outcomes: list = []      # [(lr, outcome)]

    def run(self, lrs: list[float]) -> None:
        lrs = [min(max(lr, self.lr_min), self.lr_max_cap) for lr in lrs]
        for lr, result in zip(lrs, self.run_batch(lrs)):
            self.made.append((lr, result))
            self.outcomes.append((lr, outcome_of(result)))

    def lrs(self, *kinds: str) -> list[float]:
        return sorted(lr for lr, o in self.outcomes if o in kinds)

    def tried(self, lr: float) -> bool:
        return any(math.isclose(lr, seen, rel_tol=1e-9) for seen, _ in self.outcomes)

    def upper_edge_data(self):
        return upper_edge_data(self.outcomes)

    def blowup_data(self):
        return blowup_data(self.outcomes)


def upper_edge_data(outcomes) -> tuple[list, list]:
    """(lrs, trained?) of [(lr, outcome)] for the upper edge of training: the trials from the
    lowest trained lr up (below it lies the too-small side), and every divergence."""
    trained = [lr for lr, o in outcomes if o == TRAINED]
    floor = min(trained) if trained else 0.0
    kept = [(lr, o) for lr, o in outcomes if lr >= floor or o == DIVERGED]
    return [lr for lr, _ in kept], [o == TRAINED for _, o in kept]


def blowup_data(outcomes) -> tuple[list, list]:
    """(lrs, did not diverge?) of [(lr, outcome)] for the blow-up edge: every trial."""
    return [lr for lr, _ in outcomes], [o != DIVERGED for _, o in outcomes]


def priors_from(points) -> Priors:
    """The nuisance evidence of other batch sizes' trials (each a list of (lr, outcome)): the
    spread they saw, shared with the point about to be searched (module doc)."""
    def total(data):
        found = [edge.posterior(*d).evidence() for d in map(data, points) if edge.has_edge(d[1])]
        return np.sum(found, axis=0) if found else None
    return Priors(trained=total(upper_edge_data), blowup=total(blowup_data))


def find_edges(run: Batch, start: float, *, precision: float = 0.2, max_trials: int = 30,
               parallel: int = 1, step: float = 4.0, tolerance: float = 2 ** 0.25, lr_min: float = 1e-6,
               lr_max_cap: float = 100.0, blowup: bool = True, reference: float | None = 0.25,
               priors: Priors | None = None, opt: optimum.OptimumSearch | None = None,
               placement: str = "levels", blowup_precision: float | None = None,
               settled: Callable[[edge.EdgePosterior], bool] | None = None,
               noise: Callable[[list], str | None] | None = None) -> SearchResult:
    """Both edges of one batch size, each with a 95% interval (see the module doc).

    ``run`` takes a list of lrs and returns one result per lr (an outcome string, a mapping or
    object with ``outcome``, or a bool for trained/diverged); it is called once per round with at
    most ``parallel`` lrs, and each call's trials get fresh seeds. With ``opt``, lr_opt too: the
    lr whose trials reach the best quality (``search/optimum.py``), from the same trials and its own.
    ``placement``: where the upper edge's trials go, ``levels`` (``edge.next_points``) or ``info``
    (``edge.informative_points``, compared in scripts/study_placement.py). ``blowup_precision``: the
    blow-up edge's own target half-width (None: ``precision``). ``settled``: a test of the upper
    edge's posterior that ends the refinement early, true once the group's verdict no longer depends
    on this point (``search/group.py``); the result then says ``settled``. ``noise``: a last look at
    all the trials' results (the judge's own noise, ``outcomes.decided_by_noise``): a reason there makes
    a bracketed point ``inconclusive``, as trials that reject the edge model do.
    """
    if not (start > 0 and lr_min > 0 and lr_max_cap > lr_min):
        raise UsageError(f"need 0 < lr_min < lr_max_cap and start > 0; got start={start}, "
                         f"lr_min={lr_min}, lr_max_cap={lr_max_cap}")
    if placement not in ("levels", "info"):
        raise UsageError(f"placement must be levels or info; got {placement!r}")
    blowup_precision = precision if blowup_precision is None else blowup_precision
    if not (min(precision, blowup_precision) > 0 and max_trials >= 1 and parallel >= 1 and step > 1 and tolerance > 1):
        raise UsageError(f"need precisions > 0, max_trials >= 1, parallel >= 1, step > 1, tolerance > 1; got "
                         f"{precision}, {blowup_precision}, {max_trials}, {parallel}, {step}, {tolerance}")
    trials, priors = _Trials(run, lr_min, lr_max_cap), priors or Priors()
    status = _locate(trials, start, step, tolerance, parallel, max_trials)
    settled_early = status == BRACKETED and _refine(trials, (precision, blowup_precision), max_trials, parallel,
                                                    blowup, priors, placement, settled)
    result = _result(trials, status, reference, priors, opt, parallel)
    result.settled = settled_early
    why = noise([r for _, r in trials.made]) if noise is not None and result.status == BRACKETED else None
    if why:
        result.status, result.problem = INCONCLUSIVE, why
    return result


def _locate(trials: _Trials, start: float, step: float, tolerance: float, k: int, max_trials: int) -> str:
    """Trials until one trained with a failure above it: BRACKETED, LOWER_BOUND or NOTHING_TRAINS."""
    while len(trials.outcomes) < max_trials:
        trained = trials.lrs(TRAINED)
        room = min(k, max_trials - len(trials.outcomes))
        if trained:
            top = trained[-1]
            if _failure_above(trials):
                return BRACKETED
            if top >= trials.lr_max_cap:
                return LOWER_BOUND
            trials.run(sorted({min(top * step ** (i + 1), trials.lr_max_cap) for i in range(room)}))
            continue
        proposals = _lattice(trials, start, step, room) or _again(trials, start, step, room) \
            or _between(trials, tolerance, room)
        if not proposals:
            return NOTHING_TRAINS
        trials.run(proposals)
    trained = trials.lrs(TRAINED)
    if not trained:
        return NOTHING_TRAINS
    return BRACKETED if _failure_above(trials) else LOWER_BOUND


def _failure_above(trials: _Trials) -> bool:
    """Whether some trial above the lowest trained lr failed: the upper edge is inside the trials."""
    trained = trials.lrs(TRAINED)
    return bool(trained) and any(lr > trained[0] for lr in trials.lrs(STALLED, DIVERGED))


def _ceiling(trials: _Trials) -> float:
    diverged = trials.lrs(DIVERGED)
    return diverged[0] if diverged else math.inf


def _lattice(trials: _Trials, start: float, step: float, k: int) -> list[float]:
    """Up to ``k`` untried lattice lrs, nearest to ``start`` first, below the first divergence."""
    ceiling, found = _ceiling(trials), []
    for j in range(200):
        for sign in ((0,) if j == 0 else (-1, 1)):
            lr = start * step ** (sign * j)
            if trials.lr_min * (1 - 1e-9) <= lr <= trials.lr_max_cap * (1 + 1e-9) and lr < ceiling \
                    and not trials.tried(lr):
                found.append(lr)
            if len(found) == k:
                return found
    return found


def _between(trials: _Trials, tolerance: float, k: int) -> list[float]:
    """Midpoints of the widest gaps between tried lrs below the first divergence, the gap right
    under it first: where a narrow trained window hides between the lattice's points."""
    ceiling = _ceiling(trials)
    tried = sorted({lr for lr, _ in trials.outcomes if lr < ceiling} | ({ceiling} if math.isfinite(ceiling) else set()))
    gaps = [(a, b) for a, b in zip(tried, tried[1:]) if b / a > tolerance * (1 + 1e-12)]
    gaps.sort(key=lambda ab: (ab[1] != ceiling, -ab[1]))
    return [math.sqrt(a * b) for a, b in gaps[:k]]


#: How often locate tries a lattice lr that stalled before it looks between the lattice's lrs, and
#: how many lattice steps from the start it tries again (the lattice itself walks on to lr_min).
LOCATE_TRIES, LOCATE_REACH = 2, 2


def _again(trials: _Trials, start: float, step: float, k: int) -> list[float]:
    """Nothing trained on the lattice: its lrs that stalled below the first divergence once more,
    with fresh seeds, before the gaps between them are searched: those within ``LOCATE_REACH``
    steps of the start, the start and those below it first, nearest first (a start is a guess of
    the upper edge, and the trained window lies below it), then those above. Near a budget's limit
    only some seeds train even at a good lr (results/outcome_bank/barely_B8: at most 8 of 12 at any
    lr), and one trial per lattice lr then missed the window in 6% of warm replays (now 3%)."""
    ceiling, tries = _ceiling(trials), {}
    for lr, outcome in trials.outcomes:
        j = math.log(lr / start) / math.log(step)
        on_lattice = abs(j - round(j)) < 1e-6 and abs(j) <= LOCATE_REACH + 1e-6
        if outcome == STALLED and lr < ceiling and on_lattice:
            tries[lr] = tries.get(lr, 0) + 1
    due = sorted((lr for lr, n in tries.items() if n < LOCATE_TRIES),
                 key=lambda lr: (tries[lr], lr > start * (1 + 1e-9), abs(math.log(lr / start))))
    return due[:k]


def _refine(trials: _Trials, precisions: tuple[float, float], max_trials: int, k: int, blowup: bool, priors: Priors,
            placement: str = "levels", settled=None) -> bool:
    """Rounds of trials until lr_max's interval is within ``precisions[0]``: at its posterior, and,
    with ``blowup``, every third trial at the blow-up edge's while that is wider than ``precisions[1]``
    (it informs lr_max only where the two edges coincide, so it never takes most of the budget).
    Returns whether ``settled`` ended it (the group's verdict no longer depends on this point)."""
    precision, blowup_precision = precisions
    upper = _Tracker(trials.upper_edge_data, priors.trained)
    above = _Tracker(trials.blowup_data, priors.blowup) if blowup else None
    slot = 0
    while len(trials.outcomes) < max_trials:
        post = upper.posterior(trials)
        if post is None or post.half_width() <= precision:
            return False
        if settled is not None and settled(post):
            return True
        other = above.posterior(trials) if above is not None else None
        if other is not None and other.half_width() <= blowup_precision:
            other = None
        slots = range(slot, slot + min(k, max_trials - len(trials.outcomes)))
        slot = slots.stop
        mine = [i for i in slots if other is None or i % 3 != 2]   # the upper edge's; the rest the blow-up edge's
        placed = dict(zip(mine, edge.informative_points(post, len(mine)) if placement == "info"
                          else [_propose(post, i) for i in mine]))
        proposals = [placed[i] if i in placed else _propose(other, i) for i in slots]
        trials.run(proposals)
    return False


class _Tracker:
    """One edge's posterior during the search, grown by the new trials of each round (rebuilt only
    when its data are not an extension of the last round's); a blow-up edge with no divergence yet
    walks up instead."""

    def __init__(self, data, prior):
        self.data, self.prior, self.post, self.seen = data, prior, None, ([], [])

    def posterior(self, trials: _Trials):
        lrs, ok = self.data()
        if not edge.has_edge(ok):
            if all(ok) and max(lrs) < trials.lr_max_cap:
                return _Walk(max(lrs), trials.lr_max_cap)
            return None
        n = len(self.seen[0])
        if self.post is not None and lrs[:n] == self.seen[0] and ok[:n] == self.seen[1]:
            for lr, success in zip(lrs[n:], ok[n:]):
                self.post.add(lr, success)
            if self.post.piled_at_border():
                self.post = None
        if self.post is None:
            self.post = edge.posterior(lrs, ok, self.prior)
        self.seen = (lrs, ok)
        return self.post


class _Walk:
    """No trial diverged yet: the blow-up edge's proposals walk up by 4x from the highest lr."""

    def __init__(self, top: float, cap: float):
        self.top, self.cap = top, cap

    def half_width(self) -> float:
        return math.inf

    def next(self) -> float:
        self.top = min(self.top * 4.0, self.cap)
        return self.top


def _propose(post, index: int) -> float:
    """The next lr for one edge: up the walk, or where the edge's posterior learns most."""
    return post.next() if isinstance(post, _Walk) else edge.next_points(post, 1, start=index)[0]


def _result(trials: _Trials, status: str, reference: float | None, priors: Priors,
            opt: optimum.OptimumSearch | None = None, k: int = 1) -> SearchResult:
    """Both edges from all trials, the reference trial's and lr_opt's included: the same data the
    report's refit reads, so a point alone in its group gets the same lr_max from the job and from
    the report (a reference trial that trains lowers the floor below which stalled trials are not
    counted)."""
    upper = _upper(trials, status, priors)
    if reference and upper is not None:
        target = max(upper.fit().lr * reference, trials.lr_min)
        if not any(lr <= target * 1.2 for lr in trials.lrs(TRAINED, STALLED)):
            trials.run([target])
            upper = _upper(trials, status, priors)
    best, opt_made, wants_opt = None, 0, opt is not None and status in (BRACKETED, LOWER_BOUND)
    if wants_opt:
        opt_made = _find_optimum(trials, opt, upper.fit().lo if upper is not None else trials.lr_max_cap, k)
        upper = _upper(trials, status, priors)
    fit = upper.fit() if upper is not None else None
    if wants_opt:   # from every trial, under the final edge
        best = _optimum_fit(trials, opt, fit.lo if fit is not None else trials.lr_max_cap)
    trained = trials.lrs(TRAINED)
    if fit is not None:
        lr_max, bracket = fit.lr, (fit.lo, fit.hi)
    elif status == LOWER_BOUND:
        lr_max, bracket = trained[-1], (trained[-1], None)
    else:
        lr_max, bracket = None, (None, None)
    blow = _blowup(trials, priors, upper)
    problem = edge.problem(fit) if fit is not None else None
    return SearchResult(lr_max, bracket, INCONCLUSIVE if problem else status, trials.made, *blow[:3], estimate=fit,
                        blowup_estimate=blow[3], problem=problem, optimum=best, optimum_trials=opt_made)


def _find_optimum(trials: _Trials, opt: optimum.OptimumSearch, ceiling: float, k: int) -> int:
    """Rounds of trials below the upper edge until lr_opt's interval is within ``opt.precision``,
    or its own trials run out: down in log lr while the peak may lie below the lowest lr tried,
    then around the peak (``optimum.next_lrs``). Returns the trials it made."""
    made = 0
    while True:
        fit = _optimum_fit(trials, opt, ceiling)
        room = min(k, opt.max_trials - made)
        if (fit.status == optimum.BRACKETED and fit.half_width() <= opt.precision) or room <= 0:
            return made
        lrs = optimum.next_lrs(fit, room, made, trials.lr_min, ceiling, tried=[lr for lr, _ in trials.made])
        if not lrs:
            return made
        trials.run(lrs)
        made += len(lrs)


def _optimum_fit(trials: _Trials, opt: optimum.OptimumSearch, ceiling: float) -> optimum.OptimumFit:
    return optimum.fit_trials(trials.made, opt.objective, ceiling)


def _upper(trials: _Trials, status: str, priors: Priors) -> edge.EdgePosterior | None:
    """The upper edge of training's posterior, where the search bracketed it."""
    return edge.posterior(*trials.upper_edge_data(), priors.trained) if status == BRACKETED else None


def _blowup(trials: _Trials, priors: Priors, upper: edge.EdgePosterior | None):
    """(lr_blowup, interval, status, EdgeFit or None) of the diverged region's lower edge, never
    below the upper edge of training (``upper``'s posterior: edge.EdgePosterior.fit)."""
    lrs, calm = trials.blowup_data()
    if not any(calm):
        return None, (None, min(lrs)), NO_STABLE_LR, None
    if all(calm):
        return max(lrs), (max(lrs), None), LOWER_BOUND, None
    fit = edge.posterior(lrs, calm, priors.blowup).fit(at_least=upper)
    return fit.lr, (fit.lo, fit.hi), BRACKETED, fit
