"""Every knob and its default, in one place: the typed schema of the Hydra config.

Each config group (model, dataset, optimizer, train, search, spectrum, sharpness) is a dataclass
here, registered in Hydra's ConfigStore; the YAML files under conf/ are presets on top that set
only what differs (``conf/model/vgg16.yaml`` names the network, ``conf/optimizer/adamw.yaml`` its
weight decay). A value of the wrong type or a key that does not exist is refused by OmegaConf before any
job starts. The CLI turns the composed config into a ``Config`` object (``OmegaConf.to_object``)
and hands that to ``job.run_point``; nothing below the CLI reads Hydra objects.

Options that belong to one choice only (VGG's dropout, the embedded dataset's size, Adam's betas)
live in a subclass whose fields are the constructor's keyword arguments: ``options()`` hands them
over as they are.

From Python, ``compose("model=vgg11", "batch=32")`` gives the same ``Config`` the CLI would.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from omegaconf import MISSING

from .ranges import (
    FRACTION,
    NON_NEGATIVE,
    OPEN_FRACTION,
    POSITIVE,
    POSITIVE_INT,
    Range,
    each,
    field_problems,
    knob,
    maybe,
)


def _config_dir() -> str:
    """conf/ ships inside the wheel as spectral_sweep/conf; in a source checkout it is ../conf."""
    here = Path(__file__).resolve().parent
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


# ----------------------------------------------------------------------------------- dataset

@dataclass
class Budget:
    """The length of one trial: ``epochs`` wins when both are set."""

    steps: int | None = knob(None, maybe(POSITIVE_INT))
    epochs: float | None = knob(None, maybe(POSITIVE))

    def is_set(self) -> bool:
        return self.steps is not None or self.epochs is not None


@dataclass
class DatasetConfig:
    _target_: str = MISSING      # data.py's builder, a callable returning (train, test) datasets, or a
                                 # torchvision-style class taking root, train and transform
    name: str = MISSING          # the dataset's name in folders and tables
    root: str = DATA_ROOT        # where the files are (SPECTRAL_SWEEP_DATA, else ./data)
    # keep this many training samples (seeded, class-balanced); null: all
    subset: int | None = knob(None, maybe(POSITIVE_INT))
    test_subset: int | None = knob(None, maybe(POSITIVE_INT))   # likewise for the test split
    budget: Budget = field(default_factory=lambda: Budget(epochs=10))  # a trial's length on this data,
                                 # unless train.steps / train.epochs say otherwise

    def options(self) -> dict:
        """The dataset's own settings, the keyword arguments of its loader in data.py."""
        return _options(self, DatasetConfig)

    def known_train_size(self) -> int | None:
        """Training samples, where known without reading the data: a batch larger fails before any work."""
        full = TRAIN_SIZES.get(self.name, getattr(self, "train_size", None))
        full = full if isinstance(full, int) and full > 0 else None
        return self.subset if self.subset is not None and (full is None or self.subset <= full) else full

    def known_channels(self) -> int | None:
        """Channels of the images, where known without reading the data: the model is built for them."""
        return 3


class VisionClass(Choice):
    """The torchvision datasets that ``vision.torchvision_data`` reads (MNIST-style ones are grey)."""

    MNIST = "MNIST"
    FashionMNIST = "FashionMNIST"
    KMNIST = "KMNIST"
    CIFAR10 = "CIFAR10"
    CIFAR100 = "CIFAR100"
    SVHN = "SVHN"


@dataclass
class TorchvisionConfig(DatasetConfig):
    """One of torchvision's in-memory image datasets (vision.py): its preset names the class, the
    normalisation and the augmentation; the defaults are CIFAR's augmentation."""

    torchvision_class: VisionClass = MISSING
    mean: list[float] = knob(MISSING, each(Range(0, 1)))   # per channel, of pixels in [0, 1]
    std: list[float] = knob(MISSING, each(POSITIVE))   # per channel (one value: grey images)
    crop_padding: int = knob(4, Range(0, integer=True))   # random crop after this many px of zero padding; 0: none
    flip: bool = True            # random horizontal flip (off for digits: a mirrored digit is another glyph)
    download: bool = False       # fetch the files when they are missing (CIFAR-100: 161 MB)

    def known_channels(self) -> int | None:
        return len(self.mean) if isinstance(self.mean, list) else None

    def problems(self, config):
        yield (None if len(self.mean) == len(self.std) else
               f"dataset.mean and dataset.std need a value per channel each, got {len(self.mean)} and {len(self.std)}")


@dataclass
class ImageNetConfig(DatasetConfig):
    num_workers: int = knob(8, Range(0, integer=True))   # DataLoader processes decoding JPEGs
    budget: Budget = field(default_factory=lambda: Budget(epochs=1))


@dataclass
class ImageNet32Config(DatasetConfig):
    budget: Budget = field(default_factory=lambda: Budget(epochs=2))


@dataclass
class SyntheticConfig(DatasetConfig):
    """The embedded CIFAR-shaped task: no files, no network."""

    num_classes: int = knob(10, Range(2, integer=True))
    train_size: int = knob(10000, POSITIVE_INT)
    test_size: int = knob(2000, POSITIVE_INT)
    noise: float = knob(0.05, NON_NEGATIVE)   # std of the white pixel noise, relative to the class texture
    # one fixed dataset, like CIFAR, whatever the run's seed; null: follows seed
    data_seed: int | None = knob(0, maybe(Range(0, integer=True)))
    budget: Budget = field(default_factory=lambda: Budget(steps=300))


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
        from .errors import UsageError

        law = self.law
        if law is None:
            from .theory import expected_exponent

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
    """How the learner turns Ritz values into lr and momentum (learner.py says what each computes)."""

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
    """How one trial trains and how it is judged (outcomes.py has the rules)."""

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
    compile: str = "false"       # true | false | auto: compile once per point where it pays (fastpath.py)
    eval_batch_size: int = knob(500, POSITIVE_INT)
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


# ------------------------------------------------------------------------------------ search

class Method(Choice):
    adaptive = "adaptive"        # fresh seed per trial; each edge fitted with a 95% interval (adaptive.py)
    bisect = "bisect"            # one seed: find an lr that trains, then bisect both edges
    grid = "grid"                # one trial per lr of search.lrs
    fixed = "fixed"              # one trial at optimizer.lr
    none = "none"                # no trials (a spectrum-only job)


@dataclass
class SearchConfig:
    """How lr_max is located: search.find_lr_edges reads these."""

    method: Method = Method.adaptive
    start: float | None = None   # cold-start guess; null: optimizer.lr
    precision: float = 0.2       # adaptive: stop when the 95% interval of log lr_max is +- this (and of
                                 # log lr_blowup with blowup=true); 0.2 makes 3 batch sizes over 4x
                                 # decisive in ~80% of simulated sweeps (spectral_sweep/calibration.py)
    max_trials: int = 30         # adaptive: at most this many trials per batch size
    parallel: int | None = None  # adaptive: trials per round, run at once; null: auto (parallel.py)
    warm_start: bool = True      # start from a neighbouring batch size's lr_max scaled by the law under test
    tolerance: float = 1.189207115   # bisect: final bracket ratio hi/lo, 2^(1/4); both: the finest gap searched
    step: float = 4.0            # bracketing factor of a cold start (a warm start uses its square root)
    lr_min: float = 1e-6         # nothing trained in [lr_min, lr_max_cap]: "nothing_trains"
    lr_max_cap: float = 100.0    # still trained here: lr_max is a lower bound
    blowup: bool = True          # also bisect the blow-up edge where it lies above lr_max
    reference: float | None = 0.25   # one more trial at this x lr_max: what a comfortable lr reaches
    lrs: list[float] = field(default_factory=lambda: [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0])  # grid


# the search's valid ranges, kept beside SearchConfig (not inside it, so it stays one block)
SEARCH_RANGES = {"start": maybe(POSITIVE), "precision": POSITIVE, "max_trials": POSITIVE_INT,
                 "parallel": maybe(POSITIVE_INT), "tolerance": Range(1, low_open=True), "step": Range(1, low_open=True),
                 "lr_min": POSITIVE, "lr_max_cap": POSITIVE, "reference": maybe(POSITIVE), "lrs": each(POSITIVE)}


def _search_problems(search: SearchConfig):
    for key, valid in SEARCH_RANGES.items():
        yield valid.problem(f"search.{key}", getattr(search, key, None))
    yield (None if search.lr_max_cap > search.lr_min else
           f"search.lr_max_cap ({search.lr_max_cap:g}) must lie above search.lr_min ({search.lr_min:g})")
    yield "search=grid needs at least one lr in search.lrs" if str(search.method) == "grid" and not search.lrs else None


# ---------------------------------------------------------------------------------- spectrum

class Operator(Choice):
    hessian = "hessian"
    ggn = "ggn"                  # generalised Gauss-Newton


class BNMode(Choice):
    train = "train"              # batch statistics (the paper's choice)
    eval = "eval"                # running statistics


class Where(Choice):
    init = "init"
    trained = "trained"          # train_steps at optimizer.lr first
    checkpoint = "checkpoint"


class Product(Choice):
    auto = "auto"
    double_backward = "double_backward"
    forward_over_reverse = "forward_over_reverse"


class Extremes(Choice):
    both = "both"                # lambda_max and lambda_min
    largest = "largest"          # lambda_max only: on a trained network ~4x fewer products


@dataclass
class SpectrumConfig:
    """Lanczos on mini-batch Hessians: lambda_max / lambda_min over random batches, as the paper measured."""

    enabled: bool = False
    operator: Operator = Operator.hessian
    bn_mode: BNMode = BNMode.train
    at: Where = Where.init
    train_steps: int = knob(200, POSITIVE_INT)
    checkpoint: str | None = None    # with at=checkpoint: a state_dict file (loaded with weights_only=True)
    # null: this job's batch size; or a list, e.g. [1,2,4,...,1024]
    batch_sizes: list[int] | None = knob(None, maybe(each(POSITIVE_INT)))
    n_batches: int = knob(10, POSITIVE_INT)   # random batches per size (the paper used 10)
    extremes: Extremes = Extremes.both
    iters: int = knob(100, POSITIVE_INT)   # Lanczos steps at most (the paper's 100); stops early at tol
    tol: float = knob(1e-3, POSITIVE)   # relative residual at which the extremes count as converged
    full: bool = False           # also the full-data operator, accumulated in chunks
    full_subset: int | None = knob(None, maybe(POSITIVE_INT))   # ... over this many random training samples (null: all)
    chunk: int = knob(512, POSITIVE_INT)
    density_batch_sizes: list[int] = knob(valid=each(POSITIVE_INT), factory=list)   # SLQ densities for these sizes
    density_vectors: int = knob(4, POSITIVE_INT)   # random start vectors per density
    density_iters: int | None = knob(None, maybe(POSITIVE_INT))   # Lanczos steps per density vector (null: iters)
    noise_scale: bool = True     # gradient noise scale B_noise from the smallest and largest size ...
    noise_batch_sizes: list[int] | None = knob(None, maybe(each(POSITIVE_INT)))   # ... or from these two sizes
    warm_start: bool = True      # start each Lanczos from the previous run's extreme Ritz vectors
    method: Product = Product.auto   # how a curvature product is computed; auto: the cheaper of both, timed

    def problems(self, config):
        """Sizes the data can hold and a checkpoint that loads; only when the spectrum is measured."""
        if not self.enabled:
            return
        known = config.dataset.known_train_size()
        yield _within("spectrum.batch_sizes", self.batch_sizes, known)
        yield _within("spectrum.density_batch_sizes", self.density_batch_sizes, known)
        yield _within("spectrum.full_subset", [self.full_subset] if self.full_subset else [], known)
        noise = self.noise_batch_sizes
        yield (None if noise is None or (len(noise) == 2 and noise[0] != noise[1]) else
               f"spectrum.noise_batch_sizes must be two different batch sizes, got {noise}")
        yield _checkpoint_problem(self.checkpoint) if str(self.at) == "checkpoint" else None


# ---------------------------------------------------------------------------------- the whole

@dataclass
class Config:
    """One job = one sweep point (model, dataset, optimizer, batch size, seed)."""

    model: Any = MISSING         # a ModelConfig: a built-in preset's schema, or a user's plain preset
    dataset: Any = MISSING       # a DatasetConfig, likewise
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


def compose(*overrides: str, config_dir: str | None = None) -> Config:
    """The typed config that ``spectral-sweep OVERRIDES`` would give its first job."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    register()
    with initialize_config_dir(config_dir=config_dir or CONFIG_DIR, version_base="1.3"):
        cfg = hydra_compose("config", overrides=list(overrides))
    return to_config(cfg)


def to_config(cfg) -> Config:
    """A composed DictConfig as a ``Config`` object, interpolations resolved."""
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
    return config


# ------------------------------------------------------------------------------ user presets

@dataclass
class CustomModelConfig(ModelConfig):
    """A user's model preset without a schema: every key but _target_ and name is an argument."""

    kwargs: dict = field(default_factory=dict)

    def options(self) -> dict:
        return dict(self.kwargs)


@dataclass
class CustomDatasetConfig(DatasetConfig):
    """A user's dataset preset without a schema: root, subset, test_subset and budget as for any
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
    from .errors import UsageError

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
        if isinstance(fields.get("budget"), dict):
            fields["budget"] = Budget(**fields["budget"])
    if kind is CustomModelConfig:
        fields["width"] = values.get("width", 1.0)
    return kind(**fields, kwargs=values)


def check(config: Config) -> None:
    """Values that type right but mean nothing (a negative batch, an infinite lr, a checkpoint that
    is not there): one ``UsageError`` naming the first, before any work is done."""
    from .errors import UsageError

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
    yield from _folder_problems(config.out_dir, config.name)


def _folder_problems(out_dir: str, name: str):
    """``out_dir`` must say where; ``name`` must be a folder inside it (never out_dir itself or above)."""
    from pathlib import PurePath

    if not str(out_dir).strip():
        yield "out_dir may not be empty; give a folder, e.g. out_dir=outputs"
    if not str(name).strip():
        yield "name may not be empty: it is the sweep's folder under out_dir, e.g. name=sweep"
    elif PurePath(name).is_absolute() or ".." in PurePath(name).parts:
        yield f"name must be a folder inside out_dir (not absolute, no '..'), got {name!r}"


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


def _within(name: str, sizes, known: int | None) -> str | None:
    """A batch of ``sizes`` drawn from a training set of ``known`` samples (None: not known yet)."""
    too_big = [b for b in sizes or [] if known is not None and b > known]
    return f"{name}={too_big[0]} is larger than the training set ({known} samples)" if too_big else None


def _checkpoint_problem(path: str | None) -> str | None:
    """Why ``spectrum.checkpoint`` cannot be measured, or None: it must exist and load as weights."""
    from pathlib import Path

    if not (path and Path(path).is_file()):
        return f"spectrum.at=checkpoint needs spectrum.checkpoint=FILE, an existing state_dict; got {path!r}"
    import torch  # only here: a checkpoint is read by torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        return f"spectrum.checkpoint={path} does not load as weights ({type(e).__name__})"
    if not isinstance(state, dict):
        return f"spectrum.checkpoint={path} holds a {type(state).__name__}, not a state_dict"
    return None
