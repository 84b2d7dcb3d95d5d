"""ReActNet's and Real-to-Binary's learnable per-channel pieces on the real-valued stream.

RPReLU       Liu et al., "ReActNet: Towards Precise Binary Neural Network with Generalized
             Activation Functions", ECCV 2020, Eq. 3
RSign        same paper, Eq. 2 (a BinaryActivation with a learnable threshold, see binarize.py)
LearnedScale Martinez et al., "Training Binary Neural Networks with Real-to-Binary Convolutions",
             ICLR 2020, Sec. 4.1 (scaling factors learned by back-propagation)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from maskbnn.models.binarize import BinaryActivation, _per_channel


class RPReLU(nn.Module):
    """f(x) = PReLU_beta(x - gamma) + zeta per channel: x - gamma + zeta where x > gamma, else
    beta * (x - gamma) + zeta. Initialised as ReActNet's code: gamma = zeta = 0, beta = 0.25
    (nn.PReLU's default slope)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(channels))
        self.beta = nn.Parameter(torch.full((channels,), 0.25))
        self.zeta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.prelu(x - _per_channel(self.gamma, x), self.beta.to(x.dtype))
        return y + _per_channel(self.zeta, x)

    def extra_repr(self) -> str:
        return f"{self.gamma.numel()}"


class LearnedScale(nn.Module):
    """y = alpha_c * x, one learnable positive-initialised scale per output channel of a binary conv
    (init 1, as the mmclassification BNN suite's LearnableScale for the strong baseline)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * _per_channel(self.alpha, x)

    def extra_repr(self) -> str:
        return f"{self.alpha.numel()}"


def RSign(channels: int, estimator: str = "approxsign") -> BinaryActivation:  # noqa: N802
    """ReActNet's RSign: sign(x - alpha_c) with learnable alpha; ReActNet trains it with the
    ApproxSign backward."""
    return BinaryActivation(estimator, channels, learnable_threshold=True)


__all__ = ["LearnedScale", "RPReLU", "RSign"]
