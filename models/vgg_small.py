"""VGG-Small as IR-Net trains it (Qin et al., CVPR 2020; htqin/IR-Net CIFAR-10/VGG-Small/vgg.py,
originally Zhang et al., "LQ-Nets", ECCV 2018), in plain PyTorch with a `BinaryMethod`:

    conv(128) - BN
    [act - bconv(128) - pool - BN]  [act - bconv(256) - BN]  [act - bconv(256) - pool - BN]
    [act - bconv(512) - BN]  [act - bconv(512) - pool - BN]  - act - FC

3x3 convs with padding 1 (binary ones pad with method.pad_value), 2x2 max-pools. "act" is the sign
(the method's estimator; RSign with method.rsign; RPReLU before it with method.rprelu) and
LearnedScale follows each binary conv with method.learned_scale. First conv and FC are full
precision (the paper) or 8-bit (method.first_last = "int8"). `width` scales every conv (0.25 makes
32-32-64-64-128-128, trainable on a CPU); images of any size (28 for MNIST: 28 -> 14 -> 7 -> 3).

Differences to the authors' code: no Hardtanh in front of each sign (their IRConv2d follows a
Hardtanh, which zeroes the EDE gradient for |x| > 1 as well), and the [0, 1] image enters as 2x - 1
(the 8-bit input grid of the rest of maskbnn) instead of a mean/std normalisation. This is the
paper's order (pool before BN); models/vgg_small_finn.py is the order FINN can map.
"""

from __future__ import annotations

from torch import nn

from maskbnn.models.binarize import first_conv
from maskbnn.models.cnv import scaled
from maskbnn.models.method import BinaryMethod
from maskbnn.models.plain_stages import StagedBinaryNet, binary_stage

# (out_channels at width 1, max-pool after) of the five binary convs; the first conv has 128.
FIRST_CHANNELS = 128
BINARY_LAYERS = ((128, True), (256, False), (256, True), (512, False), (512, True))


class VGGSmall(StagedBinaryNet):
    def __init__(
        self,
        method: BinaryMethod | None = None,
        num_classes: int = 10,
        in_channels: int = 3,
        width: float = 1.0,
        image_size: int = 32,
    ) -> None:
        super().__init__()
        method = method or BinaryMethod()
        self.method = method
        ch = scaled(FIRST_CHANNELS, width)
        self.stem = nn.Sequential(first_conv(method, in_channels, ch), nn.BatchNorm2d(ch))
        blocks, side = [], image_size
        for out, pool in BINARY_LAYERS:
            out = scaled(out, width)
            blocks.append(binary_stage(method, ch, out, 3, pool, pool_before_bn=True))
            side //= 2 if pool else 1
            ch = out
        self.features = nn.Sequential(*blocks)
        self._head(method, ch, side, num_classes)
