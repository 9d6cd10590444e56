"""One job checked before any folder exists: its values, and its model and optimizer built on meta."""

from __future__ import annotations

import os

from spectral_sweep import config as schema
from spectral_sweep.errors import UsageError


def check_job(config: schema.Config) -> None:
    """One job's values and scaling law, then its model and optimizer built on the meta device
    (no memory, no data; for the images' channels where the dataset's preset tells them): a target
    that does not import, rejects its arguments or returns the wrong type is refused here, before
    any folder exists."""
    schema.check(config)
    config.optimizer.exponent()
    import torch

    from spectral_sweep.models import build_target
    from spectral_sweep.trial.optim import build_optimizer

    with torch.device("meta"):
        model = build_target(config.model._target_, 2, input_shape=(config.dataset.known_channels() or 3, None),
                             **config.model.options())
        build_optimizer(params=model.parameters(), lr=config.optimizer.lr, **config.optimizer.options())
    _check_fits_in_memory(sum(p.numel() for p in model.parameters()), config.device)
    _check_dataset_target(config.dataset)
    _check_dataset_files(config.dataset)


BYTES_PER_PARAMETER = 16   # fp32 weights, gradients and two optimizer states (Adam's; SGD's momentum is one)


def _check_fits_in_memory(parameters: int, device: str) -> None:
    """A model whose weights, gradients and optimizer state alone pass the device's memory cannot
    train there: refused from its parameter count on meta, before any folder (activations not counted)."""
    import torch

    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        index = int(device.partition(":")[2] or 0)
        total, where = torch.cuda.get_device_properties(index).total_memory, f"cuda:{index}"
    else:
        total, where = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "this machine"
    need = parameters * BYTES_PER_PARAMETER
    if need > total:
        raise UsageError(f"the model has {parameters / 1e9:.3g}B parameters: weights, gradients and optimizer "
                         f"state alone need {need / 2**30:.0f} GiB, more than the {total / 2**30:.0f} GiB of "
                         f"{where}; lower model.width")


def _check_dataset_files(dataset) -> None:
    """A torchvision preset's files are where it will read them (root, the system copy), or it may
    download them: checked by name, without reading them."""
    from pathlib import Path

    from spectral_sweep.data import torchvision_sets

    if dataset._target_ != f"{torchvision_sets.__name__}.torchvision_data" or getattr(dataset, "download", False):
        return
    import torchvision

    cls = getattr(torchvision.datasets, str(dataset.torchvision_class))
    root = Path(dataset.root).expanduser().absolute()
    if not torchvision_sets._present(cls, root) and torchvision_sets._packed(cls, root) is None:
        raise torchvision_sets._missing(cls, root)


def _check_dataset_target(dataset) -> None:
    """The dataset's target imports and takes its options (it is called, and its data read, only
    when the job runs)."""
    import inspect

    from spectral_sweep.config import targets

    path = dataset._target_
    build = targets.locate(path, "dataset._target_")
    options = dataset.options()   # a preset's own download wins over the job's
    given = {k: None for k in ("root", "download", "seed") if targets.accepts(build, k) and k not in options}
    if inspect.isclass(build) and targets.accepts(build, "train") and targets.accepts(build, "transform"):
        given.update(train=True, transform=None)
    try:
        inspect.signature(build).bind(**given, **options)
    except TypeError as e:
        raise UsageError(f"dataset._target_={path} rejects its arguments ({e}); "
                         f"given: {', '.join(sorted(options)) or 'none'}") from None
    except ValueError:
        pass
