"""Networks: every registered name builds and runs; CNV/FC match upstream bnn_pynq's state-dict keys,
shapes and outputs; widths divide every layer; what FINN needs to streamline is kept."""

from __future__ import annotations

import pytest
import torch
from brevitas.nn import QuantConv2d, QuantLinear
from brevitas_examples.bnn_pynq.models import model_with_cfg

from maskbnn.config import network_names
from maskbnn.errors import UserError
from maskbnn.models.registry import get_network

torch.set_num_threads(1)


@pytest.mark.parametrize("name", network_names())
def test_every_network_builds_and_runs(name: str):
    model, cfg = get_network(name)
    model.eval()
    shape = (2, cfg.model.in_channels, cfg.model.image_size, cfg.model.image_size)
    with torch.no_grad():
        out = model(torch.rand(shape))
    assert out.shape == (2, cfg.model.num_classes)
    assert torch.isfinite(out).all()


def test_unknown_network_lists_the_valid_ones():
    with pytest.raises(UserError, match="valid names.*mask_1w1a_0.5"):
        get_network("mask_1w1a_0.3")


@pytest.mark.parametrize(("name", "upstream"), [("cnv_1w1a", "cnv_1w1a"), ("tfc_1w1a", "tfc_1w1a")])
def test_same_keys_shapes_and_outputs_as_upstream(name: str, upstream: str):
    ours, cfg = get_network(name)
    theirs, _ = model_with_cfg(upstream, pretrained=False)
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b)
    assert all(a[k].shape == b[k].shape for k in a)
    torch.manual_seed(0)
    # Random trained-looking weights and BN statistics, loaded into both.
    sd = {k: (torch.rand_like(v) * 2 - 1 if v.is_floating_point() else v) for k, v in b.items()}
    sd = {k: (v.abs() + 0.1 if k.endswith("running_var") else v) for k, v in sd.items()}
    ours.load_state_dict(sd)
    theirs.load_state_dict(sd)
    ours.eval()
    theirs.eval()
    shape = (8, cfg.model.in_channels, cfg.model.image_size, cfg.model.image_size)
    x = torch.rand(shape)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))


@pytest.mark.parametrize(
    ("name", "div"),
    [("mask_1w1a", 1), ("mask_1w1a_0.5", 2), ("mask_1w1a_0.25", 4), ("mask_1w1a_0.125", 8)],
)
def test_mask_widths_divide_every_layer(name: str, div: int):
    model, cfg = get_network(name)
    convs = [m for m in model.modules() if isinstance(m, QuantConv2d)]
    fcs = [m for m in model.modules() if isinstance(m, QuantLinear)]
    assert [c.out_channels for c in convs] == [
        64 // div,
        64 // div,
        128 // div,
        128 // div,
        256 // div,
        256 // div,
    ]
    assert [f.out_features for f in fcs] == [512 // div, 512 // div, 4]
    assert cfg.model.num_classes == 4 and cfg.model.in_bit_width == 8
    # FINN's streamlining of CNV relies on unpadded convs.
    assert all(tuple(c.padding) == (0, 0) for c in convs)
