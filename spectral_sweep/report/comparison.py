"""The learner against the search: does one curvature-driven run match the best fixed lr?

The question a user of ``optimizer=lanczos_sgd`` asks is whether its single trial, lr and
momentum set on the fly from a few Hessian-vector products, trains as well as the best trial a
whole lr search found, and at what price. For every learner record (``JobRecord.is_learner``)
this finds the sweep points of the same model, dataset, batch size, seed and trial budget that
searched a fixed lr (any other optimizer) and puts side by side:

* test accuracy and final training loss of the learner's trial and of the search's best trial
  (highest test accuracy among its stable trials);
* cost in gradient-equivalents at the training batch size: training steps (one gradient each)
  plus, for the learner, its refreshes (``hooks.learner.cost_gradients``: products x 2 x
  curvature batch / B). Sharpness tracking is an observation, not part of either method, and is
  not counted. ``search_cost`` is what finding the best lr took: every trial of the search.

A DataFrame, like the rest of ``tables``; ``markdown.COMPARISON_NOTE`` explains it to readers.
"""

from __future__ import annotations

import math

import pandas as pd

from spectral_sweep.point.record import JobRecord
from spectral_sweep.trial import outcomes
from spectral_sweep.trial.record import TrialRecord

MATCH = ("model", "dataset", "batch_size", "seed")

COLUMNS = ["model", "dataset", "batch_size", "seed", "budget_steps", "rule", "learner_test_acc",
           "learner_final_loss", "learner_cost", "refreshes", "learner_lr", "learner_momentum",
           "learner_status", "fixed_optimizer", "fixed_lr", "fixed_test_acc", "fixed_final_loss",
           "fixed_cost", "search_trials", "search_cost"]


def _budget(record: JobRecord) -> int | None:
    return int(record.trials[0].budget_steps) if record.trials else None


def _number(x) -> float:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else math.nan


def best_trial(record: JobRecord) -> TrialRecord | None:
    """The search's best trial, as the job record defines it (``outcomes.best_trial``)."""
    return outcomes.best_trial(record.trials)


def refreshes(trial: TrialRecord) -> list[dict]:
    """The learner's refreshes that set an lr (a failed refresh logs an error instead)."""
    return [r for r in trial.hooks["learner"]["refreshes"] if "lr" in r]


def learner_cost(trial: TrialRecord) -> float:
    """Training steps plus the learner's curvature products, in gradient-equivalents."""
    hook = (trial.hooks or {}).get("learner") or {}
    return trial.steps + float(hook.get("cost_gradients", 0.0))


def partners_of(learner: JobRecord, records: list[JobRecord]) -> list[JobRecord]:
    """The searched (fixed-lr) records a learner record is compared with, by optimizer name."""
    budget = _budget(learner)
    found = [r for r in records if not r.is_learner and r.trials
             and all(getattr(r, k) == getattr(learner, k) for k in MATCH) and _budget(r) == budget]
    return sorted(found, key=lambda r: r.optimizer)


def _learner_columns(learner: JobRecord) -> dict:
    trial = learner.trials[0]
    chosen = refreshes(trial)
    last = chosen[-1] if chosen else {}
    return {**{k: getattr(learner, k) for k in MATCH}, "budget_steps": _budget(learner),
            "rule": trial.hooks["learner"].get("rule"),
            "learner_test_acc": _number(trial.test_acc), "learner_final_loss": _number(trial.final_train_loss),
            "learner_cost": learner_cost(trial), "refreshes": len(chosen),
            "learner_lr": _number(last.get("lr")), "learner_momentum": _number(last.get("momentum")),
            "learner_status": trial.outcome + (f" ({trial.reason})" if trial.reason else "")}


def _fixed_columns(partner: JobRecord) -> dict:
    best = best_trial(partner)
    return {"fixed_optimizer": partner.optimizer, "fixed_lr": best.lr if best else math.nan,
            "fixed_test_acc": best.test_acc if best else math.nan,
            "fixed_final_loss": _number(best.final_train_loss) if best else math.nan,
            "fixed_cost": best.steps if best else math.nan, "search_trials": len(partner.trials),
            "search_cost": sum(t.steps for t in partner.trials)}


def comparison_table(records: list[JobRecord]) -> pd.DataFrame:
    """One row per (learner record, fixed-lr record it can be compared with); a learner record
    without such a partner still gets a row, its fixed-lr columns empty."""
    rows = []
    for learner in (r for r in records if r.is_learner and r.trials):
        row = _learner_columns(learner)
        partners = partners_of(learner, records)
        rows += [{**row, **_fixed_columns(p)} for p in partners] if partners else [row]
    df = pd.DataFrame(rows, columns=COLUMNS)
    return df.sort_values(["model", "dataset", "batch_size", "seed"], kind="stable").reset_index(drop=True)
