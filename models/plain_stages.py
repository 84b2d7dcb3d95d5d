"""Pieces the plain-PyTorch VGG-Small and AlexNet-style networks share: a binary stage
([RPReLU] - sign - binary conv - [LearnedScale] - BN and max-pool in the network's order) and the
base class with the sign -> FC head, weight clipping and the forward."""

from __future__ import annotations

import torch
from torch import nn

from maskbnn.models.binarize import (
    clip_binary_weights,
    init_weights,
    last_input,
    last_linear,
    make_activation,
    make_conv,
)
from maskbnn.models.method import BinaryMethod
from maskbnn.models.react import LearnedScale, RPReLU


def binary_stage(
    method: BinaryMethod, cin: int, cout: int, kernel: int, pool: bool, pool_before_bn: bool
) -> nn.Sequential:
    """One binary conv stage; "same" padding (with method.pad_value), a 2x2 max-pool if `pool`,
    before the BatchNorm (IR-Net's VGG-Small) or after it (the AlexNet seed)."""
    layers: list[nn.Module] = [RPReLU(cin)] if method.rprelu else []
    layers += [
        make_activation(method, cin),
        make_conv(method, cin, cout, kernel, padding=kernel // 2),
    ]
    if method.learned_scale:
        layers.append(LearnedScale(cout))
    bn, pools = [nn.BatchNorm2d(cout)], [nn.MaxPool2d(2)] if pool else []
    layers += pools + bn if pool_before_bn else bn + pools
    return nn.Sequential(*layers)


class StagedBinaryNet(nn.Module):
    """stem -> binary stages -> sign (or Hardtanh) -> FC; subclasses build stem and features and
    call `_head`."""

    stem: nn.Module
    features: nn.Module

    def _head(self, method: BinaryMethod, channels: int, side: int, num_classes: int) -> None:
        self.head_act = last_input(method, channels)
        self.fc = last_linear(method, channels * side * side, num_classes)
        init_weights(self)

    def clip_weights(self, low: float, high: float) -> None:
        clip_binary_weights(self, low, high)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.stem(2.0 * x - 1.0))  # [0, 1] image -> [-1, 1)
        return self.fc(self.head_act(x).flatten(1))
