"""The train group's schema: how one trial trains and is judged; and sharpness tracking."""

from __future__ import annotations

from dataclasses import dataclass

from spectral_sweep.config.base import Choice
from spectral_sweep.config.dataset import Budget, DatasetConfig
from spectral_sweep.config.ranges import (
    FRACTION,
    NON_NEGATIVE,
    OPEN_FRACTION,
    POSITIVE,
    POSITIVE_INT,
    Range,
    knob,
    maybe,
)

# ------------------------------------------------------------------------------------- train

class Schedule(Choice):
    constant = "constant"
    paper = "paper"
    cosine = "cosine"


class Precision(Choice):
    auto = "auto"                # bf16 autocast on CUDA, fp32 on CPU
    fp32 = "fp32"
    bf16 = "bf16"


TOGGLES = ("true", "false", "auto")


@dataclass
class TrainConfig:
    """How one trial trains and how it is judged (trial/outcomes.py has the rules)."""

    steps: int | None = knob(None, maybe(POSITIVE_INT))   # trial length; null with epochs null: the dataset's budget
    epochs: float | None = knob(None, maybe(POSITIVE))   # wins over steps when set
    schedule: Schedule = Schedule.constant   # multipliers of the peak lr
    warmup: float = knob(0.0, FRACTION)   # fraction of the budget spent on a linear warmup
    # diverged: smoothed loss above this x the initial (or not finite)
    divergence_factor: float = knob(2.0, Range(1, low_open=True))
    # stalled unless the final loss ends this fraction below min(initial, ln C) ...
    stall_loss_margin: float = knob(0.1, OPEN_FRACTION)
    # ... and test accuracy gets this fraction of the way from chance to 1
    stall_acc_margin: float = knob(0.05, OPEN_FRACTION)
    # trained only if the final test accuracy also reaches this, else stalled ("steps to a target",
    # Shallue et al. 2018); null: off
    target_acc: float | None = knob(None, maybe(Range(0, 1, low_open=True)))
    precision: Precision = Precision.auto   # auto: fp32 or bf16 autocast, the faster timed on the point
    channels_last: str = "auto"  # true | false | auto: the faster memory format, timed on the point
    compile: str = "false"       # true | false | auto: compile once per point where it pays (trial/fastpath.py)
    eval_batch_size: int = knob(500, POSITIVE_INT)
    # seconds between a trial's checkpoints, written at epoch ends (0: every epoch): a kill loses at most
    # this much of a trial, and a short trial of a big model does not write one every epoch
    checkpoint_every: float = knob(300.0, NON_NEGATIVE)
    # accumulate gradients over pieces of this size when B does not fit; BatchNorm statistics
    # then come from each piece
    micro_batch: int | None = knob(None, maybe(POSITIVE_INT))

    def __post_init__(self):
        # true/false/auto as strings: Hydra reads `true` as a bool, which an enum field refuses
        for name in ("channels_last", "compile"):
            value = str(getattr(self, name)).lower()
            if value not in TOGGLES:
                raise ValueError(f"train.{name} must be one of {', '.join(TOGGLES)}, got {getattr(self, name)!r}")
            setattr(self, name, value)

    def budget(self, dataset: DatasetConfig) -> Budget:
        """The length of each trial: this config's when set, else the dataset's default."""
        own = Budget(steps=self.steps, epochs=self.epochs)
        return own if own.is_set() else dataset.budget

    def problems(self, config):
        yield (None if self.micro_batch is None or self.micro_batch <= config.batch
               else f"train.micro_batch must be at most batch={config.batch}, got {self.micro_batch}")


@dataclass
class SharpnessConfig:
    """Tracking the top Hessian eigenvalue during each trial (learner.SharpnessTracker)."""

    every: int | None = knob(None, maybe(POSITIVE_INT))   # steps between measurements (null: off)
    batch: int = knob(128, POSITIVE_INT)   # at most this many samples (and at most B) in the fixed batch
    iters: int = knob(10, POSITIVE_INT)
    tol: float | None = knob(1e-2, maybe(POSITIVE))
