"""Bad data, bad models and misleading messages (issue 33, kinds 6 and 7): a job whose data or
model breaks the contract is refused on one batch before any trial, in one line naming the
culprit's _target_, with nothing written; an OS error (a full disk, a read-only sweep, a file
where a folder belongs) is one line that names the path and what to fix, in every command, and
"rerun to resume" is said only where a rerun can help. Each test plants the fault for real."""

import ctypes
import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from test_report import make_sweep
from test_user_modules import user  # noqa: F401  (the fixture: mynet.py and myconf/)

from spectral_sweep import preflight
from spectral_sweep.config.schema import compose
from spectral_sweep.data.load import load_dataset
from spectral_sweep.errors import UsageError, os_problem
from spectral_sweep.files import replace_atomically
from spectral_sweep.point import run as job
from spectral_sweep.point.contract import check_contract
from spectral_sweep.report.write import main as report_main

FAULTY = '''
import torch
from torch import nn

from mynet import SmallNet, make_data
from spectral_sweep.data.splits import Data, TensorSplit


class Named(torch.utils.data.TensorDataset):
    classes = ["dark", "light"]   # two classes named, three in the labels


def data(fault: str = "", seed: int = 0):
    """mynet's three brightness classes, with one fault planted."""
    train, test = make_data(64, 32, seed)
    x, y = train.tensors
    if fault == "nan_images":
        x = torch.full_like(x, float("nan"))
    elif fault == "one_inf_pixel":
        x = x.clone()
        x[5, 1, 2, 3] = float("inf")
    elif fault == "labels_from_minus_one":
        y = y - 1
    elif fault == "one_hot_labels":
        y = nn.functional.one_hot(y, 3)
    elif fault == "fractional_labels":
        y = y / 2
    elif fault == "a_label_past_the_classes":
        return Named(x, y), Named(*test.tensors)
    elif fault == "zero_std":   # a builder's Data: images all alike to it, normalised by 0
        images = (x * 255).to(torch.uint8)
        split = TensorSplit(images, y, (0.5,) * 3, (0.0,) * 3)
        return Data(split, split, 3, 8, (0.5,) * 3, (0.0,) * 3)
    return torch.utils.data.TensorDataset(x, y), test


class Net(SmallNet):
    def __init__(self, num_classes: int, fault: str = ""):
        super().__init__(2 if fault == "too_few_outputs" else 10 if fault == "too_many_outputs" else num_classes)
        self.fault = fault

    def forward(self, x):
        out = super().forward(x)
        if self.fault == "nan_forward":
            return out * float("nan")
        if self.fault == "inf_at_init":
            return out / 0.0 + 1
        if self.fault == "flat_output":
            return out.sum(1)
        if self.fault == "tuple_output":
            return out, x
        return out
'''


@pytest.fixture
def faulty(user):  # noqa: F811
    (user / "faulty.py").write_text(textwrap.dedent(FAULTY))
    (user / "myconf" / "model" / "faulty.yaml").write_text("_target_: faulty.Net\n")
    (user / "myconf" / "dataset" / "faulty.yaml").write_text("_target_: faulty.data\n")
    sys.modules.pop("faulty", None)
    return user


def _config(folder, *overrides):
    return compose("model=faulty", "dataset=faulty", "search=fixed", "dataset.budget.steps=4", "batch=8",
                   "device=cpu", "quiet=true", *overrides, config_dir=str(folder / "myconf"))


def _written(folder: Path) -> list[str]:
    """What a job wrote that it should not have, were it refused: its config, trials, record, error."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.name in ("config.json", "record.json", "error.txt", "trials") or p.suffix == ".pt")


# ============================================================================================
# 6. the contract: data and model checked on one batch before any trial
# ============================================================================================

DATA_FAULTS = {"nan_images": "not finite", "one_inf_pixel": "not finite",
               "labels_from_minus_one": "label(s) outside [0, 3)", "one_hot_labels": "not one integer class index",
               "fractional_labels": "not one integer class index", "a_label_past_the_classes": "outside [0, 2)",
               "zero_std": "not finite"}
MODEL_FAULTS = {"too_few_outputs": "output [8, 2] for a batch of 8, not [8, 3]",
                "too_many_outputs": "output [8, 10] for a batch of 8, not [8, 3]",
                "flat_output": "output [8] for a batch of 8", "nan_forward": "not finite",
                "inf_at_init": "not finite", "tuple_output": "returns a tuple"}


@pytest.mark.parametrize("group, fault", [*[("dataset", f) for f in DATA_FAULTS],
                                          *[("model", f) for f in MODEL_FAULTS]])
def test_data_or_a_model_that_breaks_the_contract_is_refused_naming_it_before_any_trial(faulty, tmp_path, group,
                                                                                        fault):
    config = _config(faulty, f"+{group}.fault={fault}")
    folder = tmp_path / "sweep" / "job"
    with pytest.raises(UsageError) as refused:
        job.run_point(config, folder, tmp_path / "sweep")
    message = str(refused.value)
    assert "\n" not in message and f"{group}._target_=faulty." in message, message
    assert {**DATA_FAULTS, **MODEL_FAULTS}[fault] in message, message
    assert _written(tmp_path) == []   # no record for the next run to reuse, no trial, no config


def test_a_contract_refusal_through_the_command_is_one_line_exit_2_and_no_record(faulty):
    args = ["--config-dir", "myconf", "model=faulty", "dataset=faulty", "+dataset.fault=labels_from_minus_one",
            "batch=8", "search=fixed", "dataset.budget.steps=4", f"out_dir={faulty / 'out'}", "name=c", "quiet=true"]
    out = _command(faulty, "spectral_sweep.cli", *args)
    errors = _errors(out.stderr)
    assert out.returncode == 2 and len(errors) == 1, out.stderr
    assert errors[0].startswith("spectral-sweep: error: dataset._target_=faulty.data") and "rerun" not in errors[0]
    assert _written(faulty / "out") == []


def test_a_good_job_passes_the_contract_without_touching_the_random_state():
    data = load_dataset("synthetic", seed=0, train_size=64, test_size=32)
    from test_train import small_cnn

    torch.manual_seed(5)
    before = torch.get_rng_state()
    check_contract(data, small_cnn, "cpu", batch=32, seed=0, dataset="d", model="m")
    assert torch.equal(torch.get_rng_state(), before)


# ============================================================================================
# 7. messages: a full disk, OS errors in every command, a rerun advised only where it helps
# ============================================================================================

FULL = {"the OS (write)": OSError(errno.ENOSPC, "No space left on device"),
        "the OS (quota)": OSError(errno.EDQUOT, "Disk quota exceeded"),
        "torch.save (unexpected pos)": RuntimeError("[enforce fail at inline_container.cc:672] . "
                                                    "unexpected pos 64 vs 0"),
        "torch.save (write failed)": RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")}


@pytest.mark.parametrize("said_by", list(FULL))
def test_a_full_disk_is_no_space_left_naming_the_file_however_the_writer_says_it(tmp_path, said_by):
    path = tmp_path / "trials" / "k.pt"
    with pytest.raises(OSError) as full:
        with replace_atomically(path):
            raise FULL[said_by]
    line = os_problem(full.value)
    assert full.value.errno in (errno.ENOSPC, errno.EDQUOT) and full.value.filename == str(path)
    assert line.startswith(f"no space left on device writing {path}") and "\n" not in line
    assert list(path.parent.iterdir()) == []   # the temporary file is gone, nothing half-written


FILL_DISK = """
import errno, os, sys
real = os.replace
def full(src, dst, *a, **k):   # every file the tool writes atomically finds the disk full
    if str(dst).endswith(".json") or str(dst).endswith(".md"):
        raise OSError(errno.ENOSPC, "No space left on device")
    return real(src, dst, *a, **k)
os.replace = full
sys.argv = [sys.argv[0], *sys.argv[1:]]
from spectral_sweep.cli import main
main()
"""


def test_a_full_disk_in_a_job_is_one_line_exit_1_naming_the_file(faulty):
    args = ["--config-dir", "myconf", "model=faulty", "dataset=faulty", "batch=8", "search=fixed",
            "dataset.budget.steps=4", f"out_dir={faulty / 'out'}", "name=f", "quiet=true"]
    out = _command(faulty, None, *args, code=FILL_DISK)
    errors = _errors(out.stderr)
    assert out.returncode == 1 and len(errors) == 1 and "Traceback" not in out.stderr, out.stderr
    assert "no space left on device writing " in errors[0] and "config.json" in errors[0], errors[0]
    assert _written(faulty / "out") == []


@pytest.mark.filterwarnings("ignore:skipping corrupt record")
def test_a_full_disk_mid_report_is_one_line_exit_1(tmp_path, monkeypatch, capsys):
    make_sweep(tmp_path / "s")
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full"))
                        if str(dst).endswith(".md") else real(src, dst))
    with pytest.raises(SystemExit) as ended:
        report_main([str(tmp_path / "s"), "--quiet"])
    errors = _errors(capsys.readouterr().err)
    assert ended.value.code == 1 and len(errors) == 1, errors
    assert errors[0].startswith("spectral-sweep-report: no space left on device writing ") and ".md" in errors[0]


def _no_dac_override():
    """As an ordinary user: root without the capability to write past a folder's mode."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):   # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, out of the bounding set: gone at exec
        libc.prctl(24, cap, 0, 0, 0)   # PR_CAPBSET_DROP


def test_the_report_of_a_read_only_sweep_is_one_line_naming_out_and_writes_nothing(tmp_path):
    sweep = tmp_path / "s"
    make_sweep(sweep)
    before = sorted(sweep.rglob("*"))
    for folder in [sweep, *(p for p in sweep.rglob("*") if p.is_dir())]:
        folder.chmod(0o555)
    try:
        probe = _command(tmp_path, None, code=f"open({str(sweep / 'probe')!r}, 'w')", preexec_fn=_no_dac_override)
        if probe.returncode == 0:
            pytest.skip("root here keeps CAP_DAC_OVERRIDE: no folder is read-only to it")
        out = _command(tmp_path, "spectral_sweep.report", str(sweep), "--quiet", preexec_fn=_no_dac_override)
    finally:
        for folder in [sweep, *(p for p in sweep.rglob("*") if p.is_dir())]:
            folder.chmod(0o755)
    errors = _errors(out.stderr)
    assert out.returncode == 2 and len(errors) == 1 and "Traceback" not in out.stderr, out.stderr
    assert errors[0] == f"spectral-sweep-report: cannot write the report to {sweep}: Permission denied; " \
                        "choose another folder with --out DIR"
    assert sorted(sweep.rglob("*")) == before


def _plant(folder: Path, what: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if what == "trials/ is a file":
        (folder / "trials").write_text("in the way")
    elif what == ".lock is a directory":
        (folder / ".lock").mkdir()
    elif what == "record.json is a directory, its .bad one too":
        (folder / "record.json" / "x").mkdir(parents=True)
        (folder / "record.json.bad" / "y").mkdir(parents=True)


IN_THE_WAY = {"trials/ is a file": "trials is a file where a folder belongs; move it away",
              ".lock is a directory": ".lock is a directory where a file belongs; move it away",
              "record.json is a directory, its .bad one too": "record.json.bad away"}


@pytest.mark.parametrize("what", list(IN_THE_WAY))
def test_a_file_in_the_way_says_what_to_move_not_to_rerun(faulty, tmp_path, what):
    folder = tmp_path / "sweep" / "job"
    _plant(folder, what)
    with pytest.raises(OSError) as failed:
        job.run_point(_config(faulty), folder, tmp_path / "sweep")
    line = os_problem(failed.value)
    assert "\n" not in line and IN_THE_WAY[what] in line and "rerun" not in line, line
    assert not (folder / "record.json").is_file()


def test_a_record_path_that_is_a_directory_is_set_aside_and_the_job_recomputed(faulty, tmp_path):
    folder = tmp_path / "sweep" / "job"
    (folder / "record.json" / "x").mkdir(parents=True)
    with pytest.warns(UserWarning, match="corrupt job record, set aside as record.json.bad"):
        job.run_point(_config(faulty), folder, tmp_path / "sweep")
    assert (folder / "record.json").is_file() and (folder / "record.json.bad" / "x").is_dir()


def test_through_the_command_a_file_in_the_way_is_one_line_exit_1_what_to_fix_and_no_rerun_advice(faulty):
    args = ["--config-dir", "myconf", "model=faulty", "dataset=faulty", "batch=8", "search=fixed",
            "dataset.budget.steps=4", f"out_dir={faulty / 'out'}", "name=w", "quiet=true"]
    plan = preflight.check_command(["--config-dir", str(faulty / "myconf"), *args[2:]])
    folder = plan.sweep_dir / plan.jobs[0].folder
    _plant(folder, "trials/ is a file")
    out = _command(faulty, "spectral_sweep.cli", *args)
    errors = _errors(out.stderr)
    assert out.returncode == 1 and len(errors) == 1 and "Traceback" not in out.stderr, out.stderr
    assert f"{folder / 'trials'} is a file where a folder belongs; move it away" in errors[0], errors[0]
    assert "rerun the command to resume" not in errors[0] and not (folder / "error.txt").exists()


# ============================================================================================


def _command(cwd: Path, module: str | None, *args, code: str | None = None, preexec_fn=None):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(cwd), *filter(None, [os.environ.get("PYTHONPATH")])]),
           "PYTHONWARNINGS": "ignore::UserWarning"}   # make_sweep's planted corrupt records are named in warnings
    head = ["-m", module] if module else ["-c", code]
    return subprocess.run([sys.executable, *head, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300, preexec_fn=preexec_fn)


def _errors(stderr: str) -> list[str]:
    """The lines a user reads as the outcome: the plan and Hydra's launch lines are not errors."""
    return [line for line in stderr.splitlines() if line.strip() and "[HYDRA]" not in line
            and not line.startswith("spectral-sweep: plan:") and "Warning" not in line]
