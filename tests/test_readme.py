"""The README is a contract (issue 35): every `spectral-sweep` command it shows in a bash block,
read from the README itself, passes the whole preflight as written (composition, every job's config
checked, the data files found, the launcher's plugin and tools) and then runs to completion with a
tiny budget appended: the same command, smaller (a narrower network, a few images, 2-step trials,
a few trials a point, a short Lanczos). Every job must leave its record and the sweep its report.
The overrides that shrink a command are derived from its composed config, so a command added to
the README runs here without a change to this file.

What runs differently on this CPU, said where it happens:
- SLURM (`submitit_slurm`) cannot run without a cluster: it is checked up to composition, with fake
  sbatch/srun on the PATH, and without them it is one line.
- `search.gpus_per_trial` applies only on a GPU; on a CPU the Ray commands run their trials as CPU
  tasks (point/executor.py), which is what runs here.
- `dataset.download=true` finds the files already in `dataset.root` (torchvision then downloads
  nothing; this machine has no network): the download itself is torchvision's.
- The tiny CIFAR-100 files cannot match the published md5 sums, so torchvision's md5 comparison
  alone is replaced (test_data.md5_unchecked); its unpickling runs on the files.

The commands run in this process (`cli.main`: Hydra and its launcher, as the console script runs
them), since a fresh interpreter each would cost more than the runs themselves. The Python blocks
are executed in tests/test_layout.py."""

from __future__ import annotations

import os
import re
import shlex
import sys
from pathlib import Path

import pytest
from test_data import md5_unchecked, write_cifar100  # noqa: F401  (md5_unchecked: a fixture)
from test_user_modules import user  # noqa: F401  (a fixture: the user's mynet.py and myconf/)
from test_vision import write_idx

from spectral_sweep import cli, preflight
from spectral_sweep.errors import UsageError

README = Path(__file__).resolve().parents[1] / "README.md"
TRAIN_IMAGES = 1024     # the README's largest batch size
NOT_RUN_HERE = {"submitit_slurm": "SLURM needs a cluster: checked up to composition below"}


def readme_commands() -> list[str]:
    """Each `spectral-sweep ...` line of the README's bash blocks, continuation lines joined."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if "spectral-sweep " in line and not line.lstrip().startswith("#"):
                found.append(" ".join(line.split()))
    return found


def test_the_readme_shows_the_commands_this_test_expects():
    commands = readme_commands()
    assert len(commands) >= 10
    assert any("submitit_slurm" in c for c in commands) and any("--config-dir" in c for c in commands)


@pytest.fixture
def machine(tmp_path, monkeypatch, md5_unchecked):  # noqa: F811
    """A working folder with what the README's commands expect, enough images for its largest
    batch: data/ with CIFAR-100 and Fashion-MNIST in their real formats."""
    monkeypatch.chdir(tmp_path)
    write_cifar100(tmp_path / "data", train=TRAIN_IMAGES, test=32)
    write_idx(tmp_path / "data" / "FashionMNIST" / "raw", train=TRAIN_IMAGES, test=32)
    return tmp_path


def argv_of(line: str, root: Path) -> list[str]:
    words = shlex.split(line.replace("dataset.root=PATH", f"dataset.root={root / 'data'}"), comments=True)
    return words[words.index("spectral-sweep") + 1:] + [f"out_dir={root / 'outputs'}"]


def shrink(plan: preflight.Plan) -> list[str]:
    """Overrides that make the command's jobs tiny without changing what they do."""
    config = plan.jobs[0].config
    extra = ["train.steps=2", "quiet=true"]
    ours = config.model._target_.startswith("spectral_sweep.models.")   # a user's model takes its own options
    if ours and config.model.width == 1.0 and "imagenet" not in config.model._target_:
        extra.append("model.width=0.0625")
    sizes = [b for job in plan.jobs for b in (job.config.batch, *(job.config.spectrum.batch_sizes or []))]
    if hasattr(config.dataset, "train_size"):   # the embedded synthetic set: generated at this size
        extra += [f"dataset.train_size={max(sizes)}", "dataset.test_size=32"]
    else:
        extra += [f"dataset.subset={max(sizes)}", "dataset.test_subset=32"]
    if str(config.search.method) in ("adaptive", "bisect"):
        extra += ["search.max_trials=2", "search.opt_trials=1"]
    if config.spectrum.enabled:
        extra += ["spectrum.n_batches=1", "spectrum.iters=3", "spectrum.train_steps=2", "spectrum.full_subset=64",
                  "spectrum.chunk=64", "spectrum.density_vectors=1"]
    if hasattr(config.optimizer, "learner"):
        extra += ["optimizer.learner.iters=3", "optimizer.learner.batch=8"]
    return extra


def fake_slurm(folder: Path, monkeypatch) -> None:
    """sbatch and srun on the PATH, so the SLURM launcher composes (nothing is submitted)."""
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    for tool in preflight.SLURM_TOOLS:
        (bin_dir / tool).write_text("#!/bin/sh\nexit 1\n")
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")


@pytest.mark.parametrize("line", readme_commands())
def test_every_readme_command_passes_the_preflight_and_runs_to_completion_shrunk(line, machine, request,
                                                                                 monkeypatch):
    if "--config-dir" in line:
        monkeypatch.chdir(request.getfixturevalue("user"))   # the same folder: mynet.py and myconf/ beside data/
    if "submitit_slurm" in line:
        fake_slurm(machine, monkeypatch)
    argv = argv_of(line, Path.cwd())
    plan = preflight.check_command(argv)                             # as written
    assert plan is not None and plan.jobs
    assert not (Path.cwd() / "outputs").exists()                     # a check writes nothing
    if reason := next((why for key, why in NOT_RUN_HERE.items() if key in line), None):
        pytest.skip(reason)
    monkeypatch.setattr(sys, "argv", ["spectral-sweep", *argv, *shrink(plan)])
    try:
        cli.main()
    except SystemExit as e:
        pytest.fail(f"the shrunk command exited {e.code}")
    assert len(list(plan.sweep_dir.rglob("record.json"))) == len(plan.jobs)
    assert (plan.sweep_dir / "report.md").is_file()


def test_slurm_without_its_tools_is_one_line_before_anything_is_written(machine, monkeypatch):
    line = next(c for c in readme_commands() if "submitit_slurm" in c)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(UsageError, match="sbatch and srun are not on this machine's PATH") as e:
        preflight.check_command(argv_of(line, machine))
    assert "\n" not in str(e.value)
