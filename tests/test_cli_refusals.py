"""Bad input through the real command: one line on stderr, exit 2, no traceback, nothing written
(the whole catalogue runs through the preflight in test_catalogue.py; the sweeps are test_cli.py's).
The sample goes through the console script's entry point, `cli.main`, in this process (test_cli.cli);
a few of it in a fresh process, as a shell runs it (an interpreter each costs more than the check)."""

from pathlib import Path

import pytest
from test_cli import cli

# A sample of the catalogue: the folder it ran in must be exactly as before.
SAMPLE = ["model=vgg99", "batch=8,0", "seed=abc", "search.tolerance=1.2,1", "-m batch=8,0",
          '+hydra.sweeper.params.batch="8,0"', "hydra.sweep.dir=/proc/nope", "hydra/sweeper=nope", "hydra.mode=RUN",
          "out_dir=", "name=../../x", "optimizer=adam optimizer.betas=[0.9]", "model.width=nan",
          "optimizer=lanczos_sgd optimizer.learner.lr_cap=-1", "+new.key=1", "model=preresnet110 model.depth=5",
          "--bogus", "optimizer.lr=1e300", "train.epochs=1e-9 train.steps=5", "model.width=1000", "name=" + "n" * 300]


IN_A_FRESH_PROCESS = ["batch=8,0", "-m batch=8,0", "--bogus", "model.width=1000"]


def tree(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("case", SAMPLE)
def test_bad_input_through_the_real_command_is_one_line_exit_2_and_nothing_written(tmp_path, case):
    from test_catalogue import CATALOGUE, command

    args = case.split()
    (message,) = [m for a, m in CATALOGUE if a == args]
    (tmp_path / "out" / "sweep").mkdir(parents=True)
    (tmp_path / "out" / "sweep" / "keep.txt").write_text("an earlier sweep's file")
    before = tree(tmp_path)
    out = cli(*command(args, tmp_path / "out"), cwd=tmp_path, fresh=case in IN_A_FRESH_PROCESS)
    code, stderr = out.returncode, out.stderr
    assert code == 2, (code, stderr)
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("spectral-sweep: error:") and message in errors[0], stderr
    assert tree(tmp_path) == before


def test_a_torchvision_preset_without_its_files_is_exit_2_before_the_sweep_folder(tmp_path):
    out = cli("dataset=cifar100", "dataset.root=/nonexistent", "model=vgg11_bn", "model.width=0.125",
              "train.steps=8", f"out_dir={tmp_path / 'out'}", cwd=tmp_path)
    code, stderr = out.returncode, out.stderr
    assert code == 2 and stderr.count("\n") == 1, stderr
    assert "no CIFAR100 data in /nonexistent/cifar-100-python" in stderr and "dataset.download=true" in stderr
    assert list(tmp_path.iterdir()) == []


def test_the_sample_is_large_enough():
    assert len(SAMPLE) >= 15 and set(IN_A_FRESH_PROCESS) <= set(SAMPLE)


def test_dataset_root_without_data_says_where_it_looked_and_how_to_get_it(tmp_path):
    out = cli("model=vgg11_bn", "model.width=0.125", "dataset=cifar100", f"dataset.root={tmp_path / 'nowhere'}",
              f"out_dir={tmp_path}", cwd=tmp_path)
    code, stderr = out.returncode, out.stderr
    assert code == 2 and "Traceback" not in stderr
    assert str(tmp_path / "nowhere") in stderr and "dataset.download=true" in stderr
