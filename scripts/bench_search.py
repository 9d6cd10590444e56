"""What locating lr_max costs: the bisect search (cold and warm-started) against an exhaustive grid.

Both run for real, in the same process, on the same small configuration (a narrow VGG on the
synthetic set, CPU by default). The grid has the search's resolution (ratio 2^(1/4)) over
[1e-4, 10], i.e. the grid a user would otherwise train to get lr_max to the same precision.
Diverged trials stop early in both, so steps, not trials, are the honest unit of cost.

    python scripts/bench_search.py [--batches 8 16 32 64] [--steps 30] [--device cpu]
"""

from __future__ import annotations

import argparse
import math
import time
from functools import partial

import numpy as np

from spectral_sweep.config.dataset import Budget
from spectral_sweep.data.load import load_dataset
from spectral_sweep.models import build_model
from spectral_sweep.search.bisect import TOLERANCE, find_max_lr, grid_search
from spectral_sweep.trial.train import TrialSettings, run_trial


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="vgg11_bn")
    ap.add_argument("--width", type=float, default=0.0625)
    ap.add_argument("--batches", type=int, nargs="+", default=[8, 16, 32, 64])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--train-size", type=int, default=2048)
    ap.add_argument("--start", type=float, default=0.05, help="cold-start guess")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    data = load_dataset("synthetic", seed=0, train_size=args.train_size, test_size=256)
    make_model = partial(build_model, args.model, data.num_classes, width=args.width)
    grid = np.exp(np.arange(math.log(1e-4), math.log(10) + 1e-9, math.log(TOLERANCE)))
    print(f"{args.model} width {args.width}, synthetic n={args.train_size}, {args.steps} steps per trial, "
          f"device {args.device}; grid: {len(grid)} lrs over [1e-4, 10] at ratio {TOLERANCE:.4f}\n")

    rows, previous = [], None
    for batch in args.batches:
        settings = TrialSettings(batch_size=batch, optimizer={"name": "sgd", "momentum": 0.9},
                                 budget=Budget(steps=args.steps), device=args.device, evaluate=False, quiet=True)
        trial = partial(run_trial, make_model, data, settings=settings)
        row = {"B": batch}
        searches = {"cold": partial(find_max_lr, trial, args.start),
                    "warm": partial(find_max_lr, trial, previous[0] * batch / previous[1], step=2.0)
                    if previous else None,
                    "grid": partial(grid_search, trial, grid)}
        for name, run in searches.items():
            if run is None:
                continue
            t0 = time.perf_counter()
            res = run()
            row[name] = (res.lr_max, len(res.trials), sum(o.steps for _, o in res.trials), time.perf_counter() - t0)
        previous = (row["cold"][0], batch)
        rows.append(row)

    print(f"{'B':>4} | {'lr_max search':>13} {'lr_max grid':>11} | {'trials cold/warm/grid':>21} | "
          f"{'steps cold/warm/grid':>22} | {'steps cold/grid':>15} {'warm/grid':>9}")
    totals = {k: [0, 0] for k in ("cold", "warm", "grid")}
    for r in rows:
        warm = r.get("warm", (None, 0, 0, 0))
        for k in totals:
            if k in r:
                totals[k][0] += r[k][1]
                totals[k][1] += r[k][2]
        print(f"{r['B']:>4} | {r['cold'][0]:>13.4g} {r['grid'][0]:>11.4g} | "
              f"{r['cold'][1]:>6} {warm[1] or '-':>6} {r['grid'][1]:>7} | "
              f"{r['cold'][2]:>6} {warm[2] or '-':>6} {r['grid'][2]:>8} | "
              f"{r['cold'][2] / r['grid'][2]:>15.3f} {(warm[2] / r['grid'][2] if warm[1] else float('nan')):>9.3f}")
    (ct, cs), (wt, ws), (gt, gs) = totals["cold"], totals["warm"], totals["grid"]
    warm_grid = sum(r["grid"][2] for r in rows if "warm" in r)
    print(f"\ntotal: search (cold) {ct} trials / {cs} steps, grid {gt} trials / {gs} steps: "
          f"steps ratio search/grid = {cs / gs:.3f} (goal <= 0.1)")
    if wt:
        cold_same = sum(r["cold"][2] for r in rows if "warm" in r)
        print(f"warm-started batch sizes: {wt} trials / {ws} steps vs cold {cold_same} steps "
              f"(warm/cold = {ws / cold_same:.2f}, warm/grid = {ws / warm_grid:.3f})")
    agree = all(abs(math.log(r["cold"][0] / r["grid"][0])) <= math.log(TOLERANCE) + 1e-9 for r in rows)
    print(f"search and grid agree on lr_max within one grid step at every B: {agree}")


if __name__ == "__main__":
    main()
