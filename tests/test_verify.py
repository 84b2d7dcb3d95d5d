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
    from maskbnn.pipeline.verify import verify

    r = verify("mask_1w1a_0.25", checkpoint=built_025["checkpoint"], n_images=1000, streamlined_images=200,
               finn_images=2, build=built_025["dir"])  # fmt: skip
    assert r["passed"] and r["images"]["real"] == 1000  # the 0.25x chain, as CI runs it
    assert json.loads((built_025["dir"] / "verification.json").read_text())["passed"] is True


@pytest.mark.parametrize("what", ["threshold", "weight"])
def test_corrupted_hardware_graph_fails_with_report(built_025, tmp_path, what):
    from maskbnn.pipeline.hwgraph import export_program
    from maskbnn.pipeline.verify import verify

    d = _copy_build(built_025, tmp_path)
    m = ModelWrapper(str(d / "hw_model.onnx"))
    if what == "threshold":  # one channel of the second conv layer's thresholds, moved by 9
        node = m.get_node_from_name("MVAU_hls_1")
        t = m.get_initializer(node.input[2]).copy()
        t[3] += 9
        m.set_initializer(node.input[2], t)
    else:  # one weight of the last layer flipped
        node = m.get_node_from_name("MVAU_hls_8")
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

    from maskbnn.pipeline import finn_env  # noqa: F401

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
