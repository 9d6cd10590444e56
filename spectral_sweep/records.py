"""Records: one JSON file per finished job, one per finished trial, written so a crash loses none.

A sweep directory holds one job directory per sweep point; each finished job writes
``record.json`` there. Trials are cached beside it under ``trials/<key>.json`` as they finish, so a
rerun of the same command (same resolved config) reuses every finished trial and skips every
finished job. Every write goes to a temporary file in the same directory and is renamed into place:
readers see the old file or the new one, never half of one.

The job record (schema 1) is a flat JSON object::

    kind            "sweep_point"
    model, dataset, optimizer, batch_size, seed     the sweep point
    expected_exponent   1.0 for SGD-like optimizers, 0.5 for Adam-like (the law under test)
    momentum            heavy-ball momentum (SGD) or beta1 (Adam): enters the stability limit
    search              the search method ("bisect", "grid", "fixed")
    lr_max, lr_max_bracket=[lo, hi], lr_max_status
                        the largest lr whose trial trained, and the smallest above it that did
                        not; status is "bracketed", "lower_bound" (still trained at the cap; hi
                        null) or "nothing_trains" (lr_max null; "no_stable_lr" in old records)
    acc_at_lr_max       test accuracy of the lr_max trial
    lr_blowup, lr_blowup_bracket, lr_blowup_status
                        the edge of divergence: largest lr that did not diverge, smallest that did
    non_monotone        trials that contradict "trains, then stalls, then diverges" (empty: none)
    lr_best, best_test_acc   the trained trial with the best test accuracy
    budget              {"steps", "epochs"}: the length of every trial
    trials          list of trial results (see spectral_sweep.train.TrialResult): lr, outcome
                    (trained | stalled | diverged; records made before outcomes have only
                    "stable", read as trained/diverged), reason, losses, test accuracy, cost
    steps, seconds  totals over this job's trials, reused ones included
    spectrum        optional: curvature measurements of this sweep point
    device, commit, command, config, created   provenance

``load_records`` turns a sweep back into these dicts; ``jobs_frame``/``trials_frame`` into tables.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path

from .outcomes import outcome_of

RECORD_FILE = "record.json"
TRIALS_DIR = "trials"
SCHEMA = 1
LEARNER_SEARCH = "learner"   # a record's "search" when the optimizer chose its own lr (lanczos_sgd)


class CorruptRecord(ValueError):
    """A record file that exists but cannot be used (truncated, not JSON, missing fields)."""


@contextlib.contextmanager
def replace_atomically(path: str | os.PathLike):
    """Yield a fresh temporary path beside ``path``; on success it replaces ``path`` (atomic on
    POSIX), on failure it is removed. Readers see the old file or the new one, never half of one,
    and two writers never share a temporary name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    with replace_atomically(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, obj) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically, fsynced before the rename: a record survives
    a power loss, not only a kill."""
    with replace_atomically(path) as tmp, open(tmp, "w") as f:
        json.dump(obj, f, indent=1, allow_nan=True, default=_jsonable)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


def _jsonable(x):
    """Numpy scalars and paths, which json does not know."""
    if hasattr(x, "item"):
        return x.item()
    if isinstance(x, os.PathLike):
        return os.fspath(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def read_json(path: str | os.PathLike, required: Iterable[str] = ()) -> dict:
    """Read a record; raise ``CorruptRecord`` naming the file if it is unreadable or incomplete."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CorruptRecord(f"{path}: {e}") from e
    if not isinstance(obj, dict):
        raise CorruptRecord(f"{path}: expected a JSON object")
    missing = [k for k in required if k not in obj]
    if missing:
        raise CorruptRecord(f"{path}: missing fields {', '.join(missing)}")
    return obj


def config_key(*parts) -> str:
    """A short stable hash of JSON-able parts: the identity of a job or a trial for resuming."""
    blob = json.dumps(parts, sort_keys=True, default=_jsonable, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class TrialCache:
    """Finished trials of one job, keyed by a hash of (job config, lr); survives any crash."""

    REQUIRED = ("lr", "outcome")

    def __init__(self, job_dir: str | os.PathLike):
        self.dir = Path(job_dir) / TRIALS_DIR
        self.hits = 0

    def get(self, key: str) -> dict | None:
        path = self.dir / f"{key}.json"
        if not path.exists():
            return None
        try:
            result = read_json(path, self.REQUIRED)
        except CorruptRecord as e:
            warnings.warn(f"corrupt trial record, recomputing: {e}", stacklevel=2)
            return None
        self.hits += 1
        return result

    def put(self, key: str, result: dict) -> None:
        write_json_atomic(self.dir / f"{key}.json", result)


JOB_REQUIRED = ("model", "dataset", "optimizer", "batch_size", "trials")


def read_job_record(job_dir: str | os.PathLike) -> dict | None:
    """The finished record of a job directory, or None if the job has not finished."""
    path = Path(job_dir) / RECORD_FILE
    if not path.exists():
        return None
    return read_json(path, JOB_REQUIRED)


def load_records(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[dict]:
    """Every job record found (recursively) under ``paths``, sorted for stable tables.

    A corrupt or partial record is named in a warning and left out, so one bad file never hides
    a sweep's other results; each record gets ``record_path`` so tables can point back to it.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    records = []
    for root in map(Path, paths):
        if not root.exists():
            raise FileNotFoundError(f"no such sweep directory: {root}")
        files = [root] if root.is_file() else sorted(root.rglob(RECORD_FILE))
        for path in files:
            try:
                rec = read_json(path, JOB_REQUIRED)
            except CorruptRecord as e:
                warnings.warn(f"skipping corrupt record {e}", stacklevel=2)
                continue
            rec["record_path"] = str(path)
            records.append(rec)
    records.sort(key=lambda r: (r["model"], r["dataset"], r["optimizer"], r["batch_size"], r.get("seed", 0)))
    return records


JOB_COLUMNS = ("model", "dataset", "optimizer", "batch_size", "seed", "expected_exponent", "momentum",
               "search", "lr_max", "lr_max_status", "acc_at_lr_max", "lr_blowup", "lr_blowup_status",
               "lr_best", "best_test_acc", "steps", "seconds", "device", "commit", "record_path")


def jobs_frame(records: list[dict]):
    """One row per job: the sweep point, lr_max with its bracket, lr_best, cost, provenance."""
    import pandas as pd

    rows = []
    for r in records:
        row = {c: r.get(c) for c in JOB_COLUMNS}
        lo, hi = (r.get("lr_max_bracket") or [None, None])
        blo, bhi = (r.get("lr_blowup_bracket") or [None, None])
        row.update(lr_lo=lo, lr_hi=hi, lr_blowup_lo=blo, lr_blowup_hi=bhi, trials=len(r["trials"]),
                   non_monotone=len(r.get("non_monotone") or []))
        rows.append(row)
    return pd.DataFrame(rows, columns=[*JOB_COLUMNS, "lr_lo", "lr_hi", "lr_blowup_lo", "lr_blowup_hi",
                                       "trials", "non_monotone"])


TRIAL_COLUMNS = ("lr", "outcome", "reason", "initial_loss", "final_train_loss", "test_acc", "test_loss",
                 "steps", "seconds", "images_per_s")


def trials_frame(records: list[dict]):
    """One row per trial, with its sweep point: what the accuracy-against-lr plots read."""
    import pandas as pd

    rows = []
    for r in records:
        for t in r["trials"]:
            rows.append({"model": r["model"], "dataset": r["dataset"], "optimizer": r["optimizer"],
                         "batch_size": r["batch_size"], "seed": r.get("seed", 0),
                         **{c: t.get(c) for c in TRIAL_COLUMNS}, "outcome": outcome_of(t)})
    return pd.DataFrame(rows, columns=["model", "dataset", "optimizer", "batch_size", "seed", *TRIAL_COLUMNS])
