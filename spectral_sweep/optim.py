"""Optimizers and learning-rate schedules, built from plain options.

A trial is defined by its *peak* learning rate: every schedule is a multiplier in [0, 1] of the
peak, so "the max stable lr" always means the same thing whatever the schedule.

The paper's schedule (Granziol et al. 2022, Section 6): constant for the first 50% of the
budget, then linear decay to 1% of the peak at 90%, then constant at 1%.
"""

from __future__ import annotations

import math

import torch

from .config import Schedule
from .errors import UsageError, unknown_choice
from .theory import is_adaptive

OPTIMIZERS = ("sgd", "adam", "adamw", "lanczos_sgd")


def build_optimizer(name: str, params, lr: float, momentum: float = 0.9, nesterov: bool = False,
                    weight_decay: float = 0.0, betas=(0.9, 0.999), eps: float = 1e-8) -> torch.optim.Optimizer:
    """SGD (heavy-ball or Nesterov momentum), Adam (L2 weight decay) or AdamW (decoupled)."""
    if not lr > 0:
        raise UsageError(f"learning rate must be positive, got {lr}")
    if name in ("sgd", "lanczos_sgd"):   # lanczos_sgd: plain SGD whose lr/momentum learner.py sets
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0,
                               weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
    raise unknown_choice("optimizer", name, OPTIMIZERS)


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
