"""The report's numbers: a sweep's records as tables of lr_max(B), scaling fits and spectra.

Pure pandas/numpy on top of ``theory`` and ``records``; ``plots`` draws these tables and
``report`` writes them out. Markdown renderings of the tables live here too.
"""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pandas as pd

from . import theory
from .records import jobs_frame, load_records

GROUP = ["model", "dataset", "optimizer"]
DPI = 150
BRACKETED = "bracketed"

LR_MAX_NOTE = ("One row per (model, dataset, optimizer, batch size). With several seeds: learning rates "
               "are geometric means over seeds, accuracy the arithmetic mean, trials/steps/seconds totals. "
               "lr_max is the largest lr whose trial trained (its loss fell clearly, or its test accuracy rose "
               "clearly above chance); the edge of training lies in [lr_lo, lr_hi] (the smallest lr above that did not "
               "train). acc_at_lr_max is the test accuracy of that trial. lr_blowup is the edge of divergence, "
               "in [lr_blowup_lo, lr_blowup_hi] (the smallest lr that diverged): between the two edges trials "
               "stall. Status: bracketed; lower_bound = still trained at the search cap; nothing_trains = no "
               "lr trained in the searched range (raise the trial budget). monotone = no trial contradicted "
               "the shape stalled | trained | stalled | diverged (see the record's non_monotone).")
SCALING_NOTE = ("Exponent p of lr_max ~ B^p: least squares of log lr against log B, each point the geometric "
                "midpoint of its bracket; the 95% interval combines bracket widths with the seed-to-seed scatter "
                f"of lr_max measured on the quickstart ({theory.SEED_SCATTER:g} in log, over sqrt(seeds) for "
                "a point that averages seeds), or with the residual "
                "scatter when the residuals reject that (normal quantile; see spectral_sweep.theory.fit_power_law). "
                "Verdict: inconclusive when the interval is wider than "
                f"+-{theory.DECISIVE_HALF_WIDTH:g} or holds both laws (1 and 1/2), else consistent or "
                "inconsistent as the expected exponent (1 for SGD, 1/2 for Adam) lies inside it or not; "
                "'to decide' says what would make an inconclusive one decisive. When lr_max saturates "
                "(theory.detect_saturation), the main fit uses only the batch sizes below the saturation and "
                "the fit on all points is shown for comparison. The blow-up edge's exponent (the curvature "
                "theory's quantity) is shown beside it, fitted the same way. lower_bound and nothing_trains "
                "points are never fitted.")
SPECTRUM_NOTE = ("lambda_max: mean and std over random batches of size B. lr_pred: the stability limit the "
                 "spectrum predicts, 2(1+momentum)/lambda_max (SGD, heavy ball) or (2+2 beta1)/((1-beta1) "
                 "lambda_max) on the preconditioned Hessian (Adam). ratio = measured lr_max / lr_pred. "
                 "lambda_full: the measured full-data value when present, else the fit "
                 "lambda_max(B) = lambda_full + kappa/B; B* = kappa/lambda_full. Three saturation estimates "
                 "side by side: B* from the spectrum, the gradient noise scale B_noise, and where the "
                 "measured lr_max(B) flattens.")


# ============================================================================================
# loading and tables
# ============================================================================================

def load_sweep(sweep_dirs) -> tuple[list[dict], list[str]]:
    """Records (variants named, see ``label_variants``), plus the warnings about skipped files
    (re-emitted, so the caller sees them too)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = load_records(sweep_dirs)
    skipped = []
    for w in caught:
        msg = str(w.message)
        if "corrupt" in msg:
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


def label_variants(records: list[dict]) -> list[dict]:
    """Records whose ``optimizer`` names the overrides that tell them apart from the other
    records of their (model, dataset, optimizer): ``sgd [optimizer.momentum=0.9]``. Overrides
    that all of them share (``search.budget.steps=600``) stay out of the name; records without
    such differences keep the plain name."""
    parsed = [_overrides(r.get("variant")) for r in records]
    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(records):
        groups.setdefault((r["model"], r["dataset"], r["optimizer"]), []).append(i)
    labelled = list(records)
    for members in groups.values():
        keys = sorted({k for i in members for k in parsed[i]})
        differing = [k for k in keys if len({parsed[i].get(k) for i in members}) > 1]
        for i in members:
            parts = [f"{k}={parsed[i][k]}" for k in differing if k in parsed[i]]
            if parts:
                labelled[i] = {**records[i], "optimizer": f"{records[i]['optimizer']} [{','.join(parts)}]"}
    return labelled


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


def lr_max_table(records: list[dict]) -> pd.DataFrame:
    """One row per (model, dataset, optimizer, batch size), seeds combined (see ``LR_MAX_NOTE``)."""
    jobs = jobs_frame(records).astype(object)
    jobs = jobs.where(pd.notna(jobs), None)
    jobs["lr_max_status"] = [_status(r) for r in jobs.to_dict("records")]
    rows = []
    for key, g in jobs.groupby([*GROUP, "batch_size"], sort=True):
        status = _one_status(g["lr_max_status"])
        rows.append(dict(zip([*GROUP, "batch_size"], key), seeds=len(g),
                         lr_max=_gmean(g["lr_max"]), lr_lo=_gmean(g["lr_lo"]), lr_hi=_gmean(g["lr_hi"]),
                         lr_max_status=status, acc_at_lr_max=_mean(g["acc_at_lr_max"]),
                         lr_blowup=_gmean(g["lr_blowup"]), lr_blowup_lo=_gmean(g["lr_blowup_lo"]),
                         lr_blowup_hi=_gmean(g["lr_blowup_hi"]),
                         lr_blowup_status=_one_status(g["lr_blowup_status"]),
                         monotone=not any(as_number(v) for v in g["non_monotone"]), lr_best=_gmean(g["lr_best"]),
                         best_test_acc=_mean(g["best_test_acc"]), trials=int(_sum(g["trials"])),
                         steps=_sum(g["steps"]), seconds=_sum(g["seconds"]),
                         expected_exponent=as_number(_first(g["expected_exponent"])),
                         momentum=as_number(_first(g["momentum"]))))
    cols = [*GROUP, "batch_size", "seeds", "lr_max", "lr_lo", "lr_hi", "lr_max_status", "acc_at_lr_max",
            "lr_blowup", "lr_blowup_lo", "lr_blowup_hi", "lr_blowup_status", "monotone", "lr_best",
            "best_test_acc", "trials", "steps", "seconds", "expected_exponent", "momentum"]
    df = pd.DataFrame(rows, columns=cols)
    df["batch_size"] = df["batch_size"].astype(int)
    return df


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
        return theory.expected_exponent(optimizer)
    except ValueError:
        return math.nan


def analyse_group(points: pd.DataFrame) -> dict:
    """Fits and saturation of one group's lr_max table rows (sorted by batch size)."""
    points = points.sort_values("batch_size")
    optimizer = points["optimizer"].iloc[0]
    expected = _expected(points, optimizer)
    use = usable(points)
    u = points[use]
    B, lo, hi = (u[c].to_numpy(float) for c in ("batch_size", "lr_lo", "lr_hi"))
    out = {"expected": expected, "usable": use, "saturation": None, "fit": None, "fit_all": None,
           "fit_range": "all", "note": "", "blowup_fit": _blowup_fit(points), "fit_batch_sizes": B}
    excluded = points[~use]
    out["excluded"] = "; ".join(f"B={int(b)} {s}" for b, s in zip(excluded["batch_size"],
                                                                  excluded["lr_max_status"]))
    if len(u) < 2:
        out["note"] = f"only {len(u)} usable point{'s' * (len(u) != 1)}: no fit (need 2)"
        return out
    seeds = u["seeds"].to_numpy(float)
    out["fit_all"] = _fit(B, lo, hi, seeds)
    if len(u) >= 3:
        out["saturation"] = theory.detect_saturation(
            B, u["lr_max"].to_numpy(float), lo, hi, exponent=expected if math.isfinite(expected) else None)
    if out["saturation"] is None:
        out["fit"] = out["fit_all"]
        return out
    below = B < out["saturation"]
    out["fit_range"] = f"fit below B={out['saturation']}"
    if below.sum() >= 2:
        out["fit"] = _fit(B[below], lo[below], hi[below], seeds[below])
        out["fit_batch_sizes"] = B[below]
    else:
        out["note"] = (f"saturated from B={out['saturation']}: only {int(below.sum())} point below it, "
                       "no fit of the growing regime")
    return out


def _fit(B, lo, hi, seeds):
    """The power law through brackets [lo, hi], with the measured seed scatter, divided by
    sqrt(seeds) where a point is the geometric mean of several seeds (see SCALING_NOTE)."""
    return theory.fit_power_law(B, lo, lo, hi, scatter=theory.SEED_SCATTER / np.sqrt(seeds))


def _blowup_fit(points: pd.DataFrame):
    """The blow-up edge's power law over its bracketed points (None with fewer than 2)."""
    u = points[usable(points, "lr_blowup")]
    if len(u) < 2 or u["batch_size"].nunique() < 2:
        return None
    return _fit(*(u[c].to_numpy(float) for c in ("batch_size", "lr_blowup_lo", "lr_blowup_hi", "seeds")))


def scaling_table(points: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """One row per group; returns the table and the per-group analyses (for the plots)."""
    rows, analyses = [], {}
    for key, g in points.groupby(GROUP, sort=True):
        a = analyse_group(g)
        analyses[key] = a
        f, fa, fb, e = a["fit"], a["fit_all"], a["blowup_fit"], a["expected"]
        decided = theory.verdict(f, e) if f and math.isfinite(e) else "no fit"
        row = dict(zip(GROUP, key), expected_exponent=e,
                   exponent=f.exponent if f else math.nan, ci_low=f.ci_low if f else math.nan,
                   ci_high=f.ci_high if f else math.nan, verdict=decided,
                   direction=theory.direction(f, e) if decided == "inconsistent" else "",
                   to_decide=theory.what_would_decide(f, a["fit_batch_sizes"]) if decided == "inconclusive" else "",
                   n_fit=f.n if f else 0, fit_range=a["fit_range"] if f else "",
                   saturation_batch=a["saturation"],
                   exponent_all=fa.exponent if fa else math.nan, ci_low_all=fa.ci_low if fa else math.nan,
                   ci_high_all=fa.ci_high if fa else math.nan,
                   verdict_all=theory.verdict(fa, e) if fa and math.isfinite(e) else "no fit",
                   n_all=fa.n if fa else 0,
                   exponent_blowup=fb.exponent if fb else math.nan,
                   ci_low_blowup=fb.ci_low if fb else math.nan, ci_high_blowup=fb.ci_high if fb else math.nan,
                   prefactor=f.prefactor if f else math.nan,
                   excluded=a["excluded"], note=a["note"] or (f.note if f else ""))
        rows.append(row)
    cols = [*GROUP, "expected_exponent", "exponent", "ci_low", "ci_high", "verdict", "direction", "to_decide", "n_fit",
            "fit_range", "saturation_batch", "exponent_all", "ci_low_all", "ci_high_all", "verdict_all", "n_all",
            "exponent_blowup", "ci_low_blowup", "ci_high_blowup", "prefactor", "excluded", "note"]
    df = pd.DataFrame(rows, columns=cols)
    df["saturation_batch"] = df["saturation_batch"].astype("Int64")
    return df, analyses


# --------------------------------------------------------------------------------------------
# spectrum
# --------------------------------------------------------------------------------------------

def _pool_spectrum(records: list[dict]) -> dict | None:
    """Pool the spectra of one group's records (several jobs may each measure some B)."""
    specs = [(r, r["spectrum"]) for r in records if isinstance(r.get("spectrum"), dict)]
    specs = [(r, s) for r, s in specs if s.get("batches")]
    if not specs:
        return None
    lam_max, lam_min, density = {}, {}, {}
    for _, s in specs:
        for b in s.get("batches") or []:
            B = int(b["batch_size"])
            for store, field in ((lam_max, "lambda_max"), (lam_min, "lambda_min")):
                vals = b.get(field)
                vals = [] if vals is None else np.atleast_1d(np.asarray(vals, dtype=object)).tolist()
                store.setdefault(B, []).extend(x for x in map(as_number, vals) if x is not None)
        for d in s.get("density") or []:
            if d.get("grid") and d.get("density"):
                density.setdefault(int(d["batch_size"]), (np.asarray(d["grid"], float),
                                                          np.asarray(d["density"], float)))
    fulls = [s["full"] for _, s in specs if isinstance(s.get("full"), dict)
             and as_number(s["full"].get("lambda_max")) is not None]
    noises = [s["noise_scale"] for _, s in specs if isinstance(s.get("noise_scale"), dict)
              and as_number(s["noise_scale"].get("b_noise")) is not None]
    first = specs[0][1]
    return {
        "operator": first.get("operator", "hessian"), "bn_mode": first.get("bn_mode"), "at": first.get("at"),
        "preconditioned": any(bool(s.get("preconditioned")) for _, s in specs),
        "momentum": as_number(_first(r.get("momentum") for r, _ in specs)) or 0.0,
        "lambda_max": lam_max, "lambda_min": lam_min, "density": density,
        "full": {"lambda_max": _mean(f["lambda_max"] for f in fulls),
                 "lambda_min": _mean(f.get("lambda_min") for f in fulls),
                 "samples": _first(f.get("samples") for f in fulls)} if fulls else None,
        "noise": {k: _mean(n.get(k) for n in noises) for k in ("b_noise", "trace_sigma", "grad_sqnorm")}
        if noises else None,
    }


def lr_pred(spec: dict, optimizer: str, lam):
    adam = "adam" in optimizer.lower()
    if adam and not spec["preconditioned"]:
        return np.full_like(np.asarray(lam, float), np.nan) if np.ndim(lam) else math.nan
    m = spec["momentum"]
    return theory.lr_pred_adam(lam, m) if adam else theory.lr_pred_sgd(lam, m)


def spectrum_tables(records: list[dict], points: pd.DataFrame, analyses: dict):
    """Per (group, B) spectrum rows, per-group saturation rows, and the pooled spectra."""
    by_group: dict = {}
    for r in records:
        by_group.setdefault(tuple(r[c] for c in GROUP), []).append(r)
    rows, summary, pooled = [], [], {}
    for key in sorted(by_group):
        spec = _pool_spectrum(by_group[key])
        if spec is None:
            continue
        pooled[key] = spec
        optimizer = key[2]
        pts = points[(points[GROUP] == pd.Series(key, index=GROUP)).all(axis=1)].set_index("batch_size")
        Bs = sorted(b for b, v in spec["lambda_max"].items() if v)
        for B in Bs:
            lam = np.asarray(spec["lambda_max"][B])
            lmin = spec["lambda_min"].get(B) or []
            pred = lr_pred(spec, optimizer, lam.mean())
            lr_max = as_number(pts.at[B, "lr_max"]) if B in pts.index else None
            status = pts.at[B, "lr_max_status"] if B in pts.index else None
            rows.append(dict(zip(GROUP, key), operator=spec["operator"], batch_size=B, n_batches=lam.size,
                             lambda_max_mean=lam.mean(), lambda_max_std=lam.std(ddof=1) if lam.size > 1 else math.nan,
                             lambda_min_mean=float(np.mean(lmin)) if len(lmin) else math.nan,
                             lr_pred=pred, lr_max=lr_max if lr_max is not None else math.nan,
                             lr_max_status=status,
                             ratio=(lr_max / pred) if lr_max is not None and pred and np.isfinite(pred) else math.nan))
        allB = np.concatenate([[B] * len(spec["lambda_max"][B]) for B in Bs]) if Bs else np.array([])
        allL = np.concatenate([spec["lambda_max"][B] for B in Bs]) if Bs else np.array([])
        try:
            ib = theory.fit_inverse_batch(allB, allL)
        except ValueError as e:
            ib, ib_note = None, str(e)
        else:
            ib_note = ""
        spec["fit"] = ib
        full = spec["full"]
        if full is not None:
            lam_full, source = full["lambda_max"], f"measured ({full['samples']} samples)" if full.get("samples") else "measured"
        elif ib is not None:
            lam_full, source = ib.lambda_full, "fit lambda_full + kappa/B"
        else:
            lam_full, source = math.nan, "none"
        spec["lambda_full"] = lam_full
        sat = analyses.get(key, {}).get("saturation")
        pred_full = lr_pred(spec, optimizer, lam_full) if math.isfinite(lam_full) else math.nan
        note = ib_note
        if "adam" in optimizer.lower() and not spec["preconditioned"]:
            note = (note + "; " if note else "") + "Hessian not preconditioned: no Adam stability prediction"
        summary.append(dict(zip(GROUP, key), operator=spec["operator"], lambda_full=lam_full,
                            lambda_full_source=source,
                            lambda_full_fit=ib.lambda_full if ib else math.nan,
                            lambda_full_fit_low=ib.lambda_full_low if ib else math.nan,
                            lambda_full_fit_high=ib.lambda_full_high if ib else math.nan,
                            kappa=ib.kappa if ib else math.nan, kappa_low=ib.kappa_low if ib else math.nan,
                            kappa_high=ib.kappa_high if ib else math.nan,
                            b_star=(ib.kappa / lam_full) if ib and lam_full > 0 else math.nan,
                            b_noise=spec["noise"]["b_noise"] if spec["noise"] else math.nan,
                            saturation_lr_max=sat, lr_pred_full=pred_full, momentum=spec["momentum"],
                            preconditioned=spec["preconditioned"], note=note))
    cols = [*GROUP, "operator", "batch_size", "n_batches", "lambda_max_mean", "lambda_max_std",
            "lambda_min_mean", "lr_pred", "lr_max", "lr_max_status", "ratio"]
    scols = [*GROUP, "operator", "lambda_full", "lambda_full_source", "lambda_full_fit", "lambda_full_fit_low",
             "lambda_full_fit_high", "kappa", "kappa_low", "kappa_high", "b_star", "b_noise",
             "saturation_lr_max", "lr_pred_full", "momentum", "preconditioned", "note"]
    s = pd.DataFrame(summary, columns=scols)
    s["saturation_lr_max"] = s["saturation_lr_max"].astype("Int64")
    return pd.DataFrame(rows, columns=cols), s, pooled


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------

def _cell(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)) or x is pd.NA:
        return "—"
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return str(int(x)) if x.is_integer() and abs(x) < 1e15 else f"{x:.4g}"
    return str(x).replace("|", "\\|").replace("\n", " ")


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub Markdown table (no tabulate needed); numbers to 4 significant digits."""
    if df.empty:
        return "_(no rows)_\n"
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body]) + "\n"


def ci_text(lo, hi, digits: int = 3) -> str:
    return "—" if not (np.isfinite(lo) and np.isfinite(hi)) else f"[{lo:.{digits}f}, {hi:.{digits}f}]"


def scaling_markdown(scaling: pd.DataFrame) -> str:
    view = pd.DataFrame({
        "model": scaling["model"], "dataset": scaling["dataset"], "optimizer": scaling["optimizer"],
        "expected": scaling["expected_exponent"],
        "exponent": scaling["exponent"].map(lambda v: "—" if not np.isfinite(v) else f"{v:.3f}"),
        "95% interval": [ci_text(a, b) for a, b in zip(scaling["ci_low"], scaling["ci_high"])],
        "verdict": [f"**{v}**" + (f" ({d})" if d else "") for v, d in zip(scaling["verdict"], scaling["direction"])],
        "points": scaling["n_fit"], "range": scaling["fit_range"],
        "saturation B": scaling["saturation_batch"],
        "all points: exponent [95%]": [
            "—" if not np.isfinite(e) else f"{e:.3f} {ci_text(a, b)} ({v})"
            for e, a, b, v in zip(scaling["exponent_all"], scaling["ci_low_all"], scaling["ci_high_all"],
                                  scaling["verdict_all"])],
        "blow-up edge: exponent [95%]": [
            "—" if not np.isfinite(e) else f"{e:.3f} {ci_text(a, b)}"
            for e, a, b in zip(scaling["exponent_blowup"], scaling["ci_low_blowup"], scaling["ci_high_blowup"])],
        "to decide": scaling["to_decide"],
        "excluded from fits": scaling["excluded"], "note": scaling["note"]})
    return markdown_table(view)


def lr_max_markdown(points: pd.DataFrame) -> str:
    return markdown_table(points.drop(columns=["expected_exponent", "momentum"]))

