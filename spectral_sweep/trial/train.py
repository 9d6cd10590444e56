"""One trial: train a fresh model at one peak learning rate for a fixed budget, and judge it.

A trial ends ``trained``, ``stalled`` or ``diverged``; ``spectral_sweep.outcomes`` holds the rules
and their defaults. Divergence is watched while training and stops the trial at once, so a blow-up
costs only the steps it takes; a trial that did not diverge is evaluated and then judged trained or
stalled. A learning rate that is too small stalls, and so may one that is too large without
blowing up (the loss bounces around ln C): "did not diverge" is not "trained". Divergence is a
result, never an exception.

GPU discipline: losses stay on the device and are read back every ``check_every`` steps, so the
host does not wait on the GPU every step. Precision, memory format and compilation are whatever
``settings.train`` says; a sweep point resolves ``auto`` by timing (``fastpath.tune_settings``), and
a trial run directly with ``auto`` falls back to bf16 + channels_last on CUDA, fp32 elsewhere.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from spectral_sweep.config.dataset import Budget
from spectral_sweep.config.train import TrainConfig
from spectral_sweep.data.loaders import BatchLoader
from spectral_sweep.data.splits import Data
from spectral_sweep.errors import UsageError
from spectral_sweep.files import replace_atomically, set_aside
from spectral_sweep.trial.optim import build_optimizer, lr_factor
from spectral_sweep.trial.outcomes import DIVERGED, check_judging, judge
from spectral_sweep.trial.record import TrialRecord


@dataclass
class TrialSettings:
    """How to train, apart from the lr: the same for every trial of a sweep point."""

    batch_size: int
    optimizer: dict                     # build_optimizer's options: name, momentum, ... (no lr)
    budget: Budget                      # the length of the trial
    train: TrainConfig = field(default_factory=TrainConfig)   # schedule, judging, precision, ...
    seed: int = 0
    device: str = "auto"
    checkpoint: str | None = None       # a file to save the trial to every epoch, and resume from
    evaluate: bool = True
    check_every: int | None = None      # host sync interval; auto: 1 on CPU, 10 on CUDA
    curve_points: int = 200
    smoothing: float = 0.1              # EMA weight of the newest loss in the divergence test
    quiet: bool = False
    compiled: CompiledForward | None = None   # a compiled forward shared by the point's trials

    def __post_init__(self):
        check_judging(self.train.divergence_factor, self.train.stall_loss_margin, self.train.stall_acc_margin,
                      self.train.target_acc)


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


def budget_steps(budget: Budget, steps_per_epoch: int) -> int:
    if budget.epochs is not None:
        total = round(budget.epochs * steps_per_epoch)
    elif budget.steps is not None:
        total = budget.steps
    else:
        raise UsageError("set a trial budget: train.steps or train.epochs")
    if total <= 0:
        raise UsageError(f"the trial budget must be at least one step, got {total}")
    return int(total)


def run_trial(make_model: Callable[[], torch.nn.Module], data: Data, lr: float,
              settings: TrialSettings, hooks: Sequence[TrainingHook] = ()) -> TrialRecord:
    """Train ``make_model()`` on ``data`` at peak lr ``lr``; return the judged result."""
    return train(make_model, data, lr, settings, hooks)[2]


@dataclass
class _Device:
    """Where and how a trial computes: what ``settings.train`` asks for on this device."""

    device: torch.device
    bf16: bool
    memory_format: torch.memory_format
    check_every: int
    micro: int
    autocast: contextlib.AbstractContextManager   # bf16 autocast or nothing, made once, entered every step

    @classmethod
    def of(cls, settings: TrialSettings) -> _Device:
        device = resolve_device(settings.device)
        cuda = device.type == "cuda"
        opts = settings.train
        channels_last = opts.channels_last == "true" or (opts.channels_last == "auto" and cuda)
        micro = opts.micro_batch or settings.batch_size
        if not 0 < micro <= settings.batch_size:
            raise UsageError(f"train.micro_batch must lie in [1, batch={settings.batch_size}], got {micro}")
        bf16 = opts.precision == "bf16" or (opts.precision == "auto" and cuda)
        return cls(device, bf16, torch.channels_last if channels_last else torch.contiguous_format,
                   settings.check_every or (10 if cuda else 1), micro,
                   torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext())


class _DivergenceWatch:
    """The smoothed loss against the initial one: says why a trial diverged, or None."""

    def __init__(self, factor: float, smoothing: float, initial=None, ema=None):
        self.factor, self.smoothing, self.initial, self.ema = factor, smoothing, initial, ema

    def see(self, values: list[float]) -> str | None:
        for value in values:
            if self.initial is None:
                self.initial = self.ema = value
            if not math.isfinite(value):
                return "non-finite loss"
            self.ema = (1 - self.smoothing) * self.ema + self.smoothing * value
            if self.ema > self.factor * self.initial:
                return f"loss > {self.factor:g}x initial"
        return None


#: Called with the steps a trial has just trained, in a worker of point/pool.py: the parent shows one
#: bar for a round of trials in flight (None in a process that shows its own bar).
on_steps: Callable[[int], None] | None = None


@dataclass
class _Progress:
    """A trial in flight: what a checkpoint holds and a resume restores."""

    model: torch.nn.Module
    opt: torch.optim.Optimizer
    losses: torch.Tensor
    watch: _DivergenceWatch
    step: int = 0
    seconds_before: float = 0.0           # training time of the runs before a resume
    started: float = 0.0                  # perf_counter when this run's loop began
    saved: float = 0.0                    # perf_counter of the last checkpoint (or the loop's start)

    def seconds(self) -> float:
        """Training time so far, across resumes."""
        return self.seconds_before + time.perf_counter() - self.started


def train(make_model: Callable[[], torch.nn.Module], data: Data, lr: float, settings: TrialSettings,
          hooks: Sequence[TrainingHook] = ()):
    """A trial that also hands back what it trained: (model, optimizer, TrialRecord).

    The model and optimizer state are what a curvature measurement after training needs
    (Adam's second moments define the preconditioned Hessian).
    """
    if not lr > 0:
        raise UsageError(f"learning rate must be positive, got {lr}")
    where = _Device.of(settings)
    loader = BatchLoader(data.train, settings.batch_size, where.device, train=True, seed=settings.seed)
    total = budget_steps(settings.budget, len(loader))
    run = _start(make_model, lr, settings, where, total, hooks, per_epoch=len(loader))
    reason = _loop(run, loader, lr, settings, where, total, hooks)
    if where.device.type == "cuda":
        torch.cuda.synchronize(where.device)
    seconds = run.seconds()
    if settings.checkpoint:
        Path(settings.checkpoint).unlink(missing_ok=True)   # the result is the record from now on
    return run.model, run.opt, _result(run, data, lr, settings, where, total, seconds, reason, hooks)


def _start(make_model, lr, settings: TrialSettings, where: _Device, total: int, hooks, per_epoch: int) -> _Progress:
    """A fresh trial, or the one its checkpoint holds (an unreadable checkpoint: fresh, said once)."""
    def fresh() -> _Progress:
        torch.manual_seed(settings.seed)   # every trial at this seed starts from the same init
        model = make_model().to(device=where.device, memory_format=where.memory_format)
        opt = build_optimizer(params=model.parameters(), lr=lr, **settings.optimizer)
        watch = _DivergenceWatch(settings.train.divergence_factor, settings.smoothing)
        return _Progress(model, opt, torch.empty(total, device=where.device), watch)

    run = fresh()
    if not (settings.checkpoint and Path(settings.checkpoint).exists()):
        return run
    try:
        _resume(settings.checkpoint, run, where.device, hooks, _identity(settings.checkpoint, lr, settings))
    except NotThisTrial as e:   # another trial's file copied over this one's
        warnings.warn(f"trial checkpoint {settings.checkpoint} is not this trial's ({e}); set aside as "
                      f"{set_aside(settings.checkpoint).name}, training this trial from the start", stacklevel=2)
        return fresh()
    except Exception as e:   # truncated or damaged
        warnings.warn(f"unreadable trial checkpoint {settings.checkpoint} ({type(e).__name__}); set aside as "
                      f"{set_aside(settings.checkpoint).name}, training this trial from the start", stacklevel=2)
        return fresh()
    tqdm.write(f"resuming trial lr={lr:.4g} B={settings.batch_size} at epoch {run.step // per_epoch} "
               f"(step {run.step} of {total})")
    return run


def _loop(run: _Progress, loader: BatchLoader, lr: float, settings: TrialSettings, where: _Device,
          total: int, hooks) -> str | None:
    """Train from ``run.step`` to ``total``; return why the trial diverged, or None.

    Losses stay on the device and are read back every ``check_every`` steps and at epoch ends.
    """
    per_epoch, checked = len(loader), run.step
    scheduled_elsewhere = any(hook.owns_lr for hook in hooks)
    warmup = round(settings.train.warmup * total)
    step_fn = _forward(run.model, settings, where.device)
    bar = tqdm(total=total, initial=run.step, desc=f"lr={lr:.3g} B={settings.batch_size}", leave=False,
               disable=True if settings.quiet else None, unit="step")
    run.model.train()
    run.started = run.saved = time.perf_counter()
    reason = None
    for x, y in _batches(loader, total - run.step, first_epoch=run.step // per_epoch):
        if not scheduled_elsewhere:
            for group in run.opt.param_groups:
                group["lr"] = lr * lr_factor(settings.train.schedule, run.step, total, warmup)
        for hook in hooks:
            hook.before_step(run.step, run.model, run.opt)
        run.losses[run.step] = _step(step_fn, run.opt, x, y, where)
        run.step += 1
        epoch_end = run.step % per_epoch == 0
        if run.step % where.check_every == 0 or run.step == total or epoch_end:
            seen = run.losses[checked:run.step].float().cpu().tolist()
            checked = run.step
            reason = run.watch.see(seen)
            bar.update(len(seen))
            if on_steps is not None:
                on_steps(len(seen))
            bar.set_postfix(lr=f"{run.opt.param_groups[0]['lr']:.3g}", loss=f"{run.watch.ema:.3g}")   # smoothed
            if reason:
                break
        if epoch_end and settings.checkpoint and run.step < total and _checkpoint_due(run, settings):
            _save(settings.checkpoint, run, run.seconds(), hooks, _identity(settings.checkpoint, lr, settings))
            run.saved = time.perf_counter()
    bar.close()
    return reason


def _checkpoint_due(run: _Progress, settings: TrialSettings) -> bool:
    """An epoch checkpoint pays once ``train.checkpoint_every`` seconds have passed since the last."""
    return time.perf_counter() - run.saved >= settings.train.checkpoint_every


class CompiledForward:
    """``torch.compile`` of a forward pass, made once and used by many models of one architecture.

    The compiled function takes the module as an argument, so a fresh model of the same
    architecture (the next trial's fresh weights) runs the same compiled code without compiling
    again (dynamo guards on the module's structure, not on its identity). On CUDA the mode is
    ``reduce-overhead`` (CUDA graphs), elsewhere the default.
    """

    def __init__(self, device: torch.device):
        self.mode = "reduce-overhead" if torch.device(device).type == "cuda" else "default"
        self.fn = torch.compile(_call, mode=self.mode)

    def __reduce__(self):   # to another process (a Ray task) as what to compile, compiled again there
        return CompiledForward, ("cuda" if self.mode == "reduce-overhead" else "cpu",)

    def __call__(self, model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        def forward(x):
            if self.mode == "reduce-overhead":
                torch.compiler.cudagraph_mark_step_begin()
            return self.fn(model, x)
        return forward


def _call(model, x):
    return model(x)


def _forward(model: torch.nn.Module, settings: TrialSettings, device: torch.device):
    """The forward pass a trial steps with: the point's compiled one, a compile of its own
    (``train.compile=true`` without one), or the model itself."""
    if settings.compiled is not None:
        return settings.compiled(model)
    return CompiledForward(device)(model) if settings.train.compile == "true" else model


def fast_path(where: _Device, settings: TrialSettings) -> dict:
    """What a trial computed with: its record's ``fast_path``."""
    compiled = settings.compiled is not None or settings.train.compile == "true"
    return {"precision": "bf16" if where.bf16 else "fp32",
            "channels_last": where.memory_format == torch.channels_last, "compile": compiled}


def _step(step_fn, opt, x, y, where: _Device) -> torch.Tensor:
    """One optimizer step over the batch (in micro-batch pieces if asked); the mean loss, on device."""
    opt.zero_grad(set_to_none=True)
    loss = torch.zeros((), device=where.device)
    for xs, ys in zip(x.split(where.micro), y.split(where.micro)):   # one piece unless micro_batch is set
        with where.autocast:
            piece = F.cross_entropy(step_fn(xs.contiguous(memory_format=where.memory_format)), ys)
        (piece * (len(ys) / len(y))).backward()
        loss += piece.detach().float() * (len(ys) / len(y))
    opt.step()
    return loss


def _result(run: _Progress, data: Data, lr, settings: TrialSettings, where: _Device, total: int,
            seconds: float, reason: str | None, hooks) -> TrialRecord:
    """Evaluate a trial that did not diverge, judge it, and write down what happened."""
    curve = run.losses[:run.step].float().cpu()
    tail = curve[-max(1, run.step // 10):]
    final = float(tail.mean()) if reason is None else float("nan")
    acc = test_loss = None
    if reason is None and settings.evaluate:
        with where.autocast:
            test_loss, acc = evaluate(run.model, data.test, where.device, settings.train.eval_batch_size,
                                      where.memory_format)
    if reason is None:
        outcome, reason = judge(run.watch.initial, final, acc, data.num_classes, len(data.test),
                                settings.train.stall_loss_margin, settings.train.stall_acc_margin,
                                settings.train.target_acc)
    else:
        outcome = DIVERGED
    return TrialRecord(lr=lr, outcome=outcome, reason=reason, initial_loss=run.watch.initial,
                       final_train_loss=final, test_acc=acc, test_loss=test_loss, steps=run.step,
                       budget_steps=total, seconds=seconds,
                       images_per_s=run.step * settings.batch_size / max(seconds, 1e-9),
                       loss_curve=_downsample(curve, settings.curve_points),
                       hooks={hook.name: hook.log() for hook in hooks},
                       extra={"fast_path": fast_path(where, settings)})


class NotThisTrial(ValueError):
    """A checkpoint that reads but holds another trial (another lr, seed, batch or config)."""


def _identity(path, lr: float, settings: TrialSettings) -> dict:
    """Whose a checkpoint is: the trial's lr, seed and batch, and its key (the file's name, a hash
    of the point's config and the lr), so a checkpoint copied over another trial's is not resumed."""
    return {"key": Path(path).stem, "lr": float(lr), "seed": int(settings.seed), "batch_size": int(settings.batch_size)}


def _save(path, run: _Progress, seconds: float, hooks=(), identity: dict | None = None) -> None:
    """The trial at an epoch boundary, written atomically: everything a resume needs, and whose it is."""
    state = {"identity": identity or {},"model": run.model.state_dict(), "optimizer": run.opt.state_dict(),
             "losses": run.losses[:run.step].cpu(), "step": run.step, "initial": run.watch.initial,
             "ema": run.watch.ema, "seconds": seconds, "rng": torch.get_rng_state(),
             "hooks": {hook.name: hook.state_dict() for hook in hooks}}
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    with replace_atomically(path) as tmp:   # a unique temp name: concurrent writers never collide
        torch.save(state, tmp)


def _resume(path, run: _Progress, device, hooks=(), identity: dict | None = None) -> None:
    """Restore a trial saved by ``_save`` into ``run``; the data order of later epochs is seeded,
    so the resumed trial continues exactly as the uninterrupted one would have. ``NotThisTrial``
    when the file says it is another trial's (or says nothing: a checkpoint must say whose it is)."""
    state = torch.load(path, map_location=device, weights_only=True)   # callers catch a bad file
    if identity is not None:
        found = state.get("identity") or {}
        wrong = [f"{k}={found.get(k)!r}, not {v!r}" for k, v in identity.items() if found.get(k) != v]
        if wrong:
            raise NotThisTrial("; ".join(wrong))
    run.model.load_state_dict(state["model"])
    run.opt.load_state_dict(state["optimizer"])
    saved_hooks = state.get("hooks", {})
    for hook in hooks:
        if hook.name in saved_hooks:
            hook.load_state_dict(saved_hooks[hook.name])
    run.step = int(state["step"])
    run.losses[:run.step] = state["losses"].to(device)
    torch.set_rng_state(state["rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    run.watch.initial, run.watch.ema = state["initial"], state["ema"]
    run.seconds_before = float(state["seconds"])


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

