"""Every knob and its default, in one place: the typed schema of the Hydra config.

Each config group (model, dataset, optimizer, train, search, spectrum, sharpness) is a dataclass
here, registered in Hydra's ConfigStore; the YAML files under conf/ are presets on top that set
only what differs (``conf/model/vgg16.yaml`` names the network, ``conf/optimizer/adamw.yaml`` its
weight decay). A value of the wrong type or a key that does not exist is refused by OmegaConf before any
job starts. The CLI turns the composed config into a ``Config`` object (``OmegaConf.to_object``)
and hands that to ``point.run.run_point``; nothing below the CLI reads Hydra objects.

Options that belong to one choice only (VGG's dropout, the embedded dataset's size, Adam's betas)
live in a subclass whose fields are the constructor's keyword arguments: ``options()`` hands them
over as they are.

From Python, ``compose("model=vgg11", "batch=32")`` gives the same ``Config`` the CLI would.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from omegaconf import MISSING

from spectral_sweep.config.base import CONFIG_DIR, DATA_ROOT
from spectral_sweep.config.custom import CustomDatasetConfig, CustomModelConfig, CustomOptimizerConfig, _custom
from spectral_sweep.config.dataset import ImageNet32Config, ImageNetConfig, SyntheticConfig, TorchvisionConfig
from spectral_sweep.config.model import ModelConfig, PreResNetConfig, VGGConfig, WideResNetConfig
from spectral_sweep.config.optimizer import AdamConfig, AdamWConfig, LanczosSGDConfig, SGDConfig
from spectral_sweep.config.ranges import (
    POSITIVE_INT,
    Range,
    field_problems,
    knob,
)
from spectral_sweep.config.search import SearchConfig, _search_problems
from spectral_sweep.config.spectrum import SpectrumConfig
from spectral_sweep.config.train import SharpnessConfig, TrainConfig

# ---------------------------------------------------------------------------------- the whole

@dataclass
class Config:
    """One job = one sweep point (model, dataset, optimizer, batch size, seed)."""

    model: Any = MISSING         # a ModelConfig: a built-in preset's schema, or a user's plain preset
    # a DatasetConfig, likewise; a user's plain preset is merged onto the keys every dataset has
    # (root, subset, test_subset, budget, stream), so `dataset.subset=64` works on it as on a built-in one
    dataset: Any = field(default_factory=lambda: copy.deepcopy(DATASET_KEYS))
    optimizer: Any = MISSING     # an OptimizerConfig, likewise
    train: TrainConfig = field(default_factory=TrainConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    spectrum: SpectrumConfig = field(default_factory=SpectrumConfig)
    sharpness: SharpnessConfig = field(default_factory=SharpnessConfig)
    batch: int = knob(128, POSITIVE_INT)   # the batch size B of this sweep point
    seed: int = knob(0, Range(0, integer=True))   # model init, data order, augmentation
    device: str = "auto"         # auto (CUDA when present) | cpu | cuda | cuda:1
    name: str = "sweep"          # the sweep's folder under out_dir; rerun with the same name to resume
    out_dir: str = "outputs"
    quiet: bool = False          # no progress bars
    report: bool = True          # write tables and plots when the sweep ends

    def to_dict(self) -> dict:
        """Plain JSON-able values (enums as their strings)."""
        return _plain(dataclasses.asdict(self))


def _plain(x):
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_plain(v) for v in x]
    return x.value if isinstance(x, Enum) else x


DATASET_KEYS = {"root": DATA_ROOT, "subset": None, "test_subset": None, "budget": {"steps": None, "epochs": None},
                "stream": "auto"}

SCHEMAS = {
    "model": {"vgg": VGGConfig, "preresnet": PreResNetConfig, "wide_resnet": WideResNetConfig,
              "plain": ModelConfig},
    "dataset": {"torchvision": TorchvisionConfig, "imagenet": ImageNetConfig, "imagenet32": ImageNet32Config,
                "synthetic": SyntheticConfig},
    "optimizer": {"sgd": SGDConfig, "adam": AdamConfig, "adamw": AdamWConfig, "lanczos_sgd": LanczosSGDConfig},
}


def register() -> None:
    """Put the schemas into Hydra's ConfigStore: ``config_schema`` for the whole, and
    ``schema/<group>/<kind>`` that each preset YAML names in its defaults list, e.g.
    ``/schema/model/vgg@_here_`` (its own group, so ``--help`` lists the presets apart)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    store.store(name="config_schema", node=Config)
    for group, kinds in SCHEMAS.items():
        for kind, schema in kinds.items():
            store.store(group=f"schema/{group}", name=kind, node=schema)


@contextlib.contextmanager
def hydra_instance(config_dir: str | None = None):
    """A Hydra instance with the search path the real command gets (the package's conf/, then
    the user's --config-dir in front of it); cleared afterwards so the command can start its own."""
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.config_search_path import SearchPathQuery
    from hydra.core.global_hydra import GlobalHydra

    from spectral_sweep.errors import UsageError

    register()
    search_path = create_config_search_path(CONFIG_DIR)
    if config_dir is not None:
        folder = os.path.abspath(config_dir)
        if not os.path.isdir(folder):
            raise UsageError(f"--config-dir {folder} is not a folder")
        search_path.prepend(provider="command-line", path=f"file://{folder}", anchor=SearchPathQuery(provider="schema"))
    GlobalHydra.instance().clear()
    try:
        yield Hydra.create_main_hydra2(task_name="spectral-sweep", config_search_path=search_path)
    finally:
        GlobalHydra.instance().clear()


def compose(*overrides: str, config_dir: str | None = None) -> Config:
    """The typed config that ``spectral-sweep [--config-dir DIR] OVERRIDES`` would give its first
    job: the package's presets, and the user's ``config_dir`` in front of them."""
    from hydra.types import RunMode

    with hydra_instance(config_dir) as hydra:
        cfg = hydra.compose_config("config", overrides=list(overrides), run_mode=RunMode.RUN,
                                   with_log_configuration=False)
    return to_config(cfg, overrides)


def to_config(cfg, overrides=()) -> Config:
    """A composed DictConfig as a ``Config`` object, interpolations resolved; ``overrides``, the
    job's command line, decide which of a budget's steps and epochs the user gave."""
    from omegaconf import OmegaConf, open_dict

    cfg = cfg.copy()
    if "hydra" in cfg:   # compose() keeps Hydra's node; a job's config has none
        with open_dict(cfg):
            del cfg["hydra"]
    OmegaConf.resolve(cfg)
    config = OmegaConf.to_object(cfg)
    for group, kind in (("model", CustomModelConfig), ("dataset", CustomDatasetConfig),
                        ("optimizer", CustomOptimizerConfig)):
        node = getattr(config, group)
        if isinstance(node, dict):
            setattr(config, group, _custom(kind, group, node))
    _budget_as_given(config, overrides)
    return config


#: the two ways to give a trial's length (epochs win when both are set)
BUDGET_KEYS = (("dataset", "budget", "steps"), ("dataset", "budget", "epochs"), ("train", "steps"), ("train", "epochs"))


def _budget_as_given(config: Config, overrides) -> None:
    """A budget set on the command line replaces its preset's: ``dataset.budget.steps=50`` on a
    dataset whose preset counts epochs clears those epochs (which would win and make the override
    do nothing); likewise ``train.steps`` / ``train.epochs`` against an experiment's."""
    given = {}
    for line in overrides:
        key, sep, value = str(line).partition("=")
        if sep and value.strip() != "null":
            given[key.lstrip("+~")] = value
    for path in BUDGET_KEYS:
        other = (*path[:-1], "epochs" if path[-1] == "steps" else "steps")
        if ".".join(path) in given and ".".join(other) not in given:
            setattr(_node(config, other[:-1]), other[-1], None)


def _node(config: Config, path: tuple):
    node = config
    for part in path:
        node = getattr(node, part)
    return node


def check(config: Config) -> None:
    """Values that type right but mean nothing (a negative batch, an infinite lr, a checkpoint that
    is not there): one ``UsageError`` naming the first, before any work is done."""
    from spectral_sweep.errors import UsageError

    problem = next(problems(config), None)
    if problem is not None:
        raise UsageError(problem)


def problems(config: Config):
    """Each bad value as a one-line message: first every field outside its declared range (the
    top-level keys, then each group in order), then the relations between fields."""
    top = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    scalars = [f for f in dataclasses.fields(config) if not dataclasses.is_dataclass(top[f.name])]
    for f in scalars:
        valid = f.metadata.get("range")
        if valid is not None and (problem := valid.problem(f.name, top[f.name])):
            yield problem
    for name, node in top.items():
        if dataclasses.is_dataclass(node):
            yield from field_problems(node, f"{name}.")
    yield from (p for p in _search_problems(config.search) if p)
    for node in _nodes(config):
        relations = getattr(node, "problems", None)
        if relations is not None:
            yield from (p for p in relations(config) if p)
    yield from (p for p in _top_problems(config) if p)


def _nodes(node):
    """Every config dataclass inside ``node``, depth first."""
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if dataclasses.is_dataclass(value):
            yield value
            yield from _nodes(value)


def _top_problems(config: Config):
    """The point itself: a batch the data can hold, a device that exists, a folder inside out_dir."""
    known = config.dataset.known_train_size()
    yield (None if known is None or config.batch <= known
           else f"batch size {config.batch} is larger than the training set ({known} samples)")
    yield _device_problem(config.device)
    yield _budget_problem(config)
    yield _start_problem(config)
    yield from _folder_problems(config.out_dir, config.name)


def _budget_problem(config: Config) -> str | None:
    """A trial budget in epochs that rounds to no step at this batch size (epochs win over steps),
    where the training set's size is known before reading it (a trial drops the last partial batch)."""
    budget, known = config.train.budget(config.dataset), config.dataset.known_train_size()
    if budget.epochs is None or known is None:
        return None
    per_epoch = known // config.batch
    steps = round(budget.epochs * per_epoch)
    if steps >= 1:
        return None
    key = "train.epochs" if config.train.epochs is not None else "dataset.budget.epochs"
    return (f"the trial budget comes to {steps} steps: {budget.epochs:g} epochs of {per_epoch} steps "
            f"({known} samples in batches of {config.batch}); raise {key} or set train.steps alone")


def _start_problem(config: Config) -> str | None:
    """An lr a search would start from outside [lr_min, lr_max_cap] (search=fixed trains at any lr)."""
    search = config.search
    if str(search.method) not in ("adaptive", "bisect"):
        return None
    start, key = (search.start, "search.start") if search.start is not None else (config.optimizer.lr, "optimizer.lr")
    if search.lr_min <= start <= search.lr_max_cap:
        return None
    return (f"{key}={start:g} lies outside [search.lr_min, search.lr_max_cap] = [{search.lr_min:g}, "
            f"{search.lr_max_cap:g}], the learning rates a search may try; give an lr inside it")


def _folder_problems(out_dir: str, name: str):
    """``out_dir`` must say where; ``name`` must be a folder inside it (never out_dir itself or above)."""
    from pathlib import PurePath

    if not str(out_dir).strip():
        yield "out_dir may not be empty; give a folder, e.g. out_dir=outputs"
    if not str(name).strip():
        yield "name may not be empty: it is the sweep's folder under out_dir, e.g. name=sweep"
    elif PurePath(name).is_absolute() or ".." in PurePath(name).parts:
        yield f"name must be a folder inside out_dir (not absolute, no '..'), got {name!r}"
    elif not PurePath(name).parts or _same_folder(out_dir, name):
        yield (f"name={name} is out_dir itself; the sweep would write its files among out_dir's own: "
               "give the sweep a folder of its own, e.g. name=sweep")
    else:
        longest = max(PurePath(name).parts, key=lambda part: len(part.encode()), default="")
        if len(longest.encode()) > NAME_MAX:
            yield (f"name has a folder name of {len(longest.encode())} bytes; the filesystem allows at most "
                   f"{NAME_MAX}: shorten name")


def _same_folder(out_dir: str, name: str) -> bool:
    """Does out_dir/name lead back to out_dir itself (name=./, or a link inside out_dir pointing back at it)?"""
    import os

    return os.path.realpath(os.path.join(out_dir, name)) == os.path.realpath(out_dir)


NAME_MAX = 255   # bytes in one file name on ext4, XFS, APFS and NTFS alike


def _device_problem(device: str) -> str | None:
    """A device spelled wrong, or one this machine does not have (torch loads only for cuda/mps)."""
    import re

    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", device):
        return f"device must be auto, cpu, mps, cuda or cuda:N, got {device!r}"
    if device in ("auto", "cpu"):
        return None
    import torch

    if device == "mps":
        return None if torch.backends.mps.is_available() else "device=mps but this machine has no MPS device"
    count = torch.cuda.device_count()
    index = int(device.partition(":")[2] or 0)
    if index >= count:
        return f"device={device} but {count} CUDA device{'s' * (count != 1)} {'is' if count == 1 else 'are'} visible"
    return None
