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
from dataclasses import dataclass, field
from enum import Enum

from omegaconf import MISSING

DATA_ROOT = "${oc.env:SPECTRAL_SWEEP_DATA,data}"
TRAIN_SIZES = {"cifar10": 50_000, "cifar100": 50_000, "imagenet32": 1_281_167}   # the published splits


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
    name: str = MISSING          # a key of models.MODELS
    width: float = 1.0           # channel multiplier (0.125 makes a CPU-sized network)

    def options(self) -> dict:
        """Keyword arguments of ``models.build_model`` besides name and num_classes."""
        return {"width": self.width, **_options(self, ModelConfig)}


@dataclass
class VGGConfig(ModelConfig):
    dropout: float = 0.5         # in the Dropout-512-ReLU-Dropout-512-ReLU classifier


@dataclass
class PreResNetConfig(ModelConfig):
    depth: int = MISSING         # 9n+2 (bottleneck) or 6n+2 (basic)
    block: str = "auto"          # auto (basic up to depth 44, bottleneck above) | basic | bottleneck


@dataclass
class WideResNetConfig(ModelConfig):
    depth: int = MISSING
    widen_factor: int = MISSING
    dropout: float = 0.0


# ----------------------------------------------------------------------------------- dataset

@dataclass
class Budget:
    """The length of one trial: ``epochs`` wins when both are set."""

    steps: int | None = None
    epochs: float | None = None

    def is_set(self) -> bool:
        return self.steps is not None or self.epochs is not None

    def describe(self) -> str:
        return f"{self.epochs:g} epochs" if self.epochs is not None else f"{self.steps} steps"


@dataclass
class DatasetConfig:
    name: str = MISSING
    root: str = DATA_ROOT        # where the files are (SPECTRAL_SWEEP_DATA, else ./data)
    subset: int | None = None    # keep this many training samples (seeded, class-balanced); null: all
    test_subset: int | None = None   # likewise for the test split
    budget: Budget = field(default_factory=lambda: Budget(epochs=10))  # a trial's length on this data,
                                 # unless train.steps / train.epochs say otherwise

    def options(self) -> dict:
        """The dataset's own settings, the keyword arguments of its loader in data.py."""
        return _options(self, DatasetConfig)

    def known_train_size(self) -> int | None:
        """Training samples, where known without reading the data: a batch larger fails before any work."""
        full = TRAIN_SIZES.get(self.name, getattr(self, "train_size", None))
        full = full if isinstance(full, int) else None
        return self.subset if self.subset is not None and (full is None or self.subset <= full) else full


@dataclass
class CifarConfig(DatasetConfig):
    download: bool = False       # fetch the archive (CIFAR-100: 161 MB) when it is missing


@dataclass
class ImageNetConfig(DatasetConfig):
    num_workers: int = 8         # DataLoader processes decoding JPEGs
    budget: Budget = field(default_factory=lambda: Budget(epochs=1))


@dataclass
class ImageNet32Config(DatasetConfig):
    budget: Budget = field(default_factory=lambda: Budget(epochs=2))


@dataclass
class SyntheticConfig(DatasetConfig):
    """The embedded CIFAR-shaped task: no files, no network."""

    num_classes: int = 10
    train_size: int = 10000
    test_size: int = 2000
    noise: float = 0.05          # std of the white pixel noise, relative to the class texture
    data_seed: int | None = 0    # one fixed dataset, like CIFAR, whatever the run's seed; null: follows seed
    budget: Budget = field(default_factory=lambda: Budget(steps=300))


# --------------------------------------------------------------------------------- optimizer

@dataclass
class OptimizerConfig:
    name: str = MISSING          # sgd | adam | adamw | lanczos_sgd
    lr: float = 0.05             # peak lr of search=fixed, and the cold start of search=bisect
    weight_decay: float = 0.0

    def options(self) -> dict:
        """Keyword arguments of ``optim.build_optimizer`` besides params and lr."""
        return {"name": self.name, "weight_decay": self.weight_decay, **_options(self, OptimizerConfig)}


@dataclass
class SGDConfig(OptimizerConfig):
    """SGD with heavy-ball (or Nesterov) momentum: the law under test is lr_max ~ B."""

    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4


@dataclass
class AdamConfig(OptimizerConfig):
    """Adam or AdamW: the law under test is lr_max ~ sqrt(B)."""

    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8


class Rule(Choice):
    """How the learner turns Ritz values into lr and momentum (learner.py says what each computes)."""

    heavy_ball = "heavy_ball"
    nesterov = "nesterov"
    gd = "gd"
    ssgd = "ssgd"


@dataclass
class LearnerConfig:
    """The on-the-fly Lanczos learner (learner.LanczosLearner): lr and momentum from the curvature."""

    every: int = 1200            # steps between refreshes (first at step 0); ~3 CIFAR epochs at B=128,
                                 # where refreshes cost < 5% of training (scripts/bench_learner.py)
    iters: int = 20              # Lanczos steps (Hessian-vector products) per refresh
    batch: int = 128             # samples of the fixed curvature batch (drawn once per trial from the seed)
    rule: Rule = Rule.heavy_ball
    lr_cap: float | None = 1.0   # uncapped heavy ball chose lr ~ 23 on a tiny CNN once its curvature
                                 # batch flattened, and diverged
    momentum_cap: float | None = 0.99
    tol: float | None = None     # early stop of the refresh's Lanczos (null: all iters)
    warm_weight: float = 0.01    # weight of the previous top Ritz vector in the next start vector


@dataclass
class LanczosSGDConfig(SGDConfig):
    """Plain SGD whose lr and momentum the learner sets: it chooses its own lr, so a job runs one
    trial whatever the search."""

    lr: float = 0.01             # used only until the first refresh, which happens at step 0
    momentum: float = 0.0        # the momentum of rule=ssgd (the other rules set their own)
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

    steps: int | None = None     # trial length; null with epochs null: the dataset's budget
    epochs: float | None = None  # wins over steps when set
    schedule: Schedule = Schedule.constant   # multipliers of the peak lr
    warmup: float = 0.0          # fraction of the budget spent on a linear warmup
    divergence_factor: float = 2.0   # diverged: smoothed loss above this x the initial (or not finite)
    stall_loss_margin: float = 0.1   # stalled unless the final loss ends this fraction below min(initial, ln C)
    stall_acc_margin: float = 0.05   # ... and test accuracy gets this fraction of the way from chance to 1
    precision: Precision = Precision.auto   # auto: fp32 or bf16 autocast, the faster timed on the point
    channels_last: str = "auto"  # true | false | auto: the faster memory format, timed on the point
    compile: str = "false"       # true | false | auto: compile once per point where it pays (fastpath.py)
    eval_batch_size: int = 500
    micro_batch: int | None = None   # accumulate gradients over pieces of this size when B does not fit;
                                 # BatchNorm statistics then come from each piece

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


@dataclass
class SharpnessConfig:
    """Tracking the top Hessian eigenvalue during each trial (learner.SharpnessTracker)."""

    every: int | None = None     # steps between measurements (null: off)
    batch: int = 128             # at most this many samples (and at most B) in the fixed batch
    iters: int = 10
    tol: float | None = 1e-2


# ------------------------------------------------------------------------------------ search

class Method(Choice):
    bisect = "bisect"            # find an lr that trains, then bisect both edges
    grid = "grid"                # one trial per lr of search.lrs
    fixed = "fixed"              # one trial at optimizer.lr
    none = "none"                # no trials (a spectrum-only job)


@dataclass
class SearchConfig:
    """How lr_max is located: search.find_lr_edges reads these."""

    method: Method = Method.bisect
    start: float | None = None   # cold-start guess; null: optimizer.lr
    warm_start: bool = True      # start from a neighbouring batch size's lr_max scaled by the law under test
    tolerance: float = 1.189207115   # final bracket ratio hi/lo: 2^(1/4)
    step: float = 4.0            # bracketing factor of a cold start (a warm start uses its square root)
    lr_min: float = 1e-6         # nothing trained in [lr_min, lr_max_cap]: "nothing_trains"
    lr_max_cap: float = 100.0    # still trained here: lr_max is a lower bound
    blowup: bool = True          # also bisect the blow-up edge where it lies above lr_max
    reference: float | None = 0.25   # one more trial at this x lr_max: what a comfortable lr reaches
    lrs: list[float] = field(default_factory=lambda: [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0])  # grid


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
    train_steps: int = 200
    checkpoint: str | None = None    # with at=checkpoint: a state_dict file (loaded with weights_only=True)
    batch_sizes: list[int] | None = None   # null: this job's batch size; or a list, e.g. [1,2,4,...,1024]
    n_batches: int = 10          # random batches per size (the paper used 10)
    extremes: Extremes = Extremes.both
    iters: int = 100             # Lanczos steps at most (the paper's 100); stops early at tol
    tol: float = 1e-3            # relative residual at which the extremes count as converged
    full: bool = False           # also the full-data operator, accumulated in chunks
    full_subset: int | None = None   # ... over this many random training samples (null: all)
    chunk: int = 512
    density_batch_sizes: list[int] = field(default_factory=list)   # SLQ densities for these sizes
    density_vectors: int = 4     # random start vectors per density
    density_iters: int | None = None   # Lanczos steps per density vector (null: iters)
    noise_scale: bool = True     # gradient noise scale B_noise from the smallest and largest size ...
    noise_batch_sizes: list[int] | None = None   # ... or from these two sizes
    warm_start: bool = True      # start each Lanczos from the previous run's extreme Ritz vectors
    method: Product = Product.auto   # how a curvature product is computed; auto: the cheaper of both, timed


# ---------------------------------------------------------------------------------- the whole

@dataclass
class Config:
    """One job = one sweep point (model, dataset, optimizer, batch size, seed)."""

    model: ModelConfig = MISSING
    dataset: DatasetConfig = MISSING
    optimizer: OptimizerConfig = MISSING
    train: TrainConfig = field(default_factory=TrainConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    spectrum: SpectrumConfig = field(default_factory=SpectrumConfig)
    sharpness: SharpnessConfig = field(default_factory=SharpnessConfig)
    batch: int = 128             # the batch size B of this sweep point
    seed: int = 0                # model init, data order, augmentation
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
    "dataset": {"cifar": CifarConfig, "imagenet": ImageNetConfig, "imagenet32": ImageNet32Config,
                "synthetic": SyntheticConfig},
    "optimizer": {"sgd": SGDConfig, "adam": AdamConfig, "lanczos_sgd": LanczosSGDConfig},
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

    from .cli import CONFIG_DIR

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
    return OmegaConf.to_object(cfg)


def check(config: Config) -> None:
    """Values that type right but mean nothing (a negative batch, an infinite lr, a checkpoint that
    is not there): one ``UsageError`` naming the first, before any work is done."""
    from .errors import UsageError

    problem = next(_problems(config), None)
    if problem is not None:
        raise UsageError(problem)


def _problems(config: Config):
    """Each bad value as a one-line message, in the order a user reads the config."""
    import math
    import re

    def positive(name, value, integer=True, allow_none=False):
        if value is None and allow_none:
            return None
        if value is None or not (math.isfinite(value) and value > 0) or (integer and int(value) != value):
            kind = "a positive integer" if integer else "a positive number"
            return f"{name} must be {kind}{' or null' if allow_none else ''}, got {value!r}"
        return None

    opt, train, spec = config.optimizer, config.train, config.spectrum
    known = config.dataset.known_train_size()
    checks = [
        positive("batch", config.batch),
        None if known is None or config.batch <= known
        else f"batch size {config.batch} is larger than the training set ({known} samples)",
        None if config.seed >= 0 else f"seed must be an integer >= 0, got {config.seed}",
        positive("optimizer.lr", opt.lr, integer=False),
        None if math.isfinite(opt.weight_decay) and opt.weight_decay >= 0
        else f"optimizer.weight_decay must be >= 0, got {opt.weight_decay}",
        None if not hasattr(opt, "momentum") or 0 <= opt.momentum < 1
        else f"optimizer.momentum must lie in [0, 1), got {opt.momentum}",
        positive("train.steps", train.steps, allow_none=True),
        positive("train.epochs", train.epochs, integer=False, allow_none=True),
        positive("train.micro_batch", train.micro_batch, allow_none=True),
        None if train.micro_batch is None or train.micro_batch <= config.batch
        else f"train.micro_batch must be at most batch={config.batch}, got {train.micro_batch}",
        positive("train.eval_batch_size", train.eval_batch_size),
        None if 0 <= train.warmup < 1 else f"train.warmup must lie in [0, 1), got {train.warmup}",
        positive("sharpness.every", config.sharpness.every, allow_none=True),
        None if re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", config.device)
        else f"device must be auto, cpu, mps, cuda or cuda:N, got {config.device!r}",
    ]
    learner = getattr(opt, "learner", None)
    if learner is not None:
        checks += [positive(f"optimizer.learner.{k}", getattr(learner, k)) for k in ("every", "iters", "batch")]
    if spec.enabled:
        checks += [positive("spectrum.n_batches", spec.n_batches), positive("spectrum.iters", spec.iters),
                   positive("spectrum.chunk", spec.chunk), positive("spectrum.train_steps", spec.train_steps),
                   *[positive("spectrum.batch_sizes", b) for b in spec.batch_sizes or []],
                   *[positive("spectrum.density_batch_sizes", b) for b in spec.density_batch_sizes]]
        if str(spec.at) == "checkpoint":
            checks.append(_checkpoint_problem(spec.checkpoint))
    if str(config.search.method) == "grid":
        checks += [positive("search.lrs", lr, integer=False) for lr in config.search.lrs or [None]]
    yield from (c for c in checks if c)


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
