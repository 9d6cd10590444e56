"""Soak test: kill a small sweep at random moments, mix in concurrent reruns, and check that the
final records equal a clean run's.

The invariant (issue "same command, same records"): for one command with the basic launcher, the
final records equal an uninterrupted run's, whatever happened in between. This script

1. runs the sweep once, uninterrupted, into <out>/clean, and times it;
2. starts the same command into <out>/soak, and kill -9s it (its whole process group) at a random
   moment, --kills times; every --concurrent-every-th start launches two copies at once and kills
   one or both;
3. lets a final run, and a concurrent pair, finish;
4. compares every job record with the clean run's (every trial's lr, outcome, steps, losses and
   accuracy, both edges, the warm start) and reads back every file in the sweep folder.

It prints the kills survived, the records identical, and the files left corrupt or half-written
(both should be 0). Minutes on 2 CPU cores; a script, not a test.

    python scripts/soak.py --kills 20 --out /tmp/soak
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

# A tiny sweep whose trials span two epochs (32 steps each at B=8), so kills land mid-trial,
# between trials, on epoch checkpoints, between jobs and during the report.
COMMAND = ["model=vgg11_bn", "model.width=0.125", "dataset.train_size=256", "dataset.test_size=128",
           "train.epochs=2", "search.tolerance=1.5", "optimizer.lr=0.05", "batch=8,16,32", "quiet=true"]
TRIAL_FIELDS = ("lr", "outcome", "reason", "steps", "budget_steps", "initial_loss", "final_train_loss",
                "test_acc", "test_loss", "loss_curve")
JOB_FIELDS = ("lr_max", "lr_max_bracket", "lr_max_status", "lr_blowup", "lr_blowup_bracket", "search_start",
              "acc_at_lr_max", "lr_best", "non_monotone")


def start(out: Path, name: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}   # one thread: bit-identical arithmetic in every run
    return subprocess.Popen([sys.executable, "-m", "spectral_sweep.cli", *COMMAND, f"out_dir={out}",
                             f"name={name}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=env, start_new_session=True)


def kill(proc: subprocess.Popen) -> bool:
    """kill -9 the process and its children; True if it was still running."""
    if proc.poll() is not None:
        return False
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return True


def finish(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"a run failed (exit {proc.returncode}):\n{err.decode()[-3000:]}")


def records(sweep: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(sweep.glob("*/record.json"))}


def same(a, b) -> bool:
    """Equal as JSON (so NaN equals NaN): bit for bit."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def compare(clean: dict[str, dict], soak: dict[str, dict]) -> list[str]:
    """Every difference between the two sweeps' records, one line each."""
    problems = [f"job {k} missing" for k in clean if k not in soak]
    problems += [f"job {k} extra" for k in soak if k not in clean]
    for k in clean.keys() & soak.keys():
        a, b = clean[k], soak[k]
        problems += [f"{k}: {f} {a[f]} != {b[f]}" for f in JOB_FIELDS if not same(a[f], b[f])]
        ta = [{f: t.get(f) for f in TRIAL_FIELDS} for t in a["trials"]]
        tb = [{f: t.get(f) for f in TRIAL_FIELDS} for t in b["trials"]]
        if not same(ta, tb):
            problems.append(f"{k}: trials differ ({len(ta)} against {len(tb)})")
    return problems


def unreadable(sweep: Path) -> list[str]:
    """Files in the sweep that do not read back (records, trials, configs, checkpoints)."""
    import torch

    bad = []
    for path in sweep.rglob("*.json"):
        try:
            json.loads(path.read_text())
        except (OSError, ValueError):
            bad.append(str(path))
    for path in sweep.rglob("*.pt"):
        try:
            torch.load(path, weights_only=True)
        except Exception:
            bad.append(str(path))
    return bad


def soak(out: Path, kills: int, concurrent_every: int, window: float, rng: random.Random) -> dict:
    """The kills and the concurrent reruns; returns what happened."""
    survived = concurrent = 0
    began = time.monotonic()
    for i in range(kills):
        pair = concurrent_every and (i + 1) % concurrent_every == 0
        procs = [start(out, "soak") for _ in range(2 if pair else 1)]
        launched = time.monotonic()
        concurrent += pair
        time.sleep(rng.uniform(0.5, window))
        victims = procs if not pair or rng.random() < 0.5 else [rng.choice(procs)]
        landed = [kill(p) for p in victims]
        survived += sum(landed)
        if not all(landed):   # the sweep is done and a rerun is quick: aim inside its reuse and report
            window = max(1.0, 0.9 * (time.monotonic() - launched))
        finish([p for p in procs if p not in victims])
        print(f"  start {i + 1}/{kills}: {'two copies, ' if pair else ''}killed {len(victims)} "
              f"({time.monotonic() - began:.0f} s in)", flush=True)
    finish([start(out, "soak"), start(out, "soak")])   # the last run, twice at once, to the end
    return {"kills": survived, "concurrent": concurrent + 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--concurrent-every", type=int, default=4, help="every n-th start runs two copies")
    parser.add_argument("--out", type=Path, default=Path("outputs/soak"))
    parser.add_argument("--seed", type=int, default=0, help="of the kill moments")
    args = parser.parse_args()
    rng = random.Random(args.seed)

    began = time.monotonic()
    finish([start(args.out, "clean")])
    clean_seconds = time.monotonic() - began
    print(f"clean run: {clean_seconds:.0f} s, {len(records(args.out / 'clean'))} jobs", flush=True)
    # kills spread over the first three quarters of a clean run's length: most land inside work
    began = time.monotonic()
    what = soak(args.out, args.kills, args.concurrent_every, 0.75 * clean_seconds, rng)
    problems = compare(records(args.out / "clean"), records(args.out / "soak"))
    broken = unreadable(args.out / "soak")
    leftovers = list((args.out / "soak").rglob(".*.tmp"))   # a kill -9 mid-write leaves its temp file
    jobs = len(records(args.out / "clean"))
    print(f"\n{args.kills} starts killed at random moments ({what['kills']} kills landed on a running "
          f"process), {what['concurrent']} concurrent pairs, {time.monotonic() - began:.0f} s")
    print(f"records identical to the clean run: {jobs - len({p.split(':')[0] for p in problems})}/{jobs}")
    print(f"files left corrupt or half-written: {len(broken)} (temporary files left by a kill -9 mid-write, "
          f"never read: {len(leftovers)})")
    for line in problems + broken:
        print("  " + line)
    sys.exit(1 if problems or broken else 0)


if __name__ == "__main__":
    main()
