"""One trial: train a fresh model at one peak learning rate for a fixed budget, and judge it.

A trial ends ``trained``, ``stalled`` or ``diverged``; ``spectral_sweep.outcomes`` holds the rules
and their defaults. Divergence is watched while training and stops the trial at once, so a blow-up
costs only the steps it takes; a trial that did not diverge is evaluated and then judged trained or
stalled. A learning rate that is too small stalls, and so may one that is too large without
blowing up (the loss bounces around ln C): "did not diverge" is not "trained". Divergence is a
result, never an exception.

GPU discipline: losses stay on the device and are read back every ``check_every`` steps, so the
host does not wait on the GPU every step; bf16 autocast and channels_last are on by default there.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .data import BatchLoader, Data
from .errors import UsageError
from .optim import build_optimizer, lr_factor
from .outcomes import DIVERGED, TRAINED, check_judging, judge
from .records import replace_atomically


@dataclass
class TrialSettings:
    """How to train, apart from the lr: the same for every trial of a sweep point."""

    batch_size: int
    optimizer: dict                     # name + options for build_optimizer (no lr)
    steps: int | None = 200             # budget in steps ...
    epochs: float | None = None         # ... or in epochs (wins when set)
    schedule: str = "constant"
    warmup: float = 0.0                 # fraction of the budget spent warming up linearly
    divergence_factor: float = 2.0      # diverged when the smoothed loss exceeds this x the initial
    stall_loss_margin: float = 0.1      # trained needs the final loss this fraction below the reference
    stall_acc_margin: float = 0.05      # ... and test accuracy this fraction of the way from chance to 1
    smoothing: float = 0.1              # EMA weight of the newest loss in the divergence test
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"             # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16
    channels_last: str | bool = "auto"  # auto: on for CUDA
    compile: bool = False
    checkpoint: str | None = None       # a file to save the trial to every epoch, and resume from
    micro_batch: int | None = None      # accumulate gradients over pieces of this size (memory);
                                        # BatchNorm statistics then come from each piece
    evaluate: bool = True
    eval_batch_size: int = 500
    check_every: int | None = None      # host sync interval; auto: 1 on CPU, 10 on CUDA
    curve_points: int = 200
    quiet: bool = False

    def __post_init__(self):
        check_judging(self.divergence_factor, self.stall_loss_margin, self.stall_acc_margin)


class TrainingHook:
    """Something that acts on a trial every step: the lr/momentum learner, sharpness tracking.

    ``before_step`` runs before each optimizer step, after the schedule has set the lr (a hook
    with ``owns_lr`` sets lr and momentum itself and the schedule stays out of its way).
    ``log()`` is stored in the trial record under ``hooks[name]``. Hooks may use the model and
    optimizer but must leave the model in train mode and its parameters untouched.
    ``state_dict()`` goes into the trial's epoch checkpoint and ``load_state_dict`` restores it
    on resume, so a resumed trial carries on with the hook's history (tensors, numbers, strings,
    lists and dicts only: checkpoints are read with ``weights_only=True``).
    """

    name = "hook"
    owns_lr = False

    def before_step(self, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        pass

    def log(self) -> dict:
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


@dataclass
class TrialResult:
    lr: float
    outcome: str                         # trained | stalled | diverged
    reason: str | None                   # why it did not train: "non-finite loss", "test acc 0.1 below ..."
    initial_loss: float
    final_train_loss: float
    test_acc: float | None
    test_loss: float | None
    steps: int
    budget_steps: int
    seconds: float
    images_per_s: float
    loss_curve: list = field(default_factory=list)   # [[step, mean loss over the window], ...]
    hooks: dict = field(default_factory=dict)        # each hook's log, by hook name

    @property
    def stable(self) -> bool:
        """Did not diverge (it may still have stalled): what the blow-up edge is made of."""
        return self.outcome != DIVERGED

    @property
    def trained(self) -> bool:
        return self.outcome == TRAINED

    def to_dict(self) -> dict:
        return {**asdict(self), "stable": self.stable}


def resolve_device(name: str = "auto", index: int = 0) -> torch.device:
    """``auto``: CUDA when present (GPU ``index`` modulo the GPUs visible, one per parallel job)."""
    if name == "auto":
        count = torch.cuda.device_count()
        return torch.device(f"cuda:{index % count}") if count else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise UsageError(f"unknown device '{name}': {e}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("device=cuda asked for, but no CUDA GPU is visible; use device=auto or cpu")
    return device


def budget_steps(settings: TrialSettings, steps_per_epoch: int) -> int:
    if settings.epochs is not None:
        total = round(settings.epochs * steps_per_epoch)
    elif settings.steps is not None:
        total = settings.steps
    else:
        raise UsageError("set a trial budget: search.budget.steps or search.budget.epochs")
    if total <= 0:
        raise UsageError(f"the trial budget must be at least one step, got {total}")
    return int(total)


def run_trial(make_model: Callable[[], torch.nn.Module], data: Data, lr: float,
              settings: TrialSettings, hooks: Sequence[TrainingHook] = ()) -> TrialResult:
    """Train ``make_model()`` on ``data`` at peak lr ``lr``; return the judged result."""
    return train(make_model, data, lr, settings, hooks)[2]


def train(make_model: Callable[[], torch.nn.Module], data: Data, lr: float, settings: TrialSettings,
          hooks: Sequence[TrainingHook] = ()):
    """A trial that also hands back what it trained: (model, optimizer, TrialResult).

    The model and optimizer state are what a curvature measurement after training needs
    (Adam's second moments define the preconditioned Hessian).
    """
    if not lr > 0:
        raise UsageError(f"learning rate must be positive, got {lr}")
    device = resolve_device(settings.device)
    cuda = device.type == "cuda"
    bf16 = settings.precision == "bf16" or (settings.precision == "auto" and cuda)
    channels_last = settings.channels_last is True or (settings.channels_last == "auto" and cuda)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    check_every = settings.check_every or (10 if cuda else 1)
    micro = settings.micro_batch or settings.batch_size
    if not 0 < micro <= settings.batch_size:
        raise UsageError(f"train.micro_batch must lie in [1, batch={settings.batch_size}], got {micro}")

    def fresh():
        """The model (seeded init) and its optimizer, as every trial at this seed starts."""
        torch.manual_seed(settings.seed)
        model = make_model().to(device=device, memory_format=memory_format)
        return model, build_optimizer(params=model.parameters(), lr=lr, **settings.optimizer)

    model, opt = fresh()
    loader = BatchLoader(data.train, settings.batch_size, device, train=True, seed=settings.seed)
    total = budget_steps(settings, len(loader))
    warmup = round(settings.warmup * total)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    losses = torch.empty(total, device=device)
    scheduled_elsewhere = any(hook.owns_lr for hook in hooks)
    initial = ema = None
    reason = None
    step = checked = 0
    seconds_before = 0.0
    per_epoch = len(loader)
    if settings.checkpoint and Path(settings.checkpoint).exists():
        try:
            step, initial, ema, seconds_before = _resume(settings.checkpoint, model, opt, losses, device,
                                                         hooks)
        except Exception as e:   # truncated or foreign: start the trial afresh, say so once
            warnings.warn(f"unreadable trial checkpoint {settings.checkpoint} ({type(e).__name__}); "
                          "training this trial from the start")
            Path(settings.checkpoint).unlink(missing_ok=True)
            model, opt = fresh()
        else:
            tqdm.write(f"resuming trial lr={lr:.4g} B={settings.batch_size} at epoch {step // per_epoch} "
                       f"(step {step} of {total})")
        checked = step
    step_fn = torch.compile(model) if settings.compile else model
    bar = tqdm(total=total, initial=step, desc=f"lr={lr:.3g} B={settings.batch_size}", leave=False,
               disable=True if settings.quiet else None, unit="step")
    model.train()
    start = time.perf_counter()
    for x, y in _batches(loader, total - step, first_epoch=step // per_epoch):
        if not scheduled_elsewhere:
            for group in opt.param_groups:
                group["lr"] = lr * lr_factor(settings.schedule, step, total, warmup)
        for hook in hooks:
            hook.before_step(step, model, opt)
        opt.zero_grad(set_to_none=True)
        loss = torch.zeros((), device=device)
        for xs, ys in zip(x.split(micro), y.split(micro)):   # one piece unless micro_batch is set
            with autocast:
                piece = F.cross_entropy(step_fn(xs.contiguous(memory_format=memory_format)), ys)
            (piece * (len(ys) / len(y))).backward()
            loss += piece.detach().float() * (len(ys) / len(y))
        opt.step()
        losses[step] = loss
        step += 1
        epoch_end = step % per_epoch == 0
        if step % check_every == 0 or step == total or epoch_end:
            seen = losses[checked:step].float().cpu().tolist()
            checked = step
            for value in seen:
                if initial is None:
                    initial = ema = value
                if not math.isfinite(value):
                    reason = "non-finite loss"
                    break
                ema = (1 - settings.smoothing) * ema + settings.smoothing * value
                if ema > settings.divergence_factor * initial:
                    reason = f"loss > {settings.divergence_factor:g}x initial"
                    break
            bar.update(len(seen))
            bar.set_postfix(loss=f"{seen[-1]:.3g}", lr=f"{opt.param_groups[0]['lr']:.3g}")
            if reason:
                break
        if epoch_end and settings.checkpoint and step < total:
            _save(settings.checkpoint, model, opt, losses, step, initial, ema,
                  seconds_before + time.perf_counter() - start, hooks)
    if cuda:
        torch.cuda.synchronize(device)
    seconds = seconds_before + time.perf_counter() - start
    if settings.checkpoint:
        Path(settings.checkpoint).unlink(missing_ok=True)   # the result is the record from now on
    bar.close()

    curve = losses[:step].float().cpu()
    tail = curve[-max(1, step // 10):]
    final = float(tail.mean()) if reason is None else float("nan")
    acc = test_loss = None
    if reason is None and settings.evaluate:
        with autocast:
            test_loss, acc = evaluate(model, data.test, device, settings.eval_batch_size, memory_format)
    if reason is None:
        outcome, reason = judge(initial, final, acc, data.num_classes, len(data.test),
                                settings.stall_loss_margin, settings.stall_acc_margin)
    else:
        outcome = DIVERGED
    result = TrialResult(lr=lr, outcome=outcome, reason=reason, initial_loss=initial,
                         final_train_loss=final, test_acc=acc, test_loss=test_loss, steps=step,
                         budget_steps=total, seconds=seconds,
                         images_per_s=step * settings.batch_size / max(seconds, 1e-9),
                         loss_curve=_downsample(curve, settings.curve_points),
                         hooks={hook.name: hook.log() for hook in hooks})
    return model, opt, result


def _save(path, model, opt, losses, step, initial, ema, seconds, hooks=()) -> None:
    """The trial at an epoch boundary, written atomically: everything a resume needs."""
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "losses": losses[:step].cpu(),
             "step": step, "initial": initial, "ema": ema, "seconds": seconds,
             "rng": torch.get_rng_state(), "hooks": {hook.name: hook.state_dict() for hook in hooks}}
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    with replace_atomically(path) as tmp:   # a unique temp name: concurrent writers never collide
        torch.save(state, tmp)


def _resume(path, model, opt, losses, device, hooks=()):
    """Restore a trial saved by ``_save``; the data order of later epochs is seeded, so the
    resumed trial continues exactly as the uninterrupted one would have."""
    state = torch.load(path, map_location=device, weights_only=True)   # callers catch a bad file
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    saved_hooks = state.get("hooks", {})
    for hook in hooks:
        if hook.name in saved_hooks:
            hook.load_state_dict(saved_hooks[hook.name])
    step = int(state["step"])
    losses[:step] = state["losses"].to(device)
    torch.set_rng_state(state["rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return step, state["initial"], state["ema"], float(state["seconds"])


def _batches(loader: BatchLoader, total: int, first_epoch: int = 0):
    """Batches across epoch boundaries until ``total`` steps; epochs reshuffle deterministically."""
    epoch = first_epoch
    while True:
        for batch in loader.epoch(epoch):
            yield batch
            total -= 1
            if total == 0:
                return
        epoch += 1


@torch.no_grad()
def evaluate(model: torch.nn.Module, split, device: torch.device, batch_size: int = 500,
             memory_format=torch.contiguous_format) -> tuple[float, float]:
    """Mean cross-entropy and accuracy on ``split`` in eval mode; restores train mode."""
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    n = 0
    for x, y in BatchLoader(split, min(batch_size, len(split)), device, train=False).epoch(0):
        logits = model(x.contiguous(memory_format=memory_format))
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
        n += len(y)
    model.train()
    return float(loss_sum) / n, float(correct) / n


def _downsample(curve: torch.Tensor, points: int) -> list:
    """[[step, mean loss]] over at most ``points`` equal windows: small records, honest curves."""
    n = len(curve)
    if n == 0:
        return []
    width = max(1, math.ceil(n / points))
    return [[min(i + width, n), float(curve[i:i + width].mean())] for i in range(0, n, width)]

