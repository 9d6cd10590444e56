"""The life of one forked trial worker (point/pool.py): take a trial, run it, send its result back.

A worker is the parent's to stop, and dies with it. Ctrl-C and SIGTERM are the parent's to handle
(it stops the workers itself), so a worker ignores SIGINT and dies at once on SIGTERM, without the
parent's Python handlers that it inherited from the fork. If the parent dies, even by ``kill -9``,
the worker exits at once and silently: on Linux the kernel sends it SIGKILL (PR_SET_PDEATHSIG);
elsewhere a thread checks the parent twice a second. A pipe to a dead parent ends the worker
without a traceback.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable

PR_SET_PDEATHSIG = 1   # linux/prctl.h


def serve(conn, work: Callable, threads: int, steps, slot: int, parent: int) -> None:
    """The worker's main loop: ``(i, args)`` in, ``(i, True, result)`` or ``(i, False, error)`` out."""
    try:
        _follow_parent(parent)
        _start(threads, steps, slot)
        while True:
            i, args = conn.recv()
            try:
                reply = (i, True, work(*args))
            except Exception as e:   # the parent raises it, with this traceback as its cause
                reply = (i, False, _portable(e))
            _send(conn, reply)
    except (EOFError, OSError):   # the parent closed the pipe or is gone: nothing to say to anyone
        pass
    finally:
        os._exit(0)   # never the parent's atexit handlers, never a traceback


def _send(conn, reply: tuple) -> None:
    try:
        conn.send(reply)
    except (OSError, EOFError):
        raise
    except Exception as e:   # a result that does not pickle becomes the trial's error, not a lost worker
        conn.send((reply[0], False, _portable(RuntimeError(f"the trial's result could not be sent back: {e}"))))


def _follow_parent(parent: int) -> None:
    """Die with the parent: the kernel's signal on Linux, else a thread that polls ``getppid``."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):   # held since the fork (pool._hold_stop_signals): now ours to take
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    if not _death_signal():
        threading.Thread(target=_watch, args=(parent,), daemon=True).start()
    if os.getppid() != parent:   # the parent died before the signal was asked for
        os._exit(0)


def _death_signal() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def _start(threads: int, steps, slot: int) -> None:
    """The worker's share of threads, and its steps counted where the parent's bar reads them."""
    import torch

    from spectral_sweep.trial import train

    torch.set_num_threads(threads)

    def count(n: int) -> None:
        steps[slot] += n   # this worker is the slot's only writer: no lock a kill could leave held

    train.on_steps = count


def _portable(error: Exception) -> Exception:
    """The error as the parent can unpickle it, with the worker's traceback attached as text."""
    import pickle

    text = "".join(traceback.format_exception(error))
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        error = RuntimeError(f"{type(error).__name__}: {error}")
    error.remote_traceback = text
    return error
