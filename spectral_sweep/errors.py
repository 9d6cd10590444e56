"""The exception for bad user input, the one for a lost trial worker, OS errors and warnings in one line.

Anything the user can fix (an unknown name, a non-positive batch, a dataset root with no data)
raises ``UsageError`` with a single-line message. The CLI prints that line to stderr and exits
non-zero without a traceback; library callers get an ordinary ``ValueError`` subclass.
"""


class UsageError(ValueError):
    """Bad input that the user can fix; the message is one line and says how."""


def unknown_choice(kind: str, name: str, choices) -> UsageError:
    """The error for a name that is not among the valid ones, listing them."""
    return UsageError(f"unknown {kind} '{name}'; choose one of: {', '.join(sorted(choices))}")


class WorkerLost(RuntimeError):
    """A trial's worker process died under it twice (point/pool.py); the message is one line that
    names the workers, the signal and the likely cause."""


def os_problem(e: OSError, elsewhere: str = "out_dir=PATH") -> str:
    """An OS error as one line: what is wrong with which path and what to fix, since a rerun
    alone meets the same file again. ``elsewhere`` is how the command takes another folder."""
    import errno
    from pathlib import Path

    path = e.filename
    what = e.strerror or str(e) or type(e).__name__
    if e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return f"no space left on device writing {path or 'a file'}; free some space or choose another {elsewhere}"
    if path is None:
        return what
    if e.filename2 is not None:   # a rename: what lies at its destination is in the way
        return f"cannot move {path} to {e.filename2} ({what[:1].lower() + what[1:]}); move {e.filename2} away"
    if e.errno == errno.EISDIR:
        return f"{path} is a directory where a file belongs; move it away"
    if e.errno in (errno.ENOTDIR, errno.EEXIST):   # a file where a folder belongs (mkdir, or a path through it)
        blocker = next((p for p in [Path(path), *Path(path).parents] if p.exists() and not p.is_dir()), Path(path))
        return f"{blocker} is a file where a folder belongs; move it away"
    if e.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied: {path}; make it writable for this user or choose another {elsewhere}"
    if e.errno == errno.EROFS:
        return f"read-only file system: {path}; choose another {elsewhere}"
    return f"{what[:1].lower() + what[1:]}: {path}"


def one_line_warnings(prog: str) -> None:
    """This package's warnings (a lost worker, a skipped record) as one line each in ``prog``'s
    voice, not Python's two (file:line and the source line that called ``warnings.warn``); another
    library's keep Python's form, which names where they come from. For the console scripts."""
    import warnings
    from pathlib import Path

    python, package = warnings.formatwarning, Path(__file__).resolve().parent

    def formatwarning(message, category, filename, lineno, line=None) -> str:
        if package not in Path(str(filename)).resolve().parents:
            return python(message, category, filename, lineno, line)
        return f"{prog}: warning: {message}\n"

    warnings.formatwarning = formatwarning
