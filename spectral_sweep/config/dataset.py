"""The dataset group's schema: where the files are, which subset, and the trial budget."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from omegaconf import MISSING

from spectral_sweep.config.base import DATA_ROOT, TRAIN_SIZES, Choice, _options
from spectral_sweep.config.ranges import (
    NON_NEGATIVE,
    POSITIVE,
    POSITIVE_INT,
    Range,
    each,
    knob,
    maybe,
)

# ----------------------------------------------------------------------------------- dataset

STREAM_CHOICES = ("auto", "true", "false")


@dataclass
class Budget:
    """The length of one trial: ``epochs`` wins when both are set."""

    steps: int | None = knob(None, maybe(POSITIVE_INT))
    epochs: float | None = knob(None, maybe(POSITIVE))

    def is_set(self) -> bool:
        return self.steps is not None or self.epochs is not None


@dataclass
class DatasetConfig:
    _target_: str = MISSING      # data/'s builder, a callable returning (train, test) datasets, or a
                                 # torchvision-style class taking root, train and transform
    name: str = MISSING          # the dataset's name in folders and tables
    root: str = DATA_ROOT        # where the files are (SPECTRAL_SWEEP_DATA, else ./data)
    # keep this many training samples (seeded, class-balanced); null: all
    subset: int | None = knob(None, maybe(POSITIVE_INT))
    test_subset: int | None = knob(None, maybe(POSITIVE_INT))   # likewise for the test split
    budget: Budget = field(default_factory=lambda: Budget(epochs=10))  # a trial's length on this data,
                                 # unless train.steps / train.epochs say otherwise
    # true | false | auto: read a _target_'s datasets item by item each epoch (DataLoader workers, its
    # transform drawn afresh) rather than once into memory; auto streams past data/stream.py's budget
    stream: str = "auto"

    def __post_init__(self):
        # true/false/auto as a string: Hydra and YAML read `true` as a bool, which an enum field refuses
        value = str(self.stream).lower()
        if value not in STREAM_CHOICES:
            raise ValueError(f"dataset.stream must be one of {', '.join(STREAM_CHOICES)}, got {self.stream!r}")
        self.stream = value

    #: how the package's builder of this kind holds it, whatever dataset.stream says ("true": streamed,
    #: "false": in memory); None: a user's _target_, held as dataset.stream decides
    HELD: ClassVar[str | None] = None

    def options(self) -> dict:
        """The dataset's own settings, the keyword arguments of its loader in data/."""
        return _options(self, DatasetConfig)

    def problems(self, config):
        """``stream`` against the way the package's own builder holds the dataset (data/load.py refuses
        the same when the data are loaded; here it is one line before any job starts)."""
        if self.HELD is None or self.stream in ("auto", self.HELD) or not self._target_.startswith("spectral_sweep."):
            return
        how = "streams it (an image tree does not fit in memory)" if self.HELD == "true" else \
            "holds it in memory (on the device); streaming is for your own datasets"
        yield f"dataset.stream={self.stream}: {self.name}'s builder {how}; leave dataset.stream at auto"

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
    """One of torchvision's in-memory image datasets (data/torchvision_sets.py): its preset names the class, the
    normalisation and the augmentation; the defaults are CIFAR's augmentation."""

    HELD: ClassVar[str | None] = "false"
    torchvision_class: VisionClass = MISSING
    mean: list[float] = knob(MISSING, each(Range(0, 1)))   # per channel, of pixels in [0, 1]
    std: list[float] = knob(MISSING, each(POSITIVE))   # per channel (one value: grey images)
    crop_padding: int = knob(4, Range(0, integer=True))   # random crop after this many px of zero padding; 0: none
    flip: bool = True            # random horizontal flip (off for digits: a mirrored digit is another glyph)
    download: bool = False       # fetch the files when they are missing (CIFAR-100: 161 MB)

    def known_channels(self) -> int | None:
        return len(self.mean) if isinstance(self.mean, list) else None

    def problems(self, config):
        yield from super().problems(config)
        yield (None if len(self.mean) == len(self.std) else
               f"dataset.mean and dataset.std need a value per channel each, got {len(self.mean)} and {len(self.std)}")


@dataclass
class ImageNetConfig(DatasetConfig):
    HELD: ClassVar[str | None] = "true"
    num_workers: int = knob(8, Range(0, integer=True))   # DataLoader processes decoding JPEGs
    budget: Budget = field(default_factory=lambda: Budget(epochs=1))


@dataclass
class ImageNet32Config(DatasetConfig):
    HELD: ClassVar[str | None] = "false"
    budget: Budget = field(default_factory=lambda: Budget(epochs=2))


@dataclass
class SyntheticConfig(DatasetConfig):
    """The embedded CIFAR-shaped task: no files, no network."""

    HELD: ClassVar[str | None] = "false"

    num_classes: int = knob(10, Range(2, integer=True))
    train_size: int = knob(10000, POSITIVE_INT)
    test_size: int = knob(2000, POSITIVE_INT)
    noise: float = knob(0.05, NON_NEGATIVE)   # std of the white pixel noise, relative to the class texture
    # one fixed dataset, like CIFAR, whatever the run's seed; null: follows seed
    data_seed: int | None = knob(0, maybe(Range(0, integer=True)))
    budget: Budget = field(default_factory=lambda: Budget(steps=300))
