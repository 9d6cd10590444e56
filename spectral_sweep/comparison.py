"""The learner against the search: does one curvature-driven run match the best fixed lr?

The question a user of ``optimizer=lanczos_sgd`` asks is whether its single trial, lr and
momentum set on the fly from a few Hessian-vector products, trains as well as the best trial a
whole lr search found, and at what price. For every learner record (``search == "learner"``)
this finds the sweep points of the same model, dataset, batch size, seed and trial budget that
searched a fixed lr (any other optimizer) and puts side by side:

* test accuracy and final training loss of the learner's trial and of the search's best trial
  (highest test accuracy among its stable trials);
* cost in gradient-equivalents at the training batch size: training steps (one gradient each)
  plus, for the learner, its refreshes (``hooks.learner.cost_gradients``: products x 2 x
  curvature batch / B). Sharpness tracking is an observation, not part of either method, and is
  not counted. ``search_cost`` is what finding the best lr took: every trial of the search.
"""

from __future__ import annotations

import math

import pandas as pd

from .records import LEARNER_SEARCH

MATCH = ("model", "dataset", "batch_size", "seed")

COMPARISON_NOTE = ("The learner's single trial against the best fixed-lr trial (highest test accuracy "
                   "among the stable ones) of a search at the same model, dataset, batch size, seed and "
                   "trial budget. Cost in gradient-equivalents at the training batch size: steps plus the "
                   "learner's Hessian-vector products (2 gradients each, scaled by curvature batch / B); "
                   "search cost = all trials of that search. lr and momentum: the learner's last choice.")

COLUMNS = ["model", "dataset", "batch_size", "seed", "budget_steps", "rule", "learner_test_acc",
           "learner_final_loss", "learner_cost", "refreshes", "learner_lr", "learner_momentum",
           "learner_status", "fixed_optimizer", "fixed_lr", "fixed_test_acc", "fixed_final_loss",
           "fixed_cost", "search_trials", "search_cost"]


def is_learner(record: dict) -> bool:
    return record.get("search") == LEARNER_SEARCH


def _budget(record: dict) -> int | None:
    trials = record.get("trials") or []
    return int(trials[0]["budget_steps"]) if trials else None


def _number(x) -> float:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else math.nan


def best_trial(record: dict) -> dict | None:
    """The stable trial with the highest test accuracy (ties: the lower final loss)."""
    stable = [t for t in record["trials"] if t["stable"] and t.get("test_acc") is not None]
    return max(stable, key=lambda t: (t["test_acc"], -_number(t["final_train_loss"])), default=None)


def learner_cost(trial: dict) -> float:
    """Training steps plus the learner's curvature products, in gradient-equivalents."""
    hook = (trial.get("hooks") or {}).get("learner") or {}
    return trial["steps"] + float(hook.get("cost_gradients", 0.0))


def partners_of(learner: dict, records: list[dict]) -> list[dict]:
    """The searched (fixed-lr) records a learner record is compared with, by optimizer name."""
    budget = _budget(learner)
    found = [r for r in records if not is_learner(r) and r.get("trials")
             and all(r.get(k) == learner.get(k) for k in MATCH) and _budget(r) == budget]
    return sorted(found, key=lambda r: r["optimizer"])


def comparison_table(records: list[dict]) -> pd.DataFrame:
    """One row per (learner record, fixed-lr record it can be compared with); a learner record
    without such a partner still gets a row, its fixed-lr columns empty."""
    rows = []
    for learner in filter(is_learner, records):
        if not learner.get("trials"):
            continue
        trial = learner["trials"][0]
        refreshes = [r for r in trial["hooks"]["learner"]["refreshes"] if "lr" in r]
        last = refreshes[-1] if refreshes else {}
        row = {**{k: learner[k] for k in MATCH}, "budget_steps": _budget(learner),
               "rule": trial["hooks"]["learner"].get("rule"),
               "learner_test_acc": _number(trial.get("test_acc")),
               "learner_final_loss": _number(trial.get("final_train_loss")),
               "learner_cost": learner_cost(trial), "refreshes": len(refreshes),
               "learner_lr": _number(last.get("lr")), "learner_momentum": _number(last.get("momentum")),
               "learner_status": "stable" if trial["stable"] else f"diverged ({trial['reason']})"}
        partners = partners_of(learner, records)
        if not partners:
            rows.append(row)
        for partner in partners:
            best = best_trial(partner)
            rows.append({**row, "fixed_optimizer": partner["optimizer"],
                         "fixed_lr": best["lr"] if best else math.nan,
                         "fixed_test_acc": best["test_acc"] if best else math.nan,
                         "fixed_final_loss": _number(best["final_train_loss"]) if best else math.nan,
                         "fixed_cost": best["steps"] if best else math.nan,
                         "search_trials": len(partner["trials"]),
                         "search_cost": sum(t["steps"] for t in partner["trials"])})
    df = pd.DataFrame(rows, columns=COLUMNS)
    return df.sort_values(["model", "dataset", "batch_size", "seed"], kind="stable").reset_index(drop=True)
