"""Squared norms of mini-batch gradients at two batch sizes, for the gradient noise scale.

For independent batches of size B, E|G_B|^2 = |G|^2 + tr(Sigma) / B, where G is the full-data
gradient and Sigma the per-example gradient covariance; two batch sizes separate the two terms
(McCandlish et al. 2018). ``spectral_sweep.theory.gradient_noise_scale`` turns the mean squared
norms into |G|^2, tr(Sigma) and B_noise = tr(Sigma) / |G|^2; this module only measures.

Batches drawn without replacement from a finite training set of N samples shrink the variance
term by (N - B) / (N - 1); with B << N (the usual case) the difference is negligible.
Gradients are taken in the curvature state of the model (dropout off, BatchNorm as ``bn_mode``
says, running statistics untouched), so they belong to the same loss as the measured Hessian.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from spectral_sweep.curvature.operators import gradient


def gradient_sqnorms(model, loss_fn, batches: Iterable, bn_mode: str = "train") -> np.ndarray:
    """|grad L_B|^2 for each (x, y) batch in ``batches``, as float64."""
    return np.array([float(gradient(model, loss_fn, batch, bn_mode).double().square().sum())
                     for batch in batches])


def noise_scale(model, loss_fn, small_batches: Iterable, big_batches: Iterable,
                bn_mode: str = "train") -> dict:
    """The gradient noise scale from batches of two sizes (each list holds one size).

    Returns the record's ``noise_scale`` entry: b_noise, trace_sigma, grad_sqnorm, b_small,
    b_big, plus the number of gradients spent.
    """
    from spectral_sweep.theory import gradient_noise_scale

    small, big = list(small_batches), list(big_batches)
    b_small, b_big = _common_size(small), _common_size(big)
    sq_small = gradient_sqnorms(model, loss_fn, small, bn_mode)
    sq_big = gradient_sqnorms(model, loss_fn, big, bn_mode)
    estimate = gradient_noise_scale(b_small, sq_small, b_big, sq_big)
    return {
        "b_noise": float(estimate.b_noise),
        "trace_sigma": float(estimate.trace_sigma),
        "grad_sqnorm": float(estimate.grad_sqnorm),
        "b_small": b_small,
        "b_big": b_big,
        "gradients": len(small) + len(big),
    }


def _common_size(batches: list) -> int:
    sizes = {len(y) for _, y in batches}
    if len(sizes) != 1:
        raise ValueError(f"all batches of one group must have the same size, got {sorted(sizes)}")
    return sizes.pop()
