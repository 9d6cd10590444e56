"""The Hydra entry point: one job = one sweep point; the report runs when the sweep ends.

This is the only module that reads Hydra config objects: it resolves the composed config into a
plain dict and hands it to ``job.run_point``. Bad input becomes one line on stderr and exit 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from .errors import UsageError


def _config_dir() -> str:
    """conf/ ships inside the wheel as spectral_sweep/conf; in a source checkout it is ../conf."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"spectral-sweep's conf/ is missing next to {here}; reinstall the package")


CONFIG_DIR = _config_dir()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def _job(cfg: DictConfig) -> None:
    from .job import run_point   # torch and friends load only when a job really runs

    hc = HydraConfig.get()
    try:
        config = OmegaConf.to_container(cfg, resolve=True)
        run_point(config, hc.runtime.output_dir, hc.sweep.dir if hc.mode.name == "MULTIRUN" else None,
                  model_label=hc.runtime.choices.get("model"))
    except UsageError as e:
        fail(str(e))


def fail(message: str) -> None:
    print(f"spectral-sweep: error: {message}", file=sys.stderr)
    sys.exit(2)


def check_choices(argv: list[str], config_dir: str = CONFIG_DIR) -> None:
    """Unknown options of a config group (``model=vgg99``, also inside comma lists) in one line.

    Hydra would say so too, over several lines; this says it before anything starts.
    """
    groups = {p.name: sorted(f.stem for f in p.glob("*.yaml")) for p in Path(config_dir).iterdir() if p.is_dir()}
    for arg in argv:
        key, sep, value = arg.lstrip("+").partition("=")
        if not sep or key not in groups or value in ("null", ""):
            continue
        for choice in value.split(","):
            if choice not in groups[key]:
                raise UsageError(f"unknown {key} '{choice}'; choose one of: {', '.join(groups[key])}")


def main() -> None:
    """Console script ``spectral-sweep``."""
    try:
        check_choices(sys.argv[1:])
    except UsageError as e:
        fail(str(e))
    _job()


if __name__ == "__main__":
    main()
