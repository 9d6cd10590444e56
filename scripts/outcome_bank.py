"""A bank of real trial outcomes: one sweep point's trials on a dense lr grid, many fresh seeds each.

The search's intervals are calibrated on planted edges; real trials near a budget's limit have
plateaus and spreads a planted edge does not. This script trains the real trials (the point's own
model, data, budget and judge, through the same TrialRunner a sweep uses) at every lr of a log
grid, each from its own seed, and writes them as one JSON file that a replay (scripts/replay_bank.py)
draws from. Trials are cached under --cache, so a stopped run resumes.

    python scripts/outcome_bank.py --out results/outcome_bank/default_B8.json \
        --lrs 0.004 1.0 12 --seeds 10 -- experiment=quickstart batch=8

Everything after ``--`` is a spectral-sweep override (one batch size, no comma lists).
"""

from __future__ import annotations

import argparse
import datetime
import math
import sys
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from spectral_sweep.config import compose  # noqa: E402
from spectral_sweep.data.load import load_dataset  # noqa: E402
from spectral_sweep.files import config_key, write_json_atomic  # noqa: E402
from spectral_sweep.models import build_target  # noqa: E402
from spectral_sweep.point.record import device_name, git_commit  # noqa: E402
from spectral_sweep.point.run import _hooks, trial_identity, trial_settings  # noqa: E402
from spectral_sweep.point.store import TrialCache  # noqa: E402
from spectral_sweep.point.trials import TrialRunner  # noqa: E402
from spectral_sweep.seeds import Stream, child_seed  # noqa: E402
from spectral_sweep.trial.train import resolve_device  # noqa: E402

SEED_OFFSET = 1_000_000   # bank trials draw seeds far from any search's own trial numbers
KEPT = ("lr", "seed", "outcome", "reason", "test_acc", "test_loss", "initial_loss", "final_train_loss", "steps")


def grid(low: float, high: float, count: int) -> list[float]:
    """``count`` lrs evenly spaced in log from ``low`` to ``high``."""
    step = math.log(high / low) / (count - 1)
    return [low * math.exp(i * step) for i in range(count)]


def runner_for(overrides: list[str], cache: Path, in_flight: int):
    """The point's TrialRunner, built as point/run.py builds it (fast path pinned: no timing noise)."""
    config = compose(*overrides, "train.channels_last=false", "train.precision=fp32", "train.compile=false")
    device = resolve_device(config.device, 0)
    data = load_dataset(config.dataset._target_, root=config.dataset.root, subset=config.dataset.subset,
                        test_subset=config.dataset.test_subset, seed=config.seed, stream=config.dataset.stream,
                        **config.dataset.options())
    make_model = partial(build_target, config.model._target_, data.num_classes,
                         input_shape=(data.channels, data.image_size), **config.model.options())
    settings = trial_settings(config, device)
    runner = TrialRunner(make_model, data, settings, _hooks(config, data, device), trial_identity(config),
                         TrialCache(cache), in_flight=in_flight)
    return config, data, runner


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--lrs", nargs=3, required=True, metavar=("LOW", "HIGH", "COUNT"))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=ROOT / "outputs" / "outcome_bank")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    lrs = grid(float(args.lrs[0]), float(args.lrs[1]), int(args.lrs[2]))
    started = time.time()
    config, data, runner = runner_for(args.overrides, args.cache / args.out.stem, args.parallel)
    jobs = []
    for i, lr in enumerate(lrs):
        for j in range(args.seeds):
            k = SEED_OFFSET + i * args.seeds + j
            jobs.append((lr, config_key(runner.identity, round(lr, 12), "bank", k),
                         child_seed(config.seed, Stream.TRIAL, k)))
    results = _run(runner, jobs, args.parallel)
    runner.close()
    trials = [{k: getattr(r, k) for k in KEPT} | {"grid": i // args.seeds} for i, r in enumerate(results)]
    bank = {"command": "python scripts/outcome_bank.py " + " ".join(sys.argv[1:]),
            "overrides": args.overrides, "batch": config.batch, "budget_steps": results[0].budget_steps,
            "train_size": len(data.train), "test_size": len(data.test), "num_classes": data.num_classes,
            "lrs": lrs, "seeds": args.seeds, "commit": git_commit(), "device": device_name(resolve_device("cpu", 0)),
            "threads_per_trial": "1 (OMP_NUM_THREADS=1 recommended)", "seconds": round(time.time() - started, 1),
            "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "trials": trials}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, bank)
    counts = {o: sum(t["outcome"] == o for t in trials) for o in ("trained", "stalled", "diverged")}
    print(f"{args.out}: {len(trials)} trials in {bank['seconds']:.0f} s, {counts}")


def _run(runner: TrialRunner, jobs: list[tuple], parallel: int) -> list:
    """Every job, ``parallel`` at a time, in rounds (the pool the search itself uses)."""
    from tqdm.auto import tqdm

    from spectral_sweep.point.pool import Pool

    out = []
    pool = Pool(runner.work.away(), parallel) if parallel > 1 else None
    for start in tqdm(range(0, len(jobs), 8 * parallel), desc="bank", unit="round"):
        chunk = jobs[start:start + 8 * parallel]
        cached = [runner.cache.get(key) for _, key, _ in chunk]
        todo = [job for job, hit in zip(chunk, cached) if hit is None]
        done = iter(pool.map(todo) if pool and todo else [runner.work(*job) for job in todo])
        out += [hit if hit is not None else next(done) for hit in cached]
    if pool:
        pool.close()
    return out


if __name__ == "__main__":
    main()
