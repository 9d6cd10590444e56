"""Lanczos and SLQ on explicit symmetric matrices with known spectra."""

import numpy as np
import pytest
import torch

from spectral_sweep.curvature import lanczos, slq_density, slq_nodes, warm_start_vector
from spectral_sweep.errors import UsageError

N = 400


def matrix_with(eigenvalues, seed=0):
    """Q diag(eigenvalues) Q^T with a random orthogonal Q; also returns Q."""
    eigenvalues = torch.as_tensor(eigenvalues, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigenvalues), len(eigenvalues), generator=g, dtype=torch.float64))
    return q @ torch.diag(eigenvalues) @ q.T, q


def spiked_spectrum(n=N, seed=0):
    """A Hessian-like spectrum: a bulk near zero (both signs), a few outliers, ascending."""
    g = torch.Generator().manual_seed(seed)
    bulk = 0.5 * torch.randn(n - 6, generator=g, dtype=torch.float64)
    spikes = torch.tensor([-4.0, -2.5, 8.0, 12.0, 20.0, 35.0], dtype=torch.float64)
    return torch.cat([bulk, spikes]).sort().values


@pytest.fixture(scope="module")
def spiked():
    eigenvalues = spiked_spectrum()
    a, q = matrix_with(eigenvalues)
    return a, q, eigenvalues


def test_extremes_to_high_relative_accuracy(spiked):
    a, _, eigenvalues = spiked
    result = lanczos(lambda v: a @ v, N, iters=150, tol=1e-10, seed=1)
    assert result.converged and result.iterations < 150
    assert abs(result.lambda_max - eigenvalues[-1]) <= 1e-6 * abs(eigenvalues[-1])
    assert abs(result.lambda_min - eigenvalues[0]) <= 1e-6 * abs(eigenvalues[0])
    assert result.matvecs == result.iterations
    assert np.all(np.diff(result.ritz_values) >= 0)


def test_residual_bounds_hold_for_every_ritz_value(spiked):
    a, _, eigenvalues = spiked
    result = lanczos(lambda v: a @ v, N, iters=25, seed=2)  # far from converged in the bulk
    assert result.iterations == 25 and not result.converged
    distance = (eigenvalues.numpy()[None, :] - result.ritz_values[:, None]).__abs__().min(axis=1)
    assert np.all(distance <= result.residuals * (1 + 1e-8) + 1e-10)
    assert result.residuals.max() > 1e-3  # the bound is not trivially zero


def test_early_stop_triggers_and_tol_none_runs_all(spiked):
    a, _, _ = spiked
    loose = lanczos(lambda v: a @ v, N, iters=100, tol=1e-3, seed=3)
    tight = lanczos(lambda v: a @ v, N, iters=100, tol=1e-9, seed=3)
    fixed = lanczos(lambda v: a @ v, N, iters=60, tol=None, seed=3)
    assert loose.converged and loose.iterations < tight.iterations < 100
    assert fixed.iterations == 60 and not fixed.converged
    theta = loose.ritz_values
    assert loose.residuals[-1] <= 1e-3 * abs(theta[-1]) and loose.residuals[0] <= 1e-3 * abs(theta[0])
    top_only = lanczos(lambda v: a @ v, N, iters=100, tol=1e-9, seed=3, which="largest")
    assert top_only.iterations <= tight.iterations


def test_lambda_min_is_not_stopped_early_by_a_bulk_near_zero():
    """A network Hessian's shape: dominant outliers, a huge bulk at ~0, a small negative tail.

    In the first steps the smallest Ritz value sits in the bulk with a residual that is tiny next
    to lambda_max; a residual test relative to the spectrum's scale would stop there and report
    lambda_min ~ 0. Lanczos is basis-free, so a diagonal matrix is as good as a rotated one."""
    n = 20000
    g = torch.Generator().manual_seed(0)
    d = torch.cat([torch.tensor([1e4, 2e3], dtype=torch.float64),
                   1e-3 * torch.randn(n - 5, generator=g, dtype=torch.float64),
                   torch.tensor([-50.0, -40.0, -30.0], dtype=torch.float64)])
    for seed in range(3):
        for which in ("smallest", "both"):
            result = lanczos(lambda v: d * v, n, iters=100, tol=1e-3, which=which, seed=seed)
            assert abs(result.lambda_min + 50) < 1e-3 * 50, (seed, which, result.lambda_min)


def test_warm_start_near_the_top_vector_converges_faster():
    # a clustered top (1.00, 0.98, 0.96) over a bulk: slow for a cold start
    g = torch.Generator().manual_seed(4)
    eigenvalues = torch.cat([torch.rand(N - 3, generator=g, dtype=torch.float64) * 0.9,
                             torch.tensor([0.96, 0.98, 1.0], dtype=torch.float64)]).sort().values
    a, q = matrix_with(eigenvalues, seed=4)
    near_top = q[:, -1] + 0.01 * torch.randn(N, generator=g, dtype=torch.float64) / N ** 0.5
    cold = lanczos(lambda v: a @ v, N, iters=200, tol=1e-4, which="largest", seed=5)
    warm = lanczos(lambda v: a @ v, N, iters=200, tol=1e-4, which="largest",
                   v0=warm_start_vector(near_top, noise=0.01, seed=5))
    assert abs(warm.lambda_max - 1.0) < 1e-6 and abs(cold.lambda_max - 1.0) < 1e-6
    assert warm.converged and cold.converged
    assert warm.iterations <= 8 and 3 * warm.iterations <= cold.iterations


def test_top_vector_is_an_eigenvector(spiked):
    a, q, _ = spiked
    result = lanczos(lambda v: a @ v, N, iters=100, tol=1e-10, seed=6, keep_basis=True)
    top = result.top_vector
    assert abs(abs(float(top @ q[:, -1])) - 1) < 1e-8
    assert torch.allclose(result.ritz_vector(-1), top)
    y = result.ritz_vector(-2)
    assert float((a @ y - result.ritz_values[-2] * y).norm()) <= result.residuals[-2] * 1.01 + 1e-10
    freed = lanczos(lambda v: a @ v, N, iters=20, seed=6)
    assert freed.basis is None and freed.top_vector is not None
    with pytest.raises(ValueError):
        freed.ritz_vector(3)


def test_invariant_subspaces_are_handled():
    # five distinct eigenvalues: the Krylov space of any vector is invariant after 5 steps
    eigenvalues = torch.tensor([-1.0, 0.0, 2.0, 5.0, 9.0], dtype=torch.float64).repeat_interleave(N // 5)
    a, q = matrix_with(eigenvalues, seed=7)
    result = lanczos(lambda v: a @ v, N, iters=50, tol=1e-8, seed=7)
    assert result.converged and result.iterations <= 7
    assert abs(result.lambda_max - 9) < 1e-10 and abs(result.lambda_min + 1) < 1e-10
    # a start vector that is an eigenvector: restart instead of reporting lambda_min = lambda_max
    exact = lanczos(lambda v: a @ v, N, iters=50, tol=1e-8, v0=q[:, N // 2])
    assert abs(exact.lambda_max - 9) < 1e-10 and abs(exact.lambda_min + 1) < 1e-10
    assert 0.0 in exact.betas
    # SLQ mode stops at the invariant subspace: its quadrature is already exact
    stopped = lanczos(lambda v: a @ v, N, iters=50, tol=None, restart=False, seed=7)
    assert stopped.iterations == 5
    np.testing.assert_allclose(stopped.ritz_values, [-1, 0, 2, 5, 9], atol=1e-10)
    np.testing.assert_allclose(stopped.weights.sum(), 1.0)


def test_float32_operator_with_float32_basis(spiked):
    a, _, eigenvalues = spiked
    a32 = a.float()
    result = lanczos(lambda v: a32 @ v.float(), N, iters=100, tol=1e-4, seed=8)
    assert result.top_vector.dtype == torch.float32
    assert abs(result.lambda_max - eigenvalues[-1]) <= 1e-5 * abs(eigenvalues[-1])


def test_slq_moments_agree_with_traces_within_sampling_error(spiked):
    """sum_i w_i theta_i^k estimates tr(A^k)/n; the per-vector quadrature is exact for k < 2m."""
    a, _, eigenvalues = spiked
    quadratures = slq_nodes(lambda v: a @ v, N, iters=12, n_vectors=30, seed=9)
    for k in range(1, 5):
        per_vector = np.array([np.sum(w * t ** k) for t, w in quadratures])
        exact = float((eigenvalues ** k).mean())
        stderr = per_vector.std(ddof=1) / np.sqrt(len(per_vector))
        assert abs(per_vector.mean() - exact) <= 4 * stderr + 1e-9 * abs(exact), k
    # and for one vector the quadrature is exactly v^T A^k v / n
    g = torch.Generator().manual_seed(10)
    v = torch.randint(0, 2, (N,), generator=g, dtype=torch.float64) * 2 - 1
    one = lanczos(lambda u: a @ u, N, iters=5, v0=v, tol=None)
    exact = float(v @ torch.linalg.matrix_power(a, 4) @ v) / N
    assert abs(np.sum(one.weights * one.ritz_values ** 4) - exact) < 1e-8 * abs(exact)


def test_slq_density_integrates_to_one_and_finds_the_bulk(spiked):
    a, _, eigenvalues = spiked
    grid, density = slq_density(lambda v: a @ v, N, iters=40, n_vectors=4, seed=11)
    assert grid.shape == density.shape and np.all(density >= 0)
    assert abs(np.trapezoid(density, grid) - 1) < 1e-3
    assert grid[0] <= eigenvalues[0] and grid[-1] >= eigenvalues[-1]
    assert abs(grid[np.argmax(density)]) < 1.0  # the bulk sits near zero
    fixed_grid = np.linspace(-10, 40, 2001)
    grid2, density2 = slq_density(lambda v: a @ v, N, iters=40, n_vectors=4, seed=11,
                                  grid=fixed_grid, sigma=0.3)
    assert np.array_equal(grid2, fixed_grid)
    assert abs(np.trapezoid(density2, grid2) - 1) < 1e-3


def test_bad_arguments():
    with pytest.raises(UsageError):
        lanczos(lambda v: v, 10, which="middle")
    with pytest.raises(UsageError):
        lanczos(lambda v: v, 10, iters=0)
    with pytest.raises(ValueError):
        lanczos(lambda v: v, 10, v0=torch.zeros(10))
    assert warm_start_vector(None, None) is None
