"""Files written so that a crash loses none, read back with a check, and the keys that name them."""

import contextlib
import errno
import glob
import hashlib
import json
import os
import tempfile
import time
import warnings
from collections.abc import Iterable
from pathlib import Path


class CorruptRecord(ValueError):
    """A record file that exists but cannot be used (truncated, not JSON, missing fields)."""


@contextlib.contextmanager
def replace_atomically(path: str | os.PathLike):
    """Yield a fresh temporary path beside ``path``; on success it replaces ``path`` (atomic on
    POSIX), on failure it is removed. Readers see the old file or the new one, never half of one,
    and two writers never share a temporary name. A full disk is one ``OSError(ENOSPC)`` that
    names ``path``, however the writer reported it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())   # mkstemp makes 0600: a shared sweep stays readable to the team
        os.replace(tmp, path)               # a planted link at ``path`` is replaced, never followed
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if _disk_full(e):   # named by the file it was to become, whatever the writer said
            raise OSError(errno.ENOSPC, "No space left on device", str(path)) from e
        raise
    _remove_stale(path)


TORCH_WRITE_FAILED = ("unexpected pos", "file write failed")   # torch.save's words for a write that fell short


def _disk_full(e: BaseException) -> bool:
    """A full disk (or quota), as the OS says it or as torch.save does (a RuntimeError)."""
    if isinstance(e, OSError):
        return e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
    return isinstance(e, RuntimeError) and any(words in str(e) for words in TORCH_WRITE_FAILED)


def _umask() -> int:
    """The process's umask (read by setting it, so set it straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def open_no_follow(path: str | os.PathLike, mode: str = "a", **kwargs):
    """Open a file the tool keeps in a sweep folder (a lock, a log) for appending, never through a
    symlink: a link planted there is removed (its target is left alone) and a fresh file made in
    its place, so nothing is written outside the sweep. O_NOFOLLOW closes the race with a link
    planted in between (an ``OSError`` then, not a write outside)."""
    path = Path(path)
    if path.is_symlink():
        warnings.warn(f"{path} was a symlink; replaced by a plain file (the tool writes nothing through a link)",
                      stacklevel=2)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0), 0o666)
    return os.fdopen(fd, mode, **kwargs)


def set_aside(path: str | os.PathLike) -> Path:
    """Move a file that cannot be used to ``<name>.bad`` beside it (kept for a look, never read
    again), so the next write makes a fresh one; returns where it went."""
    path = Path(path)
    aside = path.with_name(path.name + ".bad")
    with contextlib.suppress(FileNotFoundError):   # a concurrent reader may have moved it first
        os.replace(path, aside)
    return aside


STALE_SECONDS = 3600   # a temp file this old belongs to a writer killed mid-write, not to a live one


def _remove_stale(path: Path) -> None:
    """Temp files of ``path`` left by a writer killed mid-write (kill -9 skips its cleanup). Only
    old ones: a concurrent writer's temp file is fresh, and removing it would fail its rename."""
    cutoff = time.time() - STALE_SECONDS
    for old in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        with contextlib.suppress(OSError):   # another process may remove it first
            if old.stat().st_mtime < cutoff:
                old.unlink()


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
