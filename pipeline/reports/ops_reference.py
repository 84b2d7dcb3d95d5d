"""Reference ImageNet Bi-Real Net (Liu et al., ECCV 2018) in plain torch, for checking the operations
count (`maskbnn.pipeline.reports.ops_count`) against the published figures.

The topology is the authors' PyTorch release (github.com/liuzechun/Bi-Real-net,
`pytorch_implementation/BiReal18_34/birealnet.py`), which ReActNet reuses for its ResNet results:

- 224x224 RGB input; a real-valued 7x7 stride-2 conv (3 -> 64) + BN + 3x3 stride-2 max-pool;
- four stages (64, 128, 256, 512 channels) of "1-layer-per-block" blocks: sign(x) -> binary 3x3
  conv -> BN, plus a real-valued identity shortcut around every binary conv. Bi-Real-18 has 4 such
  blocks per stage, i.e. the 2 basic blocks of 2 convs of ResNet-18 (16 binary convs in all);
- the first block of stages 2-4 halves the resolution (binary conv stride 2) and its shortcut is
  real-valued: 2x2 average pool + 1x1 conv + BN;
- global average pool and a real-valued FC 512 -> 1000.

So the real-valued (FLOPs) layers are the first conv, the three 1x1 downsampling convs and the FC;
the binary (BOPs) layers are the 16 3x3 convs, marked with ``is_binary = True``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Bi-Real-18 on ImageNet as published (Bi-Real Net, ECCV 2018; repeated in Real-to-Binary, ICLR 2020,
# and ReActNet, ECCV 2020): BOPs, FLOPs, and OPs = BOPs/64 + FLOPs.
PUBLISHED_BIREAL18 = {"bops": 1.68e9, "flops": 1.39e8, "ops": 1.63e8}
# Full-precision ResNet-18: "1.8 x 10^9 FLOPs" (multiply-adds; He et al., CVPR 2016, Table 1).
PUBLISHED_RESNET18_FLOPS = 1.8e9

BIREAL18_BLOCKS = (4, 4, 4, 4)  # binary convs per stage (1 conv per Bi-Real block)
IMAGENET_INPUT = (3, 224, 224)


class RefBinaryConv2d(nn.Conv2d):
    """sign(input) convolved with sign(weight) times the per-output-channel mean |weight|."""

    is_binary = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight.abs().mean(dim=(1, 2, 3), keepdim=True)
        return self._conv_forward(torch.sign(x), torch.sign(self.weight) * scale, self.bias)


class BiRealBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int, binary: bool) -> None:
        super().__init__()
        conv = RefBinaryConv2d if binary else nn.Conv2d
        self.conv = conv(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.AvgPool2d(kernel_size=2, stride=stride),
                nn.Conv2d(in_ch, out_ch, 1, bias=False),
                nn.BatchNorm2d(out_ch),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.bn(self.conv(x)) + shortcut


class BiRealNet(nn.Module):
    """Bi-Real Net for ImageNet; ``binary=False`` gives the same network with real-valued convs
    (ResNet-18/34's multiply-accumulate count)."""

    def __init__(
        self,
        blocks: tuple[int, ...] = BIREAL18_BLOCKS,
        num_classes: int = 1000,
        binary: bool = True,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        stages = []
        ch = 64
        for i, n in enumerate(blocks):
            out_ch = 64 * 2**i
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                stages.append(BiRealBlock(ch, out_ch, stride, binary))
                ch = out_ch
        self.blocks = nn.Sequential(*stages)
        self.fc = nn.Linear(ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.bn1(self.conv1(x)))
        x = self.blocks(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


def bireal18(binary: bool = True) -> nn.Module:
    return BiRealNet(BIREAL18_BLOCKS, binary=binary)
