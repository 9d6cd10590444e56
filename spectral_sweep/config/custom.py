"""A user's own preset without a schema: the group's keys into fields, the rest into kwargs."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

from spectral_sweep.config.dataset import Budget, DatasetConfig
from spectral_sweep.config.model import ModelConfig
from spectral_sweep.config.optimizer import OptimizerConfig

# ------------------------------------------------------------------------------ user presets

@dataclass
class CustomModelConfig(ModelConfig):
    """A user's model preset without a schema: every key but _target_ and name is an argument."""

    kwargs: dict = field(default_factory=dict)

    def options(self) -> dict:
        return dict(self.kwargs)


@dataclass
class CustomDatasetConfig(DatasetConfig):
    """A user's dataset preset without a schema: root, subset, test_subset, budget and stream as for any
    dataset; every other key is an argument of its _target_."""

    kwargs: dict = field(default_factory=dict)

    def options(self) -> dict:
        return dict(self.kwargs)

    def known_channels(self) -> int | None:
        return None              # known once the target's data is read


@dataclass
class CustomOptimizerConfig(OptimizerConfig):
    """A user's optimizer preset without a schema: lr, weight_decay and law as for any optimizer;
    every other key is an argument of its torch.optim.Optimizer class."""

    kwargs: dict = field(default_factory=dict)

    def options(self) -> dict:
        return {"name": self.name, "target": self._target_, "weight_decay": self.weight_decay, **self.kwargs}


def _custom(kind, group: str, node: dict):
    """A plain preset (a dict) as its group's config: the group's own keys into their fields, the
    rest into ``kwargs``; ``name`` defaults to the target's last part, lower case."""
    from spectral_sweep.errors import UsageError

    values = dict(node)
    target = values.get("_target_")
    if not isinstance(target, str) or not target:
        raise UsageError(f"the {group} preset has neither a schema nor a _target_; name its constructor "
                         f"with _target_: package.module.name")
    own = {f.name for f in dataclasses.fields(kind)} - {"kwargs"}
    fields = {k: values.pop(k) for k in list(values) if k in own}
    fields.setdefault("name", target.rpartition(".")[2].lower())
    if kind is CustomDatasetConfig:
        fields.setdefault("root", os.environ.get("SPECTRAL_SWEEP_DATA", "data"))
        if isinstance(fields.get("budget"), dict):   # neither steps nor epochs: the schema's default
            fields["budget"] = Budget(**fields["budget"])
            if not fields["budget"].is_set():
                del fields["budget"]
    if kind is CustomModelConfig:
        fields["width"] = values.get("width", 1.0)
    return kind(**fields, kwargs=values)
