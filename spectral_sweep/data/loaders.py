"""Mini-batches of a split on a device, and the fixed or random batches the curvature code uses."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor

from spectral_sweep import seeds
from spectral_sweep.data.splits import TensorSplit, _canonical, augment, normalise
from spectral_sweep.errors import UsageError
from spectral_sweep.seeds import Stream

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
