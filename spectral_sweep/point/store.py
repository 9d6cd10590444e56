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
import os
import warnings
from collections.abc import Iterable
from pathlib import Path

try:
    import fcntl  # POSIX: file locks
except ImportError:   # elsewhere jobs are not locked
    fcntl = None

from spectral_sweep.files import CorruptRecord, read_json, write_json_atomic
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
    with open(path, "a") as f:
        if fcntl is not None:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_wait is not None:
                    on_wait()
                fcntl.flock(f, fcntl.LOCK_EX)
        yield


class TrialCache:
    """Finished trials of one job, keyed by a hash of (job config, lr); survives any crash."""

    REQUIRED = ("lr", "outcome")

    def __init__(self, job_dir: str | os.PathLike):
        self.dir = Path(job_dir) / TRIALS_DIR
        self.hits = 0

    def get(self, key: str) -> TrialRecord | None:
        path = self.dir / f"{key}.json"
        if not path.exists():
            return None
        try:
            result = TrialRecord.from_dict(read_json(path, self.REQUIRED))
        except (CorruptRecord, TypeError, ValueError) as e:
            warnings.warn(f"corrupt trial record, recomputing: {e}", stacklevel=2)
            return None
        self.hits += 1
        return result

    def put(self, key: str, result: TrialRecord) -> None:
        write_json_atomic(self.dir / f"{key}.json", result.to_dict())

    def checkpoint(self, key: str) -> Path:
        """Where the unfinished trial ``key`` saves itself every epoch, to resume from."""
        return self.dir / f"{key}.pt"


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
    """Every job record found (recursively) under ``paths``, sorted for stable tables.

    A corrupt or partial record is named in a warning and left out, so one bad file never hides
    a sweep's other results; each record's ``record_path`` points back to its file.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    records = []
    for root in map(Path, paths):
        if not root.exists():
            raise FileNotFoundError(f"no such sweep directory: {root}")
        if root.is_file() and root.name != RECORD_FILE:
            raise FileNotFoundError(f"{root} is a file, not a sweep directory or a {RECORD_FILE}")
        for path in [root] if root.is_file() else sorted(root.rglob(RECORD_FILE)):
            try:
                records.append(read_job_record(path))
            except CorruptRecord as e:
                warnings.warn(f"skipping corrupt record {e}", stacklevel=2)
    records.sort(key=lambda r: (r.model, r.dataset, r.optimizer, r.batch_size, r.seed))
    return records
