#!/usr/bin/env python
"""Regenerate every committed table and figure under results/<study>/ from its committed records.

Each study keeps its job records under ``results/<study>/records/`` (any depth); the report (tables,
figures, report.md) is written beside them into ``results/<study>/``. No training, no GPU: the
whole thing takes seconds per study.

    python scripts/make_figures.py                 # every study under results/
    python scripts/make_figures.py --study NAME    # only these (repeatable)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))      # runnable from a checkout without installing

from spectral_sweep.errors import UsageError  # noqa: E402  (after the sys.path line above)
from spectral_sweep.report import write_report  # noqa: E402


def studies(results: Path, names: list[str] | None) -> list[Path]:
    if names:
        return [results / n for n in names]
    return sorted(p for p in results.iterdir() if (p / "records").is_dir()) if results.is_dir() else []


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=ROOT / "results", help="folder of studies (default: results/)")
    parser.add_argument("--study", action="append", help="regenerate only this study (repeatable)")
    parser.add_argument("--quiet", action="store_true", help="do not print the fitted exponents")
    args = parser.parse_args(argv)
    # Relative paths in the reports, so the committed Markdown does not name this machine's folders.
    os.chdir(ROOT)
    results = args.results.resolve()
    results = results.relative_to(ROOT) if results.is_relative_to(ROOT) else results
    todo = studies(results, args.study)
    if not todo:
        print(f"no studies with a records/ folder under {results}")
        return 0
    failed = 0
    for study in todo:
        start = time.perf_counter()
        try:
            written = write_report([study / "records"], out_dir=study, quiet=args.quiet)
        except UsageError as e:
            print(f"{study.name}: {e}", file=sys.stderr)
            failed += 1
            continue
        print(f"{study.name}: {len(written)} files in {study}/ ({time.perf_counter() - start:.1f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
