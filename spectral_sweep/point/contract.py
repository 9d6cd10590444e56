"""The contract between a job's data and its model, checked on one batch before any trial.

Data that is not finite, labels outside [0, classes) or a model whose output is not [B, classes]
or not finite at initialisation make every trial meaningless: without this check they end as
"nothing trains ... raise the budget" (a record the next run reuses, science it is not) or as
an IndexError deep in the first trial. Each is refused here with one ``UsageError`` line that
names the culprit's ``_target_``. Cheap: the labels of both splits (one tensor each), then one
small batch of the training split through one fresh model, without gradients, on the job's
device; the global random state is left as it was, so no trial's result depends on the check.
"""

from __future__ import annotations

import torch

from spectral_sweep.data.loaders import random_batch
from spectral_sweep.errors import UsageError

BATCH = 16   # samples of the training split the model sees (fewer where the split or the job's batch is smaller)


def check_contract(data, make_model, device, *, batch: int, seed: int, dataset: str, model: str) -> None:
    """Refuse the job (``UsageError``) unless ``data`` and a fresh ``make_model()`` keep the
    contract. ``dataset`` and ``model`` name the culprits in the message (``dataset._target_=...``)."""
    for name, split in (("training", data.train), ("test", data.test)):
        _check_labels(split.labels, data.num_classes, name, dataset)
    size = min(max(int(batch), 2), BATCH, len(data.train))   # two at least: batch norm's training mode
    x, y = random_batch(data.train, size, device, torch.Generator().manual_seed(int(seed)))
    if not torch.isfinite(x).all():
        raise UsageError(f"{dataset}: a batch of the training split holds inputs that are not finite "
                         f"(NaN or inf, {_share(x)} of them) after normalisation (mean {_fmt(data.train.mean)}, "
                         f"std {_fmt(data.train.std)}); the images must be finite numbers")
    _check_output(make_model, x, data.num_classes, device, model)


def _check_labels(labels: torch.Tensor, classes: int, split: str, dataset: str) -> None:
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise UsageError(f"{dataset}: the {split} labels are {labels.dtype}, not integers")
    if not len(labels):
        return
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= classes:
        bad = labels[(labels < 0) | (labels >= classes)]
        raise UsageError(f"{dataset}: {len(bad)} {split} label(s) outside [0, {classes}) "
                         f"(the {classes} classes), from {low} to {high}; labels must be class indices "
                         f"0..{classes - 1}")


def _check_output(make_model, x: torch.Tensor, classes: int, device, model: str) -> None:
    """One forward pass of a fresh model in training mode, as a trial's first step makes it."""
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []), torch.no_grad():
        net = make_model().to(device).train()
        try:
            out = net(x)
        except torch.OutOfMemoryError:
            raise
        except (RuntimeError, ValueError, TypeError, IndexError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UsageError(f"{model} fails on a batch of the data (images {list(x.shape)}): "
                             f"{type(e).__name__}: {first}") from None
    if not isinstance(out, torch.Tensor):
        raise UsageError(f"{model} returns a {type(out).__name__}, not a tensor of logits [B, classes]")
    if tuple(out.shape) != (len(x), classes):
        raise UsageError(f"{model} gives output {list(out.shape)} for a batch of {len(x)}, not "
                         f"[{len(x)}, {classes}]: the data has {classes} classes (build the last layer "
                         "with the num_classes it is given)")
    if not torch.isfinite(out).all():
        raise UsageError(f"{model} gives outputs that are not finite (NaN or inf, {_share(out)} of them) "
                         "at initialisation, on finite inputs; no lr can train it")


def _share(t: torch.Tensor) -> str:
    bad = int((~torch.isfinite(t)).sum())
    return "all" if bad == t.numel() else f"{bad} of {t.numel()}"


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:.3g}" for v in values) + ")"
