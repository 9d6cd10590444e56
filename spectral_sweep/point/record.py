"""What a sweep point found: the job's record, and where it was made."""

from __future__ import annotations

import datetime
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spectral_sweep.curvature.spectrum import SpectrumRecord
from spectral_sweep.trial.record import SCHEMA, TrialRecord, _known, _plain

LEARNER = "learner"   # a job's ``search`` when the optimizer chose its own lr (lanczos_sgd): the one marker


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
    lr_max_status: str | None = None      # bracketed | lower_bound | nothing_trains | inconclusive | not_searched
                                          # | chosen_by_learner
    lr_max_problem: str | None = None     # inconclusive: what its trials showed (search/edge.py, problem)
    acc_at_lr_max: float | None = None
    lr_blowup: float | None = None        # the largest lr that did not diverge
    lr_blowup_bracket: list = field(default_factory=lambda: [None, None])
    lr_blowup_status: str | None = None
    lr_blowup_se: float | None = None
    job_num: int = 0                      # the job's place in its sweep: a warm start reads earlier jobs only
    launcher: str | None = None           # Hydra's launcher; only basic (one job after another) warm-starts
    warm_from: int | None = None          # the batch size whose lr_max gave search_start; None: a cold start
    learned_from: list = field(default_factory=list)   # adaptive: batch sizes whose trials gave the spread prior
    in_flight: int | None = None          # K, the trials of a search round (point/pool.py)
    capped: bool = False                  # bisect: search.max_trials stopped it before its tolerance
    settled: bool = False                 # adaptive: stopped short of search.precision once its group's verdict was
                                          # the same wherever its lr_max lies (search/group.py)
    non_monotone: list = field(default_factory=list)   # trials that contradict stalled|trained|stalled|diverged
    lr_best: float | None = None
    best_test_acc: float | None = None
    lr_opt: float | None = None           # where the trials' quality peaks (search/optimum.py); a bound's value
    lr_opt_bracket: list = field(default_factory=lambda: [None, None])   # its 95% interval (None: open)
    lr_opt_status: str | None = None      # bracketed | upper_bound | lower_bound | flat | too_few; None: not asked
    lr_opt_se: float | None = None        # its interval's half-width / 1.96, in log lr
    quality_at_opt: float | None = None   # the fitted objective at lr_opt, in the objective's units
    objective: str | None = None          # what lr_opt maximises: test_acc | train_loss | test_loss (minimised)
    lr_opt_trials: int = 0                # the trials lr_opt placed beyond the edges' (its cost)
    trials_reused: int = 0
    steps: int = 0
    seconds: float = 0.0
    params: int | None = None
    train_size: int | None = None
    test_size: int | None = None          # the images each trial is judged on
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
        _within_trials(known)
        return cls(**known, extra=extra)


#: How far past its trials a bracketed lr_max may lie: a fit extrapolates a little (47 real records:
#: never past the trials, a 95% bracket 2.4x at most), a damaged file (lr_max=1e300) by far more.
TRIAL_SPAN_SLACK = 10.0


def _within_trials(known: dict) -> None:
    """A bracketed edge lies among the job's own trials: one far outside the lrs it tried is a
    damaged file (a warm start from it would search nowhere, a fit would bend to it), a
    ``ValueError``. Other statuses are left out of fits and warm starts, and only range-checked."""
    lrs = [t.lr for t in known.get("trials", [])]
    if not lrs or known.get("lr_max_status") != "bracketed":
        return
    low, high = min(lrs) / TRIAL_SPAN_SLACK, max(lrs) * TRIAL_SPAN_SLACK
    for key in ("lr_max", "lr_safe", "lr_max_bracket"):
        value = known.get(key)
        if any(v is not None and not low <= v <= high for v in (value if isinstance(value, list) else [value])):
            raise ValueError(f"field {key} holds {value!r}, far outside the lrs its trials tried "
                             f"({min(lrs):.3g}..{max(lrs):.3g})")


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
