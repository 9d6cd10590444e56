"""Replay the adaptive search on the banks of real trial outcomes (results/outcome_bank/*.json).

For each bank: the brute-force edge (all of its trials fitted at once) and, over N replays, how
often the search's 95% interval covers it, how many trials a point costs, and how the points end.
Cold replays start where a sweep's first point starts (optimizer.lr, step 4); warm ones within 2x
of the edge with step 2, as a later point of a sweep does.

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
from spectral_sweep.search.replay import Bank, replay  # noqa: E402

BANKS = ROOT / "results" / "outcome_bank"
COLD_START = 0.05          # SGD's default optimizer.lr (config/optimizer.py): where a first point starts


def rows(replays: int, precision: float, seed: int) -> list[dict]:
    out = []
    for path in sorted(BANKS.glob("*.json")):
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
    lines = ["| bank | B | steps | trials | bank's edge [95%] | spread | plateau | start | coverage | trials/point | "
             "bracketed | other statuses | median half-width | reused draws |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in found:
        others = ", ".join(f"{k} {v:.2f}" for k, v in r["statuses"].items() if k != "bracketed") or "-"
        lines.append(f"| {r['bank']} | {r['batch']} | {r['budget_steps']} | {r['bank_trials']} | {r['truth']:.4g} "
                     f"[{r['truth_lo']:.4g}, {r['truth_hi']:.4g}] | {r['truth_spread']:.2f} | "
                     f"{1 - r['truth_lapse']:.2f} | {r['mode']} | "
                     f"{r['coverage']:.3f} | {r['trials_per_point']:.1f} | {r['bracketed']:.2f} | {others} | "
                     f"{r['half_width']:.2f} | {r['reused_share']:.2f} |")
    return "\n".join(lines)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replays", type=int, default=200)
    parser.add_argument("--precision", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", action="store_true", help="write results/outcome_bank/replay.md")
    args = parser.parse_args()
    started, commit = time.time(), git_commit()   # the code that runs, read before it runs
    text = table(rows(args.replays, args.precision, args.seed))
    print(text)
    if args.write:
        head = (f"Produced by `python scripts/replay_bank.py --replays {args.replays} --precision {args.precision} "
                f"--write` at commit `{commit}` in {time.time() - started:.0f} s (pure numpy, CPU).\n\n")
        (BANKS / "replay.md").write_text(f"{head}{text}\n\nThe banks:\n\n{banks_table()}\n")


if __name__ == "__main__":
    main()
