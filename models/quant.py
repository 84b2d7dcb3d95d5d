"""Quantizer presets and output layers, taken from brevitas' own bnn_pynq example (shipped in the
brevitas wheel) so the networks quantise exactly as upstream's do and FINN streamlines them the same."""

from brevitas.core.restrict_val import RestrictValueType
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear
from brevitas_examples.bnn_pynq.models.common import CommonActQuant, CommonWeightQuant
from brevitas_examples.bnn_pynq.models.losses import SqrHingeLoss
from brevitas_examples.bnn_pynq.models.tensor_norm import TensorNorm
from torch import nn


def input_quant(bit_width: int) -> QuantIdentity:
    """The image input after the model's 2x-1: `bit_width` bits on the Q1.7 grid [-1, 1 - 2^-7]
    with a power-of-two scale, upstream CNV's fixed-point input."""
    return QuantIdentity(
        act_quant=CommonActQuant,
        bit_width=bit_width,
        min_val=-1.0,
        max_val=1.0 - 2.0 ** (-7),
        narrow_range=False,
        restrict_scaling_type=RestrictValueType.POWER_OF_TWO,
    )


class LatentWeights(nn.Module):
    """Upstream's handling of the float weights behind the quantisers: uniform init in [-1, 1],
    and clipping to a range after every optimizer step (ClipWeights hook)."""

    def init_latent_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, QuantConv2d | QuantLinear):
                nn.init.uniform_(m.weight.data, -1, 1)

    def clip_weights(self, min_val: float, max_val: float) -> None:
        for m in self.modules():
            if isinstance(m, QuantConv2d | QuantLinear):
                m.weight.data.clamp_(min_val, max_val)


__all__ = [
    "CommonActQuant",
    "CommonWeightQuant",
    "LatentWeights",
    "SqrHingeLoss",
    "TensorNorm",
    "input_quant",
]
