"""Tables (CSV + Markdown) and figures (PNG) that test the scaling laws, from a sweep's records.

``write_report(sweep_dirs)`` reads every ``record.json`` under the given directories and writes:

lr_max.csv / .md        one row per (model, dataset, optimizer, B): lr_max, its bracket, status,
                        lr_best, best test accuracy, cost
scaling.csv / .md       one row per (model, dataset, optimizer): fitted exponent with its 95%
                        interval, the expected exponent and the verdict, saturation, and the fit
                        on all points for comparison
spectrum.csv / .md      (when records carry a ``spectrum``) lambda_max(B), lr_pred(B) against the
saturation.csv          measured lr_max(B); lambda_full, kappa, B* = kappa / lambda_full, B_noise
                        and the measured saturation side by side
lr_max_vs_batch.png     lr_max against B per group, log-log, with fit and reference slopes 1, 1/2
normalised_lr.png       lr_max / B^expected against B: flat where the law holds
accuracy_vs_lr_<g>.png  test accuracy against lr, one curve per B, diverged trials marked
lambda_max_vs_batch_<g>.png, density_<g>.png   the spectrum, when measured
report.md               an index: provenance, every table inline, every figure linked, and the
                        record files that were skipped as corrupt

The console script ``spectral-sweep-report SWEEP_DIR... [--out DIR] [--quiet]`` calls ``main``.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from . import theory
from .errors import UsageError
from .records import RECORD_FILE, jobs_frame, load_records, trials_frame

GROUP = ["model", "dataset", "optimizer"]
DPI = 150
BRACKETED = "bracketed"

LR_MAX_NOTE = ("One row per (model, dataset, optimizer, batch size). With several seeds: learning rates "
               "are geometric means over seeds, accuracy the arithmetic mean, trials/steps/seconds totals. "
               "lr_max is the last stable lr; the true edge lies in [lr_lo, lr_hi] (first diverged). "
               "Status: bracketed; lower_bound = still stable at the search cap (lr_max is a lower bound); "
               "no_stable_lr = nothing stable down to the floor.")
SCALING_NOTE = ("Exponent p of lr_max ~ B^p: least squares of log lr against log B, each point the geometric "
                "midpoint of its bracket; the 95% interval combines bracket widths with residual scatter "
                "(Student t, n-2 dof; see spectral_sweep.theory.fit_power_law). Verdict: consistent when the "
                "expected exponent (1 for SGD, 1/2 for Adam) lies inside the interval. When lr_max saturates "
                "(theory.detect_saturation), the main fit uses only the batch sizes below the saturation and "
                "the fit on all points is shown for comparison. lower_bound and no_stable_lr points are "
                "never fitted.")
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

def _load(sweep_dirs) -> tuple[list[dict], list[str]]:
    """Records, plus the warnings about skipped files (re-emitted, so the caller sees them too)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = load_records(sweep_dirs)
    skipped = []
    for w in caught:
        msg = str(w.message)
        if "corrupt" in msg:
            skipped.append(msg)
        warnings.warn(msg, w.category, stacklevel=3)
    return records, skipped


def _status(row) -> str:
    """The record's status, inferred for old records that lack one."""
    s = row.get("lr_max_status")
    if isinstance(s, str) and s:
        return s
    if _num(row.get("lr_max")) is None:
        return "no_stable_lr"
    return BRACKETED if _num(row.get("lr_hi")) is not None else "lower_bound"


def _num(x) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _gmean(values) -> float:
    v = [x for x in map(_num, values) if x is not None and x > 0]
    return float(np.exp(np.mean(np.log(v)))) if v else math.nan


def _mean(values) -> float:
    v = [x for x in map(_num, values) if x is not None]
    return float(np.mean(v)) if v else math.nan


def _sum(values):
    v = [x for x in map(_num, values) if x is not None]
    return float(np.sum(v)) if v else math.nan


def _first(values, default=None):
    for v in values:
        if v is not None and not (isinstance(v, float) and math.isnan(v)):
            return v
    return default


def lr_max_table(records: list[dict]) -> pd.DataFrame:
    """One row per (model, dataset, optimizer, batch size), seeds combined (see ``LR_MAX_NOTE``)."""
    jobs = jobs_frame(records).astype(object)
    jobs = jobs.where(pd.notna(jobs), None)
    jobs["lr_max_status"] = [_status(r) for r in jobs.to_dict("records")]
    rows = []
    for key, g in jobs.groupby([*GROUP, "batch_size"], sort=True):
        statuses = list(g["lr_max_status"])
        uniq = sorted(set(statuses))
        status = uniq[0] if len(uniq) == 1 else "mixed: " + ", ".join(f"{s} x{statuses.count(s)}" for s in uniq)
        rows.append(dict(zip([*GROUP, "batch_size"], key), seeds=len(g),
                         lr_max=_gmean(g["lr_max"]), lr_lo=_gmean(g["lr_lo"]), lr_hi=_gmean(g["lr_hi"]),
                         lr_max_status=status, lr_best=_gmean(g["lr_best"]),
                         best_test_acc=_mean(g["best_test_acc"]), trials=int(_sum(g["trials"])),
                         steps=_sum(g["steps"]), seconds=_sum(g["seconds"]),
                         expected_exponent=_num(_first(g["expected_exponent"])),
                         momentum=_num(_first(g["momentum"]))))
    cols = [*GROUP, "batch_size", "seeds", "lr_max", "lr_lo", "lr_hi", "lr_max_status", "lr_best",
            "best_test_acc", "trials", "steps", "seconds", "expected_exponent", "momentum"]
    df = pd.DataFrame(rows, columns=cols)
    df["batch_size"] = df["batch_size"].astype(int)
    return df


def _usable(points: pd.DataFrame) -> pd.Series:
    """Points a fit may use: bracketed (every seed), with a finite positive bracket."""
    ok = points["lr_max_status"].eq(BRACKETED)
    for c in ("lr_max", "lr_lo", "lr_hi"):
        ok &= pd.to_numeric(points[c], errors="coerce").gt(0)
    return ok & (points["lr_hi"] >= points["lr_lo"])


def _expected(points: pd.DataFrame, optimizer: str) -> float:
    e = _num(_first(points["expected_exponent"]))
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
    use = _usable(points)
    u = points[use]
    B, lo, hi = (u[c].to_numpy(float) for c in ("batch_size", "lr_lo", "lr_hi"))
    out = {"expected": expected, "usable": use, "saturation": None, "fit": None, "fit_all": None,
           "fit_range": "all", "note": ""}
    excluded = points[~use]
    out["excluded"] = "; ".join(f"B={int(b)} {s}" for b, s in zip(excluded["batch_size"],
                                                                  excluded["lr_max_status"]))
    if len(u) < 2:
        out["note"] = f"only {len(u)} usable point{'s' * (len(u) != 1)}: no fit (need 2)"
        return out
    out["fit_all"] = theory.fit_power_law(B, u["lr_max"].to_numpy(float), lo, hi)
    if len(u) >= 3:
        out["saturation"] = theory.detect_saturation(
            B, u["lr_max"].to_numpy(float), lo, hi, exponent=expected if math.isfinite(expected) else None)
    if out["saturation"] is None:
        out["fit"] = out["fit_all"]
        return out
    below = B < out["saturation"]
    out["fit_range"] = f"fit below B={out['saturation']}"
    if below.sum() >= 2:
        out["fit"] = theory.fit_power_law(B[below], u["lr_max"].to_numpy(float)[below], lo[below], hi[below])
    else:
        out["note"] = (f"saturated from B={out['saturation']}: only {int(below.sum())} point below it, "
                       "no fit of the growing regime")
    return out


def scaling_table(points: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """One row per group; returns the table and the per-group analyses (for the plots)."""
    rows, analyses = [], {}
    for key, g in points.groupby(GROUP, sort=True):
        a = analyse_group(g)
        analyses[key] = a
        f, fa, e = a["fit"], a["fit_all"], a["expected"]
        row = dict(zip(GROUP, key), expected_exponent=e,
                   exponent=f.exponent if f else math.nan, ci_low=f.ci_low if f else math.nan,
                   ci_high=f.ci_high if f else math.nan,
                   verdict=theory.verdict(f, e) if f and math.isfinite(e) else "no fit",
                   n_fit=f.n if f else 0, fit_range=a["fit_range"] if f else "",
                   saturation_batch=a["saturation"],
                   exponent_all=fa.exponent if fa else math.nan, ci_low_all=fa.ci_low if fa else math.nan,
                   ci_high_all=fa.ci_high if fa else math.nan,
                   verdict_all=theory.verdict(fa, e) if fa and math.isfinite(e) else "no fit",
                   n_all=fa.n if fa else 0, prefactor=f.prefactor if f else math.nan,
                   excluded=a["excluded"], note=a["note"] or (f.note if f else ""))
        rows.append(row)
    cols = [*GROUP, "expected_exponent", "exponent", "ci_low", "ci_high", "verdict", "n_fit", "fit_range",
            "saturation_batch", "exponent_all", "ci_low_all", "ci_high_all", "verdict_all", "n_all",
            "prefactor", "excluded", "note"]
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
                store.setdefault(B, []).extend(x for x in map(_num, vals) if x is not None)
        for d in s.get("density") or []:
            if d.get("grid") and d.get("density"):
                density.setdefault(int(d["batch_size"]), (np.asarray(d["grid"], float),
                                                          np.asarray(d["density"], float)))
    fulls = [s["full"] for _, s in specs if isinstance(s.get("full"), dict)
             and _num(s["full"].get("lambda_max")) is not None]
    noises = [s["noise_scale"] for _, s in specs if isinstance(s.get("noise_scale"), dict)
              and _num(s["noise_scale"].get("b_noise")) is not None]
    first = specs[0][1]
    return {
        "operator": first.get("operator", "hessian"), "bn_mode": first.get("bn_mode"), "at": first.get("at"),
        "preconditioned": any(bool(s.get("preconditioned")) for _, s in specs),
        "momentum": _num(_first(r.get("momentum") for r, _ in specs)) or 0.0,
        "lambda_max": lam_max, "lambda_min": lam_min, "density": density,
        "full": {"lambda_max": _mean(f["lambda_max"] for f in fulls),
                 "lambda_min": _mean(f.get("lambda_min") for f in fulls),
                 "samples": _first(f.get("samples") for f in fulls)} if fulls else None,
        "noise": {k: _mean(n.get(k) for n in noises) for k in ("b_noise", "trace_sigma", "grad_sqnorm")}
        if noises else None,
    }


def _lr_pred(spec: dict, optimizer: str, lam):
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
            pred = _lr_pred(spec, optimizer, lam.mean())
            lr_max = _num(pts.at[B, "lr_max"]) if B in pts.index else None
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
        pred_full = _lr_pred(spec, optimizer, lam_full) if math.isfinite(lam_full) else math.nan
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


def _ci(lo, hi, digits: int = 3) -> str:
    return "—" if not (np.isfinite(lo) and np.isfinite(hi)) else f"[{lo:.{digits}f}, {hi:.{digits}f}]"


def _scaling_md(scaling: pd.DataFrame) -> str:
    view = pd.DataFrame({
        "model": scaling["model"], "dataset": scaling["dataset"], "optimizer": scaling["optimizer"],
        "expected": scaling["expected_exponent"],
        "exponent": scaling["exponent"].map(lambda v: "—" if not np.isfinite(v) else f"{v:.3f}"),
        "95% interval": [_ci(a, b) for a, b in zip(scaling["ci_low"], scaling["ci_high"])],
        "verdict": scaling["verdict"].map(lambda v: f"**{v}**"),
        "points": scaling["n_fit"], "range": scaling["fit_range"],
        "saturation B": scaling["saturation_batch"],
        "all points: exponent [95%]": [
            "—" if not np.isfinite(e) else f"{e:.3f} {_ci(a, b)} ({v})"
            for e, a, b, v in zip(scaling["exponent_all"], scaling["ci_low_all"], scaling["ci_high_all"],
                                  scaling["verdict_all"])],
        "excluded from fits": scaling["excluded"], "note": scaling["note"]})
    return markdown_table(view)


def _lr_max_md(points: pd.DataFrame) -> str:
    return markdown_table(points.drop(columns=["expected_exponent", "momentum"]))


# ============================================================================================
# figures (matplotlib's object API with the Agg canvas: no pyplot, no global backend state)
# ============================================================================================

def _figure(w: float, h: float):
    from matplotlib.figure import Figure
    return Figure(figsize=(w, h), dpi=DPI, layout="constrained")


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, facecolor="white")
    return path


def _label(key) -> str:
    return " / ".join(map(str, key))


def slug(key) -> str:
    """A file-name-safe name for a group: model_dataset_optimizer."""
    return "_".join(re.sub(r"[^A-Za-z0-9.+-]+", "-", str(k)) for k in key)


def _plain_log_y(ax):
    """Log y axis labelled with plain numbers (0.3, 20) instead of 3 x 10^-1."""
    from matplotlib.ticker import FuncFormatter, NullFormatter
    fmt = FuncFormatter(lambda v, _: f"{v:g}")
    small = FuncFormatter(lambda v, _: f"{v:g}" if v > 0 and round(v / 10 ** math.floor(math.log10(v))) in (2, 3, 5)
                          else "")
    ax.yaxis.set_major_formatter(fmt)
    lo, hi = ax.get_ylim()
    # a narrow range: label every minor tick; up to 1.5 decades: the 2s, 3s and 5s; else none
    ax.yaxis.set_minor_formatter(fmt if hi / lo < 3 else small if hi / lo < 30 else NullFormatter())
    ax.tick_params(axis="y", which="minor", labelsize=8)


def _log2_axis(ax, values, lo=None, hi=None):
    """Log-2 x axis with the batch sizes as plain integer ticks."""
    from matplotlib.ticker import FixedLocator, NullLocator
    ax.set_xscale("log", base=2)
    vals = sorted({int(v) for v in values if v and v > 0}) or [1, 2]
    lo = lo or vals[0] / 2 ** 0.4
    hi = hi or vals[-1] * 2 ** 0.4
    pow2 = [2.0 ** k for k in range(math.ceil(math.log2(lo)), math.floor(math.log2(hi)) + 1)]
    all_pow2 = all(v & (v - 1) == 0 for v in vals)
    ticks = vals if (len(vals) <= 12 and not all_pow2) else pow2
    while len(ticks) > 12:
        ticks = ticks[::2]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.set_xticks(ticks, [str(int(v)) if v >= 1 else f"{v:g}" for v in ticks])
    ax.xaxis.set_minor_locator(NullLocator())
    if len(ticks) > 7:
        for t in ax.get_xticklabels():
            t.set_rotation(45)
    ax.set_xlim(lo, hi)


OPERATOR_NAMES = {"hessian": "Hessian", "ggn": "Gauss-Newton matrix"}


def _operator(spec) -> str:
    name = OPERATOR_NAMES.get(str(spec["operator"]).lower(), str(spec["operator"]))
    return ("preconditioned " if spec["preconditioned"] else "") + name


def _legend(ax, **kw):
    """A legend with data entries (error bars, markers) before lines."""
    from matplotlib.container import ErrorbarContainer
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(handles)), key=lambda i: not isinstance(handles[i], ErrorbarContainer))
    return ax.legend([handles[i] for i in order], [labels[i] for i in order], **kw)


def _mid(lo, hi):
    return np.sqrt(np.asarray(lo, float) * np.asarray(hi, float))


def _colors(n, cmap="viridis"):
    import matplotlib
    cm = matplotlib.colormaps[cmap]
    return [cm(v) for v in (np.linspace(0.0, 0.85, n) if n > 1 else [0.35])]


OPT_COLORS = {"sgd": "#1f77b4", "adam": "#d62728", "adamw": "#ff7f0e"}


def _group_color(key, i):
    import matplotlib
    return OPT_COLORS.get(str(key[2]).lower(), matplotlib.colormaps["tab10"](i % 10))


def plot_lr_max_vs_batch(points, analyses, path: Path) -> Path:
    """lr_max against B per group on log-log axes: brackets, fit, reference slopes, saturation."""
    keys = list(analyses)
    ncol = min(len(keys), 2)
    nrow = math.ceil(len(keys) / ncol)
    fig = _figure(6.2 * ncol, 4.6 * nrow)
    axes = np.atleast_1d(fig.subplots(nrow, ncol, squeeze=False)).ravel()
    for i, (ax, key) in enumerate(zip(axes, keys)):
        g = points[(points[GROUP] == pd.Series(key, index=GROUP)).all(axis=1)].sort_values("batch_size")
        a = analyses[key]
        color = _group_color(key, i)
        ax.set_yscale("log")
        use = a["usable"].reindex(g.index, fill_value=False)
        sat = a["saturation"]
        u = g[use]
        B = u["batch_size"].to_numpy(float)
        lo, hi = u["lr_lo"].to_numpy(float), u["lr_hi"].to_numpy(float)
        mid = _mid(lo, hi)
        satd = B >= sat if sat else np.zeros(B.size, bool)
        if (~satd).any():
            ax.errorbar(B[~satd], mid[~satd], yerr=[mid[~satd] - lo[~satd], hi[~satd] - mid[~satd]], fmt="o",
                        color=color, ms=7, capsize=4, lw=1.5, zorder=3,
                        label="lr_max (bracket: last stable .. first diverged)")
        if satd.any():
            ax.errorbar(B[satd], mid[satd], yerr=[mid[satd] - lo[satd], hi[satd] - mid[satd]], fmt="o",
                        mfc="white", color=color, ms=7, capsize=4, lw=1.5, zorder=3,
                        label=f"saturated (B ≥ {sat}), not fitted")
            ax.axvspan(sat / 2 ** 0.2, B.max() * 2 ** 0.4, color="0.92", zorder=0)
        lb = g[g["lr_max_status"].eq("lower_bound") & pd.to_numeric(g["lr_max"], errors="coerce").gt(0)]
        if len(lb):
            ax.plot(lb["batch_size"], lb["lr_max"], "^", mfc="white", color=color, ms=9, mew=1.5,
                    label="lower bound (stable at search cap)")
        ns = g[g["lr_max_status"].eq("no_stable_lr")]
        if len(ns):     # at the bottom edge: its value (below the search floor) would crush the axis
            from matplotlib.transforms import blended_transform_factory
            ax.plot(ns["batch_size"], np.full(len(ns), 0.03), "v", mfc="white", color=color, ms=9, mew=1.5,
                    transform=blended_transform_factory(ax.transData, ax.transAxes), clip_on=False,
                    label="no stable lr (below search floor)")
        allB = g["batch_size"].to_numpy(float)
        xs = np.geomspace(allB.min() / 2 ** 0.3, allB.max() * 2 ** 0.3, 50) if len(allB) else None
        f = a["fit"]
        if f is not None:
            top = (sat / 2 ** 0.5) if sat else xs[-1]
            inside = xs[xs <= top]
            ax.plot(inside, f.predict(inside), "-", color=color, lw=2, alpha=0.8,
                    label=f"fit: slope {f.exponent:.2f}, 95% CI {_ci(f.ci_low, f.ci_high, 2)}"
                          + (f" (B < {sat})" if sat else ""))
            if sat:
                beyond = xs[xs >= top]
                ax.plot(beyond, f.predict(beyond), "--", color=color, lw=1.2, alpha=0.6,
                        label="fit extrapolated into saturation")
        if len(u):
            B0, y0 = B[0], mid[0]
            for p, ls, lab in ((1.0, (0, (2, 2)), "slope 1 (SGD law)"), (0.5, (0, (6, 2, 1, 2)), "slope 1/2 (Adam law)")):
                ax.plot(xs, y0 * (xs / B0) ** p, ls=ls, color="0.35", lw=1.2, label=lab, zorder=1)
        ylo, yhi = ax.dataLim.intervaly
        if not (np.isfinite(ylo) and np.isfinite(yhi) and ylo > 0):
            ylo = yhi = 1e-2                       # nothing measurable to show
        if yhi / ylo < 1.5 and len(allB):          # a single value: an invisible decade around it
            ax.plot([allB[0]] * 2, [ylo / 3, yhi * 3], alpha=0)
        _log2_axis(ax, allB)
        _plain_log_y(ax)
        v = a["fit"] and theory.verdict(a["fit"], a["expected"]) if math.isfinite(a["expected"]) else None
        title = _label(key)
        if a["fit"] is not None and v:
            title += f"\nexpected slope {a['expected']:g}: {v}"
        elif a["note"]:
            title += f"\n{a['note']}"
        ax.set_title(title, fontsize=11)
        ax.set_xlabel("batch size B (samples)")
        ax.set_ylabel("max stable learning rate")
        ax.grid(True, which="major", alpha=0.3)
        _legend(ax, fontsize=8, loc="upper left", framealpha=0.9)
    for ax in axes[len(keys):]:
        ax.set_visible(False)
    fig.suptitle("Maximal stable learning rate against batch size", fontsize=13, weight="bold")
    return _save(fig, path)


def plot_normalised(points, analyses, path: Path) -> Path:
    """lr_max / B^expected against B, each group scaled to 1 over its fitted points: flat = law holds."""
    fig = _figure(7.5, 4.8)
    ax = fig.subplots()
    allB = []
    for i, (key, a) in enumerate(analyses.items()):
        e = a["expected"]
        if not math.isfinite(e):
            continue
        g = points[(points[GROUP] == pd.Series(key, index=GROUP)).all(axis=1)].sort_values("batch_size")
        u = g[a["usable"].reindex(g.index, fill_value=False)]
        if not len(u):
            continue
        B = u["batch_size"].to_numpy(float)
        lo, hi = u["lr_lo"].to_numpy(float), u["lr_hi"].to_numpy(float)
        mid = _mid(lo, hi)
        sat = a["saturation"]
        inside = B < sat if sat else np.ones(B.size, bool)
        norm = np.exp(np.mean(np.log(mid[inside] / B[inside] ** e))) if inside.any() else mid[0] / B[0] ** e
        y, ylo, yhi = (v / B ** e / norm for v in (mid, lo, hi))
        color = _group_color(key, i)
        p = "1" if e == 1 else ("1/2" if e == 0.5 else f"{e:g}")
        ax.errorbar(B, y, yerr=[y - ylo, yhi - y], fmt="-o", color=color, capsize=3, ms=6, lw=1.5,
                    label=f"{_label(key)}  (lr_max / B^{p})")
        if sat:
            s = B >= sat
            ax.plot(B[s], y[s], "o", mfc="white", color=color, ms=6, zorder=4)
        allB.extend(B)
    ax.axhline(1.0, color="0.3", ls="--", lw=1, label="law holds (flat)")
    ax.set_yscale("log")
    _log2_axis(ax, allB)
    _plain_log_y(ax)
    ax.set_xlabel("batch size B (samples)")
    ax.set_ylabel("lr_max / B^p, normalised (1 = mean over fitted B)")
    ax.set_title("Normalised max stable lr: flat where lr_max ∝ B (SGD) or √B (Adam)\n"
                 "open markers: saturated, not fitted", fontsize=11)
    ax.grid(True, which="both", alpha=0.3)
    _legend(ax, fontsize=8, loc="best")
    return _save(fig, path)


def plot_accuracy_vs_lr(trials: pd.DataFrame, points: pd.DataFrame, key, path: Path) -> Path:
    """Test accuracy against lr, one curve per batch size (the paper's figure style): diverged trials
    as crosses in a strip at the bottom, lr_max (last stable) as an open diamond, lr_best (best test
    accuracy) as a star."""
    from matplotlib.lines import Line2D
    from matplotlib.transforms import blended_transform_factory

    fig = _figure(8.2, 5.0)
    ax = fig.subplots()
    t = trials[(trials[GROUP] == pd.Series(key, index=GROUP)).all(axis=1)].copy()
    t["test_acc"] = pd.to_numeric(t["test_acc"], errors="coerce")
    t["lr"] = pd.to_numeric(t["lr"], errors="coerce")
    t["stable"] = t["stable"].astype(bool)
    pct = bool(t["test_acc"].dropna().le(1.0).all())
    scale = 100.0 if pct else 1.0
    Bs = sorted(t["batch_size"].unique())
    colors = _colors(len(Bs))
    pts = points[(points[GROUP] == pd.Series(key, index=GROUP)).all(axis=1)].set_index("batch_size")
    strip = blended_transform_factory(ax.transData, ax.transAxes)
    STRIP = 0.09                                   # bottom 9% of the axes: the diverged strip
    ax.fill_between([0, 1], 0, STRIP, transform=ax.transAxes, color="0.93", zorder=0, lw=0)
    ax.text(0.01, STRIP / 2, "diverged", transform=ax.transAxes, va="center", ha="left", fontsize=8,
            color="0.35", style="italic")
    any_div = False
    for i, (B, c) in enumerate(zip(Bs, colors)):
        tb = t[t["batch_size"] == B]
        st = tb[tb["stable"] & tb["test_acc"].notna()]
        curve = st.assign(lrk=st["lr"].round(12)).groupby("lrk")["test_acc"].mean() * scale
        ax.plot(curve.index, curve.to_numpy(), "-o", color=c, ms=4.5, lw=1.6, label=f"B = {B}")
        dv = tb[~tb["stable"] & tb["lr"].gt(0)]
        if len(dv):
            any_div = True
            y = STRIP * (0.25 + 0.5 * (i + 0.5) / len(Bs))
            ax.plot(dv["lr"], np.full(len(dv), y), "x", color=c, ms=6, mew=1.6, transform=strip, clip_on=False)
        if B in pts.index:
            for col, marker in (("lr_max", "D"), ("lr_best", "*")):
                lr = _num(pts.at[B, col])
                if lr is None or curve.empty:
                    continue
                j = int(np.argmin(np.abs(np.log(curve.index.to_numpy(float) / lr))))
                if abs(math.log(curve.index[j] / lr)) < 1e-6:
                    if marker == "D":
                        ax.plot(curve.index[j], curve.iloc[j], "D", ms=10, mfc="none", mec=c, mew=1.5, zorder=5)
                    else:
                        ax.plot(curve.index[j], curve.iloc[j], "*", ms=15, color=c, mec="black", mew=0.8, zorder=6)
    ax.set_xscale("log")
    ax.set_xlabel("peak learning rate (log scale)")
    ax.set_ylabel("test accuracy (%)" if pct else "test accuracy")
    ax.set_title(f"Test accuracy against learning rate: {_label(key)}", fontsize=11)
    ax.grid(True, which="major", alpha=0.3)
    lo, hi = ax.get_ylim()
    span = hi - lo
    ax.set_ylim(lo - STRIP / (1 - STRIP) * span * 1.15, hi)     # room for the strip below the data
    handles, _ = ax.get_legend_handles_labels()
    extra = [Line2D([], [], ls="", marker="D", mfc="none", mec="0.2", mew=1.5, ms=8, label="lr_max (last stable)"),
             Line2D([], [], ls="", marker="*", color="0.5", mec="black", ms=12, label="lr_best (best test acc.)")]
    if any_div:
        extra.insert(0, Line2D([], [], ls="", marker="x", color="0.2", mew=1.6, label="diverged trial"))
    ax.legend(handles=handles + extra, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              title="batch size", title_fontsize=8, frameon=False)
    return _save(fig, path)


def plot_lambda_max(spec: dict, rows: pd.DataFrame, summary: pd.Series, points: pd.DataFrame, key,
                    sat, path: Path) -> Path:
    """Left: lambda_max(B) over random batches with the full-data value and the fitted
    lambda_full + kappa/B. Right: the predicted stability limit lr_pred(B) against measured lr_max(B)."""
    fig = _figure(12.0, 4.8)
    ax, ax2 = fig.subplots(1, 2)
    Bs = rows["batch_size"].to_numpy(float)
    for B in Bs:
        lam = np.asarray(spec["lambda_max"][int(B)])
        jitter = B * 2 ** np.linspace(-0.08, 0.08, lam.size) if lam.size > 1 else np.array([B])
        ax.plot(jitter, lam, ".", color="0.6", ms=4, zorder=1)
    ax.plot([], [], ".", color="0.6", label="one random batch")
    ax.errorbar(Bs, rows["lambda_max_mean"], yerr=rows["lambda_max_std"].fillna(0), fmt="o", color="#1f77b4",
                ms=7, capsize=4, lw=1.5, zorder=3, label="mean ± std over batches")
    top = max(Bs.max(), summary["b_star"] if np.isfinite(summary["b_star"]) else 0) * 4
    xs = np.geomspace(Bs.min() / 1.5, top, 100)
    fit = spec.get("fit")
    if fit is not None:
        ax.plot(xs, fit.predict(xs), "-", color="#d62728", lw=1.8,
                label=f"fit λ_full + κ/B: λ_full={fit.lambda_full:.4g}, κ={fit.kappa:.4g}")
    full = spec.get("full")
    if full is not None:
        ax.axhline(full["lambda_max"], color="black", ls="--", lw=1.3,
                   label=f"full data: λ_max={full['lambda_max']:.3g}")
    bstar = summary["b_star"]
    if np.isfinite(bstar) and bstar > 0:
        ax.axvline(bstar, color="#2ca02c", ls=":", lw=1.8, label=f"B* = κ/λ_full = {bstar:.3g}")
    _log2_axis(ax, Bs, xs[0], xs[-1])
    if (rows["lambda_max_mean"] > 0).all():
        ax.set_yscale("log")
        _plain_log_y(ax)
    ax.set_xlabel("batch size B (samples)")
    ax.set_ylabel(f"top eigenvalue λ_max of the {_operator(spec)}")
    ax.set_title("Mini-batch curvature: λ_max(B) = λ_full + κ/B", fontsize=11)
    ax.grid(True, which="major", alpha=0.3)
    _legend(ax, fontsize=8, loc="best")

    pts = points[(points[GROUP] == pd.Series(key, index=GROUP)).all(axis=1)].sort_values("batch_size")
    ok = _usable(pts)
    u = pts[ok]
    if len(u):
        lo, hi = u["lr_lo"].to_numpy(float), u["lr_hi"].to_numpy(float)
        mid = _mid(lo, hi)
        ax2.errorbar(u["batch_size"], mid, yerr=[mid - lo, hi - mid], fmt="o", color="black", ms=6, capsize=4,
                     label="measured lr_max (bracket)")
    pred = rows["lr_pred"].to_numpy(float)
    if np.isfinite(pred).any():
        ax2.plot(Bs, pred, "s-", color="#1f77b4", ms=6, lw=1.5, label="predicted lr_pred(B) from λ_max(B)")
        if fit is not None:
            ax2.plot(xs, _lr_pred(spec, key[2], fit.predict(xs)), "-", color="#d62728", lw=1, alpha=0.7,
                     label="lr_pred from the λ fit")
        if np.isfinite(summary["lr_pred_full"]):
            ax2.axhline(summary["lr_pred_full"], color="black", ls="--", lw=1.3,
                        label=f"limit from λ_full: {summary['lr_pred_full']:.3g}")
    else:
        ax2.text(0.97, 0.04, "no stability prediction:\nAdam needs the preconditioned Hessian",
                 transform=ax2.transAxes, ha="right", va="bottom", color="0.3", fontsize=9,
                 bbox=dict(boxstyle="round", fc="0.95", ec="0.7"))
    if sat:
        ax2.axvline(sat, color="0.5", ls="-.", lw=1.3, label=f"lr_max saturates at B={sat}")
    if np.isfinite(bstar) and bstar > 0:
        ax2.axvline(bstar, color="#2ca02c", ls=":", lw=1.8, label="B*")
    bn = summary["b_noise"]
    if np.isfinite(bn) and bn > 0:
        ax2.axvline(bn, color="#9467bd", ls="--", lw=1.3, label=f"B_noise = {bn:.3g}")
    _log2_axis(ax2, Bs, xs[0], xs[-1])
    ax2.set_yscale("log")
    _plain_log_y(ax2)
    ax2.set_xlabel("batch size B (samples)")
    ax2.set_ylabel("learning rate")
    ax2.set_title("Stability limit predicted by the spectrum vs measured", fontsize=11)
    ax2.grid(True, which="major", alpha=0.3)
    _legend(ax2, fontsize=8, loc="best")
    fig.suptitle(f"Spectrum: {_label(key)}", fontsize=13, weight="bold")
    return _save(fig, path)


def plot_density(spec: dict, key, path: Path) -> Path:
    """SLQ spectral densities for several batch sizes, overlaid on a log density axis."""
    fig = _figure(7.5, 4.8)
    ax = fig.subplots()
    Bs = sorted(spec["density"])
    floor = None
    for B, c in zip(Bs, _colors(len(Bs), "plasma")):
        grid, dens = spec["density"][B]
        pos = dens[dens > 0]
        if pos.size:
            floor = pos.max() * 1e-8 if floor is None else min(floor, pos.max() * 1e-8)
        ax.plot(grid, np.where(dens > 0, dens, np.nan), color=c, lw=1.6, label=f"B = {B}")
    ax.set_yscale("log")
    if floor:
        ax.set_ylim(bottom=floor)
    ax.set_xlabel(f"eigenvalue λ of the {_operator(spec)}")
    ax.set_ylabel("spectral density (log scale)")
    ax.set_title(f"SLQ spectral density, mini-batch {_operator(spec)}: {_label(key)}", fontsize=11)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


# ============================================================================================
# the report
# ============================================================================================

def _provenance(records: list[dict], sweep_dirs) -> str:
    def uniq(field):
        vals = [str(r.get(field)) for r in records if r.get(field) not in (None, "")]
        out = []
        for v in vals:
            if v not in out:
                out.append(v)
        return out, vals

    lines = [f"- sweep directories: {', '.join(f'`{d}`' for d in sweep_dirs)}",
             f"- records: {len(records)} jobs, {sum(len(r['trials']) for r in records)} trials"]
    for field, label in (("command", "command"), ("commit", "commit"), ("device", "device")):
        u, vals = uniq(field)
        if not u:
            lines.append(f"- {label}: unknown")
        elif len(u) == 1:
            lines.append(f"- {label}: `{u[0]}`")
        else:
            lines.append(f"- {label}s ({len(u)}):")
            lines += [f"  - `{v}` ({vals.count(v)} records)" for v in u[:10]]
            if len(u) > 10:
                lines.append(f"  - ... and {len(u) - 10} more")
    created = sorted(str(r["created"]) for r in records if r.get("created"))
    if created:
        lines.append(f"- created: {created[0]}" + (f" .. {created[-1]}" if created[-1] != created[0] else ""))
    else:
        lines.append("- created: unknown")
    return "\n".join(lines) + "\n"


def write_report(sweep_dirs, out_dir=None, quiet: bool = False) -> dict[str, Path]:
    """Read the records under ``sweep_dirs`` and write tables, figures and ``report.md`` to
    ``out_dir`` (default: the first sweep directory). Returns {file name: path}.

    Corrupt or partial record files are skipped with a warning naming them (``load_records``)
    and listed in report.md. Raises ``UsageError`` when a directory does not exist or no
    record is found."""
    if isinstance(sweep_dirs, (str, Path)):
        sweep_dirs = [sweep_dirs]
    sweep_dirs = [Path(d) for d in sweep_dirs]
    if not sweep_dirs:
        raise UsageError("no sweep directory given")
    for d in sweep_dirs:
        if not d.exists():
            raise UsageError(f"no such sweep directory: {d}")
    records, skipped = _load(sweep_dirs)
    if not records:
        extra = f" ({len(skipped)} corrupt record file(s) skipped)" if skipped else ""
        raise UsageError(f"no job records ({RECORD_FILE}) found under {', '.join(map(str, sweep_dirs))}{extra}")
    out = Path(out_dir) if out_dir is not None else sweep_dirs[0]
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}

    def put(name, text):
        (out / name).write_text(text)
        written[name] = out / name

    points = lr_max_table(records)
    trials = trials_frame(records)
    scaling, analyses = scaling_table(points)

    points.to_csv(out / "lr_max.csv", index=False)
    written["lr_max.csv"] = out / "lr_max.csv"
    lr_md = _lr_max_md(points)
    put("lr_max.md", f"# Max stable lr per batch size\n\n{LR_MAX_NOTE}\n\n{lr_md}")
    scaling.to_csv(out / "scaling.csv", index=False)
    written["scaling.csv"] = out / "scaling.csv"
    sc_md = _scaling_md(scaling)
    put("scaling.md", f"# Scaling exponents\n\n{SCALING_NOTE}\n\n{sc_md}")

    figures = {"lr_max_vs_batch.png": plot_lr_max_vs_batch(points, analyses, out / "lr_max_vs_batch.png"),
               "normalised_lr.png": plot_normalised(points, analyses, out / "normalised_lr.png")}
    acc_figs = {}
    for key in analyses:
        name = f"accuracy_vs_lr_{slug(key)}.png"
        acc_figs[key] = plot_accuracy_vs_lr(trials, points, key, out / name)
        figures[name] = acc_figs[key]

    spec_rows, spec_summary, pooled = spectrum_tables(records, points, analyses)
    spec_md = ""
    if pooled:
        spec_rows.to_csv(out / "spectrum.csv", index=False)
        spec_summary.to_csv(out / "saturation.csv", index=False)
        written["spectrum.csv"] = out / "spectrum.csv"
        written["saturation.csv"] = out / "saturation.csv"
        parts = []
        for key, spec in pooled.items():
            sel = (spec_rows[GROUP] == pd.Series(key, index=GROUP)).all(axis=1)
            rows = spec_rows[sel]
            srow = spec_summary[(spec_summary[GROUP] == pd.Series(key, index=GROUP)).all(axis=1)].iloc[0]
            lam_name = f"lambda_max_vs_batch_{slug(key)}.png"
            figures[lam_name] = plot_lambda_max(spec, rows, srow, points, key, analyses.get(key, {}).get("saturation"),
                                                out / lam_name)
            figs = f"![lambda_max against B]({lam_name})"
            if spec["density"]:
                dn = f"density_{slug(key)}.png"
                figures[dn] = plot_density(spec, key, out / dn)
                figs += f"\n\n![spectral density]({dn})"
            desc = ", ".join(f"{k}: {spec[k]}" for k in ("operator", "bn_mode", "at") if spec.get(k) is not None)
            sat_view = pd.DataFrame([{
                "lambda_full": srow["lambda_full"], "source": srow["lambda_full_source"],
                "fit lambda_full [95%]": "—" if not np.isfinite(srow["lambda_full_fit"]) else
                f"{srow['lambda_full_fit']:.4g} [{srow['lambda_full_fit_low']:.4g}, {srow['lambda_full_fit_high']:.4g}]",
                "kappa [95%]": "—" if not np.isfinite(srow["kappa"]) else
                f"{srow['kappa']:.4g} [{srow['kappa_low']:.4g}, {srow['kappa_high']:.4g}]",
                "B* = kappa/lambda_full": srow["b_star"], "B_noise": srow["b_noise"],
                "lr_max saturates at B": srow["saturation_lr_max"], "lr_pred(lambda_full)": srow["lr_pred_full"],
                "note": srow["note"]}])
            parts.append(f"### {_label(key)}\n\n{desc}; momentum/beta1 {spec['momentum']:g}\n\n"
                         f"{markdown_table(rows.drop(columns=[*GROUP, 'operator']))}\n"
                         f"Saturation, three estimates side by side:\n\n{markdown_table(sat_view)}\n{figs}\n")
        spec_md = "\n".join(parts)
        put("spectrum.md", f"# Spectrum\n\n{SPECTRUM_NOTE}\n\n{spec_md}")
    written.update(figures)

    cmd = " ".join(["spectral-sweep-report", *map(str, sweep_dirs)]
                   + (["--out", str(out)] if out != sweep_dirs[0] else []))
    md = [f"# spectral-sweep report\n",
          f"Tables and figures from the job records below; regenerate with `{cmd}` (no training needed).\n",
          "## Provenance\n", _provenance(records, sweep_dirs)]
    if skipped:
        md += [f"## Skipped record files ({len(skipped)})\n",
               "These files exist but could not be read or lack required fields; their sweep points are "
               "missing from every table and figure below.\n",
               "\n".join(f"- {s}" for s in skipped) + "\n"]
    md += ["## Scaling exponents\n", SCALING_NOTE + "\n", sc_md,
           "\n![lr_max against batch size](lr_max_vs_batch.png)\n",
           "![lr_max normalised by the law](normalised_lr.png)\n",
           "## Max stable lr per batch size\n", LR_MAX_NOTE + "\n", lr_md,
           "\n## Test accuracy against learning rate\n"]
    md += [f"![accuracy against lr, {_label(k)}]({p.name})\n" for k, p in acc_figs.items()]
    if spec_md:
        md += ["## Spectrum\n", SPECTRUM_NOTE + "\n", spec_md]
    md += ["## Files\n", "\n".join(f"- [{n}]({n})" for n in sorted({**written, "report.md": None})) + "\n"]
    put("report.md", "\n".join(md))

    if not quiet:
        for row in scaling.itertuples(index=False):
            ex = "—" if not np.isfinite(row.exponent) else f"{row.exponent:.3f} {_ci(row.ci_low, row.ci_high)}"
            sat = f", saturates at B={row.saturation_batch}" if not pd.isna(row.saturation_batch) else ""
            print(f"{row.model}/{row.dataset}/{row.optimizer}: exponent {ex}, expected "
                  f"{row.expected_exponent:g}: {row.verdict}{sat}")
    return written


def main(argv=None) -> int:
    """``spectral-sweep-report SWEEP_DIR... [--out DIR] [--quiet]``."""
    parser = argparse.ArgumentParser(
        prog="spectral-sweep-report",
        description="Tables and plots of max stable lr against batch size from a sweep's records.")
    parser.add_argument("sweep_dirs", nargs="+", metavar="SWEEP_DIR", type=Path,
                        help="directories searched recursively for record.json files")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: the first SWEEP_DIR)")
    parser.add_argument("--quiet", action="store_true", help="print only where the report went")
    args = parser.parse_args(argv)
    try:
        written = write_report(args.sweep_dirs, args.out, quiet=args.quiet)
    except UsageError as e:
        print(f"spectral-sweep-report: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"report: {written['report.md']} ({len(written)} files in {written['report.md'].parent})")
    return 0


if __name__ == "__main__":   # pragma: no cover
    sys.exit(main())
