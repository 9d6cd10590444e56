"""The trial: three outcomes (trained, stalled, diverged), divergence is a result, same seed gives
the same trial."""

import dataclasses
import io
import math
import re
import sys
import time

import pytest
import torch
from torch import nn

from spectral_sweep.config.dataset import Budget
from spectral_sweep.config.train import TrainConfig
from spectral_sweep.data.load import load_dataset
from spectral_sweep.errors import UsageError
from spectral_sweep.trial.optim import build_optimizer, lr_factor, momentum_of
from spectral_sweep.trial.outcomes import accuracy_floor, judge
from spectral_sweep.trial.train import TrainingHook, TrialSettings, budget_steps, run_trial


@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic", seed=0, train_size=512, test_size=256)


def small_cnn():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4),
                         nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(16, 10))


TRAIN_OPTIONS = {f.name for f in dataclasses.fields(TrainConfig)}


def settings(steps=60, epochs=None, **kw):
    """TrialSettings with the train options (schedule, margins, micro_batch, ...) given flat."""
    train = TrainConfig(**{k: kw.pop(k) for k in list(kw) if k in TRAIN_OPTIONS})
    base = dict(batch_size=32, optimizer={"name": "sgd", "momentum": 0.9}, quiet=True)
    return TrialSettings(**{**base, **kw}, budget=Budget(steps=steps, epochs=epochs), train=train)


def test_small_lr_trains_learns_and_is_evaluated(data):
    r = run_trial(small_cnn, data, 0.02, settings(steps=120))
    assert r.outcome == "trained" and r.stable and r.trained and r.reason is None, r.reason
    assert r.steps == r.budget_steps == 120
    assert r.final_train_loss < 0.9 * r.initial_loss
    assert accuracy_floor(10, len(data.test)) <= r.test_acc <= 1.0 and math.isfinite(r.test_loss)
    assert r.images_per_s > 0 and len(r.loss_curve) > 0
    assert r.to_dict()["outcome"] == "trained" and r.to_dict()["stable"] is True


def test_huge_lr_diverges_early_and_is_a_result(data):
    r = run_trial(small_cnn, data, 50.0, settings(steps=200))
    assert r.outcome == "diverged" and not r.stable and r.to_dict()["stable"] is False
    assert r.reason in ("non-finite loss", "loss > 2x initial")
    assert r.steps < 200               # stopped at the first sign of divergence
    assert r.test_acc is None


class NaNModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3 * 32 * 32, 10)

    def forward(self, x):
        return self.lin(x.flatten(1)) * float("nan")


def test_nan_at_the_first_step_is_a_diverged_result(data):
    r = run_trial(NaNModel, data, 0.1, settings())
    assert r.outcome == "diverged" and r.reason == "non-finite loss" and r.steps == 1


class Uniform(nn.Module):
    """Uniform logits whatever the input or the lr: the loss is ln(10) at every step."""

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(10))

    def forward(self, x):
        return (0 * self.bias).expand(len(x), 10)


def test_a_network_that_never_learns_stalls_it_does_not_diverge(data):
    r = run_trial(Uniform, data, 0.1, settings(steps=10))
    assert r.final_train_loss == pytest.approx(math.log(10)) == r.initial_loss
    assert r.outcome == "stalled" and r.stable and not r.trained
    assert r.reason.startswith("final loss 2.3 not 10% below") and "test acc 0.1" in r.reason
    assert r.test_acc == pytest.approx(0.1, abs=0.05)      # evaluated: a stall is a finished trial


def test_accuracy_floor_is_a_margin_over_chance_and_never_within_noise():
    assert accuracy_floor(10, 1000) == pytest.approx(0.1 + 0.05 * 0.9)       # the margin binds
    assert accuracy_floor(100, 10000) == pytest.approx(0.01 + 0.05 * 0.99)
    # a tiny test set: four binomial standard errors of chance bind instead
    assert accuracy_floor(10, 50) == pytest.approx(0.1 + 4 * math.sqrt(0.09 / 50))
    assert accuracy_floor(10, 1000, margin=0.5) == pytest.approx(0.55)


@pytest.mark.parametrize("initial, final, acc, outcome, reason", [
    (2.30, 1.50, 0.60, "trained", None),
    (2.30, 2.05, 0.10, "trained", None),                 # the loss fell 11%: it learned something
    (2.30, 2.10, 0.60, "trained", None),                 # far above chance: a noisy loss does not veto
    (2.30, 2.10, 0.14, "stalled", "final loss 2.1 not 10% below initial 2.3, test acc 0.140 below 0.145 "
                                  "(chance 0.1)"),      # 9% is not clear, nor is 0.14
    # started with large logits and only learned to guess uniformly: ln 10 is the reference
    (3.50, 2.25, 0.10, "stalled", "final loss 2.25 not 10% below ln C 2.3, test acc 0.100 below 0.145 "
                                  "(chance 0.1)"),
    (2.30, 2.20, None, "stalled", "final loss 2.2 not 10% below initial 2.3"),   # not evaluated
    (2.30, 1.50, None, "trained", None),
])
def test_judge_known_answers(initial, final, acc, outcome, reason):
    assert judge(initial, final, acc, 10, 1000) == (outcome, reason)


@pytest.mark.parametrize("initial, final, acc, target, outcome, reason", [
    (2.30, 1.50, 0.60, 0.60, "trained", None),                   # at the target
    (2.30, 1.50, 0.61, 0.60, "trained", None),
    (2.30, 1.50, 0.59, 0.60, "stalled", "test acc 0.59 below train.target_acc 0.6"),
    (2.30, 2.10, 0.60, 1.00, "stalled", "test acc 0.6 below train.target_acc 1"),
    (2.30, 1.50, None, 0.50, "stalled", "not evaluated, so short of train.target_acc 0.5"),
    # a trial that did not learn stays stalled for its own reason: the target is needed, not enough
    (2.30, 2.20, None, 0.10, "stalled", "final loss 2.2 not 10% below initial 2.3"),
    (2.30, 2.10, 0.12, 0.10, "stalled", "final loss 2.1 not 10% below initial 2.3, test acc 0.120 below 0.145 "
                                        "(chance 0.1)"),
])
def test_a_target_accuracy_is_a_further_condition_of_trained(initial, final, acc, target, outcome, reason):
    """train.target_acc: trained only if the trial learned and its final test accuracy reaches the
    target; a miss is the stalled outcome (it did not get there within its budget)."""
    assert judge(initial, final, acc, 10, 1000, target_acc=target) == (outcome, reason)


def test_a_trial_short_of_target_acc_stalls_at_it_trains_and_a_blow_up_stays_diverged(data):
    base = run_trial(small_cnn, data, 0.02, settings(steps=60))
    assert base.outcome == "trained" and base.test_acc < 0.99, base.test_acc
    at = run_trial(small_cnn, data, 0.02, settings(steps=60, target_acc=base.test_acc))
    assert at.outcome == "trained" and at.test_acc == base.test_acc
    short = run_trial(small_cnn, data, 0.02, settings(steps=60, target_acc=base.test_acc + 0.01))
    assert short.outcome == "stalled" and short.stable and not short.trained
    assert short.reason.startswith(f"test acc {base.test_acc:.4g} below train.target_acc")
    blown = run_trial(small_cnn, data, 50.0, settings(steps=200, target_acc=0.5))
    assert blown.outcome == "diverged" and blown.test_acc is None


def test_target_acc_enters_the_trial_cache_key_only_when_set():
    from spectral_sweep.config.schema import check, compose
    from spectral_sweep.files import config_key
    from spectral_sweep.point.run import trial_identity

    off, on, other = (trial_identity(compose(*o)) for o in ([], ["train.target_acc=0.8"], ["train.target_acc=0.9"]))
    assert "target_acc" not in off["train"]       # off: the keys of trials made before the knob existed
    assert on["train"]["target_acc"] == 0.8
    assert len({config_key(off, 0.1), config_key(on, 0.1), config_key(other, 0.1)}) == 3
    check(compose("train.target_acc=1"))          # (0, 1]: a perfect score is a valid target


@pytest.mark.parametrize("key, value", [("stall_loss_margin", 0.0), ("stall_loss_margin", 1.0),
                                        ("stall_acc_margin", -0.1), ("stall_acc_margin", "x"),
                                        ("divergence_factor", 1.0), ("target_acc", 0.0), ("target_acc", 1.5)])
def test_margins_outside_their_range_are_usage_errors(key, value):
    with pytest.raises(UsageError, match=key):
        settings(**{key: value})


class Drifting(nn.Module):
    """Logits that grow with the step count: the loss climbs steadily, never beyond 2x in 10 steps."""

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(10))
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x):
        self.calls += 1
        logits = torch.zeros(len(x), 10)
        logits[:, 0] = 0.25 * self.calls      # confident in class 0, a tenth of the labels
        return logits + 0 * self.bias


def test_a_loss_that_ends_above_its_start_without_blowing_up_is_a_stall(data):
    r = run_trial(Drifting, data, 0.1, settings(steps=10, evaluate=False))
    assert r.initial_loss < r.final_train_loss < 2 * r.initial_loss
    assert r.outcome == "stalled" and r.reason.startswith("final loss")


def test_same_seed_same_trial_and_seed_matters(data):
    a = run_trial(small_cnn, data, 0.05, settings(steps=20))
    b = run_trial(small_cnn, data, 0.05, settings(steps=20))
    c = run_trial(small_cnn, data, 0.05, settings(steps=20, seed=1))
    assert a.loss_curve == b.loss_curve and a.test_acc == b.test_acc
    assert a.loss_curve != c.loss_curve


def test_check_every_batches_host_syncs_without_changing_the_verdict(data):
    every = run_trial(small_cnn, data, 50.0, settings(steps=200))
    batched = run_trial(small_cnn, data, 50.0, settings(steps=200, check_every=10))
    assert every.reason == batched.reason
    assert batched.steps % 10 == 0 and batched.steps >= every.steps


def test_budget_in_epochs_wins_over_steps():
    assert budget_steps(Budget(steps=5, epochs=2.5), steps_per_epoch=16) == 40
    assert budget_steps(Budget(steps=5), steps_per_epoch=16) == 5
    with pytest.raises(UsageError):
        budget_steps(Budget(), steps_per_epoch=16)


def test_bad_lr_and_batch_are_usage_errors(data):
    with pytest.raises(UsageError, match="positive"):
        run_trial(small_cnn, data, -0.1, settings())
    with pytest.raises(UsageError, match="512"):
        run_trial(small_cnn, data, 0.1, settings(batch_size=1024))


def test_paper_schedule_shape():
    total = 1000
    f = [lr_factor("paper", s, total) for s in range(total)]
    assert f[0] == f[499] == 1.0
    assert f[700] == pytest.approx(1 - 0.99 * 0.5)          # halfway down the decay
    assert f[900] == f[999] == 0.01
    assert all(a >= b for a, b in zip(f, f[1:]))


def test_cosine_and_warmup():
    assert lr_factor("cosine", 0, 100) == 1.0 and lr_factor("cosine", 50, 100) == pytest.approx(0.5)
    assert [lr_factor("constant", s, 100, warmup=4) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    with pytest.raises(UsageError, match="paper"):
        lr_factor("triangle", 0, 10)


def test_optimizers_and_their_momentum():
    p = [nn.Parameter(torch.zeros(2))]
    assert isinstance(build_optimizer("sgd", p, 0.1, nesterov=True), torch.optim.SGD)
    assert isinstance(build_optimizer("adamw", p, 0.1), torch.optim.AdamW)
    assert momentum_of("sgd", momentum=0.5) == 0.5 and momentum_of("adam", betas=(0.8, 0.99)) == 0.8
    with pytest.raises(UsageError, match="adam, adamw, lanczos_sgd, sgd"):
        build_optimizer("lion", p, 0.1)


def test_micro_batches_accumulate_to_the_full_batch_gradient(data):
    """Without BatchNorm, accumulating pieces is the same step as one full batch."""
    whole = run_trial(small_cnn, data, 0.05, settings(steps=5))
    pieces = run_trial(small_cnn, data, 0.05, settings(steps=5, micro_batch=8))
    assert [l for _, l in pieces.loss_curve] == pytest.approx([l for _, l in whole.loss_curve], rel=1e-4)
    with pytest.raises(UsageError, match="micro_batch"):
        run_trial(small_cnn, data, 0.05, settings(micro_batch=64))


class Interrupt(TrainingHook):
    """Kills the trial (as Ctrl-C would) before step ``at``."""

    def __init__(self, at):
        self.at = at

    def before_step(self, step, model, optimizer):
        if step == self.at:
            raise KeyboardInterrupt


def test_an_interrupted_long_trial_resumes_from_its_last_epoch_exactly(data, tmp_path, capsys):
    """512 samples / B=32 = 16 steps an epoch; 3 epochs; killed in the third (step 40)."""
    long = settings(steps=None, epochs=3, evaluate=False)
    whole = run_trial(small_cnn, data, 0.05, long)
    ckpt = tmp_path / "trial.pt"
    resumable = settings(steps=None, epochs=3, evaluate=False, checkpoint=str(ckpt), checkpoint_every=0)
    with pytest.raises(KeyboardInterrupt):
        run_trial(small_cnn, data, 0.05, resumable, hooks=[Interrupt(40)])
    assert torch.load(ckpt, weights_only=True)["step"] == 32       # the last finished epoch
    resumed = run_trial(small_cnn, data, 0.05, resumable)
    assert "resuming trial lr=0.05 B=32 at epoch 2 (step 32 of 48)" in capsys.readouterr().out
    assert resumed.steps == whole.steps == 48
    assert resumed.loss_curve == whole.loss_curve and resumed.stable == whole.stable
    assert not ckpt.exists()                                        # the record holds the result now


def test_a_checkpoint_is_written_only_once_its_interval_has_passed(data, tmp_path):
    """train.checkpoint_every: a trial shorter than the interval writes no checkpoint (a kill loses
    at most that long); at 0 every epoch end writes one."""
    ckpt = tmp_path / "trial.pt"
    with pytest.raises(KeyboardInterrupt):
        run_trial(small_cnn, data, 0.05, settings(steps=None, epochs=3, evaluate=False, checkpoint=str(ckpt)),
                  hooks=[Interrupt(40)])                     # the default: 300 s, far more than this trial
    assert not ckpt.exists()
    with pytest.raises(KeyboardInterrupt):
        run_trial(small_cnn, data, 0.05, settings(steps=None, epochs=3, evaluate=False, checkpoint=str(ckpt),
                                                  checkpoint_every=0), hooks=[Interrupt(40)])
    assert torch.load(ckpt, weights_only=True)["step"] == 32


@pytest.mark.parametrize("garbage", [b"", b"PK\x03\x04 truncated zip", b"not a checkpoint at all"])
def test_an_unreadable_checkpoint_is_trained_afresh_with_one_warning(data, tmp_path, garbage):
    """A checkpoint cut short by a kill (or any foreign file) costs the trial its progress, not the
    sweep: one warning, then the same result as a trial that never had one."""
    long = settings(steps=None, epochs=2, evaluate=False)
    whole = run_trial(small_cnn, data, 0.05, long)
    ckpt = tmp_path / "trial.pt"
    ckpt.write_bytes(garbage)
    with pytest.warns(UserWarning, match="unreadable trial checkpoint"):
        again = run_trial(small_cnn, data, 0.05, settings(steps=None, epochs=2, evaluate=False,
                                                          checkpoint=str(ckpt)))
    assert again.loss_curve == whole.loss_curve and again.outcome == whole.outcome
    assert not ckpt.exists() and not list(tmp_path.glob("*.tmp"))


class Terminal(io.StringIO):
    def isatty(self):
        return True


class Glance(TrainingHook):
    """Slows each step past the bar's refresh interval and keeps what the terminal showed before step ``at``."""

    def __init__(self, screen, at):
        self.screen, self.at, self.seen = screen, at, ""

    def before_step(self, step, model, optimizer):
        time.sleep(0.12)
        if step == self.at:
            self.seen = self.screen.getvalue()


def test_a_long_trial_shows_its_steps_lr_smoothed_loss_and_eta_before_it_ends(data, monkeypatch):
    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    glance = Glance(screen, at=8)
    r = run_trial(small_cnn, data, 0.02, settings(steps=12, quiet=False, evaluate=False), hooks=[glance])
    assert r.steps == 12
    shown = glance.seen.split("\r")[-1]
    assert re.search(r"lr=0.02 B=32: +\d+%.* [78]/12 \[\d\d:\d\d<\d\d:\d\d", shown), shown
    assert re.search(r"loss=\d[.\d]*, lr=0.02\]", shown), shown


def test_a_quiet_trial_or_one_off_a_terminal_shows_no_bar(data, monkeypatch):
    for screen, quiet in ((Terminal(), True), (io.StringIO(), False)):
        monkeypatch.setattr(sys, "stderr", screen)
        run_trial(small_cnn, data, 0.02, settings(steps=4, quiet=quiet, evaluate=False))
        assert screen.getvalue() == ""
