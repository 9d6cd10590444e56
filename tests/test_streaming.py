"""A user's dataset streamed (dataset.stream): read item by item every epoch, its random transform
drawn afresh, never stacked past the budget, in the in-memory loader's order; and swept end to end."""

import json
import signal
import sys
import textwrap

import pytest
import torch

from spectral_sweep import preflight
from spectral_sweep.data import load, stream
from spectral_sweep.data.load import load_dataset
from spectral_sweep.data.loaders import BatchLoader
from spectral_sweep.data.splits import StreamSplit, TensorSplit
from spectral_sweep.errors import UsageError

MODULE = '''
import numpy as np
import torch
from PIL import Image
from torch import nn


class Pixels(torch.utils.data.Dataset):
    """Fixed random uint8 images 3x8x8, three classes; ``noise`` adds a random transform drawn at each read."""

    reads = 0      # __getitem__ calls in this process

    def __init__(self, n, seed=0, noise=False, bad=None):
        self.images = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8,
                                    generator=torch.Generator().manual_seed(seed))
        self.targets = [i % 3 for i in range(n)]
        self.noise, self.bad = noise, bad

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        type(self).reads += 1
        if i == self.bad:
            raise ValueError("corrupt file\\nsecond line")
        if not self.noise:
            return self.images[i], self.targets[i]
        x = self.images[i].float() / 255 + 0.2 * torch.rand(3, 8, 8)   # the random transform
        return x.clamp(0, 1), self.targets[i]


def noisy(n_train=64, n_test=16):
    return Pixels(n_train, 0, noise=True), Pixels(n_test, 1, noise=True)


def fixed(n_train=200, n_test=40):
    return Pixels(n_train, 0), Pixels(n_test, 1)


def failing(n_train=64, n_test=16, bad=37):
    return Pixels(n_train, 0, bad=bad), Pixels(n_test, 1)


class Photos(torch.utils.data.Dataset):
    """PIL images (not tensors: auto streams them) with a random flip; two classes, dark and light."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        pixels = np.full((8, 8, 3), 40 + 160 * (i % 2), dtype=np.uint8)
        pixels[:, :4] //= 2
        image = Image.fromarray(pixels)
        if torch.rand(()) < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        return image, i % 2


def photos(n_train=64, n_test=32):
    return Photos(n_train), Photos(n_test)


class SmallNet(nn.Module):
    def __init__(self, num_classes: int, hidden: int = 8):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, hidden, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                  nn.Flatten(), nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.body(x)
'''


@pytest.fixture
def user(tmp_path, monkeypatch):
    """The user's module ``mine`` on the path, and a config folder with its presets."""
    (tmp_path / "mine.py").write_text(textwrap.dedent(MODULE))
    for name, text in {"model/small.yaml": "_target_: mine.SmallNet\n",
                       "dataset/photos.yaml": "_target_: mine.photos\n",
                       "dataset/fixed.yaml": "_target_: mine.fixed\n"}.items():
        (tmp_path / "myconf" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "myconf" / name).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("mine", None)
    return tmp_path


def _epoch(split, k: int, **options) -> torch.Tensor:
    return torch.cat([x for x, _ in BatchLoader(split, 16, "cpu", **options).epoch(k)])


def test_a_random_transform_is_drawn_afresh_each_epoch_streamed_and_frozen_in_memory(user):
    streamed, in_memory = (load_dataset("mine.noisy", stream=s) for s in ("true", "false"))
    assert isinstance(streamed.train, StreamSplit) and isinstance(in_memory.train, TensorSplit)
    assert streamed.train.num_workers >= 1   # through DataLoader workers (a batch of one would read in process)
    for workers in (streamed.train.num_workers, 0):
        streamed.train.num_workers = workers
        first, again, second = (_epoch(streamed.train, k, train=False) for k in (0, 0, 1))
        assert torch.equal(first, again)            # an epoch's draws are seeded: the same epoch, the same images
        assert (first - second).abs().mean() > 0.1  # the next epoch draws the transform afresh
    first, second = (_epoch(in_memory.train, k, train=False) for k in (0, 1))
    assert torch.equal(first, second)               # in memory: drawn once when read, frozen for every epoch


def test_in_a_daemonic_trial_worker_the_items_are_read_in_process(user):
    """A forked trial worker (point/pool.py) is daemonic and may not start DataLoader workers: there
    the loader reads in process, with the generators a loader of no workers gets anywhere."""
    import multiprocessing

    data = load_dataset("mine.noisy", stream="true")
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=lambda: queue.put(_epoch(data.train, 1, train=True, seed=2).numpy()), daemon=True)
    child.start()
    in_child = torch.from_numpy(queue.get(timeout=30))
    child.join(timeout=30)
    assert child.exitcode == 0
    data.train.num_workers = 0
    assert torch.equal(in_child, _epoch(data.train, 1, train=True, seed=2))


def test_a_dataset_over_the_budget_is_never_stacked(user, monkeypatch, capsys):
    import mine

    monkeypatch.setattr(stream, "BUDGET", 10_000)   # bytes: 4000 + 400 images of 192 bytes pass it
    monkeypatch.setattr(load, "_in_memory", lambda *a: pytest.fail("the in-memory path stacked the dataset"))
    data = load_dataset("mine.fixed", n_train=4000, n_test=400)
    assert isinstance(data.train, StreamSplit) and isinstance(data.test, StreamSplit)
    assert mine.Pixels.reads <= stream.SAMPLE + 3 < 4000   # the first items and the normalisation's sample
    assert "images would take 825 KiB in memory, over the 9.77 KiB budget" in capsys.readouterr().err
    assert (len(data.train), len(data.test), data.num_classes, data.channels, data.image_size) == (4000, 400, 3, 3, 8)
    x, y = next(iter(BatchLoader(data.train, 32, "cpu", train=True).epoch(0)))
    assert x.shape == (32, 3, 8, 8) and y.tolist() == [int(i) % 3 for i in y.tolist()]


def test_the_streamed_order_and_batches_are_the_in_memory_ones(user):
    """A dataset that reads the same every time: the same batches streamed as in memory, epoch by
    epoch, for a trial's seed (same permutation, same device augmentation; the sample that gives
    the streamed mean and std is the whole set here)."""
    streamed, in_memory = (load_dataset("mine.fixed", stream=s) for s in ("true", "false"))
    assert (streamed.mean, streamed.std) == (in_memory.mean, in_memory.std)
    for k in (0, 1):
        a, b = (list(BatchLoader(d.train, 16, "cpu", train=True, seed=3).epoch(k)) for d in (streamed, in_memory))
        assert len(a) == len(b) == 200 // 16
        for (xa, ya), (xb, yb) in zip(a, b):
            assert torch.equal(ya, yb) and torch.equal(xa, xb)
    subset = [load_dataset("mine.fixed", stream=s, subset=60) for s in ("true", "false")]
    (xa, ya), (xb, yb) = (next(iter(BatchLoader(d.train, 16, "cpu", train=True, seed=5).epoch(2))) for d in subset)
    assert torch.equal(ya, yb) and torch.equal(xa, xb)


def test_a_streamed_trial_is_the_same_trial_twice(user):
    """Records must not depend on the workers' timing: a trial on a streamed random transform (2
    epochs of 4 steps, DataLoader workers in each) repeats exactly."""
    import mine

    from spectral_sweep.config.dataset import Budget
    from spectral_sweep.trial.train import TrialSettings, run_trial

    settings = TrialSettings(batch_size=16, optimizer={"name": "sgd", "momentum": 0.9}, quiet=True,
                             budget=Budget(steps=8), seed=4, device="cpu")
    data = load_dataset("mine.noisy", stream="true")
    first, again = (run_trial(lambda: mine.SmallNet(3), data, 0.05, settings).to_dict() for _ in range(2))
    assert first["loss_curve"] == again["loss_curve"] and first["test_loss"] == again["test_loss"]
    assert first["steps"] == 8 and len(first["loss_curve"]) == 8


def test_a_failing_item_is_one_line_naming_it_on_both_paths(user):
    data = load_dataset("mine.failing", stream="true", bad=None)   # it fails later, in a worker
    data.train.source.bad = 37
    assert data.train.num_workers >= 1
    with pytest.raises(UsageError) as streamed:
        _epoch(data.train, 0, train=False)
    with pytest.raises(UsageError) as in_memory:
        load_dataset("mine.failing", stream="false")
    for caught in (streamed, in_memory):
        assert str(caught.value) == ("dataset._target_=mine.failing: reading item 37 raised ValueError: "
                                     "corrupt file")


def test_stream_true_on_a_built_in_dataset_is_refused_in_one_line(tmp_path):
    """The built-in small sets live on the device; ImageNet's tree streams: the other way is refused,
    before any job (preflight) and where a Python caller loads it."""
    with pytest.raises(UsageError) as caught:
        load_dataset("synthetic", stream="true", train_size=64, test_size=32)
    assert "dataset.stream=true: synthetic is held in memory" in str(caught.value) and "\n" not in str(caught.value)
    assert isinstance(load_dataset("synthetic", stream="false", train_size=64, test_size=32).train, TensorSplit)
    for preset, value, says in (("synthetic", "true", "holds it in memory"), ("imagenet", "false", "streams it")):
        with pytest.raises(UsageError, match=f"dataset.stream={value}: {preset}'s builder {says}"):
            preflight.check_command([f"dataset={preset}", f"dataset.stream={value}", f"out_dir={tmp_path}"])
    with pytest.raises(UsageError, match="dataset.stream must be one of auto, true, false, got 'maybe'"):
        load_dataset("synthetic", stream="maybe")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("stream", ["auto", "false"])
def test_a_streamed_dataset_is_swept_end_to_end_from_the_command_line(user, monkeypatch, capsys, stream):
    """PIL images with a random flip: auto streams them, and a trial trains through the command's
    own entry point (cli.main, in this process: a second interpreter would add 5 s of imports);
    dataset.stream=false typed on the command line holds them in memory instead."""
    from hydra.core.global_hydra import GlobalHydra

    from spectral_sweep import cli
    from spectral_sweep.config import compose

    assert compose("dataset=fixed", "dataset.stream=true", config_dir=str(user / "myconf")).dataset.stream == "true"
    monkeypatch.chdir(user)
    monkeypatch.setattr(sys, "argv", ["spectral-sweep", "--config-dir", "myconf", "model=small", "dataset=photos",
                                      "optimizer=sgd", "batch=16", "search=fixed", "optimizer.lr=0.05",
                                      "dataset.budget.steps=6", f"out_dir={user / 'out'}", "name=s", "quiet=true",
                                      "report=false", f"dataset.stream={stream}"])
    handler = signal.getsignal(signal.SIGTERM)
    try:
        cli.main()
    finally:
        signal.signal(signal.SIGTERM, handler)
        GlobalHydra.instance().clear()
    err = capsys.readouterr().err
    assert ("dataset._target_=mine.photos: streamed" in err and "Image objects" in err) == (stream == "auto")
    record = json.loads(next((user / "out" / "s").rglob("record.json")).read_text())
    assert record["dataset"] == "photos" and record["train_size"] == 64 and record["num_classes"] == 2
    trial, = record["trials"]
    assert trial["steps"] == 6 and trial["outcome"] in ("trained", "stalled")


def test_the_default_stream_leaves_the_trial_cache_key_as_it_was():
    """auto is the default: trials cached before the knob (the committed results) keep their key;
    an explicit choice, which may change a random transform's draws, is part of it."""
    from spectral_sweep.config import compose
    from spectral_sweep.point.run import trial_identity

    assert "stream" not in trial_identity(compose())["dataset"]
    assert trial_identity(compose("dataset=imagenet", "dataset.stream=true"))["dataset"]["stream"] == "true"
