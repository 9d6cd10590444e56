"""Hydra callback: write the scaling-law report once, when the whole sweep has ended.

It runs in the launching process after every job has finished, whichever launcher ran the jobs
(in this process, in joblib workers or on SLURM), so the report sees every record.
"""

from __future__ import annotations

import sys

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from .errors import os_problem


class ReportCallback(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        if not config.get("report", True):
            return
        from .report import write_report

        sweep_dir = config.hydra.sweep.dir
        try:
            write_report([sweep_dir], quiet=config.get("quiet", False))
        except (FileNotFoundError, ValueError) as e:
            print(f"spectral-sweep: no report written: {e}", file=sys.stderr)
            return
        except OSError as e:   # a full disk: the records are kept, the report is not there; one line, exit 1
            print(f"spectral-sweep: error: no report written: {os_problem(e)}; then write it with "
                  f"spectral-sweep-report {sweep_dir}", file=sys.stderr)
            sys.exit(1)
        print(f"report: {sweep_dir}/report.md (tables and plots beside it)")
