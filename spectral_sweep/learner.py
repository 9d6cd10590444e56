"""The paper's on-the-fly learning-rate / momentum learner, and sharpness tracking during a trial.

Both are ``train.TrainingHook`` subclasses; ``hooks_for(config, data, device)`` builds the ones a
resolved job config asks for (``optimizer.name == "lanczos_sgd"`` -> ``LanczosLearner``;
``train.sharpness_every`` set -> ``SharpnessTracker``).

The learner (Granziol, Zohren & Roberts 2022, the "Lanczos learner")
--------------------------------------------------------------------
Every ``every`` optimizer steps (the first refresh is at step 0), ``iters`` Lanczos steps on the
Hessian of the mean cross-entropy over a FIXED curvature batch (``batch`` samples drawn once with
a seeded generator from the training split, evaluation transform, BatchNorm in train mode) give
Ritz values theta_i and Gauss quadrature weights gamma_i. From them:

* L  = max |theta|;
* mu = ``bulk_mu``: the smallest |theta| left after removing, while the largest remaining weight
  exceeds 1/2, the Ritz value that carries it (a node carrying most of the start vector's mass
  stands for the bulk of eigenvalues near zero, not for an eigenvalue of its own). Weights are
  not renormalised after a removal, so with weights summing to one at most one node goes.

The rules (``learner_rule``) are the textbook forms:

* ``ssgd``:       lr = 2 / (L + median |theta|), momentum as configured;
* ``heavy_ball``: Polyak's optimum, lr = 4 / (sqrt L + sqrt mu)^2,
                  momentum = ((sqrt L - sqrt mu) / (sqrt L + sqrt mu))^2;
* ``nesterov``:   lr = 1 / L, momentum = (sqrt k - 1) / (sqrt k + 1), k = L / mu
                  (and the optimizer's ``nesterov`` flag is switched on).

The authors' own scripts differ from these in places (a ``+ mu`` for ``+ sqrt(mu)`` in one
momentum denominator, a dimensionless lr sqrt(mu / L) in the Nesterov variant, quadrature weights
re-sorted apart from their Ritz values); this module implements the textbook forms above.

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
stability limit of that lr: 2 (1 + beta) / lr for SGD with heavy-ball momentum beta,
2 (1 + beta) / ((1 + 2 beta) lr) with Nesterov momentum, and for Adam/AdamW (measured on the
preconditioned Hessian P^-1/2 H P^-1/2 once the optimizer has state) (2 + 2 beta1) / ((1 - beta1) lr).
lambda_max is the loss Hessian's, without weight decay (which would add wd for SGD).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .curvature import (
    GRADIENTS_PER_PRODUCT,
    adam_preconditioner,
    curvature_operator,
    lanczos,
    trainable_parameters,
    warm_start_vector,
)
from .errors import UsageError
from .train import TrainingHook

RULES = ("ssgd", "heavy_ball", "nesterov")
# the defaults of conf/optimizer/lanczos_sgd.yaml (a test keeps the two equal), plus two knobs
# the config does not show: an early-stop tol for the refresh's Lanczos and the warm-start weight
LEARNER_DEFAULTS = {"every": 1200, "iters": 20, "batch": 128, "rule": "heavy_ball", "lr_cap": 1.0,
                    "momentum_cap": 0.99, "tol": None, "warm_weight": 0.01}
SHARPNESS_BATCH = 128

# seed streams of the fixed curvature batches and of the Lanczos start vectors (independent of
# spectrum.py's streams 0-4, so switching a hook on leaves every other draw alone)
STREAM_LEARNER_BATCH, STREAM_LEARNER_LANCZOS, STREAM_SHARPNESS_BATCH, STREAM_SHARPNESS_LANCZOS = 10, 11, 12, 13


def _seed(seed: int, stream: int, index: int = 0) -> int:
    return int(np.random.SeedSequence([int(seed), stream, int(index)]).generate_state(1)[0])


def fixed_batch(split, size: int, device, seed: int, stream: int):
    """``size`` distinct samples of ``split`` drawn once from (seed, stream), evaluation transform."""
    from .spectrum import random_batch

    return random_batch(split, int(size), device, torch.Generator().manual_seed(_seed(seed, stream)))


# ----------------------------------------------------------------------------------------------
# Pure rules (numpy only)


def bulk_mu(theta, weights) -> float:
    """The smallest |theta| left after removing, while the largest remaining weight exceeds 1/2,
    the Ritz value that carries it. If everything would go (a single node), nothing is removed."""
    theta = np.abs(np.asarray(theta, dtype=float))
    weights = np.asarray(weights, dtype=float)
    if theta.shape != weights.shape or theta.size == 0:
        raise ValueError("need as many weights as Ritz values, and at least one of each")
    keep = np.ones(theta.size, dtype=bool)
    while keep.sum() > 1:
        i = int(np.argmax(np.where(keep, weights, -np.inf)))
        if not weights[i] > 0.5:
            break
        keep[i] = False
    return float(theta[keep].min())


def learner_rule(theta, weights, rule: str = "heavy_ball", momentum: float = 0.0,
                 weight_decay: float = 0.0, lr_cap: float | None = None,
                 momentum_cap: float | None = None) -> dict:
    """lr and momentum from Ritz values and weights (see the module docstring).

    Returns {"L", "mu", "median", "lr", "momentum", "nesterov"}. ``momentum`` is the configured
    momentum, used by ``ssgd`` only. ``weight_decay`` is added to L, mu and the median.
    """
    if rule not in RULES:
        raise UsageError(f"unknown learner rule '{rule}'; choose one of: {', '.join(RULES)}")
    absolute = np.abs(np.asarray(theta, dtype=float))
    wd = float(weight_decay or 0.0)
    L = float(absolute.max()) + wd
    mu = bulk_mu(theta, weights) + wd
    median = float(np.median(absolute)) + wd
    if not L > 0:
        raise FloatingPointError(f"the curvature batch has a zero spectrum (L = {L})")
    mu = min(max(mu, 0.0), L)
    if rule == "ssgd":
        lr, beta = 2.0 / (L + median), float(momentum)
    elif rule == "heavy_ball":
        sl, sm = math.sqrt(L), math.sqrt(mu)
        lr, beta = 4.0 / (sl + sm) ** 2, ((sl - sm) / (sl + sm)) ** 2
    else:
        root_k = math.sqrt(L / mu) if mu > 0 else math.inf
        lr = 1.0 / L
        beta = 1.0 if math.isinf(root_k) else (root_k - 1.0) / (root_k + 1.0)
    if momentum_cap is not None and beta > momentum_cap:
        beta = float(momentum_cap)
        if rule == "heavy_ball":   # Polyak's pair at the mu where his momentum equals the cap
            lr = (1.0 + math.sqrt(beta)) ** 2 / L
    if lr_cap is not None:
        lr = min(lr, float(lr_cap))
    return {"L": L, "mu": mu, "median": median, "lr": float(lr), "momentum": float(beta),
            "nesterov": rule == "nesterov"}


def sgd_limit(lr: float, momentum: float = 0.0, nesterov: bool = False) -> float:
    """The largest curvature at which SGD with this lr and momentum is stable on a quadratic."""
    if nesterov and momentum > 0:
        return 2.0 * (1.0 + momentum) / ((1.0 + 2.0 * momentum) * lr)
    return 2.0 * (1.0 + momentum) / lr


def adam_limit(lr: float, beta1: float) -> float:
    """Adam's edge on the preconditioned Hessian (Cohen et al. 2022): (2 + 2 beta1) / ((1 - beta1) lr)."""
    return (2.0 + 2.0 * beta1) / ((1.0 - beta1) * lr)


# ----------------------------------------------------------------------------------------------
# Hooks


class LanczosLearner(TrainingHook):
    """Sets lr and momentum of a (torch) SGD optimizer every ``every`` steps from a Lanczos run."""

    name = "learner"
    owns_lr = True

    def __init__(self, split, device, train_batch: int, every: int = 100, iters: int = 20,
                 batch: int = 128, rule: str = "heavy_ball", lr_cap: float | None = None,
                 momentum_cap: float | None = 0.99, tol: float | None = None,
                 warm_weight: float = 0.01, momentum: float = 0.0, weight_decay: float = 0.0,
                 seed: int = 0, loss_fn=F.cross_entropy):
        if rule not in RULES:
            raise UsageError(f"unknown learner rule '{rule}'; choose one of: {', '.join(RULES)}")
        for key, value in (("every", every), ("iters", iters), ("batch", batch)):
            if not (isinstance(value, int) and value >= 1):
                raise UsageError(f"optimizer.learner.{key} must be a positive integer, got {value!r}")
        if not 0.0 <= warm_weight < 1.0:
            raise UsageError(f"optimizer.learner.warm_weight must lie in [0, 1), got {warm_weight}")
        self.every, self.iters, self.rule, self.tol = every, iters, rule, tol
        self.lr_cap, self.momentum_cap, self.warm_weight = lr_cap, momentum_cap, warm_weight
        self.momentum, self.weight_decay = float(momentum), float(weight_decay)
        self.batch_size, self.train_batch, self.seed, self.loss_fn = batch, int(train_batch), seed, loss_fn
        self.batch = fixed_batch(split, batch, device, seed, STREAM_LEARNER_BATCH)
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
        index = len(self.refreshes)
        seed = _seed(self.seed, STREAM_LEARNER_LANCZOS, index)
        v0 = None
        if self.top is not None and self.warm_weight > 0:
            # |top|^2 : |noise|^2 = warm_weight : 1 - warm_weight
            noise = math.sqrt((1.0 - self.warm_weight) / self.warm_weight)
            v0 = warm_start_vector(self.top, noise=noise, seed=seed)
        op = curvature_operator("hessian", model, self.loss_fn, self.batch, bn_mode="train")
        # no restart after an invariant subspace: every node then carries the start vector's
        # mass, which the bulk rule reads (a restarted block adds nodes of weight zero)
        result = lanczos(op, op.dim, iters=self.iters, seed=seed, v0=v0, tol=self.tol, which="both",
                         device=op.device, restart=False)
        op.release()
        cost = op.products * GRADIENTS_PER_PRODUCT["hessian"] * self.batch_size / self.train_batch
        self.cost += cost
        if not np.isfinite(result.ritz_values).all():
            raise FloatingPointError("non-finite Ritz values")
        self.top = result.top_vector
        chosen = learner_rule(result.ritz_values, result.weights, self.rule, self.momentum,
                              self.weight_decay, self.lr_cap, self.momentum_cap)
        entry = {"step": int(step), "ritz_values": [float(t) for t in result.ritz_values],
                 "weights": [float(w) for w in result.weights], **chosen,
                 "products": int(op.products), "cost_gradients": float(cost)}
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
            raise UsageError(f"train.sharpness_every must be a positive integer or null, got {every!r}")
        self.every, self.iters, self.tol, self.seed, self.loss_fn = every, iters, tol, seed, loss_fn
        self.batch_size = int(batch)
        self.train_batch = int(train_batch or batch)
        self.batch = fixed_batch(split, batch, device, seed, STREAM_SHARPNESS_BATCH)
        self.top = None
        self.measurements: list[dict] = []
        self.cost = 0.0

    def before_step(self, step, model, optimizer) -> None:
        if step % self.every:
            return
        group = optimizer.param_groups[0]
        lr = float(group["lr"])
        adam = isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW))
        params = trainable_parameters(model)
        preconditioner = None
        if adam and all("exp_avg_sq" in optimizer.state.get(p, {}) for p in params):
            preconditioner = adam_preconditioner(optimizer, params)
        seed = _seed(self.seed, STREAM_SHARPNESS_LANCZOS, len(self.measurements))
        v0 = warm_start_vector(self.top, seed=seed)
        op = curvature_operator("hessian", model, self.loss_fn, self.batch, bn_mode="train",
                                preconditioner=preconditioner)
        try:
            result = lanczos(op, op.dim, iters=self.iters, seed=seed, v0=v0, tol=self.tol,
                             which="largest", device=op.device)
        except FloatingPointError:   # a diverging trial: a result, not a crash
            result = None
        op.release()
        cost = op.products * GRADIENTS_PER_PRODUCT["hessian"] * self.batch_size / self.train_batch
        self.cost += cost
        if result is not None and math.isfinite(result.lambda_max):
            self.top = result.top_vector
            lambda_max, residual = result.lambda_max, float(result.residuals[-1])
        else:
            lambda_max = residual = None
        if adam:
            beta = float(group["betas"][0])
            limit = adam_limit(lr, beta) if preconditioner is not None else None
        else:
            beta = float(group.get("momentum", 0.0))
            limit = sgd_limit(lr, beta, bool(group.get("nesterov", False)))
        self.measurements.append({
            "step": int(step), "lambda_max": lambda_max, "residual": residual, "lr": lr, "momentum": beta, "limit": limit,
            "preconditioned": preconditioner is not None, "products": int(op.products)})

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


def learner_options(optimizer: dict) -> dict:
    """``optimizer.learner`` merged over the defaults; unknown keys are a usage error."""
    given = dict(optimizer.get("learner") or {})
    unknown = sorted(set(given) - set(LEARNER_DEFAULTS))
    if unknown:
        raise UsageError(f"unknown optimizer.learner option(s) {', '.join(unknown)}; "
                         f"known: {', '.join(LEARNER_DEFAULTS)}")
    return {**LEARNER_DEFAULTS, **given}


def owns_lr(config: dict) -> bool:
    """Whether the job's optimizer sets its own lr (the learner), so no lr search applies."""
    return config["optimizer"]["name"] == "lanczos_sgd"


def hooks_for(config: dict, data, device) -> list[TrainingHook]:
    """The hooks a resolved job config asks for: the learner first (it sets the lr that the
    sharpness tracker then reports), then sharpness tracking."""
    split = getattr(data, "train", data)
    optimizer = config["optimizer"]
    batch = int(config["batch"])
    seed = int(config.get("seed", 0))
    hooks: list[TrainingHook] = []
    if owns_lr(config):
        hooks.append(LanczosLearner(split, device, train_batch=batch, seed=seed,
                                    momentum=float(optimizer.get("momentum") or 0.0),
                                    weight_decay=float(optimizer.get("weight_decay") or 0.0),
                                    **learner_options(optimizer)))
    every = (config.get("train") or {}).get("sharpness_every")
    if every:
        size = min(batch, SHARPNESS_BATCH)
        hooks.append(SharpnessTracker(split, device, every=every, batch=size, train_batch=batch,
                                      seed=seed))
    return hooks
