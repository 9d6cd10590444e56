"""Datasets and batch loaders.

Every dataset comes back as a ``Data`` with a train and a test split. Small datasets (torchvision's
in-memory sets such as CIFAR or Fashion-MNIST, read by ``vision.py``; ImageNet 32x32; the embedded
synthetic set) are one uint8 tensor ``[N, C, H, W]`` (C = 3, or 1 for grey images) plus int64
labels; a loader moves them to its device once, so that on a GPU the whole set lives there and
shuffling, augmentation and normalisation never touch the host. Full-size ImageNet is an
ImageFolder tree decoded by DataLoader workers. ``BatchLoader`` gives both kinds one interface:

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

import copy
import inspect
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from spectral_sweep import seeds, targets
from spectral_sweep.config import CONFIG_DIR, ImageNet32Config, ImageNetConfig, SyntheticConfig, TorchvisionConfig
from spectral_sweep.errors import UsageError, unknown_choice
from spectral_sweep.seeds import Stream

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

CROP_PADDING = 4  # pixels of zero padding around an image before its random crop (CIFAR's; a split may set its own)


# ----------------------------------------------------------------------------------------------
# Splits


class TensorSplit:
    """A whole split held as uint8 images ``[N, C, H, W]`` and int64 labels ``[N]``, with the
    augmentation a training loader applies to it (``augment``: crop after ``crop_padding`` pixels
    of padding, 0 for none; mirror left-right where ``flip``).

    ``to(device)`` caches the copy per device, so the train loader, the eval loader and the
    curvature code share one resident copy instead of each uploading their own.
    """

    def __init__(self, images: Tensor, labels: Tensor, mean, std, crop_padding: int = CROP_PADDING,
                 flip: bool = True):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images must be uint8 [N, C, H, W], got {images.dtype} {tuple(images.shape)}")
        if labels.shape != images.shape[:1]:
            raise ValueError(f"{len(labels)} labels for {len(images)} images")
        self.images = images
        self.labels = labels.to(torch.int64)
        self.mean, self.std = tuple(mean), tuple(std)
        self.crop_padding, self.flip = int(crop_padding), bool(flip)
        self._copies = {images.device: self}

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def device(self) -> torch.device:
        return self.images.device

    def to(self, device: torch.device | str) -> TensorSplit:
        device = _canonical(torch.device(device))
        if device not in self._copies:
            copy_ = TensorSplit(self.images.to(device), self.labels.to(device), self.mean, self.std,
                                self.crop_padding, self.flip)
            copy_._copies = self._copies  # every copy knows all the others
            self._copies[device] = copy_
        return self._copies[device]

    def select(self, indices: Tensor) -> TensorSplit:
        return TensorSplit(self.images[indices], self.labels[indices], self.mean, self.std,
                           self.crop_padding, self.flip)


class FolderSplit:
    """A split of image files read by ``torchvision.datasets.ImageFolder``.

    Images are decoded in DataLoader workers; the transform depends on whether the loader
    augments, so one split serves both a training loader and an augmentation-free pass over
    the training set (e.g. a full-data Hessian).
    """

    def __init__(self, folder, indices: Tensor | None = None, num_workers: int = 8,
                 mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.folder = folder
        self.indices = indices
        self.num_workers = num_workers
        self.mean, self.std = tuple(mean), tuple(std)

    def __len__(self) -> int:
        return len(self.folder) if self.indices is None else len(self.indices)

    @property
    def labels(self) -> Tensor:
        labels = torch.as_tensor(self.folder.targets, dtype=torch.int64)
        return labels if self.indices is None else labels[self.indices]

    def select(self, indices: Tensor) -> FolderSplit:
        kept = indices if self.indices is None else self.indices[indices]
        return FolderSplit(self.folder, kept, self.num_workers, self.mean, self.std)

    def dataset(self, augment: bool) -> torch.utils.data.Dataset:
        """The split as a map-style dataset yielding (uint8 [3, 224, 224], label)."""
        from torchvision import transforms

        if augment:
            steps = [transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip()]
        else:
            steps = [transforms.Resize(256), transforms.CenterCrop(224)]
        folder = copy.copy(self.folder)  # shares the sample list, owns its transform
        folder.transform = transforms.Compose(steps + [transforms.PILToTensor()])
        if self.indices is None:
            return folder
        return torch.utils.data.Subset(folder, self.indices.tolist())


@dataclass
class Data:
    """A dataset: two splits and what a model and a loader need to know about them."""

    train: TensorSplit | FolderSplit
    test: TensorSplit | FolderSplit
    num_classes: int
    image_size: int
    mean: tuple
    std: tuple
    channels: int = 3            # of the images, as a model's in_channels (1: grey)


# ----------------------------------------------------------------------------------------------
# Device-side image operations


def augment(images: Tensor, generator: torch.Generator, padding: int = CROP_PADDING, flip: bool = True) -> Tensor:
    """Random crop with ``padding`` px zero padding and random horizontal flip, per sample.

    The standard CIFAR augmentation (4 px, flip) done as one gather on whatever device ``images``
    lives on: sample b of the output is ``padded[b, :, dy:dy+H, dx:dx+W]``, mirrored left-right
    when its coin says so (never, with ``flip=False``: digits). ``generator`` must live on the
    same device; it makes the result reproducible.
    """
    n, c, h, w = images.shape
    p = padding
    device = images.device
    padded = torch.nn.functional.pad(images, (p, p, p, p))
    dy = torch.randint(0, 2 * p + 1, (n, 1), generator=generator, device=device)
    dx = torch.randint(0, 2 * p + 1, (n, 1), generator=generator, device=device)
    if flip:
        mirror = torch.rand((n, 1), generator=generator, device=device) < 0.5
    else:
        mirror = torch.zeros((n, 1), dtype=torch.bool, device=device)
    rows = dy + torch.arange(h, device=device)
    cols_forward = torch.arange(w, device=device)
    cols = dx + torch.where(mirror, w - 1 - cols_forward, cols_forward)
    batch = torch.arange(n, device=device).view(n, 1, 1, 1)
    channel = torch.arange(c, device=device).view(1, c, 1, 1)
    return padded[batch, channel, rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]


def normalise(images: Tensor, mean, std) -> Tensor:
    """uint8 images to float32, scaled to [0, 1] and standardised per channel.

    ``mean`` and ``std`` are a float per channel, or tensors already on the images' device (loaders keep
    them there so that no batch waits for a host-to-device copy of six numbers).
    """
    mean_ = torch.as_tensor(mean, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    std_ = torch.as_tensor(std, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    return (images.float().div_(255.0) - mean_).div_(std_)


# ----------------------------------------------------------------------------------------------
# Loaders


class BatchLoader:
    """Mini-batches of a split on a device, the same interface for every kind of split.

    ``train=True`` reshuffles every epoch from a generator seeded by (seed, epoch), augments and
    drops the last partial batch unless told otherwise; ``train=False`` walks the split in its
    stored order, unaugmented, and keeps the last partial batch. ``BatchLoader(...)`` returns the
    implementation that fits the split.
    """

    def __new__(cls, split, *args, **kwargs):
        if cls is BatchLoader:
            cls = TensorLoader if isinstance(split, TensorSplit) else FolderLoader
        return super().__new__(cls)

    def __init__(self, split, batch_size: int, device: torch.device | str, train: bool,
                 seed: int = 0, augment: bool | None = None, drop_last: bool | None = None):
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.train = train
        self.seed = seed
        self.augment = train if augment is None else augment
        self.drop_last = train if drop_last is None else drop_last
        self.split = split
        self.mean = torch.tensor(split.mean, device=self.device)
        self.std = torch.tensor(split.std, device=self.device)
        if self.batch_size <= 0:
            raise UsageError(f"batch size must be positive, got {batch_size}")
        if self.drop_last and self.batch_size > len(split):
            kind = "training split" if train else "split"
            raise UsageError(
                f"batch size {self.batch_size} is larger than the {kind} ({len(split)} samples); "
                "use a smaller batch or a larger dataset (dataset.subset)"
            )

    def __len__(self) -> int:
        if self.drop_last:
            return len(self.split) // self.batch_size
        return math.ceil(len(self.split) / self.batch_size)

    def epoch(self, k: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        raise NotImplementedError

    def _epoch_generator(self, k: int, device=None) -> torch.Generator:
        """The generator of epoch ``k``: stream ``Stream.EPOCHS + k`` of the loader's seed."""
        return seeds.generator(self.seed, Stream.EPOCHS + k, device=device)


class TensorLoader(BatchLoader):
    """Batches of a device-resident ``TensorSplit``: indexing, augmentation, normalisation."""

    def __init__(self, split: TensorSplit, *args, **kwargs):
        super().__init__(split, *args, **kwargs)
        self.split = split.to(_canonical(self.device))

    def epoch(self, k: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        split = self.split
        n = len(split)
        generator = self._epoch_generator(k, split.device)
        if self.train:
            order = torch.randperm(n, generator=generator, device=split.device)
        else:
            order = torch.arange(n, device=split.device)
        for i in range(len(self)):
            index = order[i * self.batch_size:(i + 1) * self.batch_size]
            images = split.images[index]
            if self.augment:
                images = augment(images, generator, split.crop_padding, split.flip)
            yield normalise(images, self.mean, self.std), split.labels[index]


class FolderLoader(BatchLoader):
    """Batches of an ImageFolder split, decoded by ``num_workers`` DataLoader workers.

    Shuffling and the workers' augmentation seeds come from a generator seeded by (seed, epoch);
    with ``num_workers=0`` the transforms draw from torch's global generator instead. Images
    travel to the device as uint8 (4x less than float) and are normalised there.
    """

    def epoch(self, k: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        generator = self._epoch_generator(k)
        batches = torch.utils.data.DataLoader(
            self.split.dataset(self.augment),
            batch_size=self.batch_size,
            shuffle=self.train,
            drop_last=self.drop_last,
            num_workers=self.split.num_workers,
            pin_memory=self.device.type == "cuda",
            generator=generator,
        )
        for images, labels in batches:
            images = images.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
            yield normalise(images, self.mean, self.std), labels


# ----------------------------------------------------------------------------------------------
# Random batches (the spectrum's batches, the learner's fixed curvature batches)


def random_batch(split, batch_size: int, device, generator: torch.Generator):
    """``batch_size`` distinct samples of ``split`` drawn with ``generator``, evaluation transform."""
    if batch_size > len(split):
        raise UsageError(f"batch size {batch_size} is larger than the training split "
                         f"({len(split)} samples)")
    indices = torch.randperm(len(split), generator=generator)[:batch_size]
    loader = BatchLoader(split.select(indices), batch_size, device, train=False, augment=False)
    return next(iter(loader.epoch(0)))


def fixed_batch(split, size: int, device, seed: int, stream: int):
    """``size`` distinct samples of ``split`` drawn once from (seed, stream), evaluation transform."""
    return random_batch(split, int(size), device, seeds.generator(seed, stream))


def _canonical(device: torch.device) -> torch.device:
    """'cuda' and 'cuda:0' name the same memory; cache copies under one key."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


# ----------------------------------------------------------------------------------------------
# The datasets


def imagenet(root: Path, download: bool, seed: int, num_workers: int) -> Data:
    """An ImageFolder tree ``root/train/<class>/*.JPEG`` and ``root/val/<class>/*``."""
    from torchvision.datasets import ImageFolder

    if not (root / "train").is_dir() or not (root / "val").is_dir():
        raise UsageError(
            f"no ImageNet in {root}: expected {root / 'train'}/<class>/*.JPEG and "
            f"{root / 'val'}/<class>/*.JPEG; get ILSVRC2012 from https://image-net.org/download "
            "and sort val/ into class folders"
        )
    folders = {}
    for split in ("train", "val"):
        try:
            folders[split] = ImageFolder(str(root / split))
        except FileNotFoundError as error:  # no class folders, or a class folder with no images
            raise UsageError(f"no ImageNet images in {root / split}: {error}") from error
    if folders["val"].classes != folders["train"].classes:
        raise UsageError(
            f"{root / 'val'} has {len(folders['val'].classes)} class folders that do not match "
            f"the {len(folders['train'].classes)} in {root / 'train'}"
        )
    train, test = (FolderSplit(folders[s], num_workers=num_workers) for s in ("train", "val"))
    return Data(train, test, len(folders["train"].classes), 224, IMAGENET_MEAN, IMAGENET_STD)


def imagenet32(root: Path, download: bool, seed: int) -> Data:
    """Downsampled ImageNet 32x32 (Chrabaszcz, Loshchilov & Hutter 2017) in its npz release.

    ``train_data_batch_1.npz`` .. ``train_data_batch_10.npz`` and ``val_data.npz``, in ``root`` or
    one folder below it (the archives unpack to Imagenet32_train_npz/ and Imagenet32_val_npz/).
    Each holds ``data``, N x 3072 uint8 rows with the 1024 red pixels first, then green, then
    blue, so a row reshapes straight to [3, 32, 32]; and ``labels``, 1-based class numbers.
    """
    def find(pattern: str) -> list[Path]:
        """Files in root, else one folder below; batch 10 after batch 9, not after batch 1."""
        found = list(root.glob(pattern)) or list(root.glob(f"*/{pattern}"))
        return sorted(found, key=lambda p: (p.parent, len(p.name), p.name))

    train_files, val_files = find("train_data_batch_*.npz"), find("val_data.npz")
    if not train_files or not val_files:
        raise UsageError(
            f"no ImageNet32 in {root}: expected train_data_batch_1..10.npz and val_data.npz there "
            "(or one folder below); download Imagenet32_train_npz and Imagenet32_val_npz from "
            "https://image-net.org/download-images (downsampled ImageNet) and unzip them there"
        )

    def read(files: list[Path]) -> TensorSplit:
        images, labels = [], []
        for file in files:
            try:
                with np.load(file) as batch:
                    images.append(batch["data"].reshape(-1, 3, 32, 32))
                    labels.append(np.asarray(batch["labels"], dtype=np.int64).reshape(-1) - 1)
            except (OSError, ValueError, KeyError, EOFError) as error:
                raise UsageError(f"cannot read ImageNet32 file {file}: {error}") from error
        labels_ = np.concatenate(labels)
        if labels_.min() < 0 or labels_.max() > 999:
            raise UsageError(f"ImageNet32 labels in {files[0].parent} run from {labels_.min() + 1} "
                             f"to {labels_.max() + 1}; the release numbers its classes 1..1000")
        images_ = torch.from_numpy(np.ascontiguousarray(np.concatenate(images), dtype=np.uint8))
        return TensorSplit(images_, torch.from_numpy(labels_), IMAGENET_MEAN, IMAGENET_STD)

    return Data(read(train_files), read(val_files), 1000, 32, IMAGENET_MEAN, IMAGENET_STD)


def synthetic(root: Path, download: bool, seed: int, num_classes: int, train_size: int, test_size: int,
               noise: float, data_seed: int | None) -> Data:
    """A CIFAR-shaped classification task generated from ``data_seed``: no files, no network.

    Like CIFAR, it is one fixed dataset whatever the run's ``seed`` (which sets the model's init,
    the data order and the augmentation): seed-to-seed differences of a sweep are then the noise
    a researcher meets on a real dataset, not a new task each time. ``data_seed=None`` makes the
    data follow ``seed`` as well.

    Recipe. A class is a colour texture: white noise band-passed around a class frequency (a
    Gaussian bump in the 2D spectrum at 0.12-0.3 cycles per pixel, i.e. stripes 3-8 pixels apart,
    bandwidth 0.05 cycles per pixel; the classes' orientations are spread evenly over 180 degrees
    in a seeded order, their frequencies drawn at random) and painted along a class colour axis
    (a random unit RGB vector, so it can be an opponent axis such as red-green). A sample is a
    natural-image background (1/f noise, colour-correlated channels, 0.1 of the texture's
    strength) with its class's texture, fresh random phases every sample, laid over a soft-edged
    rectangle of random side 20-32 pixels at a random place, at a contrast drawn from
    [0.6, 1.4]; plus a per-channel brightness offset (std 0.1) and white pixel noise of
    standard deviation ``noise`` (relative to the texture). Pixels are 128 + 120 x, clipped to
    uint8, so strong textures saturate into crisp stripes. Every class has mean zero in every
    pixel: the evidence is local second-order structure (orientation, scale, colour of the
    stripes), which convolutions with ReLU and max-pooling detect even at initialisation, while
    pixel-space templates cannot. Measured (seed 0, 4096 training and 1000 test images, SGD
    momentum 0.9, weight decay 5e-4, constant lr, one CPU thread): nearest class mean on raw
    pixels 0.36 (above chance only because a finite-sample class mean is itself a texture in its
    class's band); the small CNN of the tests 1.00 after 300 steps (B=64, lr 0.05); vgg16_bn at
    width 1/8 after 200 steps 0.56 (B=32, lr 0.01), 0.38 (B=16, lr 0.03), 0.30 (B=8, lr 0.03),
    diverging from lr 0.1 (B=8, 16) or 0.3 (B=32); vgg16 without BatchNorm after 600 steps at
    B=64: 0.49 at width 1/4 and lr 0.01, 0.54 at width 1/8 and lr 0.03 (0.35 after 300 steps),
    still at chance at lr 1.0. The old cosine recipe left vgg16 at chance.
    The class textures come from ``torch.Generator(seed)`` and each split from its own generator
    derived from ``seed``, so the sets are bit-identical run to run and the test set does not
    depend on ``train_size``. Mean and std are measured on the training split.
    """
    seed = _synthetic_seed(seed, num_classes, train_size, test_size, noise, data_seed)
    spectra, colours = _textures(int(num_classes), torch.Generator().manual_seed(seed))
    train_x, train_y = _draw_synthetic(int(train_size), spectra, colours, noise,
                                       seeds.generator(seed, Stream.SYNTHETIC_TRAIN))
    test_x, test_y = _draw_synthetic(int(test_size), spectra, colours, noise,
                                     seeds.generator(seed, Stream.SYNTHETIC_TEST))
    std, mean = torch.std_mean(train_x.float().div_(255.0), dim=(0, 2, 3))
    mean, std = tuple(mean.tolist()), tuple(std.tolist())
    train, test = TensorSplit(train_x, train_y, mean, std), TensorSplit(test_x, test_y, mean, std)
    return Data(train, test, int(num_classes), 32, mean, std)


def _synthetic_seed(seed: int, num_classes, train_size, test_size, noise, data_seed) -> int:
    """Check the synthetic dataset's options; the seed its data follow (``data_seed`` unless null)."""
    for key, value, low in (("num_classes", num_classes, 2), ("train_size", train_size, 1),
                            ("test_size", test_size, 1)):
        if isinstance(value, bool) or int(value) != value or value < low:
            raise UsageError(f"dataset.{key} must be an integer >= {low}, got {value}")
    if not noise >= 0:
        raise UsageError(f"dataset.noise must be >= 0, got {noise}")
    if data_seed is None:
        return seed
    if isinstance(data_seed, bool) or not isinstance(data_seed, int) or data_seed < 0:
        raise UsageError(f"dataset.data_seed must be an integer >= 0 or null, got {data_seed!r}")
    return data_seed


def _draw_synthetic(n: int, spectra: Tensor, colours: Tensor, noise: float,
                    generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``n`` synthetic images (uint8) and labels, classes balanced and shuffled (see ``_synthetic``)."""
    num_classes = len(spectra)
    labels = (torch.arange(n) % num_classes)[torch.randperm(n, generator=generator)]
    x = 0.1 * _pink_noise(n, generator)
    texture = _band_noise(spectra[labels], generator)
    window = _soft_rectangles(n, generator)
    contrast = 0.6 + 0.8 * torch.rand(n, 1, 1, 1, generator=generator)
    x += contrast * colours[labels].view(n, 3, 1, 1) * (window * texture).unsqueeze(1)
    x += 0.1 * torch.randn(n, 3, 1, 1, generator=generator)
    x += noise * torch.randn(n, 3, 32, 32, generator=generator)
    return x.mul_(120.0).add_(128.0).round_().clamp_(0, 255).to(torch.uint8), labels


def _spectrum_grid(size: int = 32) -> tuple[Tensor, Tensor]:
    """Frequencies (cycles per pixel) of an rfft2 of a size x size image, along rows and columns."""
    return torch.fft.fftfreq(size).view(-1, 1), torch.fft.rfftfreq(size).view(1, -1)


def _textures(num_classes: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Each class's texture: an rfft2 amplitude filter [C, 32, 17] and a unit colour axis [C, 3].

    The filter is a pair of Gaussian bumps (bandwidth 0.05 cycles/pixel) at +-f_c, where f_c has
    length 0.12-0.3 cycles/pixel and an orientation from an even spread over 180 degrees, dealt
    to the classes in a seeded order so that no two classes share one.
    """
    order = torch.randperm(num_classes, generator=generator).float()
    theta = math.pi * (order + torch.rand(num_classes, generator=generator)) / num_classes
    radius = 0.12 + 0.18 * torch.rand(num_classes, generator=generator)
    colours = torch.randn(num_classes, 3, generator=generator)
    colours /= colours.norm(dim=1, keepdim=True)
    fy, fx = _spectrum_grid()
    cy, cx = (radius * theta.sin()).view(-1, 1, 1), (radius * theta.cos()).view(-1, 1, 1)

    def bump(y, x):
        return torch.exp(-((fy - y) ** 2 + (fx - x) ** 2) / (2 * 0.05 ** 2))

    return bump(cy, cx) + bump(-cy, -cx), colours


def _band_noise(spectra: Tensor, generator: torch.Generator) -> Tensor:
    """Textures [n, 32, 32]: white noise filtered by each sample's spectrum, unit std each."""
    white = torch.randn(len(spectra), 32, 32, generator=generator)
    texture = torch.fft.irfft2(torch.fft.rfft2(white) * spectra, s=(32, 32))
    return texture / texture.std(dim=(1, 2), keepdim=True)


def _pink_noise(n: int, generator: torch.Generator) -> Tensor:
    """Backgrounds [n, 3, 32, 32] with the 1/f amplitude spectrum of natural images, channels
    mixed so that they correlate as in natural colour, unit std over the batch."""
    fy, fx = _spectrum_grid()
    frequency = (fy ** 2 + fx ** 2).sqrt()
    amplitude = torch.where(frequency > 0, 1.0 / frequency.clamp(min=1e-6), 0.0)
    white = torch.randn(n, 3, 32, 32, generator=generator)
    x = torch.fft.irfft2(torch.fft.rfft2(white) * amplitude, s=(32, 32))
    mix = torch.full((3, 3), 0.5).fill_diagonal_(1.0)
    x = torch.matmul(mix, x.view(n, 3, -1)).view(n, 3, 32, 32)
    return x / x.std()


def _soft_rectangles(n: int, generator: torch.Generator) -> Tensor:
    """Masks [n, 32, 32]: a rectangle of random sides 20-32 px at a random place inside the
    image, 1 inside and 0 outside with sigmoid edges about a pixel wide."""
    side = 20 + 12 * torch.rand(n, 2, generator=generator)
    centre = side / 2 + (32 - side) * torch.rand(n, 2, generator=generator)
    pixel = torch.arange(32.0) + 0.5
    edge = torch.sigmoid(side[..., None] / 2 - (pixel - centre[..., None]).abs())  # [n, 2, 32]
    return edge[:, 0, :, None] * edge[:, 1, None, :]


_BUILDERS = {
    "synthetic": synthetic,
    "imagenet": imagenet,
    "imagenet32": imagenet32,
}
# each dataset's own settings and their defaults: one home, the config schema
_SCHEMAS = {"synthetic": SyntheticConfig, "imagenet": ImageNetConfig, "imagenet32": ImageNet32Config}
# torchvision's datasets, read by vision.py: the class, normalisation and augmentation of each are
# its preset's (conf/dataset/<name>.yaml), their one home
TORCHVISION_PRESETS = ("cifar10", "cifar100", "fashion_mnist", "mnist", "kmnist", "svhn")
DATASET_NAMES = tuple(_BUILDERS) + TORCHVISION_PRESETS


def load_dataset(name: str, root: str = "data", download: bool = False, subset: int | None = None,
                 seed: int = 0, test_subset: int | None = None, **options) -> Data:
    """Load dataset ``name`` from ``root``.

    ``subset`` keeps that many training samples (``test_subset`` likewise for the test split),
    chosen by a shuffle seeded with ``seed`` and spread evenly over the classes. ``options`` are
    the dataset's own settings (synthetic: num_classes, train_size, test_size, noise, data_seed;
    imagenet: num_workers), their defaults those of its config schema (config.py); a setting the
    dataset does not have is an error, not silently ignored.
    """
    root = Path(root).expanduser().absolute()
    if "." in name:   # a _target_: the package's builder or a user's dataset
        data = from_target(name, root, download, seed, **options)
    else:
        data = _built_in(name, root, download, seed, **options)
    if subset is not None:
        data.train = data.train.select(_balanced_subset(data.train.labels, subset, seed, "subset"))
    if test_subset is not None:
        data.test = data.test.select(_balanced_subset(data.test.labels, test_subset, seed, "test_subset"))
    return data


def _built_in(name: str, root: Path, download: bool, seed: int, **options) -> Data:
    """A built-in dataset by its short name, its options' defaults those of its schema (a
    torchvision dataset's: of its preset)."""
    if name not in DATASET_NAMES:
        raise unknown_choice("dataset", name, DATASET_NAMES)
    if name in TORCHVISION_PRESETS:
        target, defaults = _preset(name)
    else:
        target = _BUILDERS[name]
        defaults = {k: v for k, v in _SCHEMAS[name]().options().items() if k != "download"}
    accepted = [p for p in defaults if p not in ("root", "download", "seed")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise UsageError(
            f"dataset '{name}' has no option {', '.join(unknown)}; "
            f"its options are: {', '.join(accepted) or 'none'}"
        )
    if isinstance(target, str):
        return from_target(target, root, download, seed, **{**defaults, **options})
    return target(root=root, download=download, seed=seed, **{**defaults, **options})


def _preset(name: str) -> tuple[str, dict]:
    """A torchvision dataset's ``_target_`` and options as its preset sets them, over the defaults
    of its schema (read as plain YAML: no Hydra, so a Python caller inside a Hydra job can too)."""
    from omegaconf import OmegaConf

    own = OmegaConf.to_container(OmegaConf.load(Path(CONFIG_DIR) / "dataset" / f"{name}.yaml"))
    defaults = {k: own.get(k, v) for k, v in TorchvisionConfig().options().items() if k != "download"}
    return own["_target_"], defaults


def from_target(path: str, root: Path, download: bool = False, seed: int = 0, **options) -> Data:
    """The dataset that ``dataset._target_`` names (see the README's contract): a builder returning
    a ``Data`` (the package's own), a callable returning (train, test) ``torch.utils.data.Dataset``s
    of (image tensor, integer label), or a torchvision-style class taking root, train and transform.
    root, download and seed are passed where the target takes them; the rest are its options."""
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
        return splits
    if not (isinstance(splits, (tuple, list)) and len(splits) == 2
            and all(isinstance(d, torch.utils.data.Dataset) for d in splits)):
        raise UsageError(f"dataset._target_={path} returned {type(splits).__name__}, not (train, test) "
                         "torch.utils.data.Dataset objects")
    return _in_memory(path, *splits)


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
    images, labels = [], []
    for i in range(len(dataset)):
        item = dataset[i]
        x, y = item if isinstance(item, (tuple, list)) and len(item) == 2 else (item, None)
        if not isinstance(x, Tensor) or x.ndim != 3 or not isinstance(y, (int, np.integer, Tensor)):
            raise UsageError(f"dataset._target_={path}: item {i} is {type(item).__name__}, not (image tensor "
                             "[C, H, W], integer label)")
        images.append((x.clamp(0, 1) * 255).round().to(torch.uint8) if x.is_floating_point() else x.to(torch.uint8))
        labels.append(int(y))
    if not images:
        raise UsageError(f"dataset._target_={path} returned an empty dataset")
    return torch.stack(images), torch.tensor(labels, dtype=torch.int64)


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
