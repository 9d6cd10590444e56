"""The paper's on-the-fly learning-rate / momentum learner, and sharpness tracking during a trial.

Both are ``train.TrainingHook`` subclasses; ``hooks_for`` builds the ones a job asks for
(optimizer ``lanczos_sgd`` -> ``LanczosLearner``; sharpness tracking on -> ``SharpnessTracker``).

The learner (Granziol, Zohren & Roberts 2022, the "Lanczos learner")
--------------------------------------------------------------------
The paper proposes an on-the-fly learning-rate AND momentum learner built on stochastic Lanczos
quadrature. Every ``every`` optimizer steps (the first refresh is at step 0), ``iters`` Lanczos
steps on the Hessian of the mean cross-entropy over a FIXED curvature batch (``batch`` samples
drawn once with a seeded generator from the training split, evaluation transform, BatchNorm in
train mode) give Ritz values theta_i and Gauss quadrature weights gamma_i. From them:

* L      = max |theta|;
* median = the median of |theta| over the Ritz values, unweighted (it moves with ``iters``);
* mu     = ``bulk_mu``: first the bulk node goes (while the largest remaining weight exceeds
  1/2, the Ritz value that carries it: a node carrying most of the start vector's mass stands
  for the bulk of eigenvalues near zero, not for an eigenvalue of its own; weights are not
  renormalised, so at most one node goes); mu is then the smallest POSITIVE Ritz value left
  above the noise floor ``MU_FLOOR * L`` = 1e-6 L. Zero eigenvalues (at or below the floor) and
  negative ones never become mu; if no Ritz value is left above the floor, mu = the floor.

The rules (``learner_rule``; ``rule`` one of ``config.Rule``), each with its source:

* ``heavy_ball`` (the default): Polyak's heavy ball (1964), optimal on a quadratic with
  curvatures in [mu, L]: lr = 4 / (sqrt L + sqrt mu)^2,
  momentum = ((sqrt L - sqrt mu) / (sqrt L + sqrt mu))^2.
* ``nesterov``: Nesterov's accelerated gradient for an L-smooth, mu-strongly convex function,
  constant-momentum form (Nesterov, Introductory Lectures on Convex Optimization, 2004):
  lr = 1 / L, momentum = (sqrt k - 1) / (sqrt k + 1), k = L / mu (and the optimizer's
  ``nesterov`` flag is switched on).
* ``gd``: textbook gradient descent, lr = 2 / (L + mu), the step with the smallest worst-case
  contraction (L - mu) / (L + mu) on [mu, L], and momentum 0.
* ``ssgd``: the authors' variant, NOT a textbook rule: lr = 2 / (L + median |theta|) with the
  configured momentum (``optimizer.momentum``). It is gradient descent's 2 / (L + mu) with the
  median in place of mu, so it usually steps shorter than ``gd`` and keeps a margin below the
  edge 2 / L when mu is ~0. The name stays so that configs keep working.

heavy_ball and nesterov set lr and momentum together, as the paper's learner does; gd and ssgd
set the lr only.

The heavy_ball and nesterov forms above are the textbook ones; the authors' own scripts differ
from them in places (a ``+ mu`` for ``+ sqrt(mu)`` in one momentum denominator, a dimensionless
lr sqrt(mu / L) in the Nesterov variant, quadrature weights re-sorted apart from their Ritz
values).

Weight decay wd (``optimizer.weight_decay``, an L2 term in the gradient) shifts every eigenvalue
of the trained objective by wd: it is added to L, mu and the median. Caps: ``momentum_cap``
limits the momentum; for heavy_ball the lr is then lowered to (1 + sqrt(cap))^2 / L, which is
Polyak's pair for the mu at which his momentum equals the cap (the lr stays inside the
heavy-ball stability limit 2 (1 + momentum) / L). ``lr_cap`` limits the lr last.

Warm start: each refresh starts from the previous refresh's top Ritz vector mixed with a fresh
random vector that carries ``1 - warm_weight`` of the start vector's mass (default 99%). The top
direction speeds up L; the random part keeps the quadrature weights what a random start would
give, which the bulk rule relies on (a start vector close to the top eigenvector would put
nearly all weight on L and the rule would remove L instead of the bulk).

Cost: each refresh costs ``products x GRADIENTS_PER_PRODUCT["hessian"] x batch / B`` gradient
equivalents, in units of a training step's gradient at batch size B; ``log()["cost_gradients"]``
is the total. With the defaults (every 1200, iters 20, batch 128) at B = 128 that is nominally
40 gradients per 1200 steps; ``scripts/bench_learner.py`` measures the wall-clock overhead (one
refresh cost 44 training steps of a 1/8-width VGG-11 on 2 CPU threads: 3.6% at every 1200).

Sharpness tracking
------------------
Every ``every`` steps, the top eigenvalue of the Hessian on a fixed batch (min(B, 128) samples)
by a few warm-started Lanczos steps (default 10, tol 1e-2), logged beside the lr in use and the
largest curvature that lr is stable at, ``theory.stability_limit(lr, ...)``: 2 (1 + beta) / lr
for SGD with heavy-ball momentum beta, 2 (1 + beta) / ((1 + 2 beta) lr) with Nesterov momentum,
and for Adam/AdamW (measured on the preconditioned Hessian P^-1/2 H P^-1/2 once the optimizer
has state) (2 + 2 beta1) / ((1 - beta1) lr). lambda_max is the loss Hessian's, without weight
decay (which would add wd for SGD).
"""

from __future__ import annotations

import math

import numpy as np
import torch.nn.functional as F

from spectral_sweep.config.optimizer import LearnerConfig, Rule
from spectral_sweep.config.ranges import field_problems
from spectral_sweep.curvature import (
    GRADIENTS_PER_PRODUCT,
    adam_preconditioner,
    extremes,
    trainable_parameters,
    warm_start_vector,
)
from spectral_sweep.data.loaders import fixed_batch
from spectral_sweep.errors import UsageError, unknown_choice
from spectral_sweep.seeds import Stream, child_seed
from spectral_sweep.theory import is_adaptive, stability_limit
from spectral_sweep.trial.train import TrainingHook

#: mu's noise floor, relative to L = max |theta|: a Ritz value at or below 1e-6 L is taken for a
#: zero eigenvalue (rounding of a float32 product is ~1e-7 L), not for the smallest curvature.
MU_FLOOR = 1e-6


# ----------------------------------------------------------------------------------------------
# Pure rules (numpy only)


def _without_bulk(weights: np.ndarray) -> np.ndarray:
    """Which nodes stay after removing, while the largest remaining weight exceeds 1/2, the node
    that carries it (never the last one). Weights are not renormalised, so with weights summing to
    one at most one node goes."""
    keep = np.ones(weights.size, dtype=bool)
    while keep.sum() > 1:
        i = int(np.argmax(np.where(keep, weights, -np.inf)))
        if not weights[i] > 0.5:
            break
        keep[i] = False
    return keep


def bulk_mu(theta, weights, rel_floor: float = MU_FLOOR) -> float:
    """mu, the smallest curvature the rules trust: the smallest POSITIVE Ritz value above the
    noise floor ``rel_floor * max |theta|``, among the nodes left after the bulk node is removed
    (a node carrying over half of the start vector's mass stands for the bulk of eigenvalues near
    zero, not for an eigenvalue of its own; see ``_without_bulk``).

    Zero eigenvalues (Ritz values at or below the floor) and negative ones do not count: a zero
    would make the condition number infinite and push the momentum to its cap. If no kept node is
    above the floor, mu is the floor itself (0 for an all-zero spectrum)."""
    theta = np.asarray(theta, dtype=float)
    weights = np.asarray(weights, dtype=float)
    if theta.shape != weights.shape or theta.size == 0:
        raise ValueError("need as many weights as Ritz values, and at least one of each")
    floor = float(rel_floor) * float(np.abs(theta).max())
    trusted = theta[_without_bulk(weights) & (theta > floor)]
    return float(trusted.min()) if trusted.size else floor


def _ssgd(L: float, mu: float, median: float, momentum: float) -> tuple[float, float]:
    """The authors' variant, not a textbook rule: lr = 2 / (L + median |theta|) with the configured
    momentum. It is gradient descent's optimal step 2 / (L + mu) (``_gd``) with mu replaced by the
    median of the Ritz values, unweighted (so it moves with ``iters``): it usually steps shorter
    than 2 / (L + mu) and keeps the lr a margin below the edge 2 / L when mu is ~0."""
    return 2.0 / (L + median), float(momentum)


def _gd(L: float, mu: float, median: float, momentum: float) -> tuple[float, float]:
    """Textbook gradient descent on a quadratic with curvatures in [mu, L]: lr = 2 / (L + mu), the
    step that minimises the worst contraction |1 - lr lambda| (it equals (L - mu) / (L + mu) at
    both ends), no momentum."""
    return 2.0 / (L + mu), 0.0


def _heavy_ball(L: float, mu: float, median: float, momentum: float) -> tuple[float, float]:
    """Polyak's heavy ball (1964), optimal on a quadratic with curvatures in [mu, L]:
    lr = 4 / (sqrt L + sqrt mu)^2, momentum = ((sqrt L - sqrt mu) / (sqrt L + sqrt mu))^2,
    contraction sqrt(momentum) = (sqrt k - 1) / (sqrt k + 1) per step, k = L / mu."""
    sl, sm = math.sqrt(L), math.sqrt(mu)
    return 4.0 / (sl + sm) ** 2, ((sl - sm) / (sl + sm)) ** 2


def _nesterov(L: float, mu: float, median: float, momentum: float) -> tuple[float, float]:
    """Nesterov's accelerated gradient for an L-smooth, mu-strongly convex function, in its
    constant-momentum form (Nesterov, Introductory Lectures on Convex Optimization, 2004):
    lr = 1 / L, momentum = (sqrt k - 1) / (sqrt k + 1), k = L / mu; momentum 1 when mu = 0."""
    root_k = math.sqrt(L / mu) if mu > 0 else math.inf
    return 1.0 / L, 1.0 if math.isinf(root_k) else (root_k - 1.0) / (root_k + 1.0)


_RULE_FORMULAS = {"ssgd": _ssgd, "gd": _gd, "heavy_ball": _heavy_ball, "nesterov": _nesterov}   # one per config.Rule


def learner_rule(theta, weights, rule: str = "heavy_ball", momentum: float = 0.0,
                 weight_decay: float = 0.0, lr_cap: float | None = None,
                 momentum_cap: float | None = None) -> dict:
    """lr and momentum from Ritz values and weights (see the module docstring and each rule's).

    L = max |theta|, mu = ``bulk_mu``, median = the median of |theta| over the Ritz values
    (unweighted); ``weight_decay`` is added to all three. ``momentum`` is the configured momentum,
    used by ``ssgd`` only. Returns {"L", "mu", "median", "lr", "momentum", "nesterov"}.
    """
    if rule not in Rule.__members__:
        raise unknown_choice("learner rule", rule, Rule.__members__)
    absolute = np.abs(np.asarray(theta, dtype=float))
    wd = float(weight_decay or 0.0)
    L = float(absolute.max()) + wd
    mu = bulk_mu(theta, weights) + wd
    median = float(np.median(absolute)) + wd
    if not L > 0:
        raise FloatingPointError(f"the curvature batch has a zero spectrum (L = {L})")
    mu = min(max(mu, 0.0), L)
    lr, beta = _RULE_FORMULAS[rule](L, mu, median, momentum)
    if momentum_cap is not None and beta > momentum_cap:
        beta = float(momentum_cap)
        if rule == "heavy_ball":   # Polyak's pair at the mu where his momentum equals the cap
            lr = (1.0 + math.sqrt(beta)) ** 2 / L
    if lr_cap is not None:
        lr = min(lr, float(lr_cap))
    return {"L": L, "mu": mu, "median": median, "lr": float(lr), "momentum": float(beta),
            "nesterov": rule == "nesterov"}


# ----------------------------------------------------------------------------------------------
# Hooks


class LanczosLearner(TrainingHook):
    """Sets lr and momentum of a (torch) SGD optimizer every ``every`` steps from a Lanczos run."""

    name = "learner"
    owns_lr = True

    def __init__(self, split, device, train_batch: int, options: LearnerConfig | None = None,
                 momentum: float = 0.0, weight_decay: float = 0.0, seed: int = 0, loss_fn=F.cross_entropy):
        """``options``: every, iters, batch, rule, caps, ... (their defaults: config.LearnerConfig).
        ``momentum`` is the configured momentum (rule ssgd); weight decay is added to the curvature."""
        options = options or LearnerConfig()
        every, iters, batch, rule = options.every, options.iters, options.batch, str(options.rule)
        lr_cap, momentum_cap, tol, warm_weight = options.lr_cap, options.momentum_cap, options.tol, options.warm_weight
        if rule not in Rule.__members__:
            raise unknown_choice("learner rule", rule, Rule.__members__)
        problem = next(field_problems(options, "optimizer.learner."), None)   # the ranges of config/optimizer.py
        if problem:
            raise UsageError(problem)
        self.every, self.iters, self.rule, self.tol = every, iters, rule, tol
        self.lr_cap, self.momentum_cap, self.warm_weight = lr_cap, momentum_cap, warm_weight
        self.momentum, self.weight_decay = float(momentum), float(weight_decay)
        self.batch_size, self.train_batch, self.seed, self.loss_fn = batch, int(train_batch), seed, loss_fn
        self.batch = fixed_batch(split, batch, device, seed, Stream.LEARNER_BATCH)
        self.top = None
        self.refreshes: list[dict] = []
        self.cost = 0.0
        self.current: dict | None = None

    def before_step(self, step, model, optimizer) -> None:
        if step % self.every == 0:
            try:
                self.current = self.refresh(step, model)
            except FloatingPointError as e:
                # non-finite curvature: the trial is diverging (the trial loop notices and stops
                # it; on CUDA losses are read back every few steps). Keep the last lr/momentum.
                self.refreshes.append({"step": int(step), "error": str(e)})
                if self.current is None:
                    group = optimizer.param_groups[0]
                    self.current = {"lr": group["lr"], "momentum": group["momentum"],
                                    "nesterov": group.get("nesterov", False)}
        for group in optimizer.param_groups:
            group["lr"] = self.current["lr"]
            group["momentum"] = self.current["momentum"]
            if "nesterov" in group:
                group["nesterov"] = self.current["nesterov"] and self.current["momentum"] > 0

    def refresh(self, step: int, model) -> dict:
        seed = child_seed(self.seed, Stream.LEARNER_LANCZOS, len(self.refreshes))
        v0 = None
        if self.top is not None and self.warm_weight > 0:
            # |top|^2 : |noise|^2 = warm_weight : 1 - warm_weight
            noise = math.sqrt((1.0 - self.warm_weight) / self.warm_weight)
            v0 = warm_start_vector(self.top, noise=noise, seed=seed)
        # no restart after an invariant subspace: every node then carries the start vector's
        # mass, which the bulk rule reads (a restarted block adds nodes of weight zero)
        run = extremes("hessian", model, self.loss_fn, self.batch, bn_mode="train", iters=self.iters,
                       seed=seed, v0=v0, tol=self.tol, which="both", restart=False)
        result = run.result
        cost = run.products * GRADIENTS_PER_PRODUCT["hessian"] * self.batch_size / self.train_batch
        self.cost += cost
        if not np.isfinite(result.ritz_values).all():
            raise FloatingPointError("non-finite Ritz values")
        self.top = result.top_vector
        chosen = learner_rule(result.ritz_values, result.weights, self.rule, self.momentum,
                              self.weight_decay, self.lr_cap, self.momentum_cap)
        entry = {"step": int(step), "ritz_values": [float(t) for t in result.ritz_values],
                 "weights": [float(w) for w in result.weights], **chosen,
                 "products": int(run.products), "cost_gradients": float(cost)}
        self.refreshes.append(entry)
        return entry

    def log(self) -> dict:
        return {"rule": self.rule, "every": self.every, "iters": self.iters,
                "batch": self.batch_size, "refreshes": self.refreshes, "cost_gradients": self.cost}

    def state_dict(self) -> dict:
        return {"top": self.top, "refreshes": self.refreshes, "cost": self.cost,
                "current": self.current}

    def load_state_dict(self, state: dict) -> None:
        self.top, self.refreshes = state["top"], list(state["refreshes"])
        self.cost, self.current = float(state["cost"]), state["current"]


class SharpnessTracker(TrainingHook):
    """Logs the top Hessian eigenvalue on a fixed batch every ``every`` steps, with the stability
    limit of the lr in use (see the module docstring)."""

    name = "sharpness"

    def __init__(self, split, device, every: int, batch: int, train_batch: int | None = None,
                 iters: int = 10, tol: float | None = 1e-2, seed: int = 0, loss_fn=F.cross_entropy):
        if not (isinstance(every, int) and every >= 1):
            raise UsageError(f"sharpness.every must be a positive integer or null, got {every!r}")
        self.every, self.iters, self.tol, self.seed, self.loss_fn = every, iters, tol, seed, loss_fn
        self.batch_size = int(batch)
        self.train_batch = int(train_batch or batch)
        self.batch = fixed_batch(split, batch, device, seed, Stream.SHARPNESS_BATCH)
        self.top = None
        self.measurements: list[dict] = []
        self.cost = 0.0

    def before_step(self, step, model, optimizer) -> None:
        if step % self.every:
            return
        group = optimizer.param_groups[0]
        lr = float(group["lr"])
        kind = type(optimizer).__name__   # torch's Adam and AdamW are adaptive, SGD is not
        adaptive = is_adaptive(kind)
        params = trainable_parameters(model)
        preconditioner = None
        if adaptive and all("exp_avg_sq" in optimizer.state.get(p, {}) for p in params):
            preconditioner = adam_preconditioner(optimizer, params)
        seed = child_seed(self.seed, Stream.SHARPNESS_LANCZOS, len(self.measurements))
        # a non-finite product (a diverging trial) is a result, not a crash
        run = extremes("hessian", model, self.loss_fn, self.batch, bn_mode="train",
                       preconditioner=preconditioner, iters=self.iters, seed=seed,
                       v0=warm_start_vector(self.top, seed=seed), tol=self.tol, which="largest",
                       nonfinite_ok=True)
        self.cost += run.products * GRADIENTS_PER_PRODUCT["hessian"] * self.batch_size / self.train_batch
        result = run.result
        if result is not None and math.isfinite(result.lambda_max):
            self.top = result.top_vector
            lambda_max, residual = result.lambda_max, float(result.residuals[-1])
        else:
            lambda_max = residual = None
        beta = float(group["betas"][0]) if adaptive else float(group.get("momentum", 0.0))
        # the largest curvature this lr is stable at (stability_limit with lr for curvature);
        # none for Adam before it has a preconditioner to measure against
        limit = (None if adaptive and preconditioner is None
                 else stability_limit(lr, kind, beta, bool(group.get("nesterov", False))))
        self.measurements.append({
            "step": int(step), "lambda_max": lambda_max, "residual": residual, "lr": lr, "momentum": beta,
            "limit": limit, "preconditioned": preconditioner is not None, "products": int(run.products)})

    def log(self) -> dict:
        return {"every": self.every, "batch": self.batch_size, "iters": self.iters,
                "measurements": self.measurements, "cost_gradients": self.cost}

    def state_dict(self) -> dict:
        return {"top": self.top, "measurements": self.measurements, "cost": self.cost}

    def load_state_dict(self, state: dict) -> None:
        self.top, self.measurements = state["top"], list(state["measurements"])
        self.cost = float(state["cost"])


# ----------------------------------------------------------------------------------------------
# From the resolved config


def owns_lr(optimizer) -> bool:
    """Whether the optimizer (a ``config.OptimizerConfig``) sets its own lr, so no lr search applies."""
    return optimizer.name == "lanczos_sgd"


def hooks_for(optimizer, sharpness, batch: int, seed: int, data, device) -> list[TrainingHook]:
    """The hooks a job asks for, from its typed pieces (``config.OptimizerConfig`` and
    ``config.SharpnessConfig``): the learner first (it sets the lr that the sharpness tracker then
    reports), then sharpness tracking."""
    split = getattr(data, "train", data)
    hooks: list[TrainingHook] = []
    if owns_lr(optimizer):
        hooks.append(LanczosLearner(split, device, train_batch=int(batch), seed=int(seed),
                                    momentum=float(optimizer.momentum or 0.0),
                                    weight_decay=float(optimizer.weight_decay or 0.0),
                                    options=optimizer.learner))
    if sharpness.every:
        hooks.append(SharpnessTracker(split, device, every=sharpness.every,
                                      batch=min(int(batch), sharpness.batch), train_batch=int(batch),
                                      iters=sharpness.iters, tol=sharpness.tol, seed=int(seed)))
    return hooks
