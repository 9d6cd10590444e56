"""Several trials in flight: how many, and the worker processes that run them.

A short trial of a small network cannot keep every core busy (Python overhead, small kernels), so
K trials at once, each on its share of the threads, finish a round sooner than K in a row: on a
2-core machine two 1-thread trials gave 1.8x the throughput of one 2-thread trial at B = 8 and
1.3x at B = 32-128 (VGG-11-BN at 1/8 width). ``auto`` on a CPU runs one trial per torch thread, at
most 4 (each with ``threads // K`` threads); on a GPU one, since processes sharing one device need
CUDA-aware start-up that a forked worker cannot have. ``search.parallel=K`` overrides it, except
inside a launcher's daemonic worker process, which may not start processes of its own (then 1).

The workers are forked from the job's process once per job, after the data are loaded, so they
share it without copying or pickling; each worker trains a trial and writes its record into the
trial cache itself (atomic), so a killed sweep keeps every trial that finished. Rounds are
synchronous: a round's results come back in the order the search proposed them.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable

import torch

MAX_AUTO = 4

_WORK: Callable | None = None   # the job's trial function, inherited by the forked workers


def trials_in_flight(parallel: int | None, device: str) -> int:
    """K, the trials of one round run at once (``parallel``, else auto: see the module doc)."""
    if multiprocessing.current_process().daemon:   # a launcher's daemonic worker may not fork children
        return 1
    if parallel is not None:
        return int(parallel)
    if str(device).startswith("cuda") or str(device) == "mps":
        return 1
    return max(1, min(MAX_AUTO, torch.get_num_threads()))


def _start_worker(threads: int, steps) -> None:
    from spectral_sweep.trial import train

    torch.set_num_threads(threads)

    def count(n: int) -> None:
        with steps.get_lock():
            steps.value += n

    train.on_steps = count


def _call(args):
    return _WORK(*args)


class Pool:
    """K forked workers that each run ``work(*args)``; ``map`` keeps the order of its arguments."""

    def __init__(self, work: Callable, k: int):
        global _WORK
        _WORK = work
        self.k = k
        threads = max(1, torch.get_num_threads() // k)
        context = multiprocessing.get_context("fork")
        self.steps = context.Value("q", 0)       # steps trained by the workers, for the round's bar
        self.pool = context.Pool(k, initializer=_start_worker, initargs=(threads, self.steps))

    def map(self, args: list[tuple], bar=None) -> list:
        """``work(*a)`` for each ``a``, in order; ``bar`` (a tqdm) advances with the workers' steps."""
        pending = self.pool.map_async(_call, args, chunksize=1)
        start = self.steps.value
        while not pending.ready():
            pending.wait(0.5)
            if bar is not None:
                bar.update(self.steps.value - start - bar.n)
        return pending.get()

    def close(self) -> None:
        self.pool.terminate()
        self.pool.join()
