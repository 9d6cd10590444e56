"""What a sweep point found, as typed records: a trial, a spectrum, a job.

These dataclasses are the schema of ``record.json`` (a ``JobRecord``) and of the cached trial
files (a ``TrialRecord``); ``point/store.py`` stores and loads them. ``to_dict`` writes plain JSON,
``from_dict`` reads every schema version ever written, so old sweeps still report:

- schema 1 (before outcomes): a trial has ``stable`` only, read as trained / diverged;
  a job may say ``lr_max_status: no_stable_lr`` (today ``nothing_trains``);
- schema 2 (this one): typed records, ``nesterov`` stored beside ``momentum`` so the report can
  compute the stability limit the optimizer really has.

Fields a reader does not know are kept in ``extra`` and written back, so nothing is lost.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from spectral_sweep.trial.outcomes import DIVERGED, TRAINED, outcome_of

SCHEMA = 2


def _known(cls, data: dict) -> tuple[dict, dict]:
    """Split ``data`` into the fields of ``cls`` and the rest; a known field of the wrong type
    (``"lr_max": "abc"``, a NaN learning rate) is a ``ValueError``: the file is corrupt."""
    names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
    known = {k: v for k, v in data.items() if k in names}
    hints = typing.get_type_hints(cls)
    for key, value in known.items():
        if not _has_type(value, hints[key]) or (key in FINITE and value is not None and not _finite(value)):
            raise ValueError(f"field {key} holds {value!r}, not {_name(hints[key])}")
        if key in RANGES and not _in_range(value, *RANGES[key]):
            raise ValueError(f"field {key} holds {value!r}, outside {RANGES[key][2]}")
    return known, {k: v for k, v in data.items() if k not in names}


# learning rates and sizes: a NaN or infinite one is never a result, only a damaged file
FINITE = ("lr", "lr_max", "lr_blowup", "lr_best", "lr_opt", "lr_opt_bracket", "search_start", "batch_size",
          "lr_max_bracket", "lr_blowup_bracket")


# numbers with a meaning that bounds them: an accuracy of Infinity or a negative lr is a damaged file
POSITIVE, FRACTION, COUNT = (0.0, math.inf, "(0, inf)"), (0.0, 1.0, "[0, 1]"), (0.0, math.inf, "[0, inf)")
RANGES = {"lr": POSITIVE, "lr_max": POSITIVE, "lr_blowup": POSITIVE, "lr_best": POSITIVE, "lr_safe": POSITIVE,
          "search_start": POSITIVE, "lr_max_bracket": POSITIVE, "lr_blowup_bracket": POSITIVE,
          "test_acc": FRACTION, "best_test_acc": FRACTION, "acc_at_lr_max": FRACTION,
          "steps": COUNT, "budget_steps": COUNT, "seconds": COUNT, "images_per_s": COUNT, "batch_size": POSITIVE}


def _in_range(value, low: float, high: float, text: str) -> bool:
    """Every number of ``value`` (one, or a list with None for an open end) lies in ``text``'s interval."""
    values = value if isinstance(value, list) else [value]
    for v in values:
        if v is None:
            continue
        if not (isinstance(v, (int, float)) and math.isfinite(v) and low <= v <= high) or (text[0] == "(" and v == low):
            return False
    return True


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
    outcome: str                         # trained | stalled | diverged (trial/outcomes.py)
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
