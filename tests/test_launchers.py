"""Jobs run by other launchers than the basic one, and jobs that fail: joblib and submitit make
the basic launcher's records, a failed job stops the sweep in one line and its rerun resumes, a
missing launcher plugin or an out-of-memory batch is told as what to do."""

import json
import subprocess
import sys

import pytest
import torch
from test_cli import TINY, records
from test_cli import cli as run_cli
from test_resume import same_trials

from spectral_sweep import preflight
from spectral_sweep.config.schema import compose
from spectral_sweep.errors import UsageError
from spectral_sweep.point import run as job
from spectral_sweep.point import trials as runner


@pytest.fixture(scope="module")
def basic_sweep(tmp_path_factory):
    """One sweep by the basic launcher, which each parallel launcher's sweep is compared with (it
    only reads its records); the folder and the arguments both use."""
    out_dir = tmp_path_factory.mktemp("launchers")
    args = [*TINY, "search=fixed", "optimizer.lr=0.01", "batch=16,32", f"out_dir={out_dir}"]
    basic = run_cli(*args, "name=basic", cwd=out_dir)
    assert basic.returncode == 0, basic.stderr[-2000:]
    return out_dir, args


@pytest.mark.parametrize("launcher", [
    ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"],
])
def test_parallel_launchers_make_the_same_records_as_the_basic_one(tmp_path, basic_sweep, launcher):
    out_dir, args = basic_sweep
    name = "other_" + launcher[0].rpartition("=")[2]
    other = run_cli(*args, f"name={name}", *launcher, cwd=tmp_path)
    assert other.returncode == 0, other.stderr[-2000:]
    a = [json.loads(p.read_text()) for p in records(out_dir / "basic")]
    b = [json.loads(p.read_text()) for p in records(out_dir / name)]
    assert len(a) == len(b) == 2
    for ra, rb in zip(a, b):
        same_trials(ra, rb)
    assert (out_dir / name / "report.md").exists()      # the report still runs once, at the end


FAIL_AT_B16 = """
import sys
from spectral_sweep import cli
from spectral_sweep.point import trials as runner
real = runner.run_trial
def planted(make_model, data, lr, settings, hooks=()):
    if settings.batch_size == 16:
        raise RuntimeError("planted failure")
    return real(make_model, data, lr, settings, hooks=hooks)
runner.run_trial = planted
sys.argv = ["spectral-sweep", *sys.argv[1:]]
cli.main()
"""


def test_a_failed_job_stops_the_sweep_with_one_line_and_keeps_its_traceback(tmp_path):
    args = [*TINY, "search=fixed", "optimizer.lr=0.01", "batch=8,16,32", f"out_dir={tmp_path}", "name=f"]
    out = subprocess.run([sys.executable, "-c", FAIL_AT_B16, *args], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    (line,) = [x for x in out.stderr.splitlines() if x.startswith("spectral-sweep: error:")]
    assert "job #1" in line and "batch=16" in line and "planted failure" in line
    assert [json.loads(p.read_text())["batch_size"] for p in records(tmp_path / "f")] == [8]   # B=32 never ran
    (error,) = (tmp_path / "f").rglob("error.txt")
    assert "RuntimeError: planted failure" in error.read_text() and "_B16_" in str(error)
    again = subprocess.run([sys.executable, "-m", "spectral_sweep.cli", *args], cwd=tmp_path, capture_output=True,
                           text=True, timeout=300)                     # the fault gone, the rerun resumes
    assert again.returncode == 0, again.stderr
    assert not error.exists() and len(records(tmp_path / "f")) == 3    # and leaves no stale traceback behind


def test_missing_launcher_plugin_names_the_extra(monkeypatch):
    monkeypatch.setattr(preflight.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UsageError, match=r"spectral-sweep\[cluster\]"):
        preflight.check_launcher("joblib")


def test_out_of_memory_names_the_batch_and_offers_micro_batches(tmp_path, monkeypatch):
    def oom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(runner, "run_trial", oom)
    config = compose("model=vgg11_bn", "model.width=0.125", "dataset.train_size=256", "dataset.test_size=64",
                     "search=fixed", "train.steps=2", "batch=128", "device=cpu", "quiet=true")
    with pytest.raises(UsageError, match=r"out of memory training batch 128 .* train.micro_batch=32"):
        job.run_point(config, tmp_path)
