#!/usr/bin/env python
"""The same sweep with search.executor=local and =ray at the same K: wall time of each, and whether
their records are the same trial for trial (issue 31).

    python scripts/bench_executors.py [--repeats 1] [--out results/bench] [-- SWEEP OVERRIDES]

By default the quickstart (``make demo``) at K = 2, the memory format pinned (``auto`` times it,
and a choice made otherwise would change the records, not the executor). Runs alternate (local,
ray, local, ray, ...) so that the load of a shared machine falls on both alike; each run starts
in a fresh folder, Ray's local instance included (its start is part of the wall time). Writes
``<out>/executors-<device>.md`` with the command, commit, device and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ["experiment=quickstart", "search.parallel=2", "train.channels_last=false"]
TIMING = ("seconds", "images_per_s")


def run(args: list[str], executor: str, out: Path) -> tuple[float, list[dict]]:
    """Wall seconds of one sweep, and its records."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "spectral_sweep.cli", *args, f"search.executor={executor}",
                           "quiet=true", f"out_dir={out}", "name=s"], cwd=out, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"the {executor} sweep failed:\n{done.stderr[-2000:]}")
    return wall, [json.loads(p.read_text()) for p in sorted((out / "s").rglob("record.json"))]


def trials(records: list[dict]) -> list:
    """Every trial of every point, all but its timing, in the sweep's order."""
    return [(r["batch_size"], [{k: v for k, v in t.items() if k not in TIMING} for t in r["trials"]])
            for r in sorted(records, key=lambda r: r["batch_size"])]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "bench")
    ap.add_argument("overrides", nargs="*", help="the sweep (default: the quickstart at K = 2)")
    args = ap.parse_args(argv)
    sweep = args.overrides or DEFAULT
    walls: dict[str, list[float]] = {"local": [], "ray": []}
    found: dict[str, list] = {}
    loads = [os.getloadavg()[0]]
    for _ in range(args.repeats):
        for executor in walls:
            with tempfile.TemporaryDirectory(prefix="bench-exec-") as out:
                wall, records = run(sweep, executor, Path(out))
            walls[executor].append(wall)
            found.setdefault(executor, trials(records))
            loads.append(os.getloadavg()[0])
            print(f"{executor}: {wall:.0f} s, {sum(len(t) for _, t in found[executor])} trials", flush=True)
    same = found["local"] == found["ray"]
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU")
    command = "python scripts/bench_executors.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = ["# search.executor=local against =ray, the same sweep at the same K", "",
             "Written by `scripts/bench_executors.py`.", "",
             f"- command: `{command.strip()}` (sweep: `spectral-sweep {' '.join(sweep)}`)", f"- commit: {commit}",
             f"- device: {cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads "
             f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})",
             f"- load average (1 min) before and after each run: {', '.join(f'{x:.1f}' for x in loads)}", "",
             "| executor | wall time, each run (s) | trials |", "|---|---|---|"]
    lines += [f"| {e} | {', '.join(f'{w:.0f}' for w in walls[e])} | {sum(len(t) for _, t in found[e])} |"
              for e in walls]
    lines += ["", f"Records the same trial for trial (every field but `seconds` and `images_per_s`): {same}.", ""]
    path = args.out / f"executors-{'cuda' if torch.cuda.is_available() else 'cpu'}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
