"""Quantizer presets and output layers, taken from brevitas' own bnn_pynq example (shipped in the
brevitas wheel) so the networks quantise exactly as upstream's do and FINN streamlines them the same."""

from brevitas_examples.bnn_pynq.models.common import CommonActQuant, CommonWeightQuant
from brevitas_examples.bnn_pynq.models.losses import SqrHingeLoss
from brevitas_examples.bnn_pynq.models.tensor_norm import TensorNorm

__all__ = ["CommonActQuant", "CommonWeightQuant", "SqrHingeLoss", "TensorNorm"]
