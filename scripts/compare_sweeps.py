#!/usr/bin/env python
"""Do several runs of one sweep agree? Per batch size, each run's lr_max with its 95% interval,
each run's exponent and verdict, and whether every pair of intervals overlaps: the check a
headline number must pass before it is trusted (another thread count, another seed).

    python scripts/compare_sweeps.py NAME=SWEEP_DIR [NAME=SWEEP_DIR ...] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))      # runnable from a checkout without installing

from spectral_sweep.point.store import load_records  # noqa: E402
from spectral_sweep.report import tables  # noqa: E402


def summarise(sweep: Path):
    """(lr_max table, scaling table) of one sweep, as the report computes them."""
    points = tables.lr_max_table(load_records(sweep))
    scaling, _ = tables.scaling_table(points)
    return points, scaling


def overlaps(a, b) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def compare(runs: dict[str, Path]) -> str:
    summaries = {name: summarise(path) for name, path in runs.items()}
    sizes = sorted({int(b) for points, _ in summaries.values() for b in points["batch_size"]})
    head = "| B | " + " | ".join(summaries) + " | all pairs overlap |"
    lines = [head, "|" + "---|" * (len(summaries) + 2)]
    all_ok = True
    for b in sizes:
        cells, intervals = [], []
        for points, _ in summaries.values():
            row = points[points["batch_size"] == b]
            if row.empty:
                cells.append("—")
                continue
            r = row.iloc[0]
            intervals.append((float(r.lr_lo), float(r.lr_hi)))
            cells.append(f"{r.lr_max:.3g} [{r.lr_lo:.3g}, {r.lr_hi:.3g}] ({int(r.trials)} trials)")
        ok = all(overlaps(x, y) for x, y in itertools.combinations(intervals, 2))
        all_ok &= ok
        lines.append(f"| {b} | " + " | ".join(cells) + f" | {'yes' if ok else '**no**'} |")
    exps = []
    for _, scaling in summaries.values():
        s = scaling.iloc[0]
        exps.append(f"{s.exponent:.3f} [{s.ci_low:.3f}, {s.ci_high:.3f}] **{s.verdict}**")
    verdicts = {scaling.iloc[0].verdict for _, scaling in summaries.values()}
    same = "yes" if len(verdicts) == 1 else "**no**"
    lines.append("| exponent [95%] | " + " | ".join(exps) + f" | same verdict: {same} |")
    lines.append("")
    lines.append(f"Every batch size's intervals overlap pairwise: {'yes' if all_ok else 'no'}. "
                 f"Verdicts: {', '.join(sorted(verdicts))}.")
    if any("lr_opt" in points and points["lr_opt_status"].notna().any() for points, _ in summaries.values()):
        lines += ["", "lr_opt, the lr to train at (a bound where the peak was not bracketed; its pairs are "
                  "judged only where both runs bracket it):", "", *_optimum_lines(summaries, sizes)]
    return "\n".join(lines) + "\n"


def _optimum_cell(r) -> tuple[str, tuple | None]:
    status = r.lr_opt_status
    if status == "bracketed":
        return f"{r.lr_opt:.3g} [{r.lr_opt_lo:.3g}, {r.lr_opt_hi:.3g}]", (float(r.lr_opt_lo), float(r.lr_opt_hi))
    if status == "upper_bound":
        return f"at most {r.lr_opt:.3g}", None
    if status == "lower_bound":
        return f"at least {r.lr_opt:.3g}", None
    return str(status), None


def _optimum_lines(summaries: dict, sizes: list[int]) -> list[str]:
    lines = ["| B | " + " | ".join(summaries) + " | bracketed pairs overlap |", "|" + "---|" * (len(summaries) + 2)]
    for b in sizes:
        cells, intervals = [], []
        for points, _ in summaries.values():
            row = points[points["batch_size"] == b]
            text, interval = _optimum_cell(row.iloc[0]) if not row.empty else ("—", None)
            cells.append(text)
            if interval:
                intervals.append(interval)
        ok = all(overlaps(x, y) for x, y in itertools.combinations(intervals, 2))
        lines.append(f"| {b} | " + " | ".join(cells) + f" | {'yes' if ok else '**no**'} ({len(intervals)} bracketed) |")
    exps = []
    for _, scaling in summaries.values():
        s = scaling.iloc[0]
        n = int(s.n_opt) if "n_opt" in s and s.n_opt == s.n_opt else 0
        exps.append(f"{s.exponent_opt:.3f} [{s.ci_low_opt:.3f}, {s.ci_high_opt:.3f}] {s.verdict_opt} ({n} points)"
                    if n >= 2 else "no fit")
    lines.append("| lr_opt's exponent | " + " | ".join(exps) + " | |")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="NAME=SWEEP_DIR")
    parser.add_argument("--out", type=Path, help="also write the table to this Markdown file")
    args = parser.parse_args(argv)
    runs = dict(r.split("=", 1) for r in args.runs)
    text = compare({name: Path(path) for name, path in runs.items()})
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
