"""A dataset's splits: uint8 tensors in memory or a dataset read item by item, and the device-side transforms."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor

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


class StreamSplit:
    """A split read item by item, every epoch, by DataLoader workers (``loaders.StreamLoader``).

    ``source`` is a map-style dataset of (image, label) items, ``indices`` the items of it kept
    (None: all), ``labels`` those of all its items. ``shape`` is the [C, H, W] every image must
    have (None: whatever the source's transform makes); ``name`` says whose items a message is
    about. ``num_workers`` processes decode the items (0: in the loader's own process). A training
    loader augments the batches on the device as a ``TensorSplit``'s (``crop_padding``, ``flip``),
    unless ``crop_padding`` is None (the source's transform augments).
    """

    def __init__(self, source, labels: Tensor, mean, std, indices: Tensor | None = None, num_workers: int = 2,
                 name: str = "the dataset", shape: tuple | None = None, crop_padding: int | None = CROP_PADDING,
                 flip: bool = True):
        self.source, self.indices = source, indices
        self.all_labels = torch.as_tensor(labels, dtype=torch.int64)
        self.mean, self.std = tuple(mean), tuple(std)
        self.num_workers, self.name, self.shape = int(num_workers), name, shape
        self.crop_padding, self.flip = crop_padding, bool(flip)

    def __len__(self) -> int:
        return len(self.all_labels) if self.indices is None else len(self.indices)

    @property
    def labels(self) -> Tensor:
        return self.all_labels if self.indices is None else self.all_labels[self.indices]

    def select(self, indices: Tensor) -> StreamSplit:
        kept = copy.copy(self)
        kept.indices = torch.as_tensor(indices) if self.indices is None else self.indices[indices]
        return kept

    def dataset(self, augment: bool) -> torch.utils.data.Dataset:
        """What a loader reads (its items indexed as ``source``'s): the source itself; the user's
        transform, random or not, is the source's own, drawn afresh at every read."""
        return self.source


class FolderSplit(StreamSplit):
    """A split of image files read by ``torchvision.datasets.ImageFolder``.

    The transform depends on whether the loader augments, so one split serves both a training
    loader and an augmentation-free pass over the training set (e.g. a full-data Hessian).
    """

    def __init__(self, folder, indices: Tensor | None = None, num_workers: int = 8,
                 mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__(folder, folder.targets, mean, std, indices, num_workers, name=f"ImageFolder {folder.root}",
                         crop_padding=None, flip=False)

    @property
    def folder(self):
        return self.source

    def dataset(self, augment: bool) -> torch.utils.data.Dataset:
        """The folder yielding (uint8 [3, 224, 224], label)."""
        from torchvision import transforms

        if augment:
            steps = [transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip()]
        else:
            steps = [transforms.Resize(256), transforms.CenterCrop(224)]
        folder = copy.copy(self.folder)  # shares the sample list, owns its transform
        folder.transform = transforms.Compose(steps + [transforms.PILToTensor()])
        return folder


@dataclass
class Data:
    """A dataset: two splits and what a model and a loader need to know about them."""

    train: TensorSplit | StreamSplit
    test: TensorSplit | StreamSplit
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


def _canonical(device: torch.device) -> torch.device:
    """'cuda' and 'cuda:0' name the same memory; cache copies under one key."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device
