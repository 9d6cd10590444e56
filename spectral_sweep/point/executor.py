"""What runs a round's trials in flight, chosen here and nowhere else: ``search.executor``.

``local`` (the default): forked workers on this machine's CPU, one trial at a time on a GPU
(point/pool.py). ``ray``: Ray tasks (point/ray_pool.py), so that a GPU runs several trials at
once (``search.gpus_per_trial``) and a cluster spreads them over its GPUs and hosts. Both keep
rounds synchronous and results in proposal order, and both write each finished trial into the
trial cache from the worker, so which one ran never shows in the records.
"""

from __future__ import annotations

import dataclasses
from functools import partial

from spectral_sweep.point.pool import trials_in_flight


def uses_ray(search) -> bool:
    return str(getattr(search, "executor", "local")) == "ray"


def _on_gpu(device: str) -> bool:
    return str(device).startswith("cuda")


def in_flight(search, device: str) -> int:
    """K, the trials of a round at once. ``local``: point/pool.trials_in_flight. ``ray``: from the
    resources of the cluster it joins or starts (point/ray_pool.in_flight), capped by ``search.parallel``."""
    if not uses_ray(search):
        return trials_in_flight(search.parallel, device)
    import torch

    from spectral_sweep.point import ray_pool

    ray_pool.connect(search.ray_address, cpus=torch.get_num_threads())
    return ray_pool.in_flight(search.parallel, _on_gpu(device), search.gpus_per_trial,
                              local_auto=trials_in_flight(None, "cpu"))


def planned_in_flight(search, device: str) -> str:
    """K as the plan line says it, before anything starts: Ray's auto is only known from the cluster."""
    if uses_ray(search):
        return f"{search.parallel if search.parallel is not None else 'auto'} (Ray)"
    return str(trials_in_flight(search.parallel, device))


def memory_in_flight(search, device: str) -> int:
    """Trials that may share one device's memory, for the check before any folder. Local: K on a
    CPU, one on a GPU. Ray: on a GPU the trials one GPU holds (1 / gpus_per_trial), on a CPU what
    ``search.parallel`` asks (auto is the cluster's business, and its trials may run elsewhere)."""
    on_gpu = _on_gpu(device) or (device == "auto" and _gpu_visible())
    if uses_ray(search):
        k = max(1, int(1 / search.gpus_per_trial + 1e-9)) if on_gpu else (search.parallel or 1)
        return min(k, search.parallel) if search.parallel is not None else k
    return 1 if on_gpu else trials_in_flight(search.parallel, device)


def _gpu_visible() -> bool:
    import torch

    return torch.cuda.is_available()


def pool_opener(search, device: str):
    """``(work, k) -> pool`` for the trial runner: the forked pool or Ray's, one face (map, close)."""
    if not uses_ray(search):
        from spectral_sweep.point.pool import Pool

        return Pool
    return partial(_ray_pool, gpus_per_trial=search.gpus_per_trial if _on_gpu(device) else 0.0)


def _ray_pool(work, k: int, gpus_per_trial: float):
    """Ray's pool; on a GPU each task trains on the GPU Ray gave it, the first it sees (``cuda``),
    whichever this job's own device is."""
    from spectral_sweep.point.ray_pool import RayPool

    if gpus_per_trial:
        work = dataclasses.replace(work, settings=dataclasses.replace(work.settings, device="cuda"))
    return RayPool(work, k, gpus_per_trial=gpus_per_trial)
