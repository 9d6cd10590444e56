"""search.executor=ray (issue 31), for real on a local Ray instance: the same records as the forked pool
at the same K and threads, a Ray worker killed (-9) under its trial, Ctrl-C and SIGTERM with the
job's own instance, and the refusal where Ray is not installed.

One Ray instance (about 4 s to start) serves the module, in this process; the signal tests start the
command in its own process, which starts its own instance, as a user's job does. Every instance
lives under a short folder of its own (RAY_TMPDIR), never the machine's /tmp/ray.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
from test_cli import TINY
from test_faults_in_flight import alive

ray = pytest.importorskip("ray")   # in the test extra; a bare install skips these

from spectral_sweep import preflight  # noqa: E402
from spectral_sweep.errors import WorkerLost  # noqa: E402
from spectral_sweep.point import ray_pool  # noqa: E402
from spectral_sweep.point.run import run_point  # noqa: E402

# K = 2 trials of one thread each, the memory format pinned (auto times it, and may choose otherwise)
SMALL = [*TINY, "train.channels_last=false", "batch=16", "search.max_trials=4", "search.parallel=2"]


@pytest.fixture(scope="module")
def forked_first(tmp_path_factory):
    """A point run with the forked pool, here, before Ray's threads exist in this process."""
    out = tmp_path_factory.mktemp("local")
    (record,) = in_process([*SMALL, f"out_dir={out}", "name=local"])
    return record


@pytest.fixture(scope="module")
def cluster(forked_first):
    """This process's Ray: a local instance of 2 CPUs under a short folder of its own (after the
    forked pool's run, which forks this process)."""
    saved = {k: os.environ.get(k) for k in ("RAY_TMPDIR", "RAY_ADDRESS", "PYTHONPATH")}
    os.environ["RAY_TMPDIR"] = folder = short_folder()
    os.environ.pop("RAY_ADDRESS", None)
    ray_pool.connect(None, cpus=2)
    try:
        yield
    finally:
        ray.shutdown()
        ray_pool._own_instance = False
        shutil.rmtree(folder, ignore_errors=True)
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def short_folder() -> str:
    """A folder of its own for a Ray instance, under /tmp: its socket paths must stay short."""
    return tempfile.mkdtemp(prefix="rs", dir="/tmp")


def in_process(args: list[str]):
    """The command's jobs run here (as api.sweep does), so they use this process's Ray."""
    plan = preflight.check_command(args)
    return [run_point(job.config, plan.sweep_dir / job.folder, plan.sweep_dir, model_label=job.label,
                      job_num=n, variant=job.variant) for n, job in enumerate(plan.jobs)]


def trials_of(record: dict) -> list[dict]:
    """Every field of every trial but its timing."""
    return [{k: v for k, v in t.items() if k not in ("seconds", "images_per_s")} for t in record["trials"]]


def test_ray_writes_the_same_records_as_the_forked_pool(tmp_path, forked_first, cluster):
    (theirs,) = in_process([*SMALL, "search.executor=ray", f"out_dir={tmp_path}", "name=ray"])
    ours = json.loads(Path(forked_first.record_path).read_text())
    assert ours["in_flight"] == theirs.in_flight == 2 and len(ours["trials"]) >= 2
    assert trials_of(ours) == trials_of(json.loads(Path(theirs.record_path).read_text()))
    assert ours["lr_max"] == theirs.lr_max and ours["lr_blowup"] == theirs.lr_blowup
    files = [sorted(p.name for p in (Path(r.record_path).parent / "trials").glob("*.json"))
             for r in (forked_first, theirs)]
    assert files[0] == files[1]   # the same trial cache, file for file


def ray_trials(grandparent: int) -> list[int]:
    """Ray workers of ``grandparent``'s instance (raylet's children) running a trial now."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            title = (entry / "cmdline").read_bytes().split(b"\0")[0]
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            raylet = int((Path("/proc") / str(parent) / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if title.startswith(b"ray::spectral-sweep-trial") and raylet == grandparent:
            found.append(int(entry.name))
    return found


def test_a_ray_worker_killed_under_its_trial_is_run_again_then_stops_the_job_in_one_line(tmp_path, cluster,
                                                                                        monkeypatch):
    """Round two's trials lose their Ray workers to kill -9, and their retries too: the first loss is
    retried (a warning), the second stops the job with WorkerLost, one line; round one's finished
    trials stay as they were, and the rerun resumes from them."""
    args = [*SMALL, "train.steps=40", "search.executor=ray", f"out_dir={tmp_path}", "name=k"]
    rounds, original = [], ray_pool.RayPool.map

    def counted(self, *a, **kw):
        rounds.append(time.monotonic())
        return original(self, *a, **kw)

    monkeypatch.setattr(ray_pool.RayPool, "map", counted)
    stop, killed = threading.Event(), []

    def killer():
        while len(rounds) < 2 and not stop.is_set():
            time.sleep(0.02)
        while not stop.is_set():
            for pid in ray_trials(os.getpid()):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.02)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        with pytest.warns(UserWarning, match="Ray worker of a trial was lost") as said, \
                pytest.raises(WorkerLost) as lost:
            in_process(args)
    finally:
        stop.set()
        thread.join()
    message = str(lost.value)
    assert "\n" not in message and message.startswith("a trial lost its Ray worker twice")
    assert "Finished trials are kept" in message and "runs again" in str(said[0].message) and len(killed) >= 2
    (trials,) = list(tmp_path.glob("k/*/trials"))
    kept = {p: p.read_bytes() for p in trials.glob("*.json")}
    assert len(kept) == 2   # round one's
    monkeypatch.setattr(ray_pool.RayPool, "map", original)
    (record,) = in_process(args)
    assert record.trials_reused == 2 and len(record.trials) > 2
    assert all(p.read_bytes() == data for p, data in kept.items())   # untouched by the failure and the rerun


def ours(marker: str) -> list[int]:
    """Live processes, Ray's included, that carry ``marker`` in their environment (the test's command's)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker.encode() in environ and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


@pytest.mark.parametrize("how, code, says", [("ctrl-c", 130, "interrupted; rerun the same command to resume"),
                                             ("sigterm", 143, "terminated (SIGTERM); rerun the same command")])
def test_a_stop_with_ray_is_one_line_and_leaves_no_ray_process(tmp_path, request, how, code, says):
    """Stopped mid-trial: Ctrl-C (to the process group, as a terminal sends it) on a command with its
    own local instance, which ends with it; SIGTERM (a scheduler) on a command that joined a running
    cluster ($RAY_ADDRESS: this module's), whose workers stop running its trials."""
    marker = f"SPECTRAL_SWEEP_RAY_TEST={uuid.uuid4().hex}"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_TMPDIR=short_folder(), **dict([marker.split("=")]))
    if how == "sigterm":
        request.getfixturevalue("cluster")
        env["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
    raylet_parent = os.getpid() if how == "sigterm" else None
    proc = subprocess.Popen([sys.executable, "-m", "spectral_sweep.cli", *SMALL, "train.steps=400",
                             "search.executor=ray", f"out_dir={tmp_path}"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            # as a terminal's command gets it: a suite started in the background (`cmd &`)
                            # runs with SIGINT ignored, and the command would inherit that (as in test_cli)
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    raylet_parent = raylet_parent or proc.pid
    try:
        deadline = time.monotonic() + 60
        while not ray_trials(raylet_parent) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert ray_trials(raylet_parent), "no trial started on Ray"
        if how == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == code, err
    assert lines[-1].startswith(f"spectral-sweep: error: {says}") and "Traceback" not in err
    assert all(line.startswith("spectral-sweep: ") for line in lines), err   # the plan, then the one line

    def left():
        return ours(marker.split("=")[1]) + ray_trials(raylet_parent)
    deadline = time.monotonic() + 10
    while left() and time.monotonic() < deadline:   # the last of them exiting
        time.sleep(0.1)
    assert not left(), [Path(f"/proc/{p}/cmdline").read_bytes()[:80] for p in left()]
    shutil.rmtree(env["RAY_TMPDIR"], ignore_errors=True)


def test_executor_ray_without_ray_is_one_line_and_writes_nothing(tmp_path):
    hide = ("import sys; sys.modules['ray'] = None; sys.argv[0] = 'spectral-sweep'; "
            "from spectral_sweep.cli import main; main()")
    out = subprocess.run([sys.executable, "-c", hide, *TINY, "search.executor=ray", f"out_dir={tmp_path / 'o'}"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "spectral-sweep: error: search.executor=ray needs Ray, which is not installed: "
        "pip install 'spectral-sweep[ray]' (or search.executor=local)"]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("cpus, gpus, parallel, on_gpu, share, own, k", [
    (16, 1, None, True, 0.25, False, 4),     # four trials on the one GPU: a GPU user's auto K is no longer 1
    (64, 8, None, True, 0.5, False, 16),     # a cluster's GPUs / share
    (64, 8, 6, True, 0.5, False, 6),         # capped by search.parallel
    (64, 1, None, True, 3.0, False, 1),      # at least one
    (2, 0, None, False, 0.0, True, 2),       # CPU, the job's own instance: the forked pool's auto
    (48, 0, None, False, 0.0, False, 48),    # CPU, a cluster joined: its CPUs
    (2, 0, 3, False, 0.0, True, 3),          # CPU: trials ask CPUs / K, so search.parallel is K
])
def test_auto_k_comes_from_the_clusters_resources(monkeypatch, cpus, gpus, parallel, on_gpu, share, own, k):
    monkeypatch.setattr(ray_pool, "resources", lambda: (float(cpus), float(gpus)))
    monkeypatch.setattr(ray_pool, "_own_instance", own)
    assert ray_pool.in_flight(parallel, on_gpu, share, local_auto=2) == k


def test_a_trials_share_of_cpus_is_what_ray_accepts():
    assert [ray_pool.share(t, k) for t, k in ((1, 2), (2, 2), (16, 3), (1, 3))] == [0.5, 1.0, 5.0, 0.3333]


def test_an_address_where_nothing_answers_is_told_at_once():
    import socket
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        assert ray_pool.answers(f"127.0.0.1:{port}") and ray_pool.answers(f"ray://127.0.0.1:{port}")
    assert not ray_pool.answers(f"127.0.0.1:{port}")
    assert ray_pool.answers("auto")   # not an address: Ray decides
