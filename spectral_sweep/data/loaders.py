"""Mini-batches of a split on a device, and the fixed or random batches the curvature code uses."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
from torch import Tensor

from spectral_sweep import seeds
from spectral_sweep.data import items
from spectral_sweep.data.splits import TensorSplit, _canonical, augment, normalise
from spectral_sweep.data.stream import OwnRandom, seed_worker, usable_workers
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
            cls = TensorLoader if isinstance(split, TensorSplit) else StreamLoader
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

    def _order(self, n: int, generator: torch.Generator) -> Tensor:
        """The epoch's sample order: a permutation drawn first from its generator when training, else
        the stored order. One source for every kind of split: with the generator on the same device, a
        streamed split and the same split in memory see their samples in the same order."""
        if self.train:
            return torch.randperm(n, generator=generator, device=generator.device)
        return torch.arange(n, device=generator.device)


class TensorLoader(BatchLoader):
    """Batches of a device-resident ``TensorSplit``: indexing, augmentation, normalisation."""

    def __init__(self, split: TensorSplit, *args, **kwargs):
        super().__init__(split, *args, **kwargs)
        self.split = split.to(_canonical(self.device))

    def epoch(self, k: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        split = self.split
        n = len(split)
        generator = self._epoch_generator(k, split.device)
        order = self._order(n, generator)
        for i in range(len(self)):
            index = order[i * self.batch_size:(i + 1) * self.batch_size]
            images = split.images[index]
            if self.augment:
                images = augment(images, generator, split.crop_padding, split.flip)
            yield normalise(images, self.mean, self.std), split.labels[index]


class StreamLoader(BatchLoader):
    """Batches of a ``StreamSplit`` (an ImageFolder tree, a user's streamed dataset), its items
    read every epoch by the split's DataLoader workers.

    The epoch's generator lives on the loader's device and draws the order (``_order``) and then
    each batch's augmentation, in the same sequence as a ``TensorLoader`` there: a dataset that
    is the same every read gives the same batches streamed as in memory (given the same mean and
    std). The epoch's workers are seeded from the epoch's second child seed (torch's, numpy's and
    Python's generators in each), so a random transform draws afresh every epoch, the same for
    the same (seed, epoch, workers). Without workers (a daemonic trial worker cannot start them;
    or a single batch) the items are read in this process with generators of their own
    (``stream.OwnRandom``), not the trial's. Images travel to the device as uint8 (4x less than
    float), from pinned memory on CUDA.
    """

    def epoch(self, k: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        split = self.split
        generator = self._epoch_generator(k, _canonical(self.device))
        order = self._order(len(split), generator).cpu()
        if split.indices is not None:
            order = split.indices[order]
        workers_seed = seeds.child_seed(self.seed, Stream.EPOCHS + k, 1)
        workers = usable_workers(split.num_workers if len(self) > 1 else 0)
        batches = torch.utils.data.DataLoader(
            items.Checked(split.dataset(self.augment), split.name),
            batch_size=self.batch_size,
            sampler=order.tolist(),
            drop_last=self.drop_last,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(workers_seed),
            collate_fn=items.Collate(split.name),
            worker_init_fn=seed_worker,
        )
        own = OwnRandom(workers_seed) if workers == 0 else None
        batches = iter(batches)
        while True:
            with own.active() if own is not None else contextlib.nullcontext():
                batch = next(batches, None)
            if batch is None:
                return
            images, labels = self._on_device(batch)
            if self.augment and split.crop_padding is not None:
                images = augment(images, generator, split.crop_padding, split.flip)
            yield normalise(images, self.mean, self.std), labels

    def _on_device(self, batch) -> tuple[Tensor, Tensor]:
        """A collated batch on the device (uint8 images), or the fault a worker met as one line."""
        if isinstance(batch, items.Failure):
            raise UsageError(batch.message)
        images, labels = batch
        if self.split.shape is not None and tuple(images.shape[1:]) != tuple(self.split.shape):
            raise UsageError(f"{self.split.name}: a batch has images {list(images.shape[1:])}, the first item "
                             f"{list(self.split.shape)}; every image must have the same size")
        return images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)


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
