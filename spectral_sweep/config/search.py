"""The search group's schema: how a point's trials are chosen and when it stops."""

from __future__ import annotations

from dataclasses import dataclass, field

from spectral_sweep.config.base import Choice
from spectral_sweep.config.ranges import (
    POSITIVE,
    POSITIVE_INT,
    Range,
    each,
    maybe,
)

# ------------------------------------------------------------------------------------ search

class Objective(Choice):
    test_acc = "test_acc"        # final test accuracy (larger is better)
    train_loss = "train_loss"    # final training loss (smaller is better)
    test_loss = "test_loss"      # final test loss (smaller is better)


class Executor(Choice):
    local = "local"              # forked workers on this machine's CPU; one trial at a time on a GPU (point/pool.py)
    ray = "ray"                  # Ray tasks: K trials on one GPU, across GPUs and hosts (point/ray_pool.py)


class Method(Choice):
    adaptive = "adaptive"        # fresh seed per trial; each edge fitted with a 95% interval (search/adaptive.py)
    bisect = "bisect"            # one seed: find an lr that trains, then bisect both edges
    grid = "grid"                # one trial per lr of search.lrs
    fixed = "fixed"              # one trial at optimizer.lr
    none = "none"                # no trials (a spectrum-only job)


@dataclass
class SearchConfig:
    """How lr_max is located: search.find_lr_edges reads these."""

    method: Method = Method.adaptive
    start: float | None = None   # cold-start guess; null: optimizer.lr
    precision: float = 0.2       # adaptive: stop when the 95% interval of log lr_max is +- this (and of
                                 # log lr_blowup with blowup=true); 0.2 makes 3 batch sizes over 4x
                                 # decisive in ~80% of simulated sweeps (spectral_sweep/search/calibration.py)
    blowup_precision: float | None = None   # adaptive: the blow-up edge's own target +- (null: precision)
    verdict_precision: float | None = 0.5   # adaptive: a point after two bracketed ones of its group stops once the
                                 # group's verdict is the same wherever its lr_max lies in its interval, if that
                                 # is within +- this (search/group.py); null: every point refines to precision
    max_trials: int = 30         # adaptive, bisect: at most this many trials per batch size, the reference on top
    parallel: int | None = None  # adaptive: trials per round, run at once; null: auto (point/executor.py);
                                 # with executor=ray, the most that auto takes from the cluster's resources
    executor: Executor = Executor.local   # what runs a round's trials in flight (point/executor.py)
    gpus_per_trial: float = 1.0  # executor=ray on a GPU: the share of a GPU each trial asks for; 0.25 runs four
                                 # trials on one GPU, and auto K is the cluster's GPUs / this
    ray_address: str | None = None   # executor=ray: the cluster to join (ray://host:10001, host:6379); null:
                                     # $RAY_ADDRESS, else the one `ray start` left on this node, else a local
                                     # instance that ends with the job
    warm_start: bool = True      # start from a neighbouring batch size's lr_max scaled by the law under test
    tolerance: float = 1.189207115   # bisect: final bracket ratio hi/lo, 2^(1/4); both: the finest gap searched
    step: float = 4.0            # bracketing factor of a cold start (a warm start uses its square root)
    lr_min: float = 1e-6         # nothing trained in [lr_min, lr_max_cap]: "nothing_trains"
    lr_max_cap: float = 100.0    # still trained here: lr_max is a lower bound
    blowup: bool = True          # also bisect the blow-up edge where it lies above lr_max
    reference: float | None = 0.25   # one more trial at this x lr_max: what a comfortable lr reaches
    optimum: bool = True         # adaptive: also find lr_opt, the lr whose trials reach the best objective
                                 # (search/optimum.py); false: the two edges only
    objective: Objective = Objective.test_acc   # what lr_opt maximises (a loss is minimised)
    opt_precision: float = 0.35  # stop refining lr_opt at a 95% interval of log lr_opt +- this (x/ 1.42)
    opt_trials: int = 8          # at most this many trials for lr_opt beyond the edges' (its own cap)
    lrs: list[float] = field(default_factory=lambda: [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0])  # grid


# the search's valid ranges, kept beside SearchConfig (not inside it, so it stays one block)
SEARCH_RANGES = {"start": maybe(POSITIVE), "precision": POSITIVE, "max_trials": POSITIVE_INT,
                 "parallel": maybe(POSITIVE_INT), "tolerance": Range(1, low_open=True), "step": Range(1, low_open=True),
                 "lr_min": POSITIVE, "lr_max_cap": POSITIVE, "reference": maybe(POSITIVE), "lrs": each(POSITIVE),
                 "opt_precision": POSITIVE, "gpus_per_trial": POSITIVE, "opt_trials": Range(0, integer=True),
                 "blowup_precision": maybe(POSITIVE), "verdict_precision": maybe(POSITIVE)}


def _search_problems(search: SearchConfig):
    for key, valid in SEARCH_RANGES.items():
        yield valid.problem(f"search.{key}", getattr(search, key, None))
    yield (None if search.lr_max_cap > search.lr_min else
           f"search.lr_max_cap ({search.lr_max_cap:g}) must lie above search.lr_min ({search.lr_min:g})")
    yield (None if search.gpus_per_trial <= 1 or float(search.gpus_per_trial).is_integer() else
           f"search.gpus_per_trial above 1 must be a whole number of GPUs (Ray's rule), got {search.gpus_per_trial:g}")
    yield "search=grid needs at least one lr in search.lrs" if str(search.method) == "grid" and not search.lrs else None
