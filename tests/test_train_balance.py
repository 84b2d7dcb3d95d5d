"""Training on unbalanced data (`data prepare --keep-all`): class-balanced sampling and class
weights in the loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from maskbnn.models.quant import SqrHingeLoss
from maskbnn.pipeline.train.trainer import Trainer, class_weights, make_loss

COUNTS = [300, 60, 30, 10]  # far from balanced, like MaskedFace-Net's incorrectly-masked classes


def _labels() -> torch.Tensor:
    return torch.cat([torch.full((n,), c) for c, n in enumerate(COUNTS)])


def test_class_weights_average_to_one_and_favour_small_classes():
    w = class_weights(_labels().numpy(), 4)
    torch.testing.assert_close(w, torch.tensor([400 / 1200, 400 / 240, 400 / 120, 400 / 40]))
    assert float(w[_labels()].mean()) == pytest.approx(1.0)


@pytest.mark.parametrize("name", ["SqrHinge", "CrossEntropy"])
def test_unit_class_weights_give_the_plain_loss_and_gradient(name):
    torch.manual_seed(0)
    y = torch.randint(0, 4, (16,))
    out = torch.randn(16, 4, requires_grad=True)
    plain = make_loss(name, 4)(out, y)
    (g_plain,) = torch.autograd.grad(plain, out)
    weighted = make_loss(name, 4, torch.ones(4))(out, y)
    (g_weighted,) = torch.autograd.grad(weighted, out)
    torch.testing.assert_close(weighted, plain)
    torch.testing.assert_close(g_weighted, g_plain)
    if name == "SqrHinge":  # and both are brevitas' squared hinge
        target = torch.full((16, 4), -1.0).scatter_(1, y[:, None], 1.0)
        torch.testing.assert_close(plain, SqrHingeLoss()(out, target))


def test_weights_scale_each_image_by_its_class():
    out = torch.zeros(2, 4)
    y = torch.tensor([0, 3])
    w = torch.tensor([1.0, 1.0, 1.0, 5.0])
    per_image = nn.functional.cross_entropy(out, y, reduction="none")
    expected = (per_image * torch.tensor([1.0, 5.0])).mean()
    torch.testing.assert_close(make_loss("CrossEntropy", 4, w)(out, y), expected)


def _trainer(balanced: bool) -> Trainer:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    return Trainer(
        model,
        make_loss("CrossEntropy", 4),
        opt,
        None,
        ("a", "b", "c", "d"),
        batch_size=50,
        augment=False,
        progress=False,
        fast=False,
        balanced_sampling=balanced,
    )


def test_balanced_sampling_draws_every_class_about_equally():
    y = _labels()
    x = torch.randint(0, 256, (len(y), 3, 4, 4), dtype=torch.uint8)
    drawn = np.array(_trainer(True).train_epoch(x, y, 1, 1)["confusion"]).sum(1)
    assert drawn.sum() == len(y)
    assert drawn.min() > 0.6 * len(y) / 4, drawn  # uniform: 100 each (binomial sd ~9)
    plain = np.array(_trainer(False).train_epoch(x, y, 1, 1)["confusion"]).sum(1)
    assert plain.tolist() == COUNTS  # without it, every image once
