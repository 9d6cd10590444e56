"""Reruns of one point, side by side: does each interval overlap every other, or say why not?

Reads the job records under each sweep folder given, writes a markdown table (one row a run: its
status, lr_max's 95% interval, why a point is inconclusive) with, per setting (batch size and
budget), how many pairs of bracketed intervals overlap, and a JSON of the runs' trials (lr, seed,
outcome, test accuracy) so the table can be checked without the sweep folders. Issue 34's reruns
at a budget that barely trains: results/outcome_bank/reruns/reruns.md.

    python scripts/rerun_table.py --out results/outcome_bank/reruns/reruns -- /work/exp/ten2/*/
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

from spectral_sweep.point.store import read_job_record


def runs(folders: list[str]) -> list[dict]:
    found = []
    for folder in folders:
        for path in sorted(Path(folder).glob("*/record.json")):
            r = read_job_record(path)
            train = (r.config or {}).get("train", {})
            found.append({"run": Path(folder).name, "batch": r.batch_size,
                          "budget": train.get("steps"), "test_size": r.test_size, "seed": r.seed,
                          "channels_last": train.get("channels_last"),
                          "status": r.lr_max_status, "lr_max": r.lr_max, "bracket": list(r.lr_max_bracket or []),
                          "problem": r.lr_max_problem, "trials": len(r.trials), "commit": r.commit,
                          "device": r.device, "command": r.command,
                          "outcomes": [{"lr": t.lr, "seed": t.seed, "outcome": t.outcome, "test_acc": t.test_acc}
                                       for t in r.trials]})
    return found


def _setting(r: dict) -> tuple:
    return r["batch"], r["budget"], r["test_size"]


def overlaps(a: dict, b: dict) -> bool:
    return a["bracket"][0] <= b["bracket"][1] and b["bracket"][0] <= a["bracket"][1]


def table(found: list[dict]) -> str:
    lines = ["| run | B | train.steps | test images | seed | channels_last | status | lr_max [95%] | trials "
             "| why inconclusive |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in found:
        lo, hi = (r["bracket"] + [None, None])[:2]
        interval = f"{r['lr_max']:.4g} [{lo:.4g}, {hi:.4g}]" if r["lr_max"] and lo and hi else "-"
        why = (r["problem"] or "-").split(", so ")[0]
        lines.append(f"| {r['run']} | {r['batch']} | {r['budget']} | {r['test_size']} | {r['seed']} | "
                     f"{r['channels_last']} | "
                     f"{r['status']} | {interval} | {r['trials']} | {why} |")
    lines += ["", "| B | train.steps | test images | runs | inconclusive | bracketed | pairs of bracketed intervals "
              "that overlap |", "|---|---|---|---|---|---|---|"]
    for (b, steps, test_size), group in itertools.groupby(sorted(found, key=_setting), key=_setting):
        group = list(group)
        inconclusive = sum(r["status"] == "inconclusive" for r in group)
        judged = [r for r in group if r["status"] == "bracketed" and len(r["bracket"]) == 2]
        pairs = list(itertools.combinations(judged, 2))
        lines.append(f"| {b} | {steps} | {test_size} | {len(group)} | {inconclusive} | "
                     f"{len(judged)} | {sum(overlaps(x, y) for x, y in pairs)} of {len(pairs)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="write OUT.md and OUT.json")
    parser.add_argument("folders", nargs="+", help="sweep folders, one a rerun")
    args = parser.parse_args()
    found = runs(args.folders)
    if not found:
        sys.exit(f"rerun_table: no record.json under {' '.join(args.folders)}")
    commits = sorted({r["commit"] for r in found})
    devices = sorted({r["device"] for r in found})
    head = (f"# Reruns of one point\n\nMade by `{' '.join(sys.argv)}` from the runs' records (commands: "
            f"each run's `command` in the JSON beside this file, e.g. `{found[0]['command']}`); commit(s) "
            f"{', '.join(commits)}; device(s) {', '.join(devices)}. Not edited.\n\n")
    Path(f"{args.out}.md").write_text(head + table(found) + "\n")
    Path(f"{args.out}.json").write_text(json.dumps(found, indent=1) + "\n")
    print(table(found))


if __name__ == "__main__":
    main()
