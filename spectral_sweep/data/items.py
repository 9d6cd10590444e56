"""One item of a user's dataset as the loaders take it, or one line saying which item breaks the contract.

The contract (README, "Your own model and data"): an item is (image, integer label), the image a
tensor or array [C, H, W] (float values taken as [0, 1]) or a PIL image. ``read`` fetches item i
and converts it to (uint8 [C, H, W], int); the in-memory path stacks what it gives, the streamed
path runs it in DataLoader workers through ``Checked``, where a fault cannot be raised as one
line (the DataLoader re-raises a worker's exception with its traceback in the message): there
the fault travels back as a ``Failure`` in place of the batch, and the loader raises it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from spectral_sweep.errors import UsageError


def read(dataset, index: int, where: str) -> tuple[Tensor, int]:
    """Item ``index`` of ``dataset`` as (uint8 [C, H, W], label); ``where`` names the dataset."""
    return as_item(fetch(dataset, index, where), f"{where}: item {index}")


def fetch(dataset, index: int, where: str):
    """``dataset[index]`` as it comes, or one line saying which item failed, and how."""
    try:
        return dataset[index]
    except Exception as error:   # the user's __getitem__ (or its transform) failed: which item, and why
        lines = str(error).strip().splitlines()
        raise UsageError(f"{where}: reading item {index} raised {type(error).__name__}"
                         f"{': ' + lines[0] if lines else ''}") from None


def as_item(item, where: str) -> tuple[Tensor, int]:
    """``item`` as (uint8 image [C, H, W], int label), or a ``UsageError`` starting with ``where``."""
    x, y = item if isinstance(item, (tuple, list)) and len(item) == 2 else (item, None)
    try:
        x = _tensor(x)
    except (TypeError, ValueError, OSError) as error:   # an array of objects, a PIL mode torch has no dtype for
        raise UsageError(f"{where}'s image ({type(x).__name__}) does not convert to a tensor: {error}") from None
    if not isinstance(x, Tensor) or x.ndim != 3 or not isinstance(y, (int, np.integer, Tensor)):
        raise UsageError(f"{where} is {type(item).__name__}, not (image tensor [C, H, W], integer label)")
    if isinstance(y, Tensor) and (y.numel() != 1 or y.dtype == torch.bool or (y.is_floating_point() and not
                                                                               bool(y == y.round()))):
        raise UsageError(f"{where}'s label is {list(y.shape)} {y.dtype}, not one integer class index "
                         "(one-hot or soft labels are not taken)")
    if x.is_floating_point() and not torch.isfinite(x).all():   # uint8 would make it a silent 0
        raise UsageError(f"{where}'s image holds values that are not finite (NaN or inf); the images must "
                         "be finite numbers")
    image = (x.clamp(0, 1) * 255).round().to(torch.uint8) if x.is_floating_point() else x.to(torch.uint8)
    return image, int(y)


def is_array(image) -> bool:
    """Whether an item's image is already numbers in memory (not, say, a PIL image still to convert)."""
    return isinstance(image, (Tensor, np.ndarray))


def _tensor(x):
    """An array or a PIL image as a tensor [C, H, W] (a grey PIL image: [1, H, W]); else ``x``."""
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    if type(x).__module__.startswith("PIL."):
        from torchvision.transforms.functional import pil_to_tensor

        return pil_to_tensor(x)
    return x


class Failure:
    """A fault met in a DataLoader worker, sent back in place of a batch: the loader raises it."""

    def __init__(self, message: str):
        self.message = message


class Checked(torch.utils.data.Dataset):
    """``dataset``'s items through ``read``, each as (uint8 image, label) or a ``Failure``."""

    def __init__(self, dataset, where: str):
        self.dataset, self.where = dataset, where

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        try:
            return read(self.dataset, index, self.where)
        except UsageError as error:
            return Failure(str(error))


class Collate:
    """A batch of ``Checked`` items as (uint8 images [B, C, H, W], int64 labels), or its first
    ``Failure`` (among them images of different sizes, which no batch can hold)."""

    def __init__(self, where: str):
        self.where = where

    def __call__(self, items):
        failed = next((item for item in items if isinstance(item, Failure)), None)
        if failed is not None:
            return failed
        shapes = [tuple(x.shape) for x, _ in items]
        if len(set(shapes)) > 1:
            other = next(s for s in shapes if s != shapes[0])
            return Failure(f"{self.where}: images of one batch are {list(shapes[0])} and {list(other)}; every "
                           "image must have the same size (resize or crop in the dataset's transform)")
        return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items], dtype=torch.int64)
