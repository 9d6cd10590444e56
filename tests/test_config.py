"""The typed config: every preset lands in its schema, every default lives in one place, and a
value of the wrong type or meaning is refused before any work."""

import dataclasses
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from spectral_sweep import config as schema
from spectral_sweep.config.base import CONFIG_DIR
from spectral_sweep.errors import UsageError

NAMES_THE_CHOICE = {"name", "method", "enabled", "operator"}   # a preset says what it is, even when a default


def presets():
    for folder in sorted(Path(CONFIG_DIR).iterdir()):
        if folder.is_dir() and folder.name != "experiment":
            for path in sorted(folder.glob("*.yaml")):
                yield folder.name, path.stem


@pytest.mark.parametrize("group, option", list(presets()))
def test_every_preset_composes_into_its_typed_schema(group, option):
    config = schema.compose(f"{group}={option}")
    node = getattr(config, group)
    assert dataclasses.is_dataclass(node)
    json.dumps(config.to_dict())                      # plain JSON all the way down
    if group in schema.SCHEMAS:                       # the preset names its own schema
        (kind,) = [k for k, cls in schema.SCHEMAS[group].items() if type(node) is cls]
        parents = OmegaConf.load(Path(CONFIG_DIR) / group / f"{option}.yaml").get("defaults", [])
        siblings = {o for g, o in presets() if g == group}          # or a preset that names it
        assert f"/schema/{group}/{kind}@_here_" in parents or any(p in siblings for p in parents)


@pytest.mark.parametrize("group, option", list(presets()))
def test_no_preset_repeats_a_default(group, option):
    """A preset sets only what differs from the schema: the default lives in config/ alone."""
    values = OmegaConf.to_container(OmegaConf.load(Path(CONFIG_DIR) / group / f"{option}.yaml"))
    values.pop("defaults", None)
    node = getattr(schema.compose(f"{group}={option}"), group)
    defaults = {f.name: f.default for f in dataclasses.fields(type(node)) if f.default is not dataclasses.MISSING}
    repeated = [k for k, v in values.items() if k in defaults and defaults[k] == v and k not in NAMES_THE_CHOICE]
    assert not repeated, f"{group}/{option}.yaml repeats the schema's defaults of {repeated}"


def test_choice_specific_options_are_the_constructors_keywords():
    assert schema.compose("model=preresnet110").model.options() == {"width": 1.0, "depth": 110, "block": "auto"}
    assert schema.compose("dataset=synthetic_small").dataset.options()["train_size"] == 4096
    assert "betas" in schema.compose("optimizer=adam").optimizer.options()
    assert "learner" not in schema.compose("optimizer=lanczos_sgd").optimizer.options()


def test_the_budget_is_the_trains_else_the_datasets():
    assert schema.compose("dataset=cifar100").train.budget(schema.compose("dataset=cifar100").dataset) == \
        schema.Budget(epochs=10)
    quick = schema.compose("experiment=quickstart")
    assert quick.train.budget(quick.dataset) == schema.Budget(steps=200)


@pytest.mark.parametrize("override, message", [
    ("seed=abc", "could not be converted to Integer"),
    ("train.precision=bogus", "expected one of [auto, fp32, bf16]"),
    ("search.method=golden", "expected one of"),
    ("dataset=cifar100 dataset.train_size=5", "train_size"),
])
def test_wrong_types_and_keys_are_refused_by_the_schema(override, message):
    with pytest.raises(Exception) as caught:
        schema.compose(*override.split())
    assert message in str(caught.value) + str(caught.value.__cause__)


@pytest.mark.parametrize("override, message", [
    ("batch=0", "batch must be a positive integer"),
    ("seed=-1", "seed must be an integer >= 0"),
    ("optimizer.lr=inf", "optimizer.lr must be a positive number"),
    ("optimizer.momentum=-1", "optimizer.momentum must be a number in [0, 1)"),
    ("optimizer.weight_decay=-1", "optimizer.weight_decay must be a number >= 0"),
    ("train.steps=1.5", "train.steps"),
    ("train.micro_batch=0", "train.micro_batch must be a positive integer"),
    ("train.micro_batch=256", "at most batch=128"),
    ("spectrum=hessian spectrum.n_batches=0", "spectrum.n_batches"),
    ("spectrum=hessian spectrum.iters=0", "spectrum.iters"),
    ("spectrum=hessian spectrum.at=checkpoint", "spectrum.checkpoint=FILE"),
    ("spectrum=hessian spectrum.at=checkpoint spectrum.checkpoint=/no/such.pt", "/no/such.pt"),
    ("search=grid search.lrs=[0.1,-1]", "search.lrs"),
])
def test_meaningless_values_are_one_usage_error(override, message):
    try:
        config = schema.compose(*override.split())
    except Exception as e:            # refused already by its type (e.g. 1.5 for an integer)
        assert message.split()[0] in str(e) + str(e.__cause__)
        return
    with pytest.raises(UsageError) as caught:
        schema.check(config)
    assert message in str(caught.value)


def test_the_default_config_passes_its_own_checks():
    for option in ("sgd", "adam", "lanczos_sgd"):
        schema.check(schema.compose(f"optimizer={option}", "spectrum=hessian"))


def test_a_python_caller_gets_the_optimizer_the_command_line_gets():
    """build_optimizer's defaults are the schema's: no second set of numbers in trial/optim.py."""
    import torch

    from spectral_sweep.trial.optim import build_optimizer

    p = [torch.nn.Parameter(torch.zeros(2))]
    for name in ("sgd", "adam", "adamw", "lanczos_sgd"):
        options = schema.compose(f"optimizer={name}").optimizer.options()
        from_python = build_optimizer(name, p, 0.1).defaults
        from_cli = build_optimizer(params=p, lr=0.1, **options).defaults
        assert from_python == from_cli, name
    assert build_optimizer("sgd", p, 0.1).defaults["weight_decay"] == 5e-4
    assert type(build_optimizer("adamw", p, 0.1)) is torch.optim.AdamW
    assert build_optimizer("adamw", p, 0.1).defaults["weight_decay"] == 0.01


def test_the_law_under_test_comes_from_optimizer_law_or_the_family():
    assert schema.compose("optimizer=sgd").optimizer.exponent() == 1.0
    assert schema.compose("optimizer=adamw").optimizer.exponent() == 0.5
    assert schema.compose("optimizer=sgd", "optimizer.law=sqrt").optimizer.exponent() == 0.5
    assert schema.compose("optimizer=adam", "optimizer.law=0.75").optimizer.exponent() == 0.75
