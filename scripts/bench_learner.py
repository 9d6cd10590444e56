"""Overhead of the Lanczos learner and of sharpness tracking, as a fraction of training time.

Same model, data, batch and number of steps, in the same run: a plain SGD trial, a lanczos_sgd
trial (the learner at its defaults from conf/optimizer/lanczos_sgd.yaml: every 1200 steps, 20
Lanczos steps on a fixed batch of 128), and an SGD trial with sharpness tracking (every
``--sharpness-every`` steps, 10 Lanczos steps, tol 1e-2, fixed batch min(B, 128)). Per hook:

* the time spent inside the hook over the time spent training in the same trial (machine load
  drifts cancel); with ``--steps`` a multiple of the hook's interval this is the overhead at
  that interval;
* one refresh in training steps, the overhead that implies at the configured interval, and the
  interval at which the hook would cost 5% of training (the goal);
* the wall-clock ratio of the trial with the hook to the plain trial, per step (noisier: two
  trials, two moments of machine load).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_learner.py            # ~10 minutes on CPU
    .venv/bin/python scripts/bench_learner.py --steps 2400 --device cuda
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import torch

from spectral_sweep.config.dataset import Budget
from spectral_sweep.config.optimizer import LanczosSGDConfig, SGDConfig
from spectral_sweep.config.train import SharpnessConfig, TrainConfig
from spectral_sweep.curvature.learner import hooks_for
from spectral_sweep.data.load import load_dataset
from spectral_sweep.models import build_model
from spectral_sweep.trial.train import TrainingHook, TrialSettings, resolve_device, run_trial


class Timed(TrainingHook):
    """Wraps a hook and adds up the time spent in it (synchronising CUDA around it)."""

    def __init__(self, hook: TrainingHook, device: torch.device):
        self.hook, self.device, self.seconds, self.calls = hook, device, 0.0, 0
        self.name, self.owns_lr = hook.name, hook.owns_lr

    def before_step(self, step, model, optimizer):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        self.hook.before_step(step, model, optimizer)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.seconds += time.perf_counter() - start

    def log(self):
        return self.hook.log()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vgg11_bn")
    parser.add_argument("--width", type=float, default=0.125)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--train-size", type=int, default=4096)
    parser.add_argument("--sharpness-every", type=int, default=400)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    device = resolve_device(args.device)
    data = load_dataset("synthetic", seed=0, train_size=args.train_size, test_size=128)
    make_model = partial(build_model, args.model, data.num_classes, width=args.width)
    sgd = SGDConfig(name="sgd", lr=0.02)
    runs = {   # (optimizer, sharpness tracking): every other option at its default
        "plain sgd": (sgd, SharpnessConfig()),
        "learner": (LanczosSGDConfig(name="lanczos_sgd"), SharpnessConfig()),
        "sharpness": (sgd, SharpnessConfig(every=args.sharpness_every)),
    }
    print(f"{args.model} width {args.width} on synthetic ({args.train_size} samples), B={args.batch}, "
          f"{args.steps} steps, {device} ({torch.get_num_threads()} threads)")
    per_step = {}
    for label, (optimizer, sharpness) in runs.items():
        settings = TrialSettings(batch_size=args.batch, optimizer=optimizer.options(),
                                 budget=Budget(steps=args.steps), device=str(device), evaluate=False,
                                 quiet=True, train=TrainConfig(divergence_factor=1e30))
        hooks = [Timed(h, device) for h in hooks_for(optimizer, sharpness, args.batch, 0, data, device)]
        result = run_trial(make_model, data, optimizer.lr, settings, hooks=hooks)
        per_step[label] = result.seconds / result.steps
        line = f"{label:>10}: {result.steps} steps in {result.seconds:6.1f} s ({1e3 * per_step[label]:.1f} ms/step)"
        for hook in hooks:
            log = hook.log()
            entries = log.get("refreshes") or log.get("measurements") or []
            train_seconds = result.seconds - hook.seconds
            fraction = hook.seconds / train_seconds
            every = log["every"]
            per_refresh_steps = hook.seconds / len(entries) / (train_seconds / result.steps)
            products = sum(e["products"] for e in entries) / max(len(entries), 1)
            line += (f"\n{'':>12}{hook.name}: {len(entries)} refreshes x {products:.1f} products, "
                     f"{hook.seconds:.1f} s in the hook = {100 * fraction:.1f}% of training time "
                     f"(every {every}); one refresh = {per_refresh_steps:.1f} training steps "
                     f"(nominal {log['cost_gradients'] / len(entries):.1f} gradients) = "
                     f"{100 * per_refresh_steps / every:.1f}% at every {every}; "
                     f"5% needs every >= {per_refresh_steps / 0.05:.0f}")
            line += f"\n{'':>12}wall-clock ratio per step vs plain sgd: {per_step[label] / per_step['plain sgd']:.3f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
