"""VGG for 32x32 inputs, the way the paper trained it on CIFAR (and 28x28 grey ones, the same way).

The convolutional part follows the VGG paper's configurations A/B/D/E (11/13/16/19 weight layers).
After five 2x2 max-pools a 32x32 image is a 1x1 map, so the classifier sees 512 features and is
the small CIFAR head Dropout-Linear(512,512)-ReLU-Dropout-Linear(512,512)-ReLU-Linear(512,classes)
of the SWA code base the paper built on, instead of ImageNet's 4096-wide one. The paper's VGG-16
has no BatchNorm; the ``_bn`` variants add BatchNorm2d after every convolution.

Other inputs: ``in_channels`` (1 for MNIST-style grey images) sets the first convolution, and
the pools round up (``ceil_mode``): a 28x28 image goes 28-14-7-4-2-1, every pixel seen and the
same 512-feature head at the end, where rounding down would drop the 7x7 map's last row and
column and reach 0x0 at the fifth pool. Padding the image to 32 would work too, but spends
nearly a third more compute (32^2 / 28^2) on zeros. At 32x32 every map has an even side, so rounding up changes
nothing: the network, its initialisation and its outputs are bit for bit those of floor pooling.
A larger ``image_size`` ends on a larger map, and the head's first layer takes all of it.

Initialisation: convolutions get Kaiming-normal weights with fan_out (std sqrt(2 / (9 * out)),
the SWA/CIFAR VGG convention) and zero bias; Linear layers keep PyTorch's default. The choice of
fan_out matters for a model with no BatchNorm: it sets the scale of the initial Hessian.
"""

import torch
from torch import nn

from spectral_sweep.errors import UsageError
from spectral_sweep.models.layers import init_convs, scaled

POOL = "M"
CONFIGS = {
    11: [64, POOL, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL],
    13: [64, 64, POOL, 128, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL],
    16: [64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL,
         512, 512, 512, POOL, 512, 512, 512, POOL],
    19: [64, 64, POOL, 128, 128, POOL, 256, 256, 256, 256, POOL,
         512, 512, 512, 512, POOL, 512, 512, 512, 512, POOL],
}



class VGG(nn.Module):
    """VGG-``depth`` for CIFAR-sized input; ``width`` multiplies every channel count."""

    def __init__(self, depth: int, num_classes: int, width: float = 1.0, dropout: float = 0.5,
                 batch_norm: bool = False, in_channels: int = 3, image_size: int = 32):
        super().__init__()
        if depth not in CONFIGS:
            raise UsageError(f"VGG depth must be one of {sorted(CONFIGS)}, got {depth}")
        _check_input(in_channels, image_size)
        layers, channels, side = [], in_channels, image_size
        for item in CONFIGS[depth]:
            if item == POOL:
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
                side = (side + 1) // 2
                continue
            out = scaled(item, width)
            layers.append(nn.Conv2d(channels, out, kernel_size=3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out))
            layers.append(nn.ReLU(inplace=True))
            channels = out
        self.features = nn.Sequential(*layers)
        hidden = scaled(512, width)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(channels * side * side, hidden), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )
        init_convs(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def _check_input(in_channels, image_size) -> None:
    """The data's image shape, which the job passes in: a positive number of channels and pixels."""
    for name, value in (("in_channels", in_channels), ("image_size", image_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UsageError(f"VGG {name} must be a positive integer, got {value!r}")


def _variant(depth: int, batch_norm: bool):
    """A registry constructor for one VGG variant, exposing the user options and the data's shape."""

    def build(num_classes: int, width: float = 1.0, dropout: float = 0.5, in_channels: int = 3,
              image_size: int = 32) -> VGG:
        return VGG(depth, num_classes, width=width, dropout=dropout, batch_norm=batch_norm,
                   in_channels=in_channels, image_size=image_size)

    build.__name__ = build.__qualname__ = f"vgg{depth}" + ("_bn" if batch_norm else "")
    build.__doc__ = f"VGG-{depth} {'with' if batch_norm else 'without'} BatchNorm, CIFAR head."
    return build


vgg11, vgg13, vgg16, vgg19 = (_variant(depth, batch_norm=False) for depth in CONFIGS)
vgg11_bn, vgg13_bn, vgg16_bn, vgg19_bn = (_variant(depth, batch_norm=True) for depth in CONFIGS)
