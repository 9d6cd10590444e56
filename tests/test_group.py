"""A later point stops once its group's verdict no longer depends on it (search/group.py)."""

import math
from types import SimpleNamespace

import numpy as np
from scipy.stats import norm

from spectral_sweep import theory
from spectral_sweep.search import edge
from spectral_sweep.search.adaptive import find_edges
from spectral_sweep.search.calibration import calibrate, planted_trial
from spectral_sweep.search.group import settles_verdict


class Gaussian:
    """A posterior of log lr_max known exactly: normal, centred at log ``lr``, std ``sd``, on a fine grid."""

    def __init__(self, lr: float, sd: float):
        self.mu = np.arange(math.log(lr) - 6 * sd, math.log(lr) + 6 * sd, sd / 50)
        self.pmf = norm.pdf(self.mu, math.log(lr), sd)
        self.pmf /= self.pmf.sum()
        self.sd = sd

    def mu_marginal(self):
        return self.pmf

    def quantiles(self, levels, pmf=None):
        return edge.EdgePosterior.quantiles(self, levels, self.pmf)

    def half_width(self):
        return 1.96 * self.sd

    def log_se(self, pmf=None):
        return edge.EdgePosterior.log_se(self, pmf)


LINE = [(8, 0.01, 0.05), (16, 0.02, 0.05)]     # two points on lr = B / 800, each known to +-10%


def verdicts(earlier, batch, post, expected):
    """(verdict, direction) with this point at each end of its 95% interval: the rule's known answer."""
    sizes, lrs, ses = zip(*earlier)
    out = []
    for x in post.quantiles([0.025, 0.975]):
        fit = theory.fit_power_law([*sizes, batch], [*lrs, math.exp(x)], se=[*ses, post.sd])
        out.append((theory.verdict(fit, expected), theory.direction(fit, expected)))
    return out


def test_a_point_whose_whole_interval_gives_one_verdict_settles_and_one_that_could_change_it_does_not():
    """Two points with a slope of 3/4, the linear law tested: B = 32 on their line, known to +-0.2,
    leaves the exponent short of 1 wherever it lies; known to +-0.3, at its top the exponent reaches 1."""
    group = [(8, 0.01, 0.05), (16, 0.01 * 2 ** 0.75, 0.05)]
    narrow, wide = Gaussian(0.01 * 4 ** 0.75, 0.1), Gaussian(0.01 * 4 ** 0.75, 0.15)
    assert verdicts(group, 32, narrow, 1.0) == [("inconsistent", "shallower")] * 2
    assert settles_verdict(group, 32, expected=1.0, loosest=0.5)(narrow)
    assert [v for v, _ in verdicts(group, 32, wide, 1.0)] == ["inconsistent", "consistent"]
    assert not settles_verdict(group, 32, expected=1.0, loosest=0.5)(wide)


def test_a_point_looser_than_verdict_precision_never_settles_however_clear_the_verdict():
    clear = Gaussian(0.04, 0.15)                    # +-0.29: lr ~ B tested against 1/2, inconsistent throughout
    assert verdicts(LINE, 32, clear, 0.5) == [("inconsistent", "steeper")] * 2
    assert not settles_verdict(LINE, 32, expected=0.5, loosest=0.25)(clear)
    assert settles_verdict(LINE, 32, expected=0.5, loosest=0.3)(clear)


def test_the_first_two_points_of_a_group_and_a_switched_off_rule_never_settle():
    assert settles_verdict(LINE[:1], 32, expected=1.0, loosest=0.5) is None
    assert settles_verdict([], 32, expected=1.0, loosest=0.5) is None
    assert settles_verdict(LINE, 32, expected=1.0, loosest=None) is None
    # a point without an interval (lr_max unknown, or no error) does not count among the two
    assert settles_verdict([LINE[0], (16, None, None)], 32, expected=1.0, loosest=0.5) is None


def test_a_settled_search_stops_early_says_so_and_keeps_the_interval_its_trials_give():
    """A planted edge at B = 32 on the line of two earlier points: the search stops before +-0.2,
    says ``settled``, and its interval is the posterior of the trials it made (it covers the edge)."""
    truth = 0.04
    rng = np.random.default_rng(3)
    plain = find_edges(planted_trial(math.log(truth), 0.25, 0.0, rng), 0.05, precision=0.2, parallel=2,
                       reference=None)
    rng = np.random.default_rng(3)
    early = find_edges(planted_trial(math.log(truth), 0.25, 0.0, rng), 0.05, precision=0.2, parallel=2,
                       reference=None, settled=settles_verdict(LINE, 32, expected=1.0, loosest=0.5))
    assert early.settled and not plain.settled
    assert len(early.trials) < len(plain.trials)
    assert 0.2 < early.estimate.half_width <= 0.5
    assert early.bracket[0] <= truth <= early.bracket[1]
    refit = edge.posterior(*zip(*[(lr, o == "trained") for lr, o in early.trials])).fit()
    assert math.isclose(refit.lr, early.lr_max, rel_tol=1e-9)


def test_on_many_batch_sizes_later_points_settle_saving_trials_and_the_exponent_still_covers():
    """Eight batch sizes over 128x at precision 0.2, 10 simulated sweeps each way on the same seeds
    (150 in results/calibration: 22.5 -> 16.4 trials a point, coverage 0.967 -> 0.933): once the line
    is clear, most later points stop at +-0.5 or less."""
    kw = dict(batch_sizes=(8, 16, 32, 64, 128, 256, 512, 1024), exponent=1.0, expected=1.0, precision=0.2, seed=5)
    off, on = calibrate(10, verdict_precision=None, **kw), calibrate(10, verdict_precision=0.5, **kw)
    assert off["settled"] == 0 and on["settled"] >= 0.3
    assert on["trials_per_point"] <= 0.85 * off["trials_per_point"]
    assert on["coverage"] >= 0.9 and on["point_coverage"] >= 0.88
    assert on["decisive"] == off["decisive"] == 1.0


class PlantedRunner:
    """What search_adaptive asks of a TrialRunner: rounds of fresh-seed trials, K at a time."""

    in_flight = 2
    data = SimpleNamespace(num_classes=None, test=None)      # outcomes only: no judge's noise to measure

    def __init__(self, lr: float, seed: int):
        self.run_round = planted_trial(math.log(lr), 0.25, 0.0, np.random.default_rng(seed))


def test_a_job_settles_from_its_groups_earlier_records_and_its_line_says_so():
    """The job reads the earlier points' records (lr_max, its error, bracketed or not) and the law
    under test from its optimizer; with search.verdict_precision=null it refines to the precision."""
    from spectral_sweep.config.schema import compose
    from spectral_sweep.point import run as job
    from spectral_sweep.point.record import JobRecord

    earlier = [JobRecord(model="m", dataset="d", optimizer="sgd", batch_size=b, trials=[], lr_max=lr, lr_max_se=se,
                         lr_max_status="bracketed") for b, lr, se in LINE]
    earlier.append(JobRecord(model="m", dataset="d", optimizer="sgd", batch_size=4, trials=[], lr_max=0.5,
                             lr_max_se=0.05, lr_max_status="lower_bound"))          # not a point of the line
    found = {}
    for setting in ("0.5", "null"):
        config = compose("batch=32", "optimizer=sgd", "search.optimum=false", "search.reference=null",
                         f"search.verdict_precision={setting}")
        found[setting] = job.search_adaptive(config, PlantedRunner(0.04, seed=3), 0.05, earlier)
    assert found["0.5"].settled and not found["null"].settled
    assert len(found["0.5"].trials) < len(found["null"].trials)
    line = job._settled_text(found["0.5"], 0.2)
    assert line.startswith(", stopped at +-0.") and "short of search.precision=0.2" in line
    assert job._settled_text(found["null"], 0.2) == ""


def test_a_job_whose_trials_end_within_the_test_sets_noise_says_inconclusive():
    """The job measures the judge's noise on its own data (10 classes; 64 or 1,000 test images):
    the same trials, every finite one ending at accuracy 0.2-0.3 (trained above 0.25), are decided
    by 64 images' noise and the point is inconclusive; on 1,000 images (floor 0.145) they are not."""
    from spectral_sweep.config.schema import compose
    from spectral_sweep.point import run as job

    class NearTheFloor(PlantedRunner):
        def __init__(self, test_size: int):
            super().__init__(0.04, seed=3)
            self.data = SimpleNamespace(num_classes=10, test=[None] * test_size)
            planted, rng = self.run_round, np.random.default_rng(0)
            self.run_round = lambda lrs: [{"outcome": o, "test_acc": None if o == "diverged" else
                                           (0.3 if o == "trained" else 0.2) + rng.normal(0, 0.01)}
                                          for o in planted(lrs)]

    config = compose("batch=32", "optimizer=sgd", "search.optimum=false", "search.reference=null")
    small = job.search_adaptive(config, NearTheFloor(64), 0.05, [])
    large = job.search_adaptive(config, NearTheFloor(1000), 0.05, [])
    assert small.status == "inconclusive" and "on 64 test images" in small.problem
    assert large.status == "bracketed" and large.problem is None


def test_the_groups_trend_places_a_points_first_trials_but_never_moves_its_interval():
    """What a point takes from its group is the nuisance (spread, lapses), never the location: the
    same earlier trials moved 10x up in lr (the same spread, another law) give the point the same
    interval from the same trials; only its start (placement) comes from the trend."""
    from spectral_sweep.search.adaptive import priors_from

    rng = np.random.default_rng(2)
    earlier = [[(lr, "trained" if math.log(lr) < rng.normal(math.log(0.02), 0.25) else "diverged")
                for lr in np.exp(rng.uniform(math.log(0.005), math.log(0.08), 25))]]
    moved = [[(lr * 10, o) for lr, o in earlier[0]]]
    trials = [(lr, math.log(lr) < rng.normal(math.log(0.1), 0.25)) for lr in np.exp(rng.uniform(-3.5, -1.5, 20))]
    here, there = (edge.posterior(*zip(*trials), priors_from(e).trained).fit() for e in (earlier, moved))
    assert math.isclose(here.lr, there.lr, rel_tol=0.01) and math.isclose(here.hi, there.hi, rel_tol=0.01)
    assert math.isclose(here.lo, there.lo, rel_tol=0.01)
    alone = edge.posterior(*zip(*trials)).fit()
    assert not math.isclose(alone.hi / alone.lo, here.hi / here.lo, rel_tol=0.01)   # the spread did inform it


def test_a_verdict_decisive_only_just_does_not_settle_a_point():
    """The job judges on the earlier points' own fits, the report refits them with the spread shared:
    a verdict decisive by a hair there may turn inconclusive here. So settling asks for an exponent's
    interval within MARGIN x +-0.25 (+-0.2), not +-0.25."""
    group, point = [(8, 0.01, 0.12), (16, 0.02, 0.12)], Gaussian(0.04, 0.1)
    fit = theory.fit_power_law([8, 16, 32], [0.01, 0.02, 0.04], se=[0.12, 0.12, 0.1])
    assert theory.verdict(fit, 0.5) == "inconsistent" and 0.2 < fit.quantile * fit.stderr < 0.25
    assert not settles_verdict(group, 32, expected=0.5, loosest=0.5)(point)
    assert settles_verdict([(8, 0.01, 0.1), (16, 0.02, 0.1)], 32, expected=0.5, loosest=0.5)(Gaussian(0.04, 0.05))
