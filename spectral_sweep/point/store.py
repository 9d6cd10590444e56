"""Records on disk: one JSON file per finished job, one per finished trial, written so a crash loses none.

A sweep directory holds one job directory per sweep point; each finished job writes
``record.json`` there (a ``results.JobRecord``). Trials are cached beside it under
``trials/<key>.json`` (``results.TrialRecord``) as they finish, so a rerun of the same command
(same resolved config) reuses every finished trial and skips every finished job. Every write goes
to a fresh temporary file in the same directory and is renamed into place: readers see the old
file or the new one, never half of one, and two writers never share a temporary name.

``load_records`` turns a sweep back into ``JobRecord`` objects, whatever schema wrote them.
"""

import contextlib
import math
import os
import warnings
from collections.abc import Iterable
from pathlib import Path

try:
    import fcntl  # POSIX: file locks
except ImportError:   # elsewhere jobs are not locked
    fcntl = None

from spectral_sweep.files import CorruptRecord, open_no_follow, read_json, set_aside, write_json_atomic
from spectral_sweep.point.record import JobRecord
from spectral_sweep.trial.record import TrialRecord

RECORD_FILE = "record.json"
TRIALS_DIR = "trials"


@contextlib.contextmanager
def job_lock(job_dir: str | os.PathLike, on_wait=None):
    """Hold a job's folder for this process. A second process running the same job (the same
    command twice into one sweep) waits here, calling ``on_wait`` once, and then finds the job
    finished; a process that dies lets go at once (the OS drops its lock), so the next run takes
    over from its cached trials. Jobs of one sweep then run in the same order in every process,
    and a warm start sees the same finished neighbours whatever the timing."""
    path = Path(job_dir) / ".lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open_no_follow(path) as f:   # a link planted as .lock never makes a file outside the sweep
        if fcntl is not None:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_wait is not None:
                    on_wait()
                fcntl.flock(f, fcntl.LOCK_EX)
        yield


class TrialCache:
    """Finished trials of one job, keyed by a hash of (job config, lr); survives any crash.

    Each file carries its key (and its lr and seed): a file that is not the trial asked for (another
    lr's file copied over it) or holds numbers no trial makes is set aside as ``<key>.json.bad``
    with a warning naming it, and the trial is trained again."""

    REQUIRED = ("lr", "outcome")

    def __init__(self, job_dir: str | os.PathLike):
        self.dir = Path(job_dir) / TRIALS_DIR
        self.hits = 0

    def get(self, key: str, lr: float | None = None, seed: int | None = None) -> TrialRecord | None:
        path = self.dir / f"{key}.json"
        if not path.exists():
            return None
        try:
            result = TrialRecord.from_dict(read_json(path, self.REQUIRED))
            problem = _not_this_trial(result, key, lr, seed)
        except (CorruptRecord, TypeError, ValueError) as e:
            reason = str(e).removeprefix(f"{path}: ")
            warnings.warn(f"corrupt trial record {path}, set aside as {set_aside(path).name}; recomputing: {reason}",
                          stacklevel=2)
            return None
        if problem:
            warnings.warn(f"trial record {path} is not this trial's ({problem}); set aside as "
                          f"{set_aside(path).name}, recomputing", stacklevel=2)
            return None
        self.hits += 1
        return result

    def put(self, key: str, result: TrialRecord) -> None:
        write_json_atomic(self.dir / f"{key}.json", {**result.to_dict(), "key": key})

    def checkpoint(self, key: str) -> Path:
        """Where the unfinished trial ``key`` saves itself every epoch, to resume from."""
        return self.dir / f"{key}.pt"


def _not_this_trial(result: TrialRecord, key: str, lr: float | None, seed: int | None) -> str | None:
    """Why a trial file read under ``key`` is another trial's, or None (files before the key was
    written carry none: their lr and seed still tell)."""
    found = result.extra.pop("key", None)
    if found is not None and found != key:
        return f"it says key {found}, lr={result.lr:.4g}"
    if lr is not None and not math.isclose(result.lr, lr, rel_tol=1e-9):
        return f"it holds lr={result.lr:.4g}, not {lr:.4g}"
    if seed is not None and result.seed is not None and result.seed != seed:
        return f"it holds seed {result.seed}, not {seed}"
    return None


JOB_REQUIRED = ("model", "dataset", "optimizer", "batch_size", "trials")


def read_job_record(path: str | os.PathLike) -> JobRecord:
    """A job record file, whatever schema wrote it; ``CorruptRecord`` names a file that cannot be used."""
    data = read_json(path, JOB_REQUIRED)
    try:
        record = JobRecord.from_dict(data)
    except (TypeError, ValueError, KeyError, AttributeError) as e:   # wrong types count as corrupt too
        raise CorruptRecord(f"{path}: {e}") from e
    record.record_path = str(path)
    return record


def finished_job(job_dir: str | os.PathLike) -> JobRecord | None:
    """The finished record of a job directory, or None if the job has not finished."""
    path = Path(job_dir) / RECORD_FILE
    return read_job_record(path) if path.exists() else None


def write_job_record(job_dir: str | os.PathLike, record: JobRecord) -> Path:
    return write_json_atomic(Path(job_dir) / RECORD_FILE, record.to_dict())


def load_records(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[JobRecord]:
    """Every job record of the sweeps under ``paths``, each once, sorted for stable tables.

    A corrupt or partial record is named in a warning and left out, so one bad file never hides
    a sweep's other results; each record's ``record_path`` points back to its file. A record
    counts once, where its sweep put it: a file reached twice (the same folder given twice, a
    folder and its parent, a link), a copy of a record already read (the same ``job_key``) and
    the records of a sweep nested inside another (a folder with its own ``multirun.yaml``) are
    left out, said in one warning. A nested sweep is read when given itself.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    once = _Once()
    for root in map(Path, paths):
        if not root.exists():
            raise FileNotFoundError(f"no such sweep directory: {root}")
        if root.is_file() and root.name != RECORD_FILE:
            raise FileNotFoundError(f"{root} is a file, not a sweep directory or a {RECORD_FILE}")
        for path in [root] if root.is_file() else sorted(root.rglob(RECORD_FILE)):
            once.read(root, path)
    if once.left_out():
        warnings.warn("left out " + "; ".join(once.left_out()), stacklevel=2)
    once.records.sort(key=lambda r: (r.model, r.dataset, r.optimizer, r.batch_size, r.seed))
    return once.records


class _Once:
    """The records of a report, each read once, and what was left out."""

    def __init__(self):
        self.records: list[JobRecord] = []
        self.seen, self.keys, self.nested = set(), set(), set()
        self.twice, self.copies = [], []

    def read(self, root: Path, path: Path) -> None:
        inner = None if root.is_file() else _nested_sweep(root, path)
        if inner is not None:
            self.nested.add(str(inner))
            return
        if path.resolve() in self.seen:
            self.twice.append(path)
            return
        self.seen.add(path.resolve())
        try:
            record = read_job_record(path)
        except CorruptRecord as e:
            warnings.warn(f"skipping corrupt record {e}", stacklevel=3)   # the caller of load_records
            return
        if record.job_key is not None and record.job_key in self.keys:
            self.copies.append(path)
            return
        self.keys.add(record.job_key)
        self.records.append(record)

    def left_out(self) -> list[str]:
        return (([f"{len(self.twice)} record(s) reached twice through the folders given"] if self.twice else [])
                + ([f"{len(self.copies)} copy(ies) of a record already read (same job_key), e.g. {self.copies[0]}"]
                   if self.copies else [])
                + ([f"the records of nested sweep(s) {', '.join(sorted(self.nested))} (give one as a folder of "
                    "its own to report it)"] if self.nested else []))


SWEEP_MARK = "multirun.yaml"   # Hydra writes it in every sweep's folder, and only there


def _nested_sweep(root: Path, record: Path) -> Path | None:
    """The sweep nested inside ``root``'s sweep that ``record`` belongs to, or None: the folders from
    ``root`` down to the record's job folder (not included: a job is no sweep) hold two sweep marks."""
    below = record.parent.relative_to(root).parts
    marked = [folder for folder in (root.joinpath(*below[:i]) for i in range(len(below)))
              if (folder / SWEEP_MARK).exists()]
    return marked[-1] if len(marked) > 1 else None
