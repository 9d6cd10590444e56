"""Every figure of the report: lr_max against B, normalised lr, accuracy against lr, lambda_max(B),
densities, the learner against the search, and a job's sharpness against its stability limits.

Each ``plot_*`` draws from the DataFrames of ``tables`` (or from records) and writes one PNG at
``DPI`` atomically. matplotlib's object API with the Agg canvas: no pyplot, no global backend
state, so a report can be drawn inside any program.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from spectral_sweep.files import replace_atomically
from spectral_sweep.point.record import JobRecord

from .. import theory
from .comparison import best_trial, refreshes
from .markdown import ci_text
from .tables import as_number, label, lr_pred, select, sharpness_of, usable

DPI = 150


def _figure(w: float, h: float):
    from matplotlib.figure import Figure
    return Figure(figsize=(w, h), dpi=DPI, layout="constrained")


def _save(fig, path: Path) -> Path:
    """Write the figure atomically (temp file + rename): a killed report never leaves half a PNG."""
    path = Path(path)
    with replace_atomically(path) as tmp:
        fig.savefig(tmp, dpi=DPI, facecolor="white", format=path.suffix.lstrip(".") or "png")
    return path


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



# --------------------------------------------------------------------------------------------
# lr_max against batch size
# --------------------------------------------------------------------------------------------

def plot_lr_max_vs_batch(points, analyses, path: Path) -> Path:
    """lr_max against B per group on log-log axes: brackets, fit, reference slopes, saturation."""
    keys = list(analyses)
    ncol = min(len(keys), 2)
    nrow = math.ceil(len(keys) / ncol)
    fig = _figure(9.0 * ncol, 4.8 * nrow)     # each panel's legend to its right: three quantities to name
    axes = np.atleast_1d(fig.subplots(nrow, ncol, squeeze=False)).ravel()
    for i, (ax, key) in enumerate(zip(axes, keys)):
        _lr_max_panel(ax, select(points, key).sort_values("batch_size"), analyses[key], key, _group_color(key, i))
    for ax in axes[len(keys):]:
        ax.set_visible(False)
    fig.suptitle("Learning rates against batch size", fontsize=13, weight="bold")
    return _save(fig, path)


def _lr_max_panel(ax, g: pd.DataFrame, a: dict, key, color) -> None:
    """One group's panel: every kind of point, the fit, the reference slopes, the labels."""
    ax.set_yscale("log")
    u = g[a["usable"].reindex(g.index, fill_value=False)]
    B = u["batch_size"].to_numpy(float)
    lo, hi = u["lr_lo"].to_numpy(float), u["lr_hi"].to_numpy(float)
    estimated = pd.to_numeric(u["lr_max_se"], errors="coerce").notna().to_numpy()
    mid = np.where(estimated, u["lr_max"].to_numpy(float), _mid(lo, hi))
    _brackets(ax, B, lo, hi, a["saturation"], color, mid, "lr_max (95% interval)" if estimated.all()
              else "lr_max (bracket: last trained .. first not trained)")
    _unfitted_points(ax, g, color)
    allB = g["batch_size"].to_numpy(float)
    xs = np.geomspace(allB.min() / 2 ** 0.3, allB.max() * 2 ** 0.3, 50) if len(allB) else None
    _fit_lines(ax, a["fit"], a["saturation"], xs, color)
    if len(u):
        B0, y0 = B[0], _mid(lo, hi)[0]
        for p, ls, lab in ((1.0, (0, (2, 2)), "slope 1 (SGD law)"),
                           (0.5, (0, (6, 2, 1, 2)), "slope 1/2 (Adam law)")):
            ax.plot(xs, y0 * (xs / B0) ** p, ls=ls, color="0.35", lw=1.2, label=lab, zorder=1)
    ylo, yhi = ax.dataLim.intervaly
    if not (np.isfinite(ylo) and np.isfinite(yhi) and ylo > 0):
        ylo = yhi = 1e-2                       # nothing measurable to show
    if yhi / ylo < 1.5 and len(allB):          # a single value: an invisible decade around it
        ax.plot([allB[0]] * 2, [ylo / 3, yhi * 3], alpha=0)
    _log2_axis(ax, allB)
    _plain_log_y(ax)
    v = a["fit"] and theory.verdict(a["fit"], a["expected"]) if math.isfinite(a["expected"]) else None
    title = label(key)
    if a["fit"] is not None and v:
        title += f"\nexpected slope {a['expected']:g}: {v}"
    elif a["note"]:
        title += f"\n{a['note']}"
    ax.set_title(title, fontsize=11)
    ax.set_xlabel("batch size B (samples)")
    ax.set_ylabel("learning rate")
    ax.grid(True, which="major", alpha=0.3)
    _legend(ax, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def _brackets(ax, B, lo, hi, sat, color, mid, label: str) -> None:
    """The fitted points with their intervals (or brackets), open where lr_max has saturated (not
    fitted), on a grey band."""
    satd = B >= sat if sat else np.zeros(B.size, bool)
    if (~satd).any():
        ax.errorbar(B[~satd], mid[~satd], yerr=[mid[~satd] - lo[~satd], hi[~satd] - mid[~satd]], fmt="o",
                    color=color, ms=7, capsize=4, lw=1.5, zorder=3, label=label)
    if satd.any():
        ax.errorbar(B[satd], mid[satd], yerr=[mid[satd] - lo[satd], hi[satd] - mid[satd]], fmt="o",
                    mfc="white", color=color, ms=7, capsize=4, lw=1.5, zorder=3,
                    label=f"saturated (B ≥ {sat}), not fitted")
        ax.axvspan(sat / 2 ** 0.2, B.max() * 2 ** 0.4, color="0.92", zorder=0)


def _unfitted_points(ax, g: pd.DataFrame, color) -> None:
    """Lower bounds, the blow-up edge, and the points where nothing trained."""
    lb = g[g["lr_max_status"].eq("lower_bound") & pd.to_numeric(g["lr_max"], errors="coerce").gt(0)]
    if len(lb):
        ax.plot(lb["batch_size"], lb["lr_max"], "^", mfc="white", color=color, ms=9, mew=1.5,
                label="lower bound (trained at search cap)")
    bu = g[usable(g, "lr_blowup")]
    if len(bu):
        bB = bu["batch_size"].to_numpy(float) * 2 ** 0.06     # nudged right: never hides lr_max
        blo, bhi = bu["lr_blowup_lo"].to_numpy(float), bu["lr_blowup_hi"].to_numpy(float)
        bmid = _mid(blo, bhi)
        ax.errorbar(bB, bmid, yerr=[bmid - blo, bhi - bmid], fmt="s", color="0.45", mfc="white", ms=6,
                    capsize=3, lw=1.0, zorder=2, label="lr_blowup (edge of divergence)")
    if "lr_opt" in g:
        _optimum_points(ax, g, color)
    ns = g[g["lr_max_status"] == "nothing_trains"]
    if len(ns):     # at the bottom edge: its value (below the search floor) would crush the axis
        from matplotlib.transforms import blended_transform_factory
        ax.plot(ns["batch_size"], np.full(len(ns), 0.03), "v", mfc="white", color=color, ms=9, mew=1.5,
                transform=blended_transform_factory(ax.transData, ax.transAxes), clip_on=False,
                label="nothing trains (raise the budget)")


def _optimum_points(ax, g: pd.DataFrame, color) -> None:
    """lr_opt, the lr to train at: bracketed points with their intervals (filled triangles), bounds
    as open triangles pointing the way the peak may lie."""
    o = g[usable(g, "lr_opt")]
    if len(o):
        oB = o["batch_size"].to_numpy(float) / 2 ** 0.06     # nudged left of lr_max
        mid = o["lr_opt"].to_numpy(float)
        olo, ohi = o["lr_opt_lo"].to_numpy(float), o["lr_opt_hi"].to_numpy(float)
        ax.errorbar(oB, mid, yerr=[mid - olo, ohi - mid], fmt="v", color=color, ms=7, capsize=3, lw=1.0,
                    zorder=3, alpha=0.85, label="lr_opt (best quality, 95% interval)")
    for status, marker, text in (("upper_bound", "v", "lr_opt at most (peak not bracketed)"),
                                 ("lower_bound", "^", "lr_opt at least (peak not bracketed)")):
        b = g[g["lr_opt_status"].eq(status) & pd.to_numeric(g["lr_opt"], errors="coerce").gt(0)]
        if len(b):
            ax.plot(b["batch_size"].to_numpy(float) / 2 ** 0.06, b["lr_opt"], marker, mfc="white", color=color,
                    ms=8, mew=1.2, label=text)


def _fit_lines(ax, f, sat, xs, color) -> None:
    """The fitted power law over the fitted range, dashed where extrapolated into saturation."""
    if f is None:
        return
    top = (sat / 2 ** 0.5) if sat else xs[-1]
    inside = xs[xs <= top]
    ax.plot(inside, f.predict(inside), "-", color=color, lw=2, alpha=0.8,
            label=f"fit: slope {f.exponent:.2f}, 95% CI {ci_text(f.ci_low, f.ci_high, 2)}"
                  + (f" (B < {sat})" if sat else ""))
    if sat:
        beyond = xs[xs >= top]
        ax.plot(beyond, f.predict(beyond), "--", color=color, lw=1.2, alpha=0.6,
                label="fit extrapolated into saturation")


def plot_normalised(points, analyses, path: Path) -> Path:
    """lr_max / B^expected against B, each group scaled to 1 over its fitted points: flat = law holds."""
    fig = _figure(7.5, 4.8)
    ax = fig.subplots()
    allB = []
    for i, (key, a) in enumerate(analyses.items()):
        e = a["expected"]
        if not math.isfinite(e):
            continue
        g = select(points, key).sort_values("batch_size")
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
                    label=f"{label(key)}  (lr_max / B^{p})")
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
    ax.set_title("Normalised lr_max: flat where lr_max ∝ B (SGD) or √B (Adam)\n"
                 "open markers: saturated, not fitted", fontsize=11)
    ax.grid(True, which="both", alpha=0.3)
    _legend(ax, fontsize=8, loc="best")
    return _save(fig, path)


# --------------------------------------------------------------------------------------------
# accuracy against lr
# --------------------------------------------------------------------------------------------

STRIP = 0.09                                   # bottom 9% of the accuracy axes: the diverged strip


def plot_accuracy_vs_lr(trials: pd.DataFrame, points: pd.DataFrame, key, path: Path) -> Path:
    """Test accuracy against lr, one curve per batch size (the paper's figure style): trained trials
    filled, stalled ones open, diverged trials as crosses in a strip at the bottom, lr_max (last
    trained) as an open diamond on the curve, lr_best (best test accuracy) as a star, and lr_opt as
    a triangle at its fitted quality with its 95% interval, and the fitted parabola dashed."""
    fig = _figure(8.2, 5.0)
    ax = fig.subplots()
    t = select(trials, key).copy()
    t["test_acc"] = pd.to_numeric(t["test_acc"], errors="coerce")
    t["lr"] = pd.to_numeric(t["lr"], errors="coerce")
    t["stable"] = t["outcome"].ne("diverged")
    t["stalled"] = t["outcome"].eq("stalled")
    pct = bool(t["test_acc"].dropna().le(1.0).all())
    Bs = sorted(t["batch_size"].unique())
    pts = select(points, key).set_index("batch_size")
    ax.fill_between([0, 1], 0, STRIP, transform=ax.transAxes, color="0.93", zorder=0, lw=0)
    ax.text(0.01, STRIP / 2, "diverged", transform=ax.transAxes, va="center", ha="left", fontsize=8,
            color="0.35", style="italic")
    any_div = False
    for i, (B, c) in enumerate(zip(Bs, _colors(len(Bs)))):
        tb = t[t["batch_size"] == B]
        curve = _accuracy_curve(ax, tb, c, B, 100.0 if pct else 1.0)
        any_div |= _diverged_marks(ax, tb, c, STRIP * (0.25 + 0.5 * (i + 0.5) / len(Bs)))
        if B in pts.index:
            _edge_marks(ax, curve, pts.loc[B], c)
            _optimum_mark(ax, tb, pts.loc[B], c, 100.0 if pct else 1.0)
    ax.set_xscale("log")
    ax.set_xlabel("peak learning rate (log scale)")
    ax.set_ylabel("test accuracy (%)" if pct else "test accuracy")
    ax.set_title(f"Test accuracy against learning rate: {label(key)}", fontsize=11)
    ax.grid(True, which="major", alpha=0.3)
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo - STRIP / (1 - STRIP) * (hi - lo) * 1.15, hi)     # room for the strip below the data
    _accuracy_legend(ax, any_div)
    return _save(fig, path)


def _accuracy_curve(ax, tb: pd.DataFrame, c, B, scale: float) -> pd.Series:
    """One batch size's curve (mean accuracy per lr over its non-diverged trials), stalled ones open."""
    st = tb[tb["stable"] & tb["test_acc"].notna()]
    curve = st.assign(lrk=st["lr"].round(12)).groupby("lrk")["test_acc"].mean() * scale
    ax.plot(curve.index, curve.to_numpy(), "-o", color=c, ms=4.5, lw=1.6, label=f"B = {B}")
    sl = st[st["stalled"]]
    if len(sl):
        ax.plot(sl["lr"], sl["test_acc"] * scale, "o", mfc="white", mec=c, ms=6, mew=1.3, zorder=4)
    return curve


def _diverged_marks(ax, tb: pd.DataFrame, c, y: float) -> bool:
    """Crosses in the diverged strip at height ``y`` (axes fraction); whether there were any."""
    from matplotlib.transforms import blended_transform_factory

    dv = tb[~tb["stable"] & tb["lr"].gt(0)]
    if not len(dv):
        return False
    ax.plot(dv["lr"], np.full(len(dv), y), "x", color=c, ms=6, mew=1.6,
            transform=blended_transform_factory(ax.transData, ax.transAxes), clip_on=False)
    return True


def _edge_marks(ax, curve: pd.Series, point: pd.Series, c) -> None:
    """lr_max (open diamond) and lr_best (star) on the curve, where the curve has that lr."""
    if curve.empty:
        return
    xs = np.log(curve.index.to_numpy(float))
    lr = as_number(point["lr_max"])     # an estimated edge lies between trials: read the curve there
    if lr is not None and xs.min() <= math.log(lr) <= xs.max():
        ax.plot(lr, np.interp(math.log(lr), xs, curve.to_numpy(float)), "D", ms=10, mfc="none", mec=c, mew=1.5,
                zorder=5)
    lr = as_number(point["lr_best"])
    if lr is not None:
        j = int(np.argmin(np.abs(xs - math.log(lr))))
        if abs(xs[j] - math.log(lr)) < 1e-6:
            ax.plot(curve.index[j], curve.iloc[j], "*", ms=15, color=c, mec="black", mew=0.8, zorder=6)


def _optimum_mark(ax, tb: pd.DataFrame, point: pd.Series, c, scale: float) -> None:
    """lr_opt with its interval at its fitted quality, as the table gives them, and the parabola
    refitted from the trials (its curvature is not recorded), when the objective is accuracy."""
    from spectral_sweep.search import optimum

    if point.get("lr_opt_status") != optimum.BRACKETED or point.get("objective") != "test_acc":
        return
    trained = tb[tb["outcome"].eq("trained")]
    ceiling = as_number(point["lr_lo"]) or math.inf
    fit = optimum.fit_optimum(trained["lr"].to_numpy(float), trained["test_acc"].to_numpy(float), ceiling=ceiling)
    if fit.status != optimum.BRACKETED:
        return
    xs = np.geomspace(*fit.lrs, 60)
    ax.plot(xs, fit.predict(xs) * scale, "--", color=c, lw=1.2, alpha=0.8, zorder=3)
    lr, lo, hi = (as_number(point[k]) for k in ("lr_opt", "lr_opt_lo", "lr_opt_hi"))
    ax.errorbar([lr], [as_number(point["quality_at_opt"]) * scale], xerr=[[lr - lo], [hi - lr]], fmt="v", color=c,
                mec="black", ms=9, capsize=3, lw=1.2, zorder=6)


def _accuracy_legend(ax, any_div: bool) -> None:
    from matplotlib.lines import Line2D

    handles, _ = ax.get_legend_handles_labels()
    extra = [Line2D([], [], ls="", marker="o", mfc="white", mec="0.2", mew=1.3, ms=6, label="stalled trial"),
             Line2D([], [], ls="", marker="D", mfc="none", mec="0.2", mew=1.5, ms=8, label="lr_max (half train)"),
             Line2D([], [], ls="", marker="*", color="0.5", mec="black", ms=12, label="lr_best (best trial)"),
             Line2D([], [], ls="--", marker="v", color="0.5", mec="black", ms=8,
                    label="lr_opt (fitted peak, 95% interval)")]
    if any_div:
        extra.insert(0, Line2D([], [], ls="", marker="x", color="0.2", mew=1.6, label="diverged trial"))
    ax.legend(handles=handles + extra, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              title="batch size", title_fontsize=8, frameon=False)


# --------------------------------------------------------------------------------------------
# spectrum
# --------------------------------------------------------------------------------------------

def plot_lambda_max(spec: dict, rows: pd.DataFrame, summary: pd.Series, points: pd.DataFrame, key,
                    sat, path: Path) -> Path:
    """Left: lambda_max(B) over random batches with the full-data value and the fitted
    lambda_full + kappa/B. Right: the predicted stability limit lr_pred(B) against measured lr_max(B)."""
    fig = _figure(12.0, 4.8)
    ax, ax2 = fig.subplots(1, 2)
    Bs = rows["batch_size"].to_numpy(float)
    top = max(Bs.max(), summary["b_star"] if np.isfinite(summary["b_star"]) else 0) * 4
    xs = np.geomspace(Bs.min() / 1.5, top, 100)
    _curvature_panel(ax, spec, rows, summary, xs)
    _prediction_panel(ax2, spec, rows, summary, select(points, key).sort_values("batch_size"), sat, xs)
    fig.suptitle(f"Spectrum: {label(key)}", fontsize=13, weight="bold")
    return _save(fig, path)


def _curvature_panel(ax, spec: dict, rows: pd.DataFrame, summary: pd.Series, xs) -> None:
    """lambda_max per random batch, its mean, the full-data value, the fit and B*."""
    Bs = rows["batch_size"].to_numpy(float)
    for B in Bs:
        lam = np.asarray(spec["lambda_max"][int(B)])
        jitter = B * 2 ** np.linspace(-0.08, 0.08, lam.size) if lam.size > 1 else np.array([B])
        ax.plot(jitter, lam, ".", color="0.6", ms=4, zorder=1)
    ax.plot([], [], ".", color="0.6", label="one random batch")
    ax.errorbar(Bs, rows["lambda_max_mean"], yerr=rows["lambda_max_std"].fillna(0), fmt="o", color="#1f77b4",
                ms=7, capsize=4, lw=1.5, zorder=3, label="mean ± std over batches")
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


def _prediction_panel(ax, spec: dict, rows: pd.DataFrame, summary: pd.Series, pts: pd.DataFrame, sat, xs) -> None:
    """Measured lr_max brackets against lr_pred(B), with the three saturation estimates."""
    u = pts[usable(pts)]
    if len(u):
        lo, hi = u["lr_lo"].to_numpy(float), u["lr_hi"].to_numpy(float)
        mid = _mid(lo, hi)
        ax.errorbar(u["batch_size"], mid, yerr=[mid - lo, hi - mid], fmt="o", color="black", ms=6, capsize=4,
                    label="measured lr_max (interval)")
    _predicted_limits(ax, spec, rows, summary, xs)
    if sat:
        ax.axvline(sat, color="0.5", ls="-.", lw=1.3, label=f"lr_max saturates at B={sat}")
    bstar, bn = summary["b_star"], summary["b_noise"]
    if np.isfinite(bstar) and bstar > 0:
        ax.axvline(bstar, color="#2ca02c", ls=":", lw=1.8, label="B*")
    if np.isfinite(bn) and bn > 0:
        ax.axvline(bn, color="#9467bd", ls="--", lw=1.3, label=f"B_noise = {bn:.3g}")
    _log2_axis(ax, rows["batch_size"].to_numpy(float), xs[0], xs[-1])
    ax.set_yscale("log")
    _plain_log_y(ax)
    ax.set_xlabel("batch size B (samples)")
    ax.set_ylabel("learning rate")
    ax.set_title("Stability limit predicted by the spectrum vs measured", fontsize=11)
    ax.grid(True, which="major", alpha=0.3)
    _legend(ax, fontsize=8, loc="best")


def _predicted_limits(ax, spec: dict, rows: pd.DataFrame, summary: pd.Series, xs) -> None:
    """lr_pred per batch size, from the lambda fit and from lambda_full; a note where there is none."""
    pred = rows["lr_pred"].to_numpy(float)
    if not np.isfinite(pred).any():
        ax.text(0.97, 0.04, "no stability prediction:\nAdam needs the preconditioned Hessian",
                transform=ax.transAxes, ha="right", va="bottom", color="0.3", fontsize=9,
                bbox=dict(boxstyle="round", fc="0.95", ec="0.7"))
        return
    ax.plot(rows["batch_size"].to_numpy(float), pred, "s-", color="#1f77b4", ms=6, lw=1.5,
            label="predicted lr_pred(B) from λ_max(B)")
    if spec.get("fit") is not None:
        ax.plot(xs, lr_pred(spec, spec["fit"].predict(xs)), "-", color="#d62728", lw=1, alpha=0.7,
                label="lr_pred from the λ fit")
    if np.isfinite(summary["lr_pred_full"]):
        ax.axhline(summary["lr_pred_full"], color="black", ls="--", lw=1.3,
                   label=f"limit from λ_full: {summary['lr_pred_full']:.3g}")


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
    ax.set_title(f"SLQ spectral density, mini-batch {_operator(spec)}: {label(key)}", fontsize=11)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


# --------------------------------------------------------------------------------------------
# per job: the learner against the search, sharpness during training
# --------------------------------------------------------------------------------------------

def _job_title(record: JobRecord) -> str:
    return (f"{record.model} / {record.dataset} / {record.optimizer} / B={record.batch_size} / "
            f"seed {record.seed}")


def plot_learner_comparison(learner: JobRecord, partners: list[JobRecord], path: Path) -> Path:
    """The learner's trial beside the best fixed-lr trial of each matching search: training loss
    against step (left) and the lr in use (right: the learner's choice at each refresh)."""
    import matplotlib

    fig = _figure(9.0, 3.6)
    loss_ax, lr_ax = fig.subplots(1, 2)
    trial = learner.trials[0]
    chosen = refreshes(trial)
    colors = [matplotlib.colormaps["tab10"](i % 10) for i in range(len(partners) + 1)]
    rule = trial.hooks["learner"].get("rule", "")
    steps, loss = zip(*trial.loss_curve) if trial.loss_curve else ((), ())
    loss_ax.plot(steps, loss, color=colors[0], lw=1.6, label=f"learner ({rule})")
    if chosen:
        xs = [r["step"] for r in chosen] + [trial.steps]
        lr_ax.step(xs, [r["lr"] for r in chosen] + [chosen[-1]["lr"]], where="post",
                   color=colors[0], lw=1.6, label=f"learner ({rule})")
    for partner, c in zip(partners, colors[1:]):
        best = best_trial(partner)
        if best is None:
            continue
        name = f"{partner.optimizer} lr={best.lr:.3g} (best of {len(partner.trials)})"
        if best.loss_curve:
            loss_ax.plot(*zip(*best.loss_curve), color=c, lw=1.4, label=name)
        lr_ax.hlines(best.lr, 0, best.steps, color=c, lw=1.4, label=name)
    loss_ax.set(xlabel="step", ylabel="training loss (window mean)", yscale="log")
    lr_ax.set(xlabel="step", ylabel="learning rate", yscale="log")
    for ax in (loss_ax, lr_ax):
        _plain_log_y(ax)
        ax.grid(True, alpha=0.3)
        _legend(ax, fontsize=7)
    fig.suptitle(f"Learner against the search: {_job_title(learner)}", fontsize=10)
    return _save(fig, path)


def plot_sharpness(record: JobRecord, path: Path) -> Path:
    """One PNG per job: each tracked trial's lambda_max against step (one colour per trial, by lr)
    and, dashed in its colour, the curvature at which the lr in use stops being stable.

    Raises ``ValueError`` when no trial of the job has sharpness measurements
    (``sharpness.every`` was off)."""
    from matplotlib.lines import Line2D

    tracked = sorted((t for t in record.trials if sharpness_of(t)), key=lambda t: t.lr)
    if not tracked:
        raise ValueError("the job record has no sharpness measurements (sharpness.every)")
    fig = _figure(7.5, 4.6)
    ax = fig.subplots()
    preconditioned = False
    for trial, c in zip(tracked, _colors(len(tracked))):
        entries = sharpness_of(trial)
        preconditioned |= any(e.get("preconditioned") for e in entries)
        ax.plot([e["step"] for e in entries], [e["lambda_max"] for e in entries], "o-", color=c, ms=3, lw=1.4,
                label=f"lr={trial.lr:.3g}" + ("" if trial.trained else f" ({trial.outcome})"))
        limit = [(e["step"], e["limit"]) for e in entries if e.get("limit") is not None]
        if limit:
            ax.plot(*zip(*limit), "--", color=c, lw=1.2)
    if all(e["lambda_max"] > 0 for t in tracked for e in sharpness_of(t)):
        ax.set_yscale("log")
        _plain_log_y(ax)
    handles, _ = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], ls="--", color="0.3", label="stability limit of the lr in use"))
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
              title="trial", title_fontsize=8)
    ax.set_xlabel("step")
    ax.set_ylabel("λ_max of the " + ("preconditioned " if preconditioned else "") + "Hessian")
    ax.set_title(f"Sharpness during training: {_job_title(record)}", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    return _save(fig, path)


def plot_edge_fits(trials: pd.DataFrame, points: pd.DataFrame, key, path: Path) -> Path:
    """The trials behind each lr_max: one row per batch size, every trial's outcome along lr
    (trained at 1, stalled and diverged at 0, jittered so repeats show) and the fitted share of
    trials that train, Phi((log lr_max - log lr) / spread), with lr_max's 95% interval shaded."""
    t = select(trials, key)
    pts = select(points, key).set_index("batch_size")
    Bs = sorted(t["batch_size"].unique())
    fig = _figure(8.2, 1.0 + 1.6 * len(Bs))
    axes = np.atleast_1d(fig.subplots(len(Bs), 1, sharex=True))
    jitter = np.random.default_rng(0)
    for ax, B, c in zip(axes, Bs, _colors(len(Bs))):
        tb = t[t["batch_size"] == B]
        y = tb["outcome"].eq("trained").to_numpy(float) + jitter.uniform(-0.06, 0.06, len(tb))
        for outcome, marker in (("trained", "o"), ("stalled", "s"), ("diverged", "x")):
            m = tb["outcome"].eq(outcome).to_numpy()
            ax.scatter(tb["lr"].to_numpy(float)[m], y[m], marker=marker, color=c, s=18, label=outcome,
                       facecolors="none" if outcome == "stalled" else None)
        _edge_curve(ax, pts.loc[B] if B in pts.index else None, tb["lr"].to_numpy(float), c)
        ax.set_xscale("log")
        ax.set_ylim(-0.15, 1.15)
        ax.set_yticks([0, 0.5, 1])
        ax.set_ylabel(f"B={B}\nP(trained)", fontsize=8)
        ax.grid(True, alpha=0.3)
    axes[0].set_title(f"Trials and the fitted edge of training: {label(key)}", fontsize=11)
    axes[0].legend(fontsize=7, loc="lower left")
    axes[-1].set_xlabel("peak learning rate (log scale)")
    return _save(fig, path)


def _edge_curve(ax, point, lrs, c) -> None:
    """The fitted sigmoid and the interval of lr_max (adaptive points only: they have a spread)."""
    from scipy.special import ndtr

    if point is None or not np.isfinite(float(point.get("spread", np.nan))):
        return
    xs = np.exp(np.linspace(np.log(lrs.min()) - 0.2, np.log(lrs.max()) + 0.2, 200))
    ax.plot(xs, ndtr((np.log(float(point["lr_max"])) - np.log(xs)) / float(point["spread"])), color=c, lw=1.5)
    ax.axvspan(float(point["lr_lo"]), float(point["lr_hi"]), color=c, alpha=0.15, lw=0)
    ax.axvline(float(point["lr_max"]), color=c, lw=0.8, ls="--")
