"""Pre-activation ResNets for 32x32 input (He et al. 2016, "Identity Mappings in Deep ResNets").

Any other input size works too (the head pools globally); ``in_channels`` (1 for grey images)
sets the stem convolution, the only layer that sees the image.

Three stages of n blocks with 16, 32 and 64 base channels. Basic blocks (two 3x3 convs) give
depth 6n+2; bottleneck blocks (1x1 - 3x3 - 1x1, four-fold expansion) give depth 9n+2. The paper's
"PreResNet-110" is the SWA code base's PreResNet110, which switches to bottleneck blocks at depth
>= 44, so ``block="auto"`` does the same and PreResNet-110 means n=12 bottleneck blocks per stage.
As in that code, a stage's first block projects the raw input with a bias-free 1x1 convolution
when the shape changes; the network ends with BN-ReLU-global average pool-Linear.

Initialisation: Kaiming-normal (fan_out) convolutions, BatchNorm at weight 1 / bias 0, PyTorch's
default Linear.
"""

import torch
from torch import nn

from spectral_sweep.errors import UsageError
from spectral_sweep.models.layers import init_convs, scaled

BLOCKS = ("auto", "basic", "bottleneck")



class PreActBlock(nn.Module):
    """Pre-activation residual block: (BN-ReLU-conv) repeated, plus the shortcut.

    Basic: 3x3(stride) then 3x3. Bottleneck: 1x1, 3x3(stride), 1x1 to four times ``planes``.
    """

    def __init__(self, in_channels: int, planes: int, stride: int, bottleneck: bool):
        super().__init__()
        if bottleneck:
            convs = [(planes, 1, 1), (planes, 3, stride), (4 * planes, 1, 1)]
        else:
            convs = [(planes, 3, stride), (planes, 3, 1)]
        layers, channels = [], in_channels
        for out, kernel, step in convs:
            conv = nn.Conv2d(channels, out, kernel, stride=step, padding=kernel // 2, bias=False)
            layers += [nn.BatchNorm2d(channels), nn.ReLU(inplace=True), conv]
            channels = out
        self.residual = nn.Sequential(*layers)
        self.out_channels = channels
        self.projection = None
        if stride != 1 or in_channels != channels:
            self.projection = nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.projection is None else self.projection(x)
        return self.residual(x) + shortcut


class PreResNet(nn.Module):
    """PreResNet-``depth``; ``block`` is auto (bottleneck from depth 44), basic or bottleneck."""

    def __init__(self, num_classes: int, depth: int = 110, block: str = "auto",
                 width: float = 1.0, in_channels: int = 3):
        super().__init__()
        if block not in BLOCKS:
            raise UsageError(f"PreResNet block must be one of {', '.join(BLOCKS)}, got {block!r}")
        if not isinstance(depth, int):
            raise UsageError(f"PreResNet depth must be an integer, got {depth!r}")
        bottleneck = block == "bottleneck" or (block == "auto" and depth >= 44)
        per_block = 9 if bottleneck else 6  # layers added by one more block in each of 3 stages
        if depth < 2 + per_block or (depth - 2) % per_block:
            hint = "; block=auto means bottleneck from depth 44" if block == "auto" else ""
            raise UsageError(f"PreResNet depth with {'bottleneck' if bottleneck else 'basic'} "
                             f"blocks must be {per_block}n+2 with n >= 1, got {depth}{hint}")
        blocks = (depth - 2) // per_block
        channels = scaled(16, width)
        self.stem = nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)
        stages = []
        for base, stride in ((16, 1), (32, 2), (64, 2)):
            stage = []
            for index in range(blocks):
                first_stride = stride if index == 0 else 1
                stage.append(PreActBlock(channels, scaled(base, width), first_stride, bottleneck))
                channels = stage[-1].out_channels
            stages.append(nn.Sequential(*stage))
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(channels, num_classes)
        init_convs(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.head(self.stages(self.stem(x))))
