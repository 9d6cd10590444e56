"""The model group's schema: a network's name, constructor and width."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING

from spectral_sweep.config.base import _options
from spectral_sweep.config.ranges import (
    FRACTION,
    POSITIVE,
    POSITIVE_INT,
    knob,
)

# ------------------------------------------------------------------------------------- model

@dataclass
class ModelConfig:
    _target_: str = MISSING      # a callable taking num_classes and the options below, returning an nn.Module
    name: str | None = None      # the network's name (tables use the preset's: model=wrn28_10)
    width: float = knob(1.0, POSITIVE)   # channel multiplier (0.125 makes a CPU-sized network)

    def options(self) -> dict:
        """Keyword arguments of the model's ``_target_`` besides num_classes."""
        return {"width": self.width, **_options(self, ModelConfig)}


@dataclass
class VGGConfig(ModelConfig):
    dropout: float = knob(0.5, FRACTION)   # in the Dropout-512-ReLU-Dropout-512-ReLU classifier


@dataclass
class PreResNetConfig(ModelConfig):
    depth: int = MISSING         # 9n+2 (bottleneck) or 6n+2 (basic)
    block: str = "auto"          # auto (basic up to depth 44, bottleneck above) | basic | bottleneck


@dataclass
class WideResNetConfig(ModelConfig):
    depth: int = MISSING
    widen_factor: int = knob(MISSING, POSITIVE_INT)
    dropout: float = knob(0.0, FRACTION)
