"""Stochastic weight averaging for `maskbnn train --swa K`: the mean of the latent weights after each
of the last K epochs, with BatchNorm statistics then recomputed for that mean.

Why: at the end of a cosine schedule the 1x CNV's top-1 still moves by +-0.2 points from one epoch to
the next (logs in models/pretrained/), so "the last epoch" is one draw from that noise. Averaging the
weights of the last epochs (Izmailov et al., "Averaging Weights Leads to Wider Optima and Better
Generalization", UAI 2018) is meant to remove that noise; on the 1x CNV it did not beat the last
epoch (models/pretrained/mask_1w1a.selection.md). For a 1-bit weight the mean latent value's sign is a
vote of the K epochs' signs, weighted by how far from 0 each was. The running mean is
torch.optim.swa_utils.AveragedModel; the BatchNorm pass is the trainer's exact one (recalibrate_bn:
training batches and augmentation, like the statistics the weights were trained with) rather than
swa_utils.update_bn, which needs a DataLoader.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from maskbnn.errors import UserError
from maskbnn.pipeline.train.trainer import Hook, Trainer


class WeightAverage(Hook):
    """Averages the trained model's parameters after each of the last `last` epochs. Its state goes
    into every checkpoint, so a resumed run ends with the same average as an uninterrupted one."""

    def __init__(self, last: int) -> None:
        if last < 1:
            raise UserError(f"--swa {last}: average over at least 1 epoch")
        self.last = last
        self.epochs = 0
        self.average: AveragedModel | None = None

    @property
    def count(self) -> int:
        return 0 if self.average is None else int(self.average.n_averaged)

    def on_epoch_start(self, trainer: Trainer, epoch: int, epochs: int) -> None:
        self.epochs = epochs

    def on_epoch_end(self, trainer: Trainer, epoch: int, record: dict) -> None:
        if epoch <= self.epochs - self.last:
            return
        if self.average is None:
            self.average = AveragedModel(trainer.model, use_buffers=False)
        self.average.update_parameters(trainer.model)

    def state_dict(self) -> dict | None:
        return None if self.average is None else {"average": self.average.state_dict()}

    def load_state_dict(self, trainer: Trainer, state: dict) -> None:
        self.average = AveragedModel(trainer.model, use_buffers=False)
        self.average.load_state_dict(state["average"])

    def finish(self, trainer: Trainer, x: torch.Tensor) -> nn.Module | None:
        """A copy of the network holding the averaged weights and their own BatchNorm statistics
        (None before any epoch was averaged). The trained network is left as it is."""
        if self.average is None:
            return None
        model = copy.deepcopy(self.average.module)
        trainer.recalibrate_bn(x, model)
        return model.eval()
