"""The model zoo: user-facing names mapped to constructors, and the one way to build them.

``build_model(name, num_classes, **options)`` is the entry point. The options are the
constructor's keyword arguments, exactly the keys of ``conf/model/<choice>.yaml`` minus ``name``;
they are checked here so that a typo or a bad value in a config is a one-line ``UsageError``
instead of a ``TypeError`` from deep inside a constructor.

CIFAR-style models (vgg*, wide_resnet, preresnet) take 32x32 input and a ``width`` multiplier
for every channel count, so that CPU runs can use narrow copies of the paper's networks. The
``*_imagenet`` models are torchvision's definitions for 224x224 input and accept only width 1.0.
"""

import inspect
import numbers

from torch import nn

from spectral_sweep.errors import UsageError, unknown_choice
from spectral_sweep.models import imagenet, vgg
from spectral_sweep.models.preresnet import PreResNet
from spectral_sweep.models.wide_resnet import WideResNet

MODELS = {
    "vgg11": vgg.vgg11,
    "vgg13": vgg.vgg13,
    "vgg16": vgg.vgg16,
    "vgg19": vgg.vgg19,
    "vgg11_bn": vgg.vgg11_bn,
    "vgg13_bn": vgg.vgg13_bn,
    "vgg16_bn": vgg.vgg16_bn,
    "vgg19_bn": vgg.vgg19_bn,
    "wide_resnet": WideResNet,
    "preresnet": PreResNet,
    "resnet18_imagenet": imagenet.resnet18_imagenet,
    "resnet50_imagenet": imagenet.resnet50_imagenet,
    "vgg16_imagenet": imagenet.vgg16_imagenet,
}
MODEL_NAMES = tuple(MODELS)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def build_model(name: str, num_classes: int, **options) -> nn.Module:
    """A freshly initialised model ``name`` with ``num_classes`` outputs, set up by ``options``.
    ``name`` is a short name of the zoo, or the dotted path of any callable (``model._target_``)
    that takes ``num_classes`` and the options and returns an ``nn.Module``."""
    if "." in name:
        return build_target(name, num_classes, **options)
    if name not in MODELS:
        raise unknown_choice("model", name, MODEL_NAMES)
    constructor = MODELS[name]
    accepted = [key for key in inspect.signature(constructor).parameters if key != "num_classes"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise UsageError(f"model '{name}' has no option {', '.join(unknown)}; "
                         f"its options are: {', '.join(accepted)}")
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise UsageError(f"num_classes must be a positive integer, got {num_classes!r}")
    width = options.get("width", 1.0)
    if not _is_real(width) or width <= 0:
        raise UsageError(f"model width must be a positive number, got {width!r}")
    dropout = options.get("dropout", 0.0)
    if not _is_real(dropout) or not 0 <= dropout < 1:
        raise UsageError(f"model dropout must lie in [0, 1), got {dropout!r}")
    return constructor(num_classes, **options)


def build_target(path: str, num_classes: int, **options) -> nn.Module:
    """The model that ``model._target_=path`` names, called with ``num_classes`` and ``options``;
    an import, its arguments or a result that is not an ``nn.Module`` is one ``UsageError`` line."""
    from spectral_sweep import targets

    model = targets.call(targets.locate(path, "model._target_"), "model._target_", path,
                         num_classes=num_classes, **options)
    if not isinstance(model, nn.Module):
        raise UsageError(f"model._target_={path} returned a {type(model).__name__}, not a torch.nn.Module")
    return model
