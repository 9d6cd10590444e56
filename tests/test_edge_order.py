"""The two edges in order: lr_blowup is never reported below lr_max (a trial that diverged did not
train), and ordering them never moves lr_max."""

import math
from pathlib import Path

import numpy as np
import pytest

from spectral_sweep.point.store import load_records
from spectral_sweep.report.tables import lr_max_table
from spectral_sweep.search import edge
from spectral_sweep.search.adaptive import find_edges, upper_edge_data

ROOT = Path(__file__).resolve().parents[1]


def test_an_edge_bounded_by_its_own_twin_is_itself():
    """Known answer: the same trials twice are one edge. (The larger of two independent draws
    would lift it by half its error: the two posteriors share their trials, they are not independent.)"""
    rng = np.random.default_rng(0)
    x = np.exp(rng.uniform(math.log(0.05), math.log(0.2), size=40))
    post = edge.posterior(x, np.log(x) < math.log(0.1) + 0.2 * rng.standard_normal(40))
    alone, bounded = post.fit(), post.fit(at_least=post)
    assert (bounded.lo, bounded.lr, bounded.hi, bounded.log_se) == (alone.lo, alone.lr, alone.hi, alone.log_se)


def test_where_the_edges_coincide_the_blowup_interval_covers_the_planted_edge():
    """Every failure a divergence: the blow-up edge is the upper edge of training. Its 95% interval
    must cover the planted edge about as often as lr_max's does; as the larger of two independent
    edges it covered it in 77% of these searches."""
    rng = np.random.default_rng(5)
    covered = []
    for _ in range(60):
        res = find_edges(coinciding_edges(rng, lapse=0.0), start=0.05 * math.exp(rng.uniform(-0.7, 0.7)),
                         parallel=2, precision=0.2, step=2.0, reference=None)
        covered.append(res.blowup_bracket[0] <= 0.1 <= res.blowup_bracket[1])
    assert np.mean(covered) >= 0.88


def test_an_edge_far_above_the_other_is_unchanged():
    rng = np.random.default_rng(1)
    x = np.exp(rng.uniform(math.log(0.01), math.log(10.0), size=60))
    lower = edge.posterior(x, np.log(x) < math.log(0.05) + 0.2 * rng.standard_normal(60))
    upper = edge.posterior(x, np.log(x) < math.log(2.0) + 0.2 * rng.standard_normal(60))
    alone, bounded = upper.fit(), upper.fit(at_least=lower)
    assert (bounded.lo, bounded.lr, bounded.hi) == pytest.approx((alone.lo, alone.lr, alone.hi), rel=1e-6)
    assert bounded.log_se == pytest.approx(alone.log_se, rel=0.02)


def coinciding_edges(rng, edge_lr=0.1, spread=0.25, lapse=0.2):
    """Trials whose every failure above the edge is a divergence (both edges are one, as for the
    quickstart's BatchNorm networks), and a fifth of the seeds stall below it (real trials' lapses)."""
    def run(lrs):
        below = [math.log(lr) < rng.normal(math.log(edge_lr), spread) for lr in lrs]
        return [("stalled" if rng.random() < lapse else "trained") if ok else "diverged" for ok in below]
    return run


@pytest.mark.parametrize("seed", [0, 4, 22, 23, 37])
def test_where_the_edges_coincide_the_search_reports_them_in_order(seed):
    """Before, these seeds gave a median or an end of lr_blowup's interval below lr_max's."""
    res = find_edges(coinciding_edges(np.random.default_rng(seed)), start=0.05, parallel=2, precision=0.2,
                     max_trials=30, reference=None)
    assert res.status == "bracketed" and res.blowup_status == "bracketed"
    assert res.lr_blowup >= res.lr_max
    assert all(b >= m for b, m in zip(res.blowup_bracket, res.bracket))
    outcomes = [(lr, str(o)) for lr, o in res.trials]
    assert res.lr_max == pytest.approx(edge.fit_edge(*upper_edge_data(outcomes)).lr, rel=1e-12)


def test_the_report_orders_the_edges_of_the_committed_quickstart():
    """results/quickstart at B = 64 once had lr_blowup 0.277 [0.208, 0.363] against lr_max 0.278: in
    whatever run is committed, each end of lr_blowup's interval lies at or above lr_max's."""
    table = lr_max_table(load_records(ROOT / "results" / "quickstart" / "records"))
    assert len(table) == 4 and table["lr_blowup_status"].eq("bracketed").all()
    for blowup, upper in (("lr_blowup_lo", "lr_lo"), ("lr_blowup", "lr_max"), ("lr_blowup_hi", "lr_hi")):
        assert (table[blowup] >= table[upper]).all(), blowup


def two_edges(mu: float, gap: float, spread: float, rng):
    """Fresh-seed trials with a stalled window: a seed stalls above its edge N(mu, spread^2) and
    diverges above its own N(mu + gap, spread^2) (log lr)."""
    def run(lrs):
        return ["diverged" if math.log(lr) > rng.normal(mu + gap, spread) else
                "stalled" if math.log(lr) > rng.normal(mu, spread) else "trained" for lr in lrs]
    return run


def test_a_looser_blowup_precision_moves_trials_from_the_blowup_edge_to_lr_max_and_both_still_cover():
    """Edges a factor e apart: with search.blowup_precision=1 instead of the default (= precision) the
    blow-up edge stops taking every third trial sooner, so fewer trials land above lr_max's interval,
    its own interval is wider, and both intervals still cover their planted edges. (Measured: it moves
    trials, it does not save them; lr_max's own interval decides when the point stops.)"""
    found = {}
    for loosest in (None, 1.0):
        rng = np.random.default_rng(0)
        found[loosest] = [find_edges(two_edges(math.log(0.05), 1.0, 0.25, rng), 0.05, precision=0.3, parallel=2,
                                     reference=None, blowup_precision=loosest) for _ in range(40)]
    above = {k: np.mean([sum(lr > r.bracket[1] for lr, _ in r.trials) for r in rs]) for k, rs in found.items()}
    width = {k: np.median([r.blowup_estimate.half_width for r in rs]) for k, rs in found.items()}
    assert above[1.0] <= above[None] - 3, above
    assert width[None] <= 0.45 < width[1.0] <= 1.0, width
    for rs in found.values():
        assert np.mean([r.bracket[0] <= 0.05 <= r.bracket[1] for r in rs]) >= 0.9
        assert np.mean([r.blowup_bracket[0] <= 0.05 * math.e <= r.blowup_bracket[1] for r in rs]) >= 0.9
