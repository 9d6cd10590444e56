"""Surviving real life: kill -9 and rerun, the same command twice at once, concurrent writers,
corrupt files. Other launchers and failing jobs: tests/test_launchers.py."""

import json
import multiprocessing
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from test_cli import TINY, records
from test_cli import cli as run_cli

from spectral_sweep.config.schema import compose
from spectral_sweep.files import read_json, write_json_atomic
from spectral_sweep.point import run as job
from spectral_sweep.point.store import TrialCache
from spectral_sweep.trial.record import TrialRecord

GRID = ["search=grid", "search.lrs=[0.003,0.01,0.03]", "train.steps=25"]


def trial_files(sweep):
    return sorted(Path(sweep).rglob("trials/*.json"))


def test_sigkill_mid_sweep_then_rerun_reuses_every_finished_trial(tmp_path):
    args = [*TINY, *GRID, "batch=16,32", f"out_dir={tmp_path}", "name=k"]
    proc = subprocess.Popen([sys.executable, "-m", "spectral_sweep.cli", *args], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while len(trial_files(tmp_path / "k")) < 4 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = trial_files(tmp_path / "k")
    assert 4 <= len(finished) < 6, "the kill should land inside the second job"
    for path in finished:                     # atomic writes: nothing half-written
        assert read_json(path, ["lr", "stable"])

    out = run_cli(*args, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    recs = [json.loads(p.read_text()) for p in records(tmp_path / "k")]
    assert [len(r["trials"]) for r in recs] == [3, 3]
    reused = sum(r["trials_reused"] for r in recs)
    # the first job had finished (its record is reused whole); the second reuses its finished trials
    assert reused == len(finished) - 3
    assert f"B=32: reused {reused} finished trial" in out.stdout          # and says so
    assert len(trial_files(tmp_path / "k")) == 6





def same_trials(a, b):
    """Every trial's lr and verdict exactly, its losses to float rounding: a worker process may
    run with another thread count, and so another summation order, than the launching one."""
    assert [(t["lr"], t["stable"]) for t in a["trials"]] == [(t["lr"], t["stable"]) for t in b["trials"]]
    for s, t in zip(a["trials"], b["trials"]):
        assert [step for step, _ in t["loss_curve"]] == [step for step, _ in s["loss_curve"]]
        assert [loss for _, loss in t["loss_curve"]] == pytest.approx([loss for _, loss in s["loss_curve"]], rel=1e-5)


def _hammer(path, worker):
    for i in range(200):
        write_json_atomic(path, {"worker": worker, "i": i, "payload": list(range(500))})


def test_two_concurrent_writers_never_corrupt_a_record(tmp_path):
    path = tmp_path / "record.json"
    procs = [multiprocessing.Process(target=_hammer, args=(path, w)) for w in range(2)]
    for p in procs:
        p.start()
    seen = 0
    while any(p.is_alive() for p in procs):
        if path.exists():
            assert read_json(path)["payload"][-1] == 499
            seen += 1
    for p in procs:
        p.join()
    assert read_json(path)["i"] == 199 and seen > 0
    assert not list(tmp_path.glob(".*.tmp"))


def test_corrupt_trial_is_named_and_recomputed(tmp_path):
    cache = TrialCache(tmp_path)
    cache.put("abc", TrialRecord(lr=0.1, outcome="trained"))
    assert cache.get("abc").trained and cache.hits == 1            # a finished trial reads back
    (cache.dir / "abc.json").write_text('{"lr": 0.1, "sta')
    with pytest.warns(UserWarning, match="abc.json"):
        assert cache.get("abc") is None


def test_corrupt_job_record_is_named_and_the_job_recomputed(tmp_path):
    args = [*TINY, "search=fixed", "optimizer.lr=0.01", "batch=16", f"out_dir={tmp_path}", "name=c"]
    assert run_cli(*args, cwd=tmp_path).returncode == 0
    (path,) = records(tmp_path / "c")
    path.write_text("{ truncated")
    out = run_cli(*args, cwd=tmp_path, fresh=True)     # the warning on stderr, as a shell sees it
    assert out.returncode == 0
    assert "corrupt job record" in out.stderr and str(path) in out.stderr
    assert json.loads(path.read_text())["batch_size"] == 16


@pytest.mark.parametrize("field, value", [("lr", "abc"), ("lr", float("nan")), ("steps", 1.5), ("test_acc", [1])])
def test_a_trial_file_with_a_wrong_type_is_corrupt_and_recomputed(tmp_path, field, value):
    cache = TrialCache(tmp_path)
    cache.put("abc", TrialRecord(lr=0.1, outcome="trained", test_acc=0.5, steps=3))
    data = read_json(cache.dir / "abc.json")
    write_json_atomic(cache.dir / "abc.json", {**data, field: value})
    with pytest.warns(UserWarning, match=f"corrupt trial record.*field {field}") as caught:
        assert cache.get("abc") is None and cache.hits == 0
    assert len(caught) == 1


def test_a_job_record_with_a_wrong_type_is_recomputed_and_never_breaks_a_neighbours_warm_start(tmp_path):
    config = compose(*TINY, "search=fixed", "optimizer.lr=0.01", "batch=16", "device=cpu")
    sweep, job_dir = tmp_path / "s", tmp_path / "s" / "b16"
    first = job.run_point(config, job_dir, sweep)
    data = read_json(job_dir / "record.json")
    write_json_atomic(job_dir / "record.json", {**data, "lr_max": "abc", "lr_max_status": "bracketed"})
    bisect = compose(*TINY, "batch=32", "device=cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")     # the neighbour's load says nothing and finds no start
        assert job.warm_start(bisect, job.earlier_points(bisect, sweep, first.group_key, None)) == (None, None)
    with pytest.warns(UserWarning, match="corrupt job record.*field lr_max holds 'abc'") as caught:
        again = job.run_point(config, job_dir, sweep)
    assert len([w for w in caught if "corrupt" in str(w.message)]) == 1
    assert again.lr_max == first.lr_max and read_json(job_dir / "record.json")["lr_max"] == first.lr_max


# 30 steps: B=32 brackets its lr_max in 3 trials and B=64 warm-starts from it (4 trials); at TINY's
# 8 steps nothing trained, both jobs searched cold through 23 trials each, and no warm start was seen
BISECT = ["search=bisect", "search.blowup=false", "search.reference=null", "optimizer.lr=0.05", "search.tolerance=2",
          "train.steps=30", "train.channels_last=false"]


def test_two_identical_commands_at_once_share_the_work_and_match_a_clean_run(tmp_path):
    """The same command twice into one sweep: each job is locked, so the second process waits and
    reuses, jobs finish in the same order in both, and every warm start sees the same neighbours."""
    args = [*TINY, *BISECT, "batch=32,64", f"out_dir={tmp_path}"]

    def start(name):
        return subprocess.Popen([sys.executable, "-m", "spectral_sweep.cli", *args, f"name={name}"], cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    clean, *procs = start("clean"), start("twice"), start("twice")   # the clean run in its own folder, meanwhile
    _, clean_err = clean.communicate(timeout=300)
    assert clean.returncode == 0, clean_err[-2000:]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-2000:] + outs[1][1][-2000:]
    # each job was trained by one process and reused by the other
    assert sum(out.count("reusing finished job") for out, _ in outs) == 2, outs
    a = [json.loads(p.read_text()) for p in records(tmp_path / "clean")]
    b = [json.loads(p.read_text()) for p in records(tmp_path / "twice")]
    assert [r["warm_from"] for r in a] == [None, 32]                          # B=64 started warm
    assert [r["search_start"] for r in a] == [r["search_start"] for r in b]    # the same warm starts
    for ra, rb in zip(a, b):
        same_trials(ra, rb)
    # every trial trained once: no trial file beyond the records' trials, no temp file left
    assert len(trial_files(tmp_path / "twice")) == sum(len(r["trials"]) for r in b)
    assert not list((tmp_path / "twice").rglob(".*.tmp"))


def test_a_write_removes_temp_files_left_by_a_killed_writer_but_not_a_live_ones(tmp_path):
    import os

    from spectral_sweep.files import STALE_SECONDS

    path = tmp_path / "lr_max.csv"
    stale, live = tmp_path / ".lr_max.csv.killed.tmp", tmp_path / ".lr_max.csv.writing.tmp"
    other = tmp_path / ".scaling.csv.killed.tmp"                 # another file's: not this write's business
    for f in (stale, live, other):
        f.write_text("half")
    old = time.time() - STALE_SECONDS - 60
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    write_json_atomic(path, {"ok": 1})
    assert read_json(path) == {"ok": 1}
    assert not stale.exists() and live.exists() and other.exists()
