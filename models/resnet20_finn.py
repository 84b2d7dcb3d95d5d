"""ResNet-20 in the form FINN can carry: He et al.'s CIFAR ResNet-20 ("Deep Residual Learning for
Image Recognition", CVPR 2016; 3 stages x 3 basic blocks, 16-32-64 channels) as a 1W1A network,
the residual stream quantised by one shared quantiser at every add.

Why each change against the float network:
- The residual stream is a k-bit integer stream (`res_bits`, default 4) on one fixed grid: the
  stem's output, both inputs of every add and every add's output go through the *same*
  quantiser. Adding two tensors on the same grid gives an integer sum on that grid, so after
  streamlining the add is an integer add of two streams and the requantisation after it is a
  threshold unit; with two grids the scales could not be moved past the add.
- Binary convolutions read the sign of the stream (Bi-Real's binarised shortcut input) and the
  block's second conv is quantised onto the stream's grid before the add: nothing real-valued
  is left for the hardware.
- Down-sampling shortcuts are a strided binary 1x1 conv + BN (He et al.'s option B) on the same
  sign, which maps to the same sliding-window + XNOR MVAU layers as every other conv; the paper's
  CIFAR option A (stride + zero channels) was not tried.
- Binary convs pad with -1 as the hardware does (see vgg_small_finn.py, the padding trap); the
  first conv is unpadded and takes 8-bit weights, like the VGG-Small FINN form.
- The global average pool + FC becomes an FC over the whole 8x8 map with 8-bit weights (an FC
  that contains the pool as a special case), the tail the VGG-Small FINN form already maps; FINN's
  global pool (GlobalAccPool + a 1/N scale) was not tried.
"""

from __future__ import annotations

import torch
from brevitas.nn import QuantConv2d, QuantIdentity
from torch import nn

from maskbnn.models.cnv import scaled
from maskbnn.models.quant import CommonActQuant, CommonWeightQuant, LatentWeights, input_quant
from maskbnn.models.vgg_small_finn import BipolarPad, map_classifier

STAGES = ((16, 1), (32, 2), (64, 2))  # (channels at width 1x, stride of the stage's first block)
BLOCKS_PER_STAGE = 3  # ResNet-20: 6n + 2 layers with n = 3
RES_RANGE = 2.0  # the residual grid spans [-RES_RANGE, RES_RANGE] (BN outputs live there)


def residual_quant(bits: int) -> QuantIdentity:
    """The one quantiser of the residual stream: signed, narrow-range, constant scale."""
    return QuantIdentity(
        act_quant=CommonActQuant, bit_width=bits, min_val=-RES_RANGE, max_val=RES_RANGE
    )


def _binary_conv(cin: int, cout: int, kernel: int, stride: int, pad: int, bits: int) -> QuantConv2d:
    return QuantConv2d(
        cin,
        cout,
        kernel,
        stride=stride,
        padding=pad,
        bias=False,
        weight_quant=CommonWeightQuant,
        weight_bit_width=bits,
    )


class BasicBlockFINN(nn.Module):
    """x -> Q(Q(BN(conv(sign(BN(conv(sign x)))))) + shortcut), every Q the shared `res_quant`."""

    def __init__(
        self,
        cin: int,
        cout: int,
        stride: int,
        res_quant: QuantIdentity,
        pad_value: float,
        weight_bit_width: int,
        act_bit_width: int,
    ) -> None:
        super().__init__()
        zero_pad = pad_value == 0.0  # PyTorch's own padding: the trap (vgg_small_finn.py)
        self.sign_in = QuantIdentity(act_quant=CommonActQuant, bit_width=act_bit_width)
        self.pad1 = nn.Identity() if zero_pad else BipolarPad(1, pad_value)
        self.conv1 = _binary_conv(cin, cout, 3, stride, int(zero_pad), weight_bit_width)
        self.bn1 = nn.BatchNorm2d(cout, eps=1e-4)
        self.act1 = QuantIdentity(act_quant=CommonActQuant, bit_width=act_bit_width)
        self.pad2 = nn.Identity() if zero_pad else BipolarPad(1, pad_value)
        self.conv2 = _binary_conv(cout, cout, 3, 1, int(zero_pad), weight_bit_width)
        self.bn2 = nn.BatchNorm2d(cout, eps=1e-4)
        self.res_quant = res_quant  # shared with every block: one grid for the whole stream
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                _binary_conv(cin, cout, 1, stride, 0, weight_bit_width),
                nn.BatchNorm2d(cout, eps=1e-4),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.sign_in(x)
        y = self.act1(self.bn1(self.conv1(self.pad1(s))))
        y = self.res_quant(self.bn2(self.conv2(self.pad2(y))))
        shortcut = x if self.downsample is None else self.res_quant(self.downsample(s))
        return self.res_quant(y + shortcut)


class ResNet20FINN(LatentWeights):
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
        res_bits: int = 4,
    ) -> None:
        super().__init__()
        self.input_quant = input_quant(in_bit_width)
        self.res_quant = residual_quant(res_bits)
        ch = scaled(STAGES[0][0], width)
        self.stem = nn.Sequential(
            _binary_conv(in_channels, ch, 3, 1, 0, first_last_weight_bits),  # unpadded
            nn.BatchNorm2d(ch, eps=1e-4),
        )
        side = image_size - 2
        blocks = []
        for out_ch, stride in STAGES:
            out_ch = scaled(out_ch, width)
            for b in range(BLOCKS_PER_STAGE):
                s = stride if b == 0 else 1
                blocks.append(
                    BasicBlockFINN(
                        ch, out_ch, s, self.res_quant, pad_value, weight_bit_width, act_bit_width
                    )
                )
                side = (side - 1) // s + 1
                ch = out_ch
        self.blocks = nn.Sequential(*blocks)
        self.classifier = map_classifier(ch * side * side, num_classes, first_last_weight_bits)
        self.init_latent_weights()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_quant(2.0 * x - 1.0)  # [0, 1] image -> [-1, 1), as CNV
        x = self.res_quant(self.stem(x))
        x = self.blocks(x)
        return self.classifier(x.flatten(1))
