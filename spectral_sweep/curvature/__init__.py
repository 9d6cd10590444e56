"""Curvature instruments: Hessian / Gauss-Newton products, Lanczos, SLQ densities, noise scale.

``extremes`` is the one place that builds an operator, runs Lanczos on it and releases it;
``temporary_operator`` does the build and release for anything else (an SLQ density).
"""

from spectral_sweep.curvature.lanczos import (
    ExtremesRun,
    LanczosResult,
    broadened_density,
    extremes,
    hessian_extremes,
    lanczos,
    slq_density,
    slq_nodes,
    temporary_operator,
    warm_start_vector,
)
from spectral_sweep.curvature.noise import gradient_sqnorms, noise_scale
from spectral_sweep.curvature.operators import (
    GRADIENTS_PER_PRODUCT,
    Chunks,
    CurvatureOperator,
    GGNOperator,
    HessianOperator,
    PreconditionedOperator,
    adam_preconditioner,
    curvature_mode,
    curvature_operator,
    flatten,
    ggn_operator,
    gradient,
    hessian_operator,
    trainable_parameters,
    unflatten,
)

__all__ = [
    "GRADIENTS_PER_PRODUCT",
    "Chunks",
    "CurvatureOperator",
    "ExtremesRun",
    "GGNOperator",
    "HessianOperator",
    "LanczosResult",
    "PreconditionedOperator",
    "adam_preconditioner",
    "broadened_density",
    "curvature_mode",
    "curvature_operator",
    "extremes",
    "flatten",
    "ggn_operator",
    "gradient",
    "gradient_sqnorms",
    "hessian_extremes",
    "hessian_operator",
    "lanczos",
    "noise_scale",
    "slq_density",
    "slq_nodes",
    "temporary_operator",
    "trainable_parameters",
    "unflatten",
    "warm_start_vector",
]
