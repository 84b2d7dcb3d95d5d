"""Golden verification passes on a good build and fails, with a useful report, on a bad one."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from qonnx.core.modelwrapper import ModelWrapper

from maskbnn.errors import VerificationError

pytestmark = pytest.mark.slow


def _copy_build(built, tmp_path):
    dst = tmp_path / "build"
    shutil.copytree(built["dir"], dst)
    return dst


def test_chain_passes_on_a_good_build(built_025):
    from maskbnn.pipeline.verify.chain import verify

    r = verify("mask_1w1a_0.25", checkpoint=built_025["checkpoint"], n_images=1000, streamlined_images=200,
               finn_images=2, build=built_025["dir"])  # fmt: skip
    assert r["passed"] and r["images"]["real"] == 1000  # the 0.25x chain, as CI runs it
    assert json.loads((built_025["dir"] / "verification.json").read_text())["passed"] is True


@pytest.mark.parametrize("what", ["threshold", "weight"])
def test_corrupted_hardware_graph_fails_with_report(built_025, tmp_path, what):
    from maskbnn.pipeline.finn.hwgraph import export_program
    from maskbnn.pipeline.verify.chain import verify

    d = _copy_build(built_025, tmp_path)
    m = ModelWrapper(str(d / "hw_model.onnx"))
    if what == "threshold":  # one channel of the second conv layer's thresholds, moved by 9
        node = m.get_node_from_name("MVAU_hls_0")  # the first XNOR layer
        t = m.get_initializer(node.input[2]).copy()
        t[3] += 9
        m.set_initializer(node.input[2], t)
    else:  # one weight of the last layer flipped
        node = m.get_node_from_name("MVAU_hls_7")
        w = m.get_initializer(node.input[1]).copy()
        w[5, 2] = 1 - w[5, 2]
        m.set_initializer(node.input[1], w)
    m.save(str(d / "hw_model.onnx"))
    export_program(d / "hw_model.onnx", d / "program.npz")
    with pytest.raises(VerificationError, match=r"verification stage\(s\) failed") as err:
        verify("mask_1w1a_0.25", checkpoint=built_025["checkpoint"], n_images=120,
               finn_images=2, build=d, streamlined_images=20)  # fmt: skip
    assert "verification.md" in str(err.value)
    report = json.loads((d / "verification.json").read_text())
    failed = {s["name"]: s for s in report["stages"] if not s["passed"]}
    assert report["passed"] is False
    assert "hwexec.popcount" in failed  # accumulators differ from Brevitas'
    first = failed["hwexec.popcount"]["first"][0]
    assert first["image"] and first["expected"] != first["got"]
    # the earlier stages are still fine: the report points at the hardware graph
    assert all(
        s["passed"] for s in report["stages"] if s["name"].startswith(("qonnx", "streamlined"))
    )
    assert "**FAIL**" in (d / "verification.md").read_text()
    assert np.all(np.isfinite(failed["hwexec.popcount"]["first"][0]["expected"]))


def test_fast_sanitize_matches_qonnx():
    """finn_env swaps qonnx's per-element sanitize check for a vectorised one: same results."""
    import qonnx.core.onnx_exec as onnx_exec
    from onnx import TensorProto, helper
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.basic import sanitize_quant_values as original

    from maskbnn.pipeline.finn import env as finn_env  # noqa: F401

    assert onnx_exec.sanitize_quant_values is not original
    t = helper.make_tensor_value_info("t", TensorProto.FLOAT, [4])
    m = ModelWrapper(helper.make_model(helper.make_graph([], "g", [t], [t])))
    m.set_tensor_datatype("t", DataType["INT4"])
    for values in ([1.0, -2.0, 3.0, 7.0], [1.0 + 1e-7, -2.0, 3.0 - 1e-7, 0.0]):
        a = original(m, ["t"], {"t": np.array(values, np.float32)})["t"]
        b = onnx_exec.sanitize_quant_values(m, ["t"], {"t": np.array(values, np.float32)})["t"]
        np.testing.assert_array_equal(a, b)
    for fn in (original, onnx_exec.sanitize_quant_values):
        with pytest.raises(Exception, match="Rounding error is too high"):
            fn(m, ["t"], {"t": np.array([0.5, 1.0, 2.0, 3.0], np.float32)})


def _im2col_graph(tmp_path, batch: int):
    """A lowered 3x3 convolution's Im2Col on a 4x4x2 map, shaped for `batch` images."""
    from onnx import TensorProto, helper
    from qonnx.core.datatype import DataType
    from qonnx.util.basic import qonnx_make_model

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4, 4, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 2, 2, 18])
    node = helper.make_node(
        "Im2Col", ["x"], ["y"], domain="qonnx.custom_op.general", kernel_size=[3, 3],
        stride=[1, 1], pad_amount=[0, 0, 0, 0], input_shape=f"({batch},4,4,2)",
    )  # fmt: skip
    model = ModelWrapper(qonnx_make_model(helper.make_graph([node], "im2col", [x], [y])))
    model.set_tensor_datatype("x", DataType["UINT8"])
    path = tmp_path / f"im2col_{batch}.onnx"
    model.save(str(path))
    return path


def _patches(x: np.ndarray) -> np.ndarray:
    """Each 3x3 window of NHWC images, flattened as (kh, kw, c), the order FINN's lowering uses."""
    n, h, w, c = x.shape
    return np.stack(
        [x[:, i : i + 3, j : j + 3].reshape(n, -1) for i in range(h - 2) for j in range(w - 2)], 1
    ).reshape(n, h - 2, w - 2, 9 * c)


def test_onnx_stage_runs_lowered_graphs_image_by_image(tmp_path):
    """qonnx's Im2Col mixes the images of a batch; onnx_stage must not batch through it. The
    first assertion pins the qonnx bug: when it fails, qonnx is fixed and batching can return."""
    from qonnx.core.onnx_exec import execute_onnx

    from maskbnn.pipeline.verify.stages import onnx_stage

    x = np.random.default_rng(0).integers(0, 256, (3, 4, 4, 2)).astype(np.uint8)
    want = _patches(x.astype(np.float32))
    batched = execute_onnx(
        ModelWrapper(str(_im2col_graph(tmp_path, 3))), {"x": x.astype(np.float32)}
    )
    assert not np.array_equal(batched["y"], want)
    got = onnx_stage(_im2col_graph(tmp_path, 1), x)["output"]
    np.testing.assert_array_equal(got, want.reshape(3, -1))
