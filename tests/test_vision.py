"""torchvision's in-memory datasets through data/torchvision_sets.py, read by the real loaders from tiny files in
the real formats (IDX for the MNIST family, .mat for SVHN), and a whole sweep on grey 28x28 data."""

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from spectral_sweep.data import torchvision_sets as vision
from spectral_sweep.data.load import load_dataset
from spectral_sweep.data.loaders import BatchLoader
from spectral_sweep.data.splits import augment
from spectral_sweep.errors import UsageError

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
DEBIAN = Path("/usr/share/datasets/fashion-mnist")


def idx(array: np.ndarray) -> bytes:
    """An IDX file as LeCun's MNIST page describes it: magic 0x00000803 (uint8, 3 dimensions) for
    images or 0x00000801 for labels, each dimension's size as a big-endian 32-bit integer, the data."""
    magic = {3: 0x00000803, 1: 0x00000801}[array.ndim]
    return struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()


def write_idx(folder: Path, train: int = 40, test: int = 20, packed: bool = True, seed: int = 0) -> dict:
    """The four files of an MNIST-style release into ``folder`` (gzipped as published, or not)."""
    rng = np.random.default_rng(seed)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (train, 28, 28), dtype=np.uint8),
              "train-labels-idx1-ubyte": np.arange(train, dtype=np.uint8) % 10,
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (test, 28, 28), dtype=np.uint8),
              "t10k-labels-idx1-ubyte": rng.permutation(np.arange(test, dtype=np.uint8) % 10)}
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        if packed:
            (folder / f"{name}.gz").write_bytes(gzip.compress(idx(array)))
        else:
            (folder / name).write_bytes(idx(array))
    return arrays


@pytest.fixture
def no_debian(tmp_path, monkeypatch):
    """The Debian package's folder, empty: the tests must not depend on this machine's packages."""
    folder = tmp_path / "debian"
    folder.mkdir()
    monkeypatch.setattr(vision, "SYSTEM_COPIES", {"FashionMNIST": (folder, "dataset-fashion-mnist")})
    return folder


def test_fixture_is_the_idx_format(tmp_path):
    write_idx(tmp_path, train=3, packed=False)
    images = (tmp_path / "train-images-idx3-ubyte").read_bytes()
    assert images[:16] == bytes.fromhex("00000803" "00000003" "0000001c" "0000001c") and len(images) == 16 + 3 * 784
    assert (tmp_path / "train-labels-idx1-ubyte").read_bytes()[:8] == bytes.fromhex("00000801" "00000003")


@pytest.mark.parametrize("packed", [False, True], ids=["plain", "gzipped"])
def test_fashion_mnist_from_root_in_torchvisions_layout(tmp_path, no_debian, packed):
    arrays = write_idx(tmp_path / "FashionMNIST" / "raw", packed=packed)
    data = load_dataset("fashion_mnist", root=str(tmp_path))
    assert data.train.images.shape == (40, 1, 28, 28) and data.test.images.shape == (20, 1, 28, 28)
    assert data.train.images.dtype == torch.uint8 and data.train.labels.dtype == torch.int64
    assert torch.equal(data.train.images[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"]))
    assert data.test.labels.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    assert (data.num_classes, data.channels, data.image_size) == (10, 1, 28)
    assert data.mean == (0.2860,) and data.std == (0.3530,)              # the preset's
    assert (data.train.crop_padding, data.train.flip) == (2, True)
    x, y = next(iter(BatchLoader(data.train, 8, "cpu", train=True).epoch(0)))
    assert x.shape == (8, 1, 28, 28) and x.dtype == torch.float32 and y.shape == (8,)
    assert sorted(p.name for p in (tmp_path / "FashionMNIST" / "raw").iterdir()) == \
        sorted(f"{n}.gz" if packed else n for n in IDX_FILES)             # nothing written beside them


def test_the_builder_by_its_target_path_reads_any_mnist_style_class(tmp_path):
    write_idx(tmp_path / "KMNIST" / "raw", packed=False)
    data = load_dataset("spectral_sweep.data.torchvision_sets.torchvision_data", root=str(tmp_path),
                        torchvision_class="KMNIST", mean=[0.2], std=[0.3], crop_padding=0, flip=False, subset=20)
    assert len(data.train) == 20 and data.train.labels.bincount().tolist() == [2] * 10
    assert (data.num_classes, data.channels, data.train.crop_padding, data.train.flip) == (10, 1, 0, False)


def test_the_debian_folder_is_read_in_place_when_root_has_nothing(tmp_path, monkeypatch, capsys):
    debian = tmp_path / "usr-share-datasets-fashion-mnist"
    arrays = write_idx(debian)
    before = {p.name: p.read_bytes() for p in debian.iterdir()}
    monkeypatch.setattr(vision, "SYSTEM_COPIES", {"FashionMNIST": (debian, "dataset-fashion-mnist")})
    data = load_dataset("fashion_mnist", root=str(tmp_path / "empty"))
    assert data.train.images.shape == (40, 1, 28, 28) and data.num_classes == 10 and data.channels == 1
    assert data.train.labels.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert not (tmp_path / "empty").exists()                             # nothing written into root
    assert {p.name: p.read_bytes() for p in debian.iterdir()} == before   # nor beside the package's files
    said = capsys.readouterr().err.splitlines()                          # and it says which copy it read
    assert said == [f"FashionMNIST: read from {debian} (the dataset-fashion-mnist package), as "
                    f"{tmp_path / 'empty'} has no copy"]
    write_idx(tmp_path / "root" / "FashionMNIST" / "raw")
    load_dataset("fashion_mnist", root=str(tmp_path / "root"))
    assert capsys.readouterr().err == ""                                   # its own root: nothing to say


def test_no_data_names_all_three_ways_in_one_line(tmp_path, no_debian):
    with pytest.raises(UsageError) as error:
        load_dataset("fashion_mnist", root=str(tmp_path / "empty"))
    message = str(error.value)
    assert "\n" not in message and str(tmp_path / "empty" / "FashionMNIST" / "raw") in message
    assert str(no_debian) in message
    for way in ("dataset.root=", "apt-get install dataset-fashion-mnist", "dataset.download=true"):
        assert way in message, way
    with pytest.raises(UsageError) as error:          # no Debian package for MNIST: two ways
        load_dataset("mnist", root=str(tmp_path / "empty"))
    assert "apt-get" not in str(error.value) and "dataset.download=true" in str(error.value)


@pytest.mark.parametrize("damage", ["truncated gzip", "not gzip", "wrong magic", "too few bytes"])
def test_corrupt_files_are_one_line_not_a_traceback(tmp_path, no_debian, damage):
    packed = damage in ("truncated gzip", "not gzip")
    folder = (no_debian if packed else tmp_path / "root" / "FashionMNIST" / "raw")
    write_idx(folder, packed=packed)
    victim = folder / ("train-images-idx3-ubyte" + (".gz" if packed else ""))
    content = victim.read_bytes()
    victim.write_bytes({"truncated gzip": content[: len(content) // 2], "not gzip": b"hello, world",
                        "wrong magic": b"\x00\x00\x08\x09" + content[4:],
                        "too few bytes": content[:-100]}[damage])
    with pytest.raises(UsageError, match="corrupt") as error:
        load_dataset("fashion_mnist", root=str(tmp_path / "root"))
    assert str(folder) in str(error.value) and "\n" not in str(error.value)


def test_svhn_reads_its_mat_files_with_split_and_zero_for_ten(tmp_path, monkeypatch):
    import os

    import torchvision
    from scipy.io import savemat

    # tiny files cannot match the published md5 sums: replace only that comparison (as test_data.py
    # does for CIFAR), so torchvision's own reading runs on them
    monkeypatch.setattr(torchvision.datasets.svhn, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))

    rng = np.random.default_rng(0)
    written = {}
    for split, n in (("train", 12), ("test", 6)):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)         # the release's [H, W, C, N]
        y = (np.arange(n) % 10 + 1).reshape(n, 1)                          # digits 1..10, 10 meaning 0
        savemat(tmp_path / f"{split}_32x32.mat", {"X": x, "y": y})
        written[split] = (x, y)
    data = load_dataset("svhn", root=str(tmp_path))
    assert data.train.images.shape == (12, 3, 32, 32) and (data.num_classes, data.channels) == (10, 3)
    x, y = written["train"]
    assert torch.equal(data.train.images, torch.from_numpy(x.transpose(3, 2, 0, 1).copy()))
    assert data.train.labels.tolist() == [v % 10 for v in y.ravel().tolist()]
    assert (data.train.crop_padding, data.train.flip) == (4, False)


def test_augmentation_follows_the_split():
    images = torch.arange(2 * 4 * 4, dtype=torch.uint8).view(2, 1, 4, 4).repeat(64, 1, 1, 1)
    same = augment(images, torch.Generator().manual_seed(0), padding=0, flip=False)
    assert torch.equal(same, images)                                       # no crop, no mirror
    mirrored = augment(images, torch.Generator().manual_seed(0), padding=0, flip=True)
    flipped = [torch.equal(m, i.flip(-1)) for m, i in zip(mirrored, images)]
    assert all(f or torch.equal(m, i) for f, m, i in zip(flipped, mirrored, images)) and 0 < sum(flipped) < 128


def test_grey_data_builds_models_with_one_input_channel(tmp_path, no_debian):
    from spectral_sweep.models import build_target

    write_idx(tmp_path / "FashionMNIST" / "raw")
    data = load_dataset("fashion_mnist", root=str(tmp_path))
    model = build_target("spectral_sweep.models.vgg.vgg11_bn", data.num_classes,
                         input_shape=(data.channels, data.image_size), width=0.125)
    x, _ = next(iter(BatchLoader(data.test, 5, "cpu", train=False).epoch(0)))
    assert model.eval()(x).shape == (5, 10)


def test_a_model_that_cannot_take_grey_images_is_refused_before_anything_is_written(tmp_path):
    from spectral_sweep import preflight

    with pytest.raises(UsageError, match="resnet18_imagenet takes no in_channels, but the data's images have "
                                         "1 channel") as error:
        preflight.check_command(["dataset=fashion_mnist", "model=resnet18_imagenet", f"out_dir={tmp_path}"])
    assert "\n" not in str(error.value) and list(tmp_path.iterdir()) == []
    plan = preflight.check_command(["dataset=fashion_mnist", "model=vgg11_bn", "batch=8", f"out_dir={tmp_path}",
                                    "dataset.download=true"])    # its files are looked for by name: none here
    assert plan.jobs[0].config.dataset.known_channels() == 1


@pytest.mark.parametrize("args, message", [
    (["dataset.std=[0]"], "dataset.std must be a positive number, got 0"),
    (["dataset.mean=[1.5]"], "dataset.mean must be a number in [0, 1], got 1.5"),
    (["dataset.mean=[0.1,0.2,0.3]"], "dataset.mean and dataset.std need a value per channel each, got 3 and 1"),
    (["dataset.crop_padding=-1"], "dataset.crop_padding must be an integer >= 0, got -1"),
    (["dataset.torchvision_class=EMNIST"], "expected one of [MNIST, FashionMNIST, KMNIST, CIFAR10, CIFAR100, SVHN]"),
    (["batch=60001"], "batch size 60001 is larger than the training set (60000 samples)"),
])
def test_a_torchvision_presets_bad_values_are_refused_before_anything_is_written(tmp_path, args, message):
    from spectral_sweep import preflight

    with pytest.raises(UsageError) as error:
        preflight.check_command(["dataset=fashion_mnist", "model=vgg11_bn", f"out_dir={tmp_path}", *args])
    assert message in str(error.value) and "\n" not in str(error.value) and list(tmp_path.iterdir()) == []


def test_a_whole_sweep_on_grey_28x28_data(tmp_path, no_debian, monkeypatch):
    """The notebook face of the CLI: preflight, the job, the trial and the record on tiny IDX files."""
    from spectral_sweep import sweep
    from spectral_sweep.models import build_model

    write_idx(tmp_path / "data" / "FashionMNIST" / "raw", train=64, test=40)
    monkeypatch.chdir(tmp_path)
    found = sweep(model={"vgg11_bn": {"width": 0.125}}, data={"fashion_mnist": {"root": str(tmp_path / "data")}},
                  batch_sizes=[16], name="grey", search="fixed", train={"steps": 4, "channels_last": False},
                  quiet=True, report=False)
    (record,) = found.records
    assert record.dataset == "fashion_mnist" and record.num_classes == 10 and record.train_size == 64
    assert len(record.trials) == 1 and record.trials[0].outcome in ("trained", "stalled", "diverged")
    assert record.trials[0].steps >= 1
    grey = build_model("vgg11_bn", 10, width=0.125, in_channels=1, image_size=28)
    assert record.params == sum(p.numel() for p in grey.parameters())   # built for 1-channel images
    config = json.loads((Path(record.record_path).parent / "config.json").read_text())
    assert config["dataset"]["torchvision_class"] == "FashionMNIST" and config["dataset"]["mean"] == [0.286]


@pytest.mark.skipif(not all((DEBIAN / f"{name}.gz").is_file() for name in IDX_FILES),
                    reason="the Debian package dataset-fashion-mnist is not installed")
def test_the_installed_debian_fashion_mnist_gives_100_real_images(tmp_path):
    data = load_dataset("fashion_mnist", root=str(tmp_path / "empty"), subset=100, test_subset=100)
    assert data.train.images.shape == (100, 1, 28, 28) and data.train.images.dtype == torch.uint8
    assert int(data.train.images.min()) == 0 and int(data.train.images.max()) == 255
    assert data.train.labels.min() >= 0 and data.train.labels.max() <= 9
    assert data.train.labels.bincount().tolist() == [10] * 10 and data.num_classes == 10
    assert not (tmp_path / "empty").exists()
