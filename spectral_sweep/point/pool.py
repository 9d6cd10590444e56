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

A worker that dies under its trial (the kernel's out-of-memory killer, a ``kill``, a crash in native
code) is seen at once: the pool waits on each busy worker's pipe and its process together. It
starts a fresh worker in its place, and the lost trial runs again there, resuming from its epoch
checkpoint if it wrote one; a trial that loses its worker twice stops the job with ``WorkerLost``,
one line naming both workers, the signal and its likely cause. Worker side: point/worker.py.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import wait

import torch

from spectral_sweep.errors import WorkerLost
from spectral_sweep.point.worker import serve

MAX_AUTO = 4
POLL_SECONDS = 0.5   # how often the round's bar moves; a lost worker wakes the pool at once


def trials_in_flight(parallel: int | None, device: str) -> int:
    """K, the trials of one round run at once (``parallel``, else auto: see the module doc)."""
    if multiprocessing.current_process().daemon:   # a launcher's daemonic worker may not fork children
        return 1
    if parallel is not None:
        return int(parallel)
    if str(device).startswith("cuda") or str(device) == "mps":
        return 1
    return max(1, min(MAX_AUTO, torch.get_num_threads()))


class RemoteTraceback(Exception):
    """The worker's traceback, as the cause of the error the parent raises."""

    def __str__(self) -> str:
        return self.args[0]


@dataclass(eq=False)
class _Worker:
    proc: multiprocessing.Process
    conn: object                      # the parent's end of the worker's pipe
    slot: int                         # its counter of steps in Pool.steps
    task: tuple[int, tuple] | None = None   # (index in the round, args) in flight


class Pool:
    """K forked workers that each run ``work(*args)``; ``map`` keeps the order of its arguments."""

    def __init__(self, work: Callable, k: int):
        self.work, self.k = work, k
        self.threads = max(1, torch.get_num_threads() // k)
        self.context = multiprocessing.get_context("fork")
        self.steps = self.context.RawArray("q", k)   # steps trained by each worker slot, for the round's bar
        self.lost: list[str] = []                    # the workers lost so far, as ``lost_worker`` says them
        self.workers = [self._spawn(slot) for slot in range(k)]

    def _spawn(self, slot: int) -> _Worker:
        ours, theirs = self.context.Pipe()
        proc = self.context.Process(target=serve, args=(theirs, self.work, self.threads, self.steps, slot, os.getpid()),
                                    name=f"trial-worker-{slot}", daemon=True)
        held = _hold_stop_signals()   # until the worker has its own handlers (worker.py), the parent's would run
        try:
            proc.start()
        finally:
            _release_stop_signals(held)
        theirs.close()
        return _Worker(proc, ours, slot)

    def map(self, args: list[tuple], bar=None) -> list:
        """``work(*a)`` for each ``a``, in order; ``bar`` (a tqdm) advances with the workers' steps."""
        todo, results, losses = deque(enumerate(args)), {}, {}
        start = sum(self.steps)
        while len(results) < len(args):
            self._hand_out(todo)
            busy = [w for w in self.workers if w.task is not None]
            ready = set(wait([w.conn for w in busy] + [w.proc.sentinel for w in busy], timeout=POLL_SECONDS))
            for w in busy:
                if w.conn in ready or w.proc.sentinel in ready:
                    self._collect(w, results, todo, losses)
            if bar is not None:
                bar.update(sum(self.steps) - start - bar.n)
        return [results[i] for i in range(len(args))]

    def _hand_out(self, todo: deque) -> None:
        for i, w in enumerate(self.workers):
            if w.task is None and todo:
                task = todo.popleft()
                try:
                    w.conn.send(task)
                except OSError:   # it died idle: its successor takes the task
                    todo.appendleft(task)
                    self.workers[i] = self._replace(w)
                    continue
                w.task = task

    def _collect(self, w: _Worker, results: dict, todo: deque, losses: dict) -> None:
        """A busy worker that spoke or died: its result, its error raised here, or its task back in line."""
        reply = None
        try:
            if w.conn.poll():
                reply = w.conn.recv()
                w.task = None
        except (EOFError, OSError):   # it died mid-reply: the task is lost with it
            pass
        if reply is not None:
            i, ok, value = reply
            if not ok:
                raise value from RemoteTraceback(getattr(value, "remote_traceback", ""))
            results[i] = value
        if w.proc.is_alive() and w.task is None:
            return
        task, slot = w.task, next(i for i, x in enumerate(self.workers) if x is w)
        self.workers[slot] = self._replace(w)
        if task is None:
            return
        lost = lost_worker(w.proc.pid, w.proc.exitcode)
        self.lost.append(lost)
        if task[0] in losses:
            raise WorkerLost(f"a trial lost its worker twice: {losses[task[0]]}, then {lost} running it again; "
                             f"likely {likely_cause(w.proc.exitcode)}. Finished trials are kept")
        losses[task[0]] = lost
        warnings.warn(f"{lost} under a trial, likely {likely_cause(w.proc.exitcode)}. Its trial runs again in a "
                      f"fresh worker", stacklevel=3)
        todo.appendleft(task)

    def _replace(self, w: _Worker) -> _Worker:
        _stop(w)
        return self._spawn(w.slot)

    def close(self) -> None:
        for w in self.workers:
            _stop(w)
        self.workers = []


STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def _hold_stop_signals():
    """Block SIGTERM and SIGINT across the fork: a forked worker starts with the parent's Python
    handlers, and one of those signals in its first instants (the pool closing at once, a Ctrl-C to
    the process group) would raise the parent's exception there and print its traceback. Blocked, it
    waits until the worker has its own handlers and unblocks it (worker._follow_parent)."""
    if hasattr(signal, "pthread_sigmask"):
        return signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    return None


def _release_stop_signals(held) -> None:
    if held is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _stop(w: _Worker) -> None:
    """The worker gone, its pipe closed: SIGTERM (a worker dies at once on it), SIGKILL if it lingers."""
    if w.proc.is_alive():
        w.proc.terminate()
    w.proc.join(2)
    if w.proc.is_alive():
        w.proc.kill()
        w.proc.join()
    w.conn.close()


def lost_worker(pid: int, exitcode: int | None) -> str:
    """How a worker ended, as a person reads it: 'trial worker 123 was killed by SIGKILL'."""
    if exitcode is not None and exitcode < 0:
        try:
            how = f"was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            how = f"was killed by signal {-exitcode}"
    else:
        how = f"exited with code {exitcode}"
    return f"trial worker {pid} {how}"


def likely_cause(exitcode: int | None) -> str:
    """The likely cause of a worker's end, and what to do about it."""
    fewer = "search.parallel=1 runs one trial at a time, in the job's own process"
    sig = -exitcode if exitcode is not None and exitcode < 0 else None
    if sig == signal.SIGKILL:
        return (f"out of memory: the kernel's out-of-memory killer sends SIGKILL (dmesg shows it), as does a kill -9; "
                f"{fewer}, or make trials smaller (train.micro_batch, a narrower model)")
    if sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT):
        return "something told it to stop: a kill, a scheduler or a time limit; rerun the command to resume"
    if sig in (signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGILL, signal.SIGFPE):
        return f"a crash in native code: torch, a driver or a compiled extension; {fewer}"
    return f"the trial's code ended its process (os._exit, or a signal it sent itself); {fewer}"
