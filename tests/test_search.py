"""find_max_lr against known stability edges: a hidden threshold, and gradient descent on
quadratics whose edge is 2(1 + momentum) / lambda_max exactly."""

import json
import math

import pytest
import torch

from spectral_sweep.errors import UsageError
from spectral_sweep.search.bisect import TOLERANCE, bisections_needed, find_max_lr, grid_search
from spectral_sweep.trial.outcomes import outcome_of


def bracketing_steps(start, edge, step):
    """Trials a geometric walk from ``start`` needs until one trial lies on each side of ``edge``
    (stable means lr <= edge): up until lr > edge, or down until lr <= edge."""
    k = math.log(edge / start) / math.log(step)
    return 1 + (math.floor(k) + 1 if k >= 0 else math.ceil(-k))


@pytest.mark.parametrize("edge", [3.7e-4, 0.02, 0.05, 0.9, 42.0])
@pytest.mark.parametrize("step", [2.0, 4.0])
def test_hidden_threshold_is_bracketed_within_tolerance_in_bounded_trials(edge, step):
    calls = []

    def trial(lr):
        calls.append(lr)
        return lr <= edge

    res = find_max_lr(trial, start=0.05, step=step)
    lo, hi = res.bracket
    assert res.status == "bracketed"
    assert lo <= edge < hi
    assert hi / lo <= TOLERANCE * (1 + 1e-9)
    assert res.lr_max == lo
    bound = bracketing_steps(0.05, edge, step) + bisections_needed(step)
    assert len(calls) <= bound, (len(calls), bound)
    assert [lr for lr, _ in res.trials] == calls


def test_bisections_needed_is_the_log_count():
    assert bisections_needed(4.0, 2 ** 0.25) == 3      # 4 -> 2 -> 2^1/2 -> 2^1/4
    assert bisections_needed(2.0, 2 ** 0.25) == 2
    assert bisections_needed(1.1, 2 ** 0.25) == 0


def test_edges_are_results_not_errors():
    always = find_max_lr(lambda lr: True, start=1.0, lr_max_cap=50.0)
    assert always.status == "lower_bound" and always.lr_max == 50.0 and always.bracket == (50.0, None)
    never = find_max_lr(lambda lr: False, start=1.0, lr_min=1e-3)
    assert never.status == "nothing_trains" and never.lr_max is None and never.bracket == (None, None)
    assert never.blowup_status == "no_stable_lr" and never.blowup_bracket == (None, 1e-3)


def test_outcomes_may_be_objects_or_mappings():
    res = find_max_lr(lambda lr: {"stable": lr < 0.3}, start=0.1)   # a record made before outcomes
    assert res.bracket[0] < 0.3 <= res.bracket[1]
    res = find_max_lr(lambda lr: {"outcome": "trained" if lr < 0.3 else "stalled"}, start=0.1)
    assert res.bracket[0] < 0.3 <= res.bracket[1]
    with pytest.raises(ValueError, match="outcome"):
        outcome_of("stable")


# --- three outcomes: planted regions stalled | trained | stalled | diverged ------------------------

def planted(low, high, blowup, calls=None):
    """A trial that stalls below ``low`` (too small), trains in [low, high), stalls again in
    [high, blowup) (too large to learn, too small to blow up) and diverges from ``blowup`` on."""
    def trial(lr):
        if calls is not None:
            calls.append(lr)
        if lr >= blowup:
            return "diverged"
        return "trained" if low <= lr < high else "stalled"
    return trial


def within(bracket, edge):
    lo, hi = bracket
    return lo < edge <= hi and hi / lo <= TOLERANCE * (1 + 1e-9)


@pytest.mark.parametrize("start", [1e-4, 3e-3, 0.02, 0.05, 0.3, 2.0, 40.0])
@pytest.mark.parametrize("shape", [(0.01, 0.15, 0.15), (0.01, 0.15, 1.3), (1e-3, 0.08, 9.0),
                                   (0.03, 0.09, 0.5)])
def test_both_edges_are_found_wherever_the_search_starts(start, shape):
    low, high, blowup = shape
    calls = []
    res = find_max_lr(planted(low, high, blowup, calls), start=start)
    assert res.status == "bracketed" and within(res.bracket, high), res
    assert res.lr_max == res.bracket[0]
    assert res.blowup_status == "bracketed" and within(res.blowup_bracket, blowup), res
    assert res.non_monotone == []
    assert len(calls) == len(set(calls)), "no lr is trained twice"
    assert len(calls) <= 20


def test_coinciding_edges_cost_no_extra_trials():
    """Trained straight into divergence: the blow-up bracket is the lr_max bracket, for free."""
    calls = []
    res = find_max_lr(planted(0.01, 0.2, 0.2, calls), start=0.05)
    assert res.blowup_bracket == res.bracket
    alone = []
    find_max_lr(lambda lr: alone.append(lr) or lr < 0.2, start=0.05)
    assert len(calls) == len(alone)


def test_blowup_extension_can_be_switched_off():
    calls = []
    res = find_max_lr(planted(0.01, 0.1, 3.0, calls), start=0.05, blowup=False)
    assert within(res.bracket, 0.1)
    assert max(calls) < 3.0 and res.blowup_status == "lower_bound"


def test_a_narrow_window_between_stall_and_divergence_is_found_by_the_finer_pass():
    """Trained only in [0.06, 0.1): lattice 0.05 * 4^k steps over it; the midpoints do not."""
    res = find_max_lr(planted(0.06, 0.1, 0.1), start=0.05, step=4.0)
    assert res.status == "bracketed" and within(res.bracket, 0.1)


def test_nothing_trains_is_a_status_never_a_number():
    calls = []
    res = find_max_lr(planted(1.0, 1.0, 5.0, calls), start=0.05, lr_min=1e-4)
    assert res.status == "nothing_trains" and res.lr_max is None and res.bracket == (None, None)
    assert within(res.blowup_bracket, 5.0)       # the blow-up edge is still measured
    assert len(calls) <= 25


def test_trained_above_a_failed_trial_is_flagged():
    """An island that trains above a stall between trained lrs breaks monotonicity: say so."""
    def trial(lr):
        if lr >= 2.0:
            return "diverged"
        return "stalled" if 0.1 <= lr < 0.3 or lr < 0.01 else "trained"
    res = find_max_lr(trial, start=0.05)
    grid = grid_search(trial, [0.003, 0.03, 0.1, 0.5, 3.0])
    assert grid.lr_max == 0.5 and grid.non_monotone == ["lr=0.1 stalled below lr=0.5 that trained"]
    assert all("below" in line for line in res.non_monotone)
    flaky = grid_search(lambda lr: "diverged" if lr == 0.1 else "trained", [0.03, 0.1, 0.3])
    assert "lr=0.3 did not diverge above lr=0.1 that did" in flaky.non_monotone


def test_grid_search_reports_both_edges():
    res = grid_search(planted(0.005, 0.05, 0.5), [0.001, 0.01, 0.03, 0.1, 0.3, 1.0])
    assert (res.lr_max, res.bracket, res.status) == (0.03, (0.03, 0.1), "bracketed")
    assert (res.lr_blowup, res.blowup_bracket, res.blowup_status) == (0.3, (0.3, 1.0), "bracketed")
    none = grid_search(planted(1, 1, 1), [0.1, 0.3])
    assert none.status == "nothing_trains" and none.lr_max is None


def test_bad_arguments_raise_usage_error():
    with pytest.raises(UsageError):
        find_max_lr(lambda lr: True, start=-1.0)
    with pytest.raises(UsageError):
        find_max_lr(lambda lr: True, start=1.0, tolerance=1.0)
    with pytest.raises(UsageError):
        grid_search(lambda lr: True, [])


def test_grid_search_reports_largest_trained_and_next_grid_point():
    res = grid_search(lambda lr: lr < 0.05, [0.1, 0.01, 0.03, 0.3])
    assert res.lr_max == 0.03 and res.bracket == (0.03, 0.1) and len(res.trials) == 4


# --- gradient descent on quadratics: the edge is known in closed form -----------------------------

def gd_trial(A, b, momentum=0.0, steps=300, factor=2.0):
    """Full-batch (heavy-ball) GD on f(w) = 1/2 w^T A w - b^T w with the trainer's divergence rule."""
    def loss(w):
        return 0.5 * w @ A @ w - b @ w

    def trial(lr):
        w = torch.zeros(len(b), dtype=torch.float64)
        v = torch.zeros_like(w)
        # the loss is shifted by its minimum so that "x initial" means the same as for a NN loss
        f_min = loss(torch.linalg.solve(A, b))
        f0 = loss(w) - f_min
        for _ in range(steps):
            v = momentum * v + (A @ w - b)
            w = w - lr * v
            f = loss(w) - f_min
            if not torch.isfinite(f) or f > factor * f0:
                return False
        return True
    return trial


def random_quadratic(n=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    eigs = torch.logspace(-2, 1, n, dtype=torch.float64)
    return Q @ torch.diag(eigs) @ Q.T, torch.randn(n, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_gradient_descent_edge_is_two_one_plus_beta_over_lambda_max(momentum):
    A, b = random_quadratic()
    lam = torch.linalg.eigvalsh(A).max().item()
    edge = 2 * (1 + momentum) / lam
    res = find_max_lr(gd_trial(A, b, momentum, steps=2000), start=1e-3)
    lo, hi = res.bracket
    assert lo <= edge * 1.01 and hi >= edge * 0.99
    assert abs(math.log(res.lr_max / edge)) <= math.log(TOLERANCE)


def least_squares(n=512, d=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = X @ torch.randn(d, generator=g, dtype=torch.float64) + 0.1 * torch.randn(n, generator=g, dtype=torch.float64)
    return X, y


def sgd_trial(X, y, batch, epochs=4, factor=2.0, seed=0):
    """Mini-batch SGD on least squares, same divergence rule; the loss is judged on the full data."""
    n = len(y)

    def full_loss(w):
        return 0.5 * ((X @ w - y) ** 2).mean()

    def trial(lr):
        g = torch.Generator().manual_seed(seed)
        w = torch.zeros(X.shape[1], dtype=torch.float64)
        f0 = full_loss(w)
        for _ in range(epochs):
            for idx in torch.randperm(n, generator=g).split(batch):
                Xb, yb = X[idx], y[idx]
                w = w - lr * Xb.T @ (Xb @ w - yb) / len(idx)
                f = full_loss(w)
                if not torch.isfinite(f) or f > factor * f0:
                    return False
        return full_loss(w) < f0
    return trial


def test_minibatch_sgd_lr_max_grows_with_batch_size_and_stays_below_full_batch_edge():
    X, y = least_squares()
    full_edge = 2 / torch.linalg.eigvalsh(X.T @ X / len(y)).max().item()
    lr_max = [find_max_lr(sgd_trial(X, y, B), start=0.01).lr_max for B in (1, 4, 16, 128)]
    assert all(a < b for a, b in zip(lr_max, lr_max[1:])), lr_max
    assert lr_max[-1] <= full_edge * TOLERANCE


def test_warm_start_from_a_neighbouring_batch_size_needs_fewer_trials():
    X, y = least_squares()
    cold_start = 1e-3
    small = find_max_lr(sgd_trial(X, y, 4), start=cold_start)
    cold = find_max_lr(sgd_trial(X, y, 16), start=cold_start)
    guess = small.lr_max * (16 / 4)                           # the linear law under test
    warm = find_max_lr(sgd_trial(X, y, 16), start=guess, step=2.0)
    assert len(warm.trials) < len(cold.trials)
    assert abs(math.log(warm.lr_max / cold.lr_max)) <= math.log(TOLERANCE) + 1e-9


def test_a_trained_lr_met_while_bisecting_the_blowup_edge_becomes_lr_max():
    """Trained below 0.1, stalled in [0.1, 0.15) except an island [0.13, 0.145) that trains, diverged
    from 0.16: lr_max is the largest lr that trained, whichever phase met it, and it is flagged."""
    def trial(lr):
        if lr >= 0.16:
            return "diverged"
        return "trained" if lr < 0.1 or 0.13 <= lr < 0.145 else "stalled"
    res = find_max_lr(trial, start=0.05, step=4.0)
    trained = [lr for lr, o in res.trials if o == "trained"]
    assert res.lr_max == max(trained)
    # 0.05 trains, 0.2 diverges, 0.1 stalls, the edge of training is bisected at (0.05, 0.1); the
    # blow-up bisection of (0.1, 0.2) meets the island at 0.141
    assert 0.13 <= res.bracket[0] < 0.145 and res.bracket[1] <= res.bracket[0] * TOLERANCE * (1 + 1e-9)
    assert res.non_monotone == ["lr=0.1 stalled below lr=0.1414 that trained"]


def test_a_reference_trial_below_the_edge_shows_what_a_comfortable_lr_reaches():
    calls = []
    res = find_max_lr(planted(0.001, 0.2, 0.2, calls), start=0.05, reference=0.25)
    assert calls[-1] == pytest.approx(res.lr_max * 0.25) and dict(res.trials)[calls[-1]] == "trained"
    again = []
    find_max_lr(planted(0.001, 0.2, 0.2, again), start=0.01, reference=0.25)   # started far below
    assert len(again) == len(set(again)) and min(again) == 0.01   # no extra trial was needed
    plain = []
    find_max_lr(planted(0.001, 0.2, 0.2, plain), start=0.05)
    assert len(calls) == len(plain) + 1


def test_bisect_stops_at_search_max_trials_and_says_what_its_trials_show():
    """search=bisect made 27 trials at search.max_trials=4: the cap holds, each edge is what its
    trials show (a bracket wider than the tolerance, a lower bound, nothing trained), and the
    reference trial comes on top of the cap, as in search=adaptive."""
    from spectral_sweep.config.schema import compose
    from spectral_sweep.point.run import trial_cap
    from spectral_sweep.search.bisect import locate

    def search(*overrides):
        return compose("search=bisect", *overrides).search

    free = []
    locate(search("search.reference=null"), planted(0.01, 0.15, 1.3, free), lr=0.05)
    assert len(free) > 4                                              # the uncapped search goes on
    calls = []
    res = locate(search("search.max_trials=4", "search.reference=null"), planted(0.01, 0.15, 1.3, calls), lr=0.05)
    assert calls == free[:4] and len(res.trials) == 4 and res.capped
    # 0.05 trains, 0.2 stalls, 0.1 and 0.141 train: the bracket the 4 trials give, not yet 2^(1/4)
    assert res.status == "bracketed" and res.bracket == (calls[3], calls[1]) and res.ratio > TOLERANCE
    assert res.blowup_status == "lower_bound" and res.blowup_bracket == (calls[1], None)   # nothing diverged yet
    with_reference = locate(search("search.max_trials=4", "search.reference=0.25"), planted(0.01, 0.15, 1.3),
                            lr=0.05)
    assert len(with_reference.trials) == 5 and with_reference.trials[-1][0] == pytest.approx(res.lr_max * 0.25)
    one = locate(search("search.max_trials=1"), planted(0.01, 0.15, 1.3), lr=0.05)
    assert (one.status, one.bracket, one.capped) == ("lower_bound", (0.05, None), True)
    none = locate(search("search.max_trials=3"), planted(1.0, 1.0, 5.0), lr=0.05)
    assert len(none.trials) == 3 and none.status == "nothing_trains" and none.capped
    uncapped = locate(search(), planted(0.01, 0.15, 1.3), lr=0.05)
    assert not uncapped.capped and uncapped.ratio <= TOLERANCE * (1 + 1e-9)
    # the plan line's "at most N trials a point": the edges' cap and the reference, and no lr_opt trials
    assert trial_cap(search("search.max_trials=4", "search.reference=0.25", "search.optimum=true")) == 5


def test_a_bisect_job_stopped_at_its_cap_says_so_in_its_line(tmp_path, capsys):
    from test_cli import TINY

    from spectral_sweep.config.schema import compose
    from spectral_sweep.point import run as job

    config = compose(*TINY, "search=bisect", "search.max_trials=2", "search.reference=null", "optimizer.lr=0.05",
                     "batch=16", "device=cpu", "train.channels_last=false")
    rec = job.run_point(config, tmp_path / "b16")
    assert len(rec.trials) == 2 and rec.search == "bisect" and rec.capped
    assert json.loads((tmp_path / "b16" / "record.json").read_text())["capped"] is True
    assert "2 trials (stopped at search.max_trials=2)" in capsys.readouterr().out
    free = job.run_point(compose(*TINY, "search=bisect", "search.reference=null", "optimizer.lr=0.05", "batch=16",
                                 "device=cpu", "train.channels_last=false", "train.steps=2"), tmp_path / "free")
    assert not free.capped


def test_the_plan_says_one_trial_in_flight_where_the_search_runs_one_at_a_time(tmp_path):
    """Only the adaptive search runs trials in rounds of K; bisect, grid, fixed and a learner that
    chooses its own lr run one after another, and the plan line says so."""
    from test_cli import TINY

    from spectral_sweep import preflight

    def plan(*args):
        return preflight.check_command([*TINY, "search.parallel=2", f"out_dir={tmp_path}", *args]).summary()

    assert "with 2 in flight" in plan("search=adaptive")
    for args in (["search=bisect"], ["search=grid"], ["search=fixed"], ["optimizer=lanczos_sgd", "search=fixed"]):
        assert "with 1 in flight" in plan(*args), args
    # a learner sets its own lr: one trial whatever the search, and the plan's cap says so
    assert "at most 1 trial a point" in plan("optimizer=lanczos_sgd")
    assert "at most 31 trials a point" in plan("optimizer=sgd,lanczos_sgd")     # the sweep's largest
