"""Whether a user's dataset is streamed, and its splits when it is (``dataset.stream``).

In memory (``load._in_memory``), a ``_target_``'s datasets are read once into uint8 tensors that
live on the device: the fastest way to train, but the whole set must fit, and a random transform
that the dataset applies in ``__getitem__`` is drawn once and then frozen for every epoch of every
trial. Streamed, each split is a ``StreamSplit`` that ``loaders.StreamLoader`` reads item by item
every epoch through DataLoader workers, the transform drawn afresh at each read.

``dataset.stream=auto`` streams a user's dataset when

- its images, as uint8, would take more than ``BUDGET`` bytes in memory, train and test together,
  estimated as (len(train) + len(test)) x the bytes of the first training item's image (only
  that item is read); or
- its images are not tensors or arrays (a PIL image, say): they are converted item by item anyway.

Without reading it all, a streamed split needs labels and a normalisation: the labels are the
dataset's ``targets`` (torchvision's convention: ImageFolder, CIFAR, ... have them) or else are
read in one pass through the workers (the images dropped, said on stderr); the per-channel mean
and std are those of ``SAMPLE`` training items drawn with a fixed seed.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import random
import sys

import numpy as np
import torch
from torch import Tensor

from spectral_sweep.data import items
from spectral_sweep.data.splits import StreamSplit
from spectral_sweep.errors import UsageError

BUDGET = 4 * 2 ** 30   # bytes of uint8 images (train + test) above which auto streams: about ImageNet32's 3.8 GB
SAMPLE = 512           # training items whose pixels give a streamed dataset's mean and std
MAX_WORKERS = 8        # DataLoader processes per streamed loader, at most (and one core left to training)


def streams(stream: str, train, test, where: str) -> bool:
    """Whether ``dataset.stream`` = ``stream`` streams the (train, test) datasets (see the module doc)."""
    if stream != "auto":
        return stream == "true"
    if not len(train):
        return False   # the in-memory path says it is empty
    first = items.fetch(train, 0, where)
    image = first[0] if isinstance(first, (tuple, list)) and len(first) == 2 else first
    if not items.is_array(image):
        _say(where, f"its images are {type(image).__name__} objects, not tensors or arrays")
        return True
    need = (len(train) + len(test)) * items.as_item(first, f"{where}: item 0")[0].numel()
    if need > BUDGET:
        _say(where, f"its {len(train)} + {len(test)} images would take {_size(need)} in memory, over the "
                    f"{_size(BUDGET)} budget")
        return True
    return False


def _size(n: int) -> str:
    """Bytes in the largest binary unit that keeps a number of at least 1."""
    unit = next(u for u in range(3, -1, -1) if n >= 1024 ** u or u == 0)
    return f"{n / 1024 ** unit:.3g} {('bytes', 'KiB', 'MiB', 'GiB')[unit]}"


def _say(where: str, why: str) -> None:
    print(f"{where}: streamed, read item by item every epoch ({why}; dataset.stream=false reads it into "
          "memory all the same)", file=sys.stderr, flush=True)


def streamed(where: str, train, test):
    """The (train, test) splits of two datasets read item by item, and what a ``Data`` needs to
    know about them: (train split, test split, num_classes, image shape [C, H, W], mean, std)."""
    if not len(train) or not len(test):
        raise UsageError(f"{where} returned an empty dataset")
    shape = tuple(items.read(train, 0, where)[0].shape)
    test_shape = tuple(items.read(test, 0, where + " (test)")[0].shape)
    if test_shape != shape:
        raise UsageError(f"{where}: train images are {shape}, test images {test_shape}")
    mean, std = _sample_moments(train, where)
    labels = [_labels(dataset, f"{where}{suffix}") for dataset, suffix in ((train, ""), (test, " (test)"))]
    classes = getattr(train, "classes", None)
    num_classes = len(classes) if classes else int(max(labels[0].max(), labels[1].max())) + 1
    splits = [StreamSplit(dataset, y, mean, std, num_workers=default_workers(), name=f"{where}{suffix}", shape=shape)
              for dataset, y, suffix in ((train, labels[0], ""), (test, labels[1], " (test)"))]
    return (*splits, num_classes, shape, mean, std)


def _sample_moments(train, where: str) -> tuple[tuple, tuple]:
    """Per-channel mean and std of ``SAMPLE`` training images drawn with a fixed seed (all of them
    in a smaller set), their transforms drawn from a fixed seed too (the global state left as it was)."""
    n = len(train)
    chosen = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:SAMPLE].sort().values
    with OwnRandom(0).active():
        pixels = torch.stack([items.read(train, int(i), where)[0] for i in chosen]).float().div_(255.0)
    std, mean = torch.std_mean(pixels, dim=(0, 2, 3))
    return tuple(mean.tolist()), tuple(std.clamp(min=1e-3).tolist())


def _labels(dataset, where: str) -> Tensor:
    """The labels of every item: the dataset's ``targets`` where it has one per item, else one pass."""
    targets = getattr(dataset, "targets", None)
    try:
        labels = torch.as_tensor(np.asarray(targets)) if targets is not None else None
    except (TypeError, ValueError, RuntimeError):   # not numbers (class names, say): read the items' own
        labels = None
    if labels is not None and labels.ndim == 1 and len(labels) == len(dataset) and not labels.is_floating_point() \
            and labels.dtype != torch.bool:
        return labels.to(torch.int64)
    print(f"{where}: no .targets (a label per item); reading its {len(dataset)} labels once, item by item",
          file=sys.stderr, flush=True)
    workers = usable_workers(default_workers())
    batches = torch.utils.data.DataLoader(items.Checked(dataset, where), batch_size=256, num_workers=workers,
                                          collate_fn=items.Collate(where), worker_init_fn=seed_worker)
    found = []
    with OwnRandom(0).active() if workers == 0 else contextlib.nullcontext():
        for batch in batches:
            if isinstance(batch, items.Failure):
                raise UsageError(batch.message)
            found.append(batch[1])
    return torch.cat(found)


def default_workers() -> int:
    """DataLoader processes for a streamed split: the cores but one (training's), at most ``MAX_WORKERS``."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, cores - 1))


def usable_workers(wanted: int) -> int:
    """``wanted``, or 0 in a daemonic process (a trial worker of point/pool.py): it may not start any."""
    return 0 if multiprocessing.current_process().daemon else wanted


def seed_worker(worker_id: int) -> None:
    """numpy's and Python's generators in a DataLoader worker, from torch's seed for it (torch
    seeds its own and Python's; numpy's would be the parent's, the same in every worker and epoch)."""
    seed = torch.initial_seed()
    np.random.seed(seed % 2 ** 32)
    random.seed(seed)


class OwnRandom:
    """torch's (CPU), numpy's and Python's global generators for reading data in this process
    alone, started from ``seed``: the transforms of items read without workers draw from these
    instead of the trial's random stream (which would make the data depend on the model's draws,
    and the model's on the data's). ``active()`` swaps them in and back."""

    def __init__(self, seed: int):
        seed = int(seed) % 2 ** 63
        self.states = (torch.Generator().manual_seed(seed).get_state(),
                       np.random.RandomState(seed % 2 ** 32).get_state(), random.Random(seed).getstate())

    @contextlib.contextmanager
    def active(self):
        outer = _global_states()
        _set_global_states(self.states)
        try:
            yield
        finally:
            self.states = _global_states()
            _set_global_states(outer)


def _global_states():
    return torch.get_rng_state(), np.random.get_state(), random.getstate()


def _set_global_states(states) -> None:
    torch.set_rng_state(states[0])
    np.random.set_state(states[1])
    random.setstate(states[2])
