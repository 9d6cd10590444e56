"""Datasets and loaders, read through the real loaders from tiny files in the real formats."""

import math
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from spectral_sweep.data.load import DATASET_NAMES, load_dataset
from spectral_sweep.data.loaders import BatchLoader, fixed_batch, random_batch
from spectral_sweep.data.splits import IMAGENET_MEAN, IMAGENET_STD, Data, TensorSplit, augment, normalise
from spectral_sweep.errors import UsageError
from spectral_sweep.seeds import FIRST_FREE, Stream, child_seed, generator

CONF = Path(__file__).resolve().parents[1] / "conf" / "dataset"
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)   # the published value, which conf/dataset/cifar10.yaml holds


# ----------------------------------------------------------------------------------------------
# CIFAR: the python-pickle release, written byte for byte the way it was made


class Py2Str(bytes):
    """A Python 2 ``str``. The CIFAR pickles come from Python 2, so their keys load as ``str``
    under torchvision's ``encoding='latin1'`` and as ``bytes`` under the ``encoding='bytes'``
    recipe of the CIFAR page; pickling this type as BINSTRING reproduces both."""


class Py2Pickler(pickle._Pickler):
    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2str(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[Py2Str] = save_py2str


def py2(obj):
    """Turn every str in a nest of dicts and lists into a Python 2 str."""
    if isinstance(obj, str):
        return Py2Str(obj.encode("latin1"))
    if isinstance(obj, dict):
        return {py2(k): py2(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [py2(v) for v in obj]
    return obj


def dump(path: Path, obj) -> None:
    with open(path, "wb") as f:
        Py2Pickler(f, protocol=2).dump(py2(obj))


def cifar_batch(rng, n: int, num_classes: int, label_key: str) -> dict:
    return {
        "batch_label": "tiny batch",
        label_key: rng.integers(0, num_classes, n).tolist(),
        "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        "filenames": [f"img_{i}.png" for i in range(n)],
    }


def write_cifar10(root: Path, per_batch: int = 3, test: int = 4, seed: int = 0) -> tuple[list, dict]:
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train = [cifar_batch(rng, per_batch, 10, "labels") for _ in range(5)]
    for i, batch in enumerate(train, 1):
        dump(folder / f"data_batch_{i}", batch)
    test_batch = cifar_batch(rng, test, 10, "labels")
    dump(folder / "test_batch", test_batch)
    dump(folder / "batches.meta", {"num_cases_per_batch": per_batch, "num_vis": 3072,
                                   "label_names": [f"class{i}" for i in range(10)]})
    return train, test_batch


def write_cifar100(root: Path, train: int = 7, test: int = 5, seed: int = 0) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    batches = {}
    for name, n in (("train", train), ("test", test)):
        batches[name] = cifar_batch(rng, n, 100, "fine_labels")
        batches[name]["coarse_labels"] = [label // 5 for label in batches[name]["fine_labels"]]
        dump(folder / name, batches[name])
    dump(folder / "meta", {"fine_label_names": [f"fine{i}" for i in range(100)],
                           "coarse_label_names": [f"coarse{i}" for i in range(20)]})
    return batches["train"], batches["test"]


@pytest.fixture
def md5_unchecked(monkeypatch):
    """Our tiny files cannot match the published md5 sums; replace only that comparison (the file
    must still exist), so torchvision's own unpickling and reshaping run on them."""
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity",
                        lambda fpath, md5=None: os.path.isfile(fpath))


def test_fixture_is_the_python2_pickle_format(tmp_path):
    write_cifar10(tmp_path)
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        assert {b"data", b"labels"} <= set(pickle.load(f, encoding="bytes"))


def test_cifar10_pixels_and_labels_round_trip(tmp_path, md5_unchecked):
    train, test = write_cifar10(tmp_path)
    data = load_dataset("cifar10", root=str(tmp_path))
    assert isinstance(data, Data) and data.num_classes == 10 and data.image_size == 32
    assert data.mean == CIFAR10_MEAN and len(data.train) == 15 and len(data.test) == 4
    rows = np.concatenate([b["data"] for b in train])
    assert data.train.images.dtype == torch.uint8 and data.train.images.shape == (15, 3, 32, 32)
    assert torch.equal(data.train.images, torch.from_numpy(rows.reshape(15, 3, 32, 32)))
    # a row is 1024 red, 1024 green, 1024 blue values, each plane row-major
    assert data.train.images[4, 1, 2, 3] == rows[4, 1024 + 2 * 32 + 3]
    assert data.train.labels.tolist() == sum((b["labels"] for b in train), [])
    assert data.test.labels.dtype == torch.int64 and data.test.labels.tolist() == test["labels"]
    assert torch.equal(data.test.images, torch.from_numpy(test["data"].reshape(4, 3, 32, 32)))


def test_cifar100_uses_fine_labels(tmp_path, md5_unchecked):
    train, test = write_cifar100(tmp_path)
    data = load_dataset("cifar100", root=str(tmp_path))
    assert data.num_classes == 100 and len(data.train) == 7 and len(data.test) == 5
    assert data.train.labels.tolist() == train["fine_labels"]
    assert torch.equal(data.test.images, torch.from_numpy(test["data"].reshape(5, 3, 32, 32)))


@pytest.mark.parametrize("name, folder", [("cifar10", "cifar-10-batches-py"),
                                          ("cifar100", "cifar-100-python")])
def test_cifar_missing_says_where_and_how(tmp_path, name, folder):
    with pytest.raises(UsageError) as error:
        load_dataset(name, root=str(tmp_path))
    message = str(error.value)
    assert str(tmp_path / folder) in message and "dataset.download=true" in message
    assert "\n" not in message


def test_cifar_with_wrong_checksums_is_reported_as_corrupt(tmp_path):
    write_cifar10(tmp_path)  # real md5 check: tiny files are not the published ones
    with pytest.raises(UsageError, match="corrupt") as error:
        load_dataset("cifar10", root=str(tmp_path))
    assert str(tmp_path / "cifar-10-batches-py") in str(error.value)


def test_cifar_truncated_pickle_is_reported_as_corrupt(tmp_path, md5_unchecked):
    write_cifar10(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:100])
    with pytest.raises(UsageError, match="corrupt") as error:
        load_dataset("cifar10", root=str(tmp_path))
    assert str(tmp_path / "cifar-10-batches-py") in str(error.value)


# ----------------------------------------------------------------------------------------------
# ImageNet as an ImageFolder tree


def write_image_folder(root: Path, classes=("cat", "dog"), train_per_class: int = 3) -> None:
    rng = np.random.default_rng(0)
    for split, count in (("train", train_per_class), ("val", 1)):
        for c, name in enumerate(classes):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (30 + 7 * i, 40, 3), dtype=np.uint8)
                if split == "val":  # one flat colour per class: survives resize and crop exactly
                    pixels[:] = (40 + 100 * c, 90, 200 - 100 * c)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")


def test_imagenet_folder_batches(tmp_path):
    write_image_folder(tmp_path)
    data = load_dataset("imagenet", root=str(tmp_path), num_workers=0)
    assert data.num_classes == 2 and data.image_size == 224
    assert len(data.train) == 6 and len(data.test) == 2 and data.mean == IMAGENET_MEAN
    loader = BatchLoader(data.train, 4, torch.device("cpu"), train=True)
    assert len(loader) == 1
    (x, y), = list(loader.epoch(0))
    assert x.shape == (4, 3, 224, 224) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and set(y.tolist()) <= {0, 1}

    (x, y), = list(BatchLoader(data.test, 4, "cpu", train=False).epoch(0))  # partial batch kept
    assert x.shape == (2, 3, 224, 224) and y.tolist() == [0, 1]
    for c, colour in enumerate([(40, 90, 200), (140, 90, 100)]):
        expected = (torch.tensor(colour) / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
        assert torch.allclose(x[c].mean(dim=(1, 2)), expected, atol=1e-5)
        assert torch.allclose(x[c].std(dim=(1, 2)), torch.zeros(3), atol=1e-5)


def test_imagenet_subset_and_eval_transform_on_train_split(tmp_path):
    write_image_folder(tmp_path)
    data = load_dataset("imagenet", root=str(tmp_path), num_workers=0, subset=4)
    assert len(data.train) == 4 and data.train.labels.bincount().tolist() == [2, 2]
    batches = list(BatchLoader(data.train, 3, "cpu", train=False, augment=False).epoch(0))
    assert [len(y) for _, y in batches] == [3, 1]


def test_imagenet_missing_says_where_and_how(tmp_path):
    with pytest.raises(UsageError) as error:
        load_dataset("imagenet", root=str(tmp_path))
    message = str(error.value)
    assert str(tmp_path / "train") in message and "image-net.org" in message and "\n" not in message


def test_imagenet_val_classes_must_match_train(tmp_path):
    write_image_folder(tmp_path)
    (tmp_path / "val" / "dog").rename(tmp_path / "val" / "wolf")
    with pytest.raises(UsageError, match="do not match"):
        load_dataset("imagenet", root=str(tmp_path), num_workers=0)


def test_imagenet_empty_class_folder_is_a_usage_error(tmp_path):
    write_image_folder(tmp_path)
    (tmp_path / "train" / "fox").mkdir()
    with pytest.raises(UsageError, match=str(tmp_path / "train")):
        load_dataset("imagenet", root=str(tmp_path), num_workers=0)


# ----------------------------------------------------------------------------------------------
# ImageNet 32x32 in its npz batches


def write_imagenet32(folder_train: Path, folder_val: Path, sizes=(3, 2, 4), val: int = 5):
    """Train batches 1, 2 and 10 (to check numeric order) and val_data, as published."""
    rng = np.random.default_rng(0)
    folder_train.mkdir(parents=True, exist_ok=True)
    folder_val.mkdir(parents=True, exist_ok=True)
    written = []
    for number, n in zip((1, 2, 10), sizes):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = rng.integers(1, 1001, n).tolist()  # 1-based, a list as in the release
        np.savez(folder_train / f"train_data_batch_{number}.npz", data=data, labels=labels,
                 mean=data.mean(axis=0))
        written.append((data, labels))
    data = rng.integers(0, 256, (val, 3072), dtype=np.uint8)
    labels = rng.integers(1, 1001, val).tolist()
    data[0, 1024 + 5 * 32 + 7] = 201  # green plane, row 5, column 7
    labels[0] = 1000
    np.savez(folder_val / "val_data.npz", data=data, labels=labels)
    return written, (data, labels)


@pytest.mark.parametrize("layout", ["flat", "unzipped"])
def test_imagenet32_round_trip(tmp_path, layout):
    if layout == "flat":
        train, val = write_imagenet32(tmp_path, tmp_path)
    else:
        train, val = write_imagenet32(tmp_path / "Imagenet32_train_npz", tmp_path / "Imagenet32_val_npz")
    data = load_dataset("imagenet32", root=str(tmp_path))
    assert data.num_classes == 1000 and data.image_size == 32 and len(data.train) == 9
    rows = np.concatenate([d for d, _ in train])
    assert torch.equal(data.train.images, torch.from_numpy(rows.reshape(9, 3, 32, 32)))
    assert data.train.labels.tolist() == [label - 1 for _, labels in train for label in labels]
    assert data.test.images[0, 1, 5, 7] == 201 and data.test.labels[0] == 999
    assert data.test.labels.dtype == torch.int64 and data.test.labels.min() >= 0


def test_imagenet32_zero_based_labels_are_refused(tmp_path):
    write_imagenet32(tmp_path, tmp_path)
    np.savez(tmp_path / "val_data.npz", data=np.zeros((2, 3072), np.uint8), labels=[0, 5])
    with pytest.raises(UsageError, match="1..1000"):
        load_dataset("imagenet32", root=str(tmp_path))


def test_imagenet32_missing_says_where_and_how(tmp_path):
    with pytest.raises(UsageError) as error:
        load_dataset("imagenet32", root=str(tmp_path))
    message = str(error.value)
    assert str(tmp_path) in message and "train_data_batch_1" in message and "image-net.org" in message


# ----------------------------------------------------------------------------------------------
# The synthetic set


def test_synthetic_is_reproducible_and_seeded():
    a = load_dataset("synthetic", data_seed=3, train_size=300, test_size=100)
    b = load_dataset("synthetic", data_seed=3, train_size=300, test_size=100)
    c = load_dataset("synthetic", data_seed=4, train_size=300, test_size=100)
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.test.labels, b.test.labels)
    assert a.mean == b.mean and a.std == b.std
    assert not torch.equal(a.train.images, c.train.images)
    assert a.train.images.shape == (300, 3, 32, 32) and a.train.images.dtype == torch.uint8
    assert a.train.labels.dtype == torch.int64 and a.test.images.shape == (100, 3, 32, 32)
    assert a.num_classes == 10 and a.image_size == 32
    # the test set does not move when the training set grows
    d = load_dataset("synthetic", data_seed=3, train_size=500, test_size=100)
    assert torch.equal(a.test.images, d.test.images)
    # one fixed dataset whatever the run's seed, like CIFAR; data_seed=None follows the seed
    assert torch.equal(load_dataset("synthetic", seed=5, data_seed=3, train_size=300, test_size=100).train.images,
                       a.train.images)
    assert torch.equal(load_dataset("synthetic", seed=3, data_seed=None, train_size=300, test_size=100).train.images,
                       a.train.images)
    with pytest.raises(UsageError, match="data_seed"):
        load_dataset("synthetic", data_seed=-1)


def test_the_loaders_defaults_are_the_config_schemas():
    """One home for a dataset's defaults: its config schema; the loader has none of its own."""
    import inspect

    from spectral_sweep.config.dataset import SyntheticConfig
    from spectral_sweep.data.synthetic import synthetic as _synthetic

    assert all(p.default is inspect.Parameter.empty for p in inspect.signature(_synthetic).parameters.values())
    data = load_dataset("synthetic", train_size=40, test_size=20)
    assert data.num_classes == SyntheticConfig().num_classes


def test_synthetic_options_and_balance():
    data = load_dataset("synthetic", seed=0, num_classes=7, train_size=700, test_size=70, noise=0.5)
    assert data.num_classes == 7 and data.train.labels.bincount().tolist() == [100] * 7
    assert data.test.labels.bincount().tolist() == [10] * 7
    pixels = data.train.images.float() / 255
    assert 0.4 < pixels.mean() < 0.6 and 0.1 < pixels.std() < 0.35  # an image-like range
    assert torch.allclose(torch.tensor(data.mean), pixels.mean(dim=(0, 2, 3)), atol=1e-4)
    assert torch.allclose(torch.tensor(data.std), pixels.std(dim=(0, 2, 3)), atol=1e-3)
    # noise is white pixel noise: more of it, rougher images (neighbour differences grow)

    def rough(d):
        return (d.train.images.float().diff(dim=-1)).abs().mean().item()

    quiet = load_dataset("synthetic", seed=0, num_classes=7, train_size=700, test_size=70, noise=0.0)
    assert rough(data) > 1.2 * rough(quiet)
    for bad in ({"noise": -1.0}, {"noise": float("nan")}, {"num_classes": 1}, {"num_classes": 2.5},
                {"train_size": 0}, {"test_size": 1.5}):
        (key,) = bad
        with pytest.raises(UsageError, match=f"dataset.{key}") as error:
            load_dataset("synthetic", **bad)
        assert "\n" not in str(error.value)


def test_synthetic_classes_have_no_pixel_template():
    """Every class has mean zero in every pixel: its evidence is texture, not a fixed picture."""
    data = load_dataset("synthetic", seed=0, train_size=4000, test_size=10)
    x = normalise(data.train.images, data.mean, data.std)
    means = torch.stack([x[data.train.labels == c].mean(0) for c in range(10)])
    # 400 samples a class: a class mean of pure sampling noise has rms about 1/sqrt(400)
    assert means.pow(2).mean(dim=(1, 2, 3)).sqrt().max() < 0.1


@pytest.fixture(scope="module")
def learnable():
    return load_dataset("synthetic", seed=0, train_size=4000, test_size=1000)


@pytest.fixture
def one_thread():
    """Tiny convolutions gain nothing from a second thread and lose much on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_synthetic_is_learnable_by_a_small_cnn(learnable, one_thread):
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 5, stride=2, padding=2), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, 10),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loader = BatchLoader(learnable.train, 64, "cpu", train=True)
    steps = 0
    for epoch in range(math.ceil(300 / len(loader))):
        for x, y in loader.epoch(epoch):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps += 1
    with torch.no_grad():
        correct = sum((model(x).argmax(1) == y).sum().item()
                      for x, y in BatchLoader(learnable.test, 500, "cpu", train=False).epoch(0))
    accuracy = correct / len(learnable.test)
    # measured 1.00 after 300 steps; nearest class mean gets about 0.36
    assert steps >= 300 and accuracy >= 0.8, f"small CNN test accuracy {accuracy:.3f} (chance 0.1)"


def test_synthetic_is_not_trivially_separable(learnable):
    """Nearest class mean on raw pixels stays far below the small CNN's 1.00 (measured 0.36).

    Above chance all the same: a finite-sample class mean is a random texture in its class's
    frequency band, so it correlates with test images of that class more often than not.
    """

    def flat(split):
        return normalise(split.images, learnable.mean, learnable.std).flatten(1)

    train, test = flat(learnable.train), flat(learnable.test)
    means = torch.stack([train[learnable.train.labels == c].mean(0) for c in range(10)])
    accuracy = (torch.cdist(test, means).argmin(1) == learnable.test.labels).float().mean().item()
    assert 0.15 < accuracy < 0.5, f"nearest-class-mean accuracy {accuracy:.3f}"


# ----------------------------------------------------------------------------------------------
# Augmentation and loaders


def test_augment_is_a_padded_shifted_flipped_copy():
    images = torch.randint(1, 256, (64, 3, 32, 32), dtype=torch.uint8)
    out = augment(images, torch.Generator().manual_seed(5))
    # the same draws, in the same order, predict every sample exactly
    g = torch.Generator().manual_seed(5)
    dy = torch.randint(0, 9, (64, 1), generator=g)
    dx = torch.randint(0, 9, (64, 1), generator=g)
    flip = torch.rand((64, 1), generator=g) < 0.5
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    for b in range(64):
        expected = padded[b, :, dy[b]:dy[b] + 32, dx[b]:dx[b] + 32]
        assert torch.equal(out[b], expected.flip(-1) if flip[b] else expected)
    assert out.shape == images.shape and out.dtype == torch.uint8
    assert 0 < flip.sum() < 64 and len(set(zip(dy.flatten().tolist(), dx.flatten().tolist()))) > 20
    # shifted samples carry zero padding; identical generators give identical output
    assert (out == 0).any() and torch.equal(out, augment(images, torch.Generator().manual_seed(5)))


def numbered_split(n: int = 10) -> TensorSplit:
    """Each sample's label is its index, so batches show which samples they hold."""
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)
    return TensorSplit(images, torch.arange(n), (0.5, 0.4, 0.3), (0.2, 0.25, 0.3))


def test_eval_loader_fixed_order_unaugmented_normalised():
    split = numbered_split()
    loader = BatchLoader(split, 4, torch.device("cpu"), train=False)
    assert len(loader) == 3 and not loader.augment and not loader.drop_last
    batches = list(loader.epoch(0))
    assert [y.tolist() for _, y in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    x = torch.cat([x for x, _ in batches])
    mean, std = torch.tensor(split.mean).view(1, 3, 1, 1), torch.tensor(split.std).view(1, 3, 1, 1)
    assert x.dtype == torch.float32 and torch.allclose(x, (split.images / 255 - mean) / std)
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(batches, loader.epoch(7)))


def test_train_loader_shuffles_deterministically_per_epoch():
    split = numbered_split()
    loader = BatchLoader(split, 3, "cpu", train=True, seed=11)
    assert len(loader) == 3 and loader.augment and loader.drop_last

    def order(loader, k):
        return [i for _, y in loader.epoch(k) for i in y.tolist()]

    assert order(loader, 2) == order(BatchLoader(split, 3, "cpu", train=True, seed=11), 2)
    assert order(loader, 2) != order(loader, 3)
    assert order(loader, 2) != order(BatchLoader(split, 3, "cpu", train=True, seed=12), 2)
    assert len(set(order(loader, 2))) == 9  # distinct samples, last partial batch dropped
    whole = BatchLoader(split, 3, "cpu", train=True, seed=11, drop_last=False)
    assert len(whole) == 4 and sorted(order(whole, 0)) == list(range(10))
    x1 = torch.cat([x for x, _ in loader.epoch(2)])
    x2 = torch.cat([x for x, _ in BatchLoader(split, 3, "cpu", train=True, seed=11).epoch(2)])
    assert torch.equal(x1, x2)  # augmentation is reproducible too


def test_split_moves_to_a_device_once():
    split = numbered_split()
    assert split.to("cpu") is split and split.to(torch.device("cpu")) is split
    if torch.cuda.is_available():
        on_gpu = split.to("cuda")
        assert on_gpu is split.to("cuda:0") and on_gpu.images.is_cuda
        x, y = next(iter(BatchLoader(split, 4, "cuda", train=True).epoch(0)))
        assert x.is_cuda and y.is_cuda and x.shape == (4, 3, 32, 32)


def test_batch_errors():
    split = numbered_split()
    with pytest.raises(UsageError) as error:
        BatchLoader(split, 11, "cpu", train=True)
    assert "batch size 11" in str(error.value) and "10 samples" in str(error.value)
    for bad in (0, -4):
        with pytest.raises(UsageError, match="positive"):
            BatchLoader(split, bad, "cpu", train=False)
    assert len(BatchLoader(split, 11, "cpu", train=False)) == 1  # evaluation keeps a partial batch


# ----------------------------------------------------------------------------------------------
# load_dataset: subsets, names, options, configs


def test_subset_is_exact_balanced_and_seeded():
    kwargs = dict(train_size=300, test_size=50)
    data = load_dataset("synthetic", subset=50, seed=0, **kwargs)
    assert len(data.train) == 50 and len(data.test) == 50
    assert data.train.labels.bincount().tolist() == [5] * 10
    again = load_dataset("synthetic", subset=50, seed=0, **kwargs)
    assert torch.equal(data.train.images, again.train.images)
    assert len(load_dataset("synthetic", subset=50, test_subset=20, **kwargs).test) == 20
    with pytest.raises(UsageError, match="subset"):
        load_dataset("synthetic", subset=301, **kwargs)


def test_unknown_dataset_and_option():
    with pytest.raises(UsageError) as error:
        load_dataset("emnist")
    assert "emnist" in str(error.value) and all(name in str(error.value) for name in DATASET_NAMES)
    with pytest.raises(UsageError, match="noise"):
        load_dataset("cifar10", noise=0.1)


@pytest.mark.parametrize("name", DATASET_NAMES)
def test_config_keys_are_load_dataset_arguments(name, tmp_path, monkeypatch):
    """Each dataset's typed config, minus its trial budget, is a valid set of keyword arguments,
    and the SPECTRAL_SWEEP_DATA variable moves its root."""
    from spectral_sweep.config.presets import presets
    from spectral_sweep.config.schema import compose
    from spectral_sweep.data import torchvision_sets as vision

    monkeypatch.setattr(vision, "SYSTEM_COPIES", {})   # an installed Debian Fashion-MNIST is data too
    monkeypatch.setenv("SPECTRAL_SWEEP_DATA", str(tmp_path))
    dataset = compose(f"dataset={name}").dataset
    # the plain-YAML reading that load_dataset uses agrees with Hydra's composition of the preset
    preset = presets("dataset")[name]
    assert dataset.name == preset.values["name"] and dataset._target_ == preset.target
    own = {k: v for k, v in dataset.options().items() if k != "download"}
    assert own == {k: v for k, v in preset.options().items() if k != "download"}
    assert dataset.budget.is_set()   # the job's budget, not the loader's
    assert dataset.root.startswith(str(tmp_path)) and dataset.subset is None
    kwargs = dict(root=dataset.root, subset=dataset.subset, test_subset=dataset.test_subset, **dataset.options())
    if dataset.name == "synthetic":
        kwargs.update(train_size=50, test_size=20)
        assert len(load_dataset(name, **kwargs).train) == 50
    else:  # the arguments are accepted; the empty root is what fails
        with pytest.raises(UsageError, match=f"no .* in {tmp_path}"):
            load_dataset(name, **kwargs)


# ----------------------------------------------------------------------------------------------
# child seeds and the stream registry


def test_child_seed_is_the_seed_sequence_of_seed_stream_index():
    def first_word(*entropy):
        return int(np.random.SeedSequence(list(entropy)).generate_state(1)[0])

    for seed in (0, 1, 7, 2**32 - 1, 2**32 + 3, 2**63 + 11, 2**64 - 1):
        for stream in (0, 1, 4, 13, 2**32 - 1):
            # the older helpers hashed [seed, stream] (data, spectrum) or [seed, stream, index]
            # (learner): a SeedSequence pads with zeros, so both are child_seed, bit for bit
            assert child_seed(seed, stream) == first_word(seed, stream) == first_word(seed, stream, 0)
            assert child_seed(seed, stream, 5) == first_word(seed, stream, 5)
    assert child_seed(0, 1) != child_seed(1, 0)          # not seed + stream
    g1, g2 = generator(3, Stream.SPECTRUM_BATCHES), torch.Generator().manual_seed(child_seed(3, 0))
    assert torch.equal(torch.randperm(50, generator=g1), torch.randperm(50, generator=g2))
    for bad in ((-1, 0), (2**64, 0), (0, 2**32), (0, -2), (1.5, 0), (True, 0)):
        with pytest.raises(ValueError):
            child_seed(*bad)
    with pytest.raises(ValueError):
        child_seed(0, 0, index=-1)


def test_the_stream_registry_keeps_every_stream_at_its_number():
    named = {k: v for k, v in vars(Stream).items() if k.isupper()}
    assert named == {"EPOCHS": 0, "SYNTHETIC_TRAIN": 1, "SYNTHETIC_TEST": 2, "SPECTRUM_BATCHES": 0,
                     "SPECTRUM_FULL": 1, "SPECTRUM_DENSITY": 2, "SPECTRUM_NOISE": 3,
                     "SPECTRUM_LANCZOS": 4, "SLQ_VECTORS": 0, "LEARNER_BATCH": 10,
                     "LEARNER_LANCZOS": 11, "SHARPNESS_BATCH": 12, "SHARPNESS_LANCZOS": 13, "TRIAL": 14}
    assert FIRST_FREE > max(named.values())


@pytest.fixture
def tiny_split():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (20, 3, 8, 8), generator=g, dtype=torch.uint8)
    return TensorSplit(images, torch.arange(20), CIFAR10_MEAN, CIFAR10_MEAN)


def test_loader_epochs_and_fixed_batches_draw_from_their_streams(tiny_split):
    loader = BatchLoader(tiny_split, 4, "cpu", train=True, seed=9, augment=False)
    order = torch.randperm(len(tiny_split), generator=generator(9, Stream.EPOCHS + 1))
    (_, y), *_ = loader.epoch(1)
    assert torch.equal(y, tiny_split.labels[order[:4]])
    a = fixed_batch(tiny_split, 5, "cpu", seed=2, stream=Stream.LEARNER_BATCH)
    b = random_batch(tiny_split, 5, "cpu", generator(2, Stream.LEARNER_BATCH))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], fixed_batch(tiny_split, 5, "cpu", seed=2, stream=Stream.SHARPNESS_BATCH)[0])
    with pytest.raises(UsageError, match="larger"):
        random_batch(tiny_split, len(tiny_split) + 1, "cpu", generator(0, 0))
