"""Faults with trials in flight, planted for real: a trial worker killed under its trial, SIGTERM
on the command, the command killed by -9 with its workers running (issue 33, kinds 1 and 2)."""

import faulthandler
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_cli import TINY

from spectral_sweep.errors import WorkerLost
from spectral_sweep.point.pool import Pool
from spectral_sweep.trial import train  # noqa: F401  (imported once here, not again in each forked worker)


def alive(pid: int) -> bool:
    """Running, not a zombie left for a reaper that may never come (a container's init)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in "ZX"


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def wait_for(condition, seconds: float, every: float = 0.05):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    return condition()


# --- the pool: a worker lost under a trial ---------------------------------------------------

def doomed_trial(marks: Path):
    """Trial 0 waits, with its pid on disk, until the test kills its worker (at most 20 s); the
    others return at once. Each attempt leaves a file, so the test sees the retry's pid."""
    def work(i: int):
        (marks / f"{i}.{time.monotonic_ns()}.{os.getpid()}").touch()
        if i == 0 and not (marks / "spare").exists():
            time.sleep(20)
        return i, os.getpid()
    return work


def attempts(marks: Path, i: int) -> list[int]:
    files = sorted(marks.glob(f"{i}.*"), key=lambda p: int(p.name.split(".")[1]))
    return [int(p.name.split(".")[2]) for p in files]


def kill_attempts(marks: Path, sig: int, times: int, then_spare: bool = False) -> threading.Thread:
    """Kill the worker of trial 0's next ``times`` attempts with ``sig``, as a person or the kernel would."""
    def run():
        for n in range(1, times + 1):
            pids = wait_for(lambda n=n: len(attempts(marks, 0)) >= n and attempts(marks, 0), 10)
            os.kill(pids[n - 1], sig)
        if then_spare:
            (marks / "spare").touch()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_worker_killed_under_its_trial_is_replaced_and_the_trial_runs_again(tmp_path, sig):
    pool = Pool(doomed_trial(tmp_path), 2)
    try:
        killer = kill_attempts(tmp_path, sig, times=1, then_spare=True)
        began = time.monotonic()
        with pytest.warns(UserWarning, match=f"was killed by {signal.Signals(sig).name} under a trial") as said:
            results = pool.map([(0,), (1,), (2,)])
        killer.join()
        took = time.monotonic() - began
    finally:
        pool.close()
    first, retry = attempts(tmp_path, 0)
    assert [i for i, _ in results] == [0, 1, 2] and results[0][1] == retry != first    # a fresh worker
    assert not alive(first) and f"trial worker {first} " in str(said[0].message)
    assert "runs again in a fresh worker" in str(said[0].message)
    assert took < 5, f"the lost worker was noticed after {took:.1f} s"


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_trial_that_loses_its_worker_twice_fails_with_one_line_naming_both(tmp_path, sig):
    pool = Pool(doomed_trial(tmp_path), 2)
    try:
        killer = kill_attempts(tmp_path, sig, times=2)
        began = time.monotonic()
        with pytest.warns(UserWarning), pytest.raises(WorkerLost) as lost:
            pool.map([(0,), (1,)])
        took = time.monotonic() - began
        killer.join()
    finally:
        pool.close()
    first, second = attempts(tmp_path, 0)
    message = str(lost.value)
    assert "\n" not in message and message.startswith("a trial lost its worker twice")
    assert f"trial worker {first} was killed by {signal.Signals(sig).name}" in message
    assert f"then trial worker {second} was killed by {signal.Signals(sig).name}" in message
    assert "likely " + ("out of memory" if sig == signal.SIGKILL else "something told it to stop") in message
    assert took < 8


def self_destructing(how: str):
    def work(i: int):
        if i == 0:
            faulthandler.disable()   # pytest's, inherited by the fork: a real worker prints no dump
            if how == "segfault":
                os.kill(os.getpid(), signal.SIGSEGV)
            os._exit(3)
        return i
    return work


@pytest.mark.parametrize("how, says", [("segfault", "killed by SIGSEGV, then trial worker"),
                                       ("exit", "exited with code 3, then trial worker")])
def test_a_worker_that_dies_by_its_own_hand_is_named_with_its_likely_cause(how, says):
    pool = Pool(self_destructing(how), 2)
    try:
        with pytest.warns(UserWarning), pytest.raises(WorkerLost) as lost:
            pool.map([(0,), (1,)])
    finally:
        pool.close()
    assert says in str(lost.value)
    assert ("a crash in native code" if how == "segfault" else "the trial's code ended its process") in str(lost.value)


def failing(i: int):
    if i == 1:
        raise OSError(28, "No space left on device")   # an OSError from a trial is the trial's, not a lost pipe
    return i


def test_an_error_in_a_trial_reaches_the_parent_with_the_workers_traceback():
    pool = Pool(failing, 2)
    try:
        with pytest.raises(OSError, match="No space left") as raised:
            pool.map([(0,), (1,)])
        assert "in failing" in str(raised.value.__cause__) and pool.lost == []
        assert pool.map([(0,), (2,)]) == [0, 2]     # the pool still works
    finally:
        pool.close()


class _SignalAtBirth:
    """Sends a fresh worker ``sig`` in its first instants, before its own code runs (multiprocessing's
    after-fork hooks run before the target): the pool closing on a worker just forked, or a Ctrl-C
    to the process group as it forks. Registered while this object lives."""
    def __init__(self, sig: int):
        import multiprocessing.util
        self.sig = sig
        multiprocessing.util.register_after_fork(self, lambda me: os.kill(os.getpid(), me.sig))


def quiet(i: int):
    return i


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_in_a_workers_first_instants_waits_for_its_own_handlers(capfd, sig):
    """The parent's handlers (cli._terminate raises, SIGINT raises KeyboardInterrupt) must never run in
    a worker: a SIGTERM there printed the parent's traceback from inside threading's after-fork
    code (a CI run). Held across the fork, SIGTERM kills the worker silently, SIGINT is ignored."""
    from spectral_sweep import cli
    previous = signal.signal(signal.SIGTERM, cli._terminate)
    hook = _SignalAtBirth(sig)
    try:
        pool = Pool(quiet, 1)
    finally:
        del hook
        signal.signal(signal.SIGTERM, previous)
    try:
        worker = pool.workers[0].proc
        if sig == signal.SIGTERM:
            worker.join(10)
            assert worker.exitcode == -signal.SIGTERM
        else:
            assert pool.map([(3,)]) == [3] and pool.lost == []
    finally:
        pool.close()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Terminated" not in err and "KeyboardInterrupt" not in err, err


# --- the command: SIGTERM, and kill -9 with workers running ---------------------------------

LONG = [*TINY, "train.steps=100000", "train.channels_last=false", "batch=16", "search.parallel=2"]


def start(tmp_path: Path, *args, stderr=subprocess.PIPE) -> subprocess.Popen:
    """The command in a session of its own (as a terminal or a scheduler starts it), SIGINT at its default."""
    return subprocess.Popen([sys.executable, "-m", "spectral_sweep.cli", *LONG, *args, f"out_dir={tmp_path}",
                             "name=f"], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=stderr, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def said(stderr: str) -> list[str]:
    """What the command said, less the plan and timing lines it says first."""
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("spectral-sweep: plan:")
            and ": timing " not in line]


ENDINGS = {signal.SIGTERM: (143, "spectral-sweep: error: terminated (SIGTERM); rerun the same command to resume"),
           signal.SIGINT: (130, "spectral-sweep: error: interrupted; rerun the same command to resume")}


@pytest.mark.parametrize("sig, to, parallel", [
    (signal.SIGTERM, "main", 2), (signal.SIGTERM, "main", 1),
    (signal.SIGTERM, "group", 2),   # a scheduler's scancel or timeout: every process of the job at once
    (signal.SIGINT, "group", 2),    # Ctrl-C at a terminal
])
def test_sigterm_and_ctrl_c_are_one_line_and_leave_no_worker(tmp_path, sig, to, parallel):
    proc = start(tmp_path, f"search.parallel={parallel}")
    started = wait_for(lambda: len(children(proc.pid)) >= parallel if parallel > 1
                       else list(tmp_path.rglob("config.json")), 60, every=0.1)
    assert started and proc.poll() is None
    time.sleep(0.5)                                        # inside the trials' steps
    workers = children(proc.pid)
    assert len(workers) == (parallel if parallel > 1 else 0)
    os.killpg(proc.pid, sig) if to == "group" else proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=30)
    code, line = ENDINGS[sig]
    assert proc.returncode == code, stderr
    assert said(stderr) == [line], stderr                 # not a word from the workers
    assert not [pid for pid in workers if alive(pid)]


def test_workers_of_a_parent_killed_by_minus_9_exit_at_once_and_silently(tmp_path):
    log = (tmp_path / "stderr.txt").open("w")
    proc = start(tmp_path, stderr=log)
    workers = wait_for(lambda: len(children(proc.pid)) >= 2 and children(proc.pid), 60, every=0.1)
    assert workers and proc.poll() is None
    time.sleep(0.5)
    before = (tmp_path / "stderr.txt").read_text()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    gone = wait_for(lambda: not [pid for pid in workers if alive(pid)], 3)
    log.close()
    assert gone, "workers outlived their parent"
    time.sleep(0.3)
    assert (tmp_path / "stderr.txt").read_text() == before     # not a word from the workers


def test_the_command_survives_a_worker_killed_under_its_trial(tmp_path):
    """The issue's case: kill -9 a worker of a running sweep. Before, the command hung for good."""
    args = [*TINY, "train.steps=24", "train.channels_last=false", "batch=16", "search.parallel=2",
            "search.max_trials=2", f"out_dir={tmp_path}", "name=w"]
    proc = subprocess.Popen([sys.executable, "-m", "spectral_sweep.cli", *args], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    workers = wait_for(lambda: len(children(proc.pid)) >= 2 and children(proc.pid), 60, every=0.02)
    assert workers, "no workers started"
    os.kill(workers[0], signal.SIGKILL)                 # the first round has just been handed out
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    said = [line for line in stderr.splitlines() if f"trial worker {workers[0]} was killed" in line]
    assert len(said) == 1 and said[0].startswith(f"spectral-sweep: warning: trial worker {workers[0]} was killed by "
                                                 "SIGKILL under a trial, likely out of memory"), stderr
    assert "warnings.warn" not in stderr and "UserWarning" not in stderr   # one line, not Python's two
    (record,) = tmp_path.rglob("record.json")
    assert len(json.loads(record.read_text())["trials"]) == 2


def test_the_command_stops_with_one_line_when_a_trial_loses_two_workers(tmp_path):
    """Both workers killed, then both of their successors: each trial lost twice. Exit 1, one error
    line naming the workers, the signal and the likely cause, no traceback, no worker left."""
    proc = start(tmp_path)
    first = wait_for(lambda: len(children(proc.pid)) >= 2 and children(proc.pid), 60, every=0.1)
    assert first
    time.sleep(0.3)
    for pid in first:
        os.kill(pid, signal.SIGKILL)
    fresh = wait_for(lambda: len(set(children(proc.pid)) - set(first)) >= 2 and children(proc.pid), 20)
    time.sleep(0.3)
    for pid in fresh:
        os.kill(pid, signal.SIGKILL)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 1, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("spectral-sweep: error:")]
    assert len(errors) == 1 and "Traceback" not in stderr
    assert "a trial lost its worker twice: trial worker" in errors[0] and "killed by SIGKILL" in errors[0]
    assert "likely out of memory" in errors[0] and "search.parallel=1" in errors[0]
    assert not [pid for pid in first + fresh if alive(pid)] and not children(proc.pid)
