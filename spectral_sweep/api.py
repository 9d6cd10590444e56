"""The Python face of a sweep, for notebooks: ``sweep(model=..., data=..., batch_sizes=[...])``.

It builds the command line the CLI would get, lets ``preflight`` compose and check every job
exactly as the CLI does (same folders, same configs, same refusals), runs each job with
``point.run.run_point`` in this process, writes the same report, and hands back the lr_max and scaling
tables as DataFrames. ``model``, ``data`` and ``optimizer`` are a preset's name, or one preset
with options (``model={"vgg11_bn": {"width": 0.125}}``). Keyword overrides are config groups or
keys: ``search="fixed"`` picks a preset, ``train={"steps": 20}`` sets ``train.steps=20``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class SweepResult:
    """What ``sweep`` found: the report's two main tables, the records, and where they lie."""

    lr_max: object        # pandas.DataFrame: one row per (model, dataset, optimizer, batch size)
    scaling: object       # pandas.DataFrame: one row per curve, its exponent and verdict
    records: list
    sweep_dir: Path


def sweep(model="vgg11_bn", data="synthetic", batch_sizes=(128,), optimizer="sgd", *,
          name: str = "sweep", out_dir: str = "outputs", config_dir: str | None = None,
          **overrides) -> SweepResult:
    """Run (or resume) the sweep that ``spectral-sweep model=.. dataset=.. optimizer=..
    batch=B1,B2,.. OVERRIDES`` runs, and return its tables. Bad input raises ``UsageError``
    before anything is written; ``config_dir`` is ``--config-dir`` (your own presets)."""
    from spectral_sweep import preflight
    from spectral_sweep.point.run import run_point
    from spectral_sweep.point.store import load_records
    from spectral_sweep.report import write_report
    from spectral_sweep.report.tables import label_variants, lr_max_table, scaling_table

    argv = ([] if config_dir is None else ["--config-dir", str(config_dir)])
    for group, choice in (("model", model), ("dataset", data), ("optimizer", optimizer)):
        argv += _choice(group, choice)
    argv += [f"batch={','.join(str(b) for b in batch_sizes)}", f"name={name}", f"out_dir={out_dir}",
             *command_line(overrides)]
    plan = preflight.check_command(argv)
    for number, job in enumerate(plan.jobs):
        run_point(job.config, plan.sweep_dir / job.folder, plan.sweep_dir, model_label=job.label,
                  job_num=number, variant=job.variant)
    if plan.jobs[0].config.report:
        write_report([plan.sweep_dir], quiet=plan.jobs[0].config.quiet)
    records = label_variants(load_records(plan.sweep_dir))
    points = lr_max_table([r for r in records if not r.is_learner])
    scaling, _ = scaling_table(points)
    return SweepResult(points, scaling, records, plan.sweep_dir)


def _choice(group: str, choice) -> list[str]:
    """``"vgg11"`` -> [model=vgg11]; ``{"vgg11": {"width": 0.5}}`` -> [model=vgg11, model.width=0.5]."""
    if isinstance(choice, str):
        return [f"{group}={choice}"]
    if isinstance(choice, dict) and len(choice) == 1:
        ((preset, options),) = choice.items()
        return [f"{group}={preset}", *command_line(options or {}, f"{group}.")]
    from spectral_sweep.errors import UsageError

    raise UsageError(f"{group} must be a preset's name or {{name: {{option: value}}}}, got {choice!r}")


def command_line(overrides: dict, prefix: str = "") -> list[str]:
    """Keyword overrides as Hydra overrides: nested dicts become dotted keys, lists ``[a,b]``,
    booleans ``true``/``false``, None ``null``."""
    out = []
    for key, value in overrides.items():
        if isinstance(value, dict):
            out += command_line(value, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}={_value(value)}")
    return out


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_value(v) for v in value) + "]"
    return str(value)
