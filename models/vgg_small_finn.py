"""VGG-Small in the form FINN can carry: the IR-Net VGG-Small (Qin et al., "Forward and Backward
Information Retention for Accurate Binary Neural Networks", CVPR 2020) rebuilt from the same
Brevitas pieces as CNV, so the FINN flow (streamline -> XNOR-popcount MVAUs -> thresholds) maps it.

What changes against the paper's network, and why:
- Order conv -> BN -> sign -> max-pool (the paper pools before BN): FINN folds BN + sign into
  thresholds only when nothing sits between them; a max-pool of signs equals the sign of a max-pool
  only for a monotone BN, which a negative BN scale breaks.
- Binary convs pad with -1, not 0. The hardware streams binary activations as bits where 0 means
  -1, and FINN's padding unit inserts bit 0; a network trained with PyTorch's zero padding is
  evaluated in hardware with -1 borders (the "padding trap": the golden chain catches it, see
  tests/test_vgg_small_finn.py). `BipolarPad` pads with `pad_value` (-1 by default); pad_value 0
  builds the convs with PyTorch's own padding=1, as a PyTorch user would, to show that trap.
- The first conv is unpadded: the input's affine pre-processing (x/255, 2x-1) must move past that
  conv during streamlining, and FINN refuses to move an Add past a zero-padded conv.
- First and last layers take 8-bit weights (`first_last_weight_bits`), the papers keep them real.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear
from torch import nn

from maskbnn.models.cnv import scaled
from maskbnn.models.quant import (
    CommonActQuant,
    CommonWeightQuant,
    LatentWeights,
    TensorNorm,
    input_quant,
)

# (out_channels at width 1x, padded, max-pool after): IR-Net's VGG-Small, 128-128-256-256-512-512.
CONV_LAYERS = (
    (128, False, False),
    (128, True, True),
    (256, True, False),
    (256, True, True),
    (512, True, False),
    (512, True, True),
)
KERNEL_SIZE = 3


def map_classifier(features: int, num_classes: int, weight_bits: int) -> nn.Sequential:
    """The last layer of the FINN forms: an FC over the whole feature map with `weight_bits`
    weights, then CNV's TensorNorm (a per-tensor affine FINN absorbs into the TopK)."""
    return nn.Sequential(
        QuantLinear(
            features,
            num_classes,
            bias=False,
            weight_quant=CommonWeightQuant,
            weight_bit_width=weight_bits,
        ),
        TensorNorm(),
    )


class BipolarPad(nn.Module):
    """Constant padding of a +-1 feature map with `pad_value` (-1 matches the hardware)."""

    def __init__(self, amount: int, pad_value: float = -1.0) -> None:
        super().__init__()
        self.amount = amount
        self.pad_value = pad_value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, (self.amount,) * 4, value=self.pad_value)


class VGGSmallFINN(LatentWeights):
    def __init__(
        self,
        num_classes: int,
        weight_bit_width: int = 1,
        act_bit_width: int = 1,
        in_bit_width: int = 8,
        in_channels: int = 3,
        width: float = 1.0,
        image_size: int = 32,
        pad_value: float = -1.0,
        first_last_weight_bits: int = 8,
    ) -> None:
        super().__init__()
        self.features = nn.ModuleList()
        self.features.append(input_quant(in_bit_width))  # 8-bit input on CNV's Q1.7 grid
        ch, side = in_channels, image_size
        for i, (out_ch, padded, pool) in enumerate(CONV_LAYERS):
            out_ch = scaled(out_ch, width)
            zero_pad = padded and pad_value == 0.0  # PyTorch's own padding: the trap, see above
            if padded and not zero_pad:
                self.features.append(BipolarPad(1, pad_value))
            elif not padded:
                side -= KERNEL_SIZE - 1
            self.features.append(
                QuantConv2d(
                    ch,
                    out_ch,
                    KERNEL_SIZE,
                    padding=1 if zero_pad else 0,
                    bias=False,
                    weight_quant=CommonWeightQuant,
                    weight_bit_width=first_last_weight_bits if i == 0 else weight_bit_width,
                )
            )
            self.features.append(nn.BatchNorm2d(out_ch, eps=1e-4))
            self.features.append(QuantIdentity(act_quant=CommonActQuant, bit_width=act_bit_width))
            if pool:
                self.features.append(nn.MaxPool2d(2))
                side //= 2
            ch = out_ch
        self.classifier = map_classifier(ch * side * side, num_classes, first_last_weight_bits)
        self.init_latent_weights()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = 2.0 * x - 1.0  # [0, 1] image -> [-1, 1), as CNV
        for m in self.features:
            x = m(x)
        return self.classifier(x.flatten(1))
