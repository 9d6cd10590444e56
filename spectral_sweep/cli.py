"""The Hydra entry point: one job = one sweep point; the report runs when the sweep ends.

With preflight.py, the only module that reads Hydra config objects: it turns the composed config
into a typed ``config.Config`` and hands that to ``point.run.run_point``. Bad input becomes one line on
stderr and exit 2: preflight.py checks every job of the command before Hydra creates a folder. An
OS error (a full disk, a file where a folder belongs) is one line, exit 1, that names the path and
what to fix, since a rerun alone would meet it again.
Ctrl-C is one line and exit 130, SIGTERM one line and exit 143 (128 + the signal, as a shell
reports it), the trial workers stopped either way; the rerun resumes.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from spectral_sweep.config.base import CONFIG_DIR
from spectral_sweep.files import write_text_atomic

from . import config as schema
from . import preflight
from .errors import UsageError, WorkerLost, one_line_warnings, os_problem
from .preflight import variant_suffix  # noqa: F401  (the folder names' resolver, registered there)

schema.register()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def _job(cfg: DictConfig) -> None:
    from spectral_sweep.point.run import run_point  # torch and friends load only when a job really runs

    hc = HydraConfig.get()
    try:
        sweep_dir = hc.sweep.dir if hc.mode.name == "MULTIRUN" else None
        run_point(schema.to_config(cfg, hc.overrides.task), hc.runtime.output_dir, sweep_dir,
                  model_label=hc.runtime.choices.get("model"), job_num=hc.job.num or 0,
                  variant=hc.job.override_dirname, launcher=hc.runtime.choices.get("hydra/launcher") or "basic")
        (Path(hc.runtime.output_dir) / "error.txt").unlink(missing_ok=True)   # an earlier failure's, now stale
    except UsageError as e:
        fail(str(e))
    except WorkerLost as e:   # the message says why and what to do; finished trials are kept
        fail(f"job #{hc.job.num} ({' '.join(hc.overrides.task)}): {e}", code=1)
    except OSError as e:   # a full disk, a file where a folder belongs: a rerun alone meets it again
        fail(f"job #{hc.job.num} ({' '.join(hc.overrides.task)}): {os_problem(e)}. Finished trials are kept: "
             "the same command resumes once that is fixed", code=1)
    except Exception as e:   # a bug or a broken machine: stop the sweep, keep the traceback
        path = Path(hc.runtime.output_dir) / "error.txt"
        try:
            write_text_atomic(path, traceback.format_exc())   # replaces a link planted as error.txt, never follows it
            kept = f"traceback in {path}"
        except OSError as unwritten:
            kept = f"no traceback kept ({os_problem(unwritten)})"
        fail(f"job #{hc.job.num} ({' '.join(hc.overrides.task)}) failed with {type(e).__name__}: {e}; "
             f"{kept}. The sweep stops here, so no later job depends on it; rerun the "
             f"command to resume", code=1)


class Terminated(BaseException):
    """SIGTERM, raised where the main thread is, so every ``finally`` (the workers' pool, the
    job's lock) runs on the way out, as for Ctrl-C; not an ``Exception``, so no job catches it."""


def _terminate(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)   # a second SIGTERM does not cut the way out short
    raise Terminated


def fail(message: str, code: int = 2) -> None:
    print(f"spectral-sweep: error: {message}", file=sys.stderr)
    sys.exit(code)


def _hide_schema_groups() -> None:
    """--help lists the choices a user makes: the schemas that presets build on (ConfigStore's
    ``schema/<group>``) are not among them, so Hydra's list of groups leaves them out."""
    from hydra._internal.hydra import Hydra

    original = Hydra.format_config_groups

    def format_config_groups(self, predicate, compact=True):
        return original(self, lambda group: predicate(group) and not group.startswith("schema"), compact)

    Hydra.format_config_groups = format_config_groups


@contextlib.contextmanager
def _composed_once(checked: bool):
    """Hydra's sweeper composes every job's config before launching it (``validate_batch_is_legal``),
    and its launcher composes it again to run it. preflight.py has already composed each job exactly
    as the sweeper will and refused what does not compose, so the sweeper's pass is skipped: 0.3-0.5 s
    a job on a CPU (a fifth of a 20-job sweep's start). Restored after, for a caller in this process."""
    from hydra.plugins.sweeper import Sweeper

    original = Sweeper.validate_batch_is_legal
    if checked:
        Sweeper.validate_batch_is_legal = lambda self, batch: None
    try:
        yield
    finally:
        Sweeper.validate_batch_is_legal = original


def main() -> None:
    """Console script ``spectral-sweep``: every job checked first (preflight.py), then Hydra runs them."""
    signal.signal(signal.SIGTERM, _terminate)
    one_line_warnings("spectral-sweep")
    try:
        try:
            plan = preflight.check_command(sys.argv[1:])
        except UsageError as e:
            fail(str(e))
        if plan is not None:
            print(f"spectral-sweep: {plan.summary()}", file=sys.stderr, flush=True)
        else:
            _hide_schema_groups()
        with _composed_once(plan is not None):
            _job()
    except KeyboardInterrupt:   # finished trials and jobs are on disk; the rerun picks them up
        fail("interrupted; rerun the same command to resume", code=130)
    except Terminated:
        fail("terminated (SIGTERM); rerun the same command to resume", code=128 + signal.SIGTERM)
    except OSError as e:   # outside a job (the plan, the report at the end): one line as well
        fail(os_problem(e), code=1)


if __name__ == "__main__":
    main()
