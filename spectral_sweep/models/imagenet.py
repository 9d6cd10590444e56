"""ImageNet-style models (224x224 input) from torchvision, always freshly initialised.

ImageNet studies compare against the standard architectures, so these wrap torchvision's
definitions and initialisation rather than re-implementing them; ``weights=None`` always, so
nothing is downloaded. torchvision is imported where a model is built, not with this module: the
zoo imports every preset's module, and torchvision's models (which pull in torch._dynamo) would
add seconds to every command's start, a CIFAR-sized sweep's included.
torchvision's ResNet and VGG fix their channel counts (ResNet's ``width_per_group`` widens only
the bottleneck's inner convolution, not every layer), so ``width`` exists only to give a clear
error: anything other than 1.0 is refused instead of silently building a different model.
"""

from torch import nn

from spectral_sweep.errors import UsageError


def _full_width(name: str, width: float) -> None:
    """Refuse a width multiplier, which torchvision's definitions cannot honour."""
    if width != 1.0:
        raise UsageError(f"model '{name}' supports only width 1.0 (torchvision definition), "
                         f"got {width}; use a CIFAR-style model for reduced-width runs")


def resnet18_imagenet(num_classes: int, width: float = 1.0) -> nn.Module:
    """torchvision ResNet-18 (basic blocks, 11.7M parameters at 1000 classes)."""
    _full_width("resnet18_imagenet", width)
    from torchvision import models

    return models.resnet18(weights=None, num_classes=num_classes)


def resnet50_imagenet(num_classes: int, width: float = 1.0) -> nn.Module:
    """torchvision ResNet-50 (bottleneck blocks, 25.6M parameters at 1000 classes)."""
    _full_width("resnet50_imagenet", width)
    from torchvision import models

    return models.resnet50(weights=None, num_classes=num_classes)


def vgg16_imagenet(num_classes: int, width: float = 1.0, dropout: float = 0.5) -> nn.Module:
    """torchvision VGG-16, no BatchNorm, 4096-wide classifier (138M parameters at 1000 classes)."""
    _full_width("vgg16_imagenet", width)
    from torchvision import models

    return models.vgg16(weights=None, num_classes=num_classes, dropout=dropout)
