"""Quantizer presets and output layers, taken from brevitas' own bnn_pynq example (shipped in the
brevitas wheel) so the networks quantise exactly as upstream's do and FINN streamlines them the same."""

from brevitas.nn import QuantConv2d, QuantLinear
from brevitas_examples.bnn_pynq.models.common import CommonActQuant, CommonWeightQuant
from brevitas_examples.bnn_pynq.models.losses import SqrHingeLoss
from brevitas_examples.bnn_pynq.models.tensor_norm import TensorNorm
from torch import nn


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


__all__ = ["CommonActQuant", "CommonWeightQuant", "LatentWeights", "SqrHingeLoss", "TensorNorm"]
