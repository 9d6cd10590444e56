"""The paper's formulas and the fits that test them (pure numpy/scipy; no model code, no torch).

Granziol, Zohren & Roberts (JMLR 2022) predict that the maximal stable learning rate grows as a
power of the batch size B, ``lr_max(B) ~ B^p`` with p = 1 for SGD and p = 1/2 for Adam, until it
saturates at the curvature limit of the full-data Hessian. Their explanation: the top eigenvalue
of the mini-batch Hessian is ``lambda_max(B) ~ lambda_full + kappa / B`` and the stability limit of
the lr is inversely proportional to it.

Functions
---------
fit_power_law          log-log fit of lr_max against B, with an honest confidence interval
detect_saturation      the batch size from which lr_max stops growing
verdict                consistent / inconsistent / inconclusive: can the interval tell 1 from 1/2?
what_would_decide      for an inconclusive fit: more batch sizes, a wider range, a finer tolerance, seeds
is_adaptive            whether an optimizer is Adam-like (the one place that decides)
expected_exponent      1.0 for SGD-like optimizers, 0.5 for Adam-like ones
fit_inverse_batch      lambda_max(B) = lambda_full + kappa / B, and B* = kappa / lambda_full
stability_limit        the largest stable lr for a top curvature (or, read backwards, the largest
                       stable curvature for an lr): SGD 2 (1 + m) / lambda, Nesterov
                       2 (1 + m) / ((1 + 2 m) lambda), Adam (2 + 2 beta1) / ((1 - beta1) lambda)
gradient_noise_scale   McCandlish et al. (2018) unbiased estimators of |G|^2, tr(Sigma), B_noise
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

#: Default bracket resolution of the lr search (``search.TOLERANCE``): lr_max is known to a factor.
DEFAULT_RESOLUTION = 2 ** 0.25


#: The two laws under test; a verdict must be able to tell them apart.
LAWS = (1.0, 0.5)
#: The widest interval (half-width) that still decides anything.
DECISIVE_HALF_WIDTH = 0.25

__all__ = [
    "ADAPTIVE_OPTIMIZERS",
    "DEFAULT_RESOLUTION",
    "InverseBatchFit",
    "NoiseScale",
    "PowerLawFit",
    "detect_saturation",
    "expected_exponent",
    "fit_inverse_batch",
    "fit_power_law",
    "gradient_noise_scale",
    "is_adaptive",
    "stability_limit",
    "verdict",
    "what_would_decide",
]


# --------------------------------------------------------------------------------------------
# power law lr_max = prefactor * B^exponent
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PowerLawFit:
    """``lr = prefactor * B ** exponent``, fitted in log-log space.

    exponent            the fitted slope of log lr against log B
    prefactor           lr at B = 1 on the fitted line (``log_prefactor`` is its natural log)
    ci_low, ci_high     the ``level`` confidence interval of the exponent (NaN when unknown)
    stderr              the standard error of the exponent (NaN when unknown)
    n                   number of points fitted (distinct batch sizes, or repeats counted apart)
    dof                 n - 2, the degrees of freedom of the residual scatter
    scatter             extra log-space scatter beyond the bracket uncertainty (std, natural log)
    bracket_sigma       rms bracket uncertainty of a point (std, natural log; 0 without brackets)
    quantile            the t (or, for n == 2, normal) quantile that made the interval
    level               confidence level of the interval
    note                how the interval was made, in words
    """

    exponent: float
    prefactor: float
    log_prefactor: float
    ci_low: float
    ci_high: float
    stderr: float
    n: int
    dof: int
    scatter: float
    bracket_sigma: float
    quantile: float
    level: float
    note: str
    measured: bool = False    # points carried their own measured errors (search=adaptive)

    def predict(self, batch_sizes):
        """lr on the fitted line at ``batch_sizes``."""
        return self.prefactor * np.asarray(batch_sizes, dtype=float) ** self.exponent


def _positive_finite(name, a):
    a = np.asarray(a, dtype=float).ravel()
    if not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise ValueError(f"{name} must be positive and finite; got {a.tolist()}")
    return a


def _points(batch_sizes, lrs, lo, hi):
    """Log-space points (x, y) and the std of each point's bracket uncertainty."""
    x = np.log(_positive_finite("batch_sizes", batch_sizes))
    y_lr = _positive_finite("lrs", lrs)
    if y_lr.size != x.size:
        raise ValueError(f"batch_sizes and lrs differ in length ({x.size} vs {y_lr.size})")
    if (lo is None) != (hi is None):
        raise ValueError("give both bracket ends lo and hi, or neither")
    if lo is None:
        return x, np.log(y_lr), np.zeros_like(x)
    lo = _positive_finite("lo", lo)
    hi = _positive_finite("hi", hi)
    if lo.size != x.size or hi.size != x.size:
        raise ValueError("lo and hi must have one value per batch size")
    if np.any(hi < lo):
        raise ValueError("each bracket needs lo <= hi")
    # The threshold lies somewhere in [lo, hi]; uniform in log space, its mean is the geometric
    # midpoint and its standard deviation is log(hi/lo) / sqrt(12).
    y = 0.5 * (np.log(lo) + np.log(hi))
    s = (np.log(hi) - np.log(lo)) / math.sqrt(12.0)
    return x, y, s


def _wls(x, y, w):
    """Weighted least squares of y = a + b x; returns (a, b, inverse normal matrix, residuals)."""
    X = np.column_stack([np.ones_like(x), x])
    A = X.T @ (w[:, None] * X)
    cov = np.linalg.inv(A)
    beta = cov @ (X.T @ (w * y))
    return beta[0], beta[1], cov, y - X @ beta


def fit_power_law(batch_sizes, lrs, lo=None, hi=None, level: float = 0.95,
                  scatter: float = 0.0, se=None) -> PowerLawFit:
    """Fit ``lr = prefactor * B^exponent`` by least squares on log lr against log B.

    Points. Without brackets each point is ``log lr``. With brackets ``[lo, hi]`` (last stable,
    first diverged) the true threshold is only known to lie inside the bracket, so the point is
    the geometric midpoint ``sqrt(lo * hi)`` (the unbiased choice for a threshold uniform in log
    space; ``lrs``, normally ``lo``, is then only checked for length) with a known standard
    deviation ``sigma_i = log(hi / lo) / sqrt(12)``.

    Uncertainty. Each point's error is its bracket error plus an unknown extra scatter ``tau``
    (seed-to-seed noise, the law being only approximate). ``tau^2`` is estimated by the
    Paule-Mandel rule: the value for which the weighted residual chi^2 with weights
    ``1 / (sigma_i^2 + tau^2)`` equals its expectation n - 2, or 0 when the residuals are already
    smaller than the brackets explain. So the interval is never narrower than the brackets allow,
    and widens with the residual scatter when that is larger; without brackets this is ordinary
    least squares. The interval is ``exponent +- t_{n-2} * stderr`` (Student t, n - 2 dof).

    Known scatter. ``scatter`` > 0 is ``tau`` known from elsewhere, one value or one per point. It
    is used as it is, with a normal quantile, unless the residuals reject it (their chi^2 with
    weights ``1 / (sigma_i^2 + scatter^2)`` exceeds its 95% point): then the Paule-Mandel estimate
    replaces it.

    Measured errors. ``se``, each point's own standard error of log lr (``edge.EdgeFit.log_se``),
    replaces brackets: weights ``1 / se^2``, a normal quantile, plus the Paule-Mandel scatter
    where the residuals reject those errors (chi^2 above its 95% point).

    n == 2: the line goes through both points and the exponent is exact; the interval then comes
    from the bracket uncertainty (and ``scatter``) alone, with a normal quantile (NaN if there are
    neither brackets nor scatter). n < 2 raises ``ValueError``.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1); got {level}")
    x, y, s = _points(batch_sizes, lrs, lo, hi)
    measured = se is not None
    s = _measured_errors(se, x, lo) if measured else s
    n = x.size
    if n < 2:
        raise ValueError(f"a power-law fit needs at least 2 points; got {n}")
    if np.ptp(x) == 0:
        raise ValueError("a power-law fit needs at least 2 distinct batch sizes")
    s2, floor2 = s ** 2, _known_scatter2(scatter, x)
    if n == 2:
        a, b, var_b, q, tau2, note = _exact_line(x, y, s2, floor2, level)
    elif measured and not np.any(floor2 > 0):
        a, b, var_b, q, tau2, note = _measured_fit(x, y, s2, level)
    elif not np.any(s2 > 0) and not np.any(floor2 > 0):
        a, b, var_b, q, tau2, note = _ordinary_fit(x, y, level)
    else:
        a, b, var_b, q, tau2, note = _weighted_fit(x, y, s2, floor2, level)

    se = math.sqrt(var_b) if np.isfinite(var_b) else math.nan
    half = q * se
    return PowerLawFit(exponent=float(b), prefactor=float(math.exp(a)), log_prefactor=float(a),
                       ci_low=float(b - half), ci_high=float(b + half), stderr=float(se), n=int(n),
                       dof=int(n - 2), scatter=float(np.sqrt(np.mean(tau2))),
                       bracket_sigma=float(math.sqrt(np.mean(s ** 2))), quantile=float(q),
                       level=float(level), note=note, measured=measured)


# Each fit below returns (log prefactor, exponent, variance of the exponent, quantile, tau^2, note).

def _exact_line(x, y, s2, floor2, level):
    """Two points: the line through them; the slope's variance is (var1 + var2) / dx^2."""
    a, b, _, _ = _wls(x, y, np.ones(x.size))
    if np.any(s2 > 0) or np.any(floor2 > 0):
        var_b = float((s2 + floor2).sum() / (x[1] - x[0]) ** 2)
        q = stats.norm.ppf(0.5 + level / 2)
        note = "2 points: exact line; interval from bracket widths and known scatter (normal quantile)"
    else:
        var_b, q = math.nan, math.nan
        note = "2 points without brackets: exact line, no interval"
    return a, b, var_b, q, floor2, note


def _ordinary_fit(x, y, level):
    """No brackets and no known scatter: ordinary least squares, t interval from the residuals."""
    dof = x.size - 2
    a, b, cov, r = _wls(x, y, np.ones(x.size))
    tau2 = float(r @ r) / dof
    q = stats.t.ppf(0.5 + level / 2, dof)
    return a, b, tau2 * cov[1, 1], q, tau2, "ordinary least squares; t interval from residual scatter"


def _excess(x, y, s2, tau2, dof) -> float:
    """Weighted residual chi^2 minus its expectation, for weights 1 / (s2 + tau2)."""
    w = 1.0 / (s2 + tau2)
    _, _, _, r = _wls(x, y, w)
    return float(w @ r ** 2) - dof


def _paule_mandel(x, y, s2, dof):
    """The extra scatter tau^2 >= 0 at which the weighted chi^2 equals its expectation, and a note."""
    if _excess(x, y, s2, 0.0, dof) <= 0:
        return 0.0, "residuals within bracket widths"
    top = float(np.var(y)) * x.size + float(s2.max()) + 1.0
    while _excess(x, y, s2, top, dof) > 0:
        top *= 4
    tau2 = optimize.brentq(lambda t2: _excess(x, y, s2, t2, dof), 0.0, top, xtol=1e-14, rtol=1e-10)
    return tau2, "bracket widths + residual scatter (Paule-Mandel)"


def _weighted_fit(x, y, s2, floor2, level):
    """Brackets and/or a known scatter: Paule-Mandel tau^2, or the known scatter unless the
    residuals reject it (chi^2 test at 5%)."""
    dof = x.size - 2
    s2 = np.maximum(s2, 1e-12 * max(float(s2.max()), float(floor2.max()), 1e-300))  # no infinite weights
    tau2, note = _paule_mandel(x, y, s2, dof)
    if np.any(floor2 > 0):
        shown = float(np.sqrt(floor2.mean()))
        if _excess(x, y, s2, floor2, dof) + dof > stats.chi2.ppf(0.95, dof):
            note += f": residuals reject the known seed scatter {shown:.3g}; normal interval"
        else:
            tau2 = floor2
            note = f"bracket widths + known seed scatter {shown:.3g} (residuals agree); normal interval"
        q = stats.norm.ppf(0.5 + level / 2)
    else:
        q = stats.t.ppf(0.5 + level / 2, dof)
        note += "; t interval"
    a, b, cov, _ = _wls(x, y, 1.0 / (s2 + tau2))
    return a, b, cov[1, 1], q, tau2, note


def _known_scatter2(scatter, x):
    floor2 = np.broadcast_to(np.asarray(scatter, dtype=float) ** 2, x.shape).copy()
    if not (np.all(np.isfinite(floor2)) and np.all(floor2 >= 0)):
        raise ValueError(f"scatter must be finite stds >= 0; got {scatter}")
    return floor2


def _measured_errors(se, x, lo):
    """The points' own standard errors of log lr, checked: one per point, instead of brackets."""
    if lo is not None:
        raise ValueError("give brackets (lo, hi) or measured errors (se), not both")
    s = _positive_finite("se", se)
    if s.size != x.size:
        raise ValueError("se must have one value per batch size")
    return s


def _measured_fit(x, y, s2, level):
    """Each point's own measured error: weights 1 / se^2 and a normal quantile, plus the
    Paule-Mandel scatter where the residuals reject the errors (chi^2 test at 5%)."""
    dof = x.size - 2
    tau2, note = 0.0, "weighted by each point's measured error; residuals agree (chi^2); normal interval"
    if _excess(x, y, s2, 0.0, dof) + dof > stats.chi2.ppf(0.95, dof):
        tau2, _ = _paule_mandel(x, y, s2, dof)
        note = (f"weighted by each point's measured error; residuals reject it (chi^2), so extra "
                f"scatter {math.sqrt(tau2):.3g} is added (Paule-Mandel); normal interval")
    a, b, cov, _ = _wls(x, y, 1.0 / (s2 + tau2))
    return a, b, cov[1, 1], stats.norm.ppf(0.5 + level / 2), np.full_like(x, tau2), note


def verdict(fit: PowerLawFit, expected: float, laws=LAWS, max_half_width: float = DECISIVE_HALF_WIDTH) -> str:
    """``"consistent"`` (``expected`` inside the interval), ``"inconsistent"`` (outside it), or
    ``"inconclusive"``: the interval is unknown, wider than +-``max_half_width``, or holds every law
    in ``laws`` (1 and 1/2), so it cannot tell the laws apart. Which way an inconsistent exponent
    leans is ``direction``."""
    lo, hi = fit.ci_low, fit.ci_high
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "inconclusive"
    if (hi - lo) / 2 > max_half_width + 1e-12 or all(lo <= law <= hi for law in laws):
        return "inconclusive"
    return "consistent" if lo <= expected <= hi else "inconsistent"


def direction(fit: PowerLawFit, expected: float) -> str:
    """``"steeper"`` or ``"shallower"`` than ``expected`` (by the point estimate)."""
    return "steeper" if fit.exponent > expected else "shallower"


def what_would_decide(fit: PowerLawFit, batch_sizes, tolerance: float = DEFAULT_RESOLUTION,
                      max_half_width: float = DECISIVE_HALF_WIDTH) -> str:
    """For an inconclusive fit: what would shrink its interval to +-``max_half_width``, in words.

    The slope's standard error is sigma / sqrt(Sxx), sigma^2 = bracket variance + scatter^2 and
    Sxx the spread of log B. So the interval shrinks as 1/sqrt(n) with more batch sizes (or seeds
    per batch size, which average the scatter and the brackets alike), as 1/log-range with a wider
    range of B, and with a finer tolerance only as far as the bracket part goes.
    """
    half = fit.quantile * fit.stderr
    if not np.isfinite(half):
        return "needs at least 3 batch sizes, or brackets, for an interval"
    if half <= max_half_width:
        return ""
    factor = half / max_half_width
    B = np.asarray(batch_sizes, dtype=float)
    span = float(B.max() / B.min())
    ideas = [f"{math.ceil(factor ** 2 * fit.n)} batch sizes over the same range, or "
             f"{math.ceil(factor ** 2)} seeds at each",
             f"a B range of {span ** factor:.3g}x instead of {span:.3g}x"]
    bracket2, scatter2 = fit.bracket_sigma ** 2, fit.scatter ** 2
    allowed2 = (bracket2 + scatter2) / factor ** 2 - scatter2
    if fit.measured and allowed2 > 0:
        ideas.append(f"search.precision={1.96 * math.sqrt(allowed2):.2g} (each point's interval half-width "
                     "in log lr, about 4x the trials per halving)")
    elif bracket2 > 0 and allowed2 > 0:
        ideas.append(f"search.tolerance={math.exp(math.sqrt(12 * allowed2)):.3g} "
                     f"(now {tolerance:.3g})")
    return f"interval +-{half:.2f} > +-{max_half_width:g}; to decide: " + "; or ".join(ideas)


_SGD_LIKE = ("sgd", "nesterov", "momentum", "heavy_ball", "heavyball", "learner", "lars")

#: The Adam-like optimizers: a name containing one of these is adaptive (adam, adamw, AdamW,
#: lanczos_adam, and torch's class names Adam and AdamW).
ADAPTIVE_OPTIMIZERS = ("adam", "adamw")


def is_adaptive(optimizer: str) -> bool:
    """Whether ``optimizer`` (a config name or an optimizer class name) is Adam-like: its lr
    meets the preconditioned Hessian and its law is the square root. The one place that decides."""
    name = str(optimizer).lower()
    return any(kind in name for kind in ADAPTIVE_OPTIMIZERS)


def expected_exponent(optimizer_name: str) -> float:
    """The exponent of the law under test: 0.5 for anything Adam-like (``is_adaptive``), 1.0 for
    SGD-like ones (sgd, nesterov, lanczos_sgd, momentum, ...). Unknown names raise ``ValueError``."""
    if is_adaptive(optimizer_name):
        return 0.5
    if any(k in str(optimizer_name).lower() for k in _SGD_LIKE):
        return 1.0
    raise ValueError(f"no scaling law known for optimizer '{optimizer_name}' "
                     f"(SGD-like names contain one of {', '.join(_SGD_LIKE)}; Adam-like ones 'adam')")


# --------------------------------------------------------------------------------------------
# saturation
# --------------------------------------------------------------------------------------------

def detect_saturation(batch_sizes, lrs, lo=None, hi=None, *, exponent: float | None = None,
                      resolution: float | None = None, tolerance: float | None = None,
                      min_plateau: int = 2, se=None, level: float = 0.95) -> int | None:
    """The batch size from which lr_max stops growing, or None.

    With ``se`` (each point's standard error of log lr, from the adaptive search) it is a test of
    curvature, ``_knee_by_likelihood``; ``exponent``, ``resolution`` and ``tolerance`` are unused:
    a shallow law is the verdict's finding, not a plateau.

    Brackets or exact points: rule (in log space; repeated batch sizes are first averaged geometrically; with brackets
    each point is the geometric midpoint of its bracket):

    * ``resolution`` r is the factor to which one lr_max is known: the median bracket ratio
      hi/lo when brackets are given, else ``DEFAULT_RESOLUTION`` = 2^(1/4). ``tolerance`` (the
      largest rise still called flat) defaults to r^1.5: two bracket midpoints of the same
      threshold differ by up to r from quantisation alone; the extra r^0.5 absorbs seed noise.
    * Saturation starts at the smallest batch size B_k (not the smallest of all: lr_max must have
      had room to grow before it) such that
        1. lr_max grew up to it: the least-squares slope over B_0..B_k is positive;
        2. it is flat from there on: no larger batch size has lr_max above ``tolerance`` x
           lr_max(B_k) (a drop also counts as having stopped growing);
        3. the plateau is long enough to tell: at least ``min_plateau`` batch sizes, and the law
           continued over it, ``(B_last / B_k)^p``, would have risen past the tolerance by at
           least one more resolution step (p = ``exponent`` if given, e.g. the expected 1.0 or 0.5,
           else the slope over B_0..B_k).

    With 2^(1/4) brackets an SGD plateau (p = 1) is seen once it spans one doubling of B, an
    Adam plateau (p = 1/2) once it spans two; a shorter plateau is not called saturation, and
    quantisation noise alone cannot fake one. Noise or a smooth corner can move the answer by a
    grid step (Adam's rise over one doubling, sqrt 2, is close to the tolerance); seed noise of
    ~20% per point fakes a plateau at the last batch sizes in ~5% of non-saturating sweeps.
    """
    x, y, s = _points(batch_sizes, lrs, lo, hi)
    if se is not None:
        return _knee_by_likelihood(x, y, _measured_errors(se, x, lo), level, max(min_plateau, 2))
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    ux, inv = np.unique(x, return_inverse=True)
    uy = np.bincount(inv, weights=y) / np.bincount(inv)
    n = ux.size
    if resolution is None:
        res = float(np.median(np.sqrt(12.0) * s)) if lo is not None else math.log(DEFAULT_RESOLUTION)
        res = res if res > 0 else math.log(DEFAULT_RESOLUTION)
    else:
        if resolution < 1:
            raise ValueError(f"resolution is a factor >= 1; got {resolution}")
        res = math.log(resolution)
    tol = 1.5 * res if tolerance is None else math.log(tolerance)
    for k in range(1, n - max(min_plateau, 2) + 1):
        head_slope = np.polyfit(ux[:k + 1], uy[:k + 1], 1)[0]
        if not head_slope > 0:
            continue
        if np.max(uy[k + 1:]) - uy[k] > tol:
            continue
        p = head_slope if exponent is None else exponent
        if p * (ux[-1] - ux[k]) < tol + res - 1e-12:
            continue
        return int(round(math.exp(ux[k])))
    return None


def _knee_by_likelihood(x, y, s, level: float, min_plateau: int) -> int | None:
    """Where a flat plateau fits the points significantly better than a straight line, or None.

    Repeated batch sizes are first pooled by inverse variance. For each knee B_k with at least
    two points up to it and ``min_plateau`` from it, the model ``y = a + p min(x, x_k)`` is fitted
    by weighted least squares; the best knee must (1) have p > 0 (lr_max grew up to it), (2) lower
    chi^2 against the straight line by more than the chi^2(1) quantile at ``level``, Bonferroni-
    corrected for the number of knees tried (so a straight line with measured noise is called
    saturated in at most 1 - level of sweeps), and (3) have no significant rise of its own from
    B_k on (the plateau's own weighted slope is not above zero at ``level``): a law that merely
    bends shallower is not a plateau.
    """
    ux, inv = np.unique(x, return_inverse=True)
    w = np.bincount(inv, weights=1.0 / s ** 2)
    uy = np.bincount(inv, weights=y / s ** 2) / w
    n = ux.size
    knees = range(1, n - min_plateau + 1)
    if len(knees) == 0:
        return None

    def chi2(design):
        _, slope, _, residuals = _wls(design, uy, w)
        return float(np.sum(w * residuals ** 2)), slope

    line, _ = chi2(ux)
    fits = [(chi2(np.minimum(ux, ux[k])), k) for k in knees]
    (best, slope), k = min(fits, key=lambda f: f[0][0])
    threshold = stats.chi2.ppf(1 - (1 - level) / len(knees), 1)
    if not slope > 0 or line - best <= threshold:
        return None
    tail = slice(k, n)
    if n - k >= 3:
        _, rise, cov, _ = _wls(ux[tail], uy[tail], w[tail])
        if rise - stats.norm.ppf(level) * math.sqrt(cov[1, 1]) > 0:
            return None
    elif uy[-1] - uy[k] > stats.norm.ppf(level) * math.sqrt(1 / w[-1] + 1 / w[k]):
        return None
    return int(round(math.exp(ux[k])))


# --------------------------------------------------------------------------------------------
# spectrum: lambda_max(B) = lambda_full + kappa / B
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class InverseBatchFit:
    """``lambda_max(B) = lambda_full + kappa / B`` fitted by least squares in 1/B.

    lambda_full          the extrapolation to B -> infinity (the full-data top eigenvalue)
    kappa                the strength of the mini-batch fluctuation term
    *_low, *_high        their ``level`` confidence intervals (Student t, n - 2 dof)
    b_star               kappa / lambda_full: where the fluctuation term equals the full-data one
    b_star_low/high      delta-method interval of b_star (approximate; NaN if lambda_full <= 0)
    """

    lambda_full: float
    lambda_full_low: float
    lambda_full_high: float
    kappa: float
    kappa_low: float
    kappa_high: float
    b_star: float
    b_star_low: float
    b_star_high: float
    n: int
    residual_std: float
    level: float

    def predict(self, batch_sizes):
        return self.lambda_full + self.kappa / np.asarray(batch_sizes, dtype=float)


def fit_inverse_batch(batch_sizes, lambdas, level: float = 0.95) -> InverseBatchFit:
    """Fit ``lambda_max(B) = lambda_full + kappa / B`` by ordinary least squares in 1/B.

    ``batch_sizes`` may repeat: pass one lambda per random batch (not per-B means), so the
    residual scatter includes batch-to-batch variation. Needs at least 3 values at 2 or more
    distinct batch sizes (with exactly 2 values the line is exact and no interval exists).
    """
    B = _positive_finite("batch_sizes", batch_sizes)
    lam = np.asarray(lambdas, dtype=float).ravel()
    if lam.size != B.size:
        raise ValueError(f"batch_sizes and lambdas differ in length ({B.size} vs {lam.size})")
    if not np.all(np.isfinite(lam)):
        raise ValueError("lambdas must be finite")
    if np.unique(B).size < 2 or B.size < 3:
        raise ValueError("fit_inverse_batch needs >= 3 values at >= 2 distinct batch sizes")
    u = 1.0 / B
    a, b, cov, r = _wls(u, lam, np.ones_like(u))
    dof = B.size - 2
    s2 = float(r @ r) / dof
    cov = cov * s2
    q = stats.t.ppf(0.5 + level / 2, dof)
    se_a, se_b = math.sqrt(cov[0, 0]), math.sqrt(cov[1, 1])
    if a > 0:
        bs = b / a
        # gradient of kappa / lambda_full w.r.t. (lambda_full, kappa)
        g = np.array([-b / a ** 2, 1.0 / a])
        se_bs = math.sqrt(max(float(g @ cov @ g), 0.0))
        bs_lo, bs_hi = bs - q * se_bs, bs + q * se_bs
    else:
        bs, bs_lo, bs_hi = math.nan, math.nan, math.nan
    return InverseBatchFit(lambda_full=float(a), lambda_full_low=float(a - q * se_a),
                           lambda_full_high=float(a + q * se_a), kappa=float(b),
                           kappa_low=float(b - q * se_b), kappa_high=float(b + q * se_b),
                           b_star=float(bs), b_star_low=float(bs_lo), b_star_high=float(bs_hi),
                           n=int(B.size), residual_std=float(math.sqrt(s2)), level=float(level))


# --------------------------------------------------------------------------------------------
# stability limits
# --------------------------------------------------------------------------------------------

def _limit(numerator, denominator, lam):
    """``numerator / (denominator * lam)`` where lam > 0, inf elsewhere; scalars stay scalars."""
    lam = np.asarray(lam, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(lam > 0, numerator / (denominator * np.where(lam > 0, lam, 1.0)), np.inf)
    return float(out) if out.ndim == 0 else out


def stability_limit(curvature, optimizer: str, momentum: float = 0.0, nesterov: bool = False):
    """The largest stable lr on a quadratic whose top curvature is ``curvature``.

    One formula ``numerator / curvature`` for each kind of optimizer, all from the linear
    iteration on one eigen-direction:

    * SGD with heavy-ball momentum m (m = 0: plain SGD): ``2 (1 + m) / lambda``;
    * SGD with Nesterov momentum (``nesterov`` and m > 0): ``2 (1 + m) / ((1 + 2 m) lambda)``,
      where x_{t+1} = (1 - lr lambda)((1 + m) x_t - m x_{t-1}) has a root at -1;
    * Adam-like (``is_adaptive(optimizer)``; ``momentum`` is beta1, ``nesterov`` is ignored):
      ``(2 + 2 beta1) / ((1 - beta1) lambda)`` with lambda the top eigenvalue of the
      preconditioned Hessian P^-1 H, P = diag(sqrt(v_hat) + eps), P frozen (Cohen et al. 2022,
      "Adaptive gradient methods at the edge of stability"): the EMA momentum is heavy ball
      with lr (1 - beta1) lr.

    ``curvature`` is a scalar or an array; a non-positive (or NaN) curvature sets no limit (inf).
    Since the limit is ``numerator / curvature``, the roles swap: ``stability_limit(lr, ...)`` is
    the largest curvature at which that lr is stable (the sharpness tracker's "limit").
    """
    m = float(momentum)
    if not 0 <= m < 1:
        raise ValueError(f"momentum must lie in [0, 1); got {momentum}")
    if is_adaptive(optimizer):
        return _limit(2.0 + 2.0 * m, 1.0 - m, curvature)
    if nesterov and m > 0:
        return _limit(2.0 * (1.0 + m), 1.0 + 2.0 * m, curvature)
    return _limit(2.0 * (1.0 + m), 1.0, curvature)


# --------------------------------------------------------------------------------------------
# gradient noise scale
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NoiseScale:
    """McCandlish et al. (2018): |G|^2, tr(Sigma) (per-example gradient covariance) and
    the simple noise scale B_noise = tr(Sigma) / |G|^2, the batch size past which larger batches
    stop buying proportionally larger steps."""

    grad_sqnorm: float
    trace_sigma: float
    b_noise: float


def gradient_noise_scale(b_small, sqnorm_small, b_big, sqnorm_big) -> NoiseScale:
    """Unbiased estimators from squared norms of mini-batch gradients at two batch sizes
    (McCandlish et al. 2018, "An empirical model of large-batch training", Appendix A)::

        |G|^2     = (B_big |G_big|^2 - B_small |G_small|^2) / (B_big - B_small)
        tr(Sigma) = (|G_small|^2 - |G_big|^2) / (1 / B_small - 1 / B_big)
        B_noise   = tr(Sigma) / |G|^2

    ``sqnorm_small`` / ``sqnorm_big`` may be arrays of repeats; as the paper recommends, the
    numerator and denominator are averaged over repeats before the ratio is taken (the ratio of
    averages is far less biased than the average of ratios). Each estimate alone is unbiased but
    noisy and may come out negative; B_noise is NaN when |G|^2 <= 0.
    """
    b_small, b_big = float(b_small), float(b_big)
    if not 0 < b_small < b_big:
        raise ValueError(f"need 0 < b_small < b_big; got {b_small}, {b_big}")
    gs = np.asarray(sqnorm_small, dtype=float).ravel()
    gb = np.asarray(sqnorm_big, dtype=float).ravel()
    if gs.size == 0 or gb.size == 0 or not (np.all(np.isfinite(gs)) and np.all(np.isfinite(gb))):
        raise ValueError("squared gradient norms must be non-empty and finite")
    ms, mb = float(gs.mean()), float(gb.mean())
    g2 = (b_big * mb - b_small * ms) / (b_big - b_small)
    tr = (ms - mb) / (1.0 / b_small - 1.0 / b_big)
    return NoiseScale(grad_sqnorm=g2, trace_sigma=tr, b_noise=tr / g2 if g2 > 0 else math.nan)


# ------------------------------------------------------------------------------ which law fits best

@dataclass(frozen=True)
class LawComparison:
    """The free power law against McCandlish et al.'s saturating form, on the same points.

    saturating: ``lr = lr_inf * (B / (B + B_noise)) ** q`` with q the law under test (1 for SGD,
    1/2 for Adam: its square-root analogue); it grows as B^q well below B_noise and flattens above.
    Both have two parameters, so AIC compares their chi-squared directly: a difference under 2 is
    no preference ("either").
    """

    preferred: str          # "power law" | "saturating" | "either"
    chi2_power: float
    chi2_saturating: float
    b_noise: float          # the fitted B_noise (inf: no saturation in the range, the pure law)
    b_noise_lo: float       # its 95% profile interval (inf where unbounded above)
    b_noise_hi: float
    lr_inf: float


def compare_laws(batch_sizes, lrs, se, law: float) -> LawComparison:
    """Weighted least squares in log lr (weights 1/se^2) of both forms; B_noise on a log grid from
    1/100 of the smallest to 100x the largest B, and beyond it the pure law (B_noise -> inf)."""
    B = _positive_finite("batch_sizes", batch_sizes)
    y = np.log(_positive_finite("lrs", lrs))
    w = 1.0 / _positive_finite("se", se) ** 2
    if B.size < 3 or np.unique(B).size < 3:
        raise ValueError("need at least 3 batch sizes to compare the laws")
    x = np.log(B)
    residuals = _wls(x, y, w)[3]
    chi2_power = float((w * residuals ** 2).sum())
    grid = np.append(np.geomspace(B.min() / 100, B.max() * 100, 400), np.inf)
    chi2 = np.empty(grid.size)
    levels = np.empty(grid.size)
    for i, bn in enumerate(grid):
        g = law * (x - np.log(B + bn)) if np.isfinite(bn) else law * x
        levels[i] = float((w * (y - g)).sum() / w.sum())
        chi2[i] = float((w * (y - g - levels[i]) ** 2).sum())
    best = int(np.argmin(chi2))
    inside = grid[chi2 <= chi2[best] + stats.chi2.ppf(0.95, 1)]
    delta = float(chi2[best]) - chi2_power
    preferred = "either" if abs(delta) < 2 else ("saturating" if delta < 0 else "power law")
    return LawComparison(preferred, chi2_power, float(chi2[best]), float(grid[best]), float(inside.min()),
                         float(inside.max()), float(math.exp(levels[best])))
