"""A researcher's own model, dataset and optimizer: a module in a folder of theirs, presets in a
config folder of theirs (--config-dir), swept end to end as the README says."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from spectral_sweep import preflight
from spectral_sweep.config.dataset import Budget
from spectral_sweep.data import load as data_module
from spectral_sweep.errors import UsageError

MODULE = '''
import numpy as np
import torch
from PIL import Image
from torch import nn


class SmallNet(nn.Module):
    def __init__(self, num_classes: int, hidden: int = 16):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, hidden, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                  nn.Flatten(), nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.body(x)


def make_data(n_train: int = 96, n_test: int = 48, seed: int = 0):
    """(train, test) datasets of float images in [0, 1] and integer labels: 3 brightness classes."""
    g = torch.Generator().manual_seed(seed)

    def split(n):
        y = torch.arange(n) % 3
        x = torch.rand(n, 3, 8, 8, generator=g) * 0.2 + y.view(-1, 1, 1, 1) / 3.0
        return torch.utils.data.TensorDataset(x.clamp(0, 1), y)

    return split(n_train), split(n_test)


class VisionStyle(torch.utils.data.Dataset):
    """A torchvision-style class: root, train, transform; PIL images, two classes."""

    classes = ["dark", "light"]

    def __init__(self, root, train=True, transform=None, download=False):
        self.n, self.transform = (40 if train else 20), transform

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        image = Image.fromarray(np.full((6, 6, 3), 40 + 160 * (i % 2), dtype=np.uint8))
        return self.transform(image), i % 2


def not_datasets(seed: int = 0):
    return [1, 2, 3]


class MySGD(torch.optim.SGD):
    """SGD by another name: its law is given all the same."""


class Lion(torch.optim.SGD):
    """An optimizer the package does not know: its law must be given."""
'''

PRESETS = {
    "model/mynet.yaml": "_target_: mynet.SmallNet\nhidden: 12\n",
    "dataset/mydata.yaml": "_target_: mynet.make_data\nn_train: 96\nn_test: 48\n",
    "optimizer/mysgd.yaml": "_target_: mynet.MySGD\nlaw: linear\nlr: 0.1\nmomentum: 0.9\n",
    "optimizer/nolaw.yaml": "_target_: mynet.Lion\nlr: 0.1\n",
}


@pytest.fixture
def user(tmp_path, monkeypatch):
    """The user's folder: mynet.py on PYTHONPATH and myconf/ with its presets."""
    (tmp_path / "mynet.py").write_text(textwrap.dedent(MODULE))
    for name, text in PRESETS.items():
        (tmp_path / "myconf" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "myconf" / name).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("mynet", None)
    return tmp_path


def test_a_user_module_is_swept_end_to_end_from_the_command_line(user):
    """The dataset keys every dataset has (subset, test_subset, budget, root) work on a user's
    preset without a `+`, as on a built-in one, and take effect."""
    args = ["--config-dir", "myconf", "model=mynet", "dataset=mydata", "optimizer=mysgd", "batch=8,16",
            "search=fixed", "dataset.budget.steps=5", "dataset.subset=64", "dataset.test_subset=24",
            f"dataset.root={user}", f"out_dir={user / 'out'}", "name=u", "quiet=true"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(user), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-m", "spectral_sweep.cli", *args], cwd=user, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    found = sorted((user / "out" / "u").rglob("record.json"))
    records = [json.loads(p.read_text()) for p in found]
    assert sorted(r["batch_size"] for r in records) == [8, 16]
    import mynet

    params = sum(p.numel() for p in mynet.SmallNet(num_classes=3, hidden=12).parameters())
    for r in records:
        assert r["model"] == "mynet" and r["params"] == params and r["num_classes"] == 3
        assert r["optimizer"] == "mysgd" and r["dataset"] == "make_data" and r["expected_exponent"] == 1.0
        assert r["train_size"] == 64 and r["test_size"] == 24 and r["config"]["model"]["kwargs"] == {"hidden": 12}
        assert r["budget"] == {"steps": 5, "epochs": None} and r["config"]["dataset"]["root"] == str(user)
    assert (user / "out" / "u" / "report.md").exists()


def test_sweep_from_python_takes_the_users_config_dir_and_writes_what_the_command_writes(user, monkeypatch):
    """``sweep(config_dir=...)`` is ``--config-dir``: the user's presets beside the package's."""
    from spectral_sweep import sweep

    monkeypatch.chdir(user)
    found = sweep(model="mynet", data="mydata", optimizer="mysgd", batch_sizes=[8, 16], config_dir="myconf",
                  name="py", out_dir=str(user / "out"), search="fixed", train={"steps": 5}, quiet=True)
    assert list(found.lr_max["batch_size"]) == [8, 16] and found.sweep_dir == user / "out" / "py"
    records = [json.loads(p.read_text()) for p in sorted((user / "out" / "py").rglob("record.json"))]
    assert [r["model"] for r in records] == ["mynet", "mynet"] and records[0]["dataset"] == "make_data"
    assert records[0]["config"]["model"]["kwargs"] == {"hidden": 12}
    plan = preflight.check_command(["--config-dir", "myconf", "model=mynet", "dataset=mydata", "optimizer=mysgd",
                                    "batch=8,16", "name=py", f"out_dir={user / 'out'}", "search=fixed",
                                    "train.steps=5", "quiet=true"])
    assert sorted(p.parent.name for p in (user / "out" / "py").rglob("record.json")) == \
        sorted(job.folder for job in plan.jobs)


def test_a_budget_on_the_command_line_replaces_the_presets_whatever_it_counts(user):
    """Steps given where the preset counts epochs (or the reverse) are the trial's length; before,
    the preset's epochs won and the override did nothing."""
    from spectral_sweep.config import compose

    assert compose("dataset=cifar10").train.budget(compose("dataset=cifar10").dataset).epochs == 10
    cifar = compose("dataset=cifar10", "dataset.budget.steps=7")
    assert cifar.train.budget(cifar.dataset) == Budget(steps=7)
    synthetic = compose("dataset.budget.epochs=2")
    assert synthetic.train.budget(synthetic.dataset) == Budget(epochs=2)
    assert compose("experiment=quickstart", "train.epochs=1").train.budget(cifar.dataset) == Budget(epochs=1)
    mine = compose("model=mynet", "dataset=mydata", config_dir=str(user / "myconf"))
    assert mine.dataset.budget == Budget(epochs=10) and mine.dataset.subset is None   # the schema's defaults
    composed = compose("model=mynet", "dataset=mydata", "dataset.subset=8", config_dir=str(user / "myconf"))
    assert composed.dataset.subset == 8


def test_compose_sees_the_packages_presets_and_the_users_together(user):
    from spectral_sweep.config import compose

    config = compose("model=mynet", "dataset=synthetic", "optimizer=adam", config_dir=str(user / "myconf"))
    assert config.model._target_ == "mynet.SmallNet" and config.model.kwargs == {"hidden": 12}
    assert config.dataset.name == "synthetic" and config.optimizer.name == "adam"   # the package's presets
    assert compose("model=vgg11").model.name == "vgg11"
    with pytest.raises(Exception, match="mynet"):
        compose("model=mynet")                       # without the folder, the user's preset is not there
    with pytest.raises(UsageError, match="is not a folder"):
        compose(config_dir=str(user / "nowhere"))


def test_the_user_presets_are_choices_and_their_faults_are_one_line_before_any_work(user):
    base = ["--config-dir", str(user / "myconf"), f"out_dir={user / 'out'}", "model=mynet", "dataset=mydata"]
    plan = preflight.check_command([*base, "optimizer=mysgd", "batch=8,16"])
    assert [job.config.model.kwargs for job in plan.jobs] == [{"hidden": 12}] * 2
    cases = [(["model=nonet"], "unknown model 'nonet'; choose one of:"),
             (["optimizer=nolaw"], "no scaling law is known for optimizer lion (mynet.Lion); set optimizer.law="),
             (["optimizer=mysgd", "model.hidden=-1"], "model._target_=mynet.SmallNet failed to build"),
             (["optimizer=mysgd", "+model.depth=3"], "model._target_=mynet.SmallNet rejects its arguments"),
             (["optimizer=mysgd", "+dataset.colour=red"], "dataset._target_=mynet.make_data rejects its arguments"),
             (["optimizer=mysgd", "model._target_=mynet.nothing"], "module mynet has no nothing")]
    for args, message in cases:
        with pytest.raises(UsageError) as caught:
            preflight.check_command([*base, *args])
        assert message in str(caught.value), (args, str(caught.value))
    assert not (user / "out").exists()


def test_the_dataset_contracts_a_torchvision_style_class_and_a_wrong_return(user):
    data = data_module.load_dataset("mynet.VisionStyle", root=str(user))
    assert (len(data.train), len(data.test), data.num_classes, data.image_size) == (40, 20, 2, 6)
    assert data.train.images.dtype == torch.uint8 and tuple(data.train.images.shape[1:]) == (3, 6, 6)
    assert data.train.labels.tolist()[:4] == [0, 1, 0, 1]
    floats = data_module.load_dataset("mynet.make_data", n_train=30, n_test=12)
    assert floats.num_classes == 3 and len(floats.train) == 30 and floats.train.images.max() <= 255
    with pytest.raises(UsageError, match="returned list, not \\(train, test\\)"):
        data_module.load_dataset("mynet.not_datasets")
    assert Path(data_module.__file__).exists()
