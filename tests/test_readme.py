"""The README is a contract (issue 35): every `spectral-sweep` command it shows in a bash block is
read from the README itself and passes the whole preflight as written (composition, every job's
config checked, the data files found, the launcher's plugin and tools), in a folder that holds what
the README says the command needs: CIFAR-100 and Fashion-MNIST files in their real formats (tiny),
the user's own presets for `--config-dir myconf`. Nothing trains here: the sweeps they start are the
real data's and the GPU's (tests/test_cli.py and test_user_modules.py run shrunk sweeps end to end).
SLURM is checked up to composition: with fake `sbatch`/`srun` on the PATH it composes, without
them it is one line. The Python blocks are executed in tests/test_layout.py."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from test_data import write_cifar100
from test_user_modules import user  # noqa: F401  (a fixture: the user's mynet.py and myconf/)
from test_vision import write_idx

from spectral_sweep import preflight
from spectral_sweep.errors import UsageError

README = Path(__file__).resolve().parents[1] / "README.md"


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
def machine(tmp_path, monkeypatch, request):
    """A working folder with what the README's commands expect: data/ with CIFAR-100 and
    Fashion-MNIST in their real formats, and (where a command names it) the user's presets."""
    monkeypatch.chdir(tmp_path)
    write_cifar100(tmp_path / "data")
    write_idx(tmp_path / "data" / "FashionMNIST" / "raw")
    return tmp_path


def argv_of(line: str, root: Path) -> list[str]:
    words = shlex.split(line.replace("dataset.root=PATH", f"dataset.root={root / 'data'}"), comments=True)
    return words[words.index("spectral-sweep") + 1:] + [f"out_dir={root / 'outputs'}"]


@pytest.mark.parametrize("line", readme_commands())
def test_every_readme_command_passes_the_preflight_as_written(line, machine, request, monkeypatch):
    if "--config-dir" in line:
        monkeypatch.chdir(request.getfixturevalue("user"))     # the same folder: mynet.py and myconf/ beside data/
    if "submitit_slurm" in line:          # SLURM's tools, faked: composition is what can be checked here
        bin_dir = machine / "bin"
        bin_dir.mkdir()
        for tool in preflight.SLURM_TOOLS:
            (bin_dir / tool).write_text("#!/bin/sh\nexit 1\n")
            (bin_dir / tool).chmod(0o755)
        monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    plan = preflight.check_command(argv_of(line, Path.cwd()))
    assert plan is not None and plan.jobs
    assert not (Path.cwd() / "outputs").exists()                     # a check writes nothing


def test_slurm_without_its_tools_is_one_line_before_anything_is_written(machine, monkeypatch):
    line = next(c for c in readme_commands() if "submitit_slurm" in c)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(UsageError, match="sbatch and srun are not on this machine's PATH") as e:
        preflight.check_command(argv_of(line, machine))
    assert "\n" not in str(e.value)
