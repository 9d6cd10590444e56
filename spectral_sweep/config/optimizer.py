"""The optimizer group's schema: its lr, options and scaling law; the learner's rule."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from omegaconf import MISSING

from spectral_sweep.config.base import Choice, _options, _within
from spectral_sweep.config.ranges import (
    FRACTION,
    NON_NEGATIVE,
    POSITIVE,
    POSITIVE_INT,
    each,
    knob,
    maybe,
)

# --------------------------------------------------------------------------------- optimizer

@dataclass
class OptimizerConfig:
    _target_: str = MISSING      # a torch.optim.Optimizer class; the swept lr is passed as lr
    name: str = MISSING          # sgd | adam | adamw | lanczos_sgd | yours
    law: str | None = None       # the law under test: linear | sqrt | a number (null: the family's)
    lr: float = knob(0.05, POSITIVE)   # peak lr of search=fixed, and the cold start of search=bisect
    weight_decay: float = knob(0.0, NON_NEGATIVE)

    def options(self) -> dict:
        """Keyword arguments of ``optim.build_optimizer`` besides params and lr."""
        return {"name": self.name, "target": self._target_, "weight_decay": self.weight_decay,
                **_options(self, OptimizerConfig)}

    def exponent(self) -> float:
        """The exponent of lr_max in B under test: ``law``, else the family's (1 SGD, 1/2 Adam)."""
        from spectral_sweep.errors import UsageError

        law = self.law
        if law is None:
            from spectral_sweep.theory import expected_exponent

            try:
                return expected_exponent(self.name)
            except ValueError:
                raise UsageError(f"no scaling law is known for optimizer {self.name} ({self._target_}); "
                                 f"set optimizer.law=linear, sqrt or a number (the exponent of lr_max in B)") from None
        law = {"linear": "1", "sqrt": "0.5"}.get(str(law), str(law))
        try:
            value = float(law)
        except ValueError:
            raise UsageError(f"optimizer.law must be linear, sqrt or a number, got {self.law!r}") from None
        if not (math.isfinite(value) and value > 0):
            raise UsageError(f"optimizer.law must be linear, sqrt or a positive number, got {self.law!r}")
        return value


@dataclass
class SGDConfig(OptimizerConfig):
    """SGD with heavy-ball (or Nesterov) momentum: the law under test is lr_max ~ B."""

    _target_: str = "torch.optim.SGD"
    momentum: float = knob(0.9, FRACTION)
    nesterov: bool = False
    weight_decay: float = knob(5e-4, NON_NEGATIVE)

    def problems(self, config):
        yield (f"optimizer.nesterov=true needs optimizer.momentum > 0, got {self.momentum}"
               if self.nesterov and self.momentum == 0 else None)


@dataclass
class AdamConfig(OptimizerConfig):
    """Adam (L2 weight decay in the gradient): the law under test is lr_max ~ sqrt(B)."""

    _target_: str = "torch.optim.Adam"
    lr: float = knob(1e-3, POSITIVE)
    betas: list[float] = knob(valid=each(FRACTION), factory=lambda: [0.9, 0.999])   # (beta1, beta2)
    eps: float = knob(1e-8, POSITIVE)

    def problems(self, config):
        yield None if len(self.betas) == 2 else f"optimizer.betas must be two numbers [beta1, beta2], got {self.betas}"


@dataclass
class AdamWConfig(AdamConfig):
    """AdamW (decoupled weight decay): the law under test is lr_max ~ sqrt(B)."""

    _target_: str = "torch.optim.AdamW"
    weight_decay: float = knob(0.01, NON_NEGATIVE)


class Rule(Choice):
    """How the learner turns Ritz values into lr and momentum (curvature/learner.py says what each computes)."""

    heavy_ball = "heavy_ball"
    nesterov = "nesterov"
    gd = "gd"
    ssgd = "ssgd"


@dataclass
class LearnerConfig:
    """The on-the-fly Lanczos learner (learner.LanczosLearner): lr and momentum from the curvature."""

    every: int = knob(1200, POSITIVE_INT)   # steps between refreshes (first at step 0); ~3 CIFAR epochs at B=128,
                                 # where refreshes cost < 5% of training (scripts/bench_learner.py)
    iters: int = knob(20, POSITIVE_INT)   # Lanczos steps (Hessian-vector products) per refresh
    batch: int = knob(128, POSITIVE_INT)   # samples of the fixed curvature batch (drawn once per trial from the seed)
    rule: Rule = Rule.heavy_ball
    # uncapped heavy ball chose lr ~ 23 on a tiny CNN once its curvature batch flattened, and diverged
    lr_cap: float | None = knob(1.0, maybe(POSITIVE))
    momentum_cap: float | None = knob(0.99, maybe(FRACTION))
    tol: float | None = knob(None, maybe(POSITIVE))   # early stop of the refresh's Lanczos (null: all iters)
    warm_weight: float = knob(0.01, NON_NEGATIVE)   # weight of the previous top Ritz vector in the next start vector

    def problems(self, config):
        yield _within("optimizer.learner.batch", [self.batch], config.dataset.known_train_size())


@dataclass
class LanczosSGDConfig(SGDConfig):
    """Plain SGD whose lr and momentum the learner sets: it chooses its own lr, so a job runs one
    trial whatever the search."""

    lr: float = knob(0.01, POSITIVE)   # used only until the first refresh, which happens at step 0
    momentum: float = knob(0.0, FRACTION)   # the momentum of rule=ssgd (the other rules set their own)
    learner: LearnerConfig = field(default_factory=LearnerConfig)

    def options(self) -> dict:
        return {k: v for k, v in super().options().items() if k != "learner"}
