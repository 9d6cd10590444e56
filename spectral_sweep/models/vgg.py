"""VGG for 32x32 inputs, the way the paper trained it on CIFAR.

The convolutional part follows the VGG paper's configurations A/B/D/E (11/13/16/19 weight layers).
After five 2x2 max-pools a 32x32 image is a 1x1 map, so the classifier sees 512 features and is
the small CIFAR head Dropout-Linear(512,512)-ReLU-Dropout-Linear(512,512)-ReLU-Linear(512,classes)
of the SWA code base the paper built on, instead of ImageNet's 4096-wide one. The paper's VGG-16
has no BatchNorm; the ``_bn`` variants add BatchNorm2d after every convolution.

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
                 batch_norm: bool = False):
        super().__init__()
        if depth not in CONFIGS:
            raise UsageError(f"VGG depth must be one of {sorted(CONFIGS)}, got {depth}")
        layers, channels = [], 3
        for item in CONFIGS[depth]:
            if item == POOL:
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
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
            nn.Dropout(dropout), nn.Linear(channels, hidden), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )
        init_convs(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def _variant(depth: int, batch_norm: bool):
    """A registry constructor for one VGG variant, exposing only the user options."""

    def build(num_classes: int, width: float = 1.0, dropout: float = 0.5) -> VGG:
        return VGG(depth, num_classes, width=width, dropout=dropout, batch_norm=batch_norm)

    build.__name__ = build.__qualname__ = f"vgg{depth}" + ("_bn" if batch_norm else "")
    build.__doc__ = f"VGG-{depth} {'with' if batch_norm else 'without'} BatchNorm, CIFAR head."
    return build


vgg11, vgg13, vgg16, vgg19 = (_variant(depth, batch_norm=False) for depth in CONFIGS)
vgg11_bn, vgg13_bn, vgg16_bn, vgg19_bn = (_variant(depth, batch_norm=True) for depth in CONFIGS)
