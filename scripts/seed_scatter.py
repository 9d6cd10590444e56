"""The seed-to-seed scatter of log lr_max, the noise level the scaling fit assumes (theory.SEED_SCATTER).

Reads a sweep run with several seeds, e.g.

    spectral-sweep experiment=quickstart seed=0,1,2,3 name=scatter

and for every (group, batch size) takes the variance over seeds of log(bracket midpoint). Each
midpoint also carries the bracket's own quantisation, variance log(tolerance)^2 / 12, so

    scatter^2 = pooled variance over seeds - mean bracket variance      (clipped at 0)

pooled over batch sizes with their degrees of freedom (seeds - 1 each). Prints one line per
batch size and the estimate with a 95% chi-squared interval.

    python scripts/seed_scatter.py outputs/scatter
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from spectral_sweep.records import load_records  # noqa: E402


def scatter(records: list[dict]) -> dict:
    by_point: dict[tuple, list] = {}
    for r in records:
        lo, hi = r.get("lr_max_bracket") or (None, None)
        if r.get("lr_max_status") != "bracketed" or not lo or not hi:
            continue
        key = (r["model"], r["dataset"], r["optimizer"], r["batch_size"])
        by_point.setdefault(key, []).append((math.log(math.sqrt(lo * hi)), math.log(hi / lo) ** 2 / 12))
    rows, ss, dof, bracket = [], 0.0, 0, []
    for key, values in sorted(by_point.items()):
        mids = np.array([m for m, _ in values])
        if mids.size < 2:
            continue
        var = float(mids.var(ddof=1))
        rows.append((key, mids.size, float(np.exp(mids.mean())), math.sqrt(var)))
        ss += var * (mids.size - 1)
        dof += mids.size - 1
        bracket += [b for _, b in values]
    if dof == 0:
        raise SystemExit("need at least two seeds at one batch size with bracketed lr_max")
    pooled = ss / dof
    b2 = float(np.mean(bracket))
    lo_var, hi_var = ss / stats.chi2.ppf(0.975, dof), ss / stats.chi2.ppf(0.025, dof)

    def est(variance: float) -> float:
        return math.sqrt(max(variance - b2, 0.0))

    return {"rows": rows, "dof": dof, "pooled_std": math.sqrt(pooled), "bracket_std": math.sqrt(b2),
            "scatter": est(pooled), "scatter_low": est(lo_var), "scatter_high": est(hi_var)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dirs", nargs="+")
    args = parser.parse_args(argv)
    out = scatter(load_records(args.sweep_dirs))
    for (model, dataset, optimizer, B), n, gmean, std in out["rows"]:
        print(f"{model} {dataset} {optimizer} B={B}: {n} seeds, lr_max geometric mean {gmean:.4g}, "
              f"std of log {std:.3f}")
    print(f"pooled std of log lr_max over seeds: {out['pooled_std']:.3f} ({out['dof']} dof); "
          f"bracket quantisation {out['bracket_std']:.3f}")
    print(f"seed scatter beyond the brackets: {out['scatter']:.3f} "
          f"(95% interval {out['scatter_low']:.3f} .. {out['scatter_high']:.3f})")


if __name__ == "__main__":
    main()
