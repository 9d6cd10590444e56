"""The spectrum measurement of one sweep point: mini-batch and full-data extremes, densities,
and the gradient noise scale, returned as the record's ``spectrum`` entry.

For each batch size B, ``n_batches`` random batches (a seeded torch.Generator, evaluation
transform, no augmentation) each get a Lanczos run for lambda_max and lambda_min of their
Hessian (or Gauss-Newton matrix). The paper's claim under test is lambda_max(B) ~ lambda_full +
kappa / B; ``theory.fit_inverse_batch`` fits it from these numbers.

Performance lever: neighbouring measurements share their extreme directions (batches of one size
are samples of the same random matrix, and neighbouring sizes differ by a little noise), so each
Lanczos run starts from the previous run's top and bottom Ritz vectors (``warm_start=True``).
Results do not depend on it beyond ``tol``. The saving is real but modest, because cold Lanczos
is already quick on the top outlier: on a briefly trained VGG-16 (B >= 64, tol 1e-3) it needs ~5
products for lambda_max alone and ~21 for both extremes, warm ~4 and ~15 (lambda_min's
eigenvector belongs to a dense negative tail that varies from batch to batch); over B = 1..512
warm starts save a quarter to a third of the time. The bigger lever is to skip lambda_min:
``extremes="largest"`` with warm starts took 0.18 of the time of both extremes cold (2 CPU
threads). See scripts/bench_spectrum.py.

Cost (``cost_gradients``) is nominal and counted in gradients of ``cost_batch`` samples (default:
the largest measured batch size, so a job measuring its own batch size gets gradients at its
training batch): a product over n samples counts ``GRADIENTS_PER_PRODUCT[operator] * n /
cost_batch`` (2 per product: the arithmetic of a double-backward or forward-over-reverse
product), a noise-scale gradient over n samples ``n / cost_batch``. Weighting by samples makes
the number comparable with training steps; it flatters tiny batches, whose products are
dominated by fixed overheads. ``scripts/bench_spectrum.py`` measures real ratios.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from spectral_sweep import seeds
from spectral_sweep.config.dataset import Budget
from spectral_sweep.config.spectrum import SpectrumConfig
from spectral_sweep.curvature import (
    GRADIENTS_PER_PRODUCT,
    Chunks,
    adam_preconditioner,
    slq_nodes,
    temporary_operator,
    trainable_parameters,
    warm_start_vector,
)
from spectral_sweep.curvature import (
    extremes as lanczos_extremes,
)
from spectral_sweep.curvature import (
    noise_scale as measure_noise_scale,
)
from spectral_sweep.curvature.lanczos import broadened_density
from spectral_sweep.data.loaders import BatchLoader, random_batch
from spectral_sweep.errors import UsageError
from spectral_sweep.seeds import Stream
from spectral_sweep.theory import is_adaptive
from spectral_sweep.trial.record import _known, _plain
from spectral_sweep.trial.timing import ProductChoice
from spectral_sweep.trial.train import TrialSettings, train


def _split(data):
    """The training split of a ``Data`` (or a split passed directly)."""
    return getattr(data, "train", data)


def _full_data(split, subset: int | None, chunk: int, device, seed: int):
    """The training split (or a random subset of it) as re-iterable chunks of ``chunk`` samples."""
    if subset is not None:
        if not 1 <= subset <= len(split):
            raise UsageError(f"full_subset must lie in [1, {len(split)}], got {subset}")
        draws = seeds.generator(seed, Stream.SPECTRUM_FULL)
        split = split.select(torch.randperm(len(split), generator=draws)[:subset])
    loader = BatchLoader(split, min(chunk, len(split)), device, train=False, augment=False)
    return Chunks(lambda: loader.epoch(0)), len(split)


EXTREMES = ("both", "largest")


def _check(batch_sizes, n_batches, iters, operator, bn_mode, extremes="both"):
    if not batch_sizes:
        raise UsageError("spectrum needs at least one batch size")
    for b in batch_sizes:
        if int(b) != b or b < 1:
            raise UsageError(f"spectrum batch sizes must be positive integers, got {b}")
    if n_batches < 1 or iters < 1:
        raise UsageError(f"n_batches and iters must be positive, got {n_batches} and {iters}")
    if operator not in ("hessian", "ggn"):
        raise UsageError(f"spectrum operator must be hessian or ggn, got '{operator}'")
    if bn_mode not in ("train", "eval"):
        raise UsageError(f"bn_mode must be train or eval, got '{bn_mode}'")
    if extremes not in EXTREMES:
        raise UsageError(f"spectrum extremes must be one of {', '.join(EXTREMES)}, got '{extremes}'")


class _Extremes:
    """Runs Lanczos on one dataset after another, each warm-started from the last."""

    def __init__(self, model, loss_fn, operator, bn_mode, method, preconditioner, iters, tol,
                 warm_start, seed, extremes="both"):
        self.model, self.loss_fn = model, loss_fn
        self.operator, self.bn_mode, self.method = operator, bn_mode, method
        self.preconditioner, self.iters, self.tol = preconditioner, iters, tol
        self.warm_start, self.extremes = warm_start, extremes
        self.seeds = seeds.generator(seed, Stream.SPECTRUM_LANCZOS)
        self.previous = (None, None)
        self.samples = 0

    def __call__(self, data) -> dict:
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=self.seeds))
        v0 = warm_start_vector(*self.previous, seed=seed) if self.warm_start else None
        both = self.extremes == "both"
        run = lanczos_extremes(self.operator, self.model, self.loss_fn, data, bn_mode=self.bn_mode,
                       method=self.method, preconditioner=self.preconditioner, iters=self.iters,
                       seed=seed, v0=v0, tol=self.tol, which="both" if both else "largest")
        result = run.result
        self.previous = (result.top_vector, result.bottom_vector if both else None)
        self.samples += run.samples
        return {"lambda_max": result.lambda_max, "lambda_min": result.lambda_min if both else None,
                "products": run.products}


def measure_spectrum(model, data, device, spec: SpectrumConfig, batch_sizes: Sequence[int], *, seed: int = 0,
                     preconditioner: torch.Tensor | None = None, loss_fn=F.cross_entropy,
                     cost_batch: int | None = None, progress: bool = True) -> dict:
    """Measure the curvature of ``model`` at its current parameters, as ``spec`` (a
    ``config.SpectrumConfig``: operator, n_batches, iters, tol, full, densities, ...) says, over
    mini-batches of each of ``batch_sizes``; returns the record's spectrum entry.
    """
    n_batches, operator, bn_mode, iters = spec.n_batches, str(spec.operator), str(spec.bn_mode), spec.iters
    extremes, full, density_batch_sizes = str(spec.extremes), spec.full, spec.density_batch_sizes
    batch_sizes = [int(b) for b in batch_sizes]
    _check(batch_sizes, n_batches, iters, operator, bn_mode, extremes)
    cost_batch = int(cost_batch or max(batch_sizes))
    split = _split(data)
    start = time.perf_counter()
    method = ProductChoice() if str(spec.method) == "auto" else str(spec.method)   # one choice per measurement
    measure = _Extremes(model, loss_fn, operator, bn_mode, method, preconditioner, iters, spec.tol,
                        spec.warm_start, seed, extremes)
    batches = _batch_extremes(measure, split, device, batch_sizes, n_batches, seed, progress)
    full_entry = None
    if full:
        chunks, samples = _full_data(split, spec.full_subset, spec.chunk, device, seed)
        found = measure(chunks)
        full_entry = {"lambda_max": found["lambda_max"], "lambda_min": found["lambda_min"],
                      "samples": samples}
    density, density_samples = _densities(measure, split, device, density_batch_sizes,
                                          spec.density_vectors, spec.density_iters or iters, seed)
    noise, gradient_samples = _noise(measure, split, device, batch_sizes, n_batches,
                                     spec.noise_scale, spec.noise_batch_sizes, seed)
    product_samples = measure.samples + density_samples
    return {
        "operator": operator,
        "bn_mode": bn_mode,
        "extremes": extremes,
        "iters": int(iters),
        "preconditioned": preconditioner is not None,
        "batches": batches,
        "full": full_entry,
        "density": density,
        "noise_scale": noise,
        "product": method.summary() if isinstance(method, ProductChoice) else {"asked": method},
        "cost_gradients": (GRADIENTS_PER_PRODUCT[operator] * product_samples + gradient_samples) / cost_batch,
        "seconds": time.perf_counter() - start,
    }


def _batch_extremes(measure: _Extremes, split, device, batch_sizes, n_batches: int, seed: int,
                    progress: bool) -> list[dict]:
    """``n_batches`` random batches at each batch size (stream ``SPECTRUM_BATCHES``), measured."""
    draws = seeds.generator(seed, Stream.SPECTRUM_BATCHES)
    batches = []
    bar = tqdm(total=len(batch_sizes) * n_batches, desc="spectrum", disable=not progress,
               leave=False)
    for b in batch_sizes:
        entry = {"batch_size": b, "lambda_max": [], "lambda_min": [], "products": 0}
        for _ in range(n_batches):
            found = measure(random_batch(split, b, device, draws))
            entry["lambda_max"].append(found["lambda_max"])
            entry["lambda_min"].append(found["lambda_min"])
            entry["products"] += found["products"]
            bar.set_postfix(B=b, lambda_max=f"{found['lambda_max']:.4g}")
            bar.update()
        batches.append(entry)
    bar.close()
    return batches


def _densities(measure: _Extremes, split, device, batch_sizes, vectors: int, iters: int,
               seed: int) -> tuple[list[dict], int]:
    """An SLQ density of one random batch (stream ``SPECTRUM_DENSITY``) at each batch size, and
    the samples its products went through."""
    draws = seeds.generator(seed, Stream.SPECTRUM_DENSITY)
    density, samples = [], 0
    for b in batch_sizes:
        batch = random_batch(split, int(b), device, draws)
        with temporary_operator(measure.operator, measure.model, measure.loss_fn, batch,
                                bn_mode=measure.bn_mode, method=measure.method,
                                preconditioner=measure.preconditioner) as op:
            quadratures = slq_nodes(op, op.dim, iters, vectors, seed=seed, device=op.device)
        grid, values = broadened_density(quadratures)
        density.append({"batch_size": int(b), "grid": grid.tolist(), "density": values.tolist()})
        samples += op.samples
    return density, samples


def _noise(measure: _Extremes, split, device, batch_sizes, n_batches: int, wanted: bool,
           noise_batch_sizes, seed: int) -> tuple[dict | None, int]:
    """The gradient noise scale from ``n_batches`` gradients at two sizes (stream
    ``SPECTRUM_NOISE``), and the samples the gradients went through."""
    if not wanted:
        return None, 0
    sizes = sorted(set(noise_batch_sizes or (min(batch_sizes), max(batch_sizes))))
    if len(sizes) != 2:
        if noise_batch_sizes is not None:
            raise UsageError(f"noise_batch_sizes needs two different sizes, got {list(noise_batch_sizes)}")
        return None, 0
    draws = seeds.generator(seed, Stream.SPECTRUM_NOISE)
    small = [random_batch(split, sizes[0], device, draws) for _ in range(n_batches)]
    big = [random_batch(split, sizes[1], device, draws) for _ in range(n_batches)]
    noise = measure_noise_scale(measure.model, measure.loss_fn, small, big, bn_mode=measure.bn_mode)
    noise.pop("gradients")
    return noise, n_batches * (sizes[0] + sizes[1])


# ----------------------------------------------------------------------------------------------
# one sweep point's spectrum, as its config asks


def point_spectrum(spec: SpectrumConfig, make_model, data, settings: TrialSettings, device, *, batch: int,
                   seed: int, lr: float, learner=lambda: [], progress: bool = True) -> SpectrumRecord:
    """The curvature of this sweep point (record.spectrum), at init, after training or at a checkpoint.

    ``spectrum.batch_sizes: null`` measures mini-batches of this job's own batch size, so that a
    sweep over B assembles lambda_max(B) across its jobs; a list measures every size in one job.
    After training with Adam/AdamW the operator is preconditioned by Adam's second moments.
    ``learner()`` gives the hooks that set the lr while training for ``at=trained`` (lanczos_sgd).
    """
    model, optimizer, trained = _spectrum_model(spec, make_model, data, settings, device, seed, lr, learner)
    preconditioner = None
    if optimizer is not None and is_adaptive(type(optimizer).__name__):
        preconditioner = adam_preconditioner(optimizer, trainable_parameters(model))
    out = measure_spectrum(model, data, device, spec, spec.batch_sizes or [batch], seed=seed,
                           preconditioner=preconditioner, progress=progress)
    return SpectrumRecord.from_dict({**out, "at": str(spec.at), "trained": trained})


def _spectrum_model(spec: SpectrumConfig, make_model, data, settings: TrialSettings, device, seed: int, lr: float,
                    learner):
    """(model, optimizer or None, what training did or None) at the point ``spectrum.at`` names."""
    if str(spec.at) == "trained":
        steps = dataclasses.replace(settings, budget=Budget(steps=spec.train_steps), evaluate=False)
        model, optimizer, result = train(make_model, data, lr, steps, hooks=learner())
        if not result.stable:
            raise UsageError(f"spectrum.at=trained: training at optimizer.lr={lr} "
                             f"diverged ({result.reason}); lower optimizer.lr")
        return model, optimizer, {"lr": result.lr, "steps": result.steps,
                                  "final_train_loss": result.final_train_loss, "hooks": result.hooks}
    torch.manual_seed(seed)
    model = make_model().to(device)
    if str(spec.at) == "checkpoint":
        state = torch.load(spec.checkpoint, map_location=device, weights_only=True)
        model.load_state_dict(state.get("model", state))
    return model, None, None


@dataclass
class SpectrumRecord:
    """The curvature of a sweep point (spectrum.measure_spectrum), where it was measured."""

    operator: str                         # hessian | ggn
    bn_mode: str
    batches: list                         # per batch size: lambda_max / lambda_min over random batches
    at: str = "init"                      # init | trained | checkpoint
    extremes: str = "both"
    iters: int | None = None
    preconditioned: bool = False          # by Adam's second moments (after training with Adam)
    full: dict | None = None              # the full-data operator's extremes
    density: list = field(default_factory=list)   # SLQ densities
    noise_scale: dict | None = None
    cost_gradients: float | None = None
    seconds: float | None = None
    trained: dict | None = None           # at=trained: the training run before the measurement
    product: dict | None = None           # the Hessian-vector product used (spectrum.method=auto: timed)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return _plain(self)

    @classmethod
    def from_dict(cls, data: dict) -> SpectrumRecord:
        known, extra = _known(cls, data)
        return cls(**known, extra=extra)
