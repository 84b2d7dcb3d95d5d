"""AlexNet-style binary network for 32x32 inputs, the topology of the IR-Net seed
(../shared/seeds/002_*: "conv-bn-pool-hardtanh x2, conv-bn-hardtanh x2, conv-bn-pool-hardtanh, fc"):

    conv(64, 5x5)-BN-pool
    [act - bconv(192, 5x5) - BN - pool]  [act - bconv(384) - BN]  [act - bconv(256) - BN]
    [act - bconv(256) - BN - pool]  - act - FC

The seed does not state widths or kernels: the channel counts are torchvision's AlexNet
(Krizhevsky et al., NeurIPS 2012: 64-192-384-256-256), with 5x5 / 3x3 kernels at stride 1 and
"same" padding for 32x32 inputs (32 -> 16 -> 8 -> 4). "act" is the method's sign (RSign, RPReLU,
LearnedScale as in models/vgg_small.py); the first conv and the FC are full precision or 8-bit.
"""

from __future__ import annotations

from torch import nn

from maskbnn.models.binarize import first_conv
from maskbnn.models.cnv import scaled
from maskbnn.models.method import BinaryMethod
from maskbnn.models.plain_stages import StagedBinaryNet, binary_stage

FIRST = (64, 5)  # (channels at width 1, kernel) of the first conv, pooled after
BINARY_LAYERS = ((192, 5, True), (384, 3, False), (256, 3, False), (256, 3, True))


class AlexNetSmall(StagedBinaryNet):
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
        ch, k = scaled(FIRST[0], width), FIRST[1]
        self.stem = nn.Sequential(
            first_conv(method, in_channels, ch, k, padding=k // 2),
            nn.BatchNorm2d(ch),
            nn.MaxPool2d(2),
        )
        side = image_size // 2
        blocks = []
        for out, k, pool in BINARY_LAYERS:
            out = scaled(out, width)
            blocks.append(binary_stage(method, ch, out, k, pool, pool_before_bn=False))
            side //= 2 if pool else 1
            ch = out
        self.features = nn.Sequential(*blocks)
        self._head(method, ch, side, num_classes)
