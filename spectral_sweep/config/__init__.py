"""Every knob and its default: the typed schema of the Hydra config, one module per config group.

``conf/<group>/`` holds the presets; ``config/<group>.py`` holds the dataclass each preset fills in
(``model.py``, ``dataset.py``, ``optimizer.py``, ``train.py``, ``search.py``, ``spectrum.py``).
``schema.py`` puts them together as ``Config`` (one job), composes it the way the CLI does, and checks
the values that type right but mean nothing. ``ranges.py`` declares each field's valid values beside the
field; ``targets.py`` resolves a preset's ``_target_``. Code below the job (data, trial, search,
curvature) takes its own group's settings, never the whole ``Config``.
"""

from spectral_sweep.config.base import CONFIG_DIR, DATA_ROOT, TRAIN_SIZES, Choice  # noqa: F401
from spectral_sweep.config.custom import CustomDatasetConfig, CustomModelConfig, CustomOptimizerConfig  # noqa: F401
from spectral_sweep.config.dataset import (  # noqa: F401
    Budget,
    DatasetConfig,
    ImageNet32Config,
    ImageNetConfig,
    SyntheticConfig,
    TorchvisionConfig,
    VisionClass,
)
from spectral_sweep.config.model import ModelConfig, PreResNetConfig, VGGConfig, WideResNetConfig  # noqa: F401
from spectral_sweep.config.optimizer import (  # noqa: F401
    AdamConfig,
    AdamWConfig,
    LanczosSGDConfig,
    LearnerConfig,
    OptimizerConfig,
    Rule,
    SGDConfig,
)
from spectral_sweep.config.schema import SCHEMAS, Config, check, compose, hydra_instance, problems, register, to_config  # noqa: F401
from spectral_sweep.config.search import SEARCH_RANGES, Method, SearchConfig  # noqa: F401
from spectral_sweep.config.spectrum import BNMode, Extremes, Operator, Product, SpectrumConfig, Where  # noqa: F401
from spectral_sweep.config.train import TOGGLES, Precision, Schedule, SharpnessConfig, TrainConfig  # noqa: F401
