"""Datasets and batch loaders.

Every dataset comes back as a ``Data`` with a train and a test split. Small datasets (torchvision's
in-memory sets such as CIFAR or Fashion-MNIST, read by ``torchvision_sets.py``; ImageNet 32x32; the embedded
synthetic set) are one uint8 tensor ``[N, C, H, W]`` (C = 3, or 1 for grey images) plus int64
labels; a loader moves them to its device once, so that on a GPU the whole set lives there and
shuffling, augmentation and normalisation never touch the host. Full-size ImageNet is an
ImageFolder tree decoded by DataLoader workers, and so is a user's dataset that is streamed
(``dataset.stream``, data/stream.py). ``BatchLoader`` gives both kinds one interface:

    data = load_dataset("cifar100", root="data")
    loader = BatchLoader(data.train, batch_size=128, device=device, train=True, seed=0)
    for x, y in loader.epoch(0):  # x: float32 [B, 3, H, W] normalised, y: int64, on device
        ...

``random_batch`` (distinct samples drawn with a generator) and ``fixed_batch`` (drawn once from a
seed and a ``seeds.Stream``) give the curvature code its batches, with the evaluation transform.
Every child seed comes from ``seeds.child_seed``: a loader's epoch k from stream
``Stream.EPOCHS + k``, the synthetic set's splits from ``Stream.SYNTHETIC_TRAIN`` / ``_TEST``.

Bad input (an unknown name, a root with no data, a batch larger than the split) raises
``UsageError`` with one line that says where the tool looked and how to fix it.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import torch
from torch import Tensor

from spectral_sweep.config import targets
from spectral_sweep.config.dataset import STREAM_CHOICES
from spectral_sweep.config.presets import presets
from spectral_sweep.data import items
from spectral_sweep.data.splits import Data, StreamSplit, TensorSplit
from spectral_sweep.data.stream import streamed, streams
from spectral_sweep.errors import UsageError, unknown_choice

DATASET_NAMES = tuple(presets("dataset"))   # the built-in datasets: conf/dataset/'s presets, the one list


def load_dataset(name: str, root: str = "data", download: bool = False, subset: int | None = None,
                 seed: int = 0, test_subset: int | None = None, stream: str = "auto", **options) -> Data:
    """Load dataset ``name`` from ``root``.

    ``subset`` keeps that many training samples (``test_subset`` likewise for the test split),
    chosen by a shuffle seeded with ``seed`` and spread evenly over the classes. ``stream``
    (``dataset.stream``: auto, true or false) says whether a ``_target_``'s datasets are read
    into memory once or item by item every epoch (data/stream.py). ``options`` are the dataset's
    own settings (synthetic: num_classes, train_size, test_size, noise, data_seed; imagenet:
    num_workers), their defaults those of its config schema (config/dataset.py); a setting the
    dataset does not have is an error, not silently ignored.
    """
    root = Path(root).expanduser().absolute()
    stream = str(stream).lower()
    if stream not in STREAM_CHOICES:
        raise UsageError(f"dataset.stream must be one of {', '.join(STREAM_CHOICES)}, got {stream!r}")
    if "." in name:   # a _target_: the package's builder or a user's dataset
        data = from_target(name, root, download, seed, stream=stream, **options)
    else:
        data = _built_in(name, root, download, seed, stream, **options)
    if subset is not None:
        data.train = data.train.select(_balanced_subset(data.train.labels, subset, seed, "subset"))
    if test_subset is not None:
        data.test = data.test.select(_balanced_subset(data.test.labels, test_subset, seed, "test_subset"))
    return data


def _built_in(name: str, root: Path, download: bool, seed: int, stream: str = "auto", **options) -> Data:
    """A built-in dataset by its preset's name: the preset's ``_target_``, called with its schema's
    defaults as the preset sets them, and ``options`` on top."""
    if name not in DATASET_NAMES:
        raise unknown_choice("dataset", name, DATASET_NAMES)
    preset = presets("dataset")[name]
    defaults = {k: v for k, v in preset.options().items() if k != "download"}
    accepted = [p for p in defaults if p not in ("root", "download", "seed")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise UsageError(
            f"dataset '{name}' has no option {', '.join(unknown)}; "
            f"its options are: {', '.join(accepted) or 'none'}"
        )
    return from_target(preset.target, root, download, seed, stream=stream, label=name, **{**defaults, **options})


def from_target(path: str, root: Path, download: bool = False, seed: int = 0, stream: str = "auto",
                label: str | None = None, **options) -> Data:
    """The dataset that ``dataset._target_`` names (see the README's contract): a builder returning
    a ``Data`` (the package's own), a callable returning (train, test) ``torch.utils.data.Dataset``s
    of (image, integer label), or a torchvision-style class taking root, train and transform.
    root, download and seed are passed where the target takes them; the rest are its options.
    ``stream`` decides whether the datasets are read into memory or streamed (data/stream.py); a
    builder's ``Data`` holds its splits its own way, and ``stream`` may only agree with it.
    ``label`` names the dataset in messages (a preset's name; default: the target)."""
    build = targets.locate(path, "dataset._target_")
    given = {k: v for k, v in (("root", root), ("download", download), ("seed", seed))
             if targets.accepts(build, k) and k not in options}
    if inspect.isclass(build) and targets.accepts(build, "train") and targets.accepts(build, "transform"):
        from torchvision.transforms import PILToTensor

        splits = [targets.call(build, "dataset._target_", path, train=train, transform=_Image(PILToTensor()),
                               **given, **options) for train in (True, False)]
    else:
        splits = targets.call(build, "dataset._target_", path, **given, **options)
    if isinstance(splits, Data):
        return _as_built(splits, stream, label or f"dataset._target_={path}")
    if not (isinstance(splits, (tuple, list)) and len(splits) == 2
            and all(isinstance(d, torch.utils.data.Dataset) for d in splits)):
        raise UsageError(f"dataset._target_={path} returned {type(splits).__name__}, not (train, test) "
                         "torch.utils.data.Dataset objects")
    where = f"dataset._target_={path}"
    if streams(stream, *splits, where):
        train, test, num_classes, shape, mean, std = streamed(where, *splits)
        return Data(train, test, num_classes, int(shape[-1]), mean, std, channels=int(shape[0]))
    return _in_memory(path, *splits)


def _as_built(data: Data, stream: str, label: str) -> Data:
    """A builder's ``Data`` as it is, unless ``stream`` asks for the other way of holding it."""
    held = "true" if isinstance(data.train, StreamSplit) else "false"
    if stream in ("auto", held):
        return data
    if held == "true":
        raise UsageError(f"dataset.stream=false: {label} is streamed by its builder (an image tree is read file "
                         "by file; it does not fit in memory); leave dataset.stream at auto")
    raise UsageError(f"dataset.stream=true: {label} is held in memory (on the device) by its builder; streaming "
                     "is for your own datasets (a _target_ returning (train, test) Datasets); leave "
                     "dataset.stream at auto")


class _Image:
    """A torchvision-style dataset's transform: PIL image to a uint8 tensor [C, H, W]."""

    def __init__(self, to_tensor):
        self.to_tensor = to_tensor

    def __call__(self, image):
        return image if isinstance(image, Tensor) else self.to_tensor(image)


def _in_memory(path: str, train, test) -> Data:
    """Two datasets of (image, label) read once into uint8 tensors (float images are taken as
    [0, 1]): the same device-resident splits as the built-in small datasets."""
    (train_x, train_y), (test_x, test_y) = _stack(path, train), _stack(path, test)
    if train_x.shape[1:] != test_x.shape[1:]:
        raise UsageError(f"dataset._target_={path}: train images are {tuple(train_x.shape[1:])}, "
                         f"test images {tuple(test_x.shape[1:])}")
    std, mean = torch.std_mean(train_x.float().div_(255.0), dim=(0, 2, 3))
    mean, std = tuple(mean.tolist()), tuple(std.clamp(min=1e-3).tolist())
    classes = getattr(train, "classes", None)
    num_classes = len(classes) if classes else int(max(train_y.max(), test_y.max())) + 1
    return Data(TensorSplit(train_x, train_y, mean, std), TensorSplit(test_x, test_y, mean, std),
                num_classes, int(train_x.shape[-1]), mean, std, channels=int(train_x.shape[1]))


def _stack(path: str, dataset) -> tuple[Tensor, Tensor]:
    """All items of ``dataset`` as uint8 images [N, C, H, W] and int64 labels, or one line saying
    which item breaks the contract."""
    where = f"dataset._target_={path}"
    read = [items.read(dataset, i, where) for i in range(len(dataset))]
    if not read:
        raise UsageError(f"dataset._target_={path} returned an empty dataset")
    shapes = {tuple(x.shape) for x, _ in read}
    if len(shapes) > 1:
        raise UsageError(f"{where}: its images have {len(shapes)} sizes ({', '.join(map(str, sorted(shapes)[:3]))}"
                         "); every image must have the same size (resize or crop in the dataset's transform)")
    return torch.stack([x for x, _ in read]), torch.tensor([y for _, y in read], dtype=torch.int64)


def _balanced_subset(labels: Tensor, size: int, seed: int, key: str) -> Tensor:
    """Indices of ``size`` samples: a seeded shuffle, then classes taken in turn.

    Within the shuffle each sample gets its rank among its own class; taking samples by rank
    deals one per class per round, so every class gets size/num_classes samples (as far as the
    class has them). The indices come back sorted, in the split's stored order.
    """
    n = len(labels)
    if int(size) != size or not 1 <= size <= n:
        raise UsageError(f"dataset.{key} must be an integer between 1 and {n} (the split's size), got {size}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    shuffled = labels.cpu()[order]
    by_class = torch.argsort(shuffled, stable=True)
    sorted_labels = shuffled[by_class]
    starts = torch.searchsorted(sorted_labels, sorted_labels, side="left")
    rank = torch.empty(n, dtype=torch.int64)
    rank[by_class] = torch.arange(n) - starts
    take = torch.argsort(rank * n + torch.arange(n), stable=True)[: int(size)]
    return torch.sort(order[take]).values
