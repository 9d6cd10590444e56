"""Training throughput of a trial against a plain PyTorch loop on the same model, data and device.

The reference is what a user would write by hand: the model, SGD, cross-entropy over the same
device-resident batches, no divergence checks, no schedule. The ratio shows what the trial's
bookkeeping (divergence test, schedule, loss buffer, bars) costs, or what the fast path gains
on a GPU (bf16 autocast, channels_last, data on the device, host syncs every 10 steps).

    python scripts/bench_train.py [--model vgg16] [--widths 1 0.25] [--batch 128] [--steps 20]
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import torch
import torch.nn.functional as F

from spectral_sweep.config.dataset import Budget
from spectral_sweep.data.load import load_dataset
from spectral_sweep.data.loaders import BatchLoader
from spectral_sweep.models import build_model
from spectral_sweep.trial.train import TrialSettings, resolve_device, run_trial


def plain_loop(make_model, data, lr, batch, steps, device) -> float:
    """Images per second of the hand-written loop (after two warm-up steps)."""
    torch.manual_seed(0)
    model = make_model().to(device)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    batches = BatchLoader(data.train, batch, device, train=True).epoch(0)
    for i, (x, y) in enumerate(batches):
        if i == 2:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        if i == steps + 2:
            break
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="vgg16")
    ap.add_argument("--widths", type=float, nargs="+", default=[1.0, 0.25])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = resolve_device(args.device)
    data = load_dataset("synthetic", seed=0, train_size=args.batch * (args.steps + 3), test_size=100)
    print(f"{args.model}, B={args.batch}, {args.steps} timed steps, device {device}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"{'width':>6} {'plain loop img/s':>17} {'trial img/s':>12} {'trial/plain':>12}")
    for width in args.widths:
        make_model = partial(build_model, args.model, data.num_classes, width=width)
        plain = plain_loop(make_model, data, 0.01, args.batch, args.steps, device)
        settings = TrialSettings(batch_size=args.batch, optimizer={"name": "sgd", "momentum": 0.9},
                                 budget=Budget(steps=args.steps + 2), device=str(device), evaluate=False,
                                 quiet=True)
        trial = run_trial(make_model, data, 0.01, settings).images_per_s   # includes its 2 warm-up steps
        print(f"{width:>6g} {plain:>17.1f} {trial:>12.1f} {trial / plain:>12.2f}")


if __name__ == "__main__":
    main()
