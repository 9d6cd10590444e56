"""Lanczos with full reorthogonalisation: extreme eigenvalues and spectral densities.

``lanczos`` builds the tridiagonal matrix T of a symmetric operator in the Krylov space of a
start vector. Its eigenvalues (Ritz values) approximate the operator's extremes after far fewer
products than power iteration, and its eigenvectors give the weights of stochastic Lanczos
quadrature (SLQ). Every new vector is orthogonalised against the whole basis (classical
Gram-Schmidt, a second pass when the first cancelled much: "twice is enough"), so no ghost
copies of converged eigenvalues appear; the basis is therefore kept while the run lasts.

Memory: the basis is ``iters x dim`` numbers in ``basis_dtype`` (default: the operator's dtype,
float32 for a network), e.g. 100 iterations on VGG-16 (15M parameters) take 6 GB, on a quarter
width copy (0.9M) 0.4 GB. It is freed when the run ends unless ``keep_basis=True``; the top and
bottom Ritz vectors (for warm starts) are formed before that.

Arithmetic on the Lanczos vectors runs in ``dtype`` (float64 by default): the operator sees
each vector in its own dtype and its product is promoted back.

``extremes`` is what every measurement calls (curvature/spectrum.py, the learner's hooks,
``hessian_extremes``): it builds a curvature operator, runs ``lanczos`` on it and releases it.
SLQ start vector k of ``slq_nodes`` draws from stream ``seeds.Stream.SLQ_VECTORS + k``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
import torch
from torch import Tensor

from spectral_sweep.curvature.operators import curvature_operator
from spectral_sweep.errors import UsageError
from spectral_sweep.seeds import Stream, child_seed

WHICH = ("largest", "smallest", "both")


@dataclass
class LanczosResult:
    """What one Lanczos run found.

    ritz_values: eigenvalues of T, ascending. weights: squared first components of T's
    eigenvectors, the Gauss quadrature weights of the start vector's spectral measure (they sum
    to 1). residuals: |beta_m s_mi|, the norm of A y - theta y for each Ritz pair; with full
    reorthogonalisation every interval theta +- residual contains an eigenvalue of A.
    alphas, betas: T's diagonal and off-diagonal (a zero off-diagonal marks a restart after an
    invariant subspace). beta_last: the norm of the final residual vector.
    """

    ritz_values: np.ndarray
    weights: np.ndarray
    residuals: np.ndarray
    alphas: np.ndarray
    betas: np.ndarray
    beta_last: float
    iterations: int
    matvecs: int
    converged: bool
    top_vector: Tensor | None = None
    bottom_vector: Tensor | None = None
    basis: Tensor | None = field(default=None, repr=False)
    ritz_coefficients: np.ndarray | None = field(default=None, repr=False)

    @property
    def lambda_max(self) -> float:
        return float(self.ritz_values[-1])

    @property
    def lambda_min(self) -> float:
        return float(self.ritz_values[0])

    def ritz_vector(self, index: int = -1) -> Tensor:
        """The Ritz vector of ``ritz_values[index]`` (needs ``keep_basis=True``, or index 0/-1)."""
        if self.basis is None:
            if index in (-1, len(self.ritz_values) - 1) and self.top_vector is not None:
                return self.top_vector
            if index == 0 and self.bottom_vector is not None:
                return self.bottom_vector
            raise ValueError("the Krylov basis was freed; run lanczos with keep_basis=True")
        return _combine(self.basis, self.ritz_coefficients[:, index])


def _combine(basis: Tensor, coefficients: np.ndarray) -> Tensor:
    """sum_j c_j q_j over the first len(c) basis rows, normalised."""
    c = torch.as_tensor(coefficients, dtype=basis.dtype, device=basis.device)
    vector = c @ basis[: len(c)]
    return vector / vector.norm()


def _tridiagonal_eigen(alphas: list[float], betas: list[float]):
    """Eigenvalues (ascending) and eigenvectors of the symmetric tridiagonal T."""
    if len(alphas) == 1:
        return np.array(alphas), np.ones((1, 1))
    return scipy.linalg.eigh_tridiagonal(np.array(alphas), np.array(betas))


def _converged(which: str, theta: np.ndarray, residual: np.ndarray, tol: float | None) -> bool:
    """Whether the requested extremes' residual bounds are below ``tol * |theta|``.

    Relative to each Ritz value's own size, not to the spectrum's: a network Hessian has a huge
    bulk near zero, so in the first steps a Ritz value near zero has a residual that is small
    next to lambda_max although lambda_min is far away (seen on VGG-16: theta = -4e-4 with
    residual 0.5 at step 2, true lambda_min -53, lambda_max 706). A floor of tol^2 * max |theta|
    keeps a lambda_min that really is ~0 (a Gauss-Newton matrix) from needing every iteration.
    The residual bounds the distance to *some* eigenvalue; the error of a converged extreme is
    usually ~residual^2 / gap, far smaller.
    """
    if tol is None:
        return False
    floor = tol * max(abs(theta[0]), abs(theta[-1]))
    top = residual[-1] <= tol * max(abs(theta[-1]), floor)
    bottom = residual[0] <= tol * max(abs(theta[0]), floor)
    return {"largest": top, "smallest": bottom, "both": top and bottom}[which]


def _generator(seed: int, device) -> torch.Generator:
    """A seeded generator on ``device`` when that is a GPU, else on the host. Drawing a start
    vector of VGG-16's 15M numbers on the host takes ~0.1-1.6 s, longer than the few products of
    a warm Lanczos run on a GPU; CPU runs draw exactly what they always drew."""
    device = torch.device(device if device is not None else "cpu")
    return torch.Generator(device=device if device.type == "cuda" else "cpu").manual_seed(seed)


def _random_unit(dim: int, generator: torch.Generator, dtype, device) -> Tensor:
    v = torch.randn(dim, generator=generator, dtype=torch.float64, device=generator.device)
    v = v.to(device=device, dtype=dtype)
    return v / v.norm()


def _project_out(w: Tensor, basis: Tensor) -> Tensor:
    coefficients = basis @ w.to(basis.dtype)
    return w.sub_((coefficients @ basis).to(w.dtype))


def _orthogonalise(w: Tensor, basis: Tensor) -> Tensor:
    """w (in place) minus its projection on the orthonormal rows of ``basis``.

    Classical Gram-Schmidt, repeated once when the first pass removed a large part of w (its
    norm fell below 1/sqrt(2) of what it was): then cancellation may have left components along
    the basis, and a second pass removes them ("twice is enough", Kahan-Parlett). A Lanczos
    vector is nearly orthogonal already, so usually one pass suffices; the passes read the whole
    basis and dominate the cost of a step when the operator is cheap.
    """
    if len(basis) == 0:
        return w
    before = float(w.norm())
    w = _project_out(w, basis)
    if float(w.norm()) < 0.7071 * before:
        w = _project_out(w, basis)
    return w


def _start_vector(v0: Tensor | None, dim: int, generator: torch.Generator, dtype, device) -> Tensor:
    """``v0`` (checked, normalised) or a Gaussian unit vector drawn from ``generator``."""
    q = (v0.detach().reshape(-1).to(device=device, dtype=dtype) if v0 is not None
         else _random_unit(dim, generator, dtype, device))
    if q.numel() != dim:
        raise ValueError(f"start vector has {q.numel()} entries, operator dimension is {dim}")
    if not torch.isfinite(q).all() or q.norm() == 0:
        raise ValueError("start vector must be finite and non-zero")
    return q / q.norm()


class _Krylov:
    """The growing state of one Lanczos run: the orthonormal basis and T's diagonal and
    off-diagonal. The basis is allocated at the first product, whose dtype it takes."""

    def __init__(self, apply, dim: int, steps: int, generator: torch.Generator, dtype, device,
                 basis_dtype):
        self.apply, self.dim, self.steps, self.generator = apply, dim, steps, generator
        self.dtype, self.device, self.basis_dtype = dtype, device, basis_dtype
        self.basis: Tensor | None = None
        self.alphas: list[float] = []
        self.betas: list[float] = []
        self.matvecs = 0
        self.breakdown = 0.0

    def extend(self, j: int, q: Tensor, q_prev: Tensor | None, beta_prev: float) -> tuple[Tensor, float]:
        """Lanczos step j from the unit vector q: records alpha_j and returns the residual
        vector w, orthogonalised against the basis, and its norm beta."""
        w = self.apply(q)
        self.matvecs += 1
        if self.basis is None:  # the operator's dtype is known once it has answered
            self.basis = torch.empty(self.steps, self.dim, dtype=self.basis_dtype or w.dtype,
                                     device=self.device)
            # a residual this small relative to the spectrum is rounding noise (eps^0.75:
            # 2e-12 in float64, 6e-6 in float32); dropping it perturbs eigenvalues by ~beta^2
            self.breakdown = torch.finfo(self.basis.dtype).eps ** 0.75
        self.basis[j] = q.to(self.basis.dtype)
        w = w.to(device=self.device, dtype=self.dtype, copy=True).reshape(-1)
        alpha = float(q @ w)
        w.sub_(q, alpha=alpha)
        if q_prev is not None:
            w.sub_(q_prev, alpha=beta_prev)
        w = _orthogonalise(w, self.basis[: j + 1])
        beta = float(w.norm())
        if not (np.isfinite(alpha) and np.isfinite(beta)):
            raise FloatingPointError("the operator returned a non-finite product")
        self.alphas.append(alpha)
        return w, beta

    def fresh_direction(self, j: int) -> Tensor | None:
        """A random unit vector orthogonal to the first j + 1 basis vectors, or None when
        (numerically) nothing is left outside them."""
        w = _orthogonalise(_random_unit(self.dim, self.generator, self.dtype, self.device),
                           self.basis[: j + 1])
        w_norm = float(w.norm())
        return w / w_norm if w_norm > 0.5 else None


def lanczos(matvec, dim: int, iters: int = 100, seed: int = 0, v0: Tensor | None = None,
            tol: float | None = None, which: str = "both", dtype: torch.dtype = torch.float64,
            device=None, basis_dtype: torch.dtype | None = None, keep_basis: bool = False,
            restart: bool = True) -> LanczosResult:
    """Run up to ``iters`` Lanczos steps on ``matvec`` (a function or an object with .matvec).

    Starts from ``v0`` (e.g. a warm start, see ``warm_start_vector``) or a Gaussian vector drawn
    from ``seed``. Stops early when the ``which`` extremes' residual bounds fall below ``tol``
    (see ``_converged``); ``tol=None`` runs all ``iters`` steps (as SLQ wants). If the Krylov space
    becomes invariant (beta ~ 0: the start vector touches few eigenvectors), the run restarts with
    a random vector orthogonal to the basis when ``restart`` is set, else it stops; either way
    the Ritz values found so far are exact eigenvalues.
    """
    if which not in WHICH:
        raise UsageError(f"which must be one of {', '.join(WHICH)}, got '{which}'")
    if iters < 1:
        raise UsageError(f"Lanczos needs at least one iteration, got {iters}")
    if device is None:
        device = v0.device if v0 is not None else getattr(matvec, "device", "cpu")
    generator = _generator(seed, device)
    steps = min(int(iters), int(dim))
    run = _Krylov(matvec.matvec if hasattr(matvec, "matvec") else matvec, dim, steps, generator,
                  dtype, device, basis_dtype)
    q, q_prev, beta_prev = _start_vector(v0, dim, generator, dtype, device), None, 0.0
    restarts = 0
    for j in range(steps):
        w, beta = run.extend(j, q, q_prev, beta_prev)
        theta, s = _tridiagonal_eigen(run.alphas, run.betas)
        residual = beta * np.abs(s[-1])
        invariant = beta <= run.breakdown * max(abs(theta[0]), abs(theta[-1]), 1e-300)
        # The first invariant subspace says nothing about the rest of the spectrum (think of a
        # start vector that is one eigenvector), so it restarts before any convergence verdict;
        # a second one right after means the remaining space is (numerically) a null space.
        first_breakdown = invariant and restart and restarts == 0 and j + 1 < steps
        converged = _converged(which, theta, residual, tol)
        if not first_breakdown and (converged or j + 1 == steps):
            break
        if invariant:
            fresh = run.fresh_direction(j) if restart else None
            if fresh is None:  # no restart wanted, or nothing left outside the basis
                residual, converged = np.zeros_like(residual), True
                break
            restarts += 1
            q_prev, beta_prev, q = None, 0.0, fresh
            run.betas.append(0.0)
            continue
        run.betas.append(beta)
        q_prev, beta_prev, q = q, beta, w / beta
    return _result(run, theta, s, residual, beta, converged, keep_basis)


def _result(run: _Krylov, theta, s, residual, beta: float, converged: bool,
            keep_basis: bool) -> LanczosResult:
    """The ``LanczosResult`` of a finished run (its top and bottom Ritz vectors formed)."""
    m = len(run.alphas)
    result = LanczosResult(
        ritz_values=theta, weights=s[0] ** 2, residuals=residual, alphas=np.array(run.alphas),
        betas=np.array(run.betas), beta_last=beta, iterations=m, matvecs=run.matvecs,
        converged=bool(converged),
        top_vector=_combine(run.basis, s[:, -1]), bottom_vector=_combine(run.basis, s[:, 0]),
    )
    if keep_basis:
        result.basis, result.ritz_coefficients = run.basis[:m], s
    return result


def warm_start_vector(*vectors: Tensor | None, noise: float = 0.1, seed: int = 0) -> Tensor | None:
    """A start vector from earlier Ritz vectors (e.g. the previous batch's top and bottom).

    The normalised vectors are summed and a random direction of relative size ``noise`` is mixed
    in, so the Krylov space still reaches every eigenvector (a start vector that is exactly an
    eigenvector would make the space invariant after one step). Returns None if no vector is given.
    """
    given = [v.detach().reshape(-1) for v in vectors if v is not None]
    if not given:
        return None
    total = sum(v.double() / v.double().norm() for v in given)
    total = total / total.norm()
    if noise > 0:
        total = total + noise * _random_unit(total.numel(), _generator(seed, total.device),
                                             torch.float64, total.device)
    return (total / total.norm()).to(given[0].dtype)


# ----------------------------------------------------------------------------------------------
# Spectral density by stochastic Lanczos quadrature


def slq_nodes(matvec, dim: int, iters: int, n_vectors: int, seed: int = 0,
              distribution: str = "rademacher", device=None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Gauss quadrature nodes and weights of the spectral measure seen from random vectors.

    For a start vector v with |v| = 1, sum_i w_i f(theta_i) = v^T f(A) v exactly for polynomials f
    of degree < 2 * iters; averaged over random v with E[v v^T] = I / n it estimates tr f(A) / n.
    """
    if distribution not in ("rademacher", "gaussian"):
        raise UsageError(f"distribution must be rademacher or gaussian, got '{distribution}'")
    quadratures = []
    for k in range(n_vectors):
        generator = _generator(child_seed(seed, Stream.SLQ_VECTORS + k), device)
        if distribution == "rademacher":
            v = torch.randint(0, 2, (dim,), generator=generator, dtype=torch.float64,
                              device=generator.device) * 2 - 1
        else:
            v = torch.randn(dim, generator=generator, dtype=torch.float64, device=generator.device)
        result = lanczos(matvec, dim, iters=iters, v0=v, tol=None, device=device, restart=False)
        quadratures.append((result.ritz_values, result.weights))
    return quadratures


def broadened_density(quadratures, grid: np.ndarray | None = None, sigma: float | None = None,
                      points: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Average of Gaussian bumps of width ``sigma`` at the nodes, weighted: a density that
    integrates to 1. Default sigma: 1% of the node range; default grid: ``points`` points
    covering the nodes with 5 sigma to spare on each side."""
    nodes = np.concatenate([n for n, _ in quadratures])
    low, high = float(nodes.min()), float(nodes.max())
    if sigma is None:
        sigma = max(0.01 * (high - low), 1e-12 * max(abs(low), abs(high), 1.0))
    if grid is None:
        grid = np.linspace(low - 5 * sigma, high + 5 * sigma, points)
    grid = np.asarray(grid, dtype=np.float64)
    density = np.zeros_like(grid)
    for theta, weights in quadratures:
        bumps = np.exp(-0.5 * ((grid[:, None] - theta[None, :]) / sigma) ** 2)
        density += bumps @ weights
    density /= len(quadratures) * sigma * np.sqrt(2 * np.pi)
    return grid, density


def slq_density(matvec, dim: int, iters: int, n_vectors: int, seed: int = 0,
                grid: np.ndarray | None = None, sigma: float | None = None,
                distribution: str = "rademacher", device=None) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian-broadened SLQ estimate of the eigenvalue density (Ubaru, Chen & Saad 2017;
    Ghorbani, Krishnan & Xiao 2019), averaged over ``n_vectors`` random start vectors."""
    quadratures = slq_nodes(matvec, dim, iters, n_vectors, seed, distribution, device)
    return broadened_density(quadratures, grid, sigma)


# ----------------------------------------------------------------------------------------------
# Build an operator, run Lanczos on it, release it


@contextlib.contextmanager
def temporary_operator(operator: str, model, loss_fn, data, bn_mode: str = "train", method="auto",
                       preconditioner: Tensor | None = None):
    """The curvature operator ``operator`` ("hessian" or "ggn", see ``curvature_operator``) for one
    measurement; its cached autograd graph is released on exit. Its counters (products, samples,
    gradient_cost) stay readable afterwards."""
    op = curvature_operator(operator, model, loss_fn, data, bn_mode=bn_mode, method=method,
                            preconditioner=preconditioner)
    try:
        yield op
    finally:
        op.release()


@dataclass
class ExtremesRun:
    """One ``extremes`` call: the Lanczos result (None when the operator returned a non-finite
    product and ``nonfinite_ok`` was set) and the operator's work (see ``operators``)."""

    result: LanczosResult | None
    products: int
    samples: int
    gradient_cost: float
    product: dict = field(default_factory=dict)   # the method used (operators.CurvatureOperator.product)


def extremes(operator: str, model, loss_fn, data, *, bn_mode: str = "train", method="auto",
             preconditioner: Tensor | None = None, iters: int = 100, seed: int = 0,
             v0: Tensor | None = None, tol: float | None = None, which: str = "both",
             restart: bool = True, nonfinite_ok: bool = False) -> ExtremesRun:
    """Build the curvature operator of ``loss_fn`` on ``data`` (one batch or chunks), run
    ``lanczos`` on it from ``v0`` or ``seed`` on the operator's device, and release it.

    ``nonfinite_ok``: a non-finite product (a diverging model) gives ``result=None`` instead of
    raising ``FloatingPointError``; the products made before it still count.
    """
    with temporary_operator(operator, model, loss_fn, data, bn_mode, method, preconditioner) as op:
        try:
            result = lanczos(op, op.dim, iters=iters, seed=seed, v0=v0, tol=tol, which=which,
                             device=op.device, restart=restart)
        except FloatingPointError:
            if not nonfinite_ok:
                raise
            result = None
    return ExtremesRun(result=result, products=op.products, samples=op.samples,
                       gradient_cost=op.gradient_cost, product=op.product)


def hessian_extremes(model, loss_fn, batch, iters: int = 100, tol: float | None = 1e-3,
                     v0: Tensor | None = None, operator: str = "hessian", bn_mode: str = "train",
                     method="auto", preconditioner: Tensor | None = None, seed: int = 0,
                     which: str = "both") -> dict:
    """lambda_max and lambda_min of the Hessian (or GGN) of ``loss_fn`` on ``batch``.

    ``batch`` is one (x, y) batch or re-iterable chunks (see ``operators``). Returns
    lambda_max, lambda_min, their residual bounds, top_vector and bottom_vector (pass them to
    ``warm_start_vector`` for the next measurement), products (matvecs), cost_gradients (nominal,
    see ``operators.GRADIENTS_PER_PRODUCT``), iterations and product (the method used: with
    ``method="auto"`` the cheaper of both, timed on the first products).
    """
    run = extremes(operator, model, loss_fn, batch, bn_mode=bn_mode, method=method,
                   preconditioner=preconditioner, iters=iters, seed=seed, v0=v0, tol=tol, which=which)
    result = run.result
    return {
        "lambda_max": result.lambda_max,
        "lambda_min": result.lambda_min,
        "residual_max": float(result.residuals[-1]),
        "residual_min": float(result.residuals[0]),
        "top_vector": result.top_vector,
        "bottom_vector": result.bottom_vector,
        "products": run.products,
        "product": run.product,
        "cost_gradients": run.gradient_cost,
        "iterations": result.iterations,
        "converged": result.converged,
    }
