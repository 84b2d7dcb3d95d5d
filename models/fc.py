"""FC family: TFC/SFC/LFC multi-layer perceptrons of BNN-PYNQ (as brevitas' bnn_pynq `FC`)."""

from __future__ import annotations

import math

import torch
from brevitas.nn import QuantIdentity, QuantLinear
from torch import nn

from maskbnn.models.quant import CommonActQuant, CommonWeightQuant, LatentWeights, TensorNorm

DROPOUT = 0.2


class FC(LatentWeights):
    def __init__(
        self,
        num_classes: int,
        weight_bit_width: int,
        act_bit_width: int,
        in_bit_width: int,
        hidden: tuple[int, ...],
        in_shape: tuple[int, ...] = (1, 28, 28),
        dropout: float = DROPOUT,
    ) -> None:
        super().__init__()
        self.features = nn.ModuleList()
        self.features.append(QuantIdentity(act_quant=CommonActQuant, bit_width=in_bit_width))
        self.features.append(nn.Dropout(p=dropout))
        features = math.prod(in_shape)
        for out in hidden:
            self.features.append(
                QuantLinear(
                    features,
                    out,
                    bias=False,
                    weight_quant=CommonWeightQuant,
                    weight_bit_width=weight_bit_width,
                )
            )
            self.features.append(nn.BatchNorm1d(out))
            self.features.append(QuantIdentity(act_quant=CommonActQuant, bit_width=act_bit_width))
            self.features.append(nn.Dropout(p=dropout))
            features = out
        self.features.append(
            QuantLinear(
                features,
                num_classes,
                bias=False,
                weight_quant=CommonWeightQuant,
                weight_bit_width=weight_bit_width,
            )
        )
        self.features.append(TensorNorm())
        self.init_latent_weights()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = 2.0 * x.flatten(1) - 1.0
        for m in self.features:
            x = m(x)
        return x
