"""The fused 1-bit training path gives bit-identical outputs and gradients to Brevitas' own."""

from __future__ import annotations

import pytest
import torch
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear

from maskbnn.models.registry import get_network
from maskbnn.pipeline.train.fast_binary import fast_binary
from maskbnn.pipeline.train.trainer import make_loss

torch.set_num_threads(1)


def outputs_and_grads(model, x, y, fast: bool):
    model.zero_grad(set_to_none=True)
    with fast_binary(model, fast) as switched:
        out = model(x)
        make_loss("SqrHinge", out.shape[1])(out, y).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.detach(), grads, switched


@pytest.mark.parametrize("name", ["mask_1w1a_0.25", "tfc_1w1a", "cnv_1w2a"])
def test_fast_path_is_bit_identical(name: str):
    model, cfg = get_network(name)
    model.train()
    g = torch.Generator().manual_seed(0)
    side = cfg.model.image_size
    x = torch.rand((16, cfg.model.in_channels, side, side), generator=g)
    y = torch.randint(0, cfg.model.num_classes, (16,), generator=g)
    torch.manual_seed(1)  # FC dropout draws the same mask in both passes
    ref_out, ref_grads, none = outputs_and_grads(model, x, y, fast=False)
    torch.manual_seed(1)
    out, grads, switched = outputs_and_grads(model, x, y, fast=True)
    assert none == 0
    binary = [
        m
        for m in model.modules()
        if isinstance(m, QuantConv2d | QuantLinear) and cfg.model.weight_bit_width == 1
    ]
    binary += [
        m for m in model.modules() if isinstance(m, QuantIdentity) and m.act_quant.bit_width() == 1
    ]
    assert switched == len(binary)  # 1-bit layers switched; 2-bit and 8-bit ones left to Brevitas
    assert torch.equal(out, ref_out)
    assert ref_grads.keys() == grads.keys()
    for k, v in ref_grads.items():
        assert torch.equal(grads[k], v), k


def test_layers_are_restored_after_the_block():
    model, _ = get_network("mask_1w1a_0.125")
    with fast_binary(model) as switched:
        assert switched > 0
        assert any("forward" in vars(m) for m in model.modules())
    assert not any("forward" in vars(m) for m in model.modules())
    assert all(k in get_network("mask_1w1a_0.125")[0].state_dict() for k in model.state_dict())
