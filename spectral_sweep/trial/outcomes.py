"""What a trial's outcome is: ``trained``, ``stalled`` or ``diverged``, and the rules that decide it.

Pure Python (no torch), so that the command line can check the rules' settings before anything
loads, and the search and the records can read outcomes without knowing how trials train.

* ``diverged``: the loss became non-finite, or its smoothed value rose above
  ``divergence_factor`` x the initial loss (``spectral_sweep.train`` watches this while training
  and stops the trial there, so a blow-up is cheap).
* ``stalled``: finite, but it did not learn: its final training loss (mean of the last 10% of
  steps) is not at least ``stall_loss_margin`` (10%) below the reference loss, and, where the data
  has classes, its test accuracy is not clearly above chance either. The reference loss is the
  smaller of the initial loss and ln(C), the loss of a uniform guess over C classes: a network
  that starts with large logits and merely learns to guess uniformly lowers its loss without
  learning anything. "Clearly above chance" means ``stall_acc_margin`` (5%) of the way from
  chance to perfect accuracy, and at least four binomial standard errors of the test set above
  chance, so that noise cannot pass it (with 10 classes and 1000 test images: accuracy >= 0.145).
  Either sign of learning is enough: near the edge a short trial's training loss is a noisy
  witness (augmentation, dropout, a batch of 16), while its test accuracy may already be far above
  chance, and the other way round.
* ``trained``: neither. This is what "the network trains at this lr" means, and lr_max is the
  largest lr whose trial trained. With ``target_acc`` set (``train.target_acc``, off by default),
  a trial that learned counts as trained only if its final test accuracy reaches that target too;
  short of it, it is ``stalled``: it did not get where the study asks within its budget (Shallue
  et al. 2018, "steps to a target"). A trial that diverged stays diverged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from spectral_sweep.errors import UsageError

TRAINED, STALLED, DIVERGED = "trained", "stalled", "diverged"


def accuracy_floor(num_classes: int, test_size: int, margin: float = 0.05) -> float:
    """The test accuracy a trial must reach to count as having learned: ``margin`` of the way from
    chance to 1, and never within four binomial standard errors of chance (noise cannot pass)."""
    chance = 1.0 / num_classes
    noise = 4.0 * math.sqrt(chance * (1 - chance) / max(test_size, 1))
    return chance + max(margin * (1 - chance), noise)


def decided_by_noise(accuracies, num_classes: int | None, test_size: int | None, margin: float = 0.05,
                     target_acc: float | None = None) -> str | None:
    """Why trained-or-stalled was the test set's sampling and not the lr at these trials (one line),
    or None: most of the finite trials' test accuracies lie within two binomial errors of the
    threshold that decides them (the accuracy floor, or ``target_acc``). A search then has nothing
    to place its edge on: at a budget that barely trains (60 steps, 64 test images) two reruns of one
    point gave intervals 4x apart, each confident (results/outcome_bank). None where the trials
    carry no accuracies, or the data has no classes or test set."""
    if not (num_classes and test_size):
        return None
    near, judged, threshold, band = near_threshold(accuracies, num_classes, test_size, margin, target_acc)
    if not judged or near <= judged / 2:
        return None
    return (f"{near} of {judged} finite trials end within +-{band:.3f} of the accuracy {threshold:.3f} that "
            f"decides trained from stalled (2 binomial errors on {test_size} test images), so the test set's "
            "noise, not the lr, decided them; raise dataset.test_size (or test_subset) and the budget (train.steps)")


def near_threshold(accuracies, num_classes: int, test_size: int, margin: float = 0.05,
                   target_acc: float | None = None) -> tuple[int, int, float, float]:
    """(how many of the accuracies lie within the band, how many there are, the threshold, the band):
    the band is two binomial errors of the threshold that decides trained from stalled."""
    threshold = max(accuracy_floor(num_classes, test_size, margin), target_acc or 0.0)
    band = 2 * math.sqrt(threshold * (1 - threshold) / test_size)
    judged = [a for a in accuracies if a is not None and math.isfinite(a)]
    return sum(abs(a - threshold) < band for a in judged), len(judged), threshold, band


def noise_check(num_classes: int | None, test_size: int | None, margin: float = 0.05,
                target_acc: float | None = None):
    """``decided_by_noise`` as a test of a point's trial results (outcome strings, mappings or trial
    records), what a search applies at its end; None where nothing can be judged (no classes or
    test set)."""
    if not (num_classes and test_size):
        return None
    return lambda results: decided_by_noise(accuracies_of(results), num_classes, test_size, margin, target_acc)


def accuracies_of(results) -> list[float | None]:
    """The test accuracies of the trials that did not diverge (None where a result carries none)."""
    found = []
    for result in results:
        if isinstance(result, (str, bool)) or outcome_of(result) == DIVERGED:
            continue
        found.append(result.get("test_acc") if isinstance(result, Mapping) else getattr(result, "test_acc", None))
    return found


def judge(initial_loss: float, final_loss: float, test_acc: float | None, num_classes: int | None,
          test_size: int, loss_margin: float = 0.1, acc_margin: float = 0.05,
          target_acc: float | None = None) -> tuple[str, str | None]:
    """(outcome, reason) of a trial that did not diverge: ``trained`` or ``stalled`` (see module doc)."""
    outcome, reason = _learned(initial_loss, final_loss, test_acc, num_classes, test_size, loss_margin, acc_margin)
    if outcome == TRAINED and target_acc is not None:
        if test_acc is None:
            return STALLED, f"not evaluated, so short of train.target_acc {target_acc:g}"
        if test_acc < target_acc:
            return STALLED, f"test acc {test_acc:.4g} below train.target_acc {target_acc:g}"
    return outcome, reason


def _learned(initial_loss: float, final_loss: float, test_acc: float | None, num_classes: int | None,
             test_size: int, loss_margin: float, acc_margin: float) -> tuple[str, str | None]:
    """Whether a finite trial learned at all: its loss fell clearly, or its accuracy rose clearly."""
    reference = initial_loss
    if num_classes:
        reference = min(reference, math.log(num_classes))
    if final_loss <= (1 - loss_margin) * reference:
        return TRAINED, None
    reason = (f"final loss {final_loss:.3g} not {loss_margin:.0%} below "
              f"{'ln C' if reference < initial_loss else 'initial'} {reference:.3g}")
    if test_acc is not None and num_classes:
        floor = accuracy_floor(num_classes, test_size, acc_margin)
        if test_acc >= floor:
            return TRAINED, None
        reason += f", test acc {test_acc:.3f} below {floor:.3f} (chance {1 / num_classes:.3g})"
    return STALLED, reason


def check_judging(divergence_factor: float, stall_loss_margin: float, stall_acc_margin: float,
                  target_acc: float | None = None) -> None:
    """The rules' settings, or one line naming the bad one (``UsageError``); their valid ranges
    are declared beside the fields of ``config.TrainConfig``."""
    import dataclasses

    from spectral_sweep.config.train import TrainConfig

    ranges = {f.name: f.metadata["range"] for f in dataclasses.fields(TrainConfig) if "range" in f.metadata}
    for name, value in (("divergence_factor", divergence_factor), ("stall_loss_margin", stall_loss_margin),
                        ("stall_acc_margin", stall_acc_margin), ("target_acc", target_acc)):
        problem = ranges[name].problem(f"train.{name}", value)
        if problem:
            raise UsageError(problem)


def best_trial(trials):
    """The one definition of a point's best trial (``lr_best``, and the search the learner is set
    against): among the trials made that did not diverge and were tested, the highest test
    accuracy (ties: the lower final training loss). None when every trial diverged."""
    def loss(t):
        x = t.final_train_loss
        return x if isinstance(x, (int, float)) and math.isfinite(x) else math.inf

    stable = [t for t in trials if outcome_of(t) != DIVERGED and t.test_acc is not None]
    return max(stable, key=lambda t: (t.test_acc, -loss(t)), default=None)


def outcome_of(result) -> str:
    """A trial's outcome from a string, a mapping or object with ``outcome`` (or, for records
    made before outcomes existed, ``stable``), or a bool (True: trained, False: diverged)."""
    if isinstance(result, str):
        if result not in (TRAINED, STALLED, DIVERGED):
            raise ValueError(f"unknown trial outcome {result!r}")
        return result
    if isinstance(result, Mapping):
        if result.get("outcome"):
            return outcome_of(result["outcome"])
        return TRAINED if result["stable"] else DIVERGED
    if getattr(result, "outcome", None):
        return outcome_of(result.outcome)
    return TRAINED if bool(getattr(result, "stable", result)) else DIVERGED
