"""The adaptive search and its estimator against planted stochastic edges: trials whose outcome is
Bernoulli(Phi((mu - log lr) / spread)), windows of known shape, and simulated sweeps with a planted
exponent (spectral_sweep.calibration)."""

import math

import numpy as np
import pytest

from spectral_sweep import theory
from spectral_sweep.search import edge
from spectral_sweep.search.adaptive import find_edges, priors_from
from spectral_sweep.search.calibration import calibrate, planted_trial


def test_edge_interval_covers_a_planted_threshold_at_the_nominal_rate():
    rng = np.random.default_rng(0)
    mu, spread, covered, widths = math.log(0.1), 0.25, 0, []
    for _ in range(200):
        x = rng.uniform(mu - 0.6, mu + 0.6, size=30)
        ok = rng.random(30) < 0.5 * np.vectorize(math.erfc)((x - mu) / spread / math.sqrt(2))
        if not edge.has_edge(ok):
            continue
        fit = edge.fit_edge(np.exp(x), ok)
        covered += fit.lo <= 0.1 <= fit.hi
        widths.append(fit.half_width)
    assert 0.90 <= covered / len(widths) <= 0.99
    assert 0.1 < np.median(widths) < 0.35          # 30 trials near the edge know it to ~ +-0.2 in log


def test_lr_safe_lies_below_the_edge_by_the_spread():
    x = np.exp(np.linspace(math.log(0.01), math.log(1.0), 400))
    ok = np.log(x) < math.log(0.1) + 0.3 * np.random.default_rng(1).standard_normal(400)
    fit = edge.fit_edge(x, ok)
    # 90% train at mu - 1.28 spread: 0.1 * exp(-0.384) = 0.068
    assert fit.lo < 0.1 < fit.hi and fit.half_width < 0.1
    assert fit.lr_safe == pytest.approx(0.068, rel=0.12)
    assert fit.spread == pytest.approx(0.3, rel=0.35)


def test_an_edge_needs_both_outcomes():
    with pytest.raises(ValueError, match="success and one failure"):
        edge.fit_edge([0.1, 0.2], [True, True])


def test_a_shared_spread_tightens_a_point_with_few_trials():
    rng = np.random.default_rng(2)
    points = []
    for mu in (math.log(0.05), math.log(0.1), math.log(0.2)):
        x = np.exp(rng.uniform(mu - 0.5, mu + 0.5, size=40))
        points.append((x, np.log(x) < mu + 0.1 * rng.standard_normal(40)))
    few = (points[0][0][:8], points[0][1][:8])
    assert edge.has_edge(few[1])
    alone = edge.fit_edge(*few)
    shared = edge.fit_group([few, *points[1:]])[0]
    assert shared.half_width < alone.half_width


@pytest.mark.parametrize("mu", [math.log(3e-4), math.log(0.05), math.log(2.0)])
def test_search_finds_a_planted_edge_within_its_interval_and_budget(mu):
    rng = np.random.default_rng(3)
    calls = []

    def run(lrs):
        calls.append(len(lrs))
        return planted_trial(mu, 0.25, 0.0, rng)(lrs)

    res = find_edges(run, start=0.05, parallel=2, precision=0.2, max_trials=40, reference=None)
    assert res.status == "bracketed"
    assert res.bracket[0] < math.exp(mu) < res.bracket[1]
    assert res.estimate.half_width <= 0.2 or len(res.trials) == 40
    assert max(calls) <= 2 and sum(calls) == len(res.trials) <= 40


def _known_spread(spread: float) -> np.ndarray:
    """A nuisance prior that knows the spread and has no lapses or guesses."""
    prior = np.full(edge.NUISANCE, -np.inf)
    prior[int(np.argmin(abs(edge.SPREADS - spread))), 0, 0] = 0.0
    return prior - edge.NUISANCE_PRIOR


def test_informative_trials_bisect_a_sharp_edge_and_pile_at_a_known_one():
    """Known answers. A sharp edge (spread 0.03, known) somewhere in a bracket one unit wide: its
    posterior is uniform, one trial teaches most at the middle (bisection), and three at once at the
    quartiles (each outcome pattern leaves a quarter). A wide edge (spread 0.25, known) already
    located to about its spread: every trial of a round at the threshold, where a probit trial
    carries the most Fisher information."""
    sharp = edge.posterior(0.1 * np.exp([-0.5, 0.5]), [True, False], _known_spread(0.03))
    (one,) = edge.informative_points(sharp, 1)
    assert math.log(one / 0.1) == pytest.approx(0.0, abs=edge.CANDIDATE_STEP)
    three = sorted(math.log(lr / 0.1) for lr in edge.informative_points(sharp, 3))
    assert three == pytest.approx([-0.25, 0.0, 0.25], abs=edge.CANDIDATE_STEP)
    lrs = 0.1 * np.exp([-0.4, -0.2, -0.1, 0.1, 0.2, 0.4])
    wide = edge.posterior(lrs, [True, True, False, True, False, False], _known_spread(0.25))
    pair = [math.log(lr / 0.1) for lr in edge.informative_points(wide, 2)]
    assert pair == pytest.approx([0, 0], abs=edge.CANDIDATE_STEP)


def test_information_placement_finds_a_planted_edge_like_the_default():
    rng = np.random.default_rng(4)
    covered, made = 0, []
    for _ in range(12):
        res = find_edges(planted_trial(math.log(0.1), 0.25, 0.0, rng), start=0.15, parallel=2, precision=0.2,
                         step=2.0, reference=None, placement="info")
        covered += res.estimate.lo <= 0.1 <= res.estimate.hi
        made.append(len(res.trials))
    assert covered >= 10 and max(made) <= 30
    with pytest.raises(Exception, match="placement must be levels or info"):
        find_edges(planted_trial(0.0, 0.25, 0.0, rng), start=1.0, placement="psi")


def test_window_shape_gives_both_edges():
    """stalled (too small) | trained | stalled (too large) | diverged, each seed's edges jittered:
    lr_max sits at the top of the trained window, lr_blowup at the start of divergence (six
    searches: a 95% interval may miss once)."""
    found = []
    for seed in range(6):
        rng = np.random.default_rng(seed)

        def run(lrs, rng=rng):
            out = []
            for lr in lrs:
                top, blow = math.log(0.1) + 0.15 * rng.standard_normal(), math.log(0.8) + 0.15 * rng.standard_normal()
                x = math.log(lr)
                out.append("diverged" if x > blow else "stalled" if x > top or lr < 1e-3 else "trained")
            return out

        found.append(find_edges(run, start=0.01, parallel=2, precision=0.15, max_trials=40, reference=0.25))
    assert sum(r.bracket[0] < 0.1 < r.bracket[1] for r in found) >= 5
    assert sum(r.blowup_bracket[0] < 0.8 < r.blowup_bracket[1] for r in found) >= 5
    assert all(r.blowup_status == "bracketed" for r in found)
    assert all(any(lr <= 0.3 * r.lr_max for lr, _ in r.trials) for r in found)   # the reference at 0.25 x lr_max


def test_nothing_trains_and_trained_at_the_cap_are_results():
    never = find_edges(lambda lrs: ["stalled"] * len(lrs), start=0.1, lr_min=1e-3, lr_max_cap=10.0)
    assert never.status == "nothing_trains" and never.lr_max is None
    always = find_edges(lambda lrs: ["trained"] * len(lrs), start=0.1, lr_max_cap=10.0)
    assert always.status == "lower_bound" and always.lr_max == 10.0 and always.bracket == (10.0, None)


def test_locate_tries_a_stalled_lr_again_before_it_says_nothing_trains():
    """Near a budget's limit only some seeds train at a good lr: here the first trial at each lr
    stalls and the second trains below 0.05 (diverges from 0.2). One pass over the lattice finds
    nothing, and the gaps under the divergence (0.05-0.2) hold nothing to find; a second look at each
    lattice lr that stalled, highest first, finds the window. Where nothing ever trains, still
    nothing_trains."""
    seen: dict = {}

    def half(lrs):
        out = []
        for lr in lrs:
            seen[lr] = seen.get(lr, 0) + 1
            out.append("diverged" if lr >= 0.2 else "trained" if seen[lr] > 1 and lr < 0.05 else "stalled")
        return out

    found = find_edges(half, start=0.1, lr_min=1e-3, lr_max_cap=10.0, reference=None)
    assert found.status == "bracketed" and found.lr_max < 0.2
    first_trained = next(i for i, (_, o) in enumerate(found.trials) if o == "trained")
    assert found.trials[first_trained][0] == max(lr for lr, o in found.trials[:first_trained] if o == "stalled"
                                                 and lr < 0.05)
    never = find_edges(lambda lrs: ["stalled"] * len(lrs), start=0.1, lr_min=1e-3, lr_max_cap=10.0)
    assert never.status == "nothing_trains" and never.lr_max is None


def test_priors_from_earlier_points_share_their_spread():
    rng = np.random.default_rng(5)
    earlier = []
    for mu in (math.log(0.05), math.log(0.2)):
        lrs = list(np.exp(rng.uniform(mu - 0.5, mu + 0.5, size=30)))
        earlier.append(list(zip(lrs, planted_trial(mu, 0.1, 0.0, rng)(lrs))))
    priors = priors_from(earlier)
    assert priors.trained.shape == edge.NUISANCE
    spreads = np.exp(priors.trained - priors.trained.max()).sum(axis=(1, 2))
    assert edge.SPREADS[np.argmax(spreads)] < 0.25      # sharp edges seen before: a sharp one expected


def test_fit_with_measured_errors_covers_a_planted_exponent():
    rng = np.random.default_rng(6)
    B = np.array([128, 256, 512])
    covered = 0
    for _ in range(400):
        se = rng.uniform(0.05, 0.15, size=3)
        y = np.log(1e-3) + 1.0 * np.log(B) + se * rng.standard_normal(3)
        fit = theory.fit_power_law(B, np.exp(y), se=se)
        covered += fit.ci_low <= 1.0 <= fit.ci_high
    assert 0.92 <= covered / 400 <= 0.98


def test_simulated_sweeps_are_calibrated_and_mostly_decisive():
    """The issue's bar, on the mission's 3 batch sizes over 4x at the default precision:
    the exponent's interval covers the truth in 90-98% of sweeps, and most sweeps are decisive."""
    sgd = calibrate(100, exponent=1.0, expected=1.0, seed=0)     # 1000 in scripts/calibrate_search.py
    assert 0.90 <= sgd["coverage"] <= 0.98
    assert sgd["point_coverage"] >= 0.88
    assert sgd["decisive"] >= 0.70            # 0.80 over 1000 sweeps (results/calibration)
    assert sgd["trials_per_point"] <= 26
    adam_wrong = calibrate(30, exponent=1.0, expected=0.5, seed=1)   # SGD-like data, sqrt law tested
    assert adam_wrong["correct"] >= 0.65                               # called inconsistent


def test_a_plateau_of_one_half_is_read_as_lapses_not_as_a_wide_edge():
    """Half of the seeds stall at every lr below a sharp edge, down to any lr (harsher than the bank
    results/outcome_bank/barely_B8, where the replays cover its edge in 90-95%): lapses up to one half
    let the interval cover the edge in 65-68% of searches, against 20% with the 5% lapses of the
    model before. Not yet the nominal 95%: the search places its trials low after early stalls."""
    rng = np.random.default_rng(7)
    truth = 0.03

    def run(lrs):
        return ["trained" if lr < truth * math.exp(rng.normal(0, 0.05)) and rng.random() < 0.5
                else "stalled" if lr < 0.2 else "diverged" for lr in lrs]

    found = [find_edges(run, 0.05, precision=0.3, parallel=2, reference=None) for _ in range(40)]
    fits = [r.estimate for r in found if r.estimate is not None]
    assert len(fits) >= 36
    covered = np.mean([f.lo <= truth <= f.hi for f in fits])
    assert covered >= 0.55, covered
    assert max(f.lapse for f in fits) >= 0.2              # the plateau is seen as lapses, where it is seen


def test_trials_in_bands_fail_the_predictive_check_and_a_planted_edge_passes():
    """Successes and failures that alternate in bands of lr are not one edge (psignifit's
    posterior predictive check says so, and the point is inconclusive); a sigmoid's trials are."""
    rng = np.random.default_rng(0)
    lrs = np.exp(rng.uniform(math.log(0.01), math.log(0.16), 40))
    banded = [int(math.log(lr / 0.01) / math.log(2)) % 2 == 0 for lr in lrs]
    fit = edge.fit_edge(lrs, banded)
    assert fit.fit_p < edge.MIN_FIT_P and "do not follow one edge" in edge.problem(fit)
    p = []
    for _ in range(30):
        x = np.exp(rng.uniform(math.log(0.01), math.log(0.3), 25))
        ok = np.log(x) < rng.normal(math.log(0.08), 0.3, size=x.size)
        if edge.has_edge(ok):
            p.append(edge.fit_edge(x, ok).fit_p)
    assert np.mean(np.array(p) < edge.MIN_FIT_P) <= 0.05 and np.median(p) > 0.2


def test_the_points_lr_max_is_fitted_from_every_trial_the_reference_included():
    """One number per point: the search's lr_max is the fit of all its trials, the reference trial at
    0.25 x lr_max included, which is what the report refits (alone in its group, the same number).
    Half of the seeds stall below the edge here, so a reference trial that trains brings stalled
    trials under the old floor into the fit; fitted before it, lr_max differed from the report's."""
    from spectral_sweep.search.adaptive import upper_edge_data

    rng = np.random.default_rng(11)

    def run(lrs):
        return ["trained" if lr < 0.03 * math.exp(rng.normal(0, 0.1)) and rng.random() < 0.5
                else "stalled" if lr < 0.2 else "diverged" for lr in lrs]

    moved = 0
    for _ in range(6):
        res = find_edges(run, 0.05, precision=0.3, parallel=2, reference=0.25)
        outcomes = [(lr, t) for lr, t in res.trials]
        refit = edge.fit_group([upper_edge_data(outcomes)])[0]
        assert res.lr_max == pytest.approx(refit.lr, rel=1e-12) and res.bracket == pytest.approx((refit.lo, refit.hi))
        before = edge.fit_edge(*upper_edge_data(outcomes[:-1]))
        moved += not math.isclose(before.lr, refit.lr, rel_tol=1e-3)
    assert moved >= 1     # the reference trial changed some point's fit: the case this guards
