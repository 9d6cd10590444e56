"""lr_opt: the learning rate at which a trial's quality peaks, with a measured 95% interval.

The two edges say where runs stop learning and where they blow up; neither is the learning rate a
researcher trains at. Studies of batch-size scaling (Shallue et al. 2018, McCandlish et al. 2018)
fit the final loss against log lr with a parabola around its minimum. This does the same for a
trial's quality (``Objective``: test accuracy, or minus a final loss), one fresh seed per trial:

    q(x) = a + c (x - x_opt)^2,   c < 0,   x = log lr,   seed noise Gaussian with unknown sd.

The interval of x_opt is the profile (F) interval: x0 is inside when the parabola with its vertex
at x0 is not rejected against the free one. For fixed x0 that model is linear in (a, c) and nested
in the free quadratic, so the F test is exact under the model, and so is the interval's coverage
(Fieller's construction). The seed noise is measured by the residuals, nothing is assumed.

- An interval that runs off the lrs tried on one side is a bound (``upper_bound``: lr_opt is at
  most ``hi``; ``lower_bound``: at least ``lo``), never a number: the search goes on past it.
- Unbounded on both sides: ``flat``, no lr_opt (quality does not tell one lr from another).

Test accuracy is fitted on the angle arcsin(sqrt(acc)), not on acc itself. An accuracy is a
proportion: its seed-to-seed spread shrinks near 0 and 1 (seeds that all reach 0.99 agree to 0.01;
seeds at 0.5 differ by 0.1), and the angle is the scale on which such a spread is even (for a
spread ~ p(1 - p), as for a binomial; the outcome banks show it within a factor of a few). On acc
itself one half-stalled seed beside a peak near 1 set the noise for all, and the fit called a
plain peak flat. A monotone scale moves no peak: lr_opt is the same lr on either; the fitted
quality is reported back in accuracy. Losses are fitted as they are.

A parabola is a local model, so only trials near the peak are fitted: within ``window`` (natural
log) of it, and below ``ceiling`` (the upper edge of training, above which quality drops off a
cliff, not along a parabola). Diverged trials have no quality.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from spectral_sweep.config.search import Objective
from spectral_sweep.trial.outcomes import TRAINED, outcome_of

BRACKETED, UPPER_BOUND, LOWER_BOUND = "bracketed", "upper_bound", "lower_bound"
FLAT, TOO_FEW = "flat", "too_few"
WINDOW = math.log(8.0)     # fit trials within a factor 8 of the peak on either side
SMOOTH = math.log(2.0)     # the kernel width that finds the peak's neighbourhood before any fit
MIN_TRIALS = 6             # a parabola and its noise: three residual degrees of freedom at least (with
MIN_LEVELS = 4             # one or two, a lucky pair of seeds can claim a noise of nothing), four lrs
GRID_MARGIN = 3.0          # the profile's grid runs this far (natural log) past the fitted lrs


@dataclass
class OptimumFit:
    """The peak of quality against log lr, or why there is none."""

    lr: float | None              # lr_opt (a bound's value where status is a bound; None: flat, too few)
    lo: float | None              # 95% interval; None where unbounded on that side
    hi: float | None
    status: str                   # bracketed | upper_bound | lower_bound | flat | too_few
    quality: float | None = None  # the fitted quality at lr_opt, in the objective's own units
    noise: float | None = None    # seed-to-seed sd of quality on the fit's scale, from the residuals
    n: int = 0                    # trials fitted
    lrs: tuple = ()               # (lowest, highest) lr fitted
    centre: float | None = None   # the lr the window was centred on (where to place trials without a peak)
    curvature: float | None = None   # c of the fitted parabola, on the fit's scale (per (log lr)^2; negative)
    scale: str = "identity"       # the scale fitted: "angle" (arcsin sqrt, accuracy) or "identity" (loss)

    def predict(self, lrs) -> np.ndarray:
        """The fitted curve's quality at ``lrs``, in the objective's units (bracketed fits only)."""
        u = (np.log(np.asarray(lrs, float)) - math.log(self.lr)) ** 2
        return from_scale(to_scale(self.quality, self.scale) + self.curvature * u, self.scale)

    def half_width(self) -> float:
        """Half the 95% interval's width in log lr (inf where a side is unbounded)."""
        if self.lo is None or self.hi is None:
            return math.inf
        return (math.log(self.hi) - math.log(self.lo)) / 2

    @property
    def log_se(self) -> float | None:
        """The interval's half-width as a standard error (what a scaling fit weights by)."""
        hw = self.half_width()
        return hw / 1.96 if math.isfinite(hw) else None


@dataclass
class OptimumSearch:
    """What the search for lr_opt is asked for (config.search: objective, opt_precision, opt_trials)."""

    objective: Objective | str = "test_acc"
    precision: float = 0.35      # stop at a 95% interval of log lr_opt within +- this
    max_trials: int = 8          # trials of its own, beyond the edges'


def quality(result, objective: Objective | str) -> float | None:
    """A trial's quality, larger is better (a loss is negated); None where it has none (diverged,
    or the value was not measured, as in a simulation that gives outcomes only)."""
    if isinstance(result, (str, bool)):
        return None
    get = (lambda k: result.get(k)) if isinstance(result, dict) else (lambda k: getattr(result, k, None))
    if get("outcome") == "diverged":
        return None
    name = str(objective)
    value = get({"test_acc": "test_acc", "train_loss": "final_train_loss", "test_loss": "test_loss"}[name])
    if value is None or not math.isfinite(value):
        return None
    return float(value) if name == "test_acc" else -float(value)


def scale_of(objective: Objective | str) -> str:
    """The scale a quality is fitted on: the angle for an accuracy (a proportion), else itself."""
    return "angle" if str(objective) == "test_acc" else "identity"


def to_scale(q, scale: str):
    """Quality -> the fit's scale (arcsin sqrt of an accuracy clipped to [0, 1])."""
    return np.arcsin(np.sqrt(np.clip(q, 0.0, 1.0))) if scale == "angle" else q


def from_scale(y, scale: str):
    """The fit's scale -> quality (the angle clipped to [0, pi/2], where sin^2 is monotone)."""
    return np.sin(np.clip(y, 0.0, math.pi / 2)) ** 2 if scale == "angle" else y


def fit_optimum(lrs, qualities, ceiling: float = math.inf, window: float = WINDOW,
                level: float = 0.95, objective: Objective | str = "test_acc") -> OptimumFit:
    """lr_opt from trained trials (lr, quality; None for a trial that did not train, or has no
    quality), with its profile interval."""
    scale = scale_of(objective)
    x, y = _usable(lrs, qualities, ceiling)
    y = to_scale(y, scale)
    if len(x) == 0:
        return OptimumFit(None, None, None, TOO_FEW)
    keep, centre = _window(x, y, window)
    x, y = x[keep], y[keep]
    if len(x) < MIN_TRIALS or len(set(x.tolist())) < MIN_LEVELS:
        return OptimumFit(None, None, None, TOO_FEW, n=len(x), centre=math.exp(centre))
    grid = np.linspace(x.min() - GRID_MARGIN, x.max() + GRID_MARGIN, 721)
    rss = _restricted_rss(x, y, grid)
    full = min(_free_rss(x, y), rss.min())
    dof = len(x) - 3
    s2 = max(full / dof, 1e-12 * max(1.0, float(np.var(y))))
    best = int(np.argmin(rss))
    inside = (rss - full) / s2 <= stats.f.ppf(level, 1, dof)
    inside[best] = True          # the grid's best point, also where noise-free data put the vertex off-grid
    lo_open, hi_open = bool(inside[0]), bool(inside[-1])
    lo, hi = math.exp(grid[inside].min()), math.exp(grid[inside].max())
    sign = -1.0 if str(objective) != "test_acc" else 1.0
    level, curvature = _vertex_fit(x, y, grid[best])
    peak = sign * float(from_scale(level, scale))
    common = dict(quality=peak, noise=math.sqrt(s2), n=len(x), lrs=(math.exp(x.min()), math.exp(x.max())),
                  centre=math.exp(centre), scale=scale)
    if lo_open and hi_open:
        return OptimumFit(None, None, None, FLAT, **{**common, "quality": None})
    if lo_open or grid[best] <= x.min():
        return OptimumFit(hi, None, hi, UPPER_BOUND, **common)
    if hi_open or grid[best] >= x.max():
        return OptimumFit(lo, lo, None, LOWER_BOUND, **common)
    return OptimumFit(math.exp(grid[best]), lo, hi, BRACKETED, **common, curvature=sign * curvature)


def fit_trials(made, objective: Objective | str, ceiling: float) -> OptimumFit:
    """lr_opt from a point's trials, [(lr, result)] (a result: an outcome, a mapping or a trial record),
    the trained ones fitted: what the search fits and what the report refits."""
    return fit_optimum([lr for lr, _ in made],
                       [quality(r, objective) if outcome_of(r) == TRAINED else None for _, r in made],
                       ceiling=ceiling, objective=objective)


def _usable(lrs, qualities, ceiling: float) -> tuple[np.ndarray, np.ndarray]:
    pairs = [(math.log(lr), q) for lr, q in zip(lrs, qualities)
             if q is not None and math.isfinite(q) and lr > 0 and lr < ceiling]
    return np.array([p[0] for p in pairs], float), np.array([p[1] for p in pairs], float)


def _window(x: np.ndarray, y: np.ndarray, window: float) -> tuple[np.ndarray, float]:
    """The trials within ``window`` of the peak, and the window's centre: first the peak of the
    kernel-smoothed quality (one seed's luck does not move it), then the fitted vertex (kept
    inside the trials), at most three times."""
    weights = np.exp(-0.5 * ((x[:, None] - x[None, :]) / SMOOTH) ** 2)
    centre = float(x[int(np.argmax(weights @ y / weights.sum(axis=1)))])
    keep = np.abs(x - centre) <= window + 1e-9
    for _ in range(3):
        if keep.sum() < MIN_TRIALS or len(np.unique(x[keep])) < 3:
            break
        m = x[keep].mean()        # centred: a well-conditioned fit
        c2, c1, _ = _quadratic(x[keep] - m, y[keep])
        if c2 >= 0:
            break
        centre = float(np.clip(m - c1 / (2 * c2), x.min(), x.max()))
        new = np.abs(x - centre) <= window + 1e-9
        if (new == keep).all():
            break
        keep = new
    return keep, centre


def _restricted_rss(x: np.ndarray, y: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """For each x0 of ``grid``, the least squares of a + c (x - x0)^2 with c <= 0 (where the best c
    is positive, a valley, c = 0 and the fit is the mean): one linear regression on u = (x - x0)^2."""
    u = (x[None, :] - grid[:, None]) ** 2
    uc = u - u.mean(axis=1, keepdims=True)
    yc = y - y.mean()
    suu, suy, syy = (uc * uc).sum(axis=1), uc @ yc, float(yc @ yc)
    explained = np.where(suy < 0, suy ** 2 / np.maximum(suu, 1e-300), 0.0)
    return syy - explained


def _free_rss(x: np.ndarray, y: np.ndarray) -> float:
    """Least squares of the free quadratic with a peak (c <= 0): else the best line, its limit."""
    x = x - x.mean()             # centred: a well-conditioned fit
    c2, c1, c0 = _quadratic(x, y)
    if c2 < 0:
        return float(((y - (c2 * x ** 2 + c1 * x + c0)) ** 2).sum())
    design = np.column_stack([np.ones_like(x), x])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return float(((y - design @ coef) ** 2).sum())


def _quadratic(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(c2, c1, c0) of the least-squares quadratic (lstsq: repeated lrs are fine, and quiet)."""
    coef, *_ = np.linalg.lstsq(np.column_stack([x ** 2, x, np.ones_like(x)]), y, rcond=None)
    return coef


def _vertex_fit(x: np.ndarray, y: np.ndarray, x0: float) -> tuple[float, float]:
    """(a, c) of a + c (x - x0)^2 (c <= 0)."""
    design = np.column_stack([np.ones_like(x), (x - x0) ** 2])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return (float(coef[0]), float(coef[1])) if coef[1] <= 0 else (float(y.mean()), 0.0)


def next_lrs(fit: OptimumFit, k: int, slot: int, lr_min: float, ceiling: float, step: float = 4.0,
             tried=()) -> list[float]:
    """Up to ``k`` lrs that the optimum's fit needs next: down (by ``step``) from the lowest lr
    fitted while the peak may lie below it, up toward ``ceiling`` while it may lie above, else
    around the peak or the window's centre (its two flanks and itself, in turn: the flanks, where
    the slope is steep, fix the vertex; the centre fixes the level); with no trained trial below
    the ceiling, 2x and 4x below it. Empty where nothing can be placed (the peak sits at ``lr_min``
    or at the ceiling). An lr already ``tried`` twice (or placed twice) moves by sqrt(2): centres
    and steps are powers of 2 apart, so on a broad plateau the flanks and centre kept landing on
    the same few lrs, and the window never held the MIN_LEVELS lrs a fit needs (Fashion-MNIST,
    Adam: all 8 of lr_opt's trials at three lrs, `too_few`)."""
    if fit.status == UPPER_BOUND:
        lrs = [fit.lrs[0] / step ** ((i + 2) / 2) for i in range(k)]
        return [lr for lr in lrs if lr >= lr_min]
    if fit.status == LOWER_BOUND:
        top = fit.lrs[1]
        lrs = [math.exp(math.log(top) + (math.log(ceiling) - math.log(top)) * (i + 1) / (k + 1)) for i in range(k)]
        return lrs if ceiling / top > 1.05 else []
    centre = fit.lr if fit.status == BRACKETED else fit.centre
    if centre is None:           # no trained trial below the ceiling yet: start below it, going down
        lrs = [ceiling / step ** ((i + 1) / 2) for i in range(k)] if math.isfinite(ceiling) else []
        return [lr for lr in lrs if lr >= lr_min]
    d = math.log(step)
    offsets = [-d, d, 0.0]
    placed = list(tried)
    for i in range(k):
        lr = min(max(centre * math.exp(offsets[(slot + i) % 3]), lr_min), ceiling / 1.0001)
        for moved in (lr, lr * math.sqrt(2), lr / math.sqrt(2)):
            if _times_tried(placed, moved) < 2 and lr_min <= moved < ceiling:
                lr = moved
                break
        placed.append(lr)
    return placed[len(tried):]


def _times_tried(lrs, lr: float) -> int:
    return sum(abs(math.log(x / lr)) < 0.01 for x in lrs)
