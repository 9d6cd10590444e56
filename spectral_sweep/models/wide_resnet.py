"""Wide residual networks (Zagoruyko & Komodakis, 2016) for 32x32 input.

Any other input size works too (the head pools globally); ``in_channels`` (1 for grey images)
sets the stem convolution, the only layer that sees the image.

WRN-depth-k has three stages of (depth - 4) / 6 pre-activation basic blocks with 16k, 32k and 64k
channels. The block follows the authors' official code: BN-ReLU-conv3x3(stride)-BN-ReLU-dropout-
conv3x3, bias-free convolutions, and where the shape changes a 1x1 projection of the block's
pre-activated input instead of the identity.

Initialisation: Kaiming-normal (fan_out) convolutions, BatchNorm at weight 1 / bias 0, PyTorch's
default Linear.
"""

import torch
from torch import nn

from spectral_sweep.errors import UsageError
from spectral_sweep.models.layers import init_convs, scaled


class WideBlock(nn.Module):
    """Pre-activation basic block; the shortcut reuses the pre-activation when it projects."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, dropout: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.projection = None
        if stride != 1 or in_channels != out_channels:
            self.projection = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = self.relu(self.bn1(x))
        out = self.conv2(self.dropout(self.relu(self.bn2(self.conv1(activated)))))
        shortcut = x if self.projection is None else self.projection(activated)
        return out + shortcut


class WideResNet(nn.Module):
    """WRN-``depth``-``widen_factor``; ``width`` further multiplies every channel count."""

    def __init__(self, num_classes: int, depth: int = 28, widen_factor: int = 10,
                 dropout: float = 0.0, width: float = 1.0, in_channels: int = 3):
        super().__init__()
        if not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
            raise UsageError("WideResNet depth must be 6n+4 with n >= 1 (10, 16, 22, 28, ...), "
                             f"got {depth!r}")
        if not isinstance(widen_factor, int) or widen_factor < 1:
            raise UsageError(f"WideResNet widen_factor must be a positive integer, "
                             f"got {widen_factor!r}")
        blocks = (depth - 4) // 6
        channels = scaled(16, width)
        self.stem = nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)
        stages = []
        for base, stride in ((16, 1), (32, 2), (64, 2)):
            out = scaled(base * widen_factor, width)
            stage = []
            for index in range(blocks):
                stage.append(WideBlock(channels, out, stride if index == 0 else 1, dropout))
                channels = out
            stages.append(nn.Sequential(*stage))
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(channels, num_classes)
        init_convs(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.head(self.stages(self.stem(x))))
