"""Optimizers and learning-rate schedules, built from plain options.

A trial is defined by its *peak* learning rate: every schedule is a multiplier in [0, 1] of the
peak, so "the max stable lr" always means the same thing whatever the schedule.

The paper's schedule (Granziol et al. 2022, Section 6): constant for the first 50% of the
budget, then linear decay to 1% of the peak at 90%, then constant at 1%.
"""

from __future__ import annotations

import math

import torch

from spectral_sweep.config import targets
from spectral_sweep.config.schema import SCHEMAS
from spectral_sweep.config.train import Schedule
from spectral_sweep.errors import UsageError, unknown_choice
from spectral_sweep.theory import is_adaptive


def build_optimizer(name: str, params, lr: float, target: str | None = None, **options) -> torch.optim.Optimizer:
    """The optimizer ``target`` (a ``torch.optim.Optimizer`` class by dotted path) at peak ``lr``.

    From Python, ``build_optimizer("sgd", params, 0.1)`` names a built-in family: its class and
    the defaults of its options (momentum, weight decay, betas...) come from its schema in
    config/, so a Python caller and the command line get the same optimizer."""
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise UsageError(f"learning rate must be positive, got {lr}")
    if target is None:
        schemas = SCHEMAS["optimizer"]
        if name not in schemas:
            raise unknown_choice("optimizer", name, schemas)
        defaults = schemas[name]().options()
        target = defaults.pop("target")
        options = {**{k: v for k, v in defaults.items() if k != "name"}, **options}
    cls = targets.locate(target, "optimizer._target_")
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise UsageError(f"optimizer._target_={target} is not a torch.optim.Optimizer class")
    if "betas" in options:
        options["betas"] = tuple(options["betas"])
    return targets.call(cls, "optimizer._target_", target, params, lr=lr, **options)


def momentum_of(name: str, momentum: float = 0.9, betas=(0.9, 0.999), **_) -> float:
    """The momentum that enters the stability limit: heavy-ball beta for SGD, beta1 for Adam-like
    optimizers (``theory.is_adaptive``)."""
    return float(betas[0]) if is_adaptive(name) else float(momentum)


def lr_factor(schedule: str, step: int, total: int, warmup: int = 0) -> float:
    """Multiplier of the peak lr at ``step`` (0-based) of ``total`` steps."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    t = step / max(total, 1)
    if schedule == "constant":
        return 1.0
    if schedule == "paper":
        if t < 0.5:
            return 1.0
        if t < 0.9:
            return 1.0 - 0.99 * (t - 0.5) / 0.4
        return 0.01
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t))
    raise unknown_choice("schedule", schedule, Schedule.__members__)
