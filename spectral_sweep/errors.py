"""The exception for bad user input, and the one for a lost trial worker.

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
