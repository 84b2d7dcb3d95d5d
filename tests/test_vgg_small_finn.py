"""VGG-Small in FINN form: -1-padded binary convs go through export -> build -> golden chain
bit-exactly, and the padding trap (PyTorch zero padding) is caught by the chain."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.infer_shapes import InferShapes

from maskbnn.errors import UserError, VerificationError
from tests.conftest import calibrated_checkpoint


def _pad_conv_graph(value: float, bipolar: bool) -> ModelWrapper:
    """in (1,2,4,4) -> Pad(value, 1 pixel) -> Conv 3x3 (2 -> 3)."""
    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])
    nodes = [
        helper.make_node("Pad", ["x", "pads", "value"], ["xp"], mode="constant"),
        helper.make_node("Conv", ["xp", "w"], ["y"], kernel_shape=[3, 3], pads=[0, 0, 0, 0]),
    ]
    graph = helper.make_graph(nodes, "g", [inp], [out])
    m = ModelWrapper(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    m.set_initializer("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64))
    m.set_initializer("value", np.array(value, dtype=np.float32))
    w = np.sign(np.random.default_rng(0).standard_normal((3, 2, 3, 3))).astype(np.float32)
    m.set_initializer("w", w)
    m = m.transform(InferShapes())
    m.set_tensor_datatype("x", DataType["BIPOLAR" if bipolar else "INT8"])
    return m


@pytest.mark.parametrize(
    ("value", "bipolar", "absorbed"),
    [(-1.0, True, True), (0.0, True, False), (-1.0, False, False)],
)
def test_absorb_bipolar_pad_only_takes_minus_one_on_signs(value, bipolar, absorbed):
    from qonnx.core.onnx_exec import execute_onnx

    from maskbnn.pipeline.finn.build_steps import AbsorbBipolarPadIntoConv

    m = _pad_conv_graph(value, bipolar)
    x = np.sign(np.random.default_rng(1).standard_normal((1, 2, 4, 4))).astype(np.float32)
    before = execute_onnx(m, {"x": x})["y"]
    t = m.transform(AbsorbBipolarPadIntoConv())
    ops = [n.op_type for n in t.graph.node]
    assert ("Pad" not in ops) == absorbed
    if absorbed:
        conv = t.graph.node[0]
        assert [list(a.ints) for a in conv.attribute if a.name == "pads"] == [[1, 1, 1, 1]]
        # the Conv now pads with 0: different from the -1 padding until the XNOR conversion
        # gives bit 0 its -1 meaning, which is why the step checks that conversion afterwards
        assert not np.array_equal(execute_onnx(t, {"x": x})["y"], before)
    else:
        np.testing.assert_array_equal(execute_onnx(t, {"x": x})["y"], before)


def _build(net: str, root):
    import torch

    from maskbnn.pipeline.export.qonnx_export import export_checkpoint
    from maskbnn.pipeline.finn.build import run_build

    torch.set_num_threads(1)
    ckpt = calibrated_checkpoint(net, root)
    exp = export_checkpoint(net, ckpt, root / "export")
    summary = run_build(net, exp.topk, "Pynq-Z1", root / "Pynq-Z1")
    return ckpt, root / "Pynq-Z1", summary


@pytest.mark.slow
def test_minus_one_padding_passes_the_golden_chain(tmp_path):
    from maskbnn.pipeline.finn.hwgraph import read_program
    from maskbnn.pipeline.verify.chain import verify

    net = "vgg_small_finn_0.125"
    ckpt, out, _ = _build(net, tmp_path)
    kinds = [layer.kind for layer in read_program(out / "hw_model.onnx").layers]
    assert kinds.count("FMPadding") == 5  # one per padded binary conv, all in hardware
    r = verify(net, checkpoint=ckpt, n_images=120, finn_images=2, streamlined_images=16, build=out)
    assert r["passed"]


@pytest.mark.slow
def test_zero_padding_trap_is_caught(tmp_path):
    from maskbnn.pipeline.verify.chain import verify

    net = "vgg_small_finn_0.125_zeropad"
    ckpt, out, _ = _build(net, tmp_path)  # FINN builds it without complaint...
    with pytest.raises(VerificationError, match="streamlined") as err:  # ...the chain does not
        verify(net, checkpoint=ckpt, n_images=120, finn_images=2, streamlined_images=16, build=out)
    assert ".jpg" in str(err.value)  # the offending real images are named


def test_unmappable_pad_is_refused_before_streamlining():
    from maskbnn.pipeline.finn.build_steps import step_streamline_bipolar_pad

    m = _pad_conv_graph(0.5, True)
    with pytest.raises(UserError, match="Pad node"):
        step_streamline_bipolar_pad(m, None)
