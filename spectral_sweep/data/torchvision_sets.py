"""torchvision's in-memory image datasets through one builder: MNIST, Fashion-MNIST, KMNIST,
CIFAR-10, CIFAR-100 and SVHN.

A preset (``conf/dataset/fashion_mnist.yaml``, ...) names the torchvision class, its normalisation
(mean and std per channel) and its augmentation; ``torchvision_data`` reads both splits through
that class into uint8 tensors ``[N, C, H, W]`` (a grey set's ``[N, H, W]`` gains a channel axis,
CIFAR's ``[N, H, W, 3]`` is transposed, SVHN's is already so) and int64 labels: the same
device-resident splits as every small dataset in data/, augmented on the device.

The files are looked for, in order:

1. ``root`` in torchvision's own layout: ``root/FashionMNIST/raw/train-images-idx3-ubyte`` and its
   three siblings, ``root/cifar-10-batches-py/``, ``root/train_32x32.mat``;
2. gzipped IDX files (MNIST-style sets), as published, in ``root/<Class>/raw/`` or in a system
   folder (``SYSTEM_COPIES``: where the Debian package ``dataset-fashion-mnist`` puts them). They
   are decompressed into a temporary folder and read from there: nothing is written beside them
   (``/usr`` stays untouched) or into root;
3. with ``download=True``, torchvision fetches them into root.

No data, files that do not parse or a download that fails are one ``UsageError`` line that says
where it looked and every way to get the files.
"""

from __future__ import annotations

import gzip
import inspect
import pickle
import shutil
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from spectral_sweep.data.splits import Data, TensorSplit
from spectral_sweep.errors import UsageError

# A dataset's gzipped IDX files as a system package installs them: (folder, Debian package). Read in
# place, never written to; tests point it at a folder of their own.
SYSTEM_COPIES = {"FashionMNIST": (Path("/usr/share/datasets/fashion-mnist"), "dataset-fashion-mnist")}
_READ_ERRORS = (RuntimeError, pickle.UnpicklingError, EOFError, KeyError, ValueError, AssertionError, TypeError,
                IndexError, OSError, zlib.error)   # what torchvision, numpy, scipy and gzip raise on a bad file


def torchvision_data(root: Path, download: bool, seed: int, torchvision_class: str, mean: list[float],
                     std: list[float], crop_padding: int, flip: bool) -> Data:
    """Both splits of ``torchvision.datasets.<torchvision_class>``, normalised by ``mean`` / ``std``
    and augmented by a random crop after ``crop_padding`` pixels of padding and, with ``flip``, a
    random mirror (see the module doc for where the files are found)."""
    import torchvision.datasets

    cls = getattr(torchvision.datasets, str(torchvision_class), None)
    if not inspect.isclass(cls):
        raise UsageError(f"torchvision.datasets has no dataset {torchvision_class!r}")
    root = Path(root)
    packed = None if _present(cls, root) else _packed(cls, root)
    if packed is not None:
        _say_where(cls, packed, root)
        with tempfile.TemporaryDirectory(prefix="spectral-sweep-") as folder:
            _decompress(cls, packed, Path(folder) / cls.__name__ / "raw")
            raw = [_read(cls, Path(folder), False, train, packed) for train in (True, False)]
    else:
        if not download and not _present(cls, root):
            raise _missing(cls, root)
        raw = [_read(cls, root, download, train, _folder(cls, root)[0]) for train in (True, False)]
    (train_x, train_y), (test_x, test_y) = (_tensors(r, len(mean)) for r in raw)
    if train_x.shape[1] != len(mean):
        raise UsageError(f"dataset.mean and dataset.std have {len(mean)} value{'s' * (len(mean) != 1)}, but "
                         f"{cls.__name__} images have {train_x.shape[1]} channels")
    mean, std = tuple(mean), tuple(std)
    num_classes = len(getattr(raw[0], "classes", None) or range(10))   # SVHN lists none: digits 0-9
    return Data(TensorSplit(train_x, train_y, mean, std, crop_padding, flip),
                TensorSplit(test_x, test_y, mean, std, crop_padding, flip),
                num_classes, int(train_x.shape[-1]), mean, std, channels=int(train_x.shape[1]))


def _say_where(cls, packed: Path, root: Path) -> None:
    """One line where the files came from a system copy, not dataset.root: which of the places
    that may hold them was read is otherwise invisible."""
    system = SYSTEM_COPIES.get(cls.__name__)
    if system and Path(packed) == Path(system[0]):
        print(f"{cls.__name__}: read from {packed} (the {system[1]} package), as {root} has no copy",
              file=sys.stderr, flush=True)


def _folder(cls, root: Path) -> tuple[Path, str]:
    """Where torchvision keeps ``cls``'s files under ``root``, and what a user should put there."""
    if hasattr(cls, "base_folder"):                 # CIFAR: the unpacked python archive
        return root / cls.base_folder, f"{cls.base_folder}/ (the unpacked {cls.filename})"
    if hasattr(cls, "resources"):                   # MNIST-style: raw IDX files
        return root / cls.__name__ / "raw", f"{cls.__name__}/raw/ (its four idx-ubyte files, gzipped or not)"
    names = " and ".join(entry[1] for entry in cls.split_list.values() if "extra" not in entry[1])
    return root, names                              # SVHN: the .mat files in root itself


def _present(cls, root: Path) -> bool:
    """Whether ``root`` holds ``cls``'s files as torchvision reads them (not whether they parse)."""
    folder, _ = _folder(cls, root)
    if hasattr(cls, "base_folder"):
        return folder.is_dir()
    if hasattr(cls, "resources"):
        return all((folder / Path(name).stem).is_file() for name, _ in cls.resources)
    return all((root / cls.split_list[s][1]).is_file() for s in ("train", "test"))


def _packed(cls, root: Path) -> Path | None:
    """A folder holding ``cls``'s gzipped IDX files: root's raw folder, else the system copy."""
    if not hasattr(cls, "resources"):
        return None
    system = SYSTEM_COPIES.get(cls.__name__)
    for folder in (_folder(cls, root)[0], system[0] if system else None):
        if folder is not None and all((Path(folder) / name).is_file() for name, _ in cls.resources):
            return Path(folder)
    return None


def _decompress(cls, packed: Path, folder: Path) -> None:
    """The gzipped IDX files of ``packed`` as the plain ones torchvision reads, into ``folder``."""
    folder.mkdir(parents=True)
    for name, _ in cls.resources:
        try:
            with gzip.open(packed / name) as source, open(folder / Path(name).stem, "wb") as target:
                shutil.copyfileobj(source, target)
        except (OSError, EOFError, zlib.error) as error:
            raise _corrupt(cls, packed, error) from None


def _read(cls, root: Path, download: bool, train: bool, folder: Path):
    """One split through torchvision (SVHN takes ``split=``, the others ``train=``)."""
    before = _present(cls, root)
    try:
        if "split" in inspect.signature(cls).parameters:
            return cls(str(root), split="train" if train else "test", download=download)
        return cls(str(root), train=train, download=download)
    except _READ_ERRORS as error:
        if download and not before:
            raise UsageError(f"could not download {cls.__name__} into {root} ({_one_line(error)}); fetch it "
                             f"by hand from {_source(cls)} and put it in {_folder(cls, root)[0]}") from None
        raise _corrupt(cls, folder, error) from None


def _tensors(raw, channels: int) -> tuple[Tensor, Tensor]:
    """A torchvision dataset's ``data`` and labels as uint8 ``[N, C, H, W]`` and int64 ``[N]``."""
    data = raw.data if isinstance(raw.data, Tensor) else torch.from_numpy(np.asarray(raw.data))
    if data.ndim == 3:                               # grey: [N, H, W]
        data = data.unsqueeze(1)
    elif data.shape[1] != channels and data.shape[-1] == channels:   # CIFAR: [N, H, W, C]
        data = data.permute(0, 3, 1, 2)
    labels = raw.targets if hasattr(raw, "targets") else raw.labels
    return data.contiguous().to(torch.uint8), torch.as_tensor(np.asarray(labels), dtype=torch.int64)


def _missing(cls, root: Path) -> UsageError:
    """No files anywhere: one line naming where it looked and every way to get them."""
    folder, holding = _folder(cls, root)
    system = SYSTEM_COPIES.get(cls.__name__)
    where = f"{folder} nor in {system[0]}" if system else f"{folder}"
    ways = [f"dataset.root=PATH of a folder holding {holding}"]
    if system:
        ways.append(f"apt-get install {system[1]}")
    ways.append(f"dataset.download=true (fetches it from {_source(cls)})")
    return UsageError(f"no {cls.__name__} data in {where}; get it one of these ways: "
                      f"{', '.join(ways[:-1])} or {ways[-1]}")


def _corrupt(cls, folder: Path, error: Exception) -> UsageError:
    return UsageError(f"{cls.__name__} files in {folder} are missing or corrupt ({_one_line(error)}); replace "
                      "them with fresh copies (dataset.download=true fetches them into an empty dataset.root)")


def _source(cls) -> str:
    """Where torchvision downloads ``cls`` from."""
    if hasattr(cls, "mirrors"):
        return cls.mirrors[0]
    if hasattr(cls, "url"):
        return cls.url
    return cls.split_list["train"][0].rpartition("/")[0]


def _one_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0].rstrip(":") if lines else type(error).__name__
