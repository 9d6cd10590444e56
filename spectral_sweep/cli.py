"""The Hydra entry point: one job = one sweep point; the report runs when the sweep ends.

This is the only module that reads Hydra config objects: it turns the composed config into a typed
``config.Config`` and hands that to ``job.run_point``. Bad input becomes one line on stderr and
exit 2, checked for every value of every comma list before the first job starts.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import tempfile
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from . import config as schema
from .errors import UsageError
from .outcomes import check_judging


def _config_dir() -> str:
    """conf/ ships inside the wheel as spectral_sweep/conf; in a source checkout it is ../conf."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"spectral-sweep's conf/ is missing next to {here}; reinstall the package")


CONFIG_DIR = _config_dir()


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
schema.register()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def _job(cfg: DictConfig) -> None:
    from .job import run_point  # torch and friends load only when a job really runs

    hc = HydraConfig.get()
    try:
        run_point(schema.to_config(cfg), hc.runtime.output_dir, hc.sweep.dir if hc.mode.name == "MULTIRUN" else None,
                  model_label=hc.runtime.choices.get("model"), job_num=hc.job.num or 0,
                  variant=hc.job.override_dirname)
    except UsageError as e:
        fail(str(e))
    except Exception as e:   # a bug or a broken machine: stop the sweep, keep the traceback
        path = Path(hc.runtime.output_dir) / "error.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(traceback.format_exc())
        fail(f"job #{hc.job.num} ({' '.join(hc.overrides.task)}) failed with {type(e).__name__}: {e}; "
             f"traceback in {path}. The sweep stops here, so no later job depends on it; rerun the "
             f"command to resume", code=1)


def fail(message: str, code: int = 2) -> None:
    print(f"spectral-sweep: error: {message}", file=sys.stderr)
    sys.exit(code)


def check_choices(argv: list[str], config_dir: str = CONFIG_DIR) -> None:
    """Unknown options of a config group (``model=vgg99``, also inside comma lists) in one line.

    Hydra would say so too, over several lines; this says it before anything starts.
    """
    groups = {p.name: sorted(f.stem for f in p.glob("*.yaml")) for p in Path(config_dir).iterdir() if p.is_dir()}
    for arg in argv:
        key, sep, value = arg.lstrip("+").partition("=")
        if key == "hydra/launcher":
            check_launcher(value)
            continue
        if not sep or key not in groups or value in ("null", ""):
            continue
        for choice in value.split(","):
            if choice not in groups[key]:
                raise UsageError(f"unknown {key} '{choice}'; choose one of: {', '.join(groups[key])}")


LAUNCHER_PLUGINS = {"joblib": "hydra_plugins.hydra_joblib_launcher",
                    "submitit_local": "hydra_plugins.hydra_submitit_launcher",
                    "submitit_slurm": "hydra_plugins.hydra_submitit_launcher"}


def check_launcher(name: str) -> None:
    """A launcher whose Hydra plugin is missing: say which extra installs it."""
    if name == "basic":
        return
    if name not in LAUNCHER_PLUGINS:
        raise UsageError(f"unknown hydra/launcher '{name}'; choose one of: basic, {', '.join(LAUNCHER_PLUGINS)}")
    if importlib.util.find_spec(LAUNCHER_PLUGINS[name]) is not None:
        return
    raise UsageError(f"hydra/launcher={name} needs its Hydra plugin: pip install 'spectral-sweep[cluster]'")


def check_overrides(argv: list[str], config_dir: str = CONFIG_DIR) -> None:
    """Compose the config of every value of every comma list before any job starts.

    Each sweep value is composed with the other sweeps at their first value, so ``batch=8,0``
    fails on the 0 before B=8 trains. Hydra's multi-line reports of a malformed override, an
    unknown key or a value of the wrong type become one line, and the sweep directory must be
    writable.
    """
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    variants = _one_value_each(argv)
    try:
        with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
            for overrides in variants:
                config = schema.to_config(compose("config", overrides=overrides))
                check_judging(config.train.divergence_factor, config.train.stall_loss_margin,
                              config.train.stall_acc_margin)
                schema.check(config)
                _check_names(config, argv)
    except (HydraException, OmegaConfBaseException, ValueError) as e:
        raise UsageError(_first_line(e)) from None
    check_writable(Path(str(config.out_dir)) / str(config.name))


def _check_names(config, argv: list[str]) -> None:
    """A model or dataset name set directly (``model.name=alexnet``) rather than by its config
    group: checked against the registries, which load torch, so only when it is set."""
    if any(a.lstrip("+").startswith("model.name=") for a in argv):
        from .models import MODEL_NAMES

        if config.model.name not in MODEL_NAMES:
            raise UsageError(f"unknown model.name '{config.model.name}'; choose one of: {', '.join(MODEL_NAMES)}")
    if any(a.lstrip("+").startswith("dataset.name=") for a in argv):
        from .data import DATASET_NAMES

        if config.dataset.name not in DATASET_NAMES:
            raise UsageError(f"unknown dataset.name '{config.dataset.name}'; choose one of: {', '.join(DATASET_NAMES)}")


def _one_value_each(argv: list[str]) -> list[list[str]]:
    """Override lists that between them give every sweep value once (the others at their first)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(argv)
    except HydraException as e:
        raise UsageError(f"malformed override: {_first_line(e)}") from None
    parsed = [o for o in parsed if not o.key_or_group.startswith("hydra")]   # Hydra checks its own
    values = [list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.input_line.partition("=")[2]]
              for o in parsed]
    keys = [o.input_line.partition("=")[0] for o in parsed]
    base = [v[0] for v in values]
    variants = [[f"{k}={v}" for k, v in zip(keys, base)]]
    for i, options in enumerate(values):
        for value in options[1:]:
            variants.append([f"{k}={value if j == i else v}" for j, (k, v) in enumerate(zip(keys, base))])
    return variants


def check_writable(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as e:
        raise UsageError(f"cannot write to the output directory {directory}: {e.strerror}; "
                         f"choose another with out_dir=PATH") from None


def _first_line(e: Exception) -> str:
    """Hydra's report in one line: its own first lines, then the cause's (a type error says which
    value could not be converted to what)."""
    lines = [line.strip() for line in str(e).strip().splitlines()[:3] if line.strip()]
    cause = e.__cause__
    if cause is not None and str(cause).strip():
        first = str(cause).strip().splitlines()[0].strip()
        if first not in lines:
            lines.append(first)
    return ": ".join(lines) if len(lines) > 1 else " ".join(lines)


def main() -> None:
    """Console script ``spectral-sweep``."""
    argv = sys.argv[1:]
    try:
        check_choices(argv)
        if not any(a.startswith("-") for a in argv):   # --help, --cfg, ...: Hydra's own modes
            check_overrides(argv)
    except UsageError as e:
        fail(str(e))
    _job()


if __name__ == "__main__":
    main()
