"""The model zoo: the presets' names mapped to their constructors, and the one way to build them.

``build_model(name, num_classes, **options)`` is the entry point. The options are the
constructor's keyword arguments, exactly the keys of ``conf/model/<choice>.yaml`` minus ``name``;
they are checked here so that a typo or a bad value in a config is a one-line ``UsageError``
instead of a ``TypeError`` from deep inside a constructor.

CIFAR-style models (vgg*, wide_resnet, preresnet) take 32x32 input and a ``width`` multiplier
for every channel count, so that CPU runs can use narrow copies of the paper's networks. The
``*_imagenet`` models are torchvision's definitions for 224x224 input and accept only width 1.0.

What the data decides is not a config option: besides ``num_classes``, ``build_target`` hands a
model its images' ``in_channels`` and ``image_size`` (``FROM_DATA``) where its signature names
them, so the CIFAR-style models take 28x28 grey images as they are. A model that cannot take
``in_channels`` still gets 3-channel data unchanged; other data is one ``UsageError`` for it.
"""

import dataclasses
import inspect

from torch import nn

from spectral_sweep.errors import UsageError, unknown_choice

FROM_DATA = ("in_channels", "image_size")   # the data's image shape, passed where a model names it


def _zoo() -> dict:
    """The zoo's names: each built-in preset's ``name`` and the constructor its ``_target_`` names
    (conf/model/ is the one list; ``model=wrn28_10`` is WideResNet's preset, named wide_resnet)."""
    from spectral_sweep.config import targets
    from spectral_sweep.config.presets import presets

    zoo = {}
    for preset in presets("model").values():
        zoo.setdefault(preset.values["name"], (targets.locate(preset.target, "model._target_"), preset.schema))
    return zoo


ZOO = _zoo()                  # name -> (constructor, the schema that declares its options' ranges)
MODELS = {name: constructor for name, (constructor, _) in ZOO.items()}
MODEL_NAMES = tuple(sorted(MODELS))


def _range_problem(schema, options: dict) -> str | None:
    """The first option outside the range its schema declares (width > 0, dropout in [0, 1), ...)."""
    for f in dataclasses.fields(schema):
        valid = f.metadata.get("range")
        if f.name in options and valid is not None and (problem := valid.problem(f"model.{f.name}", options[f.name])):
            return problem
    return None


def build_model(name: str, num_classes: int, **options) -> nn.Module:
    """A freshly initialised model ``name`` with ``num_classes`` outputs, set up by ``options``.
    ``name`` is a short name of the zoo, or the dotted path of any callable (``model._target_``)
    that takes ``num_classes`` and the options and returns an ``nn.Module``."""
    if "." in name:
        return build_target(name, num_classes, **options)
    if name not in MODELS:
        raise unknown_choice("model", name, MODEL_NAMES)
    constructor = MODELS[name]
    parameters = [key for key in inspect.signature(constructor).parameters if key != "num_classes"]
    accepted = [key for key in parameters if key not in FROM_DATA]   # what a preset may set
    unknown = sorted(set(options) - set(parameters))
    if unknown:
        raise UsageError(f"model '{name}' has no option {', '.join(unknown)}; "
                         f"its options are: {', '.join(accepted)}")
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise UsageError(f"num_classes must be a positive integer, got {num_classes!r}")
    problem = _range_problem(ZOO[name][1], options)
    if problem:
        raise UsageError(problem)
    return constructor(num_classes, **options)


def build_target(path: str, num_classes: int, input_shape: tuple[int, int | None] = (3, None),
                 **options) -> nn.Module:
    """The model that ``model._target_=path`` names, called with ``num_classes``, the data's
    ``input_shape`` (channels, image side; see ``data_inputs``) and ``options``; an import, its
    arguments or a result that is not an ``nn.Module`` is one ``UsageError`` line."""
    from spectral_sweep.config import targets

    target = targets.locate(path, "model._target_")
    model = targets.call(target, "model._target_", path, num_classes=num_classes,
                         **data_inputs(target, path, *input_shape, options), **options)
    if not isinstance(model, nn.Module):
        raise UsageError(f"model._target_={path} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def data_inputs(target, path: str, in_channels: int, image_size: int | None, options: dict) -> dict:
    """``in_channels`` and ``image_size`` for a model ``target``, where its signature names them
    (a preset's own value wins). 3 channels are what every model before these arguments assumed,
    so a target without ``in_channels`` builds as it always did; any other number it must take."""
    from spectral_sweep.config import targets

    try:
        named = set(inspect.signature(target).parameters)
    except (TypeError, ValueError):   # no signature to read: it may take anything
        named = set()
    given = {}
    if "in_channels" in named or (in_channels != 3 and targets.accepts(target, "in_channels")):
        given["in_channels"] = in_channels
    elif in_channels != 3 and "in_channels" not in options:
        raise UsageError(f"model._target_={path} takes no in_channels, but the data's images have {in_channels} "
                         f"channel{'s' * (in_channels != 1)}; give the constructor an in_channels argument, "
                         "or use 3-channel data")
    if image_size is not None and "image_size" in named:
        given["image_size"] = image_size
    return {k: v for k, v in given.items() if k not in options}
