"""A round's trials as Ray tasks (search.executor=ray): several trials on one GPU, across GPUs and hosts.

The same small face as the forked pool (point/pool.py): ``RayPool(work, k).map(args, bar)`` runs
``work(*a)`` for each ``a`` and returns the results in the order of ``args``, whichever task finished
first, so rounds stay synchronous and the records do not depend on timing; ``close`` cancels what is
still running. ``work`` (point/trials.KeepTrial: model builder, data, settings, trial cache) is put in
Ray's object store once per pool, and every task reads it there; each task writes its finished trial
into the trial cache itself, as a forked worker does, so a killed sweep keeps what finished.

A trial asks for ``search.gpus_per_trial`` GPUs on a GPU (0.25: four on one GPU) and its share of
the cluster's CPUs (``CPUs / K``; on a local instance, the job's threads / K), and trains on that
many threads. A task whose worker dies (the kernel's out-of-memory killer, a ``kill -9``, a node
lost) runs once more, resuming from its epoch checkpoint; a second loss stops the job with
``WorkerLost``, one line, as the forked pool does. An error inside the trial comes back as itself
with the task's traceback as its cause.

``connect`` joins a running cluster (``search.ray_address``, else ``$RAY_ADDRESS``, else the one
``ray start`` left on this node) or starts a local instance with the job's CPUs only, no dashboard,
quiet, which ends with the process. Its workers run at the job's own priority: Ray's default
(nice 15) made a trial 6x slower than a forked worker's on a machine that other processes share
(scripts/bench_gpu.py --quick --only ray). And it keeps the job's idle workers between rounds:
Ray's default kills a worker idle for 1 s beyond one per CPU, so with K above the job's threads
(two trials on one thread each) every round started a fresh worker that imported torch and read
the data again (4 workers for 5 rounds of 2 in a probe, 2 with this). Ray replaces the process's
SIGTERM handler when it starts; the command's own (cli.py: one line, exit 143) is put back.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import warnings
from collections.abc import Callable

from spectral_sweep.errors import UsageError, WorkerLost

POLL_SECONDS = 0.5
KEEP_IDLE_WORKERS_MS = 600_000   # a local instance keeps a job's idle workers 10 min (see the module doc)
_own_instance = False   # this process started the local instance it uses (else it joined a cluster)


def available() -> bool:
    """Ray is importable (the ``ray`` extra)."""
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def connect(address: str | None = None, cpus: int | None = None) -> None:
    """Ray ready in this process: the cluster at ``address`` or found, else a local instance of ``cpus`` CPUs."""
    import ray

    if ray.is_initialized():
        return
    found, source = _address(address)
    if found and not answers(found):
        if source.startswith("left by"):   # a cluster gone without `ray stop` (a reboot): not this job's problem
            warnings.warn(f"the Ray cluster `ray start` left at {found} does not answer; starting a local instance",
                          stacklevel=2)
            found = None
        else:
            raise UsageError(f"search.executor=ray: nothing answers at {found} ({source}); start the cluster "
                             "(ray start --head) or fix the address")
    quiet = dict(logging_level=logging.ERROR, log_to_driver=False, configure_logging=True)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        if found:
            ray.init(address=found, **quiet)
        else:
            _share_import_path()
            os.environ.setdefault("RAY_worker_niceness", "0")   # see the module doc
            os.environ.setdefault("RAY_idle_worker_killing_time_threshold_ms", str(KEEP_IDLE_WORKERS_MS))
            ray.init(address="local", num_cpus=cpus or 1, include_dashboard=False, **quiet)
            global _own_instance
            _own_instance = True
    except (ConnectionError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        where = f"reach the Ray cluster at {found} ({source})" if found else "start a local Ray instance"
        raise UsageError(f"search.executor=ray could not {where}: {first}") from None
    finally:
        if previous is not None and _main_thread():
            signal.signal(signal.SIGTERM, previous)


def _address(given: str | None) -> tuple[str | None, str]:
    """The cluster to join and where its address came from; (None, ...): start a local instance."""
    if given:
        return given, "search.ray_address"
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"], "$RAY_ADDRESS"
    found = _started_here()
    return found, "left by `ray start` on this node; `ray stop` forgets it"


def answers(address: str, seconds: float = 3.0) -> bool:
    """Something listens at ``address`` (``host:port`` or ``ray://host:port``); True where it is no
    such address (``auto``): Ray decides. Ray itself would retry a dead address for minutes."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return True
    try:
        socket.create_connection((host, int(port)), timeout=seconds).close()
    except OSError:
        return False
    return True


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _started_here() -> str | None:
    """The address of the cluster ``ray start`` left on this node (Ray's own file), if any."""
    try:
        from ray._private.utils import read_ray_address
    except ImportError:   # Ray moved it: only search.ray_address and $RAY_ADDRESS find a cluster then
        return None
    return read_ray_address()


def _share_import_path() -> None:
    """A local instance's workers import what this process imports from outside the environment
    (the working folder, PYTHONPATH, a user's modules): they inherit its PYTHONPATH."""
    prefixes = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    own = [os.path.abspath(p or os.getcwd()) for p in sys.path]
    extra = [p for p in own if os.path.isdir(p) and not any(os.path.realpath(p).startswith(x) for x in prefixes)]
    known = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(extra + known))


def resources() -> tuple[float, float]:
    """(CPUs, GPUs) the cluster offers in all."""
    import ray

    total = ray.cluster_resources()
    return float(total.get("CPU", 0)), float(total.get("GPU", 0))


def in_flight(parallel: int | None, on_gpu: bool, gpus_per_trial: float, local_auto: int) -> int:
    """K. On a GPU, from the cluster's GPUs / ``gpus_per_trial``, capped by ``parallel``. On a CPU
    each trial asks CPUs / K, so K is ``parallel``, else on a local instance the local pool's auto
    (``local_auto``, one trial per thread up to 4), else the cluster's CPUs."""
    cpus, gpus = resources()
    if on_gpu:
        k = math.floor(gpus / gpus_per_trial + 1e-9)
        return max(1, min(k, parallel) if parallel is not None else k)
    if parallel is not None:
        return parallel
    return max(1, local_auto if _own_instance else math.floor(cpus))


def share(total: float, k: int) -> float:
    """A trial's share of ``total`` as Ray takes it: whole numbers above 1, 1/10,000ths below."""
    each = total / k
    return float(math.floor(each)) if each >= 1 else max(0.0001, math.floor(each * 10_000) / 10_000)


def _run(work: Callable, args: tuple, threads: int):
    """The task: the trial on its share of threads (the object store gave ``work``, data and all)."""
    import torch

    torch.set_num_threads(threads)
    return work(*args)


class RemoteTraceback(Exception):
    """The task's traceback, as the cause of the error the job raises."""

    def __str__(self) -> str:
        return self.args[0]


class RayPool:
    """K trials at once as Ray tasks; ``map`` keeps the order of its arguments (see the module doc)."""

    def __init__(self, work: Callable, k: int, gpus_per_trial: float = 0.0):
        import ray

        self.k = k
        cpus, _ = resources()
        cpu_share = share(cpus or 1, k)
        self.threads = max(1, math.floor(cpu_share))
        self.work = ray.put(work)   # once: every task of every round reads it from the object store
        self.task = ray.remote(_run).options(num_cpus=cpu_share, num_gpus=gpus_per_trial, max_retries=0,
                                             retry_exceptions=False, name="spectral-sweep-trial")
        self.running: dict = {}      # object ref -> index in the round
        self.lost: list[str] = []

    def map(self, args: list[tuple], bar=None) -> list:
        """``work(*a)`` for each ``a``, in order; ``bar`` advances as trials finish."""
        import ray

        results, losses = {}, {}
        self.running = {self._submit(a): i for i, a in enumerate(args)}
        each = (bar.total / len(args)) if bar is not None and bar.total and args else 0
        while self.running:
            ready = _wait(list(self.running))
            for ref in ready:
                i = self.running.pop(ref)
                try:
                    results[i] = ray.get(ref)
                except ray.exceptions.RayTaskError as e:   # the trial raised: its error, with its traceback
                    raise _cause(e) from RemoteTraceback(str(e))
                except ray.exceptions.RayError as e:       # its worker (or node) is gone
                    self._lost(i, args[i], e, losses)
                    continue
                if bar is not None:
                    bar.update(each)
        return [results[i] for i in range(len(args))]

    def _submit(self, a: tuple):
        return self.task.remote(self.work, a, self.threads)

    def _lost(self, i: int, a: tuple, error: Exception, losses: dict) -> None:
        lost = f"the Ray worker of a trial was lost ({type(error).__name__})"
        self.lost.append(lost)
        if i in losses:
            raise WorkerLost(f"a trial lost its Ray worker twice ({type(error).__name__}); likely out of memory "
                             "(the kernel's or Ray's out-of-memory killer, or a kill -9) or a node gone; "
                             "search.executor=local or a smaller search.parallel runs fewer at once. Finished "
                             "trials are kept")
        losses[i] = lost
        warnings.warn(f"{lost} under a trial, likely out of memory or a kill. Its trial runs again", stacklevel=3)
        self.running[self._submit(a)] = i

    def close(self) -> None:
        """Cancel what still runs (a Ctrl-C, an error in another trial): its worker is stopped."""
        import ray

        for ref in list(self.running):
            try:
                ray.cancel(ref, force=True)
            except Exception:   # already finished or gone: nothing to stop
                pass
        self.running = {}


def _wait(refs: list) -> list:
    """The refs of ``refs`` that finished, waiting at most ``POLL_SECONDS``. A signal handler's
    exception raised while Ray waits in its compiled code (cli.Terminated on SIGTERM) comes out of
    it as a SystemError around that exception: raised as itself, so the command ends as it should."""
    import ray

    try:
        return ray.wait(refs, num_returns=1, timeout=POLL_SECONDS)[0]
    except SystemError as e:
        inner = e.__cause__ or e.__context__
        if inner is not None and not isinstance(inner, Exception):
            raise inner from None
        raise


def _cause(error) -> Exception:
    """The exception the trial raised, out of Ray's wrapper (whose text holds the whole traceback)."""
    cause = getattr(error, "cause", None)
    return cause if isinstance(cause, BaseException) else RuntimeError(str(error).strip().splitlines()[-1])
