"""The report's numbers: a sweep's records as DataFrames of lr_max(B), scaling fits and spectra.

Pure pandas/numpy on top of ``theory`` and the typed records (``results.JobRecord``): no Markdown
(``markdown``), no figures (``figures``), no files (``write``). A group is one curve lr_max(B):
records or rows that share ``GROUP`` (model, dataset, optimizer, the optimizer named with its
variant, see ``label_variants``); ``group_of`` names a record's group and ``select`` picks a
group's rows out of any table, so the two are the one place a group is defined.
"""

from __future__ import annotations

import dataclasses
import math
import re
import warnings

import numpy as np
import pandas as pd

from spectral_sweep import theory
from spectral_sweep.point.record import JobRecord
from spectral_sweep.point.store import load_records
from spectral_sweep.search import edge, optimum
from spectral_sweep.search.adaptive import blowup_data, upper_edge_data

GROUP = ["model", "dataset", "optimizer"]
BRACKETED = "bracketed"
NOTHING_TRAINS = "nothing_trains"   # (the loader reads schema 1's no_stable_lr as this)


# ============================================================================================
# groups
# ============================================================================================

def group_of(record: JobRecord) -> tuple:
    """The group (one lr_max(B) curve) a record belongs to: its values of ``GROUP``."""
    return tuple(getattr(record, c) for c in GROUP)


def select(frame: pd.DataFrame, key) -> pd.DataFrame:
    """The rows of ``frame`` that belong to the group ``key`` (a tuple of ``GROUP`` values)."""
    return frame[in_group(frame, key)]


def in_group(frame: pd.DataFrame, key) -> pd.Series:
    """Whether each row of ``frame`` belongs to the group ``key``."""
    return (frame[GROUP] == pd.Series(key, index=GROUP)).all(axis=1)


def label(key) -> str:
    """A group (or any key) as readers see it: vgg16 / cifar100 / sgd."""
    return " / ".join(map(str, key))


def slug(key) -> str:
    """A file-name-safe name for a group (or any key): model_dataset_optimizer."""
    return "_".join(re.sub(r"[^A-Za-z0-9.+-]+", "-", str(k)) for k in key)


def point_of(record: JobRecord) -> tuple:
    """A job's sweep point (model, dataset, optimizer, B, seed): names its per-job figures."""
    return (*group_of(record), record.batch_size, record.seed)


# ============================================================================================
# loading
# ============================================================================================

def load_sweep(sweep_dirs) -> tuple[list[JobRecord], list[str]]:
    """Records (variants named, see ``label_variants``), plus the warnings about skipped files
    (re-emitted, so the caller sees them too)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = load_records(sweep_dirs)
    skipped = []
    for w in caught:
        msg = str(w.message)
        if "corrupt" in msg or msg.startswith("left out"):
            skipped.append(msg)
        warnings.warn(msg, w.category, stacklevel=3)
    return label_variants(records), skipped


def _overrides(variant: str | None) -> dict[str, str]:
    """'a.b=1,c=[1,2]' -> {'a.b': '1', 'c': '[1,2]'}: Hydra's override_dirname, split at the
    commas that start a new key (a list value keeps its own commas)."""
    if not variant:
        return {}
    items = re.split(r",(?=[A-Za-z_+~][\w.+~/-]*=)", variant)
    return dict(item.partition("=")[::2] for item in items)


def label_variants(records: list[JobRecord]) -> list[JobRecord]:
    """Records whose ``optimizer`` names the overrides that tell them apart from the other
    records of their (model, dataset, optimizer): ``sgd [optimizer.momentum=0.9]``. Overrides
    that all of them share (``train.steps=600``) stay out of the name; records without
    such differences keep the plain name. The records given are not changed (renamed copies)."""
    parsed = [_overrides(r.variant) for r in records]
    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(records):
        groups.setdefault(group_of(r), []).append(i)
    labelled = list(records)
    for members in groups.values():
        keys = sorted({k for i in members for k in parsed[i]})
        differing = [k for k in keys if len({parsed[i].get(k) for i in members}) > 1]
        for i in members:
            parts = [f"{k}={parsed[i][k]}" for k in differing if k in parsed[i]]
            if parts:
                labelled[i] = dataclasses.replace(records[i], optimizer=f"{records[i].optimizer} [{','.join(parts)}]")
    return labelled


def base_optimizer(name: str) -> str:
    """The optimizer of a group's (possibly variant-labelled) name: 'sgd [optimizer.momentum=0]' -> 'sgd'."""
    return str(name).split(" [", 1)[0]


# ============================================================================================
# jobs and trials as rows
# ============================================================================================

JOB_COLUMNS = ("model", "dataset", "optimizer", "batch_size", "seed", "expected_exponent", "momentum",
               "search", "lr_max", "lr_max_status", "acc_at_lr_max", "lr_blowup", "lr_blowup_status",
               "lr_best", "best_test_acc", "lr_opt", "lr_opt_status", "lr_opt_se", "quality_at_opt", "objective",
               "steps", "seconds", "device", "commit", "record_path")
TRIAL_COLUMNS = ("lr", "outcome", "reason", "initial_loss", "final_train_loss", "test_acc", "test_loss",
                 "steps", "seconds", "images_per_s")


def jobs_frame(records: list[JobRecord]) -> pd.DataFrame:
    """One row per job: the sweep point, lr_max with its bracket, lr_best, cost, provenance."""
    rows = []
    for r in records:
        row = {c: getattr(r, c) for c in JOB_COLUMNS}
        lo, hi = r.lr_max_bracket or [None, None]
        blo, bhi = r.lr_blowup_bracket or [None, None]
        olo, ohi = r.lr_opt_bracket or [None, None]
        row.update(lr_lo=lo, lr_hi=hi, lr_blowup_lo=blo, lr_blowup_hi=bhi, lr_opt_lo=olo, lr_opt_hi=ohi,
                   trials=len(r.trials), non_monotone=len(r.non_monotone or []))
        rows.append(row)
    return pd.DataFrame(rows, columns=[*JOB_COLUMNS, "lr_lo", "lr_hi", "lr_blowup_lo", "lr_blowup_hi",
                                       "lr_opt_lo", "lr_opt_hi", "trials", "non_monotone"])


def trials_frame(records: list[JobRecord]) -> pd.DataFrame:
    """One row per trial, with its sweep point: what the accuracy-against-lr figures read."""
    rows = [{"model": r.model, "dataset": r.dataset, "optimizer": r.optimizer, "batch_size": r.batch_size,
             "seed": r.seed, **{c: getattr(t, c) for c in TRIAL_COLUMNS}}
            for r in records for t in r.trials]
    return pd.DataFrame(rows, columns=["model", "dataset", "optimizer", "batch_size", "seed", *TRIAL_COLUMNS])


def sharpness_of(trial) -> list[dict]:
    """A trial's sharpness measurements that found lambda_max (empty when tracking was off)."""
    entries = ((trial.hooks or {}).get("sharpness") or {}).get("measurements") or []
    return [e for e in entries if e.get("lambda_max") is not None]


# ============================================================================================
# lr_max per batch size
# ============================================================================================

def _status(row) -> str:
    """The record's status, inferred for old records that lack one."""
    s = row.get("lr_max_status")
    if isinstance(s, str) and s:
        return s
    if as_number(row.get("lr_max")) is None:
        return "nothing_trains"
    return BRACKETED if as_number(row.get("lr_hi")) is not None else "lower_bound"


def as_number(x) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _gmean(values) -> float:
    v = [x for x in map(as_number, values) if x is not None and x > 0]
    return float(np.exp(np.mean(np.log(v)))) if v else math.nan


def _mean(values) -> float:
    v = [x for x in map(as_number, values) if x is not None]
    return float(np.mean(v)) if v else math.nan


def _sum(values):
    v = [x for x in map(as_number, values) if x is not None]
    return float(np.sum(v)) if v else math.nan


def _first(values, default=None):
    for v in values:
        if v is not None and not (isinstance(v, float) and math.isnan(v)):
            return v
    return default


def _one_status(values) -> str | None:
    """The seeds' common status, or "mixed: a x2, b x1"; None for records that have none."""
    statuses = [v for v in values if isinstance(v, str)]
    uniq = sorted(set(statuses))
    if len(uniq) <= 1:
        return uniq[0] if uniq else None
    return "mixed: " + ", ".join(f"{s} x{statuses.count(s)}" for s in uniq)


LR_MAX_COLUMNS = [*GROUP, "batch_size", "seeds", "lr_max", "lr_lo", "lr_hi", "lr_max_job", "lr_max_status",
                  "acc_at_lr_max",
                  "lr_max_se", "lr_safe", "spread", "spread_own", "lr_blowup", "lr_blowup_lo", "lr_blowup_hi",
                  "lr_blowup_status", "lr_blowup_se", "lr_opt", "lr_opt_lo", "lr_opt_hi", "lr_opt_job", "lr_opt_status",
                  "lr_opt_se", "quality_at_opt", "objective", "monotone", "lr_best", "best_test_acc", "trials", "steps",
                  "seconds", "expected_exponent", "momentum"]
ADAPTIVE = "adaptive"


def lr_max_table(records: list[JobRecord]) -> pd.DataFrame:
    """One row per (model, dataset, optimizer, batch size), seeds combined: learning rates are
    geometric means over seeds, accuracies arithmetic means, trials/steps/seconds totals."""
    jobs = jobs_frame(records).astype(object)
    jobs = jobs.where(pd.notna(jobs), None)
    jobs["lr_max_status"] = [_status(r) for r in jobs.to_dict("records")]
    rows = []
    for key, g in jobs.groupby([*GROUP, "batch_size"], sort=True):
        rows.append(dict(zip([*GROUP, "batch_size"], key), seeds=len(g),
                         lr_max=_gmean(g["lr_max"]), lr_lo=_gmean(g["lr_lo"]), lr_hi=_gmean(g["lr_hi"]),
                         lr_max_job=_gmean(g["lr_max"]),
                         lr_max_status=_one_status(g["lr_max_status"]), acc_at_lr_max=_mean(g["acc_at_lr_max"]),
                         lr_blowup=_gmean(g["lr_blowup"]), lr_blowup_lo=_gmean(g["lr_blowup_lo"]),
                         lr_blowup_hi=_gmean(g["lr_blowup_hi"]),
                         lr_blowup_status=_one_status(g["lr_blowup_status"]),
                         lr_opt=_gmean(g["lr_opt"]), lr_opt_lo=_gmean(g["lr_opt_lo"]), lr_opt_hi=_gmean(g["lr_opt_hi"]),
                         lr_opt_job=_gmean(g["lr_opt"]),
                         lr_opt_status=_one_status(g["lr_opt_status"]), lr_opt_se=_mean(g["lr_opt_se"]),
                         quality_at_opt=_mean(g["quality_at_opt"]), objective=_first(g["objective"]),
                         monotone=not any(as_number(v) for v in g["non_monotone"]), lr_best=_gmean(g["lr_best"]),
                         best_test_acc=_mean(g["best_test_acc"]), trials=int(_sum(g["trials"])),
                         steps=_sum(g["steps"]), seconds=_sum(g["seconds"]),
                         expected_exponent=as_number(_first(g["expected_exponent"])),
                         momentum=as_number(_first(g["momentum"]))))
    df = pd.DataFrame(rows, columns=LR_MAX_COLUMNS)
    df["batch_size"] = df["batch_size"].astype(int)
    return _joint_estimates(df, records)


def _joint_estimates(df: pd.DataFrame, records: list[JobRecord]) -> pd.DataFrame:
    """Rows of adaptive records re-estimated from all their trials (every seed's trials at one B
    pooled: each trial has its own seed anyway), with the edge's spread shared across the group's
    batch sizes (``edge.group_posteriors``); ``spread_own`` is each point's spread fitted alone, to show
    whether sharing it holds. ``lr_max_job`` keeps the jobs' own lr_max (record.json, the job's
    line), which took the spread from the earlier batch sizes only: one number per source."""
    adaptive = [r for r in records if r.search == ADAPTIVE]
    for key in {group_of(r) for r in adaptive}:
        by_b: dict[int, list] = {}
        for r in adaptive:
            if group_of(r) == key and r.lr_max_status == BRACKETED:
                by_b.setdefault(r.batch_size, []).extend((t.lr, t.outcome) for t in r.trials)
        sizes = sorted(by_b)
        uppers = edge.group_posteriors([upper_edge_data(by_b[b]) for b in sizes])
        blowups = edge.group_posteriors([blowup_data(by_b[b]) for b in sizes])
        for b, upper, blowup in zip(sizes, uppers, blowups):
            if upper is not None:
                _put(df, key, b, "lr_max", upper.fit(), _own_fit(upper_edge_data(by_b[b])))
            if blowup is not None:   # never below the edge of training (edge.EdgePosterior.fit)
                _put(df, key, b, "lr_blowup", blowup.fit(at_least=upper), None)
        _refit_optima(df, key, [r for r in adaptive if group_of(r) == key])
    return df


def _refit_optima(df: pd.DataFrame, key, records: list[JobRecord]) -> None:
    """lr_opt refitted from every seed's trials at each B, under the lr_max of the row (the group's
    shared-spread refit, above): the peak is fitted below lr_lo, and this lr_lo is the one the table
    shows. ``lr_opt_job`` keeps the jobs' own (record.json), fitted under the job's own lr_max. The
    accuracy figure draws this fit."""
    by_b: dict[int, list] = {}
    for r in records:
        if r.lr_opt_status is not None and r.objective is not None:
            by_b.setdefault(r.batch_size, []).append(r)
    for b, found in by_b.items():
        row = in_group(df, key) & df["batch_size"].eq(b)
        ceiling = as_number(df.loc[row, "lr_lo"].iloc[0]) or math.inf
        fit = optimum.fit_trials([(t.lr, t) for r in found for t in r.trials], found[0].objective, ceiling)
        df.loc[row, ["lr_opt", "lr_opt_lo", "lr_opt_hi", "lr_opt_status", "lr_opt_se", "quality_at_opt"]] = [
            fit.lr, fit.lo, fit.hi, fit.status, fit.log_se, fit.quality]


def _own_fit(point):
    return edge.fit_edge(*point) if edge.has_edge(point[1]) else None


def _put(df: pd.DataFrame, key, b: int, name: str, fit, own) -> None:
    row = in_group(df, key) & df["batch_size"].eq(b)
    lo, hi = ("lr_lo", "lr_hi") if name == "lr_max" else (f"{name}_lo", f"{name}_hi")
    df.loc[row, [name, lo, hi, f"{name}_se"]] = [fit.lr, fit.lo, fit.hi, fit.log_se]
    if name == "lr_max":
        df.loc[row, ["lr_safe", "spread", "spread_own"]] = [fit.lr_safe, fit.spread,
                                                            own.spread if own else math.nan]


# ============================================================================================
# scaling fits
# ============================================================================================

def usable(points: pd.DataFrame, edge: str = "lr_max") -> pd.Series:
    """Points a fit may use: bracketed (every seed), with a finite positive bracket. ``edge`` is
    "lr_max" (the edge of training) or "lr_blowup" (the edge of divergence)."""
    lo, hi = ("lr_lo", "lr_hi") if edge == "lr_max" else (f"{edge}_lo", f"{edge}_hi")
    ok = points[f"{edge}_status"].eq(BRACKETED)
    for c in (edge, lo, hi):
        ok &= pd.to_numeric(points[c], errors="coerce").gt(0)
    return ok & (pd.to_numeric(points[hi], errors="coerce") >= pd.to_numeric(points[lo], errors="coerce"))


def _expected(points: pd.DataFrame, optimizer: str) -> float:
    e = as_number(_first(points["expected_exponent"]))
    if e is not None:
        return e
    try:
        return theory.expected_exponent(base_optimizer(optimizer))
    except ValueError:
        return math.nan


def analyse_group(points: pd.DataFrame) -> dict:
    """Fits and saturation of one group's lr_max table rows (sorted by batch size)."""
    points = points.sort_values("batch_size")
    expected = _expected(points, points["optimizer"].iloc[0])
    use = usable(points)
    u = points[use]
    B, lo, hi = (u[c].to_numpy(float) for c in ("batch_size", "lr_lo", "lr_hi"))
    out = {"expected": expected, "usable": use, "saturation": None, "fit": None, "fit_all": None,
           "fit_range": "all", "note": "", "blowup_fit": _quantity_fit(points, "lr_blowup"),
           "opt_fit": _quantity_fit(points, "lr_opt"),
           "laws": _laws(points, "lr_max", expected), "laws_opt": _laws(points, "lr_opt", expected),
           "fit_batch_sizes": B}
    excluded = points[~use]
    out["excluded"] = "; ".join(f"B={int(b)} {s}" for b, s in zip(excluded["batch_size"],
                                                                  excluded["lr_max_status"]))
    if len(u) < 2:
        out["note"] = f"only {len(u)} usable point{'s' * (len(u) != 1)}: no fit (need 2)"
        return out
    se = pd.to_numeric(u["lr_max_se"], errors="coerce").to_numpy(float)
    mid = u["lr_max"].to_numpy(float)
    out["fit_all"] = _fit(B, mid, lo, hi, se)
    if len(u) >= 3:
        out["saturation"] = _saturation(B, mid, lo, hi, se, expected)
    if out["saturation"] is None:
        out["fit"] = out["fit_all"]
        return out
    below = B < out["saturation"]
    out["fit_range"] = f"fit below B={out['saturation']}"
    if below.sum() >= 2:
        out["fit"] = _fit(B[below], mid[below], lo[below], hi[below], se[below])
        out["fit_batch_sizes"] = B[below]
    else:
        out["note"] = (f"saturated from B={out['saturation']}: only {int(below.sum())} point below it, "
                       "no fit of the growing regime")
    return out


def _measured(se) -> bool:
    """Whether every point carries its own measured error (search=adaptive), not only a bracket."""
    return bool(np.all(np.isfinite(se)) and np.all(se > 0))


def _saturation(B, mid, lo, hi, se, expected):
    """Where lr_max stops growing: tested on each point's measured error (search=adaptive), else
    read off the brackets of single-seed bisections against the law under test."""
    if _measured(se):
        return theory.detect_saturation(B, mid, se=se)
    return theory.detect_saturation(B, mid, lo, hi, exponent=expected if math.isfinite(expected) else None)


def _fit(B, mid, lo, hi, se):
    """The power law on each point's measured error (search=adaptive), else through the brackets
    [lo, hi] of single-seed bisections, whose scatter the residuals alone must tell."""
    if _measured(se):
        return theory.fit_power_law(B, mid, se=se)
    return theory.fit_power_law(B, lo, lo, hi)


def _laws(points: pd.DataFrame, name: str, expected: float):
    """The free power law against the saturating form (theory.compare_laws) over the bracketed
    points with measured errors; None with fewer than 3 batch sizes, or without errors."""
    if name not in points or not math.isfinite(expected):
        return None
    u = points[usable(points, name)]
    se = pd.to_numeric(u[f"{name}_se"], errors="coerce").to_numpy(float)
    if u["batch_size"].nunique() < 3 or not _measured(se):
        return None
    return theory.compare_laws(u["batch_size"].to_numpy(float), u[name].to_numpy(float), se, expected)


def _quantity_fit(points: pd.DataFrame, name: str):
    """The power law of the blow-up edge (or of lr_opt, ``name``) over its bracketed points (None
    with fewer than 2 batch sizes)."""
    if name not in points:
        return None
    u = points[usable(points, name)]
    if len(u) < 2 or u["batch_size"].nunique() < 2:
        return None
    B, mid, lo, hi = (u[c].to_numpy(float) for c in ("batch_size", name, f"{name}_lo", f"{name}_hi"))
    return _fit(B, mid, lo, hi, pd.to_numeric(u[f"{name}_se"], errors="coerce").to_numpy(float))


SCALING_COLUMNS = [*GROUP, "expected_exponent", "exponent", "ci_low", "ci_high", "verdict", "direction", "to_decide",
                   "n_fit", "fit_range", "saturation_batch", "exponent_all", "ci_low_all", "ci_high_all",
                   "verdict_all", "n_all", "exponent_blowup", "ci_low_blowup", "ci_high_blowup", "verdict_blowup",
                   "exponent_opt", "ci_low_opt", "ci_high_opt", "verdict_opt", "n_opt", "preferred_law", "b_noise_fit",
                   "b_noise_fit_lo", "b_noise_fit_hi", "preferred_law_opt", "b_noise_opt", "b_noise_opt_lo",
                   "b_noise_opt_hi", "prefactor",
                   "excluded", "note"]


def _fit_columns(fit, suffix: str = "") -> dict:
    """exponent, ci_low, ci_high of a fit (NaN without one), their names suffixed."""
    return {f"exponent{suffix}": fit.exponent if fit else math.nan,
            f"ci_low{suffix}": fit.ci_low if fit else math.nan, f"ci_high{suffix}": fit.ci_high if fit else math.nan}


def _scaling_row(key, a: dict) -> dict:
    """A group's row of the scaling table, from its ``analyse_group`` result."""
    f, fa, fb, fo, e = a["fit"], a["fit_all"], a["blowup_fit"], a.get("opt_fit"), a["expected"]
    decided = theory.verdict(f, e) if f and math.isfinite(e) else "no fit"
    return dict(zip(GROUP, key), expected_exponent=e, **_fit_columns(f), verdict=decided,
                direction=theory.direction(f, e) if decided == "inconsistent" else "",
                to_decide=theory.what_would_decide(f, a["fit_batch_sizes"]) if decided == "inconclusive" else "",
                n_fit=f.n if f else 0, fit_range=a["fit_range"] if f else "", saturation_batch=a["saturation"],
                **_fit_columns(fa, "_all"),
                verdict_all=theory.verdict(fa, e) if fa and math.isfinite(e) else "no fit", n_all=fa.n if fa else 0,
                **_fit_columns(fb, "_blowup"), verdict_blowup=_verdict(fb, e),
                **_fit_columns(fo, "_opt"), verdict_opt=_verdict(fo, e), n_opt=fo.n if fo else 0,
                **_law_columns(a.get("laws"), "preferred_law", "b_noise_fit"),
                **_law_columns(a.get("laws_opt"), "preferred_law_opt", "b_noise_opt"),
                prefactor=f.prefactor if f else math.nan,
                excluded=a["excluded"], note=a["note"] or (f.note if f else ""))


def _law_columns(c, preferred: str, b_noise: str) -> dict:
    """Which law the points prefer and the fitted B_noise with its interval (NaN without a comparison)."""
    if c is None:
        return {preferred: "", b_noise: math.nan, f"{b_noise}_lo": math.nan, f"{b_noise}_hi": math.nan}
    return {preferred: c.preferred, b_noise: c.b_noise, f"{b_noise}_lo": c.b_noise_lo,
            f"{b_noise}_hi": c.b_noise_hi}


def _verdict(fit, expected: float) -> str:
    return theory.verdict(fit, expected) if fit and math.isfinite(expected) else "no fit"


def scaling_table(points: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """One row per group; returns the table and the per-group analyses (for the figures)."""
    rows, analyses = [], {}
    for key, g in points.groupby(GROUP, sort=True):
        analyses[key] = analyse_group(g)
        rows.append(_scaling_row(key, analyses[key]))
    df = pd.DataFrame(rows, columns=SCALING_COLUMNS)
    df["saturation_batch"] = df["saturation_batch"].astype("Int64")
    return df, analyses


# ============================================================================================
# spectrum
# ============================================================================================

def _pool_batches(specs) -> tuple[dict, dict, dict]:
    """lambda_max and lambda_min samples per batch size, and the first density per batch size."""
    lam_max, lam_min, density = {}, {}, {}
    for s in specs:
        for b in s.batches or []:
            B = int(b["batch_size"])
            for store, field in ((lam_max, "lambda_max"), (lam_min, "lambda_min")):
                vals = b.get(field)
                vals = [] if vals is None else np.atleast_1d(np.asarray(vals, dtype=object)).tolist()
                store.setdefault(B, []).extend(x for x in map(as_number, vals) if x is not None)
        for d in s.density or []:
            if d.get("grid") and d.get("density"):
                density.setdefault(int(d["batch_size"]), (np.asarray(d["grid"], float),
                                                          np.asarray(d["density"], float)))
    return lam_max, lam_min, density


def _pool_spectrum(records: list[JobRecord]) -> dict | None:
    """Pool the spectra of one group's records (several jobs may each measure some B)."""
    measured = [r for r in records if r.spectrum is not None and r.spectrum.batches]
    if not measured:
        return None
    specs = [r.spectrum for r in measured]
    lam_max, lam_min, density = _pool_batches(specs)
    fulls = [s.full for s in specs if isinstance(s.full, dict) and as_number(s.full.get("lambda_max")) is not None]
    noises = [s.noise_scale for s in specs if isinstance(s.noise_scale, dict)
              and as_number(s.noise_scale.get("b_noise")) is not None]
    first = specs[0]
    return {
        "operator": first.operator or "hessian", "bn_mode": first.bn_mode, "at": first.at,
        "optimizer": base_optimizer(measured[0].optimizer),
        "preconditioned": any(bool(s.preconditioned) for s in specs),
        "momentum": as_number(_first(r.momentum for r in measured)) or 0.0,
        "nesterov": bool(measured[0].nesterov),
        "lambda_max": lam_max, "lambda_min": lam_min, "density": density,
        "full": {"lambda_max": _mean(f["lambda_max"] for f in fulls),
                 "lambda_min": _mean(f.get("lambda_min") for f in fulls),
                 "samples": _first(f.get("samples") for f in fulls)} if fulls else None,
        "noise": {k: _mean(n.get(k) for n in noises) for k in ("b_noise", "trace_sigma", "grad_sqnorm")}
        if noises else None,
    }


def predicts_limit(spec: dict) -> bool:
    """Whether the spectrum sets a stability limit: an adaptive optimizer's limit is on the
    preconditioned Hessian, so a plain Hessian predicts nothing for it."""
    return spec["preconditioned"] or not theory.is_adaptive(spec["optimizer"])


def lr_pred(spec: dict, lam):
    """The stability limit of the group's optimizer (momentum, Nesterov) at curvature ``lam``
    (scalar or array; NaN where the spectrum predicts none, see ``predicts_limit``)."""
    if not predicts_limit(spec):
        return np.full_like(np.asarray(lam, float), np.nan) if np.ndim(lam) else math.nan
    return theory.stability_limit(lam, spec["optimizer"], momentum=spec["momentum"], nesterov=spec["nesterov"])


SPECTRUM_COLUMNS = [*GROUP, "operator", "batch_size", "n_batches", "lambda_max_mean", "lambda_max_std",
                    "lambda_min_mean", "lr_pred", "lr_max", "lr_max_status", "ratio"]
SATURATION_COLUMNS = [*GROUP, "operator", "lambda_full", "lambda_full_source", "lambda_full_fit",
                      "lambda_full_fit_low", "lambda_full_fit_high", "kappa", "kappa_low", "kappa_high", "b_star",
                      "b_noise", "saturation_lr_max", "lr_pred_full", "momentum", "preconditioned", "note"]


def _batch_rows(key, spec: dict, points: pd.DataFrame) -> list[dict]:
    """One spectrum row per measured batch size: lambda_max, lr_pred and the measured lr_max."""
    pts = select(points, key).set_index("batch_size")
    rows = []
    for B in sorted(b for b, v in spec["lambda_max"].items() if v):
        lam = np.asarray(spec["lambda_max"][B])
        lmin = spec["lambda_min"].get(B) or []
        pred = lr_pred(spec, lam.mean())
        lr_max = as_number(pts.at[B, "lr_max"]) if B in pts.index else None
        rows.append(dict(zip(GROUP, key), operator=spec["operator"], batch_size=B, n_batches=lam.size,
                         lambda_max_mean=lam.mean(), lambda_max_std=lam.std(ddof=1) if lam.size > 1 else math.nan,
                         lambda_min_mean=float(np.mean(lmin)) if len(lmin) else math.nan,
                         lr_pred=pred, lr_max=lr_max if lr_max is not None else math.nan,
                         lr_max_status=pts.at[B, "lr_max_status"] if B in pts.index else None,
                         ratio=(lr_max / pred) if lr_max is not None and pred and np.isfinite(pred) else math.nan))
    return rows


def _fit_lambda(spec: dict) -> str:
    """Fit lambda_max(B) = lambda_full + kappa/B (``spec["fit"]``, None when it cannot be) and set
    ``spec["lambda_full"]`` (measured, else fitted, else NaN) with its source; returns the fit's note."""
    Bs = sorted(b for b, v in spec["lambda_max"].items() if v)
    allB = np.concatenate([[B] * len(spec["lambda_max"][B]) for B in Bs]) if Bs else np.array([])
    allL = np.concatenate([spec["lambda_max"][B] for B in Bs]) if Bs else np.array([])
    try:
        spec["fit"], note = theory.fit_inverse_batch(allB, allL), ""
    except ValueError as e:
        spec["fit"], note = None, str(e)
    full, ib = spec["full"], spec["fit"]
    if full is not None:
        spec["lambda_full"] = full["lambda_max"]
        spec["lambda_full_source"] = f"measured ({full['samples']} samples)" if full.get("samples") else "measured"
    elif ib is not None:
        spec["lambda_full"], spec["lambda_full_source"] = ib.lambda_full, "fit lambda_full + kappa/B"
    else:
        spec["lambda_full"], spec["lambda_full_source"] = math.nan, "none"
    return note


def _saturation_row(key, spec: dict, sat, note: str) -> dict:
    """A group's three saturation estimates: B* from the spectrum, B_noise, where lr_max flattens."""
    ib, lam_full = spec["fit"], spec["lambda_full"]
    if not predicts_limit(spec):
        note = (note + "; " if note else "") + "Hessian not preconditioned: no Adam stability prediction"
    return dict(zip(GROUP, key), operator=spec["operator"], lambda_full=lam_full,
                lambda_full_source=spec["lambda_full_source"],
                lambda_full_fit=ib.lambda_full if ib else math.nan,
                lambda_full_fit_low=ib.lambda_full_low if ib else math.nan,
                lambda_full_fit_high=ib.lambda_full_high if ib else math.nan,
                kappa=ib.kappa if ib else math.nan, kappa_low=ib.kappa_low if ib else math.nan,
                kappa_high=ib.kappa_high if ib else math.nan,
                b_star=(ib.kappa / lam_full) if ib and lam_full > 0 else math.nan,
                b_noise=spec["noise"]["b_noise"] if spec["noise"] else math.nan,
                saturation_lr_max=sat, lr_pred_full=lr_pred(spec, lam_full) if math.isfinite(lam_full) else math.nan,
                momentum=spec["momentum"], preconditioned=spec["preconditioned"], note=note)


def spectrum_tables(records: list[JobRecord], points: pd.DataFrame, analyses: dict):
    """Per (group, B) spectrum rows, per-group saturation rows, and the pooled spectra by group
    (each with its ``fit`` and ``lambda_full``, what the figures draw)."""
    by_group: dict = {}
    for r in records:
        by_group.setdefault(group_of(r), []).append(r)
    rows, summary, pooled = [], [], {}
    for key in sorted(by_group):
        spec = _pool_spectrum(by_group[key])
        if spec is None:
            continue
        pooled[key] = spec
        rows += _batch_rows(key, spec, points)
        note = _fit_lambda(spec)
        summary.append(_saturation_row(key, spec, analyses.get(key, {}).get("saturation"), note))
    s = pd.DataFrame(summary, columns=SATURATION_COLUMNS)
    s["saturation_lr_max"] = s["saturation_lr_max"].astype("Int64")
    return pd.DataFrame(rows, columns=SPECTRUM_COLUMNS), s, pooled
