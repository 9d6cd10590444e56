"""What the CIFAR models share: the width multiplier and the convolution initialisation."""

from torch import nn


def scaled(channels: int, width: float) -> int:
    """A channel count times the width multiplier, rounded, never below one channel."""
    return max(1, round(channels * width))


def init_convs(model: nn.Module) -> None:
    """Kaiming-normal (fan_out) conv weights, zero conv biases: the SWA/CIFAR convention.

    With no BatchNorm (the paper's VGG-16) this choice sets the scale of the initial Hessian.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
