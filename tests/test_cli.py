"""The command line end to end: sweeps write records and a report, reruns resume, bad input
gets one clear line and a non-zero exit."""

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spectral_sweep.cli import main

# Small enough for a few seconds per job on 2 CPU cores.
TINY = ["model=vgg11_bn", "model.width=0.125", "dataset.train_size=256", "dataset.test_size=128",
        "train.steps=8", "quiet=true", "search.optimum=false"]   # lr_opt: tests/test_optimum.py


def cli(*args, cwd, fresh: bool = False) -> subprocess.CompletedProcess:
    """The command with these arguments: its exit status, stdout and stderr. By default the console
    script's ``main`` in this process (the same code, without an interpreter's start-up, ~4 s of a
    2-core suite); ``fresh``: in a new interpreter, as a shell runs it."""
    if fresh:
        return subprocess.run([sys.executable, "-m", "spectral_sweep.cli", *args], cwd=cwd,
                              capture_output=True, text=True, timeout=300)
    out, err, code = io.StringIO(), io.StringIO(), 0
    here, argv = os.getcwd(), sys.argv
    os.chdir(cwd)
    sys.argv = ["spectral-sweep", *args]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as e:
        code = e.code or 0
    finally:
        os.chdir(here)
        sys.argv = argv
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def records(sweep_dir):
    return sorted(Path(sweep_dir).rglob("record.json"))


def test_help_lists_groups_and_options(tmp_path):
    out = cli("--help", cwd=tmp_path)
    assert out.returncode == 0
    for word in ("model:", "dataset:", "optimizer:", "search:", "train:", "vgg16", "wrn28_10",
                 "preresnet110", "synthetic", "cifar100", "adam", "bisect"):
        assert word in out.stdout, word


def test_help_shows_the_users_choices_and_not_the_schemas_behind_them(tmp_path):
    out = cli("--help", cwd=tmp_path)
    groups = out.stdout.split("== Configuration groups ==", 1)[1].split("== Config ==", 1)[0]
    assert "schema" not in groups and "model:" in groups and "experiment:" in groups


def test_a_sweep_says_its_plan_and_each_points_cost_before_it_is_done(tmp_path):
    """The plan before the first trial; after a point's first round, seconds a step, minutes a trial
    and the point's worst case."""
    out = cli(*TINY, "batch=16,32", "search.max_trials=2", "search.parallel=2", f"out_dir={tmp_path}", "name=p",
              cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    plan = out.stderr.splitlines()[0]            # before Hydra launches the first job
    assert plan.startswith("spectral-sweep: plan: 2 jobs (vgg11_bn sgd; B = 16, 32)") and "trials of 8 steps" in plan
    assert "at most 3 trials a point" in plan and "on cpu with 2 in flight" in plan and str(tmp_path / "p") in plan
    cost = [line for line in (out.stdout + out.stderr).splitlines() if " s a step (" in line]
    assert len(cost) == 2 and "(measured on its first round)" in cost[0] and "at most" in cost[0]
    assert " s a trial of 8 steps; this point takes about " in cost[0] and "(3 trials), 2 in flight" in cost[0]


@pytest.mark.parametrize("in_flight, device, hint", [(1, "cpu", True), (2, "cpu", True), (1, "cuda", False)])
def test_a_points_cost_line_from_a_timed_step(tmp_path, capsys, in_flight, device, hint):
    """Known answer: 2 s a step, 300-step trials: 10 min a trial; 24 trials expected, 31 at most."""
    from spectral_sweep.config.dataset import Budget
    from spectral_sweep.point.store import TrialCache
    from spectral_sweep.point.trials import TrialRunner
    from spectral_sweep.trial.train import TrialSettings

    data = type("Data", (), {"train": [0] * 10_000})
    settings = TrialSettings(batch_size=128, optimizer={"name": "sgd"}, budget=Budget(steps=300), device=device)
    runner = TrialRunner(None, data, settings, list, {}, TrialCache(tmp_path), in_flight=in_flight, cap=31)
    runner.say_cost(2.0 * in_flight, "timed before the first trial")
    runner.say_cost(1.0, "measured on its first round")          # once a point
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (f"B=128: {2 * in_flight:g} s a step (timed before the first trial), {10 * in_flight} min a "
                        f"trial of 300 steps; this point takes about 4.0 h (24 trials), at most 5.2 h (31 trials), "
                        f"{in_flight} in flight")
    assert len(lines) == 1 + hint and (not hint or "experiment=quickstart" in lines[1])


@pytest.mark.parametrize("quiet", [False, True])
def test_off_a_terminal_each_trial_is_one_line_and_quiet_is_silent(tmp_path, capsys, quiet):
    """No bars in a log: one line per trial instead (a sweep of long trials is not silent there)."""
    from torch import nn

    from spectral_sweep.config.dataset import Budget
    from spectral_sweep.data.load import load_dataset
    from spectral_sweep.point.store import TrialCache
    from spectral_sweep.point.trials import TrialRunner
    from spectral_sweep.trial.train import TrialSettings

    data = load_dataset("synthetic", seed=0, train_size=128, test_size=64)
    settings = TrialSettings(batch_size=32, optimizer={"name": "sgd"}, budget=Budget(steps=4), device="cpu",
                             quiet=quiet)
    runner = TrialRunner(lambda: nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10)), data, settings, list,
                         {"point": 1}, TrialCache(tmp_path), cap=5)
    runner.run_round([0.01, 0.02])
    runner.run_round([0.01])          # a new trial seed: trained anew
    runner.close()
    out = capsys.readouterr()
    lines = [line for line in (out.out + out.err).splitlines() if line.startswith("sgd B=32 trial")]
    if quiet:
        assert lines == []
    else:
        assert [line.split(":")[0] for line in lines] == [f"sgd B=32 trial {k}/5" for k in (1, 2, 3)]
        assert "lr=0.02 trained" in lines[1] or "lr=0.02 stalled" in lines[1] or "lr=0.02 diverged" in lines[1]
        assert lines[2].endswith(" 4 steps in 0 s") and "test acc" in lines[2]


def test_a_round_in_flight_reports_its_steps_while_it_trains():
    """The workers' steps reach the parent's one bar while their trials still run."""
    from spectral_sweep.point.pool import Pool

    class Bar:
        n, updates = 0, []

        def update(self, k):
            self.n += k
            self.updates.append((time.monotonic(), self.n))

    def work(chunks):
        from spectral_sweep.trial import train

        for _ in range(chunks):
            time.sleep(0.4)
            train.on_steps(10)
        return chunks

    pool, bar = Pool(work, 2), Bar()
    try:
        assert pool.map([(4,), (4,)], bar) == [4, 4]
        finished = time.monotonic()
    finally:
        pool.close()
    assert bar.n == 80
    assert any(n > 0 and when < finished - 0.5 for when, n in bar.updates)


def test_cfg_job_prints_the_composed_config(tmp_path):
    out = cli("batch=64", "--cfg", "job", cwd=tmp_path)
    assert out.returncode == 0
    assert "batch: 64" in out.stdout and "name: vgg16" in out.stdout


@pytest.mark.parametrize("dataset", ["cifar100", "imagenet", "synthetic", "synthetic_small"])
def test_the_quickstart_preset_composes_with_every_dataset(tmp_path, dataset):
    out = cli("experiment=quickstart", f"dataset={dataset}", "--cfg", "job", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"name: {dataset.removesuffix('_small')}" in out.stdout and "name: vgg11_bn" in out.stdout
    assert ("train_size: 4096" in out.stdout) == (dataset == "synthetic_small")


def test_two_batch_sizes_make_two_records_a_report_and_a_rerun_reuses_them(tmp_path):
    args = [*TINY, "search=fixed", "optimizer.lr=0.01", "batch=16,32", f"out_dir={tmp_path}", "name=s"]
    first = cli(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    found = records(tmp_path / "s")
    assert [json.loads(p.read_text())["batch_size"] for p in found] == [16, 32]
    for p in found:
        rec = json.loads(p.read_text())
        assert rec["lr_max_status"] in ("bracketed", "lower_bound", "nothing_trains")
        assert rec["trials"][0]["outcome"] in ("trained", "stalled", "diverged")
        assert len(rec["trials"]) == 1 and rec["trials"][0]["lr"] == 0.01
        assert rec["config"]["batch"] == rec["batch_size"] and rec["commit"] and rec["device"]
        assert (p.parent / "config.json").exists()
    assert (tmp_path / "s" / "report.md").exists()
    assert "record.json" in first.stdout

    stamps = [p.stat().st_mtime_ns for p in found]
    second = cli(*args, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert second.stdout.count("reusing finished job") == 2
    assert [p.stat().st_mtime_ns for p in records(tmp_path / "s")] == stamps

    # bad input into the existing sweep: refused before Hydra writes anything there
    before = {p: p.read_bytes() for p in (tmp_path / "s").rglob("*") if p.is_file()}
    bad = cli(*TINY, "search=fixed", "batch=16,0", f"out_dir={tmp_path}", "name=s", cwd=tmp_path)
    assert bad.returncode == 2
    assert {p: p.read_bytes() for p in (tmp_path / "s").rglob("*") if p.is_file()} == before


def test_a_diverging_lr_is_recorded_as_diverged(tmp_path):
    out = cli(*TINY, "search=fixed", "optimizer.lr=1000", "batch=16", f"out_dir={tmp_path}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    (path,) = records(tmp_path)
    rec = json.loads(path.read_text())
    assert rec["lr_max_status"] == "nothing_trains" and rec["lr_max"] is None
    assert rec["trials"][0]["outcome"] == "diverged" and rec["trials"][0]["reason"]
    assert rec["lr_blowup_status"] == "no_stable_lr" and rec["lr_blowup_bracket"] == [None, 1000]
    assert "nothing trains" in out.stdout and "raise the budget" in out.stdout


def test_ctrl_c_mid_trial_is_one_line_and_exit_130(tmp_path):
    args = [*TINY, "search=fixed", "train.steps=100000", "batch=16", f"out_dir={tmp_path}", "name=i"]
    # A process started with SIGINT ignored keeps ignoring it (Unix; pytest-xdist's workers ignore
    # it), and so would the command: start it as a terminal would, with SIGINT at its default.
    proc = subprocess.Popen([sys.executable, "-m", "spectral_sweep.cli", *args], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not list((tmp_path / "i").rglob("config.json")) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(2)                                       # inside the trial's steps by now
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    lines = [line for line in stderr.splitlines() if line.strip() and "it/s" not in line and "%|" not in line
             and not line.startswith("spectral-sweep: plan:") and ": timing " not in line]   # what it said first
    assert lines == ["spectral-sweep: error: interrupted; rerun the same command to resume"], stderr


def test_a_spectrum_only_job_records_lambda_max_per_batch_size_and_the_report_tables_it(tmp_path):
    out = cli(*TINY, "search=none", "spectrum=hessian", "spectrum.batch_sizes=[4,32]", "spectrum.n_batches=2",
              "spectrum.iters=15", "batch=16", f"out_dir={tmp_path}", "name=sp", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    (path,) = records(tmp_path / "sp")
    spec = json.loads(path.read_text())["spectrum"]
    assert spec["operator"] == "hessian" and spec["bn_mode"] == "train" and spec["at"] == "init"
    sizes = {b["batch_size"]: b["lambda_max"] for b in spec["batches"]}
    assert set(sizes) == {4, 32} and all(len(v) == 2 and min(v) > 0 for v in sizes.values())
    assert spec["noise_scale"]["b_small"] == 4 and spec["noise_scale"]["b_big"] == 32
    table = (tmp_path / "sp" / "spectrum.csv").read_text()
    assert "lambda_max" in table


def test_sweeping_any_key_gives_each_job_its_folder_and_its_row(tmp_path):
    """optimizer.momentum is not in the folder name's fields: without the override suffix both jobs
    would share one folder and the second would overwrite the first."""
    out = cli(*TINY, "search=fixed", "batch=16,32", "optimizer.momentum=0,0.9", f"out_dir={tmp_path}",
              "name=m", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    found = records(tmp_path / "m")
    assert len(found) == 4 and len({p.parent for p in found}) == 4
    momenta = sorted(json.loads(p.read_text())["config"]["optimizer"]["momentum"] for p in found)
    assert momenta == [0, 0, 0.9, 0.9]
    import pandas as pd
    table = pd.read_csv(tmp_path / "m" / "lr_max.csv")
    # the shared overrides (search, budget, data size) stay out of the label, the swept one is in it
    assert sorted(set(table["optimizer"])) == ["sgd [optimizer.momentum=0.9]", "sgd [optimizer.momentum=0]"]
    assert list(table.groupby("optimizer").size()) == [2, 2]


def test_each_job_is_composed_by_the_preflight_and_once_more_to_run_it(tmp_path, monkeypatch):
    """Hydra's sweeper would compose every job a third time before launching it; the preflight has
    composed each exactly as the sweeper will, so that pass is skipped (and restored after)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.plugins.sweeper import Sweeper

    from spectral_sweep import preflight

    calls = []
    original = ConfigLoaderImpl.load_sweep_config
    monkeypatch.setattr(ConfigLoaderImpl, "load_sweep_config",
                        lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    args = [*TINY, "search=fixed", "train.steps=1", "batch=16,32,64", f"out_dir={tmp_path}", "name=c"]
    preflight.check_command(args)
    by_preflight, validate = len(calls), Sweeper.validate_batch_is_legal
    calls.clear()
    assert cli(*args, cwd=tmp_path).returncode == 0
    assert len(calls) == by_preflight + 3                      # the preflight's, then one a job to run it
    assert Sweeper.validate_batch_is_legal is validate


def test_a_grid_or_bisect_point_says_its_cost_after_its_first_trial_and_a_single_trial_does_not(tmp_path):
    """Searches that run one trial at a time say the point's cost once, from the first trial: a
    grid's cap is its lrs, a bisection's its search.max_trials and the reference; a fixed lr's one
    trial has nothing left to say it for."""
    common = [*TINY, "train.steps=4", "batch=16", f"out_dir={tmp_path}"]
    for name, args, cap in (("g", ["search=grid", "search.lrs=[0.01,0.1,1]"], 3),
                            ("b", ["search=bisect", "search.max_trials=4"], 5),     # 4 and the reference
                            ("f", ["search=fixed"], None)):
        out = cli(*common, *args, f"name={name}", cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        cost = [line for line in (out.stdout + out.stderr).splitlines() if " s a step (" in line]
        if cap is None:
            assert cost == [], cost
            continue
        assert len(cost) == 1 and "(measured on its first trial)" in cost[0] and "1 in flight" in cost[0], cost
        assert f"({cap} trials), at most " in cost[0] and cost[0].endswith(f"({cap} trials), 1 in flight"), cost
