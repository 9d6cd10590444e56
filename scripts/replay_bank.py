"""Replay the adaptive search on the banks of real trial outcomes (results/outcome_bank/*.json).

For each bank: the brute-force edge (all of its trials fitted at once) and, over N replays, how
often the search's 95% interval covers it, how many trials a point costs, and how the points end.
Cold replays start where a sweep's first point starts (optimizer.lr, step 4); warm ones within 2x
of the edge with step 2, as a later point of a sweep does. Then lr_opt, replayed on the banks that
reach the peak of accuracy (OPTIMUM_BANKS: a point's edge bank merged with one on a grid below it).

    python scripts/replay_bank.py [--replays 200] [--precision 0.3] [--write]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from spectral_sweep.point.record import git_commit  # noqa: E402
from spectral_sweep.search.replay import Bank, replay, replay_optimum  # noqa: E402

BANKS = ROOT / "results" / "outcome_bank"
COLD_START = 0.05          # SGD's default optimizer.lr (config/optimizer.py): where a first point starts


#: lr_opt's banks: each merges a point's edge bank with a bank on a grid below it, that reaches the peak
OPTIMUM_BANKS = {"default_B32": ("default_B32", "optimum_B32")}


def edge_banks() -> list[Path]:
    """The banks with an edge in them (an optimum_* bank lies below its point's edge)."""
    return [p for p in sorted(BANKS.glob("*.json")) if not p.stem.startswith("optimum_")]


def rows(replays: int, precision: float, seed: int) -> list[dict]:
    out = []
    for path in edge_banks():
        data = json.loads(path.read_text())
        bank = Bank.from_dict(data, path.stem)
        truth, _ = bank.truth()
        for mode in ("cold", "warm"):
            if mode == "cold":
                found = replay(bank, replays, start=COLD_START, seed=seed, precision=precision, step=4.0)
            else:
                start = truth.lr * math.exp(np.random.default_rng(seed).uniform(-math.log(2), math.log(2)))
                found = replay(bank, replays, start=start, seed=seed, precision=precision, step=2.0)
            out.append({**found, "mode": mode, "budget_steps": data["budget_steps"], "batch": data["batch"],
                        "bank_trials": len(data["trials"])})
    return out


def table(found: list[dict]) -> str:
    lines = ["| bank | B | steps | trials | bank's edge [95%] | spread | plateau | bank's trials near the threshold "
             "| start | coverage | covered, or said inconclusive | trials/point | bracketed | other statuses "
             "| median half-width | reused draws |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in found:
        others = ", ".join(f"{k} {v:.2f}" for k, v in r["statuses"].items() if k != "bracketed") or "-"
        lines.append(f"| {r['bank']} | {r['batch']} | {r['budget_steps']} | {r['bank_trials']} | {r['truth']:.4g} "
                     f"[{r['truth_lo']:.4g}, {r['truth_hi']:.4g}] | {r['truth_spread']:.2f} | "
                     f"{1 - r['truth_lapse']:.2f} | {_share(r['bank_near_threshold'])} | {r['mode']} | "
                     f"{r['coverage']:.3f} | {r['covered_or_inconclusive']:.3f} | {r['trials_per_point']:.1f} | "
                     f"{r['bracketed']:.2f} | {others} | "
                     f"{r['half_width']:.2f} | {r['reused_share']:.2f} |")
    return "\n".join(lines)


def _share(share: float | None) -> str:
    return "-" if share is None else f"{share:.2f}"


def optimum_rows(replays: int, precision: float, seed: int) -> list[dict]:
    """lr_opt replayed (search/replay.py: replay_optimum) on each merged bank that has its parts."""
    out = []
    for parts in OPTIMUM_BANKS.values():
        paths = [BANKS / f"{p}.json" for p in parts]
        if not all(p.exists() for p in paths):
            continue
        data = [json.loads(p.read_text()) for p in paths]
        bank = Bank.merged([Bank.from_dict(d, p.stem) for d, p in zip(data, paths)], "+".join(parts))
        truth, _ = bank.truth()
        for mode in ("cold", "warm"):
            start, step = COLD_START, 4.0
            if mode == "warm":
                start, step = truth.lr * math.exp(np.random.default_rng(seed).uniform(-math.log(2), math.log(2))), 2.0
            found = replay_optimum(bank, replays, start=start, seed=seed, precision=precision, step=step)
            out.append({**found, "mode": mode, "batch": data[0]["batch"], "budget_steps": data[0]["budget_steps"],
                        "bank_trials": sum(len(d["trials"]) for d in data)})
    return out


def optimum_table(found: list[dict]) -> str:
    lines = ["| bank | B | steps | trials | bank's lr_opt [95%] | its mean accuracy | start | bracketed | "
             "covers the bank's lr_opt | a bound (holds) | flat or too few | lr_opt's trials/point | "
             "median half-width | accuracy lost at lr_opt (median) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in found:
        st = r["statuses"]
        bound = st.get("upper_bound", 0) + st.get("lower_bound", 0)
        held = f" ({r['bounds_hold']:.2f})" if bound else ""
        lines.append(f"| {r['bank']} | {r['batch']} | {r['budget_steps']} | {r['bank_trials']} | {r['truth']:.4g} "
                     f"[{r['truth_lo']:.4g}, {r['truth_hi']:.4g}] | {r['best_mean']:.3f} | {r['mode']} | "
                     f"{st.get('bracketed', 0):.2f} | {r['coverage']:.3f} | {bound:.2f}{held} | "
                     f"{st.get('flat', 0) + st.get('too_few', 0):.2f} | {r['opt_trials']:.1f} | "
                     f"{r['half_width']:.2f} | {r['accuracy_lost']:.3f} |")
    return "\n".join(lines)


OPTIMUM_NOTE = """lr_opt replayed: each replay searches the point as `make demo` does (both edges at the precision
above, the reference trial at lr_max / 4, then lr_opt's own trials: `search.opt_trials=8`,
`search.opt_precision=0.35`) against the merged bank, whose test accuracies answer too. The bank's own
lr_opt is where the mean accuracy of its trained trials peaks (below the bank's edge; a Gaussian
kernel 0.4 wide in log lr, on accuracy itself), with a 95% interval from resampling its trials: none
of the search's model (its window, its symmetric parabola, the angle scale) is shared. "a bound
(holds)": the share of replays that end with lr_opt as a bound, and of those, the share whose bound
holds the bank's lr_opt on its side. "accuracy lost": the bank's smoothed mean accuracy at its peak
minus at the replay's lr_opt (bracketed replays), what training at the tool's answer costs."""


def banks_table() -> str:
    """What each bank holds and what made it, read from the banks themselves."""
    lines = ["| bank | made by | commit | device | trials (trained/stalled/diverged) | wall |",
             "|---|---|---|---|---|---|"]
    for path in sorted(BANKS.glob("*.json")):
        data = json.loads(path.read_text())
        outcomes = [t["outcome"] for t in data["trials"]]
        counts = "/".join(str(outcomes.count(o)) for o in ("trained", "stalled", "diverged"))
        lines.append(f"| {path.stem} | `{data['command']}` | `{data['commit']}` | {data['device']} | "
                     f"{len(data['trials'])} ({counts}) | {data['seconds'] / 60:.1f} min |")
    return "\n".join(lines)


EDGE_NOTE = """Each bank's point searched `--replays` times (cold: from lr 0.05 by 4x steps; warm: from within 2x
of the bank's edge by 2x steps). "coverage": of the replays that end bracketed, the share whose 95%
interval holds the bank's own edge. "covered, or said inconclusive": of all replays, the share that
either hold it or say `inconclusive` (the rest claim a wrong interval or end `nothing_trains`).
"bank's trials near the threshold": the share of the bank's own finite trials that end within two
binomial errors of the accuracy deciding trained from stalled; above one half, a point of it should
say inconclusive (`outcomes.decided_by_noise`, what a job applies)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replays", type=int, default=200)
    parser.add_argument("--precision", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", action="store_true", help="write results/outcome_bank/replay.md")
    args = parser.parse_args()
    started, commit = time.time(), git_commit()   # the code that runs, read before it runs
    text = f"{EDGE_NOTE}\n\n{table(rows(args.replays, args.precision, args.seed))}"
    opt = optimum_rows(args.replays, args.precision, args.seed)
    if opt:
        text += f"\n\n{OPTIMUM_NOTE}\n\n{optimum_table(opt)}"
    print(text)
    if args.write:
        head = (f"Produced by `python scripts/replay_bank.py --replays {args.replays} --precision {args.precision} "
                f"--write` at commit `{commit}` in {time.time() - started:.0f} s (pure numpy, CPU).\n\n")
        (BANKS / "replay.md").write_text(f"{head}{text}\n\nThe banks:\n\n{banks_table()}\n")


if __name__ == "__main__":
    main()
