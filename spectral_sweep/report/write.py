"""Write a sweep's report: read the records, make the tables, render them, draw the figures.

The orchestrator and nothing else: the numbers come from ``tables`` and ``comparison``, the text
from ``markdown``, the images from ``figures``; every file goes through ``_Out``, which writes it
atomically (a killed report leaves each file old or new, never half) and remembers it by name.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from spectral_sweep.files import replace_atomically, write_text_atomic
from spectral_sweep.point.record import JobRecord
from spectral_sweep.point.store import RECORD_FILE

from ..errors import UsageError, one_line_warnings, os_problem
from . import figures, markdown, tables
from .comparison import comparison_table, partners_of
from .tables import label, point_of, slug


class _Out:
    """The report folder: every file written atomically, its path kept under its name."""

    def __init__(self, root: Path):
        self.root = root
        self.written: dict[str, Path] = {}

    def text(self, name: str, text: str) -> None:
        self.written[name] = write_text_atomic(self.root / name, text)

    def csv(self, name: str, table: pd.DataFrame) -> None:
        with replace_atomically(self.root / name) as tmp:
            table.to_csv(tmp, index=False)
        self.written[name] = self.root / name

    def figure(self, name: str, plot, *args) -> str:
        """Draw ``plot(*args, path)`` into ``name`` (the figures save atomically); returns the name."""
        self.written[name] = plot(*args, self.root / name)
        return name


def _sweep_dirs(sweep_dirs) -> list[Path]:
    if isinstance(sweep_dirs, (str, Path)):
        sweep_dirs = [sweep_dirs]
    sweep_dirs = [Path(d) for d in sweep_dirs]
    if not sweep_dirs:
        raise UsageError("no sweep directory given")
    for d in sweep_dirs:
        if not d.exists():
            raise UsageError(f"no such sweep directory: {d}")
        if d.is_file() and d.name != RECORD_FILE:
            raise UsageError(f"{d} is a file, not a sweep directory (nor a {RECORD_FILE})")
    return sweep_dirs


def _make_out(out_dir: Path) -> None:
    """The report's folder, or one line saying why it cannot be there (``--out /dev/null``, a sweep
    folder that is read-only), before anything is written."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} is not a directory")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out_dir, prefix=".report-probe-")   # a read-only sweep: said before any file
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UsageError(f"cannot write the report to {out_dir}: {e.strerror}; choose another folder with "
                         "--out DIR") from None


def write_report(sweep_dirs, out_dir=None, quiet: bool = False) -> dict[str, Path]:
    """Read the records under ``sweep_dirs`` and write tables, figures and ``report.md`` to
    ``out_dir`` (default: the first sweep directory). Returns {file name: path}; names are
    relative to ``out_dir`` (``sharpness/<job>.png`` lies in a subfolder).

    Corrupt or partial record files are skipped with a warning naming them (``load_records``)
    and listed in report.md. Raises ``UsageError`` when a directory does not exist or no
    record is found."""
    sweep_dirs = _sweep_dirs(sweep_dirs)
    records, skipped = tables.load_sweep(sweep_dirs)
    if not records:
        extra = f" ({len(skipped)} corrupt record file(s) skipped)" if skipped else ""
        raise UsageError(f"no job records ({RECORD_FILE}) found under {', '.join(map(str, sweep_dirs))}{extra}")
    out = _Out(Path(out_dir) if out_dir is not None else sweep_dirs[0])
    _make_out(out.root)
    provenance = markdown.provenance(records, sweep_dirs)
    learner_md = _learner(records, out)
    sharpness_md = _sharpness(records, out)
    searched = [r for r in records if not r.is_learner]   # the tables are about searched lrs
    if not searched:
        out.text("report.md", markdown.learner_only_md(provenance, learner_md, sharpness_md))
        return out.written
    scaling = _searched(searched, out, sweep_dirs, provenance, skipped, [learner_md, sharpness_md])
    if not quiet:
        _print_summary(scaling)
    return out.written


def _searched(records: list[JobRecord], out: _Out, sweep_dirs, provenance: str, skipped: list[str],
              extra: list[str]) -> pd.DataFrame:
    """lr_max, scaling and spectrum tables with their figures, and report.md; returns the scaling table."""
    points = tables.lr_max_table(records)
    scaling, analyses = tables.scaling_table(points)
    out.csv("lr_max.csv", points)
    lr_max_md = markdown.lr_max_markdown(points) + markdown.flags(records)
    out.text("lr_max.md", markdown.page("lr_max per batch size", markdown.LR_MAX_NOTE, lr_max_md))
    out.csv("scaling.csv", scaling)
    scaling_md = markdown.scaling_markdown(scaling)
    out.text("scaling.md", markdown.page("Scaling exponents", markdown.SCALING_NOTE, scaling_md))
    out.figure("lr_max_vs_batch.png", figures.plot_lr_max_vs_batch, points, analyses)
    out.figure("normalised_lr.png", figures.plot_normalised, points, analyses)
    trials = tables.trials_frame(records)
    for key in (k for k in analyses if len(tables.select(trials, k))):   # a spectrum-only job has no trials
        out.figure(f"edges_{slug(key)}.png", figures.plot_edge_fits, trials, points, key)
    accuracy = {key: out.figure(f"accuracy_vs_lr_{slug(key)}.png", figures.plot_accuracy_vs_lr, trials, points, key)
                for key in analyses}
    spectrum_md = _spectrum(records, points, analyses, out)
    command = " ".join(["spectral-sweep-report", *map(str, sweep_dirs)]
                       + (["--out", str(out.root)] if out.root != sweep_dirs[0] else []))
    out.text("report.md", markdown.report_md(
        command=command, provenance_md=provenance, skipped=skipped, scaling_md=scaling_md, lr_max_md=lr_max_md,
        accuracy=accuracy, spectrum_md=spectrum_md, extra=extra, files=list(out.written)))
    return scaling


def _spectrum(records: list[JobRecord], points: pd.DataFrame, analyses: dict, out: _Out) -> str:
    """spectrum.csv, saturation.csv, spectrum.md and the spectrum figures; the report.md section
    ('' when no record measured a spectrum)."""
    rows, summary, pooled = tables.spectrum_tables(records, points, analyses)
    if not pooled:
        return ""
    out.csv("spectrum.csv", rows)
    out.csv("saturation.csv", summary)
    parts = []
    for key, spec in pooled.items():
        group_rows, srow = tables.select(rows, key), tables.select(summary, key).iloc[0]
        sat = analyses.get(key, {}).get("saturation")
        shown = [("lambda_max against B", out.figure(f"lambda_max_vs_batch_{slug(key)}.png", figures.plot_lambda_max,
                                                     spec, group_rows, srow, points, key, sat))]
        if spec["density"]:
            shown.append(("spectral density", out.figure(f"density_{slug(key)}.png", figures.plot_density, spec, key)))
        parts.append(markdown.spectrum_group(key, spec, group_rows, srow, shown))
    spectrum_md = "\n".join(parts)
    out.text("spectrum.md", markdown.page("Spectrum", markdown.SPECTRUM_NOTE, spectrum_md))
    return spectrum_md


def _learner(records: list[JobRecord], out: _Out) -> str:
    """learner.csv/.md and one figure per learner run; the report.md section ('' if none)."""
    table = comparison_table(records)
    if table.empty:
        return ""
    out.csv("learner.csv", table)
    text = markdown.markdown_table(table)
    out.text("learner.md", markdown.page("Learner against the search", markdown.COMPARISON_NOTE, text))
    names = [out.figure(f"learner_{slug(point_of(r))}.png", figures.plot_learner_comparison, r,
                        partners_of(r, records))
             for r in records if r.is_learner and r.trials]
    return markdown.learner_section(text, names)


def _sharpness(records: list[JobRecord], out: _Out) -> str:
    """sharpness/<job>.png for every job (learner or searched) whose trials tracked sharpness;
    the report.md section ('' if none did)."""
    shown = {}
    for r in records:
        if any(tables.sharpness_of(t) for t in r.trials):
            name = f"sharpness/{slug(point_of(r))}.png"
            shown[label(point_of(r))] = out.figure(name, figures.plot_sharpness, r)
    return markdown.sharpness_section(shown)


def _print_summary(scaling: pd.DataFrame) -> None:
    """One line per group on stdout: the fitted exponent against the expected one."""
    for row in scaling.itertuples(index=False):
        ex = "—" if not np.isfinite(row.exponent) else f"{row.exponent:.3f} {markdown.ci_text(row.ci_low, row.ci_high)}"
        sat = f", saturates at B={row.saturation_batch}" if not pd.isna(row.saturation_batch) else ""
        print(f"{row.model}/{row.dataset}/{row.optimizer}: exponent {ex}, expected "
              f"{row.expected_exponent:g}: {row.verdict}{sat}" + (f" ({row.to_decide})" if row.to_decide else ""))


def main(argv=None) -> int:
    """``spectral-sweep-report SWEEP_DIR... [--out DIR] [--quiet]``."""
    one_line_warnings("spectral-sweep-report")
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
    except OSError as e:   # a full disk mid-report, a file where a folder belongs: one line, not a traceback
        print(f"spectral-sweep-report: {os_problem(e, '--out DIR')}", file=sys.stderr)
        sys.exit(1)
    print(f"report: {written['report.md']} ({len(written)} files in {written['report.md'].parent})")
    return 0
