"""The training benchmark's baseline is upstream's: its CNV at our widths, its per-image transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maskbnn.bench.train import UpstreamStyleDataset, upstream_cnv
from maskbnn.models.registry import get_network
from maskbnn.pipeline.data.datasets import ArrayDataset


@pytest.mark.parametrize("name", ["mask_1w1a_0.5", "mask_1w1a"])
def test_upstream_cnv_at_our_width_has_our_shapes(name: str):
    ours, cfg = get_network(name)
    theirs = upstream_cnv(cfg.model.width, cfg.model.num_classes)
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b) and all(a[k].shape == b[k].shape for k in a)


def test_upstream_style_transforms_crop_pad_and_flip():
    torch.manual_seed(0)
    img = np.arange(32 * 32 * 3, dtype=np.uint8).reshape(1, 32, 32, 3)
    ds = UpstreamStyleDataset(ArrayDataset(img, np.array([2]), ("a", "b", "c", "d")))
    ref = torch.from_numpy(img[0]).permute(2, 0, 1).float() / 255
    padded = torch.nn.functional.pad(ref, (4, 4, 4, 4))
    seen_flip = seen_plain = False
    for _ in range(40):
        x, y = ds[0]
        assert y == 2 and x.shape == (3, 32, 32) and x.dtype == torch.float32
        # every output is one of the 81 zero-padded crops, maybe mirrored
        hits = [
            (torch.equal(x, c), torch.equal(x, c.flip(-1)))
            for c in (padded[:, i : i + 32, j : j + 32] for i in range(9) for j in range(9))
        ]
        assert any(p or f for p, f in hits)
        seen_plain |= any(p for p, _ in hits)
        seen_flip |= any(f for _, f in hits)
    assert seen_plain and seen_flip


def test_conv_calls_cover_every_convolution_at_training_shapes():
    from maskbnn.bench.train import BATCH, conv_calls

    calls = conv_calls("mask_1w1a_0.5")
    # CNV: 3x3 valid convs 32->30->28, pool, 14->12->10, pool, 5->3->1 (0.5x: 32/64/128 ch)
    assert [tuple(s) for _, s in calls] == [
        (BATCH, 3, 32, 32),
        (BATCH, 32, 30, 30),
        (BATCH, 32, 14, 14),
        (BATCH, 64, 12, 12),
        (BATCH, 64, 5, 5),
        (BATCH, 128, 3, 3),
    ]


def test_conv_gflop_matches_a_count_by_hand():
    """The ceiling's operation count (torch's flop counter over a real training step) against the
    CNV's layer shapes counted by hand: 2 flops per multiply-add; forward, weight and input
    gradients, except the first conv's input gradient (it reads the image)."""
    from maskbnn.bench.train import BATCH, conv_gflop

    # 0.5x CNV: (in ch, out ch, output side) of its six 3x3 valid convolutions
    layers = [(3, 32, 30), (32, 32, 28), (32, 64, 12), (64, 64, 10), (64, 128, 3), (128, 128, 1)]
    macs = [BATCH * cout * side * side * cin * 9 for cin, cout, side in layers]
    forward = 2 * sum(macs)
    grads = 2 * (macs[0] + 2 * sum(macs[1:]))
    assert conv_gflop("mask_1w1a_0.5") == pytest.approx((forward / 1e9, grads / 1e9), rel=1e-9)
