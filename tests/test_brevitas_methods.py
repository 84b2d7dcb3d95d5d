"""Training methods on Brevitas layers (models/brevitas_methods.py): the installed forward is the
method's, and baking gives a plain Brevitas network with the same outputs."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from maskbnn.config import load_network_config
from maskbnn.models.method import BinaryMethod


def _trained_a_little(method: dict) -> tuple[torch.nn.Module, BinaryMethod]:
    from maskbnn.models.registry import build_model

    cfg = load_network_config("vgg_small_finn_irnet").model
    method = {"pad_value": cfg.pad_value, **method}  # the FINN form pads as its model says
    cfg = dataclasses.replace(cfg, method=method)
    torch.manual_seed(0)
    model = build_model(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(3):  # move BatchNorm statistics, weights and thresholds off their init
        x, y = torch.rand(16, 3, 32, 32), torch.randint(0, 4, (16,))
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), BinaryMethod.from_dict(method)


@pytest.mark.parametrize(
    "method",
    [
        {"estimator": "ede", "weight_binarizer": "libra_pb", "first_last": "int8"},
        {"estimator": "approxsign", "weight_binarizer": "mean_abs", "first_last": "int8"},
        {"estimator": "ste", "weight_binarizer": "sign", "rsign": True, "first_last": "int8"},
    ],
)
def test_bake_keeps_the_function(method):
    from brevitas.nn import QuantConv2d

    from maskbnn.models.brevitas_methods import bake

    model, m = _trained_a_little(method)
    x = torch.rand(200, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
    bake(model, m)
    assert not any("forward" in mod.__dict__ for mod in model.modules())
    assert all("rsign_threshold" not in k for k in model.state_dict())
    binary = [c for c in model.modules() if isinstance(c, QuantConv2d)][1:]
    assert all(set(c.weight.unique().tolist()) <= {-1.0, 1.0} for c in binary)
    with torch.no_grad():
        after = model(x)
    assert torch.equal(before.argmax(1), after.argmax(1))
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)


def test_libra_pb_forward_is_the_standardised_sign():
    from brevitas.nn import QuantConv2d

    model, _ = _trained_a_little({"estimator": "ede", "weight_binarizer": "libra_pb",
                                  "first_last": "int8"})  # fmt: skip
    conv = [c for c in model.modules() if isinstance(c, QuantConv2d)][1]
    seen = []
    hook = torch.nn.functional.conv2d
    try:
        torch.nn.functional.conv2d = lambda x, w, *a: seen.append(w) or hook(x, w, *a)
        conv(torch.rand(1, conv.in_channels, 8, 8))
    finally:
        torch.nn.functional.conv2d = hook
    w = conv.weight.detach().flatten(1)
    centred = w - w.mean(1, keepdim=True)
    std = centred / centred.std(1, keepdim=True)
    scale = torch.exp2(torch.round(torch.log2(std.abs().mean(1))))
    want = torch.where(std >= 0, 1.0, -1.0) * scale[:, None]
    torch.testing.assert_close(seen[0].flatten(1), want)


def test_unmappable_options_are_refused():
    from maskbnn.models.brevitas_methods import unsupported

    assert unsupported(BinaryMethod(estimator="ede", first_last="int8")) == []
    why = " ".join(unsupported(BinaryMethod(rprelu=True, learned_scale=True)))
    assert "RPReLU" in why and "learned_scale" in why and "first_last" in why


def test_fast_binary_leaves_a_method_forward_alone():
    from maskbnn.pipeline.train.fast_binary import fast_binary

    model, _ = _trained_a_little({"estimator": "ede", "weight_binarizer": "libra_pb",
                                  "first_last": "int8"})  # fmt: skip
    forwards = {id(m): m.__dict__["forward"] for m in model.modules() if "forward" in m.__dict__}
    with fast_binary(model) as n:
        assert n == 0
    after = {id(m): m.__dict__["forward"] for m in model.modules() if "forward" in m.__dict__}
    assert after == forwards


def test_method_padding_must_match_the_model():
    from maskbnn.errors import UserError

    with pytest.raises(UserError, match="pad_value"):
        _trained_a_little({"estimator": "ede", "first_last": "int8", "pad_value": 0.0})


def test_export_bakes_with_the_method_the_checkpoint_was_trained_with(tmp_path):
    from maskbnn.models.checkpoint import save_checkpoint
    from maskbnn.pipeline.export.qonnx_export import load_model

    trained = {"estimator": "approxsign", "weight_binarizer": "mean_abs", "first_last": "int8"}
    model, m = _trained_a_little(trained)  # not the config's libra_pb: a `--method` override
    path = tmp_path / "run.tar"
    hparams = {"method": {**m.as_dict()}}
    save_checkpoint(path, {"state_dict": model.state_dict(), "network": "vgg_small_finn_irnet",
                           "hparams": hparams})  # fmt: skip
    x = torch.rand(100, 3, 32, 32)
    with torch.no_grad():
        want = model(x)
        got = load_model("vgg_small_finn_irnet", path)(x)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
