"""The paper's formulas and the fits, against planted answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spectral_sweep import theory
from spectral_sweep.theory import (
    PowerLawFit,
    detect_saturation,
    direction,
    expected_exponent,
    fit_inverse_batch,
    fit_power_law,
    gradient_noise_scale,
    is_adaptive,
    stability_limit,
    verdict,
    what_would_decide,
)

B = 2.0 ** np.arange(4, 12)          # 16 .. 2048, the usual doubling grid
#: A known per-point scatter for the tests of fit_power_law's ``scatter`` path (the single-seed
#: scatter of log lr_max that earlier versions assumed; nothing in the package assumes it now).
SEED_SCATTER = 0.25
R = 2 ** 0.25                        # the search's bracket resolution


def bracket(true_lr, rng):
    """What a bisection search reports: lo = last stable, hi = lo * R, the edge inside [lo, hi]."""
    lo = true_lr * R ** -rng.uniform(size=np.shape(true_lr))
    return lo, lo * R


# ---------------------------------------------------------------- power law

@pytest.mark.parametrize("p", [1.0, 0.5])
def test_exact_power_law(p):
    lr = 3e-3 * B ** p
    f = fit_power_law(B, lr)
    assert f.exponent == pytest.approx(p, abs=1e-6)
    assert f.prefactor == pytest.approx(3e-3, rel=1e-6)
    assert f.ci_low <= p <= f.ci_high and f.ci_high - f.ci_low < 1e-6
    assert verdict(f, p) == "consistent"
    # symmetric brackets around an exact law: the midpoint is exact, the interval is the brackets'
    fb = fit_power_law(B, lr / 1.1, lo=lr / 1.1, hi=lr * 1.1)
    assert fb.exponent == pytest.approx(p, abs=1e-6)
    assert fb.scatter == 0 and 0 < fb.ci_high - fb.ci_low < 0.2
    np.testing.assert_allclose(fb.predict(B), lr, rtol=1e-6)


@pytest.mark.parametrize("p", [1.0, 0.5])
def test_interval_coverage_with_noise_and_brackets(p):
    """Lognormal seed noise + bracket quantisation: the 95% interval holds the truth in about 95%."""
    hits, widths = 0, []
    for seed in range(200):
        rng = np.random.default_rng(seed)
        edge = 2e-3 * B ** p * np.exp(rng.normal(0, 0.12, B.size))
        lo, hi = bracket(edge, rng)
        f = fit_power_law(B, lo, lo, hi)
        hits += f.ci_low <= p <= f.ci_high
        widths.append(f.ci_high - f.ci_low)
    assert 0.85 <= hits / 200 <= 0.995
    assert np.median(widths) < 0.25          # and the interval is not uselessly wide


def test_interval_from_brackets_when_residuals_are_small():
    """Residuals smaller than the brackets explain: the interval comes from bracket widths,
    never narrower, and wider brackets give a wider interval."""
    rng = np.random.default_rng(0)
    lo = 1e-3 * B / R ** 0.5           # midpoints on the line: residuals zero
    hi = lo * R
    f = fit_power_law(B, lo, lo, hi)
    assert f.scatter == 0.0 and f.bracket_sigma == pytest.approx(math.log(R) / math.sqrt(12))
    wide = fit_power_law(B, lo, lo / R, hi * R)
    assert wide.ci_high - wide.ci_low > f.ci_high - f.ci_low
    # residual scatter much larger than brackets dominates
    noisy = 1e-3 * B * np.exp(rng.normal(0, 0.5, B.size))
    g = fit_power_law(B, noisy, noisy / 1.01, noisy * 1.01)
    assert g.scatter > 0.2 and g.ci_high - g.ci_low > 3 * (f.ci_high - f.ci_low)


def test_two_points_and_too_few():
    f = fit_power_law([64, 256], [0.1, 0.4], lo=[0.1, 0.4], hi=[0.1 * R, 0.4 * R])
    assert f.exponent == pytest.approx(1.0, abs=1e-9) and f.n == 2 and f.dof == 0
    # bracket-only interval: sd of the slope = sqrt(2) * log(R)/sqrt(12) / log(4)
    sd = math.sqrt(2) * math.log(R) / math.sqrt(12) / math.log(4)
    assert f.ci_high - f.exponent == pytest.approx(1.959964 * sd, rel=1e-4)
    assert "bracket" in f.note
    g = fit_power_law([64, 256], [0.1, 0.4])
    assert g.exponent == pytest.approx(1.0) and math.isnan(g.ci_low) and verdict(g, 1.0) == "inconclusive"
    with pytest.raises(ValueError, match="at least 2"):
        fit_power_law([64], [0.1])
    with pytest.raises(ValueError):
        fit_power_law([64, 128], [0.1, -0.2])
    with pytest.raises(ValueError, match="both"):
        fit_power_law([64, 128], [0.1, 0.2], lo=[0.1, 0.2])


def test_verdict_is_consistent_inconsistent_or_inconclusive():
    f = fit_power_law(B, 1e-3 * B ** 0.8, 1e-3 * B ** 0.8 / 1.05, 1e-3 * B ** 0.8 * 1.05)
    assert f.ci_high - f.ci_low < 0.5
    assert verdict(f, 1.0) == "inconsistent" and direction(f, 1.0) == "shallower"
    assert verdict(f, 0.5) == "inconsistent" and direction(f, 0.5) == "steeper"
    assert verdict(f, 0.8) == "consistent"


def interval(lo, hi):
    return PowerLawFit(exponent=(lo + hi) / 2, prefactor=1.0, log_prefactor=0.0, ci_low=lo, ci_high=hi,
                       stderr=(hi - lo) / 2 / 1.96, n=3, dof=1, scatter=0.1, bracket_sigma=0.05,
                       quantile=1.96, level=0.95, note="")


@pytest.mark.parametrize("lo, hi, expected, answer", [
    (0.80, 1.20, 1.0, "consistent"), (0.80, 1.20, 0.5, "inconsistent"),
    (0.30, 0.70, 0.5, "consistent"), (0.55, 0.95, 1.0, "inconsistent"),
    (0.45, 1.05, 1.0, "inconclusive"),          # holds both laws
    (0.60, 1.15, 1.0, "inconclusive"),          # +-0.275: wider than +-0.25
    (-0.29, 1.54, 1.0, "inconclusive"),         # the interval that once said "consistent"
    (math.nan, math.nan, 1.0, "inconclusive"),
])
def test_verdict_known_answers(lo, hi, expected, answer):
    assert verdict(interval(lo, hi), expected) == answer


def test_what_would_decide_names_the_remedies_and_stays_silent_when_decided():
    B3 = [8, 16, 32]
    wide = fit_power_law(B3, [0.05, 0.1, 0.2], [0.05, 0.1, 0.2], [0.05 * R, 0.1 * R, 0.2 * R], scatter=0.3)
    advice = what_would_decide(wide, B3)
    assert verdict(wide, 1.0) == "inconclusive"
    assert "batch sizes" in advice and "seeds" in advice and "B range of" in advice
    assert "search.tolerance" not in advice         # the scatter alone is wider than +-0.25
    narrow = fit_power_law(B3, [0.05, 0.1, 0.2], [0.05, 0.1, 0.2], [0.05 * R, 0.1 * R, 0.2 * R], scatter=0.05)
    assert verdict(narrow, 1.0) == "consistent" and what_would_decide(narrow, B3) == ""
    coarse = fit_power_law(B3, [0.05, 0.1, 0.2], [0.05, 0.1, 0.2], [0.1, 0.2, 0.4], scatter=0.05)
    assert "search.tolerance=" in what_would_decide(coarse, B3)


def simulated_sweeps(n, tau, assumed, batch_sizes=(8, 16, 32), seed=0):
    """Sweeps with a planted exponent (1 or 1/2 in turn): each true edge is c B^p with log-normal
    seed scatter tau, and the search reports it as a bracket [lo, lo * 2^(1/4)] on a lattice
    with a random offset, as bisection from an arbitrary start does. Returns the fits."""
    rng = np.random.default_rng(seed)
    B = np.asarray(batch_sizes, float)
    out = []
    for i in range(n):
        p = (1.0, 0.5)[i % 2]
        edge = 0.05 * (B / B[0]) ** p * np.exp(rng.normal(0.0, tau, B.size))
        offset = rng.uniform(0.0, math.log(R), B.size)
        lo = np.exp(offset + np.floor((np.log(edge) - offset) / math.log(R)) * math.log(R))
        out.append((p, fit_power_law(B, lo, lo, lo * R, scatter=assumed)))
    return out


def rates(fits):
    coverage = np.mean([f.ci_low <= p <= f.ci_high for p, f in fits])
    decisive = np.mean([verdict(f, p) != "inconclusive" for p, f in fits])
    wrong = np.mean([verdict(f, 1.5 - p) == "consistent" for p, f in fits])   # called for the other law
    return coverage, decisive, wrong


@pytest.mark.parametrize("batch_sizes", [(16, 32, 64), (8, 16, 32, 64, 128)])
def test_the_interval_is_calibrated_at_the_measured_scatter(batch_sizes):
    """1000 simulated sweeps at the default tolerance with the seed scatter measured on the
    quickstart: the 95% interval covers the planted exponent in 90-98% of them."""
    coverage, _, wrong = rates(simulated_sweeps(1000, SEED_SCATTER, SEED_SCATTER, batch_sizes))
    assert 0.90 <= coverage <= 0.98, coverage
    assert wrong <= 0.05, wrong


def test_the_quickstart_design_is_decisive_at_the_measured_scatter():
    """Five batch sizes over a 16x range (the quickstart): at least 80% of verdicts decisive."""
    _, decisive, _ = rates(simulated_sweeps(1000, SEED_SCATTER, SEED_SCATTER, (8, 16, 32, 64, 128)))
    assert decisive >= 0.80, decisive


def test_three_batch_sizes_over_4x_decide_when_the_scatter_allows_and_say_why_when_not():
    """The interval has the power that the data has: with a scatter of 0.1 (a longer budget or
    averaged seeds) three batch sizes over 4x are decisive in >= 80% of sweeps; at the measured
    0.25 they cannot be (the interval is +-0.5 wide), and the advice says what would decide."""
    _, decisive, _ = rates(simulated_sweeps(1000, 0.1, 0.1, (16, 32, 64)))
    assert decisive >= 0.80, decisive
    fits = simulated_sweeps(200, SEED_SCATTER, SEED_SCATTER, (16, 32, 64))
    _, decisive, _ = rates(fits)
    assert decisive < 0.05
    advice = what_would_decide(fits[0][1], [16, 32, 64])
    assert "B range of" in advice and "seeds at each" in advice
    span = float(advice.split("a B range of ")[1].split("x")[0])
    assert 8 < span < 40           # the quickstart's 16x is of that order


def test_noisier_sweeps_than_assumed_are_caught_by_the_residuals():
    """Five batch sizes, true scatter 2x the assumed: the chi^2 check widens enough intervals to
    keep coverage from collapsing (it would be ~70% with the assumed scatter taken as true)."""
    fits = simulated_sweeps(400, 2 * SEED_SCATTER, SEED_SCATTER, batch_sizes=(8, 16, 32, 64, 128))
    coverage, _, _ = rates(fits)
    assert coverage >= 0.8, coverage
    assert any("reject" in f.note for _, f in fits)


def test_expected_exponent():
    for name in ("sgd", "SGD", "nesterov", "lanczos_sgd", "sgd_momentum"):
        assert expected_exponent(name) == 1.0
    for name in ("adam", "adamw", "AdamW", "lanczos_adam"):
        assert expected_exponent(name) == 0.5
    with pytest.raises(ValueError, match="no scaling law"):
        expected_exponent("lbfgs")


def test_is_adaptive_is_the_one_rule_for_adam_like_names():
    assert theory.ADAPTIVE_OPTIMIZERS == ("adam", "adamw")
    for name in ("adam", "adamw", "AdamW", "Adam", "lanczos_adam"):     # config and torch class names
        assert is_adaptive(name)
    for name in ("sgd", "SGD", "lanczos_sgd", "nesterov"):
        assert not is_adaptive(name)


# ---------------------------------------------------------------- saturation

@pytest.mark.parametrize("p", [1.0, 0.5])
@pytest.mark.parametrize("b0", [128.0, 256.0, 512.0])
def test_saturation_found_and_fit_below_recovers_law(p, b0):
    exact = 1e-3 * np.minimum(B, b0) ** p
    assert detect_saturation(B, exact) == b0
    assert detect_saturation(B, exact, exponent=p) == b0
    f = fit_power_law(B[B < b0], exact[B < b0])
    assert f.exponent == pytest.approx(p, abs=1e-6)
    # with bracket quantisation and a little seed noise: within one grid step, over many seeds
    found = []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        lo, hi = bracket(exact * np.exp(rng.normal(0, 0.03, B.size)), rng)
        s = detect_saturation(B, lo, lo, hi, exponent=p)
        found.append(s)
        assert s is not None and abs(math.log2(s / b0)) <= 1, (seed, s)
        below = B < s
        fb = fit_power_law(B[below], lo[below], lo[below], hi[below])
        assert fb.ci_low - 0.1 <= p <= fb.ci_high + 0.1
    assert np.mean(np.array(found) == b0) >= 0.6          # mostly exactly right


@pytest.mark.parametrize("p", [1.0, 0.5])
def test_no_saturation_without_plateau(p):
    assert detect_saturation(B, 1e-3 * B ** p) is None
    flagged = 0
    for seed in range(100):
        rng = np.random.default_rng(seed)
        lo, hi = bracket(1e-3 * B ** p * np.exp(rng.normal(0, 0.03, B.size)), rng)
        flagged += detect_saturation(B, lo, lo, hi, exponent=p) is not None
    assert flagged == 0
    # a plateau only at the very last point cannot be told from noise: not flagged either
    lr = 1e-3 * np.minimum(B, B[-1]) ** p
    assert detect_saturation(B, lr) is None


def test_saturation_edge_cases():
    assert detect_saturation([64, 128], [0.1, 0.1]) is None           # too few points
    assert detect_saturation(B, np.full(B.size, 0.1)) is None         # never grew: no growth regime
    # repeats of a batch size are averaged
    reps = np.repeat(B, 2)
    assert detect_saturation(reps, np.repeat(1e-3 * np.minimum(B, 256.0), 2)) == 256
    # a drop after the peak also counts as having stopped growing
    lr = 1e-3 * B.copy()
    lr[B > 256] = 0.256 / 2
    assert detect_saturation(B, lr) == 256


# ---------------------------------------------------------------- spectrum

def test_fit_inverse_batch_recovers_planted_values():
    rng = np.random.default_rng(1)
    Bs = np.repeat([32, 64, 128, 256, 512, 1024], 5).astype(float)
    lam = 12.0 + 3000.0 / Bs
    f = fit_inverse_batch(Bs, lam)
    assert f.lambda_full == pytest.approx(12.0) and f.kappa == pytest.approx(3000.0)
    assert f.b_star == pytest.approx(250.0)
    noisy = lam * (1 + 0.05 * rng.normal(size=lam.size))
    g = fit_inverse_batch(Bs, noisy)
    assert g.lambda_full_low < 12.0 < g.lambda_full_high
    assert g.kappa_low < 3000.0 < g.kappa_high
    assert g.b_star_low < 250.0 < g.b_star_high
    np.testing.assert_allclose(g.predict([64.0]), g.lambda_full + g.kappa / 64)
    with pytest.raises(ValueError):
        fit_inverse_batch([64, 64, 64], [1.0, 2.0, 3.0])


def test_stability_limit_formulas():
    assert stability_limit(10.0, "sgd") == pytest.approx(0.2)
    assert stability_limit(10.0, "sgd", momentum=0.9) == pytest.approx(0.38)
    assert stability_limit(10.0, "sgd", momentum=0.9, nesterov=True) == pytest.approx(3.8 / 28.0)
    assert stability_limit(10.0, "sgd", nesterov=True) == pytest.approx(0.2)    # no momentum: plain SGD
    np.testing.assert_allclose(stability_limit(np.array([1.0, 4.0]), "sgd"), [2.0, 0.5])
    assert stability_limit(0.0, "sgd") == math.inf and stability_limit(-3.0, "sgd") == math.inf
    np.testing.assert_array_equal(stability_limit(np.array([0.0, -1.0, 2.0]), "adam", 0.0), [math.inf, math.inf, 1.0])
    # Cohen et al. 2022: (2 + 2 beta1) / ((1 - beta1) lambda) = 38 / lambda for beta1 = 0.9
    assert stability_limit(38.0, "adam", 0.9) == pytest.approx(1.0)
    assert stability_limit(38.0, "AdamW", 0.9, nesterov=True) == pytest.approx(1.0)
    assert stability_limit(10.0, "adam", 0.0) == pytest.approx(0.2)     # beta1 = 0 is RMSprop-like: 2/lambda
    # read backwards: the largest curvature a given lr is stable at
    assert stability_limit(0.38, "sgd", 0.9) == pytest.approx(10.0)
    with pytest.raises(ValueError):
        stability_limit(1.0, "sgd", momentum=1.0)
    with pytest.raises(ValueError):
        stability_limit(1.0, "adam", momentum=-0.1)


# The linear iterations the limits describe, on a diagonal quadratic 0.5 sum_i c_i x_i^2 from x = 1,
# written as torch's optimizers write them.

def sgd_iterates(curvatures, lr, momentum=0.0, nesterov=False, steps=400):
    """max |x_i| after ``steps`` of torch.optim.SGD's update (buf = m buf + g; step lr buf, or
    lr (g + m buf) with Nesterov)."""
    x, buf = np.ones_like(curvatures), np.zeros_like(curvatures)
    for _ in range(steps):
        g = curvatures * x
        buf = momentum * buf + g
        x = x - lr * (g + momentum * buf if nesterov else buf)
    return float(np.abs(x).max())


def adam_iterates(curvatures, preconditioner, lr, beta1, steps=400):
    """max |x_i| after ``steps`` of Adam's update with its preconditioner P frozen (the second
    moments change slowly): m = beta1 m + (1 - beta1) g, x -= lr m / P. Bias correction only
    rescales the first steps (its factor tends to 1), so it is left out."""
    x, m = np.ones_like(curvatures), np.zeros_like(curvatures)
    for _ in range(steps):
        m = beta1 * m + (1 - beta1) * curvatures * x
        x = x - lr * m / preconditioner
    return float(np.abs(x).max())


CURVATURES = np.array([0.3, 2.0, 5.0])


@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.5, False), (0.9, False),
                                                (0.5, True), (0.9, True)])
def test_sgd_limits_separate_convergence_from_divergence(momentum, nesterov):
    limit = stability_limit(CURVATURES.max(), "sgd", momentum, nesterov)
    assert sgd_iterates(CURVATURES, 0.98 * limit, momentum, nesterov) < 1e-3
    assert sgd_iterates(CURVATURES, 1.02 * limit, momentum, nesterov) > 1e3


def test_nesterov_needs_its_own_limit():
    # the heavy-ball limit 2 (1 + m) / lambda is far too generous for Nesterov momentum
    heavy = stability_limit(CURVATURES.max(), "sgd", 0.9)
    assert sgd_iterates(CURVATURES, 0.98 * heavy, 0.9) < 1e-3
    assert sgd_iterates(CURVATURES, 0.5 * heavy, 0.9, nesterov=True) > 1e3


@pytest.mark.parametrize("beta1", [0.0, 0.5, 0.9])
def test_adam_limit_on_the_preconditioned_diagonal_quadratic(beta1):
    curvatures, preconditioner = np.array([1.0, 4.0, 9.0]), np.array([0.5, 1.0, 1.5])
    limit = stability_limit((curvatures / preconditioner).max(), "adam", beta1)   # top of P^-1 H: 6
    assert adam_iterates(curvatures, preconditioner, 0.98 * limit, beta1) < 1e-3
    assert adam_iterates(curvatures, preconditioner, 1.02 * limit, beta1) > 1e3
    # the raw Hessian's top (9) would predict a limit 2/3 as large: the iteration is still stable there
    raw = stability_limit(curvatures.max(), "adam", beta1)
    assert adam_iterates(curvatures, preconditioner, 1.3 * raw, beta1) < 1e-3


def test_gradient_noise_scale_recovers_planted_values():
    g2, tr = 2.5, 400.0

    def expect(b):
        return g2 + tr / b

    ns = gradient_noise_scale(32, expect(32), 512, expect(512))
    assert ns.grad_sqnorm == pytest.approx(g2) and ns.trace_sigma == pytest.approx(tr)
    assert ns.b_noise == pytest.approx(160.0)
    # repeats: averaged before dividing, so zero-mean noise on each measurement averages out
    rng = np.random.default_rng(2)
    small = expect(32) + rng.normal(0, 0.5, 20000)
    big = expect(512) + rng.normal(0, 0.05, 20000)
    ns = gradient_noise_scale(32, small, 512, big)
    assert ns.grad_sqnorm == pytest.approx(g2, rel=0.02) and ns.trace_sigma == pytest.approx(tr, rel=0.02)
    with pytest.raises(ValueError):
        gradient_noise_scale(512, 1.0, 32, 2.0)


def test_theory_imports_no_torch():
    import subprocess
    import sys
    code = "import sys, spectral_sweep.theory; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    assert theory.DEFAULT_RESOLUTION == pytest.approx(R)


def test_points_that_average_seeds_carry_less_scatter():
    """A point that is the mean of k seeds has scatter / sqrt(k): five seeds narrow the scatter
    part of the interval by sqrt(5), and one value per point is accepted."""
    B5 = [8, 16, 32, 64, 128]
    lr = [0.01 * b for b in B5]
    one = fit_power_law(B5, lr, lr, [x * R for x in lr], scatter=0.25)
    five = fit_power_law(B5, lr, lr, [x * R for x in lr], scatter=np.full(5, 0.25 / math.sqrt(5)))
    bracket2 = math.log(R) ** 2 / 12
    ratio = (five.ci_high - five.ci_low) / (one.ci_high - one.ci_low)
    assert ratio == pytest.approx(math.sqrt((bracket2 + 0.25 ** 2 / 5) / (bracket2 + 0.25 ** 2)), rel=1e-6)
    assert five.scatter == pytest.approx(0.25 / math.sqrt(5))


# ---------------------------------------------------------------- saturation from measured errors

@pytest.mark.parametrize("p", [1.0, 0.5])
def test_measured_saturation_is_found_at_its_knee(p):
    """Planted plateaus with 0.1 measured noise per point are found, nearly always at the knee."""
    for b0 in (128.0, 512.0):
        found = []
        for seed in range(200):
            rng = np.random.default_rng(seed)
            lr = 1e-3 * np.minimum(B, b0) ** p * np.exp(rng.normal(0, 0.1, B.size))
            found.append(detect_saturation(B, lr, se=np.full(B.size, 0.1)))
        hits = np.array([s == b0 for s in found])
        near = np.array([s is not None and abs(math.log2(s / b0)) <= 1 for s in found])
        assert hits.mean() >= 0.75 and near.mean() >= 0.85, (b0, hits.mean(), near.mean())


@pytest.mark.parametrize("design", [B, np.array([8.0, 16, 32, 64]), np.array([128.0, 256, 512])])
def test_measured_straight_line_is_rarely_called_saturated(design):
    """The knee test is Bonferroni-corrected: pure power laws with measured noise are flagged in
    at most 5% of sweeps, whatever the exponent (a shallow law is not a plateau)."""
    for p in (1.0, 0.5, 0.3):
        flagged = sum(detect_saturation(design, 1e-3 * design ** p * np.exp(
            np.random.default_rng(seed).normal(0, 0.15, design.size)), se=np.full(design.size, 0.15))
            is not None for seed in range(400))
        assert flagged / 400 <= 0.05, (p, flagged)


def test_measured_saturation_reads_the_intervals_not_the_points():
    """The quickstart run that bisection-era rules called saturated from B=16: lr_max 0.123, 0.181,
    0.194 at B = 16, 32, 64, each known to +-0.27 in log. Its rise from 16 to 64 is significant,
    and one flat step cannot be told from a bend: no saturation. The same shape known 4x better
    is a plateau from B=32."""
    b = np.array([8.0, 16, 32, 64])
    lr = np.array([0.0912, 0.123, 0.181, 0.194])
    se = np.array([0.104, 0.137, 0.128, 0.136])
    assert detect_saturation(b, lr, se=se) is None
    tight = np.array([0.02, 0.04, 0.08, 0.16, 0.17, 0.165])
    assert detect_saturation(2.0 ** np.arange(3, 9), tight, se=np.full(6, 0.03)) == 64
    with pytest.raises(ValueError, match="not both"):
        detect_saturation(b, lr, lr, lr * 1.1, se=se)
    assert detect_saturation(b[:3], lr[:3], se=se[:3], min_plateau=3) is None   # no knee to try


@pytest.mark.parametrize("law", [1.0, 0.5])
def test_compare_laws_finds_a_planted_b_noise_and_prefers_the_law_that_made_the_points(law):
    """McCandlish's saturating form (and its square-root analogue for Adam) against the free power law."""
    rng = np.random.default_rng(4)
    B = np.array([32, 64, 128, 256, 512, 1024, 2048.0])
    se = np.full(B.size, 0.05)
    saturating = 0.01 * (B / (B + 300)) ** law * np.exp(rng.normal(0, 0.05, B.size))
    c = theory.compare_laws(B, saturating, se, law)
    assert c.preferred == "saturating" and c.b_noise_lo < 300 < c.b_noise_hi
    assert c.lr_inf == pytest.approx(0.01, rel=0.2)
    power = 0.001 * B ** (0.6 * law) * np.exp(rng.normal(0, 0.05, B.size))
    assert theory.compare_laws(B, power, se, law).preferred == "power law"
    pure = 0.001 * B ** law * np.exp(rng.normal(0, 0.05, B.size))         # the law itself: B_noise unbounded
    c = theory.compare_laws(B, pure, se, law)
    assert c.preferred in ("either", "power law") and c.b_noise_hi > 100 * B.max()
    with pytest.raises(ValueError, match="3 batch sizes"):
        theory.compare_laws(B[:2], power[:2], se[:2], law)
