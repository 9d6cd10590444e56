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
   accuracy, both edges, the warm start) and reads back every file in the sweep folder;
5. with trials in flight (search.parallel=2), runs the sweep clean once more, then --worker-runs
   times into fresh sweeps while kill -9 or kill -TERM hits a random trial worker at random
   moments: each run must end by itself (a lost worker's trial runs again in a fresh worker; a
   trial that loses two workers stops the job with one line, and a rerun finishes it), and its
   records must equal the clean run's.

It prints the kills survived, the records identical, and the files left corrupt or half-written
(both should be 0). Minutes on 2 CPU cores; a script, not a test.

    python scripts/soak.py --kills 20 --worker-runs 2 --out /tmp/soak
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


# The worker-kill phase: trials in forked workers (point/pool.py). Each of its runs is a sweep of its
# own, and a sweep times channels_last for itself: on a busy machine two sweeps may pick differently,
# and then their records differ for that reason alone. So the format is fixed here.
IN_FLIGHT = ["search.parallel=2", "train.channels_last=false"]


def start(out: Path, name: str, extra: tuple = ()) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}   # one thread: bit-identical arithmetic in every run
    return subprocess.Popen([sys.executable, "-m", "spectral_sweep.cli", *COMMAND, *extra, f"out_dir={out}",
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


def workers_of(pid: int) -> list[int]:
    """The live child processes of ``pid`` (a run's trial workers), read from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split() if entry.name.isdigit() else None
        except OSError:
            continue
        if fields and int(fields[1]) == pid and fields[0] not in "ZX":
            found.append(int(entry.name))
    return found


def kill_workers(proc: subprocess.Popen, moments: list[float], rng: random.Random) -> list[str]:
    """At each moment (seconds from now), SIGKILL or SIGTERM one of the run's workers, if it has any."""
    began, landed = time.monotonic(), []
    for moment in sorted(moments):
        time.sleep(max(0.0, moment - (time.monotonic() - began)))
        pids = workers_of(proc.pid) if proc.poll() is None else []
        if pids:
            sig = rng.choice([signal.SIGKILL, signal.SIGTERM])
            os.kill(rng.choice(pids), sig)
            landed.append(sig.name)
    return landed


def worker_soak(out: Path, runs: int, kills: int, rng: random.Random) -> dict:
    """Sweeps with trials in flight whose workers are killed; each must end by itself and match a clean run."""
    began = time.monotonic()
    finish([start(out, "clean-inflight", IN_FLIGHT)])
    length = time.monotonic() - began
    landed, stopped, problems = [], 0, []
    for i in range(runs):
        proc = start(out, f"inflight{i}", IN_FLIGHT)
        landed += kill_workers(proc, [rng.uniform(0.2, 0.9) * length for _ in range(kills)], rng)
        try:
            _, err = proc.communicate(timeout=3 * length + 60)
        except subprocess.TimeoutExpired:
            kill(proc)
            raise SystemExit(f"run {i} with killed workers hung (no end after {3 * length + 60:.0f} s)") from None
        if proc.returncode == 1 and "lost its worker twice" in err.decode():
            stopped += 1                       # the designed stop; the rerun resumes it
            finish([start(out, f"inflight{i}", IN_FLIGHT)])
        elif proc.returncode != 0:
            raise SystemExit(f"run {i} with killed workers failed (exit {proc.returncode}):\n"
                             f"{err.decode()[-3000:]}")
        problems += compare(records(out / "clean-inflight"), records(out / f"inflight{i}"))
        print(f"  in-flight run {i + 1}/{runs}: {len(landed)} worker kills so far "
              f"({time.monotonic() - began:.0f} s in)", flush=True)
    return {"landed": landed, "stopped": stopped, "problems": problems,
            "identical": runs * len(records(out / "clean-inflight")) - len({p.split(":")[0] for p in problems})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--concurrent-every", type=int, default=4, help="every n-th start runs two copies")
    parser.add_argument("--out", type=Path, default=Path("outputs/soak"))
    parser.add_argument("--seed", type=int, default=0, help="of the kill moments")
    parser.add_argument("--worker-runs", type=int, default=2,
                        help="runs with trials in flight whose workers are killed")
    parser.add_argument("--worker-kills", type=int, default=3, help="kill moments in each of those runs")
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
    workers = worker_soak(args.out, args.worker_runs, args.worker_kills, rng) if args.worker_runs else None
    if workers:
        print(f"\n{len(workers['landed'])} trial workers killed ({workers['landed'].count('SIGKILL')} SIGKILL, "
              f"{workers['landed'].count('SIGTERM')} SIGTERM) in {args.worker_runs} runs with trials in flight; "
              f"none hung; {workers['stopped']} stopped on a trial that lost two workers and resumed")
        print(f"records identical to the clean run's: {workers['identical']}/{args.worker_runs * jobs}")
        for line in workers["problems"]:
            print("  " + line)
    sys.exit(1 if problems or broken or (workers and workers["problems"]) else 0)


if __name__ == "__main__":
    main()
