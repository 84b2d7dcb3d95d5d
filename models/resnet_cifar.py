"""Binary ResNets for CIFAR-scale (32x32) inputs, built from one unit: a binary 3x3 conv with its own
shortcut (the "1-layer-per-block" connection of Bi-Real Net, also IR-Net's CIFAR ResNet-20 block):

    y = stream( BN( [LearnedScale] ( bconv( act(x) ) ) ) + shortcut(x) )

act is the sign (the method's estimator; RSign with method.rsign), stream the non-linearity of the
real-valued residual stream: Hardtanh for ResNet-20 as IR-Net's code, none for Bi-Real, RPReLU
whenever method.rprelu (ReActNet). Two units make one basic block.

ResNet20      IR-Net (Qin et al., CVPR 2020; htqin/IR-Net CIFAR-10/ResNet20/1w1a/resnet.py):
              conv(16)-BN-Hardtanh stem, 3 stages x 3 blocks of 16/32/64 channels, downsampling
              shortcut "option A" of He et al. 2016 (stride-2 subsampling, zero-padded channels:
              parameter-free), global average pool, BatchNorm1d, FC.
ResNet18Cifar Bi-Real-18 / ReActNet-18 blocks (Liu et al., "Bi-Real Net", ECCV 2018; Liu et al.,
              "ReActNet", ECCV 2020) at CIFAR scale: conv(64)-BN stem (3x3, stride 1, no max-pool),
              4 stages x 2 blocks of 64/128/256/512 channels, downsampling shortcut as Bi-Real's
              code: AvgPool(2) + real-valued 1x1 conv + BN; global average pool, FC.

`width` scales every channel count; first conv and FC are full precision or 8-bit (method.first_last).
The [0, 1] image enters as 2x - 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from maskbnn.models.binarize import (
    clip_binary_weights,
    first_conv,
    init_weights,
    last_linear,
    make_activation,
    make_conv,
)
from maskbnn.models.cnv import scaled
from maskbnn.models.method import BinaryMethod
from maskbnn.models.react import LearnedScale, RPReLU


class ShortcutA(nn.Module):
    """He et al.'s option A: x[:, :, ::2, ::2] with the new channels zero-padded (no parameters)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.before = (cout - cin) // 2
        self.after = cout - cin - self.before

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.before, self.after))


def shortcut_bireal(cin: int, cout: int, stride: int) -> nn.Module:
    """Bi-Real's downsampling shortcut: AvgPool(2) + real-valued 1x1 conv + BN."""
    layers: list[nn.Module] = [nn.AvgPool2d(2)] if stride == 2 else []
    layers += [nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers)


class BinaryUnit(nn.Module):
    """One binary conv with its own shortcut; see the module docstring."""

    def __init__(
        self,
        method: BinaryMethod,
        cin: int,
        cout: int,
        stride: int,
        stream: str,
        shortcut: str,
    ) -> None:
        super().__init__()
        self.act = make_activation(method, cin)
        self.conv = make_conv(method, cin, cout, 3, stride, 1)
        self.scale = LearnedScale(cout) if method.learned_scale else nn.Identity()
        self.bn = nn.BatchNorm2d(cout)
        if stride == 1 and cin == cout:
            self.shortcut: nn.Module = nn.Identity()
        elif shortcut == "A":
            self.shortcut = ShortcutA(cin, cout, stride)
        else:
            self.shortcut = shortcut_bireal(cin, cout, stride)
        self.stream = stream_activation(method, stream, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.scale(self.conv(self.act(x))))
        return self.stream(y + self.shortcut(x))


def stream_activation(method: BinaryMethod, kind: str, channels: int) -> nn.Module:
    if method.rprelu:
        return RPReLU(channels)
    return nn.Hardtanh() if kind == "hardtanh" else nn.Identity()


class BasicBlock(nn.Sequential):
    """Two units: 3x3 (stride s) and 3x3, each around its own shortcut."""

    def __init__(
        self, method: BinaryMethod, cin: int, cout: int, stride: int, stream: str, sc: str
    ):
        super().__init__(
            BinaryUnit(method, cin, cout, stride, stream, sc),
            BinaryUnit(method, cout, cout, 1, stream, sc),
        )


class _CifarResNet(nn.Module):
    STAGES: tuple[int, ...] = ()
    BLOCKS = 0
    STREAM = "identity"
    SHORTCUT = "bireal"

    def __init__(
        self,
        method: BinaryMethod | None = None,
        num_classes: int = 10,
        in_channels: int = 3,
        width: float = 1.0,
        image_size: int = 32,  # any size: global average pooling at the end
    ) -> None:
        super().__init__()
        method = method or BinaryMethod()
        self.method = method
        ch = scaled(self.STAGES[0], width)
        self.stem = self._stem(method, in_channels, ch)
        stages = []
        for i, planes in enumerate(self.STAGES):
            out = scaled(planes, width)
            blocks = []
            for b in range(self.BLOCKS):
                stride = 2 if i > 0 and b == 0 else 1
                blocks.append(BasicBlock(method, ch, out, stride, self.STREAM, self.SHORTCUT))
                ch = out
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = self._head(ch)
        self.fc = last_linear(method, ch, num_classes)
        init_weights(self)

    def _stem(self, method: BinaryMethod, cin: int, ch: int) -> nn.Module:
        return nn.Sequential(first_conv(method, cin, ch), nn.BatchNorm2d(ch))

    def _head(self, ch: int) -> nn.Module:
        return nn.Identity()

    def clip_weights(self, low: float, high: float) -> None:
        clip_binary_weights(self, low, high)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(2.0 * x - 1.0))
        return self.fc(self.head(self.pool(x).flatten(1)))


class ResNet20(_CifarResNet):
    """IR-Net's ResNet-20 (see the module docstring). With method.first_last = "int8" the pooled
    features are binarised before the 8-bit FC (FINN: 1-bit inputs x 8-bit weights)."""

    STAGES = (16, 32, 64)
    BLOCKS = 3
    STREAM = "hardtanh"
    SHORTCUT = "A"

    def _stem(self, method: BinaryMethod, cin: int, ch: int) -> nn.Module:
        return nn.Sequential(
            first_conv(method, cin, ch),
            nn.BatchNorm2d(ch),
            stream_activation(method, "hardtanh", ch),
        )

    def _head(self, ch: int) -> nn.Module:
        head: list[nn.Module] = [nn.BatchNorm1d(ch)]  # IR-Net's bn2 before the FC
        if self.method.first_last == "int8":
            head.append(make_activation(self.method, ch))
        return nn.Sequential(*head)


class ResNet18Cifar(_CifarResNet):
    """ResNet-18 with Bi-Real blocks; with rsign + rprelu it is ReActNet-18's block (see above)."""

    STAGES = (64, 128, 256, 512)
    BLOCKS = 2
    STREAM = "identity"
    SHORTCUT = "bireal"

    def _head(self, ch: int) -> nn.Module:
        if self.method.first_last == "int8":
            return make_activation(self.method, ch)
        return nn.Identity()
