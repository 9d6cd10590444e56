"""Planted files (issue 33, kinds 3-5): what is read back is checked before it is used, a report
reads exactly its own sweep, and nothing the tool writes leaves the sweep. Each test plants the
file for real and asserts the outcome: a warning naming the file and a recompute, one line of
refusal, or nothing written outside."""

import json
import os
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from test_cli import TINY
from test_report import make_sweep
from test_train import Interrupt, settings, small_cnn

from spectral_sweep import preflight
from spectral_sweep.config.schema import compose
from spectral_sweep.data.load import load_dataset
from spectral_sweep.errors import UsageError
from spectral_sweep.files import read_json, write_json_atomic, write_text_atomic
from spectral_sweep.point import run as job
from spectral_sweep.point.record import JobRecord
from spectral_sweep.point.store import TrialCache, job_lock
from spectral_sweep.report import tables
from spectral_sweep.trial import fastpath
from spectral_sweep.trial.record import TrialRecord
from spectral_sweep.trial.timing import ChoiceStore
from spectral_sweep.trial.train import run_trial

# ============================================================================================
# 3. everything read back is checked before it is used
# ============================================================================================


@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic", seed=0, train_size=512, test_size=256)   # test_train's: 16 steps an epoch at B=32


def _two_trials(tmp_path):
    cache = TrialCache(tmp_path)
    cache.put("mine", TrialRecord(lr=0.01, outcome="trained", test_acc=0.5, steps=8, seed=3))
    cache.put("other", TrialRecord(lr=0.02, outcome="diverged", steps=2, seed=4))
    return cache


def _legacy(path):
    """The file as written before trial files carried their key."""
    stored = read_json(path)
    stored.pop("key")
    write_json_atomic(path, stored)


@pytest.mark.parametrize("plant", ["another trial's file copied over", "a keyless file of another lr",
                                   "a keyless file of another seed"])
def test_a_trial_file_that_is_another_trials_is_set_aside_and_retrained(tmp_path, plant):
    cache = _two_trials(tmp_path)
    mine, other = cache.dir / "mine.json", cache.dir / "other.json"
    if plant == "another trial's file copied over":
        shutil.copy(other, mine)
    elif plant == "a keyless file of another lr":
        shutil.copy(other, mine)
        _legacy(mine)
    else:
        write_json_atomic(mine, {**read_json(mine), "seed": 4})
        _legacy(mine)
    with pytest.warns(UserWarning, match=r"trial record .*mine\.json is not this trial's") as caught:
        assert cache.get("mine", 0.01, 3) is None and cache.hits == 0
    assert len(caught) == 1 and "mine.json.bad" in str(caught[0].message)
    assert not mine.exists() and (cache.dir / "mine.json.bad").exists()
    cache.put("mine", TrialRecord(lr=0.01, outcome="trained", test_acc=0.5, steps=8, seed=3))   # retrained
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.get("mine", 0.01, 3).test_acc == 0.5 and "key" not in cache.get("mine", 0.01).extra


@pytest.mark.parametrize("field, value", [("test_acc", float("inf")), ("test_acc", 1.5), ("test_acc", -0.1),
                                          ("lr", -0.01), ("lr", 1e400), ("steps", -1), ("seconds", float("nan"))])
def test_a_trial_number_out_of_range_is_corrupt_set_aside_and_recomputed(tmp_path, field, value):
    cache = _two_trials(tmp_path)
    write_json_atomic(cache.dir / "mine.json", {**read_json(cache.dir / "mine.json"), field: value})
    with pytest.warns(UserWarning, match=rf"corrupt trial record .*mine\.json, set aside as mine\.json\.bad.*{field}"):
        assert cache.get("mine", 0.01, 3) is None
    assert (cache.dir / "mine.json.bad").exists() and cache.get("other", 0.02, 4).lr == 0.02


def _checkpoint_of(data, path, lr, **kw):
    """A real trial's epoch checkpoint at ``path``: killed in its third epoch (512 samples / B=32: step 40)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with pytest.raises(KeyboardInterrupt):
        run_trial(small_cnn, data, lr, settings(steps=None, epochs=3, evaluate=False, checkpoint=str(path),
                                                checkpoint_every=0, **kw), hooks=[Interrupt(40)])
    assert path.exists()
    return path


@pytest.mark.parametrize("theirs", ["another lr", "another seed", "another key", "no identity"])
def test_a_checkpoint_that_is_not_this_trials_is_set_aside_and_the_trial_trained_from_the_start(data, tmp_path,
                                                                                                theirs):
    """Another lr's or seed's checkpoint copied over this trial's, one of another key (the point's
    config differs), or one that does not say whose it is: never resumed."""
    whole = run_trial(small_cnn, data, 0.05, settings(steps=None, epochs=3, evaluate=False))
    mine = tmp_path / "mine.pt"
    made = _checkpoint_of(data, tmp_path / "elsewhere" / ("other.pt" if theirs == "another key" else "mine.pt"),
                          0.02 if theirs == "another lr" else 0.05, seed=1 if theirs == "another seed" else 0)
    shutil.copy(made, mine)
    if theirs == "no identity":
        state = torch.load(mine, weights_only=True)
        del state["identity"]
        torch.save(state, mine)
    aside = r"trial checkpoint .*mine\.pt is not this trial's .*set aside as mine\.pt\.bad"
    with pytest.warns(UserWarning, match=aside):
        again = run_trial(small_cnn, data, 0.05, settings(steps=None, epochs=3, evaluate=False, checkpoint=str(mine)))
    assert again.loss_curve == whole.loss_curve and again.steps == whole.steps
    assert not mine.exists() and (tmp_path / "mine.pt.bad").exists()


def test_its_own_checkpoint_still_resumes(data, tmp_path, capsys):
    path = _checkpoint_of(data, tmp_path / "mine.pt", 0.05)
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run_trial(small_cnn, data, 0.05, settings(steps=None, epochs=3, evaluate=False, checkpoint=str(path),
                                                  quiet=False))
    assert "resuming trial lr=0.05" in capsys.readouterr().out


@pytest.mark.parametrize("field, value", [("lr_max", 1e300), ("lr_max", -1.0), ("lr_safe", 1e300), ("lr_blowup", -2.0),
                                          ("best_test_acc", float("inf")), ("lr_max_bracket", [1e-3, 1e300])])
def test_a_job_record_number_out_of_range_is_never_a_warm_start_and_the_job_is_recomputed(tmp_path, field, value):
    config = compose(*TINY, "search=fixed", "optimizer.lr=0.01", "batch=16", "device=cpu")
    sweep, job_dir = tmp_path / "s", tmp_path / "s" / "b16"
    first = job.run_point(config, job_dir, sweep)
    write_json_atomic(job_dir / "record.json", {**read_json(job_dir / "record.json"), field: value,
                                                "lr_max_status": "bracketed"})
    bisect = compose(*TINY, "batch=32", "device=cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert job.warm_start(bisect, job.earlier_points(bisect, sweep, first.group_key, None)) == (None, None)
    with pytest.warns(UserWarning, match=rf"corrupt job record.*record\.json.*{field}"):
        again = job.run_point(config, job_dir, sweep)
    assert again.lr_max == first.lr_max and read_json(job_dir / "record.json")[field] == getattr(first, field)
    assert read_json(job_dir / "record.json.bad")[field] == value   # kept for a look, never read again


def test_a_warm_start_never_leaves_the_search_range():
    near = JobRecord(model="m", dataset="d", optimizer="sgd", batch_size=8, trials=[], lr_max=90.0,
                     lr_max_status="bracketed")
    far = compose(*TINY, "batch=128", "device=cpu")   # 90 x 16: far past search.lr_max_cap
    start, source = job.warm_start(far, [near])
    assert source is near and start == far.search.lr_max_cap


CHOICE_KEY = {"model": "m", "batch": 8, "device": "cpu", "knob": "compile"}


@pytest.mark.parametrize("stored", [{"choice": "bogus"}, ["true"], "true", {"choice": True},
                                    {"choice": "true", "compiled_s": float("inf")},
                                    {"choice": "false", "seconds": 3.0}, {"choice": "false", "eager_s": "fast"}, None])
def test_an_autotune_file_that_is_not_a_choice_is_set_aside_named_and_timed_again(tmp_path, stored):
    store = ChoiceStore(tmp_path)
    path = store.path(CHOICE_KEY)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json" if stored is None else json.dumps({"key": CHOICE_KEY, "value": stored}))
    timed = []
    with pytest.warns(UserWarning, match=rf"autotune file .*{path.name} .*set aside.*timing again"):
        found = fastpath._remember(store, {"model": "m", "batch": 8, "device": "cpu"}, "compile",
                                   lambda: timed.append(1) or {"choice": "false", "eager_s": 0.01})
    assert timed == [1] and found["choice"] == "false"
    assert store.get(CHOICE_KEY, fastpath.CHOICES["compile"])["choice"] == "false"   # the fresh timing is kept
    assert path.with_name(path.name + ".bad").exists()


# ============================================================================================
# 4. a report reads exactly its own sweep
# ============================================================================================


def _keyed_sweep(root, seed=0):
    """make_sweep's records, each with a job_key (as every record written today has), in a folder
    marked as a sweep (Hydra's multirun.yaml)."""
    recs, _, _ = make_sweep(root, seed)
    for path in root.rglob("record.json"):
        stored = json.loads(path.read_text()) if path.parent.name != "vgg16_cifar100_sgd_B4096_s0" else {}   # corrupt
        if "trials" in stored:
            write_json_atomic(path, {**stored, "job_key": f"{root.name}-{path.parent.name}"})
    (root / "multirun.yaml").write_text("hydra: {}\n")
    return len(recs)


def _loaded(*roots):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records, skipped = tables.load_sweep(list(roots))
    left_out = [str(w.message) for w in caught if str(w.message).startswith("left out")]
    return records, left_out, skipped


@pytest.mark.parametrize("given", ["the same folder twice", "a parent and its child", "a link to the sweep",
                                   "a copied folder"])
def test_a_report_counts_each_record_once_and_says_what_it_left_out(tmp_path, given):
    sweep = tmp_path / "outputs" / "quickstart"
    n = _keyed_sweep(sweep)
    alone, none, _ = _loaded(sweep)
    assert len(alone) == n and none == []
    if given == "the same folder twice":
        roots = [sweep, sweep]
    elif given == "a parent and its child":
        roots = [tmp_path / "outputs", sweep]
    elif given == "a link to the sweep":
        (tmp_path / "outputs" / "link").symlink_to(sweep)
        roots = [tmp_path / "outputs", tmp_path / "outputs" / "link"]
    else:
        shutil.copytree(sweep, tmp_path / "outputs" / "quickstart_copy")
        roots = [tmp_path / "outputs"]
    records, left_out, skipped = _loaded(*roots)
    if given == "the same folder twice":
        assert [r.record_path for r in records] == [r.record_path for r in alone]
    assert len(records) == n and len({(r.optimizer, r.batch_size, r.seed) for r in records}) == n
    assert (tables.lr_max_table(records).seeds == 1).all()
    files = len(list(sweep.rglob("record.json")))   # the corrupt ones too: read once, named once
    expected = f"{n} copy(ies)" if given == "a copied folder" else f"{files} record(s) reached twice"
    assert len(left_out) == 1 and left_out[0] in skipped and expected in left_out[0]


def test_a_nested_sweep_never_joins_its_parents_report_but_reports_on_its_own(tmp_path):
    team, sub = tmp_path / "outputs" / "team", tmp_path / "outputs" / "team" / "sub"
    n = _keyed_sweep(team)
    m = _keyed_sweep(sub, seed=1)
    for given in ([team], [tmp_path / "outputs"]):
        records, left_out, _ = _loaded(*given)
        assert len(records) == n and not any("/sub/" in r.record_path for r in records)
        assert len(left_out) == 1 and f"nested sweep(s) {sub}" in left_out[0]
    records, left_out, _ = _loaded(sub)
    assert len(records) == m and left_out == []


# ============================================================================================
# 5. writes stay inside the sweep
# ============================================================================================


@pytest.mark.parametrize("name", [".", "./", "./.", "a/..", "loop"])
def test_a_name_that_resolves_to_out_dir_itself_is_refused_in_one_line_with_nothing_written(tmp_path, name):
    (tmp_path / "report.md").write_text("the user's own")
    (tmp_path / "loop").symlink_to(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(UsageError, match="name") as e:
        preflight.check_command([*TINY, "search=fixed", "batch=16", f"out_dir={tmp_path}", f"name={name}"])
    assert "\n" not in str(e.value)
    assert sorted(tmp_path.rglob("*")) == before and (tmp_path / "report.md").read_text() == "the user's own"


def _writers(folder: Path):
    """Every way the tool writes a file into a sweep folder, each as (file, write)."""
    def lock():
        with job_lock(folder):
            pass

    cache = TrialCache(folder)
    return {"error.txt": lambda: write_text_atomic(folder / "error.txt", "Traceback"),
            "record.json": lambda: write_json_atomic(folder / "record.json", {"ok": 1}),
            "report.md": lambda: write_text_atomic(folder / "report.md", "# report"),
            ".lock": lock,
            "trials/k.json": lambda: cache.put("k", TrialRecord(lr=0.1, outcome="trained"))}


@pytest.mark.parametrize("name", ["error.txt", "record.json", "report.md", ".lock", "trials/k.json"])
def test_no_file_the_tool_writes_follows_a_link_planted_in_its_place(tmp_path, name):
    outside, folder = tmp_path / "outside.txt", tmp_path / "sweep" / "job"
    outside.write_text("the user's own")
    planted = folder / name
    planted.parent.mkdir(parents=True)
    planted.symlink_to(outside)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the lock and the log say they replaced a link
        _writers(folder)[name]()
    assert outside.read_text() == "the user's own" and not planted.is_symlink() and planted.is_file()


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_records_and_reports_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        write_json_atomic(tmp_path / "record.json", {"ok": 1})
        write_text_atomic(tmp_path / "report.md", "# report")
        TrialCache(tmp_path).put("k", TrialRecord(lr=0.1, outcome="trained"))
    finally:
        os.umask(old)
    for path in (tmp_path / "record.json", tmp_path / "report.md", tmp_path / "trials" / "k.json"):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask
