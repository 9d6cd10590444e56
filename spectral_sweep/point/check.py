"""One job checked before any folder exists: its values, and its model and optimizer built on meta."""

from __future__ import annotations

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
    _check_dataset_target(config.dataset)


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
