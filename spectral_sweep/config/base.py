"""What every config group shares: where the presets live, closed choices, and a group's own options."""

from __future__ import annotations

import dataclasses
from enum import Enum
from pathlib import Path


def _config_dir() -> str:
    """conf/ ships inside the wheel as spectral_sweep/conf; in a source checkout it is ../conf."""
    here = Path(__file__).resolve().parent.parent   # the package; config/ is inside it
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"spectral-sweep's conf/ is missing next to {here}; reinstall the package")


CONFIG_DIR = _config_dir()   # the built-in presets; a user's own come in through --config-dir
DATA_ROOT = "${oc.env:SPECTRAL_SWEEP_DATA,data}"
TRAIN_SIZES = {"cifar10": 50_000, "cifar100": 50_000, "imagenet32": 1_281_167, "fashion_mnist": 60_000,
               "mnist": 60_000, "kmnist": 60_000, "svhn": 73_257}   # the published training splits


class Choice(str, Enum):
    """A closed set of strings: a typo is refused in one line, and the value still compares
    and serialises as the plain string."""

    def __str__(self) -> str:
        return self.value


def _options(node, base) -> dict:
    """The fields a subclass adds to ``base``: the keyword arguments of the thing it builds."""
    own = {f.name for f in dataclasses.fields(base)}
    return {f.name: getattr(node, f.name) for f in dataclasses.fields(node) if f.name not in own}



def _within(name: str, sizes, known: int | None) -> str | None:
    """A batch of ``sizes`` drawn from a training set of ``known`` samples (None: not known yet)."""
    too_big = [b for b in sizes or [] if known is not None and b > known]
    return f"{name}={too_big[0]} is larger than the training set ({known} samples)" if too_big else None
