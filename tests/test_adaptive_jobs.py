"""search=adaptive on real (tiny) training: fresh seeds per trial, trials in flight, reuse on a
rerun, and warm starts that follow the sweep's order."""

import json
from pathlib import Path

import pytest

from spectral_sweep.config.schema import compose
from spectral_sweep.point import run as job
from spectral_sweep.seeds import Stream, child_seed

TINY = ["model=vgg11_bn", "model.width=0.125", "dataset.train_size=256", "dataset.test_size=1000",
        "train.steps=30", "quiet=true", "search.max_trials=6", "search.precision=0.5", "search.reference=null",
        "train.channels_last=false",   # auto would time the memory format anew in each sweep folder
        "search.optimum=false"]        # on where a test asks for lr_opt


def point(tmp_path, batch, job_num, *extra, name="s"):
    config = compose(*TINY, f"batch={batch}", *extra)
    sweep = tmp_path / name
    return job.run_point(config, sweep / f"B{batch}", sweep, job_num=job_num)


def test_every_trial_has_its_own_seed_from_the_point_seed_and_its_index(tmp_path):
    rec = point(tmp_path, 16, 0, "search.parallel=1")
    seeds = [t.seed for t in rec.trials]
    assert seeds == [child_seed(0, Stream.TRIAL, k) for k in range(len(seeds))]
    assert rec.search == "adaptive" and 2 <= len(rec.trials) <= 6
    other = point(tmp_path, 32, 0, "search.parallel=1", "search.max_trials=2", name="t")   # 2 trials to compare
    assert [t.seed for t in other.trials][:2] == seeds[:2]          # batch sizes share random numbers


def test_two_trials_in_flight_give_the_same_records_twice_and_a_rerun_trains_nothing(tmp_path):
    a = point(tmp_path, 16, 0, "search.parallel=2", name="a")
    b = point(tmp_path, 16, 0, "search.parallel=2", name="b")
    assert [(t.lr, t.outcome, t.seed) for t in a.trials] == [(t.lr, t.outcome, t.seed) for t in b.trials]
    assert [t.final_train_loss for t in a.trials] == pytest.approx([t.final_train_loss for t in b.trials], nan_ok=True)
    (tmp_path / "a" / "B16" / "record.json").unlink()                # the record goes, the trials stay
    again = point(tmp_path, 16, 0, "search.parallel=2", name="a")
    assert again.trials_reused == len(a.trials)
    assert [(t.lr, t.outcome) for t in again.trials] == [(t.lr, t.outcome) for t in a.trials]


def test_a_warm_start_depends_only_on_earlier_jobs(tmp_path):
    """Issue 20, item 10: deleting one finished trial of the first job and rerunning must not make
    it warm-start from a batch size that finished later."""
    first = point(tmp_path, 16, 0, "search.parallel=1")
    second = point(tmp_path, 32, 1, "search.parallel=1")
    warm = first.lr_max * 2 if first.lr_max_status == "bracketed" else 0.05     # x B/B' for SGD
    assert second.search_start == pytest.approx(warm)
    job_dir = Path(first.record_path).parent
    Path(first.record_path).unlink()
    next(iter(sorted((job_dir / "trials").glob("*.json")))).unlink()
    again = point(tmp_path, 16, 0, "search.parallel=1")
    assert first.lr_max_status == "bracketed"
    assert again.search_start == first.search_start == 0.05              # the cold start, as before
    assert [(t.lr, t.outcome) for t in again.trials] == [(t.lr, t.outcome) for t in first.trials]
    assert again.trials_reused == len(first.trials) - 1


def test_the_record_carries_the_interval_and_the_report_refits_it(tmp_path):
    rec = point(tmp_path, 16, 0, "search.max_trials=8", "search.parallel=1", "search.optimum=true",
                "search.opt_trials=3")
    data = json.loads(Path(rec.record_path).read_text())
    assert data["objective"] == "test_acc" and 1 <= data["lr_opt_trials"] <= 3        # lr_opt was asked for
    assert data["lr_opt_status"] in ("bracketed", "upper_bound", "lower_bound", "flat", "too_few")
    assert len(data["trials"]) <= 8 + data["lr_opt_trials"]
    assert data["lr_max_status"] == "bracketed"          # 30 steps at B=16 train at lr 0.05
    lo, hi = data["lr_max_bracket"]
    assert lo < data["lr_max"] < hi and data["lr_max_se"] > 0 and data["lr_safe"] < data["lr_max"]
    assert data["edge_spread"] > 0
