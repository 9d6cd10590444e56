"""The Lanczos learner and sharpness tracking: known spectra give each rule's lr and momentum,
zero eigenvalues do not become mu, heavy ball converges at its predicted rate, and both hooks run
inside a real trial."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from test_train import Interrupt
from torch import nn

from spectral_sweep.config.dataset import Budget
from spectral_sweep.config.optimizer import AdamConfig, LanczosSGDConfig, LearnerConfig, Rule, SGDConfig
from spectral_sweep.config.schema import compose
from spectral_sweep.config.train import SharpnessConfig, TrainConfig
from spectral_sweep.curvature import lanczos
from spectral_sweep.curvature.learner import (
    _RULE_FORMULAS,
    MU_FLOOR,
    LanczosLearner,
    SharpnessTracker,
    bulk_mu,
    hooks_for,
    learner_rule,
)
from spectral_sweep.data.load import load_dataset
from spectral_sweep.errors import UsageError
from spectral_sweep.theory import stability_limit
from spectral_sweep.trial.optim import build_optimizer
from spectral_sweep.trial.train import TrialSettings, run_trial

CONF = Path(__file__).resolve().parents[1] / "conf"


@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic", seed=0, train_size=512, test_size=64)


def polyak(L, mu):
    sl, sm = math.sqrt(L), math.sqrt(mu)
    return 4 / (sl + sm) ** 2, ((sl - sm) / (sl + sm)) ** 2


# ---------------------------------------------------------------------------------------------
# the pure rules


def test_bulk_rule_removes_the_node_that_carries_most_of_the_mass():
    # the bulk near zero carries 90% of the start vector: mu is the smallest outlier
    assert bulk_mu([1e-4, 0.5, 2.0, 10.0], [0.9, 0.05, 0.03, 0.02]) == 0.5
    # no node above 1/2: mu is simply the smallest positive theta (negative values do not count)
    assert bulk_mu([-0.3, 0.02, 5.0], [0.3, 0.4, 0.3]) == 0.02
    assert bulk_mu([-0.01, 0.3, 5.0], [0.3, 0.4, 0.3]) == 0.3
    # exactly 1/2 is not "exceeds"
    assert bulk_mu([0.01, 1.0, 4.0], [0.5, 0.25, 0.25]) == 0.01
    # the heavy node is the top one (a start vector near the top eigenvector): the rest stays
    assert bulk_mu([0.01, 1.0, 4.0], [0.05, 0.05, 0.9]) == 0.01
    # order of the nodes does not matter, weights stay with their Ritz values
    assert bulk_mu([10.0, 2.0, 1e-4, 0.5], [0.02, 0.03, 0.9, 0.05]) == 0.5
    # a single node is never removed
    assert bulk_mu([3.0], [1.0]) == 3.0
    with pytest.raises(ValueError):
        bulk_mu([1.0, 2.0], [1.0])


def test_mu_is_the_smallest_positive_ritz_value_above_the_noise_floor():
    assert MU_FLOOR == 1e-6
    # exact zeros (and rounding-level values) are not the smallest curvature
    assert bulk_mu([0.0, 0.0, 0.5, 3.0], [0.2, 0.2, 0.3, 0.3]) == 0.5
    assert bulk_mu([-2e-16, 3e-16, 0.5, 3.0], [0.2, 0.2, 0.3, 0.3]) == 0.5
    assert bulk_mu([1e-7, 2e-7, 1.0], [0.3, 0.3, 0.4]) == 1.0           # floor 1e-6 x L
    assert bulk_mu([2e-6, 1.0], [0.5, 0.5]) == 2e-6                     # just above the floor
    assert bulk_mu([1e-3, 1.0], [0.5, 0.5], rel_floor=1e-2) == 1.0
    # nothing trusted above the floor (the bulk node is L itself here): mu is the floor
    assert bulk_mu([1e-9, 4.0], [0.3, 0.7]) == pytest.approx(4e-6)
    assert bulk_mu([0.0, 0.0], [0.5, 0.5]) == 0.0


def test_rules_are_their_formulas():
    assert set(_RULE_FORMULAS) == set(Rule.__members__)   # every rule the config offers has its formula
    theta, weights = [1e-4, 0.5, 2.0, 10.0], [0.9, 0.05, 0.03, 0.02]
    hb = learner_rule(theta, weights, "heavy_ball")
    lr, beta = polyak(10.0, 0.5)
    assert (hb["L"], hb["mu"]) == (10.0, 0.5)
    assert hb["lr"] == pytest.approx(lr) and hb["momentum"] == pytest.approx(beta)
    assert not hb["nesterov"]

    nag = learner_rule(theta, weights, "nesterov")
    k = 10.0 / 0.5
    assert nag["lr"] == pytest.approx(0.1)
    assert nag["momentum"] == pytest.approx((math.sqrt(k) - 1) / (math.sqrt(k) + 1)) and nag["nesterov"]

    # the authors' variant: the median of the (unweighted) Ritz values in place of mu
    ssgd = learner_rule(theta, weights, "ssgd", momentum=0.3)
    assert ssgd["lr"] == pytest.approx(2 / (10.0 + np.median(np.abs(theta))))
    assert ssgd["momentum"] == 0.3 and not ssgd["nesterov"]

    # textbook gradient descent: 2 / (L + mu), no momentum whatever is configured
    gd = learner_rule(theta, weights, "gd", momentum=0.3)
    assert gd["lr"] == pytest.approx(2 / 10.5) and gd["momentum"] == 0.0 and not gd["nesterov"]

    wd = learner_rule(theta, weights, "heavy_ball", weight_decay=0.01)
    assert (wd["L"], wd["mu"]) == pytest.approx((10.01, 0.51))
    assert wd["lr"] == pytest.approx(polyak(10.01, 0.51)[0])

    with pytest.raises(UsageError, match="heavy_ball"):
        learner_rule(theta, weights, "adam")


def test_caps_keep_heavy_ball_polyak_consistent_and_stable():
    theta, weights = [1e-6, 100.0], [0.4, 0.6]        # mu = the floor 1e-4: momentum ~0.996
    free = learner_rule([1e-6, 100.0], [0.4, 0.6], "heavy_ball")
    assert free["momentum"] > 0.99
    capped = learner_rule(theta, weights, "heavy_ball", momentum_cap=0.9)
    assert capped["momentum"] == 0.9
    assert capped["lr"] == pytest.approx((1 + math.sqrt(0.9)) ** 2 / 100.0)
    # Polyak's pair for the mu at which his momentum is 0.9
    mu_eff = 100.0 * ((1 - math.sqrt(0.9)) / (1 + math.sqrt(0.9))) ** 2
    assert capped["lr"] == pytest.approx(polyak(100.0, mu_eff)[0])
    assert capped["lr"] < stability_limit(100.0, "sgd", 0.9)     # inside 2(1 + beta) / L
    assert learner_rule(theta, weights, "heavy_ball", lr_cap=1e-3)["lr"] == 1e-3


# ---------------------------------------------------------------------------------------------
# Lanczos on explicit matrices


def explicit(eigenvalues, seed=0):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((len(eigenvalues), len(eigenvalues))))
    return torch.tensor(q @ np.diag(eigenvalues) @ q.T)


def test_rules_on_lanczos_output_match_the_exact_eigenvalues():
    # a bulk of 450 eigenvalues in [0, 1e-4] and 10 outliers in [0.5, 20]. The bulk is one node
    # (carrying ~98% of the mass) while Lanczos has no more steps than outliers + 1; with more
    # steps it splits the bulk into several light nodes and mu falls into it (see curvature/learner.py).
    rng = np.random.default_rng(1)
    outliers = np.geomspace(0.5, 20.0, 10)
    eigenvalues = np.concatenate([rng.uniform(0, 1e-4, 450), outliers])
    a = explicit(eigenvalues)
    result = lanczos(lambda v: a @ v, len(eigenvalues), iters=11, seed=3)
    assert result.weights[0] > 0.9 and result.ritz_values[0] < 1e-4
    got = learner_rule(result.ritz_values, result.weights, "heavy_ball", momentum_cap=None)
    assert got["L"] == pytest.approx(20.0, rel=1e-6)
    assert got["mu"] == pytest.approx(0.5, rel=1e-3)
    lr, beta = polyak(20.0, 0.5)
    assert got["lr"] == pytest.approx(lr, rel=1e-3) and got["momentum"] == pytest.approx(beta, rel=1e-3)


def test_zero_eigenvalues_do_not_become_mu():
    """A planted quadratic with 4 exact zeros among 20 eigenvalues, seen through the real
    Lanczos as the learner runs it (no restart): the null space is one Ritz value ~1e-16 that
    carries ~1/5 of the mass, too little for the bulk rule. mu must be the smallest positive
    eigenvalue, not the zero (which would push heavy ball's momentum to its cap)."""
    positive = np.geomspace(0.5, 20.0, 16)
    eigenvalues = np.concatenate([np.zeros(4), positive])
    a = explicit(eigenvalues, seed=2)
    found = lanczos(lambda v: a @ v, 20, iters=20, seed=5, restart=False)
    theta, weights = found.ritz_values, found.weights
    assert np.abs(theta).min() < 1e-9 and max(weights) < 0.5     # the zero is there, and kept
    hb = learner_rule(theta, weights, "heavy_ball", momentum_cap=0.99)
    assert hb["L"] == pytest.approx(20.0, rel=1e-9) and hb["mu"] == pytest.approx(0.5, rel=1e-9)
    lr, beta = polyak(20.0, 0.5)
    assert hb["momentum"] == pytest.approx(beta, rel=1e-6) and hb["momentum"] < 0.9
    assert hb["lr"] == pytest.approx(lr, rel=1e-6)
    gd = learner_rule(theta, weights, "gd")
    assert gd["mu"] == hb["mu"] and gd["lr"] == 2.0 / (gd["L"] + gd["mu"])
    assert gd["lr"] == pytest.approx(2.0 / 20.5, rel=1e-9)
    ssgd = learner_rule(theta, weights, "ssgd")
    assert ssgd["lr"] == 2.0 / (ssgd["L"] + float(np.median(np.abs(theta))))


def run_quadratic(a, lr, momentum, steps, nesterov=False):
    """torch SGD on 0.5 w^T A w from w = 1; returns |w_t| for every t."""
    w = nn.Parameter(torch.ones(a.shape[0], dtype=torch.float64))
    opt = torch.optim.SGD([w], lr=lr, momentum=momentum, nesterov=nesterov)
    norms = []
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * w @ (a @ w)).backward()
        opt.step()
        norms.append(float(w.detach().norm()))
    return np.array(norms)


def rate(norms, start, end):
    return (norms[end] / norms[start]) ** (1 / (end - start))


def test_heavy_ball_rule_converges_at_its_predicted_rate_and_beats_gd():
    k = 1000.0
    eigenvalues = np.geomspace(1.0, k, 40)
    a = explicit(eigenvalues)
    found = lanczos(lambda v: a @ v, 40, iters=40, seed=0)
    hb = learner_rule(found.ritz_values, found.weights, "heavy_ball", momentum_cap=None)
    predicted = (math.sqrt(k) - 1) / (math.sqrt(k) + 1)
    assert math.sqrt(hb["momentum"]) == pytest.approx(predicted, rel=1e-6)

    hb_rate = rate(run_quadratic(a, hb["lr"], hb["momentum"], 600), 300, 599)
    gd_rate = rate(run_quadratic(a, 1.0 / hb["L"], 0.0, 600), 300, 599)
    # double roots at the ends of the spectrum add a factor ~t: (600/300)^(1/300) = 1.0023
    assert predicted <= hb_rate <= predicted * 1.005
    assert 1 - 3 / k <= gd_rate <= 1 - 1 / k         # the slowest modes: 1 - lambda_i / L
    assert hb_rate < gd_rate - 0.05
    # nesterov's rule (lr 1/L): ~1 - 1/sqrt(k) per step, also far faster than GD
    nag = learner_rule(found.ritz_values, found.weights, "nesterov", momentum_cap=None)
    nag_rate = rate(run_quadratic(a, nag["lr"], nag["momentum"], 600, nesterov=True), 300, 599)
    assert nag_rate <= 1 - 0.9 / math.sqrt(k)


# ---------------------------------------------------------------------------------------------
# the hooks on a model whose loss is an explicit quadratic


def pooled_linear():
    """A linear map of images pooled to 4x4 (48 inputs) to one output: with the loss below its
    Hessian is exactly X^T X / N on the features X of the batch."""
    torch.manual_seed(0)
    return nn.Sequential(nn.AvgPool2d(8), nn.Flatten(), nn.Linear(48, 1, bias=False))


def half_mse(out, y):
    return 0.5 * ((out.squeeze(-1) - y.double().to(out.dtype) / 10) ** 2).mean()


def exact_hessian(batch):
    x = nn.Sequential(nn.AvgPool2d(8), nn.Flatten())(batch[0]).double()
    return (x.T @ x / len(x)).numpy()


def test_learner_hook_finds_the_exact_spectrum_and_sets_the_optimizer(data):
    model = pooled_linear()
    opt = build_optimizer("lanczos_sgd", model.parameters(), lr=1e-3, momentum=0.0, weight_decay=0.0)
    hook = LanczosLearner(data.train, "cpu", train_batch=64, loss_fn=half_mse,
                          options=LearnerConfig(every=50, iters=48, batch=64, rule="heavy_ball",
                                                lr_cap=None, momentum_cap=None))
    eigenvalues = np.linalg.eigvalsh(exact_hessian(hook.batch))
    L, mu = eigenvalues.max(), eigenvalues.min()
    lr, beta = polyak(L, mu)
    x, y = hook.batch
    losses = []
    for step in range(200):
        hook.before_step(step, model, opt)
        assert opt.param_groups[0]["lr"] == hook.current["lr"]
        assert opt.param_groups[0]["momentum"] == hook.current["momentum"]
        loss = half_mse(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    log = hook.log()
    assert [r["step"] for r in log["refreshes"]] == [0, 50, 100, 150]
    for r in log["refreshes"]:   # the Hessian of a quadratic is the same at every refresh
        assert max(r["weights"]) < 0.5      # no bulk here: mu is the smallest eigenvalue
        assert r["L"] == pytest.approx(L, rel=1e-6) and r["mu"] == pytest.approx(mu, rel=1e-4)
        assert r["lr"] == pytest.approx(lr, rel=1e-4) and r["momentum"] == pytest.approx(beta, rel=1e-4)
        assert r["products"] == 48
        assert r["cost_gradients"] == pytest.approx(48 * 2 * 64 / 64)
    assert log["cost_gradients"] == pytest.approx(4 * 96)
    # kappa ~ 2000: Polyak's heavy ball first grows ~10x (a known transient), then converges
    assert losses[-1] < 0.5 * losses[0]


def test_sharpness_tracker_reports_the_true_top_eigenvalue_and_the_limit(data):
    model = pooled_linear()
    opt = build_optimizer("sgd", model.parameters(), lr=0.01, momentum=0.9)
    hook = SharpnessTracker(data.train, "cpu", every=2, batch=64, loss_fn=half_mse)
    top = np.linalg.eigvalsh(exact_hessian(hook.batch)).max()
    for step in range(5):
        hook.before_step(step, model, opt)
    entries = hook.log()["measurements"]
    assert [e["step"] for e in entries] == [0, 2, 4]
    for e in entries:
        assert e["lambda_max"] == pytest.approx(top, rel=1e-2)
        assert e["limit"] == pytest.approx(2 * 1.9 / 0.01) and e["lr"] == 0.01
        assert not e["preconditioned"]
    assert hook.log()["cost_gradients"] > 0


def test_sharpness_tracker_measures_adams_preconditioned_hessian(data):
    model = pooled_linear()
    opt = build_optimizer("adam", model.parameters(), lr=1e-3, betas=(0.9, 0.999))
    hook = SharpnessTracker(data.train, "cpu", every=1, batch=64, iters=20, tol=1e-6,
                            loss_fn=half_mse)
    x, y = hook.batch
    for step in range(2):
        if step == 1:   # the state the second measurement sees: after the first Adam step
            state = opt.state[model[2].weight]
            p = (state["exp_avg_sq"] / (1 - 0.999 ** float(state["step"]))).sqrt().add(1e-8)
            p = p.reshape(-1).double()
        hook.before_step(step, model, opt)
        opt.zero_grad()
        half_mse(model(x), y).backward()
        opt.step()
    first, second = hook.log()["measurements"]
    assert not first["preconditioned"] and first["limit"] is None   # no Adam state yet
    h = torch.tensor(exact_hessian(hook.batch))
    assert second["preconditioned"]
    assert second["limit"] == pytest.approx((2 + 1.8) / (0.1 * 1e-3))
    top = torch.linalg.eigvalsh(h / p.sqrt()[:, None] / p.sqrt()[None, :]).max()
    assert second["lambda_max"] == pytest.approx(float(top), rel=1e-3)


# ---------------------------------------------------------------------------------------------
# a real trial, and the config


def small_cnn():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(4),
                         nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(16, 10))


def lanczos_optimizer(**learner) -> LanczosSGDConfig:
    return LanczosSGDConfig(name="lanczos_sgd", learner=LearnerConfig(**learner))


def learner_hooks(optimizer, data, sharpness_every=10, batch=32):
    return hooks_for(optimizer, SharpnessConfig(every=sharpness_every), batch, 0, data, "cpu")


def test_a_learner_trial_logs_refreshes_and_trains(data):
    # an lr cap: uncapped, the tiny CNN's sharpness collapses within 20 steps (L 6.5 -> 0.12 on
    # the curvature batch), the rule answers with lr ~20 and the trial diverges
    optimizer = lanczos_optimizer(every=10, iters=8, batch=64, lr_cap=0.3)
    hooks = learner_hooks(optimizer, data)
    assert [h.name for h in hooks] == ["learner", "sharpness"]
    settings = TrialSettings(batch_size=32, optimizer=optimizer.options(), budget=Budget(steps=40), quiet=True)
    result = run_trial(small_cnn, data, optimizer.lr, settings, hooks=hooks)
    assert result.stable, result.reason
    assert result.final_train_loss < result.initial_loss
    log = result.to_dict()["hooks"]["learner"]
    assert [r["step"] for r in log["refreshes"]] == [0, 10, 20, 30]
    for r in log["refreshes"]:
        assert {"step", "ritz_values", "weights", "L", "mu", "lr", "momentum", "products",
                "cost_gradients"} <= set(r)
        assert len(r["ritz_values"]) == len(r["weights"]) == r["products"] == 8
        assert r["L"] >= r["mu"] > 0 and 0 <= r["momentum"] <= 0.99
    assert log["cost_gradients"] == pytest.approx(4 * 8 * 2 * 64 / 32)
    sharp = result.hooks["sharpness"]["measurements"]
    assert [e["step"] for e in sharp] == [0, 10, 20, 30]
    # the tracker runs after the learner: it reports the lr the learner just chose
    assert [e["lr"] for e in sharp] == [r["lr"] for r in log["refreshes"]]
    assert all(e["limit"] == pytest.approx(stability_limit(e["lr"], "sgd", e["momentum"])) for e in sharp)


def test_hooks_for_reads_the_config(data):
    sgd, adam = SGDConfig(name="sgd"), AdamConfig(name="adam")
    assert hooks_for(sgd, SharpnessConfig(), 32, 0, data, "cpu") == []
    (tracker,) = hooks_for(adam, SharpnessConfig(every=7), 512, 0, data, "cpu")
    assert tracker.every == 7 and len(tracker.batch[1]) == 128        # min(B, sharpness.batch)
    with pytest.raises(UsageError, match="every"):
        learner_hooks(lanczos_optimizer(every=0), data)
    with pytest.raises(UsageError, match="rule"):
        learner_hooks(lanczos_optimizer(rule="adam"), data)
    with pytest.raises(UsageError, match="larger"):
        learner_hooks(lanczos_optimizer(batch=10_000), data)
    # the fixed batch is a function of the seed alone
    a, b = learner_hooks(lanczos_optimizer(), data)[0], learner_hooks(lanczos_optimizer(), data)[0]
    assert torch.equal(a.batch[0], b.batch[0])


def test_a_lanczos_sgd_job_records_the_learner_and_sharpness_logs(tmp_path):
    from spectral_sweep.point.run import run_point

    job = ["optimizer=lanczos_sgd", "search=fixed", "optimizer.learner.every=3", "optimizer.learner.iters=4",
           "optimizer.learner.batch=16", "optimizer.learner.lr_cap=0.05", "sharpness.every=3"]
    record = run_point(compose_job(*job), tmp_path / "job")
    assert record.optimizer == "lanczos_sgd" and record.expected_exponent == 1.0 and record.is_learner
    (trial,) = record.trials
    assert [r["step"] for r in trial.hooks["learner"]["refreshes"]] == [0, 3]
    assert [m["step"] for m in trial.hooks["sharpness"]["measurements"]] == [0, 3]
    assert not (tmp_path / "job" / "sharpness").exists()     # figures are the report's business
    # the learner's options are part of the trial's identity: another rule is another trial
    other = run_point(compose_job(*job, "optimizer.learner.rule=nesterov"), tmp_path / "job")
    assert other.trials_reused == 0


def test_a_diverged_model_is_logged_not_a_crash(data):
    model = small_cnn()
    with torch.no_grad():
        model[-1].weight.fill_(float("nan"))
    opt = build_optimizer("lanczos_sgd", model.parameters(), lr=1e-3, momentum=0.0, weight_decay=0.0)
    learner = LanczosLearner(data.train, "cpu", train_batch=64, options=LearnerConfig(every=1, iters=5, batch=32))
    tracker = SharpnessTracker(data.train, "cpu", every=1, batch=32)
    learner.before_step(0, model, opt)
    tracker.before_step(0, model, opt)
    assert "error" in learner.log()["refreshes"][0] and opt.param_groups[0]["lr"] == 1e-3
    assert tracker.log()["measurements"][0]["lambda_max"] is None


def test_a_learner_trial_resumes_with_its_lr_momentum_and_refresh_history(data, tmp_path):
    """512 samples / B=32: 16 steps an epoch, 3 epochs, refreshes every 12 steps (so the epoch
    checkpoints fall between refreshes), killed at step 40: the resumed trial must reuse the
    lr and momentum chosen at step 36 and end with the uninterrupted trial's history."""
    optimizer = lanczos_optimizer(every=12, iters=6, batch=64, lr_cap=0.3)

    def trial(checkpoint=None, extra=()):
        settings = TrialSettings(batch_size=32, optimizer=optimizer.options(), budget=Budget(epochs=3), quiet=True,
                                 evaluate=False, checkpoint=checkpoint, train=TrainConfig(checkpoint_every=0))
        hooks = learner_hooks(optimizer, data)
        return run_trial(small_cnn, data, optimizer.lr, settings, hooks=[*hooks, *extra])

    whole = trial()
    ckpt = tmp_path / "trial.pt"
    with pytest.raises(KeyboardInterrupt):
        trial(str(ckpt), [Interrupt(40)])
    saved = torch.load(ckpt, weights_only=True)
    assert saved["step"] == 32
    assert [r["step"] for r in saved["hooks"]["learner"]["refreshes"]] == [0, 12, 24]
    resumed = trial(str(ckpt))
    assert [r["step"] for r in resumed.hooks["learner"]["refreshes"]] == [0, 12, 24, 36]
    assert resumed.hooks["learner"] == whole.hooks["learner"]
    assert resumed.hooks["sharpness"]["measurements"] == whole.hooks["sharpness"]["measurements"]
    assert resumed.loss_curve == whole.loss_curve


def compose_job(*overrides):
    return compose("model=vgg11_bn", "model.width=0.125", "dataset.train_size=128", "dataset.test_size=32",
                   "batch=16", "quiet=true", "train.steps=6", *overrides)


def test_the_report_sets_the_learner_against_the_best_fixed_lr_of_the_search(tmp_path):
    from spectral_sweep.point.run import run_point
    from spectral_sweep.report import write_report

    learner = run_point(compose_job("optimizer=lanczos_sgd", "search=bisect", "optimizer.learner.every=3",
                                    "optimizer.learner.iters=4", "optimizer.learner.batch=16"),
                        tmp_path / "sweep" / "learner")
    # it owns its lr: one trial whatever the search, and no lr_max to fit
    assert learner.is_learner and len(learner.trials) == 1
    assert learner.lr_max is None and learner.lr_max_status == "chosen_by_learner"
    searched = run_point(compose_job("optimizer=sgd", "search=grid", "search.lrs=[0.001,0.01,0.1]"),
                         tmp_path / "sweep" / "sgd")
    other_budget = run_point(compose_job("optimizer=sgd", "search=fixed", "train.steps=4"),
                             tmp_path / "sweep" / "sgd_short")

    written = write_report(tmp_path / "sweep", quiet=True)
    table = pd.read_csv(written["learner.csv"])
    assert len(table) == 1       # the 4-step search has another budget: not comparable
    row = table.iloc[0]
    refreshes = learner.trials[0].hooks["learner"]["refreshes"]
    assert row["budget_steps"] == 6 and row["refreshes"] == len(refreshes) == 2
    assert row["learner_cost"] == pytest.approx(6 + sum(r["cost_gradients"] for r in refreshes))
    assert row["learner_lr"] == pytest.approx(refreshes[-1]["lr"])
    stable = [t for t in searched.trials if t.stable]
    best = max(stable, key=lambda t: (t.test_acc, -t.final_train_loss))   # ties: the lower loss
    assert row["fixed_lr"] == pytest.approx(best.lr) and row["fixed_test_acc"] == pytest.approx(best.test_acc)
    assert row["search_trials"] == 3 and row["search_cost"] == sum(t.steps for t in searched.trials)
    assert written["learner_vgg11-bn-w0.125_synthetic_lanczos-sgd_16_0.png"].stat().st_size > 0
    assert "## Learner against the search" in written["report.md"].read_text()
    # the learner's point is not an lr_max(B) point
    assert set(pd.read_csv(written["lr_max.csv"])["optimizer"]) == {"sgd"}
    assert other_budget.trials[0].budget_steps == 4


def test_spectrum_after_training_with_the_learner_trains_with_the_learner(tmp_path):
    from spectral_sweep.point.run import run_point

    record = run_point(compose_job("optimizer=lanczos_sgd", "search=none", "spectrum=hessian",
                                   "spectrum.at=trained", "spectrum.train_steps=4", "spectrum.n_batches=1",
                                   "spectrum.iters=5", "spectrum.noise_scale=false",
                                   "optimizer.learner.every=2", "optimizer.learner.iters=4",
                                   "optimizer.learner.batch=16"), tmp_path / "job")
    trained = record.spectrum.trained
    assert trained["steps"] == 4
    assert [r["step"] for r in trained["hooks"]["learner"]["refreshes"]] == [0, 2]
    assert not record.spectrum.preconditioned


def test_the_learner_takes_its_defaults_from_the_config_schema(data):
    """One home for the learner's defaults: config.LearnerConfig; the hook has none of its own."""
    hook = LanczosLearner(data.train, "cpu", train_batch=32)
    defaults = LearnerConfig()
    assert (hook.every, hook.iters, hook.batch_size, hook.rule) == (defaults.every, defaults.iters,
                                                                     defaults.batch, defaults.rule)
    assert compose("optimizer=lanczos_sgd").optimizer.learner == defaults
