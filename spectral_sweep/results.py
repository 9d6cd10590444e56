"""What a sweep point found, as typed records: a trial, a spectrum, a job.

These dataclasses are the schema of ``record.json`` (a ``JobRecord``) and of the cached trial
files (a ``TrialRecord``); ``records.py`` stores and loads them. ``to_dict`` writes plain JSON,
``from_dict`` reads every schema version ever written, so old sweeps still report:

- schema 1 (before outcomes): a trial has ``stable`` only, read as trained / diverged;
  a job may say ``lr_max_status: no_stable_lr`` (today ``nothing_trains``);
- schema 2 (this one): typed records, ``nesterov`` stored beside ``momentum`` so the report can
  compute the stability limit the optimizer really has.

Fields a reader does not know are kept in ``extra`` and written back, so nothing is lost.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import platform
import subprocess
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .outcomes import DIVERGED, TRAINED, outcome_of

SCHEMA = 2
LEARNER = "learner"   # a job's ``search`` when the optimizer chose its own lr (lanczos_sgd): the one marker


def _known(cls, data: dict) -> tuple[dict, dict]:
    """Split ``data`` into the fields of ``cls`` and the rest; a known field of the wrong type
    (``"lr_max": "abc"``, a NaN learning rate) is a ``ValueError``: the file is corrupt."""
    names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
    known = {k: v for k, v in data.items() if k in names}
    hints = typing.get_type_hints(cls)
    for key, value in known.items():
        if not _has_type(value, hints[key]) or (key in FINITE and value is not None and not _finite(value)):
            raise ValueError(f"field {key} holds {value!r}, not {_name(hints[key])}")
    return known, {k: v for k, v in data.items() if k not in names}


# learning rates and sizes: a NaN or infinite one is never a result, only a damaged file
FINITE = ("lr", "lr_max", "lr_blowup", "lr_best", "search_start", "batch_size", "lr_max_bracket", "lr_blowup_bracket")


def _finite(value) -> bool:
    values = value if isinstance(value, list) else [value]
    return all(v is None or (_has_type(v, float) and math.isfinite(v)) for v in values)


def _has_type(value, hint) -> bool:
    """Does a JSON value fit a field's annotation (float takes an int, nothing takes a bool but bool)?"""
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_has_type(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint in (int, float):
        return isinstance(value, (int, float) if hint is float else int) and not isinstance(value, bool)
    if origin is not None:
        return isinstance(value, origin)
    if dataclasses.is_dataclass(hint):   # a nested record: still a dict in the file
        return isinstance(value, (dict, hint))
    return isinstance(value, hint) if isinstance(hint, type) else True


def _name(hint) -> str:
    return getattr(hint, "__name__", None) or str(hint)


def _plain(obj) -> dict:
    """A record as a JSON-able dict, its unknown fields back in place."""
    out = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.name != "extra"}
    return {**out, **obj.extra}


@dataclass
class TrialRecord:
    """One trial: a fresh model trained at one peak lr for the budget, and how it ended."""

    lr: float
    outcome: str                         # trained | stalled | diverged (outcomes.py)
    reason: str | None = None            # why it did not train
    initial_loss: float | None = None
    final_train_loss: float | None = None
    test_acc: float | None = None
    test_loss: float | None = None
    steps: int = 0
    budget_steps: int | None = None
    seconds: float = 0.0
    images_per_s: float | None = None
    seed: int | None = None              # search=adaptive: the trial's own seed (null: the point's)
    loss_curve: list = field(default_factory=list)   # [[step, mean loss over the window], ...]
    hooks: dict = field(default_factory=dict)        # each training hook's log, by hook name
    extra: dict = field(default_factory=dict)

    @property
    def stable(self) -> bool:
        """Did not diverge (it may still have stalled): what the blow-up edge is made of."""
        return self.outcome != DIVERGED

    @property
    def trained(self) -> bool:
        return self.outcome == TRAINED

    def to_dict(self) -> dict:
        return {**_plain(self), "stable": self.stable}

    @classmethod
    def from_dict(cls, data: dict) -> TrialRecord:
        known, extra = _known(cls, data)
        known["outcome"] = outcome_of(data)   # schema 1: from "stable"
        extra.pop("stable", None)             # derived, written back by to_dict
        return cls(**known, extra=extra)


@dataclass
class SpectrumRecord:
    """The curvature of a sweep point (spectrum.measure_spectrum), where it was measured."""

    operator: str                         # hessian | ggn
    bn_mode: str
    batches: list                         # per batch size: lambda_max / lambda_min over random batches
    at: str = "init"                      # init | trained | checkpoint
    extremes: str = "both"
    iters: int | None = None
    preconditioned: bool = False          # by Adam's second moments (after training with Adam)
    full: dict | None = None              # the full-data operator's extremes
    density: list = field(default_factory=list)   # SLQ densities
    noise_scale: dict | None = None
    cost_gradients: float | None = None
    seconds: float | None = None
    trained: dict | None = None           # at=trained: the training run before the measurement
    product: dict | None = None           # the Hessian-vector product used (spectrum.method=auto: timed)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return _plain(self)

    @classmethod
    def from_dict(cls, data: dict) -> SpectrumRecord:
        known, extra = _known(cls, data)
        return cls(**known, extra=extra)


@dataclass
class JobRecord:
    """One sweep point: the search's result, its trials, optionally its spectrum, and provenance."""

    model: str
    dataset: str
    optimizer: str
    batch_size: int
    trials: list[TrialRecord]
    seed: int = 0
    variant: str = ""                     # the job's other overrides, e.g. optimizer.momentum=0.5
    expected_exponent: float | None = None   # 1 for SGD-like, 0.5 for Adam-like: the law under test
    momentum: float | None = None         # heavy-ball momentum (SGD) or beta1 (Adam)
    nesterov: bool = False
    search: str | None = None             # adaptive | bisect | grid | fixed | none | learner
    search_start: float | None = None
    lr_max: float | None = None           # adaptive: where half of fresh-seed trials train; bisect: the
                                          # largest lr whose trial trained
    lr_max_bracket: list = field(default_factory=lambda: [None, None])   # adaptive: its 95% interval
    lr_max_se: float | None = None        # adaptive: the std of log lr_max (the point's error in a fit)
    lr_safe: float | None = None          # adaptive: where 90% of fresh-seed trials train
    edge_spread: float | None = None      # adaptive: how sharp the edge is (sigmoid's std, natural log)
    lr_max_status: str | None = None      # bracketed | lower_bound | nothing_trains | not_searched | chosen_by_learner
    acc_at_lr_max: float | None = None
    lr_blowup: float | None = None        # the largest lr that did not diverge
    lr_blowup_bracket: list = field(default_factory=lambda: [None, None])
    lr_blowup_status: str | None = None
    lr_blowup_se: float | None = None
    job_num: int = 0                      # the job's place in its sweep: a warm start reads earlier jobs only
    non_monotone: list = field(default_factory=list)   # trials that contradict stalled|trained|stalled|diverged
    lr_best: float | None = None
    best_test_acc: float | None = None
    trials_reused: int = 0
    steps: int = 0
    seconds: float = 0.0
    params: int | None = None
    train_size: int | None = None
    num_classes: int | None = None
    budget: dict = field(default_factory=dict)   # {"steps", "epochs"}: the length of every trial
    job_key: str | None = None
    group_key: str | None = None          # same for every batch size of one curve
    spectrum: SpectrumRecord | None = None
    device: str | None = None
    commit: str | None = None
    command: str | None = None
    torch: str | None = None
    created: str | None = None
    config: dict = field(default_factory=dict)
    schema: int = SCHEMA
    kind: str = "sweep_point"
    record_path: str | None = None        # where it was loaded from (not written)
    extra: dict = field(default_factory=dict)

    @property
    def is_learner(self) -> bool:
        return self.search == LEARNER

    def to_dict(self) -> dict:
        out = _plain(self)
        out.pop("record_path")
        out["trials"] = [t.to_dict() for t in self.trials]
        out["spectrum"] = self.spectrum.to_dict() if self.spectrum is not None else None
        return out

    @classmethod
    def from_dict(cls, data: dict) -> JobRecord:
        known, extra = _known(cls, data)
        known["trials"] = [TrialRecord.from_dict(t) for t in data["trials"]]
        if isinstance(data.get("spectrum"), dict):
            known["spectrum"] = SpectrumRecord.from_dict(data["spectrum"])
        if "nesterov" not in data:   # schema 1 kept it in the config only
            known["nesterov"] = bool(((data.get("config") or {}).get("optimizer") or {}).get("nesterov"))
        if known.get("lr_max_status") == "no_stable_lr":   # schema 1
            known["lr_max_status"] = "nothing_trains"
        return cls(**known, extra=extra)


def provenance() -> dict[str, Any]:
    """What produced a record, apart from the device: command, commit, versions, time."""
    import torch

    return {"commit": git_commit(), "command": " ".join(["spectral-sweep", *sys.argv[1:]]),
            "torch": torch.__version__, "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}


def device_name(device) -> str:
    """A record's ``device``: the GPU's name, or the CPU with its thread count."""
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def git_commit() -> str:
    """The source tree's commit (with -dirty when it has uncommitted changes), or 'unknown'."""
    src = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=src, capture_output=True,
                             text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=src,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha + ("-dirty" if dirty else "")) if sha else "unknown"
