"""Every job of a command, composed and checked before Hydra creates a folder.

``check_command(argv)`` reads the command line as Hydra does (its own argument parser, ``-m``,
``--config-dir``), composes the sweep's primary config, expands the sweep exactly as Hydra's
basic sweeper will (``hydra.sweeper.params`` from the config or the command line, then every
comma list of any key, as a product), composes each job's config and checks it. Any problem is
one ``UsageError``; nothing is written, not even the sweep folder. Jobs that pick the same
config groups share one composition (the slow part), then get their own values as Hydra applies
them, so a sweep of dozens of jobs is checked in a second or two.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from spectral_sweep.point.check import check_job

from . import config as schema
from .errors import UsageError, unknown_choice

# hydra.* overrides that leave a sweep working; any other would break the layout it relies on
# (hydra.mode=RUN, hydra.job.chdir, hydra.sweep.subdir, the callbacks, another sweeper...)
HYDRA_ALLOWED = ("hydra/launcher", "hydra.launcher.", "hydra.sweep.dir", "hydra.sweeper.params",
                 "hydra.sweeper.max_batch_size", "hydra.verbose", "hydra/job_logging", "hydra/hydra_logging",
                 "hydra.job_logging", "hydra.hydra_logging", "hydra.output_subdir", "hydra.job.env_set.")


SLURM_TOOLS = ("sbatch", "srun")    # what submitit's SLURM launcher calls
LAUNCHER_PLUGINS = {"joblib": "hydra_plugins.hydra_joblib_launcher",
                    "submitit_local": "hydra_plugins.hydra_submitit_launcher",
                    "submitit_slurm": "hydra_plugins.hydra_submitit_launcher"}


def variant_suffix(overrides: str) -> str:
    """The end of a job folder's name: '' or '_' + the job's other overrides ('/' made safe;
    a long list is cut and a hash of the whole keeps it unique within a file name's 255 bytes)."""
    if not overrides:
        return ""
    safe = overrides.replace("/", "%")
    if len(safe) > 120:
        safe = f"{safe[:100]}~{hashlib.sha1(overrides.encode()).hexdigest()[:10]}"
    return f"_{safe}"


OmegaConf.register_new_resolver("variant_suffix", variant_suffix, replace=True)


@dataclass
class Job:
    """One job as Hydra will run it: its overrides, its typed config, its folder under the sweep,
    its model's label (the preset's name) and its variant (the other overrides)."""

    overrides: list[str]
    config: schema.Config
    folder: str
    label: str
    variant: str


@dataclass
class Plan:
    """What a command will do: where its sweep goes and each of its jobs."""

    sweep_dir: Path
    jobs: list[Job]

    def summary(self) -> str:
        """The plan in one line, before the first trial: the jobs, each trial's length, the trial cap
        of a point, the device and the trials in flight, and where the sweep goes."""
        from spectral_sweep.point.executor import planned_in_flight
        from spectral_sweep.point.run import in_rounds, planned_cap

        first = self.jobs[0].config
        groups = sorted({f"{j.label} {j.config.optimizer.name}" for j in self.jobs})
        sizes = ", ".join(str(b) for b in sorted({j.config.batch for j in self.jobs}))
        steps = sorted({s for s in (_trial_steps(j.config) for j in self.jobs) if s is not None})
        length = (f"{steps[0]}" if len(steps) == 1 else f"{steps[0]}-{steps[-1]}") + " steps" if steps else "epochs"
        device = _device_of(first.device)
        cap = max(planned_cap(j.config) for j in self.jobs)
        in_flight = planned_in_flight(first.search, device) if in_rounds(first) else "1"
        return (f"plan: {len(self.jobs)} job{'s' * (len(self.jobs) != 1)} ({'; '.join(groups)}; B = {sizes}), "
                f"trials of {length}, at most {cap} trial{'s' * (cap != 1)} a point, on {device} with "
                f"{in_flight} in flight; sweep folder {self.sweep_dir}")


def _trial_steps(config: schema.Config) -> int | None:
    """Steps of one trial of this job, where its training set's size is known without reading it."""
    budget, known = config.train.budget(config.dataset), config.dataset.known_train_size()
    if budget.epochs is not None:
        return None if known is None else max(1, round(budget.epochs * (known // config.batch)))
    return budget.steps


def _device_of(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Hydra's own reading of the command line; a bad flag is one line, not argparse's usage."""
    from hydra._internal.utils import get_args_parser

    parser = get_args_parser()

    def refuse(message: str):
        raise UsageError(f"{message}; see spectral-sweep --help")

    parser.error = refuse
    return parser.parse_args(argv)


def check_command(argv: list[str]) -> Plan | None:
    """The plan of ``spectral-sweep ARGV`` with every job checked, or None for Hydra's own modes
    (--help, --cfg, --info, ...), which run nothing."""
    args = parse_args(argv)
    if args.cfg:
        _check_one_job(args.overrides)
    if args.help or args.hydra_help or args.cfg or args.info or args.shell_completion:
        return None
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    with schema.hydra_instance(args.config_dir) as hydra:
        try:
            plan = _plan(hydra, args.overrides)
        except UsageError:
            raise
        except (HydraException, OmegaConfBaseException, AssertionError, ValueError) as e:
            raise UsageError(first_line(e) or f"the overrides do not compose ({type(e).__name__})") from None
    check_writable(plan.sweep_dir)
    return plan


def _check_one_job(overrides: list[str]) -> None:
    """--cfg prints one job's config; a comma list there ended in Hydra's six-line "Ambiguous value"."""
    swept = [o.input_line for o in _parse(overrides) if o.is_sweep_override()]
    if swept:
        raise UsageError(f"--cfg prints one job's config: give one value to each key ({swept[0]} sweeps)")


def _plan(hydra, overrides: list[str]) -> Plan:
    from hydra.types import RunMode

    parsed = _parse(overrides)
    check_hydra_overrides(parsed)
    check_choices(hydra, parsed)
    master = hydra.compose_config("config", overrides, run_mode=RunMode.MULTIRUN, with_log_configuration=False)
    jobs = expand(master, [o.input_line for o in parsed if not o.is_hydra_override()])
    planned = list(_job_configs(hydra, master, jobs))
    for job in planned:
        check_job(job.config)
    return Plan(Path(str(master.hydra.sweep.dir)), planned)


def _parse(overrides: list[str]):
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        return OverridesParser.create().parse_overrides(overrides)
    except HydraException as e:
        raise UsageError(f"malformed override: {first_line(e)}") from None


def check_hydra_overrides(parsed) -> None:
    """Refuse hydra.* overrides that would break a sweep; check the launcher's plugin is there."""
    for o in parsed:
        key = o.key_or_group
        if not key.startswith("hydra"):
            continue
        if key == "hydra/launcher":
            for value in _values(o):
                check_launcher(value)
        elif key == "hydra/sweeper" and _values(o) != ["basic"]:
            raise UsageError(f"{o.input_line}: spectral-sweep runs its sweeps with Hydra's basic sweeper only")
        elif key == "hydra.mode" and _values(o) != ["MULTIRUN"]:
            raise UsageError(f"{o.input_line}: a sweep always runs as MULTIRUN (each job its own folder)")
        elif not key.startswith(HYDRA_ALLOWED) and key != "hydra.mode":
            raise UsageError(f"{o.input_line}: spectral-sweep relies on {key} and does not let it be changed; "
                             f"the hydra settings you may change: {', '.join(HYDRA_ALLOWED)}")


def check_launcher(name: str) -> None:
    """A launcher whose Hydra plugin is missing: say which extra installs it."""
    if name == "basic":
        return
    if name not in LAUNCHER_PLUGINS:
        raise UsageError(f"unknown hydra/launcher '{name}'; choose one of: basic, {', '.join(LAUNCHER_PLUGINS)}")
    if importlib.util.find_spec(LAUNCHER_PLUGINS[name]) is None:
        raise UsageError(f"hydra/launcher={name} needs its Hydra plugin: pip install 'spectral-sweep[cluster]'")
    missing = [tool for tool in SLURM_TOOLS if name == "submitit_slurm" and shutil.which(tool) is None]
    if missing:    # submitit would stop inside Hydra with a traceback ("Could not detect srun")
        raise UsageError(f"hydra/launcher=submitit_slurm submits to SLURM, and {' and '.join(missing)} "
                         f"{'is' if len(missing) == 1 else 'are'} not on this machine's PATH: "
                         "launch from the cluster's login node")


def _values(override) -> list[str]:
    """Every value of an override, a comma list's one by one."""
    if override.is_sweep_override():
        return [str(v) for v in override.sweep_string_iterator()]
    return [override.get_value_element_as_str()]


def check_choices(hydra, parsed) -> None:
    """An option of a config group that is not in any config folder Hydra searches (the
    package's, the user's --config-dir), also inside comma lists: one line listing the choices."""
    loader = hydra.config_loader
    for o in parsed:
        group = o.key_or_group
        if not group or group.startswith("hydra") or o.is_delete() or not loader.repository.group_exists(group):
            continue
        options = loader.get_group_options(group)
        for value in _values(o):
            if value not in options and value not in ("null", ""):
                raise unknown_choice(group, value, options)


def expand(master, task_overrides: list[str]) -> list[list[str]]:
    """Each job's overrides, as Hydra's basic sweeper makes them: ``hydra.sweeper.params`` first,
    the command line's on top, then the product of every comma list."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from omegaconf import OmegaConf

    params = master.hydra.sweeper.params
    params = OmegaConf.to_container(params) if params is not None else {}
    parsed = _parse([f"{k}={v}" for k, v in params.items()] + task_overrides)
    for o in parsed:
        if o.key_or_group in ("name", "out_dir") and o.is_sweep_override():
            raise UsageError(f"{o.input_line}: name and out_dir cannot be comma lists; a sweep writes into one folder")
    return BasicSweeper.split_arguments(parsed, None)[0]


def _job_configs(hydra, master, jobs: list[list[str]]):
    """(overrides, typed config) of each job. The defaults tree is composed once per choice of
    config groups, then each job's values are applied to a copy, as Hydra applies them."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf, open_dict

    loader, composed = hydra.config_loader, {}
    for job in jobs:
        parsed = _parse(job)
        is_group = [loader.repository.group_exists(o.key_or_group) for o in parsed]
        groups = tuple(o.input_line for o, g in zip(parsed, is_group) if g)
        if groups not in composed:
            composed[groups] = loader.load_sweep_config(master, list(groups))
        cfg = copy.deepcopy(composed[groups])
        ConfigLoaderImpl._apply_overrides_to_config([o for o, g in zip(parsed, is_group) if not g], cfg)
        config = _typed(cfg, job)
        names = cfg.hydra.job.config.override_dirname
        with open_dict(cfg.hydra):
            cfg.hydra.job.override_dirname = get_overrides_dirname(
                overrides=parsed, kv_sep=str(names.kv_sep), item_sep=str(names.item_sep),
                exclude_keys=list(names.exclude_keys))
        HydraConfig.instance().set_config(cfg)   # the folder name reads hydra:runtime.choices
        folder = str(OmegaConf.select(cfg, "hydra.sweep.subdir"))
        yield Job(job, config, folder, str(cfg.hydra.runtime.choices.model), cfg.hydra.job.override_dirname)


def _typed(cfg, overrides: list[str]) -> schema.Config:
    """The job's typed config; a key that is not in the schema (``+new.key=1``) is refused."""
    try:
        config = schema.to_config(cfg, overrides)
    except ValueError as e:
        raise UsageError(first_line(e)) from None
    from omegaconf import OmegaConf, open_dict

    plain = cfg.copy()
    with open_dict(plain):
        plain.pop("hydra", None)
    unknown = _extra_keys(OmegaConf.to_container(plain), dataclasses.asdict(config))
    if unknown:
        raise UsageError(f"unknown key '{unknown}': spectral-sweep has no such setting "
                         "(spectral-sweep --help lists them)")
    return config


def _extra_keys(given: dict, typed: dict, prefix: str = "") -> str | None:
    """The first key of the composed config that the typed config dropped (not in its schema);
    a user's plain preset keeps its own keys as its target's arguments (``kwargs``)."""
    if isinstance(typed.get("kwargs"), dict):
        typed = {**typed, **typed["kwargs"]}
    for key, value in given.items():
        if key not in typed:
            return f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(typed[key], dict):
            found = _extra_keys(value, typed[key], f"{prefix}{key}.")
            if found:
                return found
    return None


def check_writable(directory: Path) -> None:
    """The sweep folder can be made, without making it: a folder made and removed in its nearest
    existing parent (which then looks as before)."""
    parent = Path(directory).absolute()
    while not parent.exists():
        parent = parent.parent
    try:
        if not parent.is_dir():
            raise NotADirectoryError(20, "Not a directory")
        os.rmdir(tempfile.mkdtemp(dir=parent, prefix=".spectral-sweep-probe-"))
    except OSError as e:
        raise UsageError(f"cannot write to the output directory {directory}: {e.strerror}; "
                         f"choose another with out_dir=PATH") from None


def first_line(e: Exception) -> str:
    """Hydra's report in one line: its own first lines, then the cause's (a type error says which
    value could not be converted to what)."""
    lines = [line.strip() for line in str(e).strip().splitlines()[:3] if line.strip()]
    cause = e.__cause__
    if cause is not None and str(cause).strip():
        first = str(cause).strip().splitlines()[0].strip()
        if first not in lines:
            lines.append(first)
    return ": ".join(lines) if len(lines) > 1 else " ".join(lines)
