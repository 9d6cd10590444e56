"""The edge of a random outcome: where half of the trials from fresh seeds still succeed, with an
interval (pure numpy/scipy, no torch).

Near the edge of training, whether a short trial trains is a coin toss that depends on its seed
(initialisation, data order) as much as on its learning rate. So the edge is a threshold of a
random outcome, as in psychophysics (psignifit, QUEST): along x = log lr,

    P(success | x) = guess + (1 - guess - lapse) * Phi((mu - x) / spread)

``mu`` is the edge (the log lr at which the sigmoid is half way), ``spread`` how sharp it is in
log lr, ``lapse`` the rate of failures far below the edge (a seed that stalls at a comfortable lr),
``guess`` the rate of successes far above it. For the upper edge of training, success is
``trained``; for the blow-up edge, success is "did not diverge".

``fit_edge`` computes the posterior on a grid: mu uniform in log lr over a window around the
trials, spread log-uniform above ``SPREAD_FLOOR`` and falling off below it, lapse and guess on a
few small values. Its marginal over mu gives the
point estimate (the posterior median) and the 95% interval; ``lr_safe`` (where 90% succeed) comes
from the same posterior. ``next_points`` places the next trials at quantiles of mu's posterior
(spread over its uncertain region, so that both the location and the spread are learned).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp, ndtr, ndtri, xlogy

#: Spreads of the edge in log lr that the posterior considers (log-uniform prior between them).
SPREADS = np.exp(np.linspace(math.log(0.03), math.log(1.0), 12))
#: Rates of failure far below the edge (lapse), and of success far above it (guess). Lapses reach
#: the plateaus real trials show near a budget's limit (up to half of the seeds stalling at every lr
#: below the edge: results/outcome_bank), under psignifit's Beta(1, 10) prior, so that a clean edge
#: needs no lapse to fit and a plateau is not read as a wide spread.
LAPSES = np.array([0.0, 0.05, 0.2, 0.35, 0.5])
GUESSES = np.array([0.0, 0.05])
NUISANCE = (SPREADS.size, LAPSES.size, GUESSES.size)
_SCALE = (1 - GUESSES[None, :] - LAPSES[:, None]).ravel()      # (lapse, guess) flattened
_FLOOR = np.tile(GUESSES, LAPSES.size)


def _beta_log_weights(values: np.ndarray, b: float = 10.0) -> np.ndarray:
    """log prior mass of each grid value under Beta(1, b): the cdf's increment over its cell."""
    edges = np.r_[0.0, (values[1:] + values[:-1]) / 2, 1.0]
    mass = (1 - edges[:-1]) ** b - (1 - edges[1:]) ** b
    return np.log(mass / mass.sum())


#: Below this spread (natural log) the prior falls off, as a half-Gaussian 0.35 wide in log spread
#: (per log unit, 0.057 is 4x less likely than 0.1, and 0.03 some 370x). Trials the search places are rarely
#: closer than its tolerance (2^0.25, 0.17 in log), so a clean split of a few of them says only that
#: the spread is below their spacing; with the prior flat down to 0.03, most of the mass then sat on
#: spreads no trial could tell apart, and the group's shared spread, the product of such points,
#: collapsed. In planted quickstart sweeps (spread 0.3) it fell below 0.12 in 15% of sweeps, where
#: point intervals covered 0.77; in a real four-run check a 1-thread run's spread of 0.057 put
#: B = 64's interval clear of the three others. psignifit's width prior falls off below the stimulus
#: spacing for the same reason. Real edges measured at the quickstart's budget: 0.22-0.35
#: (results/outcome_bank).
SPREAD_FLOOR = 0.1
_SPREAD_LOG_PRIOR = np.where(SPREADS < SPREAD_FLOOR, -0.5 * (np.log(SPREADS / SPREAD_FLOOR) / 0.35) ** 2, 0.0)

#: The nuisance prior (log) over (spread, lapse, guess): log-uniform spread above SPREAD_FLOOR (falling
#: off below it), Beta(1, 10) lapse, uniform guess.
NUISANCE_PRIOR = (_SPREAD_LOG_PRIOR[:, None, None] + _beta_log_weights(LAPSES)[None, :, None]
                  + np.zeros(NUISANCE))
#: Resolution of the mu grid, in log lr.
RESOLUTION = 0.025
#: The predicted shares of successes at which successive proposals are placed: both sides of one
#: half in turn, so that any round of two or more learns the spread as well as the location.
LEVELS = (0.3, 0.7, 0.5, 0.2, 0.8, 0.5)


@dataclass(frozen=True)
class EdgeFit:
    """An edge of a random outcome (see the module doc). All lrs are learning rates, not logs."""

    lr: float                 # exp of the posterior median of mu: where half succeed
    lo: float                 # 95% interval of the edge
    hi: float
    log_se: float             # posterior std of mu (natural log): the point's error in a log-log fit
    spread: float             # posterior median of the spread (natural log units)
    lr_safe: float            # where 90% of trials succeed (posterior median)
    n: int                    # trials fitted
    lapse: float = 0.0        # posterior median share of failures far below the edge (1 - the plateau)
    fit_p: float = 1.0        # posterior predictive p of the trials' deviance: small = not one sigmoid

    @property
    def half_width(self) -> float:
        """Half the width of the 95% interval in log lr: what ``search.precision`` bounds."""
        return 0.5 * math.log(self.hi / self.lo)


class EdgePosterior:
    """The grid posterior of one edge from (lr, success) pairs, grown one trial at a time.

    ``prior`` is a log weight over the nuisance grid (spread, lapse, guess): the evidence of the
    other batch sizes of the same group (``evidence``), so that the edge's spread, which is much the
    same at every batch size, is learned from all of them (a joint fit).
    """

    def __init__(self, lrs, successes, prior: np.ndarray | None = None, window: float = 1.0):
        self.x = np.log(np.asarray(lrs, dtype=float))
        self.s = np.asarray(successes, dtype=bool)
        self.prior = np.zeros(NUISANCE) if prior is None else np.asarray(prior, dtype=float)
        lo, hi = self._support(window)
        self.mu = np.arange(lo, hi + RESOLUTION / 2, RESOLUTION)
        self.loglik = np.zeros((self.mu.size, *NUISANCE))
        for x, success in zip(self.x, self.s):
            self.loglik += self._term(x, success)

    def _support(self, window: float) -> tuple[float, float]:
        """mu's window: ``window`` beyond the trials' highest success and lowest failure."""
        ok, bad = self.x[self.s], self.x[~self.s]
        edges = np.r_[ok.max() if ok.size else self.x.min(), bad.min() if bad.size else self.x.max()]
        return float(edges.min()) - window, float(edges.max()) + window

    def _term(self, x: float, success: bool) -> np.ndarray:
        """log P(one outcome at log lr x | mu, spread, lapse, guess) on the grid."""
        phi = ndtr((self.mu[:, None] - x) / SPREADS[None, :])[:, :, None]
        p = phi * _SCALE + _FLOOR                           # guess + (1 - guess - lapse) * phi
        p = p if success else 1 - p
        return np.log(np.maximum(p, 1e-300, out=p)).reshape(self.mu.size, *NUISANCE)

    def add(self, lr: float, success: bool) -> None:
        self.x, self.s = np.r_[self.x, math.log(lr)], np.r_[self.s, bool(success)]
        self.loglik += self._term(math.log(lr), success)

    def weights(self) -> np.ndarray:
        log_post = self.loglik + (self.prior + NUISANCE_PRIOR)[None]
        w = np.exp(log_post - log_post.max())
        return w / w.sum()

    def mu_marginal(self) -> np.ndarray:
        return self.weights().sum(axis=(1, 2, 3))

    def evidence(self) -> np.ndarray:
        """log P(these trials | spread, lapse, guess), mu integrated out (uniform on its grid):
        what this batch size tells the others about the nuisance parameters."""
        return logsumexp(self.loglik, axis=0) - math.log(self.mu.size)

    def quantiles(self, levels, pmf: np.ndarray | None = None) -> np.ndarray:
        """mu at the given posterior levels (linear interpolation of the marginal's cdf);
        ``pmf``: mu's marginal when the caller has it already."""
        pmf = self.mu_marginal() if pmf is None else pmf
        cdf = np.cumsum(pmf) - 0.5 * pmf
        return np.interp(np.asarray(levels, dtype=float), cdf, self.mu)

    def half_width(self) -> float:
        """Half the width of mu's 95% interval (log lr): what ``search.precision`` bounds."""
        lo, hi = self.quantiles([0.025, 0.975])
        return 0.5 * float(hi - lo)

    def log_se(self, pmf: np.ndarray | None = None) -> float:
        """The posterior std of mu (natural log): the point's error in a log-log fit; ``pmf``: mu's
        marginal when the caller has it already."""
        return _std(self.mu, self.mu_marginal() if pmf is None else pmf)

    def fit(self, at_least: EdgePosterior | None = None) -> EdgeFit:
        """The edge (module doc); ``at_least``: an edge this one cannot lie below (the upper edge
        of training, for the blow-up edge), each of whose quantiles bounds this one's from below.

        Not the larger of two independent edges: both posteriors come from the same trials (every
        divergence is in both), so where the edges coincide they are one posterior, and the
        larger of two draws of it would lift the blow-up edge by half its error and widen its
        interval upward, which then missed a planted blow-up edge coinciding with the upper one
        about one search in four (tests/test_edge_order.py asks for 88% of 60 and fails there)."""
        w = self.weights()
        marginal = w.sum(axis=(1, 2, 3))
        levels = [0.025, 0.5, 0.975]
        q, se = self.quantiles(levels, marginal), self.log_se(marginal)
        if at_least is not None:
            q = np.maximum(q, at_least.quantiles(levels))
        spread_cdf = np.cumsum(w.sum(axis=(0, 2, 3)))
        spread = float(SPREADS[min(np.searchsorted(spread_cdf, 0.5), SPREADS.size - 1)])
        lapse_cdf = np.cumsum(w.sum(axis=(0, 1, 3)))
        lapse = float(LAPSES[min(np.searchsorted(lapse_cdf, 0.5), LAPSES.size - 1)])
        return EdgeFit(lr=math.exp(q[1]), lo=math.exp(q[0]), hi=math.exp(q[2]), log_se=se,
                       spread=spread, lr_safe=math.exp(self._safe(w, 0.9)), n=int(self.x.size),
                       lapse=lapse, fit_p=self.predictive_p(w))

    def predictive_p(self, w: np.ndarray, draws: int = 400, bins: int = 6) -> float:
        """Posterior predictive check, as psignifit does: the share of trial sets replicated from the
        posterior that fit their own draw worse than the real trials fit theirs, by the binomial
        deviance of the trials' successes in ``bins`` groups of neighbouring lrs (so a band of
        failures between successes counts as one misfit, not as scattered lapses). Near 0: the
        trials are not one sigmoid (they alternate with lr, or show two edges)."""
        rng = np.random.default_rng(0)               # the same trials always give the same p
        flat = w.ravel()
        m, s, lapse, guess = np.unravel_index(rng.choice(flat.size, size=draws, p=flat / flat.sum()), w.shape)
        bins = min(bins, self.x.size)                # every group holds a trial
        group = np.minimum(np.argsort(np.argsort(self.x, kind="stable")) * bins // self.x.size, bins - 1)
        n = np.bincount(group, minlength=bins).astype(float)
        phi = ndtr((self.mu[m][:, None] - self.x[None, :]) / SPREADS[s][:, None])
        p = np.clip(GUESSES[guess][:, None] + (1 - GUESSES[guess] - LAPSES[lapse])[:, None] * phi, 1e-9, 1 - 1e-9)
        replicated = rng.random(p.shape) < p
        expected = _by_group(p, group, bins) / n
        observed = np.bincount(group, weights=self.s.astype(float), minlength=bins)[None, :]
        return float(np.mean(_deviance(_by_group(replicated, group, bins), n, expected)
                             >= _deviance(observed, n, expected)))

    def _safe(self, w: np.ndarray, level: float) -> float:
        """Posterior median of the log lr at which P(success) = ``level`` (where the model reaches it)."""
        share = (level - GUESSES[None, :]) / (1 - GUESSES[None, :] - LAPSES[:, None])   # (lapse, guess)
        reachable = np.broadcast_to((share < 1)[None, None], w.shape)
        z = ndtri(np.clip(share, 1e-12, 1 - 1e-12))
        x = self.mu[:, None, None, None] - SPREADS[None, :, None, None] * z[None, None]
        x, ww = np.broadcast_to(x, w.shape)[reachable], w[reachable]
        order = np.argsort(x)
        cdf = np.cumsum(ww[order])
        return float(x[order][np.searchsorted(cdf, 0.5 * cdf[-1])])

    def piled_at_border(self) -> bool:
        """Whether the posterior presses against the window's ends (then the window was too small)."""
        m = self.mu_marginal()
        k = max(1, int(0.1 / RESOLUTION))
        return m[:k].sum() > 0.02 or m[-k:].sum() > 0.02




def _std(x: np.ndarray, pmf: np.ndarray) -> float:
    pmf = pmf / pmf.sum()
    mean = float(pmf @ x)
    return math.sqrt(max(float(pmf @ (x - mean) ** 2), 0.0))


def _by_group(values: np.ndarray, group: np.ndarray, bins: int) -> np.ndarray:
    """Per row of ``values`` (draws x trials), the sums over each group of trials: draws x bins."""
    out = np.zeros((values.shape[0], bins))
    np.add.at(out, (slice(None), group), values.astype(float))
    return out


def _deviance(k: np.ndarray, n: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Binomial deviance of k successes in n trials against probabilities p, summed over groups."""
    return 2 * (xlogy(k, k / (n * p)) + xlogy(n - k, (n - k) / (n * (1 - p)))).sum(axis=-1)


MIN_FIT_P = 0.01   # trials whose deviance passes 99% of the posterior's own replicates are not one edge


def problem(fit: EdgeFit) -> str | None:
    """Why an edge's interval cannot be trusted (one line), or None: its trials reject the model."""
    if fit.fit_p < MIN_FIT_P:
        return (f"the trials do not follow one edge (posterior predictive p = {fit.fit_p:.3f}): outcomes that "
                "alternate with lr, or two edges; look at the trials, and raise the budget (train.steps) or the test "
                "set (dataset.test_size) until most seeds train at comfortable lrs")
    return None


def posterior(lrs, successes, prior: np.ndarray | None = None) -> EdgePosterior:
    """The grid posterior, its window widened until the posterior sits inside it."""
    window = 1.0
    post = EdgePosterior(lrs, successes, prior, window)
    while post.piled_at_border() and window < 6:
        window *= 2
        post = EdgePosterior(lrs, successes, prior, window)
    return post


def has_edge(successes) -> bool:
    """An edge needs at least one success and one failure."""
    successes = np.asarray(successes, dtype=bool)
    return bool(successes.any() and not successes.all())


def fit_edge(lrs, successes, prior: np.ndarray | None = None) -> EdgeFit:
    """The edge of (lr, success) trials: where half succeed, with its 95% interval (module doc)."""
    if not has_edge(successes):
        raise ValueError("an edge needs at least one success and one failure")
    return posterior(lrs, successes, prior).fit()


def fit_group(points) -> list[EdgeFit | None]:
    """Each point's edge with the nuisance parameters shared across the group: the joint posterior
    of independent edges and one spread (lapse, guess), marginalised to each edge. ``points`` is a
    list of (lrs, successes); a point without an edge gives None and tells the others nothing."""
    return [None if post is None else post.fit() for post in group_posteriors(points)]


def group_posteriors(points) -> list[EdgePosterior | None]:
    """``fit_group``'s posteriors, each with the other points' nuisance evidence as its prior."""
    posts = [posterior(lrs, s) if has_edge(s) else None for lrs, s in points]
    evidence = [p.evidence() for p in posts if p is not None]
    total = np.sum(evidence, axis=0) if evidence else np.zeros(NUISANCE)
    for post in posts:
        if post is not None:
            post.prior = total - post.evidence()
    return posts


def next_points(post: EdgePosterior, k: int, start: int = 0) -> list[float]:
    """``k`` learning rates that tell most about the edge: where the predicted share of successes
    is ``LEVELS[start:start + k]`` (cycling), on the sigmoid of the posterior median edge and spread
    widened by the edge's own uncertainty. Levels on both sides of one half teach the spread as
    well as the location; the location's uncertainty spreads them further while it is large."""
    w = post.weights()
    marginal = w.sum(axis=(1, 2, 3))
    mid = float(post.quantiles([0.5], marginal)[0])
    var = float(marginal @ (post.mu - mid) ** 2)
    spread = float(np.exp(np.log(SPREADS) @ w.sum(axis=(0, 2, 3))))
    width = math.sqrt(spread ** 2 + var)
    levels = [LEVELS[(start + i) % len(LEVELS)] for i in range(k)]
    return [float(math.exp(mid + width * ndtri(1 - level))) for level in levels]


#: Candidate lrs for ``informative_points``: a grid in log lr this fine, this far beyond mu's posterior.
CANDIDATE_STEP, CANDIDATE_REACH = 0.05, 1.0


def informative_points(post: EdgePosterior, k: int) -> list[float]:
    """``k`` learning rates whose outcomes are expected to shrink the posterior variance of the edge
    most (Psi / QUEST+ placement, on the grid posterior): chosen greedily, each for its expected
    reduction given the outcomes the earlier ones of the round may have, so a round of K spreads
    where one trial alone would not. Deterministic: the same trials give the same lrs.

    Not the default (``find_edges(placement="levels")``): on the calibration's designs it brings the
    error of log lr_max closer to the information bound at one trial a round, but not the trial count,
    which the posterior's spread and lapse set, and it lost decisiveness (results/calibration/placement.md)."""
    w = post.weights().reshape(post.mu.size, -1)                       # mu x nuisance
    lo, hi = post.quantiles([0.005, 0.995])
    x = np.arange(lo - CANDIDATE_REACH, hi + CANDIDATE_REACH + CANDIDATE_STEP / 2, CANDIDATE_STEP)
    phi = ndtr((post.mu[None, :, None] - x[:, None, None]) / SPREADS[None, None, :])   # cand x mu x spread
    p = (phi[..., None] * _SCALE + _FLOOR).reshape(x.size, post.mu.size, -1)   # P(success): cand x mu x nuisance
    combos = [w]                                                      # w x likelihood of each outcome pattern
    chosen = []
    for _ in range(k):
        gain = np.zeros(x.size)          # minus the expected posterior variance, up to a constant
        for c in combos:
            for q in (p, 1 - p):
                m = np.einsum("mn,cmn->cm", c, q)                     # mu's marginal (unnormalised) per candidate
                gain += (m @ post.mu) ** 2 / np.maximum(m.sum(axis=1), 1e-300)
        best = int(np.argmax(gain))
        chosen.append(float(math.exp(x[best])))
        combos = [c * q[best] for c in combos for q in (p, 1 - p)]
    return chosen
