#!/usr/bin/env python
"""Where should a point's trials go, and what sets how many it needs? Issue 28's measurements, on
planted edges (pure numpy): today's placement at predicted levels (``edge.next_points``) against
placement by expected information (``edge.informative_points``, Psi / QUEST+), one point at a time
and in whole simulated sweeps; then the posterior's half-width under an ideal placement, by what
the model must still learn. Writes results/calibration/placement.md.

    python scripts/study_placement.py                 # 100 points a row, 200 sweeps a design
    python scripts/study_placement.py --points 20 --sweeps 30 --out /tmp/placement.md
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))      # runnable from a checkout without installing

from spectral_sweep.point.record import git_commit  # noqa: E402
from spectral_sweep.search import edge  # noqa: E402
from spectral_sweep.search.adaptive import find_edges  # noqa: E402
from spectral_sweep.search.calibration import calibrate, planted_trial  # noqa: E402

MU = math.log(0.1)


def two_edges(mu: float, spread: float, gap: float, rng: np.random.Generator):
    """Fresh-seed trials with both edges: a seed trains below N(mu, spread^2), diverges above
    N(mu + gap, spread^2), and stalls between (a stalled window ``gap`` wide in log lr)."""
    def run(lrs):
        x = np.log(lrs)
        trains = x < rng.normal(mu, spread, len(lrs))
        blows = x > rng.normal(mu + gap, spread, len(lrs))
        return ["trained" if t and not b else "diverged" if b else "stalled" for t, b in zip(trains, blows)]
    return run


def one_point(spread: float, gap: float, k: int, placement: str, n: int, seed: int = 0) -> dict:
    """``n`` points, each started within 2x of its edge (a warm start), searched at precision 0.2."""
    rng = np.random.default_rng(seed)
    made, covered, errors = [], [], []
    for _ in range(n):
        start = math.exp(MU + rng.uniform(-math.log(2), math.log(2)))
        run = planted_trial(MU, spread, 0.0, rng) if gap == 0 else two_edges(MU, spread, gap, rng)
        res = find_edges(run, start, precision=0.2, max_trials=30, parallel=k, step=2.0, reference=None,
                         placement=placement)
        made.append(len(res.trials))
        if res.estimate is not None:
            covered.append(res.estimate.lo <= math.exp(MU) <= res.estimate.hi)
            errors.append(math.log(res.estimate.lr) - MU)
    trials = float(np.mean(made))
    rmse = math.sqrt(float(np.mean(np.square(errors))))
    return {"trials": trials, "capped": float(np.mean(np.array(made) >= 30)), "coverage": float(np.mean(covered)),
            "rmse": rmse, "ratio": rmse / (1.25 * spread / math.sqrt(trials))}


def known(kind: str) -> np.ndarray | None:
    """A nuisance prior (log, added to the model's own) that fixes what ``kind`` says is known."""
    if kind == "nothing (the model)":
        return None
    prior = np.full(edge.NUISANCE, -np.inf)
    if kind == "the spread":
        prior[int(np.argmin(abs(edge.SPREADS - 0.25)))] = 0.0
    elif kind == "no lapse or guess":
        prior[:, 0, 0] = 0.0
    else:   # both
        prior[int(np.argmin(abs(edge.SPREADS - 0.25))), 0, 0] = 0.0
    return prior


def ideal_half_widths(kind: str, reps: int, at=(10, 15, 20, 30), seed: int = 1) -> list[float]:
    """Median half-width of mu's 95% interval after n trials placed alternately at mu +- 0.8 spread
    (the known-truth two-level design), spread 0.25, no lapses: what the posterior alone allows."""
    rng, spread, widths = np.random.default_rng(seed), 0.25, []
    for _ in range(reps):
        run, lrs, ok, row = planted_trial(MU, spread, 0.0, rng), [], [], []
        for n in range(1, max(at) + 1):
            lrs.append(math.exp(MU + 0.8 * spread * (1 if n % 2 else -1)))
            ok.append(run(lrs[-1:])[0] == "trained")
            if n in at:
                row.append(edge.posterior(lrs, ok, known(kind)).fit().half_width if edge.has_edge(ok) else math.nan)
        widths.append(row)
    return list(np.nanmedian(np.array(widths), axis=0))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100, help="planted points a row of the first table")
    parser.add_argument("--sweeps", type=int, default=200, help="simulated sweeps a row of the second table")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "calibration" / "placement.md")
    args = parser.parse_args(argv)
    started, commit = time.time(), git_commit()   # the code that runs, not what is checked out at the end
    points = []
    for spread in (0.15, 0.25, 0.4):
        for gap in (0.0, 0.3, 1.0):
            for k in (1, 4):
                for placement in ("levels", "info"):
                    r = one_point(spread, gap, k, placement, args.points)
                    points.append(f"| {spread} | {gap} | {k} | {placement} | {r['trials']:.1f} | {r['capped']:.2f} | "
                                  f"{r['coverage']:.3f} | {r['rmse']:.3f} | {r['ratio']:.2f} |")
                    print(points[-1], flush=True)
    sweeps = []
    for placement in ("levels", "info"):
        r = calibrate(args.sweeps, placement=placement)
        sweeps.append(f"| {placement} | {args.sweeps} | {r['trials_per_point']:.1f} | {r['coverage']:.3f} | "
                      f"{r['point_coverage']:.3f} | {r['decisive']:.3f} | {r['half_width']:.3f} |")
        print(sweeps[-1], flush=True)
    ideal = []
    for kind in ("nothing (the model)", "the spread", "no lapse or guess", "the spread, no lapse or guess"):
        ideal.append(f"| {kind} | " + " | ".join(f"{w:.2f}" for w in ideal_half_widths(kind, max(20, args.points // 3)))
                     + " |")
        print(ideal[-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(_page(points, sweeps, ideal, args, commit, time.time() - started))
    print(f"wrote {args.out}")
    return 0


SWEEP_HEADER = ("| placement | sweeps | trials per point | exponent coverage | point coverage | decisive "
                "| median half-width of the exponent |\n|---|---|---|---|---|---|---|")


def _page(points, sweeps, ideal, args, commit, seconds) -> str:
    nl = chr(10)
    return f"""# Where a point's trials go, and what sets how many it needs (issue 28)

Produced by `python scripts/study_placement.py --points {args.points} --sweeps {args.sweeps}` at commit
`{commit}` on a CPU, {seconds:.0f} s; not edited. Planted edges only (pure numpy).

## One point: today's placement against placement by expected information

Each point's trials come from fresh seeds: a seed trains below an edge drawn from N(mu, spread^2) in
log lr and, where the stalled window is `gap` wide, diverges above an edge drawn from
N(mu + gap, spread^2) (gap 0: a failure is a divergence, both edges coincide). `find_edges` starts
within 2x of the edge (a warm start), precision 0.2, at most 30 trials, K trials a round, no
reference trial. `levels` is today's placement (predicted shares 0.3/0.7/0.5/0.2/0.8 on the
posterior's sigmoid); `info` chooses each round's K lrs greedily for the expected fall of mu's
posterior variance (`edge.informative_points`). "bound ratio": the RMSE of log lr_max over
1.25 x spread / sqrt(trials), the Fisher bound of a probit threshold whose spread is known.

| spread | gap | K | placement | trials per point | share at the cap | coverage | RMSE of log lr_max | bound ratio |
|---|---|---|---|---|---|---|---|---|
{nl.join(points)}

## Whole sweeps (the mission's design: SGD, B = 128, 256, 512, spread 0.25, 3% flips)

As results/calibration/README.md, with each placement:

{SWEEP_HEADER}
{nl.join(sweeps)}

## What the count is made of: the posterior's half-width under an ideal placement

Trials placed alternately at mu +- 0.8 spread, knowing the truth (spread 0.25, no lapses): the
median half-width of mu's 95% interval after n trials, when the model must still learn what the
row says it does not know. A half-width of 0.2 (search.precision) at 95% needs an error of 0.10; the
known-spread probit bound reaches it at about 12 trials of this design.

| what the model knows | n = 10 | 15 | 20 | 30 |
|---|---|---|---|---|
{nl.join(ideal)}
"""


if __name__ == "__main__":
    sys.exit(main())
