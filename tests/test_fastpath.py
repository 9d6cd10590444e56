"""train.precision / channels_last / compile = auto: planted step costs pick the faster candidate,
the choice is stored in the sweep folder and reused on resume, explicit values win, and a
compiled trial reaches the same outcome as an eager one."""

import dataclasses
import json

import pytest
import torch
from torch import nn

from spectral_sweep.config.dataset import Budget
from spectral_sweep.config.train import TrainConfig
from spectral_sweep.data.load import load_dataset
from spectral_sweep.trial import fastpath
from spectral_sweep.trial.timing import ChoiceStore
from spectral_sweep.trial.train import TrialSettings, run_trial

KEY = {"model": "small_cnn", "batch": 16}


@pytest.fixture(autouse=True)
def no_shared_compiles(monkeypatch):
    """Each test starts without the compiled forwards an earlier test left in this process."""
    monkeypatch.setattr(fastpath, "_COMPILED", {})


@pytest.fixture
def bf16_timed(monkeypatch):
    """The tests of the precision timing run on the CPU: let bf16 compete there, as on CUDA."""
    monkeypatch.setattr(fastpath, "PRECISION_TIMED_ON", ("cuda", "cpu"))


@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic", seed=0, train_size=256, test_size=64)


def small_cnn():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(16, 10))


def settings(steps=20, **train):
    return TrialSettings(batch_size=16, optimizer={"name": "sgd", "momentum": 0.9},
                         budget=Budget(steps=steps), train=TrainConfig(**train), device="cpu", quiet=True)


class Planted:
    """A fake clock and step costs by candidate: (precision, channels_last, compiled) -> seconds."""

    def __init__(self, monkeypatch, costs, compile_s=0.0):
        self.now, self.costs, self.compile_s, self.steps = 0.0, costs, compile_s, []
        real = fastpath._step

        def step(forward, opt, x, y, where):
            candidate = ("bf16" if where.bf16 else "fp32", where.memory_format == torch.channels_last,
                         getattr(forward, "compiled", False))
            self.steps.append(candidate)
            self.now += self.costs.get(candidate, 1.0)
            return real(forward, opt, x, y, where)
        monkeypatch.setattr(fastpath, "_step", step)
        planted = self

        class FakeCompiled:   # a compile that costs planted seconds once, and runs eagerly
            def __init__(self, device):
                self.paid = False

            def __call__(self, model):
                def forward(x):
                    if not self.paid:
                        planted.now, self.paid = planted.now + planted.compile_s, True
                    return model(x)
                forward.compiled = True
                return forward
        monkeypatch.setattr(fastpath, "CompiledForward", FakeCompiled)

    def __call__(self):
        return self.now


def test_planted_timings_pick_the_faster_precision_and_memory_format(bf16_timed, monkeypatch, data, tmp_path):
    clock = Planted(monkeypatch, {("fp32", False, False): 1.0, ("bf16", False, False): 0.5,
                                  ("bf16", True, False): 0.3})
    store = ChoiceStore(tmp_path)
    tuned = fastpath.tune_settings(settings(), small_cnn, data, store, KEY, clock=clock)
    assert (tuned.train.precision, tuned.train.channels_last, tuned.compiled) == ("bf16", "true", None)
    record = run_trial(small_cnn, data, 0.05, dataclasses.replace(tuned, budget=Budget(steps=3)))
    assert record.extra["fast_path"] == {"precision": "bf16", "channels_last": True, "compile": False}
    # within the margin, plain fp32 contiguous stays: noise must not flip a choice
    near = Planted(monkeypatch, {("fp32", False, False): 1.0, ("bf16", False, False): 0.95,
                                 ("fp32", True, False): 0.95})
    plain = fastpath.tune_settings(settings(), small_cnn, data, None, KEY, clock=near)
    assert (plain.train.precision, plain.train.channels_last) == ("fp32", "false")


def test_the_stored_choice_is_reused_on_resume_and_keyed_by_batch(bf16_timed, monkeypatch, data, tmp_path):
    first = Planted(monkeypatch, {("bf16", False, False): 0.5, ("bf16", True, False): 2.0})
    fastpath.tune_settings(settings(), small_cnn, data, ChoiceStore(tmp_path), KEY, clock=first)
    assert len(first.steps) == 9     # 3 candidates x (1 warm-up + 2 timed steps)
    # a rerun on a machine where the other candidates now look faster still uses the stored one
    second = Planted(monkeypatch, {("fp32", False, False): 0.1, ("fp32", True, False): 0.1})
    again = fastpath.tune_settings(settings(), small_cnn, data, ChoiceStore(tmp_path), KEY, clock=second)
    assert (again.train.precision, again.train.channels_last) == ("bf16", "false")
    assert second.steps == []        # nothing timed again
    other_b = fastpath.tune_settings(settings(), small_cnn, data, ChoiceStore(tmp_path),
                                     {**KEY, "batch": 32}, clock=second)
    assert other_b.train.precision == "fp32" and len(second.steps) == 8   # bf16, 10x slower: timed once


def test_on_the_cpu_precision_auto_is_fp32_however_the_timing_falls(monkeypatch, data, tmp_path):
    """bf16 on the CPU changes the numerics; a noisy timing must not pick it in one sweep folder
    and not in the next. The memory format is still timed."""
    clock = Planted(monkeypatch, {("bf16", False, False): 0.1, ("fp32", False, False): 1.0,
                                  ("fp32", True, False): 0.5})
    tuned = fastpath.tune_settings(settings(), small_cnn, data, ChoiceStore(tmp_path), KEY, clock=clock)
    assert (tuned.train.precision, tuned.train.channels_last) == ("fp32", "true")
    assert {precision for precision, _, _ in clock.steps} == {"fp32"}     # bf16 never ran


def test_explicit_values_win(monkeypatch, data, tmp_path):
    clock = Planted(monkeypatch, {("bf16", True, False): 0.1})
    tuned = fastpath.tune_settings(settings(precision="fp32", channels_last="false"), small_cnn, data,
                                   ChoiceStore(tmp_path), KEY, clock=clock)
    assert (tuned.train.precision, tuned.train.channels_last) == ("fp32", "false")
    assert clock.steps == [] and list(tmp_path.iterdir()) == []


def test_compile_only_where_the_speedup_repays_the_compile(monkeypatch, data, tmp_path):
    costs = {("fp32", False, False): 1.0, ("fp32", False, True): 0.5}
    short = Planted(monkeypatch, {("fp32", False, False): 0.01, ("fp32", False, True): 0.005}, compile_s=30.0)
    tuned = fastpath.tune_settings(settings(precision="fp32", channels_last="false", compile="auto"),
                                   small_cnn, data, None, KEY, planned_steps=300, clock=short)
    assert tuned.compiled is None and all(not c for _, _, c in short.steps)   # 3 s of training: never compiled
    long = Planted(monkeypatch, costs, compile_s=30.0)
    store = ChoiceStore(tmp_path)
    tuned = fastpath.tune_settings(settings(precision="fp32", channels_last="false", compile="auto"),
                                   small_cnn, data, store, KEY, planned_steps=1000, clock=long)
    assert tuned.compiled is not None and tuned.train.compile == "false"
    stored = store.get({**KEY, "device": "cpu", "micro_batch": None, "knob": "compile"})
    assert stored["choice"] == "true" and stored["compile_s"] == pytest.approx(30.5)   # + the first step
    assert stored["speedup"] == pytest.approx(2.0)
    record = run_trial(small_cnn, data, 0.05, dataclasses.replace(tuned, budget=Budget(steps=2)))
    assert record.extra["fast_path"]["compile"] is True
    slower = Planted(monkeypatch, {("fp32", False, True): 1.5}, compile_s=30.0)
    tuned = fastpath.tune_settings(settings(precision="fp32", channels_last="false", compile="auto"),
                                   small_cnn, data, None, KEY, planned_steps=1000, clock=slower)
    assert tuned.compiled is None    # compiled, measured slower: eager it is


def tiny_mlp():
    return nn.Sequential(nn.AvgPool2d(4), nn.Flatten(), nn.Linear(192, 32), nn.ReLU(), nn.Linear(32, 10))


def test_a_compiled_trial_reaches_the_same_outcome_as_an_eager_one(data):
    """Real torch.compile on a tiny model (the one compile of the suite), shared by two trials."""
    eager = run_trial(tiny_mlp, data, 0.05, settings(steps=30))
    compiled = fastpath.CompiledForward(torch.device("cpu"))
    shared = dataclasses.replace(settings(steps=30), compiled=compiled)
    first = run_trial(tiny_mlp, data, 0.05, shared)
    second = run_trial(tiny_mlp, data, 0.05, shared)   # fresh weights, the same compiled code
    assert eager.outcome == first.outcome == second.outcome   # stalled: 30 steps of a tiny MLP
    for (step, loss), (step_c, loss_c) in zip(eager.loss_curve, first.loss_curve, strict=True):
        assert step == step_c and loss_c == pytest.approx(loss, rel=1e-4)
    assert first.extra["fast_path"]["compile"] is True and eager.extra["fast_path"]["compile"] is False
    assert first.final_train_loss == pytest.approx(eager.final_train_loss, rel=1e-4)
    assert second.final_train_loss == pytest.approx(first.final_train_loss, rel=1e-6)
    assert first.test_acc == pytest.approx(eager.test_acc, abs=2 / len(data.test))


def test_a_point_too_small_to_repay_timing_keeps_the_rule(monkeypatch, data, tmp_path):
    clock = Planted(monkeypatch, {("bf16", True, False): 0.1})
    tuned = fastpath.tune_settings(settings(), small_cnn, data, ChoiceStore(tmp_path), KEY,
                                   planned_steps=fastpath.MIN_PLANNED_STEPS - 1, clock=clock)
    assert clock.steps == [] and list(tmp_path.iterdir()) == []
    record = run_trial(small_cnn, data, 0.05, dataclasses.replace(tuned, budget=Budget(steps=2)))
    assert record.extra["fast_path"] == {"precision": "fp32", "channels_last": False, "compile": False}


def test_a_sweep_point_stores_its_choice_and_the_next_job_reuses_it(bf16_timed, monkeypatch, tmp_path):
    """Through run_point: the choices land in <sweep>/autotune and the trials name them; a stored
    choice (planted here as bf16) is what a later job of the same device, model and B uses."""
    from spectral_sweep.config.schema import compose
    from spectral_sweep.point.run import run_point

    monkeypatch.setattr(fastpath, "MIN_PLANNED_STEPS", 0)   # a 2-step point, timed all the same
    args = ["model=vgg11_bn", "model.width=0.125", "dataset.train_size=64", "dataset.test_size=32",
            "train.steps=2", "quiet=true", "search=fixed", "batch=16", "device=cpu"]
    first = run_point(compose(*args), tmp_path / "a", sweep_dir=tmp_path)
    stored = sorted((tmp_path / "autotune").glob("*.json"))
    assert len(stored) == 2          # precision, channels_last (compile=false: nothing to time)
    assert first.trials[0].extra["fast_path"]["compile"] is False
    for path in stored:              # plant a choice a CPU run would not make
        entry = json.loads(path.read_text())
        if entry["key"]["knob"] == "precision":
            entry["value"]["choice"] = "bf16"
            path.write_text(json.dumps(entry))
    later = run_point(compose(*args, "seed=1"), tmp_path / "b", sweep_dir=tmp_path)
    assert later.trials[0].extra["fast_path"]["precision"] == "bf16"
    assert len(list((tmp_path / "autotune").glob("*.json"))) == 2
    run_point(compose(*args, "batch=8"), tmp_path / "c", sweep_dir=tmp_path)
    assert len(list((tmp_path / "autotune").glob("*.json"))) == 4   # another B: timed anew


def test_the_timed_step_of_the_pick_is_handed_on_now_and_from_the_store(monkeypatch, data, tmp_path):
    """What a point's trials will cost is known once its fast path is timed, before the first trial;
    a rerun reads it from the store without timing again."""
    heard = []
    clock = Planted(monkeypatch, {("fp32", False, False): 1.0, ("fp32", True, False): 0.5})
    fastpath.tune_settings(settings(), small_cnn, data, ChoiceStore(tmp_path), KEY, clock=clock, on_timed=heard.append)
    again = Planted(monkeypatch, {})
    fastpath.tune_settings(settings(), small_cnn, data, ChoiceStore(tmp_path), KEY, clock=again, on_timed=heard.append)
    assert heard == [0.5, 0.5] and again.steps == []
    fastpath.tune_settings(settings(precision="fp32", channels_last="false"), small_cnn, data, None, KEY,
                           clock=again, on_timed=heard.append)
    assert heard == [0.5, 0.5]            # nothing timed: nothing said (the first round will tell)


def test_a_learner_point_plans_one_trial_whatever_the_search(monkeypatch, tmp_path):
    """An optimizer that sets its own lr runs one trial at any search method, so a lanczos_sgd point
    of 60 steps plans 60, not the adaptive search's 8 x 60: it is not timed, and its one trial keeps the
    device's rule (as the fixed-lr trials it is compared with do), not a timed channels_last."""
    from spectral_sweep.config.schema import compose
    from spectral_sweep.point.run import run_point

    clock = Planted(monkeypatch, {("fp32", True, False): 0.1})   # channels_last would win if timed
    monkeypatch.setattr(fastpath, "device_clock", lambda device: clock)
    args = ["model=vgg11_bn", "model.width=0.125", "dataset.train_size=64", "dataset.test_size=32",
            "train.steps=60", "quiet=true", "batch=16", "device=cpu", "optimizer=lanczos_sgd",
            "optimizer.learner.batch=32", "optimizer.learner.every=30",
            "train.channels_last=auto"]
    record = run_point(compose(*args), tmp_path / "a", sweep_dir=tmp_path)
    assert clock.steps == [] and not (tmp_path / "autotune").exists()
    assert [t.extra["fast_path"]["channels_last"] for t in record.trials] == [False]
