"""The report: tables equal the records' numbers, figures exist and are real, bad files are named."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from spectral_sweep import report, theory
from spectral_sweep.curvature.spectrum import SpectrumRecord
from spectral_sweep.files import write_json_atomic
from spectral_sweep.point.record import JobRecord
from spectral_sweep.point.store import write_job_record
from spectral_sweep.report.figures import plot_sharpness
from spectral_sweep.report.tables import label_variants
from spectral_sweep.trial.record import TrialRecord

R = 2 ** 0.25
SGD_B = [32, 64, 128, 256, 512, 1024, 2048]
ADAM_B = [32, 64, 128, 256, 512, 1024]
SGD_SAT = 512


def _trials(lr_edge: float, rng, B: int) -> tuple[list[dict], float, float]:
    """Trials of a bisection-like search around a true edge: a coarse ladder below it, then the
    bracket [lo, lo * 2^(1/4)] that contains the edge; diverged ones have no test accuracy."""
    lo = lr_edge * R ** -rng.uniform()      # where the bisection happened to stop
    hi = lo * R
    lrs = sorted({*(lo / 4 ** j for j in range(1, 5)), lo, hi, hi * 4})
    lr_opt = lr_edge / 3
    out = []
    for lr in lrs:
        stable = lr <= lo * (1 + 1e-12)
        acc = 0.72 - 0.05 * math.log10(B / 32) - 0.09 * math.log10(lr / lr_opt) ** 2 + rng.normal(0, 0.004)
        out.append({"lr": lr, "stable": stable, "reason": None if stable else "loss > 2x initial",
                    "initial_loss": 4.6, "final_train_loss": 1.2 + 0.3 * rng.uniform() if stable else float("nan"),
                    "test_acc": round(acc, 4) if stable else None, "test_loss": 1.3 if stable else None,
                    "steps": 400 if stable else 37, "budget_steps": 400, "seconds": 2.5 if stable else 0.3,
                    "images_per_s": 5000.0, "loss_curve": [[0, 4.6], [400, 1.2]], "diverged": not stable})
    return out, lo, hi


def _record(model, optimizer, B, seed, rng, edge, momentum, spectrum=None):
    trials, lo, hi = _trials(edge, rng, B)
    stable = [t for t in trials if t["stable"]]
    best = max(stable, key=lambda t: t["test_acc"])
    rec = {"schema": 1, "kind": "sweep_point", "model": model, "dataset": "cifar100", "optimizer": optimizer,
           "batch_size": B, "seed": seed, "expected_exponent": theory.expected_exponent(optimizer),
           "momentum": momentum, "search": "bisect", "lr_max": lo, "lr_max_bracket": [lo, hi],
           "lr_max_status": "bracketed", "lr_best": best["lr"], "best_test_acc": best["test_acc"],
           "trials": trials, "steps": sum(t["steps"] for t in trials),
           "seconds": sum(t["seconds"] for t in trials), "device": "NVIDIA H100 80GB HBM3",
           "commit": "abc123def456", "command": "spectral-sweep model=vgg16 batch=32,64 optimizer=sgd,adam",
           "created": f"2025-01-0{1 + seed}T10:{B % 60:02d}:00+00:00", "config": {"batch": B}}
    if spectrum is not None:
        rec["spectrum"] = spectrum
    return rec


def _spectrum(B, rng, lam_full=20.0, kappa=4000.0):
    lam = lam_full + kappa / B
    grid = np.linspace(-5, lam * 1.1, 120)
    dens = np.exp(-grid ** 2 / 2) + 1e-3 * np.exp(-(grid - lam) ** 2 / (0.02 * lam ** 2)) + 1e-6
    return {"operator": "hessian", "bn_mode": "train", "at": "init", "preconditioned": False,
            "batches": [{"batch_size": B, "lambda_max": list(lam * (1 + 0.05 * rng.normal(size=4))),
                         "lambda_min": list(-0.1 * lam * (1 + 0.05 * rng.normal(size=4)))}],
            "full": {"lambda_max": lam_full * 1.02, "lambda_min": -1.0, "samples": 50000} if B == 2048 else None,
            "density": [{"batch_size": B, "grid": list(grid), "density": list(dens / dens.sum())}],
            "noise_scale": {"b_noise": 180.0, "trace_sigma": 900.0, "grad_sqnorm": 5.0, "b_small": 32,
                            "b_big": 512} if B == 32 else None}


def make_sweep(root, rng_seed=0):
    """Two groups (vgg16 SGD, saturating at B=512; vgg16 Adam, sqrt law) with a spectrum on SGD,
    one lower_bound point, and a corrupt and a partial record."""
    rng = np.random.default_rng(rng_seed)
    recs = []
    for B in SGD_B:
        edge = 0.0025 * min(B, SGD_SAT)
        recs.append(_record("vgg16", "sgd", B, 0, rng, edge, 0.9, spectrum=_spectrum(B, rng)))
    for B in ADAM_B:
        recs.append(_record("vgg16", "adam", B, 0, rng, 3e-4 * B ** 0.5, 0.9))
    # a point still stable at the search cap: must be flagged, not fitted
    lb = _record("vgg16", "adam", 2048, 0, rng, 3e-4 * 2048 ** 0.5, 0.9)
    lb.update(lr_max=0.05, lr_max_bracket=[0.05, None], lr_max_status="lower_bound")
    recs.append(lb)
    for r in recs:
        write_json_atomic(root / f"{r['model']}_cifar100_{r['optimizer']}_B{r['batch_size']}_s0" / "record.json", r)
    bad = root / "vgg16_cifar100_sgd_B4096_s0" / "record.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"model": "vgg16", "dataset": "cifar100", "optim')
    partial = root / "vgg16_cifar100_sgd_B8192_s0" / "record.json"
    write_json_atomic(partial, {"model": "vgg16", "dataset": "cifar100", "optimizer": "sgd", "batch_size": 8192})
    return recs, bad, partial


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    recs, bad, partial = make_sweep(root)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        written = report.write_report([root], quiet=True)
    return root, recs, bad, partial, written, [str(w.message) for w in caught]


def test_lr_max_csv_equals_records(built):
    root, recs, *_ = built
    df = pd.read_csv(root / "lr_max.csv")
    assert len(df) == len(recs)
    for r in recs:
        row = df[(df.optimizer == r["optimizer"]) & (df.batch_size == r["batch_size"])]
        assert len(row) == 1
        row = row.iloc[0]
        assert row.lr_max == pytest.approx(r["lr_max"], rel=1e-12)
        assert row.lr_lo == pytest.approx(r["lr_max_bracket"][0], rel=1e-12)
        if r["lr_max_bracket"][1] is None:
            assert math.isnan(row.lr_hi)
        else:
            assert row.lr_hi == pytest.approx(r["lr_max_bracket"][1], rel=1e-12)
        assert row.lr_max_status == r["lr_max_status"]
        assert row.lr_best == pytest.approx(r["lr_best"], rel=1e-12)
        assert row.best_test_acc == pytest.approx(r["best_test_acc"], rel=1e-12)
        assert row.trials == len(r["trials"])
        assert row.steps == r["steps"]
        assert row.seconds == pytest.approx(r["seconds"])
        assert row.seeds == 1


def test_scaling_table_verdicts_and_saturation(built):
    root, *_ = built
    sc = pd.read_csv(root / "scaling.csv").set_index("optimizer")
    sgd, adam = sc.loc["sgd"], sc.loc["adam"]
    # SGD: planted saturation at B=512 is found (within one grid step) and the fit below it is linear
    assert sgd.saturation_batch in (256, 512)
    assert sgd.fit_range == f"fit below B={int(sgd.saturation_batch)}"
    # four single-seed brackets on the planted line below the saturation: no seed scatter is
    # assumed any more, the residuals show none, so the brackets alone decide
    assert sgd.ci_low <= 1.0 <= sgd.ci_high and sgd.verdict == "consistent"
    assert sgd.n_fit < sgd.n_all == len(SGD_B)
    assert sgd.exponent_all < 0.8 and sgd.verdict_all == "inconsistent"   # the saturated points bend the all-points fit
    # Adam: the square-root law, no saturation, the lower_bound point excluded and flagged
    assert adam.expected_exponent == 0.5
    assert adam.ci_low <= 0.5 <= adam.ci_high and adam.verdict == "consistent"
    assert pd.isna(adam.saturation_batch)
    assert adam.n_fit == len(ADAM_B)
    assert "B=2048 lower_bound" in adam.excluded
    md = (root / "scaling.md").read_text()
    assert "**consistent**" in md and "lower_bound" in md and "fit below B=" in md


def test_spectrum_tables(built):
    root, recs, *_ = built
    sp = pd.read_csv(root / "spectrum.csv")
    assert set(sp.optimizer) == {"sgd"} and list(sp.batch_size) == SGD_B
    for r in recs[:len(SGD_B)]:
        row = sp[sp.batch_size == r["batch_size"]].iloc[0]
        lam = np.array(r["spectrum"]["batches"][0]["lambda_max"])
        assert row.lambda_max_mean == pytest.approx(lam.mean())
        assert row.lambda_max_std == pytest.approx(lam.std(ddof=1))
        assert row.lr_pred == pytest.approx(2 * 1.9 / lam.mean())
        assert row.lr_max == pytest.approx(r["lr_max"])
        assert row.ratio == pytest.approx(r["lr_max"] / row.lr_pred)
    sat = pd.read_csv(root / "saturation.csv").iloc[0]
    assert sat.lambda_full == pytest.approx(20.4) and sat.lambda_full_source.startswith("measured")
    assert sat.kappa_low < 4000 < sat.kappa_high
    assert sat.b_star == pytest.approx(sat.kappa / 20.4)
    assert sat.b_noise == 180.0
    assert sat.saturation_lr_max in (256, 512)
    assert "B* = kappa/lambda_full" in (root / "spectrum.md").read_text()


def test_figures_exist_and_are_real(built):
    root, *_, written, _ = built
    pngs = sorted(root.glob("*.png"))
    names = {p.name for p in pngs}
    assert {"lr_max_vs_batch.png", "normalised_lr.png", "accuracy_vs_lr_vgg16_cifar100_sgd.png",
            "accuracy_vs_lr_vgg16_cifar100_adam.png", "lambda_max_vs_batch_vgg16_cifar100_sgd.png",
            "density_vgg16_cifar100_sgd.png"} <= names
    assert not any("adam" in n for n in names if n.startswith(("lambda", "density")))
    for p in pngs:
        assert p.stat().st_size > 10_000, p
        img = mpimg.imread(p)
        assert img.ndim == 3 and img.shape[0] > 300 and img.std() > 0.01, p
        assert written[p.name] == p


def test_report_md_names_bad_files_and_links_everything(built):
    root, recs, bad, partial, written, caught = built
    md = (root / "report.md").read_text()
    assert str(bad) in md and str(partial) in md and "missing fields" in md
    assert any(str(bad) in w for w in caught) and any(str(partial) in w for w in caught)
    assert "abc123def456" in md and "NVIDIA H100" in md and "spectral-sweep model=vgg16" in md
    assert "2025-01-01" in md
    for name in written:
        if name.endswith(".png"):
            assert f"]({name})" in md, name
    assert "**consistent**" in md
    assert (root / "lr_max.md").read_text().count("\n| vgg16") == len(recs)


def test_seeds_are_combined(tmp_path):
    rng = np.random.default_rng(3)
    recs = [_record("m", "sgd", B, s, rng, 0.002 * B, 0.0) for B in (16, 32, 64) for s in (0, 1)]
    for r in recs:
        write_json_atomic(tmp_path / f"B{r['batch_size']}_s{r['seed']}" / "record.json", r)
    report.write_report(tmp_path, quiet=True)
    df = pd.read_csv(tmp_path / "lr_max.csv")
    assert list(df.seeds) == [2, 2, 2]
    r0, r1 = recs[0], recs[1]
    assert df.lr_max[0] == pytest.approx(math.sqrt(r0["lr_max"] * r1["lr_max"]))
    assert df.best_test_acc[0] == pytest.approx((r0["best_test_acc"] + r1["best_test_acc"]) / 2)
    assert df.trials[0] == len(r0["trials"]) + len(r1["trials"])


def test_group_with_too_few_points_is_a_row_not_a_crash(tmp_path):
    rng = np.random.default_rng(4)
    one = _record("m", "sgd", 64, 0, rng, 0.1, 0.9)
    none = _record("m", "adam", 64, 0, rng, 0.01, 0.9)
    none.update(lr_max=None, lr_max_bracket=[None, 1e-6], lr_max_status="no_stable_lr")
    lb = _record("m", "adam", 128, 0, rng, 0.01, 0.9)
    lb.update(lr_max=10.0, lr_max_bracket=[10.0, None], lr_max_status="lower_bound")
    for i, r in enumerate((one, none, lb)):
        write_json_atomic(tmp_path / f"j{i}" / "record.json", r)
    report.write_report(tmp_path, quiet=True)
    sc = pd.read_csv(tmp_path / "scaling.csv").set_index("optimizer")
    assert sc.loc["sgd", "verdict"] == "no fit" and "only 1 usable point" in sc.loc["sgd", "note"]
    # schema 1's "no_stable_lr" is read as today's "nothing_trains": excluded, and flagged
    assert "B=64 nothing_trains" in sc.loc["adam", "excluded"] and "B=128 lower_bound" in sc.loc["adam", "excluded"]
    assert "m adam B=64 seed 0: nothing trains**" in (tmp_path / "lr_max.md").read_text()
    assert (tmp_path / "lr_max_vs_batch.png").stat().st_size > 10_000


def test_main_exit_codes(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        report.main([str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no job records" in err
    with pytest.raises(SystemExit) as e:
        report.main([str(tmp_path / "missing")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no such sweep directory" in err
    rng = np.random.default_rng(5)
    for B in (16, 32, 64):
        write_json_atomic(tmp_path / f"B{B}" / "record.json", _record("m", "sgd", B, 0, rng, 0.002 * B, 0.9))
    out = tmp_path / "out"
    assert report.main([str(tmp_path), "--out", str(out), "--quiet"]) == 0
    assert str(out / "report.md") in capsys.readouterr().out
    assert (out / "scaling.csv").exists()
    # a plain file is not a sweep, and --out must be able to be a folder: one line each, exit 2
    plain = tmp_path / "notes.txt"
    plain.write_text("not a record")
    for argv, message in (([str(plain)], "is a file, not a sweep directory"),
                          ([str(tmp_path), "--out", "/dev/null"], "--out /dev/null is not a directory"),
                          ([str(tmp_path), "--out", str(plain / "sub")], "cannot write the report to")):
        with pytest.raises(SystemExit) as e:
            report.main(argv)
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2 and len(err.splitlines()) == 1 and message in err, err


def test_a_record_with_a_nan_or_text_lr_max_is_named_as_corrupt_not_shown_as_a_dash(tmp_path):
    rng = np.random.default_rng(5)
    for B in (16, 32):
        write_json_atomic(tmp_path / f"B{B}" / "record.json", _record("m", "sgd", B, 0, rng, 0.002 * B, 0.9))
    for B, bad in ((64, float("nan")), (128, "abc")):
        record = {**_record("m", "sgd", B, 0, rng, 0.1, 0.9), "lr_max": bad}
        write_json_atomic(tmp_path / f"B{B}" / "record.json", record)
    with pytest.warns(UserWarning, match="corrupt"):
        written = report.write_report(tmp_path, quiet=True)
    assert sorted(pd.read_csv(written["lr_max.csv"])["batch_size"]) == [16, 32]
    text = written["report.md"].read_text()
    assert "B64" in text and "B128" in text          # both named in the report as skipped files


def test_variants_are_named_by_the_overrides_that_differ_within_their_group():
    base = {"model": "vgg16", "dataset": "cifar100", "batch_size": 128, "trials": []}
    records = [JobRecord(**base, optimizer="sgd", variant="optimizer.momentum=0,search.lrs=[0.1,0.2]"),
               JobRecord(**base, optimizer="sgd", variant="optimizer.momentum=0.9,search.lrs=[0.1,0.2]"),
               JobRecord(**base, optimizer="adam", variant="search.lrs=[0.1,0.2]"),
               JobRecord(**base, optimizer="adam")]          # an old record without a variant
    names = [r.optimizer for r in label_variants(records)]
    assert names == ["sgd [optimizer.momentum=0]", "sgd [optimizer.momentum=0.9]",
                     "adam [search.lrs=[0.1,0.2]]", "adam"]
    assert [r.optimizer for r in label_variants(records[:1])] == ["sgd"]   # nothing differs
    assert [r.optimizer for r in records] == ["sgd", "sgd", "adam", "adam"]   # renamed copies


def _three_outcome_record(B, lo, hi, blo, bhi, extra_trials=(), non_monotone=()):
    """A record as the three-outcome search writes it: trained up to lo, stalled up to blo,
    diverged from bhi."""
    def trial(lr, outcome, acc):
        return {"lr": lr, "outcome": outcome, "stable": outcome != "diverged", "reason": None,
                "initial_loss": 2.3, "final_train_loss": 1.0, "test_acc": acc, "test_loss": 1.0,
                "steps": 200, "budget_steps": 200, "seconds": 1.0, "images_per_s": 100.0, "loss_curve": []}
    trials = [trial(lo / 4, "trained", 0.5), trial(lo, "trained", 0.6), trial(hi, "stalled", 0.1),
              trial(blo, "stalled", 0.1), trial(bhi, "diverged", None), *extra_trials]
    return {"schema": 1, "kind": "sweep_point", "model": "vgg16", "dataset": "synthetic", "optimizer": "sgd",
            "batch_size": B, "seed": 0, "expected_exponent": 1.0, "momentum": 0.9, "search": "bisect",
            "lr_max": lo, "lr_max_bracket": [lo, hi], "lr_max_status": "bracketed", "acc_at_lr_max": 0.6,
            "lr_blowup": blo, "lr_blowup_bracket": [blo, bhi], "lr_blowup_status": "bracketed",
            "non_monotone": list(non_monotone), "lr_best": lo, "best_test_acc": 0.6, "trials": trials,
            "steps": 1000, "seconds": 5.0, "device": "cpu", "commit": "abc", "command": "spectral-sweep",
            "created": "2026-11-29T12:00:00+00:00", "config": {"batch": B}}


def test_both_edges_the_accuracy_at_lr_max_and_the_flags_reach_the_report(tmp_path):
    """lr_max follows B^1 and lr_blowup B^0.5 (planted): the tables carry both, the verdict is made
    on lr_max, the blow-up exponent is shown beside it, and contradictions are flagged."""
    for B in (8, 16, 32, 64, 128):
        lo, blo = 0.01 * B / 8, 0.5 * (B / 8) ** 0.5
        odd = ["lr=0.2 stalled below lr=0.3 that trained"] if B == 32 else []
        write_json_atomic(tmp_path / f"B{B}" / "record.json",
                          _three_outcome_record(B, lo, lo * R, blo, blo * R, non_monotone=odd))
    stuck = _three_outcome_record(256, 0.01, 0.01 * R, 2.0 * 2 ** 0.5, 2.0 * 2 ** 0.5 * R)   # blow-up on its law
    stuck.update(lr_max=None, lr_max_bracket=[None, None], lr_max_status="nothing_trains", acc_at_lr_max=None)
    write_json_atomic(tmp_path / "B256" / "record.json", stuck)
    report.write_report(tmp_path, quiet=True)
    table = pd.read_csv(tmp_path / "lr_max.csv").set_index("batch_size")
    assert table.loc[16, "lr_blowup_lo"] == pytest.approx(0.5 * 2 ** 0.5)
    assert table.loc[16, "lr_blowup_hi"] == pytest.approx(0.5 * 2 ** 0.5 * R)
    assert table.loc[16, "acc_at_lr_max"] == 0.6 and table.loc[16, "lr_max_status"] == "bracketed"
    assert not table.loc[32, "monotone"] and table.loc[16, "monotone"]
    sc = pd.read_csv(tmp_path / "scaling.csv").iloc[0]
    assert sc.exponent == pytest.approx(1.0, abs=1e-6) and sc.verdict == "consistent"
    assert sc.exponent_blowup == pytest.approx(0.5, abs=1e-6)
    assert sc.n_fit == 5 and "B=256 nothing_trains" in sc.excluded
    md = (tmp_path / "report.md").read_text()
    assert "not monotone in lr**: lr=0.2 stalled below lr=0.3 that trained" in md
    assert "B=256 seed 0: nothing trains**" in md and "raise the" in md
    assert "lr_blowup" in (tmp_path / "lr_max.md").read_text()


def test_report_files_are_replaced_atomically(built, monkeypatch):
    """A report killed while writing a table leaves the previous table whole, and no temp files."""
    root, *_ = built
    before = (root / "lr_max.csv").read_bytes()

    def dies_halfway(self, path, **kwargs):
        Path(path).write_text("model,dat")       # half a file, then the process is killed
        raise KeyboardInterrupt

    monkeypatch.setattr(pd.DataFrame, "to_csv", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        report.write_report(root, quiet=True)
    assert (root / "lr_max.csv").read_bytes() == before
    assert not [p for p in root.iterdir() if p.name.endswith(".tmp")]


def test_two_writers_never_share_a_temporary_name(tmp_path):
    from spectral_sweep.files import replace_atomically

    with replace_atomically(tmp_path / "x.pt") as a, replace_atomically(tmp_path / "x.pt") as b:
        assert a != b
        a.write_text("a")
        b.write_text("b")
    assert (tmp_path / "x.pt").read_text() == "a"   # the outer writer finished last


def _tracked_trial(lr: float, outcome: str = "trained", steps=(0, 10, 20), momentum: float = 0.9) -> TrialRecord:
    """A trial that tracked sharpness: lambda_max climbing towards the limit of its lr."""
    limit = theory.stability_limit(lr, "sgd", momentum)          # the largest curvature this lr survives
    measurements = [{"step": s, "lambda_max": 5.0 + s, "residual": 1e-3, "lr": lr, "momentum": momentum,
                     "limit": limit, "preconditioned": False, "products": 20} for s in steps]
    measurements.append({"step": steps[-1] + 10, "lambda_max": None, "residual": None, "lr": lr,
                         "momentum": momentum, "limit": limit, "preconditioned": False, "products": 20})
    return TrialRecord(lr=lr, outcome=outcome, test_acc=0.5, final_train_loss=1.0, steps=30, budget_steps=30,
                       loss_curve=[[0, 2.3], [30, 1.0]],
                       hooks={"sharpness": {"every": 10, "measurements": measurements}})


def _job(B: int, trials, **fields) -> JobRecord:
    defaults = dict(model="vgg11_bn", dataset="synthetic", optimizer="sgd", seed=0, expected_exponent=1.0,
                    momentum=0.9, search="grid")
    return JobRecord(batch_size=B, trials=list(trials), **{**defaults, **fields})


def test_the_report_draws_the_sharpness_figure_from_the_trial_records(tmp_path):
    """A job whose trials tracked sharpness gets sharpness/<job>.png in the report folder, drawn from
    the trials' hooks (one curve per tracked trial); a job that did not track gets none."""
    tracked = _job(16, [_tracked_trial(0.01), _tracked_trial(0.04, "stalled"),
                        TrialRecord(lr=0.16, outcome="diverged", steps=3, budget_steps=30)],
                   lr_max=0.01, lr_max_bracket=[0.01, 0.04], lr_max_status="bracketed")
    untracked = _job(32, [TrialRecord(lr=0.02, outcome="trained", test_acc=0.5, steps=30, budget_steps=30)],
                     lr_max=0.02, lr_max_bracket=[0.02, None], lr_max_status="lower_bound")
    write_job_record(tmp_path / "B16", tracked)
    write_job_record(tmp_path / "B32", untracked)
    written = report.write_report(tmp_path, quiet=True)
    name = "sharpness/vgg11-bn_synthetic_sgd_16_0.png"
    assert [n for n in written if n.startswith("sharpness/")] == [name]
    assert written[name] == tmp_path / name
    img = mpimg.imread(written[name])
    assert img.ndim == 3 and img.shape[0] > 300 and img.std() > 0.01
    md = (tmp_path / "report.md").read_text()
    assert "## Sharpness during training" in md and f"]({name})" in md and f"- [{name}]({name})" in md
    assert not (tmp_path / "B16" / "sharpness").exists()          # the report's folder, not the job's
    with pytest.raises(ValueError, match="sharpness"):
        plot_sharpness(untracked, tmp_path / "none.png")


def test_a_learner_only_sweep_still_gets_its_sharpness_figure(tmp_path):
    trial = _tracked_trial(0.03)
    trial.hooks["learner"] = {"rule": "ssgd", "cost_gradients": 8.0,
                              "refreshes": [{"step": 0, "lr": 0.03, "momentum": 0.0, "cost_gradients": 8.0}]}
    write_job_record(tmp_path / "learner", _job(16, [trial], search="learner", optimizer="lanczos_sgd",
                                                lr_max_status="chosen_by_learner"))
    written = report.write_report(tmp_path, quiet=True)
    assert "lr_max.csv" not in written                          # nothing searched: nothing to fit
    assert written["sharpness/vgg11-bn_synthetic_lanczos-sgd_16_0.png"].stat().st_size > 10_000
    md = (tmp_path / "report.md").read_text()
    assert "## Learner against the search" in md and "## Sharpness during training" in md


def _measured(B: int, rng, momentum: float = 0.9, **fields) -> JobRecord:
    lam = 20.0 + 4000.0 / B
    spectrum = SpectrumRecord(operator="hessian", bn_mode="train",
                              batches=[{"batch_size": B, "lambda_max": list(lam * (1 + 0.05 * rng.normal(size=3)))}])
    lr = 0.5 / lam
    return _job(B, [TrialRecord(lr=lr, outcome="trained", test_acc=0.5, steps=30, budget_steps=30)],
                lr_max=lr, lr_max_bracket=[lr, lr * R], lr_max_status="bracketed", spectrum=spectrum,
                momentum=momentum, **fields)


def test_a_nesterov_record_is_predicted_with_the_nesterov_limit(tmp_path):
    """lr_pred is the limit of the optimizer that ran: Nesterov momentum m gives
    2 (1 + m) / ((1 + 2 m) lambda_max), not heavy ball's 2 (1 + m) / lambda_max; a schema-1 record
    says nesterov in its config only, and is read the same way."""
    rng = np.random.default_rng(6)
    for B in (32, 128):
        write_job_record(tmp_path / f"nesterov_B{B}", _measured(B, rng, nesterov=True))
        write_job_record(tmp_path / f"heavy_B{B}", _measured(B, rng, model="heavy"))
        old = _measured(B, rng, model="old").to_dict()
        del old["nesterov"]
        old.update(schema=1, config={"optimizer": {"name": "sgd", "momentum": 0.9, "nesterov": True}})
        write_json_atomic(tmp_path / f"old_B{B}" / "record.json", old)
    report.write_report(tmp_path, quiet=True)
    sp = pd.read_csv(tmp_path / "spectrum.csv")
    assert len(sp) == 6
    for row in sp.itertuples():
        nesterov = row.model != "heavy"
        expected = 2 * 1.9 / ((2.8 if nesterov else 1.0) * row.lambda_max_mean)
        assert row.lr_pred == pytest.approx(expected, rel=1e-12), row.model
        assert row.lr_pred == pytest.approx(theory.stability_limit(row.lambda_max_mean, "sgd", 0.9, nesterov))
    sat = pd.read_csv(tmp_path / "saturation.csv").set_index("model")
    for model in ("vgg11_bn", "old"):
        assert sat.loc[model, "lr_pred_full"] == pytest.approx(2 * 1.9 / (2.8 * sat.loc[model, "lambda_full"]))
    assert sat.loc["heavy", "lr_pred_full"] == pytest.approx(2 * 1.9 / sat.loc["heavy", "lambda_full"])


def _point_of_bank(name: str, test_size: int | None) -> JobRecord:
    """A record whose trials are a committed bank's (results/outcome_bank): real accuracies."""
    import json

    bank = json.loads((Path(__file__).resolve().parents[1] / "results" / "outcome_bank" / f"{name}.json").read_text())
    trials = [TrialRecord.from_dict({k: v for k, v in t.items() if k != "grid"}) for t in bank["trials"]]
    return JobRecord(model="vgg11_bn", dataset="synthetic", optimizer="sgd", batch_size=bank["batch"], trials=trials,
                     num_classes=bank["num_classes"], test_size=test_size, config={"train": {"stall_acc_margin": 0.05}})


def test_the_report_says_when_trials_are_judged_within_the_test_sets_noise():
    """60 steps on 64 test images: most trials end within 2 binomial errors of the accuracy floor,
    and the flag says so and what to raise; 200 steps on 1,000 images: no flag; an old record
    without a test size: no claim either way."""
    from spectral_sweep.report.markdown import flags, judge_noise

    barely = judge_noise(_point_of_bank("barely_B8", 64))
    assert barely is not None and "of the accuracy 0.250 that decides" in barely and "raise dataset.test_size" in barely
    assert judge_noise(_point_of_bank("default_B8", 1000)) is None
    assert judge_noise(_point_of_bank("barely_B8", None)) is None
    assert "the judge's own noise" in flags([_point_of_bank("barely_B8", 64)])
    inconclusive = _point_of_bank("barely_B8", 64)
    inconclusive.lr_max_status, inconclusive.lr_max_problem = "inconclusive", barely   # the search said it
    assert flags([inconclusive]).count(barely) == 1


def test_the_judges_noise_is_measured_at_the_threshold_that_decides_a_trial():
    """10 classes, 64 test images: the floor is 0.25 (four binomial errors above chance) and the
    band two errors of it, +-0.108; with train.target_acc = 0.6 the target decides, +-0.122."""
    from spectral_sweep.trial.outcomes import decided_by_noise, near_threshold

    band = pytest.approx(0.1083, abs=1e-4)
    assert near_threshold([0.15, 0.25, 0.35, 0.36, 0.9], 10, 64) == (3, 5, pytest.approx(0.25), band)
    assert decided_by_noise([0.15, 0.25, 0.35, 0.36, 0.9], 10, 64) is not None        # 3 of 5 near
    assert decided_by_noise([0.15, 0.25, 0.9, 0.95], 10, 64) is None                  # 2 of 4: not most
    assert decided_by_noise([0.5, 0.55, 0.65, 0.2], 10, 64) is None                   # far from 0.25 ...
    assert decided_by_noise([0.5, 0.55, 0.65, 0.2], 10, 64, target_acc=0.6) is not None   # ... near the target
    assert decided_by_noise([None, float("nan")], 10, 64) is None
    assert decided_by_noise([0.25, 0.25], None, 64) is None and decided_by_noise([0.25], 10, None) is None


def test_an_inconclusive_point_is_flagged_with_its_reason_and_left_out_of_the_fit(tmp_path):
    for B in (8, 16, 32, 64):
        lo = 0.01 * B / 8
        write_json_atomic(tmp_path / f"B{B}" / "record.json", _three_outcome_record(B, lo, lo * R, 0.5, 0.5 * R))
    odd = _three_outcome_record(128, 0.5, 0.5 * R, 1.0, 1.0 * R)    # far off the law: it would drag the fit
    odd.update(lr_max_status="inconclusive", lr_max_problem="the trials do not follow one edge (posterior "
               "predictive p = 0.002): outcomes that alternate with lr, or two edges")
    write_json_atomic(tmp_path / "B128" / "record.json", odd)
    report.write_report(tmp_path, quiet=True)
    sc = pd.read_csv(tmp_path / "scaling.csv").iloc[0]
    assert sc.n_fit == 4 and "B=128 inconclusive" in sc.excluded
    assert sc.exponent == pytest.approx(1.0, abs=1e-6)
    md = (tmp_path / "report.md").read_text()
    assert "B=128 seed 0: lr_max inconclusive**: the trials do not follow one edge" in md and "Not fitted" in md


def _searched_record(B: int, mu: float, seed: int, priors=None, model: str = "vgg16") -> dict:
    """A record as search=adaptive writes it, from a real search on a planted edge at exp(mu)."""
    from spectral_sweep.search.adaptive import find_edges
    from spectral_sweep.search.calibration import planted_trial

    rng = np.random.default_rng(seed)
    res = find_edges(lambda lrs: planted_trial(mu, 0.25, 0.03, rng)(lrs), 0.05, precision=0.3, parallel=2,
                     priors=priors)
    record = _three_outcome_record(B, res.lr_max, res.bracket[1], 1.0, 1.2)
    trial = record["trials"][0]
    record.update(search="adaptive", model=model, lr_max_bracket=list(res.bracket),
                  trials=[{**trial, "lr": lr, "outcome": out, "stable": out != "diverged"} for lr, out in res.trials])
    return record


def test_lr_max_md_names_the_jobs_number_and_the_groups_refit_beside_it(tmp_path):
    """One number per point, or two named ones: lr_max_job is the record's (the job's line), lr_max
    the refit with the spread shared across the group; a point alone in its group gets the same from both."""
    from spectral_sweep.search.adaptive import priors_from

    first = _searched_record(8, math.log(0.02), 1)
    earlier = [[(t["lr"], t["outcome"]) for t in first["trials"]]]
    second = _searched_record(16, math.log(0.04), 2, priors=priors_from(earlier))
    alone = _searched_record(8, math.log(0.02), 3, model="vgg11")
    for name, record in (("a8", first), ("a16", second), ("b8", alone)):
        write_json_atomic(tmp_path / name / "record.json", record)
    report.write_report(tmp_path, quiet=True)
    table = pd.read_csv(tmp_path / "lr_max.csv").set_index(["model", "batch_size"])
    for key, record in ((("vgg16", 8), first), (("vgg16", 16), second), (("vgg11", 8), alone)):
        assert table.loc[key, "lr_max_job"] == pytest.approx(record["lr_max"], rel=1e-12)
    assert table.loc[("vgg11", 8), "lr_max"] == pytest.approx(alone["lr_max"], rel=1e-9)
    assert table.loc[("vgg16", 8), "lr_max"] != pytest.approx(first["lr_max"], rel=1e-6)   # refit: it learned from B=16
    assert "lr_max_job is the job's own lr_max" in (tmp_path / "lr_max.md").read_text()


def test_lr_opt_gets_its_own_exponent_and_verdict_and_a_bound_is_never_fitted(tmp_path):
    """lr_max on B^1, lr_opt planted on B^0.5 with its own measured errors: the scaling table gives
    each its exponent and verdict; an lr_opt that is only a bound stays out of lr_opt's fit."""
    for B in (8, 16, 32, 64, 128):
        lo, opt = 0.01 * B / 8, 0.001 * (B / 8) ** 0.5
        rec = _three_outcome_record(B, lo, lo * R, 2 * lo, 2 * lo * R)
        rec.update(lr_opt=opt, lr_opt_bracket=[opt / 1.1, opt * 1.1], lr_opt_se=math.log(1.1) / 1.96,
                   lr_opt_status="bracketed", quality_at_opt=0.8, objective="test_acc")
        if B == 128:
            rec.update(lr_opt=opt * 50, lr_opt_bracket=[None, opt * 50], lr_opt_status="upper_bound")
        write_json_atomic(tmp_path / f"B{B}" / "record.json", rec)
    report.write_report(tmp_path, quiet=True)
    sc = pd.read_csv(tmp_path / "scaling.csv").iloc[0]
    assert sc.exponent == pytest.approx(1.0, abs=1e-6) and sc.verdict == "consistent"
    assert sc.exponent_opt == pytest.approx(0.5, abs=1e-6) and sc.verdict_opt == "inconsistent"
    assert sc.n_opt == 4 and sc.ci_high_opt - sc.ci_low_opt < 0.3
    table = pd.read_csv(tmp_path / "lr_max.csv").set_index("batch_size")
    assert table.loc[16, "lr_opt"] == pytest.approx(0.001 * 2 ** 0.5)
    assert table.loc[128, "lr_opt_status"] == "upper_bound"
    assert "lr_opt: exponent [95%]" in (tmp_path / "report.md").read_text()


def test_the_report_says_which_launcher_ran_the_jobs_and_where_each_started(tmp_path):
    for B, launcher, warm in ((8, "basic", None), (16, "basic", 8), (32, "basic", 16)):
        rec = _three_outcome_record(B, 0.01 * B / 8, 0.01 * B / 8 * R, 0.1, 0.1 * R)
        rec.update(launcher=launcher, warm_from=warm)
        write_json_atomic(tmp_path / "a" / f"B{B}" / "record.json", rec)
    report.write_report(tmp_path / "a", quiet=True)
    assert "- launcher: basic; warm starts: B=16 from B=8; B=32 from B=16" in (tmp_path / "a" / "report.md").read_text()
    rec = _three_outcome_record(8, 0.01, 0.01 * R, 0.1, 0.1 * R)
    rec.update(launcher="joblib", warm_from=None)
    write_json_atomic(tmp_path / "b" / "B8" / "record.json", rec)
    report.write_report(tmp_path / "b", quiet=True)
    assert "- launcher: joblib; warm starts: none (every job cold)" in (tmp_path / "b" / "report.md").read_text()


def test_the_report_commands_warnings_are_one_line_each_in_its_own_voice(tmp_path):
    """A folder given twice is said in one line on stderr (README), not in Python's two lines
    (file:line and the source line that called warnings.warn), as the sweep command's are."""
    import subprocess
    import sys
    rng = np.random.default_rng(5)
    for B in (16, 32):
        write_json_atomic(tmp_path / "s" / f"B{B}" / "record.json", _record("m", "sgd", B, 0, rng, 0.002 * B, 0.9))
    done = subprocess.run([sys.executable, "-c", "import sys; from spectral_sweep import report; "
                           "sys.exit(report.main(sys.argv[1:]))", str(tmp_path / "s"), str(tmp_path / "s"),
                           "--out", str(tmp_path / "out"), "--quiet"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == ["spectral-sweep-report: warning: left out 2 record(s) reached twice "
                                        "through the folders given"], done.stderr


def test_another_librarys_warning_keeps_pythons_form_naming_where_it_came_from(monkeypatch):
    """Only this package's warnings speak in the command's voice: torch's deprecation notice is
    torch's, and Python's form says so (its file and line)."""
    import warnings

    from spectral_sweep import errors

    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)
    errors.one_line_warnings("spectral-sweep")
    ours = warnings.formatwarning("left out 1 record", UserWarning, errors.__file__, 3)
    theirs = warnings.formatwarning("torch.jit.script is deprecated", FutureWarning, "/usr/lib/torch/jit.py", 9)
    assert ours == "spectral-sweep: warning: left out 1 record\n"
    assert theirs.startswith("/usr/lib/torch/jit.py:9: FutureWarning: torch.jit.script is deprecated")


def _optimum_record(B: int, x_opt: float, seed: int, priors=None) -> dict:
    """A record as search=adaptive writes it with lr_opt asked for: a real search on a planted edge
    (lr_max 0.15 x B/8) and a planted peak of test accuracy at exp(x_opt)."""
    from spectral_sweep.search.adaptive import find_edges
    from spectral_sweep.search.calibration import planted_quality_trial
    from spectral_sweep.search.optimum import OptimumSearch

    rng = np.random.default_rng(seed)
    run = planted_quality_trial(math.log(0.15 * B / 8), x_opt, rng)
    res = find_edges(run, 0.1 * B / 8, precision=0.3, parallel=2, priors=priors, opt=OptimumSearch())
    record = _three_outcome_record(B, res.lr_max, res.bracket[1], 1.0, 1.2)
    trial, o = record["trials"][0], res.optimum
    record.update(search="adaptive", lr_max_bracket=list(res.bracket), lr_opt=o.lr, lr_opt_bracket=[o.lo, o.hi],
                  lr_opt_status=o.status, lr_opt_se=o.log_se, quality_at_opt=o.quality, objective="test_acc",
                  trials=[{**trial, "lr": lr, "outcome": r["outcome"], "stable": r["outcome"] != "diverged",
                           "test_acc": r.get("test_acc")} for lr, r in res.trials])
    return record


def test_lr_opt_is_refitted_under_the_rows_lr_max_and_the_jobs_own_is_kept_beside_it(tmp_path):
    """lr_opt is fitted below lr_lo; the table's lr_lo is the group's shared-spread refit, so the
    table's lr_opt is refitted under it from the same trials, by the code that makes the report
    (lr_opt_job keeps the record's, even one an earlier fit made). A point alone in its group gets
    the same number from both."""
    from spectral_sweep.search.adaptive import priors_from
    from spectral_sweep.search.optimum import fit_trials
    from spectral_sweep.trial.record import TrialRecord

    first = _optimum_record(8, math.log(0.01), 4)
    second = _optimum_record(16, math.log(0.02), 5, priors=priors_from([[(t["lr"], t["outcome"])
                                                                         for t in first["trials"]]]))
    for record in (first, second):     # as a record made by an earlier fit holds it: the report refits
        record.update(lr_opt=0.5 * record["lr_max"], lr_opt_bracket=[0.4 * record["lr_max"], 0.6 * record["lr_max"]])
    for name, record in (("a8", first), ("a16", second)):
        write_json_atomic(tmp_path / "group" / name / "record.json", record)
    alone = _optimum_record(8, math.log(0.01), 6)
    write_json_atomic(tmp_path / "alone" / "b8" / "record.json", alone)
    for folder, records in (("group", (first, second)), ("alone", (alone,))):
        report.write_report(tmp_path / folder, quiet=True)
        table = pd.read_csv(tmp_path / folder / "lr_max.csv").set_index("batch_size")
        for record in records:
            row = table.loc[record["batch_size"]]
            trials = [TrialRecord.from_dict(t) for t in record["trials"]]
            fit = fit_trials([(t.lr, t) for t in trials], "test_acc", row["lr_lo"])
            assert row["lr_opt_status"] == fit.status and record["lr_opt_status"] is not None
            if fit.lr is not None:
                assert row["lr_opt"] == pytest.approx(fit.lr, rel=1e-9)
            if record["lr_opt"] is not None:
                assert row["lr_opt_job"] == pytest.approx(record["lr_opt"], rel=1e-12)
    row = pd.read_csv(tmp_path / "alone" / "lr_max.csv").iloc[0]
    assert row["lr_opt_status"] == alone["lr_opt_status"]
    if alone["lr_opt"] is not None:
        assert row["lr_opt"] == pytest.approx(alone["lr_opt"], rel=1e-9)
