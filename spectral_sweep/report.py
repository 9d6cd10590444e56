"""Tables (CSV + Markdown) and figures (PNG) that test the scaling laws, from a sweep's records.

``write_report(sweep_dirs)`` reads every ``record.json`` under the given directories and writes:

lr_max.csv / .md        one row per (model, dataset, optimizer, B): lr_max (the edge of training),
                        its bracket, status and accuracy; lr_blowup (the edge of divergence) and
                        its bracket; whether the trials were monotone; lr_best, best accuracy, cost
scaling.csv / .md       one row per (model, dataset, optimizer): fitted exponent with its 95%
                        interval, the expected exponent and the verdict (consistent, inconsistent
                        or inconclusive, with what would decide it), saturation, the fit on all
                        points and the blow-up edge's exponent for comparison
spectrum.csv / .md      (when records carry a ``spectrum``) lambda_max(B), lr_pred(B) against the
saturation.csv          measured lr_max(B); lambda_full, kappa, B* = kappa / lambda_full, B_noise
                        and the measured saturation side by side
lr_max_vs_batch.png     lr_max against B per group, log-log, with fit and reference slopes 1, 1/2
normalised_lr.png       lr_max / B^expected against B: flat where the law holds
accuracy_vs_lr_<g>.png  test accuracy against lr, one curve per B, diverged trials marked
lambda_max_vs_batch_<g>.png, density_<g>.png   the spectrum, when measured
learner.csv / .md       (when the sweep ran optimizer=lanczos_sgd) the learner's trial against the
learner_<point>.png     best fixed-lr trial of the matching search: accuracy, loss, cost
report.md               an index: provenance, every table inline, every figure linked, and the
                        record files that were skipped as corrupt

The console script ``spectral-sweep-report SWEEP_DIR... [--out DIR] [--quiet]`` calls ``main``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from .comparison import COMPARISON_NOTE, comparison_table, is_learner, partners_of
from .errors import UsageError
from .plots import (
    label,
    plot_accuracy_vs_lr,
    plot_density,
    plot_lambda_max,
    plot_learner_comparison,
    plot_lr_max_vs_batch,
    plot_normalised,
    slug,
)
from .records import RECORD_FILE, replace_atomically, trials_frame, write_text_atomic
from .tables import (
    GROUP,
    LR_MAX_NOTE,
    SCALING_NOTE,
    SPECTRUM_NOTE,
    ci_text,
    load_sweep,
    lr_max_markdown,
    lr_max_table,
    markdown_table,
    scaling_markdown,
    scaling_table,
    spectrum_tables,
)


def _csv(table: pd.DataFrame, path: Path) -> Path:
    """A table as CSV, written atomically: a killed report never leaves a half file."""
    with replace_atomically(path) as tmp:
        table.to_csv(tmp, index=False)
    return path


def _flags(records: list[dict]) -> str:
    """Markdown bullets for the points a reader must not take at face value."""
    lines = []
    for r in records:
        where = f"{r['model']} {r['optimizer']} B={r['batch_size']} seed {r.get('seed', 0)}"
        if r.get("lr_max_status") in ("nothing_trains", "no_stable_lr"):
            lines.append(f"- **{where}: nothing trains** in the searched range at this budget; raise the "
                         "trial budget (search.budget.steps or .epochs). Not fitted.")
        for line in r.get("non_monotone") or []:
            lines.append(f"- **{where}: not monotone in lr**: {line}")
    return ("\n**Flags**\n\n" + "\n".join(lines) + "\n") if lines else ""


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
    for field in ("command", "commit", "device"):
        u, vals = uniq(field)
        if not u:
            lines.append(f"- {field}: unknown")
        elif len(u) == 1:
            lines.append(f"- {field}: `{u[0]}`")
        else:
            lines.append(f"- {field}s ({len(u)}):")
            lines += [f"  - `{v}` ({vals.count(v)} records)" for v in u[:10]]
            if len(u) > 10:
                lines.append(f"  - ... and {len(u) - 10} more")
    created = sorted(str(r["created"]) for r in records if r.get("created"))
    if created:
        lines.append(f"- created: {created[0]}" + (f" .. {created[-1]}" if created[-1] != created[0] else ""))
    else:
        lines.append("- created: unknown")
    return "\n".join(lines) + "\n"


def _learner_section(records: list[dict], out: Path, written: dict) -> str:
    """learner.csv/.md and one figure per learner run; the report.md section ('' if none)."""
    table = comparison_table(records)
    if table.empty:
        return ""
    _csv(table, out / "learner.csv")
    text = markdown_table(table)
    write_text_atomic(out / "learner.md", f"# Learner against the search\n\n{COMPARISON_NOTE}\n\n{text}")
    written["learner.csv"], written["learner.md"] = out / "learner.csv", out / "learner.md"
    figures = []
    for learner in filter(is_learner, records):
        if not learner.get("trials"):
            continue
        partners = partners_of(learner, records)
        point = (learner["model"], learner["dataset"], learner["optimizer"], learner["batch_size"],
                 learner.get("seed", 0))
        name = f"learner_{slug(point)}.png"
        written[name] = plot_learner_comparison(learner, partners, out / name)
        figures.append(f"![learner against the search]({name})\n")
    return "\n".join(["## Learner against the search\n", COMPARISON_NOTE + "\n", text, *figures])


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
    records, skipped = load_sweep(sweep_dirs)
    if not records:
        extra = f" ({len(skipped)} corrupt record file(s) skipped)" if skipped else ""
        raise UsageError(f"no job records ({RECORD_FILE}) found under {', '.join(map(str, sweep_dirs))}{extra}")
    out = Path(out_dir) if out_dir is not None else sweep_dirs[0]
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}

    def put(name, text):
        written[name] = write_text_atomic(out / name, text)

    every_record = records
    learner_md = _learner_section(records, out, written)
    records = [r for r in records if not is_learner(r)]   # the tables below are about searched lrs
    if not records:
        put("report.md", "\n".join(["# spectral-sweep report\n", "## Provenance\n",
                                     _provenance(every_record, sweep_dirs), learner_md]))
        return written
    points = lr_max_table(records)
    trials = trials_frame(records)
    scaling, analyses = scaling_table(points)

    _csv(points, out / "lr_max.csv")
    written["lr_max.csv"] = out / "lr_max.csv"
    lr_md = lr_max_markdown(points)
    flags = _flags(records)
    put("lr_max.md", f"# lr_max per batch size\n\n{LR_MAX_NOTE}\n\n{lr_md}{flags}")
    _csv(scaling, out / "scaling.csv")
    written["scaling.csv"] = out / "scaling.csv"
    sc_md = scaling_markdown(scaling)
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
        _csv(spec_rows, out / "spectrum.csv")
        _csv(spec_summary, out / "saturation.csv")
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
            parts.append(f"### {label(key)}\n\n{desc}; momentum/beta1 {spec['momentum']:g}\n\n"
                         f"{markdown_table(rows.drop(columns=[*GROUP, 'operator']))}\n"
                         f"Saturation, three estimates side by side:\n\n{markdown_table(sat_view)}\n{figs}\n")
        spec_md = "\n".join(parts)
        put("spectrum.md", f"# Spectrum\n\n{SPECTRUM_NOTE}\n\n{spec_md}")
    written.update(figures)

    cmd = " ".join(["spectral-sweep-report", *map(str, sweep_dirs)]
                   + (["--out", str(out)] if out != sweep_dirs[0] else []))
    md = ["# spectral-sweep report\n",
          f"Tables and figures from the job records below; regenerate with `{cmd}` (no training needed).\n",
          "## Provenance\n", _provenance(every_record, sweep_dirs)]
    if skipped:
        md += [f"## Skipped record files ({len(skipped)})\n",
               "These files exist but could not be read or lack required fields; their sweep points are "
               "missing from every table and figure below.\n",
               "\n".join(f"- {s}" for s in skipped) + "\n"]
    md += ["## Scaling exponents\n", SCALING_NOTE + "\n", sc_md,
           "\n![lr_max against batch size](lr_max_vs_batch.png)\n",
           "![lr_max normalised by the law](normalised_lr.png)\n",
           "## lr_max per batch size\n", LR_MAX_NOTE + "\n", lr_md + flags,
           "\n## Test accuracy against learning rate\n"]
    md += [f"![accuracy against lr, {label(k)}]({p.name})\n" for k, p in acc_figs.items()]
    if spec_md:
        md += ["## Spectrum\n", SPECTRUM_NOTE + "\n", spec_md]
    if learner_md:
        md.append(learner_md)
    md += ["## Files\n", "\n".join(f"- [{n}]({n})" for n in sorted({**written, "report.md": None})) + "\n"]
    put("report.md", "\n".join(md))

    if not quiet:
        for row in scaling.itertuples(index=False):
            ex = "—" if not np.isfinite(row.exponent) else f"{row.exponent:.3f} {ci_text(row.ci_low, row.ci_high)}"
            sat = f", saturates at B={row.saturation_batch}" if not pd.isna(row.saturation_batch) else ""
            print(f"{row.model}/{row.dataset}/{row.optimizer}: exponent {ex}, expected "
                  f"{row.expected_exponent:g}: {row.verdict}{sat}" + (f" ({row.to_decide})" if row.to_decide else ""))
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
