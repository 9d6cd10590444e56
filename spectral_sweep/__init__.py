"""spectral-sweep: learning rate as a function of batch size, measured and explained.

The public face, for use from Python (each name loads its module, and torch, on first use, so the
command line starts fast)::

    from spectral_sweep import sweep                          # a whole sweep, as the CLI runs it
    from spectral_sweep import compose, run_point            # a sweep point, as the CLI runs it
    from spectral_sweep import find_edges, find_max_lr        # the lr searches, on any trial function
    from spectral_sweep import load_records, fit_power_law    # a finished sweep, and its law
    from spectral_sweep import lanczos, slq_density, hessian_extremes   # curvature
"""

from importlib import import_module

_PUBLIC = {
    "sweep": "api", "compose": "config", "Config": "config",
    "run_point": "point.run",
    "find_max_lr": "search.bisect", "grid_search": "search.bisect", "find_edges": "search.adaptive",
    "fit_edge": "search.edge",
    "load_records": "point.store", "JobRecord": "point.record", "TrialRecord": "trial.record",
    "fit_power_law": "theory", "stability_limit": "theory",
    "lanczos": "curvature", "slq_density": "curvature", "hessian_extremes": "curvature",
    "write_report": "report",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'spectral_sweep' has no attribute {name!r}")
    return getattr(import_module(f".{_PUBLIC[name]}", __name__), name)
