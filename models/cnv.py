"""CNV family: the BNN-PYNQ convolutional topology (as brevitas' bnn_pynq `CNV`), with the channel
width as a parameter. mask_1w1a_0.5 is CNV with every conv and FC width divided by 2.

FINN needs this exact shape to streamline: unpadded 3x3 convs, BN -> sign after every conv/FC,
max-pool after the sign, and a TensorNorm (per-tensor affine) after the last FC.
"""

from __future__ import annotations

import torch
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear
from torch import nn

from maskbnn.models.quant import (
    CommonActQuant,
    CommonWeightQuant,
    LatentWeights,
    TensorNorm,
    input_quant,
)

# (out_channels, max-pool after) at width 1x; upstream's CNV_OUT_CH_POOL.
CONV_LAYERS = ((64, False), (64, True), (128, False), (128, True), (256, False), (256, False))
FC_LAYERS = (512, 512)  # hidden FC widths at 1x; upstream's INTERMEDIATE_FC_FEATURES
KERNEL_SIZE = 3
POOL_SIZE = 2


class CNV(LatentWeights):
    def __init__(
        self,
        num_classes: int,
        weight_bit_width: int,
        act_bit_width: int,
        in_bit_width: int,
        in_channels: int = 3,
        width: float = 1.0,
        image_size: int = 32,
    ) -> None:
        super().__init__()
        self.conv_features = nn.ModuleList()
        self.linear_features = nn.ModuleList()
        # 8-bit input in Q1.7 after the 2x-1 of forward(): the same fixed-point grid as upstream.
        self.conv_features.append(input_quant(in_bit_width))
        ch, side = in_channels, image_size
        for out_ch, pool in CONV_LAYERS:
            out_ch = scaled(out_ch, width)
            self.conv_features.append(
                QuantConv2d(
                    ch,
                    out_ch,
                    KERNEL_SIZE,
                    bias=False,
                    weight_quant=CommonWeightQuant,
                    weight_bit_width=weight_bit_width,
                )
            )
            self.conv_features.append(nn.BatchNorm2d(out_ch, eps=1e-4))
            self.conv_features.append(
                QuantIdentity(act_quant=CommonActQuant, bit_width=act_bit_width)
            )
            side -= KERNEL_SIZE - 1
            if pool:
                self.conv_features.append(nn.MaxPool2d(kernel_size=POOL_SIZE))
                side //= POOL_SIZE
            ch = out_ch
        features = ch * side * side
        for hidden in FC_LAYERS:
            hidden = scaled(hidden, width)
            self.linear_features.append(
                QuantLinear(
                    features,
                    hidden,
                    bias=False,
                    weight_quant=CommonWeightQuant,
                    weight_bit_width=weight_bit_width,
                )
            )
            self.linear_features.append(nn.BatchNorm1d(hidden, eps=1e-4))
            self.linear_features.append(
                QuantIdentity(act_quant=CommonActQuant, bit_width=act_bit_width)
            )
            features = hidden
        self.linear_features.append(
            QuantLinear(
                features,
                num_classes,
                bias=False,
                weight_quant=CommonWeightQuant,
                weight_bit_width=weight_bit_width,
            )
        )
        self.linear_features.append(TensorNorm())
        self.init_latent_weights()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = 2.0 * x - 1.0  # [0, 1] image -> [-1, 1), as upstream
        for m in self.conv_features:
            x = m(x)
        x = x.flatten(1)
        for m in self.linear_features:
            x = m(x)
        return x


def scaled(channels: int, width: float) -> int:
    out = int(round(channels * width))
    if out < 1 or abs(out - channels * width) > 1e-6:
        raise ValueError(f"width {width} does not divide {channels} channels")
    return out
