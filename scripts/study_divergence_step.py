#!/usr/bin/env python
"""More than one bit per trial? The step at which a trial diverged, as a continuous response for the
blow-up edge, measured against the one bit (diverged or not) on planted and real trials (issue 28,
item 4); writes results/outcome_bank/divergence_step.md. Pure numpy, a few minutes.

The model (a Tobit, i.e. censored regression): each seed has its own blow-up edge x_s ~ N(mu, spread^2)
in log lr, as the search's sigmoid assumes; a trial at log lr x >= x_s diverges at the step
T = S exp(-(x - x_s) / tau), S the budget (so T = S exactly at the seed's edge, and the further above
it, the sooner), and below x_s it does not diverge within S. A diverged trial then tells where its
seed's edge lies, x_s = x - tau log(S / T), a number instead of a bit; ``tau`` (how fast divergence
comes on, in log lr) is learned with the rest, on a log-uniform grid. Where this holds, a few
diverged trials place the edge and its spread; where it does not (divergence that comes on at a
fixed step far above the edge), the interval moves away from the truth, which the real banks show.

    python scripts/study_divergence_step.py             # 300 draws a row
    python scripts/study_divergence_step.py --draws 50  # a quick look
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
from scipy.special import log_ndtr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))      # runnable from a checkout without installing

from spectral_sweep.point.record import git_commit  # noqa: E402
from spectral_sweep.search import edge  # noqa: E402
from spectral_sweep.search.replay import Bank  # noqa: E402

#: How fast divergence comes on above a seed's edge (log lr per e-fold of the step): log-uniform.
TAUS = np.exp(np.linspace(math.log(0.1), math.log(3.0), 12))
BANKS = ("default_B32", "default_B8", "generous_B8", "barely_B32")


def binary_interval(x, calm, lapses: bool):
    """(lo, hi) of the blow-up edge in log lr from the bit alone: the search's own posterior
    (``lapses``: its lapse and guess grid) or the same without lapses (the Tobit's nuisance)."""
    post = edge.posterior(np.exp(x), calm)
    w = post.weights()
    if not lapses:
        w = w[:, :, :1, :1]
    pmf = w.sum(axis=(1, 2, 3))
    return _interval(post.mu, pmf / pmf.sum())


def step_interval(x, calm, steps, budget: int, taus=TAUS):
    """(lo, hi) of mu from the Tobit above: bits for the calm trials, the step for the diverged."""
    post = edge.posterior(np.exp(x), calm)            # its mu grid, widened as the search's
    mu, s, tau = post.mu[:, None, None], edge.SPREADS[None, :, None], taus[None, None, :]
    loglik = np.zeros((post.mu.size, edge.SPREADS.size, taus.size))
    for xi, ok, t in zip(x, calm, steps):
        if ok:
            loglik += log_ndtr((mu - xi) / s)
        else:
            seed_edge = xi - tau * math.log(budget / max(t, 1))
            loglik += -0.5 * ((seed_edge - mu) / s) ** 2 - np.log(s) + np.log(tau)
    log_post = loglik + edge._SPREAD_LOG_PRIOR[None, :, None]
    w = np.exp(log_post - log_post.max())
    pmf = w.sum(axis=(1, 2))
    return _interval(post.mu, pmf / pmf.sum())


def _interval(mu, pmf):
    cdf = np.cumsum(pmf) - 0.5 * pmf
    return tuple(np.interp([0.025, 0.975], cdf, mu))


def draw_bank(trials, centre: float, reach: float, n: int, rng):
    """n trials of the bank at grid lrs within ``reach`` (log) of ``centre``, uniformly, fresh seeds."""
    grid = sorted({t["lr"] for t in trials if abs(math.log(t["lr"]) - centre) <= reach})
    pools = {lr: [t for t in trials if t["lr"] == lr] for lr in grid}
    for pool in pools.values():
        rng.shuffle(pool)
    picked = []
    for _ in range(n):
        lr = grid[rng.integers(len(grid))]
        pool = pools[lr]
        picked.append(pool[sum(1 for p in picked if p["lr"] == lr) % len(pool)])
    return picked


def draw_planted(mu: float, spread: float, tau: float, budget: int, centre: float, reach: float, n: int, rng):
    """n planted trials uniformly within ``reach`` of ``centre``: the Tobit's own world."""
    out = []
    for _ in range(n):
        x = centre + rng.uniform(-reach, reach)
        seed_edge = rng.normal(mu, spread)
        t = budget * math.exp(-(x - seed_edge) / tau) if x >= seed_edge else budget
        out.append({"lr": math.exp(x), "outcome": "diverged" if x >= seed_edge else "trained",
                    "steps": max(1, int(t)) if x >= seed_edge else budget})
    return out


def measure(draw, truth: float, draws: int, budget: int, rng, taus=TAUS) -> dict:
    """Coverage of ``truth`` (log lr) and median half-width of each method's interval."""
    found = {"search's bit": [], "bit, no lapses": [], "bit + step": []}
    for _ in range(draws):
        trials = draw(rng)
        x = np.log([t["lr"] for t in trials])
        calm = np.array([t["outcome"] != "diverged" for t in trials])
        if calm.all() or not calm.any():
            continue
        steps = [t["steps"] for t in trials]
        found["search's bit"].append(binary_interval(x, calm, lapses=True))
        found["bit, no lapses"].append(binary_interval(x, calm, lapses=False))
        found["bit + step"].append(step_interval(x, calm, steps, budget, taus))
    return {name: (float(np.mean([lo <= truth <= hi for lo, hi in ivs])),
                   float(np.median([(hi - lo) / 2 for lo, hi in ivs])), len(ivs))
            for name, ivs in found.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=300)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "outcome_bank" / "divergence_step.md")
    args = parser.parse_args(argv)
    commit, started, rng, rows = git_commit(), time.time(), np.random.default_rng(0), []
    for taus, known in ((TAUS, "learned"), (np.array([0.5]), "known")):
        for n in (8, 12, 16):
            planted = partial(draw_planted, math.log(0.1), 0.3, 0.5, 200, math.log(0.1), 1.0, n)
            result = measure(planted, math.log(0.1), args.draws, 200, rng, taus)
            rows.append(_row(f"planted: spread 0.3, tau 0.5 ({known})", n, 1.0, result))
    for name in BANKS:
        data = json.loads((ROOT / "results" / "outcome_bank" / f"{name}.json").read_text())
        truth = Bank.from_dict(data, name).truth()[1]
        for reach in (0.5, 1.0):
            for n in (8, 12, 16):
                draw = partial(draw_bank, data["trials"], math.log(truth.lr), reach, n)
                result = measure(draw, math.log(truth.lr), args.draws, data["budget_steps"], rng)
                rows.append(_row(f"{name} (edge {truth.lr:.3g})", n, reach, result))
        print(*rows[-6:], sep="\n", flush=True)
    args.out.write_text(_page(rows, commit, time.time() - started, args.draws))
    print(f"wrote {args.out}")
    return 0


def _row(name, n, reach, result) -> str:
    cells = " | ".join(f"{cov:.2f} / {hw:.2f}" for cov, hw, _ in result.values())
    return f"| {name} | {n} | {reach} | {cells} | {next(iter(result.values()))[2]} |"


def _page(rows, commit, seconds, draws) -> str:
    return f"""# More than one bit per trial: the step at which a trial diverged

Produced by `python scripts/study_divergence_step.py --draws {draws}` at commit `{commit}` on
{platform.machine()} (CPU), {seconds:.0f} s; pure numpy, not edited. The model is in the script's doc.

Each row draws n trials {draws} times, uniformly over the grid lrs within "reach" (log lr) of the
blow-up edge, each with a fresh seed of the bank (or planted: the Tobit's own world, S = 200), and
fits the blow-up edge three ways: the search's posterior on the bit (diverged or not) with its lapse
and guess grid, the same without lapses, and the bit of calm trials plus the step of diverged
ones, tau learned from them (or, in the rows marked "known", given: what the step could tell if
tau were known beforehand). The truth is the bank's own blow-up edge from all of its trials (`search.replay.fit_truth`).
A cell is the coverage of the truth by the 95% interval / its median half-width in log lr; draws
whose trials all diverged or none did are left out (the last column counts those fitted).

| trials from | n | reach | search's bit | bit, no lapses | bit + step | fitted draws |
|---|---|---|---|---|---|---|
{chr(10).join(rows)}
"""


if __name__ == "__main__":
    sys.exit(main())
