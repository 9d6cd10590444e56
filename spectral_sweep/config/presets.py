"""The built-in presets read as plain YAML: the one list of model and dataset names outside Hydra.

``build_model("vgg16", ...)`` and ``load_dataset("cifar100")`` find their constructor in the same
file the command line composes (``conf/<group>/<name>.yaml``), so a name and its ``_target_`` exist
once. Plain YAML, not Hydra: a Python caller inside a running Hydra job can read them too.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, fields
from pathlib import Path

from spectral_sweep.config.base import CONFIG_DIR

_SCHEMA_ENTRY = re.compile(r"^/schema/(?P<group>\w+)/(?P<kind>\w+)@_here_$")


@dataclass(frozen=True)
class Preset:
    """One preset file: its name (the file's stem), ``_target_``, schema, and the values it sets."""

    name: str
    target: str
    schema: type
    values: dict

    def config(self, **overrides):
        """The group's typed config as this preset sets it, with ``overrides`` on top."""
        own = {f.name for f in fields(self.schema)}
        return self.schema(**{k: v for k, v in {**self.values, **overrides}.items() if k in own})

    def options(self) -> dict:
        """The target's keyword arguments: the schema's defaults, overridden by the preset."""
        return self.config().options()


@functools.cache
def presets(group: str) -> dict[str, Preset]:
    """Every built-in preset of ``group`` (model or dataset), by file stem."""
    from spectral_sweep.config.schema import SCHEMAS

    found = {}
    for path in sorted((Path(CONFIG_DIR) / group).glob("*.yaml")):
        kind, values = _read(group, path.stem)
        found[path.stem] = Preset(path.stem, values.pop("_target_"), SCHEMAS[group][kind], values)
    return found


def _read(group: str, stem: str) -> tuple[str | None, dict]:
    """(schema kind, values) of one preset, with the presets it builds on (``defaults: [synthetic]``)
    merged under its own values, as Hydra would."""
    from omegaconf import OmegaConf

    values = OmegaConf.to_container(OmegaConf.load(Path(CONFIG_DIR) / group / f"{stem}.yaml"))
    kind, merged = None, {}
    for entry in values.pop("defaults", []):
        if not isinstance(entry, str) or entry == "_self_":
            continue
        if (match := _SCHEMA_ENTRY.match(entry)) and match["group"] == group:
            kind = match["kind"]
        elif "/" not in entry:
            kind, base = _read(group, entry)
            merged.update(base)
    return kind or "plain", {**merged, **values}
