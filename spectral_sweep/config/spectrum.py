"""The spectrum group's schema: which curvature operator, where, and how much of it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from spectral_sweep.config.base import Choice, _within
from spectral_sweep.config.ranges import (
    POSITIVE,
    POSITIVE_INT,
    each,
    knob,
    maybe,
)

# ---------------------------------------------------------------------------------- spectrum

class Operator(Choice):
    hessian = "hessian"
    ggn = "ggn"                  # generalised Gauss-Newton


class BNMode(Choice):
    train = "train"              # batch statistics (the paper's choice)
    eval = "eval"                # running statistics


class Where(Choice):
    init = "init"
    trained = "trained"          # train_steps at optimizer.lr first
    checkpoint = "checkpoint"


class Product(Choice):
    auto = "auto"
    double_backward = "double_backward"
    forward_over_reverse = "forward_over_reverse"


class Extremes(Choice):
    both = "both"                # lambda_max and lambda_min
    largest = "largest"          # lambda_max only: on a trained network ~4x fewer products


@dataclass
class SpectrumConfig:
    """Lanczos on mini-batch Hessians: lambda_max / lambda_min over random batches, as the paper measured."""

    enabled: bool = False
    operator: Operator = Operator.hessian
    bn_mode: BNMode = BNMode.train
    at: Where = Where.init
    train_steps: int = knob(200, POSITIVE_INT)
    checkpoint: str | None = None    # with at=checkpoint: a state_dict file (loaded with weights_only=True)
    # null: this job's batch size; or a list, e.g. [1,2,4,...,1024]
    batch_sizes: list[int] | None = knob(None, maybe(each(POSITIVE_INT)))
    n_batches: int = knob(10, POSITIVE_INT)   # random batches per size (the paper used 10)
    extremes: Extremes = Extremes.both
    iters: int = knob(100, POSITIVE_INT)   # Lanczos steps at most (the paper's 100); stops early at tol
    tol: float = knob(1e-3, POSITIVE)   # relative residual at which the extremes count as converged
    full: bool = False           # also the full-data operator, accumulated in chunks
    full_subset: int | None = knob(None, maybe(POSITIVE_INT))   # ... over this many random training samples (null: all)
    chunk: int = knob(512, POSITIVE_INT)
    density_batch_sizes: list[int] = knob(valid=each(POSITIVE_INT), factory=list)   # SLQ densities for these sizes
    density_vectors: int = knob(4, POSITIVE_INT)   # random start vectors per density
    density_iters: int | None = knob(None, maybe(POSITIVE_INT))   # Lanczos steps per density vector (null: iters)
    noise_scale: bool = True     # gradient noise scale B_noise from the smallest and largest size ...
    noise_batch_sizes: list[int] | None = knob(None, maybe(each(POSITIVE_INT)))   # ... or from these two sizes
    warm_start: bool = True      # start each Lanczos from the previous run's extreme Ritz vectors
    method: Product = Product.auto   # how a curvature product is computed; auto: the cheaper of both, timed

    def problems(self, config):
        """Sizes the data can hold and a checkpoint that loads; only when the spectrum is measured. A
        checkpoint given where none is read is refused too: the job would measure something else."""
        if self.checkpoint is not None and not (self.enabled and str(self.at) == "checkpoint"):
            yield (f"spectrum.checkpoint={self.checkpoint} is read only with a spectrum measured there "
                   "(spectrum=hessian or ggn, spectrum.at=checkpoint); "
                   + ("add spectrum.at=checkpoint" if self.enabled else "add spectrum=hessian spectrum.at=checkpoint"))
        if not self.enabled:
            return
        known = config.dataset.known_train_size()
        yield _within("spectrum.batch_sizes", self.batch_sizes, known)
        yield _within("spectrum.density_batch_sizes", self.density_batch_sizes, known)
        yield _within("spectrum.full_subset", [self.full_subset] if self.full_subset else [], known)
        noise = self.noise_batch_sizes
        yield (None if noise is None or (len(noise) == 2 and noise[0] != noise[1]) else
               f"spectrum.noise_batch_sizes must be two different batch sizes, got {noise}")
        yield _checkpoint_problem(self.checkpoint) if str(self.at) == "checkpoint" else None


def _checkpoint_problem(path: str | None) -> str | None:
    """Why ``spectrum.checkpoint`` cannot be measured, or None: it must exist and load as weights."""

    if not (path and Path(path).is_file()):
        return f"spectrum.at=checkpoint needs spectrum.checkpoint=FILE, an existing state_dict; got {path!r}"
    import torch  # only here: a checkpoint is read by torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        return f"spectrum.checkpoint={path} does not load as weights ({type(e).__name__})"
    if not isinstance(state, dict):
        return f"spectrum.checkpoint={path} holds a {type(state).__name__}, not a state_dict"
    return None
