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
    _check_fits_in_memory(sum(p.numel() for p in model.parameters()), config.device, _in_flight(config))
    _check_executor(config.search)
    _check_dataset_target(config.dataset)
    _check_dataset_files(config.dataset)


BYTES_PER_PARAMETER = 16   # fp32 weights, gradients and two optimizer states (Adam's; SGD's momentum is one)


def _in_flight(config: schema.Config) -> int:
    """Trials of a round trained at once, each with its own model (point/pool.py)."""
    from spectral_sweep.point.executor import memory_in_flight

    return memory_in_flight(config.search, config.device) if str(config.search.method) == "adaptive" else 1


def _check_fits_in_memory(parameters: int, device: str, in_flight: int = 1) -> None:
    """A model whose weights, gradients and optimizer state alone (one copy per trial in flight)
    pass the device's memory cannot train there: refused from its parameter count on meta, before
    any folder (activations not counted). The memory is the device's whole (the machine's RAM),
    not what is free now: a refusal must hold whatever else runs."""
    total, where = device_memory(device)
    one = parameters * BYTES_PER_PARAMETER
    if one > total:
        raise UsageError(f"the model has {parameters:.3g} parameters: weights, gradients and optimizer state "
                         f"alone need {one / 2**30:.0f} GiB, more than the {total / 2**30:.0f} GiB of {where}; "
                         "lower model.width")
    if one * in_flight > total:
        raise UsageError(f"{in_flight} trials in flight, each with a model of {parameters:.3g} parameters, need "
                         f"{one * in_flight / 2**30:.0f} GiB for weights, gradients and optimizer state alone, more "
                         f"than the {total / 2**30:.0f} GiB of {where}; set search.parallel=1 or lower model.width")


def _check_executor(search) -> None:
    """search.executor=ray needs Ray (the ``ray`` extra): refused here, before any folder, not in the first round."""
    from spectral_sweep.point.executor import uses_ray
    from spectral_sweep.point.ray_pool import answers, available

    if uses_ray(search) and not available():
        raise UsageError("search.executor=ray needs Ray, which is not installed: pip install 'spectral-sweep[ray]' "
                         "(or search.executor=local)")
    if uses_ray(search) and search.ray_address and not answers(search.ray_address):
        raise UsageError(f"search.ray_address={search.ray_address}: nothing answers there; start the cluster "
                         "(ray start --head) or fix the address")


def device_memory(device: str) -> tuple[int, str]:
    """(bytes, name) of the memory a job on ``device`` trains in: the GPU's, else the machine's RAM."""
    import torch

    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        index = int(device.partition(":")[2] or 0)
        return torch.cuda.get_device_properties(index).total_memory, f"cuda:{index}"
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "this machine"


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
