"""ImageNet: the ImageFolder tree (streamed by DataLoader workers) and the 32x32 pickles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from spectral_sweep.data.splits import IMAGENET_MEAN, IMAGENET_STD, Data, FolderSplit, TensorSplit
from spectral_sweep.errors import UsageError


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
