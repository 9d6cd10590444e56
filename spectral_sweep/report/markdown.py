"""Every piece of Markdown the report writes: the tables, the notes that explain them, the flags,
the provenance and skipped-files sections, and the index ``report.md`` that holds them all.

Pure text from the DataFrames of ``tables`` and the records; nothing here reads or writes a file.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from spectral_sweep.point.record import JobRecord

from .. import theory
from ..search.result import INCONCLUSIVE
from ..trial import outcomes
from .tables import GROUP, NOTHING_TRAINS, label

LR_MAX_NOTE = ("One row per (model, dataset, optimizer, batch size). search=adaptive (the default): every "
               "trial trains from its own seed, and lr_max is the learning rate at which half of short training "
               "runs from fresh seeds still train (their loss fell clearly, or their test accuracy rose clearly "
               "above chance), fitted as a sigmoid in log lr from all trials at that batch size; [lr_lo, lr_hi] "
               "is its 95% interval, lr_max_se the std of log lr_max, lr_safe the lr at which 90% train. The "
               "sigmoid's spread (natural log) is shared across the group's batch sizes (spread); spread_own is "
               "each batch size's own, to show whether sharing it holds. lr_max_job is the job's own lr_max, "
               "the one its line printed and its record.json holds: the same trials, with the spread learned "
               "only from the batch sizes measured before it; lr_max here is the refit with the spread shared "
               "across the whole group, and the scaling fit uses it (alone in its group, a point gets the "
               "same number from both). lr_blowup is the same for divergence "
               "(half of the trials blow up), never below lr_max: a trial that diverged did not train, so each of "
               "its quantiles is raised to lr_max's where it falls below (where the edges coincide, no stalled "
               "window between them, it is lr_max, and so is each end of its interval). acc_at_lr_max: the "
               "test accuracy of the trained trial nearest to "
               "lr_max. search=bisect: one seed, lr_max the largest lr whose trial trained, in the bracket "
               "[lr_lo, lr_hi]. lr_opt: the lr to train at, where the trials' quality (objective: final "
               "test accuracy by default) peaks: a parabola in log lr fitted to the trained trials within a "
               "factor 8 of the peak and below lr_lo, its 95% interval [lr_opt_lo, lr_opt_hi] from the "
               "profile likelihood (search/optimum.py; an accuracy is fitted on its angle arcsin(sqrt(acc)), where "
               "seed noise is even), refitted here from every trial under this table's lr_lo; lr_opt_job is "
               "the job's own (record.json), fitted under the job's lr_lo; quality_at_opt is the fitted quality. "
               "lr_opt_status: bracketed; upper_bound / lower_bound = the peak lies at or beyond the lowest / "
               "highest lr tried, lr_opt is a bound; flat = quality does not tell the lrs apart; too_few = "
               "too few trained trials near the peak. Status: bracketed; lower_bound = still trained at the "
               "search cap; nothing_trains "
               "= no lr trained in the searched range (raise the trial budget); inconclusive = an edge whose "
               "trials the sigmoid's own replicates do not resemble (see Flags; not fitted). monotone = no trial "
               "contradicted the shape stalled | trained | stalled | diverged (bisect only; see the record's "
               "non_monotone).")
SCALING_NOTE = ("Exponent p of lr_max ~ B^p: weighted least squares of log lr_max against log B on each "
                "point's own measured error (lr_max_se), normal quantile; when the residuals reject those "
                "errors (chi-squared at 5%) the extra scatter they show is added (Paule-Mandel). Bisection "
                "records (one seed each) have only brackets: their scatter comes from the residuals alone, "
                "with a t quantile (see spectral_sweep.theory.fit_power_law). "
                "Verdict: inconclusive when the interval is wider than "
                f"+-{theory.DECISIVE_HALF_WIDTH:g} or holds both laws (1 and 1/2), else consistent or "
                "inconsistent as the expected exponent (1 for SGD, 1/2 for Adam) lies inside it or not; "
                "'to decide' says what would make an inconclusive one decisive. lr_max saturates at B_k "
                "(theory.detect_saturation) when a line that bends flat at B_k fits the measured errors "
                "significantly better than a straight one (chi-squared, corrected for the knees tried); "
                "then the main fit uses only the batch sizes below the saturation and "
                "the fit on all points is shown for comparison. The blow-up edge's exponent (the curvature "
                "theory's quantity) is shown beside it, fitted the same way, and so is lr_opt's (the lr to "
                "train at, fitted on its own intervals over its bracketed points), each with its own verdict. "
                "lower_bound and nothing_trains points are never fitted. 'law preferred': with 3 or more "
                "bracketed batch sizes, the free power law against the saturating form of McCandlish et al. "
                "2018, lr = lr_inf (B / (B + B_noise))^q with q the law under test (its square-root analogue "
                "for Adam), both fitted on the measured errors; both have two parameters, so AIC compares "
                "their chi-squared: a difference under 2 is 'either'. B_noise is the fitted one with its 95% "
                "profile interval; the spectrum's measured gradient noise scale, where measured, is b_noise in "
                "the saturation table.")
SPECTRUM_NOTE = ("lambda_max: mean and std over random batches of size B. lr_pred: the stability limit the "
                 "spectrum predicts for the optimizer as it ran (theory.stability_limit): 2(1+momentum)/lambda_max "
                 "for SGD with heavy-ball momentum, 2(1+momentum)/((1+2 momentum) lambda_max) with Nesterov momentum, "
                 "(2+2 beta1)/((1-beta1) lambda_max) on the preconditioned Hessian for an adaptive optimizer "
                 "(Adam; none without preconditioning). ratio = measured lr_max / lr_pred. "
                 "lambda_full: the measured full-data value when present, else the fit "
                 "lambda_max(B) = lambda_full + kappa/B; B* = kappa/lambda_full. Three saturation estimates "
                 "side by side: B* from the spectrum, the gradient noise scale B_noise, and where the "
                 "measured lr_max(B) flattens.")
COMPARISON_NOTE = ("The learner's single trial against the best fixed-lr trial (highest test accuracy "
                   "among those that did not diverge) of a search at the same model, dataset, batch size, "
                   "seed and trial budget. learner_status: the learner trial's outcome (trained, stalled or "
                   "diverged, with the reason). Cost in gradient-equivalents at the training batch size: "
                   "steps plus the learner's Hessian-vector products (2 gradients each, scaled by curvature "
                   "batch / B); search cost = all trials of that search. lr and momentum: the learner's last "
                   "choice.")
SHARPNESS_NOTE = ("One figure per job that tracked sharpness (sharpness.every): the top eigenvalue of the "
                  "Hessian (preconditioned, for Adam) on a fixed batch against the training step, one colour per "
                  "trial, and dashed in the same colour the curvature at which the lr in use at that step stops "
                  "being stable (theory.stability_limit solved for the curvature). A trial whose lambda_max climbs "
                  "to its dashed line trains at the edge of stability.")


# --------------------------------------------------------------------------------------------
# tables
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


def _with_ci(values, lows, highs, verdicts=None) -> list[str]:
    """'0.812 [0.700, 0.924]' (with ' (verdict)' when given) per fit, '—' where there is none."""
    verdicts = verdicts if verdicts is not None else [None] * len(values)
    return ["—" if not np.isfinite(e) else f"{e:.3f} {ci_text(a, b)}" + (f" ({v})" if v else "")
            for e, a, b, v in zip(values, lows, highs, verdicts)]


def scaling_markdown(scaling: pd.DataFrame) -> str:
    view = pd.DataFrame({
        "model": scaling["model"], "dataset": scaling["dataset"], "optimizer": scaling["optimizer"],
        "expected": scaling["expected_exponent"],
        "exponent": scaling["exponent"].map(lambda v: "—" if not np.isfinite(v) else f"{v:.3f}"),
        "95% interval": [ci_text(a, b) for a, b in zip(scaling["ci_low"], scaling["ci_high"])],
        "verdict": [f"**{v}**" + (f" ({d})" if d else "") for v, d in zip(scaling["verdict"], scaling["direction"])],
        "points": scaling["n_fit"], "range": scaling["fit_range"],
        "saturation B": scaling["saturation_batch"],
        "all points: exponent [95%]": _with_ci(scaling["exponent_all"], scaling["ci_low_all"],
                                               scaling["ci_high_all"], scaling["verdict_all"]),
        "blow-up edge: exponent [95%]": _with_ci(scaling["exponent_blowup"], scaling["ci_low_blowup"],
                                                 scaling["ci_high_blowup"], scaling["verdict_blowup"]),
        "lr_opt: exponent [95%]": _with_ci(scaling["exponent_opt"], scaling["ci_low_opt"], scaling["ci_high_opt"],
                                           scaling["verdict_opt"]),
        "law preferred (lr_max; lr_opt)": [_law_text(*row) for row in zip(
            scaling["preferred_law"], scaling["b_noise_fit"], scaling["b_noise_fit_lo"], scaling["b_noise_fit_hi"],
            scaling["preferred_law_opt"], scaling["b_noise_opt"], scaling["b_noise_opt_lo"],
            scaling["b_noise_opt_hi"])],
        "to decide": scaling["to_decide"],
        "excluded from fits": scaling["excluded"], "note": scaling["note"]})
    return markdown_table(view)


def _law_text(law, bn, lo, hi, law_opt, bn_opt, lo_opt, hi_opt) -> str:
    """'saturating (B_noise 310 [280, 350]); power law' per group, '—' without a comparison."""
    def one(name, b, a, c):
        if not isinstance(name, str) or not name:
            return "—"
        if name == "power law":
            return name                                    # B_noise (in the csv) fits worse
        if not np.isfinite(b):
            return f"{name} (B_noise beyond the range)"
        top = "inf" if not np.isfinite(c) else f"{c:.3g}"
        return f"{name} (B_noise {b:.3g} [{a:.3g}, {top}])"
    return f"{one(law, bn, lo, hi)}; {one(law_opt, bn_opt, lo_opt, hi_opt)}"


def lr_max_markdown(points: pd.DataFrame) -> str:
    return markdown_table(points.drop(columns=["expected_exponent", "momentum"]))


def _estimate(srow, name: str) -> str:
    value, low, high = srow[name], srow[f"{name}_low"], srow[f"{name}_high"]
    return "—" if not np.isfinite(value) else f"{value:.4g} [{low:.4g}, {high:.4g}]"


def saturation_markdown(srow: pd.Series) -> str:
    """A group's saturation.csv row as the three estimates side by side."""
    view = pd.DataFrame([{
        "lambda_full": srow["lambda_full"], "source": srow["lambda_full_source"],
        "fit lambda_full [95%]": _estimate(srow, "lambda_full_fit"), "kappa [95%]": _estimate(srow, "kappa"),
        "B* = kappa/lambda_full": srow["b_star"], "B_noise": srow["b_noise"],
        "lr_max saturates at B": srow["saturation_lr_max"], "lr_pred(lambda_full)": srow["lr_pred_full"],
        "note": srow["note"]}])
    return markdown_table(view)


def spectrum_group(key, spec: dict, rows: pd.DataFrame, srow: pd.Series, figures: list[tuple[str, str]]) -> str:
    """One group's part of spectrum.md: how it was measured, its rows, its saturation, its figures
    (``figures``: (alt text, file name) pairs)."""
    desc = ", ".join(f"{k}: {spec[k]}" for k in ("operator", "bn_mode", "at") if spec.get(k) is not None)
    figs = "\n\n".join(f"![{alt}]({name})" for alt, name in figures)
    return (f"### {label(key)}\n\n{desc}; momentum/beta1 {spec['momentum']:g}\n\n"
            f"{markdown_table(rows.drop(columns=[*GROUP, 'operator']))}\n"
            f"Saturation, three estimates side by side:\n\n{saturation_markdown(srow)}\n{figs}\n")


# --------------------------------------------------------------------------------------------
# flags and provenance
# --------------------------------------------------------------------------------------------

def flags(records: list[JobRecord]) -> str:
    """Markdown bullets for the points a reader must not take at face value."""
    lines = []
    for r in records:
        where = f"{r.model} {r.optimizer} B={r.batch_size} seed {r.seed}"
        if r.lr_max_status == NOTHING_TRAINS:
            lines.append(f"- **{where}: nothing trains** in the searched range at this budget; raise the "
                         "trial budget (train.steps or train.epochs). Not fitted.")
        if r.lr_max_status == INCONCLUSIVE:
            why = r.lr_max_problem or "its trials reject the edge model"
            lines.append(f"- **{where}: lr_max inconclusive**: {why}. Not fitted.")
        lines += [f"- **{where}: not monotone in lr**: {line}" for line in r.non_monotone or []]
        noise = judge_noise(r) if r.lr_max_status != INCONCLUSIVE else None   # else said just above
        if noise:
            lines.append(f"- **{where}: the judge's own noise**: {noise}")
    return ("\n**Flags**\n\n" + "\n".join(lines) + "\n") if lines else ""


def judge_noise(record: JobRecord) -> str | None:
    """The judge's own noise on a point (``outcomes.decided_by_noise``, the rule a search applies at
    its end), for records whose search did not apply it; None when the record cannot tell (old, or
    no test set)."""
    train = (record.config or {}).get("train") or {}
    check = outcomes.noise_check(record.num_classes, record.test_size, train.get("stall_acc_margin", 0.05),
                                 train.get("target_acc"))
    return check(record.trials) if check is not None else None


def _distinct(records: list[JobRecord], field: str) -> tuple[list[str], list[str]]:
    """The distinct values of a provenance field in first-seen order, and all of them."""
    values = [str(getattr(r, field)) for r in records if getattr(r, field) not in (None, "")]
    return list(dict.fromkeys(values)), values


def _field_lines(records: list[JobRecord], field: str) -> list[str]:
    uniq, values = _distinct(records, field)
    if not uniq:
        return [f"- {field}: unknown"]
    if len(uniq) == 1:
        return [f"- {field}: `{uniq[0]}`"]
    lines = [f"- {field}s ({len(uniq)}):", *(f"  - `{v}` ({values.count(v)} records)" for v in uniq[:10])]
    return lines + ([f"  - ... and {len(uniq) - 10} more"] if len(uniq) > 10 else [])


def provenance(records: list[JobRecord], sweep_dirs) -> str:
    """Where the records are, how many, and the commands, commits, devices and dates that made them."""
    lines = [f"- sweep directories: {', '.join(f'`{d}`' for d in sweep_dirs)}",
             f"- records: {len(records)} jobs, {sum(len(r.trials) for r in records)} trials"]
    for field in ("command", "commit", "device"):
        lines += _field_lines(records, field)
    lines += _starts(records)
    created = sorted(str(r.created) for r in records if r.created)
    if created:
        lines.append(f"- created: {created[0]}" + (f" .. {created[-1]}" if created[-1] != created[0] else ""))
    else:
        lines.append("- created: unknown")
    return "\n".join(lines) + "\n"


def _starts(records: list[JobRecord]) -> list[str]:
    """Which launcher ran the jobs and how each started: a basic launcher's jobs warm-start from the
    earlier batch sizes, any other's start cold (so their records never depend on which finished first)."""
    launchers = sorted({r.launcher for r in records if r.launcher})
    if not launchers:
        return []
    warm = [f"B={r.batch_size} from B={r.warm_from}" for r in sorted(records, key=lambda r: r.batch_size)
            if r.warm_from is not None]
    return [f"- launcher: {', '.join(launchers)}; warm starts: {'; '.join(warm) if warm else 'none (every job cold)'}"]


def skipped_section(skipped: list[str]) -> list[str]:
    if not skipped:
        return []
    return [f"## Skipped record files ({len(skipped)})\n",
            "These files exist but could not be read or lack required fields, or are not this report's "
            "sweep's (read twice, a copy, a nested sweep); they are missing from every table and figure below.\n",
            "\n".join(f"- {s}" for s in skipped) + "\n"]


# --------------------------------------------------------------------------------------------
# pages
# --------------------------------------------------------------------------------------------

def page(title: str, note: str, body: str) -> str:
    """A table's own page: lr_max.md, scaling.md, spectrum.md, learner.md."""
    return f"# {title}\n\n{note}\n\n{body}"


def learner_section(table_md: str, figures: list[str]) -> str:
    """report.md's learner section: the comparison table and one figure per learner run."""
    images = [f"![learner against the search]({name})\n" for name in figures]
    return "\n".join(["## Learner against the search\n", COMPARISON_NOTE + "\n", table_md, *images])


def sharpness_section(figures: dict[str, str]) -> str:
    """report.md's sharpness section ({job label: figure name}); '' when no job tracked sharpness."""
    if not figures:
        return ""
    images = [f"![sharpness, {name}]({path})\n" for name, path in figures.items()]
    return "\n".join(["## Sharpness during training\n", SHARPNESS_NOTE + "\n", *images])


def report_md(*, command: str, provenance_md: str, skipped: list[str], scaling_md: str, lr_max_md: str,
              accuracy: dict, spectrum_md: str, extra: list[str], files) -> str:
    """The index report.md: provenance, every table inline, every figure shown, every file linked.
    ``accuracy``: {group key: figure name}; ``extra``: further sections (learner, sharpness)."""
    md = ["# spectral-sweep report\n",
          f"Tables and figures from the job records below; regenerate with `{command}` (no training needed).\n",
          "## Provenance\n", provenance_md, *skipped_section(skipped),
          "## Scaling exponents\n", SCALING_NOTE + "\n", scaling_md,
          "\n![lr_max against batch size](lr_max_vs_batch.png)\n",
          "![lr_max normalised by the law](normalised_lr.png)\n",
          "## lr_max per batch size\n", LR_MAX_NOTE + "\n", lr_max_md,
          "\n## Test accuracy against learning rate\n"]
    md += [f"![accuracy against lr, {label(k)}]({name})\n" for k, name in accuracy.items()]
    if spectrum_md:
        md += ["## Spectrum\n", SPECTRUM_NOTE + "\n", spectrum_md]
    md += [s for s in extra if s]
    md += ["## Files\n", "\n".join(f"- [{n}]({n})" for n in sorted({*files, "report.md"})) + "\n"]
    return "\n".join(md)


def learner_only_md(provenance_md: str, learner_md: str, sharpness_md: str) -> str:
    """report.md of a sweep that ran only the learner: nothing to fit, only the comparison."""
    return "\n".join(["# spectral-sweep report\n", "## Provenance\n", provenance_md, learner_md,
                      *([sharpness_md] if sharpness_md else [])])
