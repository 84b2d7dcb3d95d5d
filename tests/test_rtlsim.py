"""Verilator simulation of the RTL-backend layers of the 0.25x network, bit-exact against FINN's
Python execution on streams from real images; simulated cycles next to FINN's estimates."""

from __future__ import annotations

import os

import numpy as np
import pytest

from maskbnn.paths import REPO_ROOT
from maskbnn.pipeline.rtlsim import verilator as R

pytestmark = pytest.mark.skipif(
    R.verilator_version() is None, reason=f"Verilator is not installed: {R.INSTALL_HINT}"
)


@pytest.fixture(scope="module")
def codegen_025(built_025):
    from maskbnn.pipeline.finn.hardware import codegen_model

    return codegen_model("mask_1w1a_0.25", "Pynq-Z1", built_025["dir"])


@pytest.fixture(scope="module")
def images():
    from maskbnn.pipeline.verify.chain import load_images

    x, names, _ = load_images("mask_1w1a_0.25", 2)
    return x, names


@pytest.mark.slow
def test_rtl_layers_bit_exact_with_cycles(codegen_025, images, tmp_path_factory):
    x, names = images
    out = tmp_path_factory.mktemp("rtlsim")
    r = R.simulate_network(codegen_025, x, out, names)
    assert r["passed"] and (out / "rtlsim.json").is_file() and (out / "rtlsim.md").is_file()
    sim = [L for L in r["layers"] if L["simulated"]]
    kinds = {L["op_type"] for L in sim}
    # every RTL layer kind of the network: thresholds, sliding windows, the first conv's
    # DSP-based MVAU, width converters, FIFOs
    assert kinds == {"Thresholding_rtl", "ConvolutionInputGenerator_rtl", "MVAU_rtl",
                     "StreamingDataWidthConverter_rtl", "StreamingFIFO_rtl"}  # fmt: skip
    assert r["simulated"] == len(r["layers"]) and not r["not_simulated"]
    for L in r["layers"]:
        if L["op_type"] in ("Thresholding_rtl", "ConvolutionInputGenerator_rtl", "MVAU_rtl"):
            assert L["simulated"] and L["mismatches"] == 0, L["name"]
            # a real simulation: at least one cycle per output beat, and not above FINN's
            # analytical estimate by more than pipeline fill (the estimate is conservative)
            assert L["sim_cycles_first_frame"] <= 1.25 * L["finn_estimate_cycles"], L
            assert L["sim_cycles_per_frame"] > 0
        # a FIFO or width converter passes one frame in about as many cycles as it has beats
        assert L["sim_cycles_first_frame"] >= L["sim_cycles_per_frame"] > 0, L["name"]


@pytest.mark.slow
def test_a_wrong_expectation_is_caught(codegen_025, images, tmp_path):
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp

    x, _ = images
    model = ModelWrapper(str(codegen_025))
    node = next(n for n in model.graph.node if n.op_type == "Thresholding_rtl")
    ctx = R.generic_trace(model, x[:1])
    expected = np.stack([c[node.output[0]] for c in ctx]).copy()
    expected.reshape(-1)[5] += 1  # one element off
    res = R.simulate_layer(node, getCustomOp(node), [ctx[0][node.input[0]]], expected,
                           tmp_path / "layer", R.require_verilator())  # fmt: skip
    assert not res.passed and res.mismatches == 1 and res.first[0]["positions"] == [5]


@pytest.mark.slow
def test_rtl_mvau_reads_its_weight_stream(codegen_025, images, tmp_path):
    """The RTL MVAU's result comes from the weights the testbench streams (in1_V): the layer's
    own weights give FINN's result, negated ones do not."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp

    x, _ = images
    model = ModelWrapper(str(codegen_025))
    node = next(n for n in model.graph.node if n.op_type == "MVAU_rtl")
    inst = getCustomOp(node)
    assert R.has_weight_stream(inst)
    ctx = R.generic_trace(model, x[:1])
    args = ([ctx[0][node.input[0]]], np.stack([ctx[0][node.output[0]]]))
    w = model.get_initializer(node.input[1])
    version = R.require_verilator()
    ok = R.simulate_layer(node, inst, *args, tmp_path / "ok", version, weights=w)
    assert ok.passed and ok.mismatches == 0 and ok.sim_cycles_first_frame > 0
    wrong = R.simulate_layer(node, inst, *args, tmp_path / "neg", version, weights=-w)
    assert not wrong.passed and wrong.mismatches == 1


@pytest.mark.slow
def test_folded_rtl_mvau_is_bit_exact(codegen_025, images, tmp_path):
    """Folded (PE 4 of 16, SIMD 9 of 27): 12 weight beats per output pixel, in FINN's order."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp

    x, _ = images
    model = ModelWrapper(str(codegen_025))
    node = next(n for n in model.graph.node if n.op_type == "MVAU_rtl")
    ctx = R.generic_trace(model, x[:2])  # FINN's Python execution: folding does not change it
    inst = getCustomOp(node)
    inst.set_nodeattr("PE", 4)
    inst.set_nodeattr("SIMD", 9)
    gen = tmp_path / "gen"
    gen.mkdir()
    inst.set_nodeattr("code_gen_dir_ipgen", str(gen))
    inst.code_generation_ipgen(model, "xc7z020clg400-1", 10.0)
    assert int(inst.calc_wmem()) == 12
    res = R.simulate_layer(node, inst, [c[node.input[0]] for c in ctx],
                           np.stack([c[node.output[0]] for c in ctx]), tmp_path / "layer",
                           R.require_verilator(), weights=model.get_initializer(node.input[1]))  # fmt: skip
    assert res.passed and res.mismatches == 0, res.first
    assert res.sim_cycles_first_frame <= 1.25 * res.finn_estimate_cycles


@pytest.mark.slow
def test_a_layer_whose_build_fails_is_not_passed(codegen_025, images, tmp_path, monkeypatch):
    """A known tool limit (Verilator cannot build this layer) leaves it out of the simulation,
    listed and not passed: it is never counted as a bit-exact layer."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp

    x, _ = images
    model = ModelWrapper(str(codegen_025))
    node = next(n for n in model.graph.node if n.op_type == "StreamingFIFO_rtl")
    ctx = R.generic_trace(model, x[:1])
    expected = np.stack([c[node.output[0]] for c in ctx])
    broken = REPO_ROOT / "tests" / "doubles" / "broken-verilator"
    monkeypatch.setenv("PATH", f"{broken}:{os.environ['PATH']}")
    R._verilator_include.cache_clear()
    try:
        res = R.simulate_layer(node, getCustomOp(node), [ctx[0][node.input[0]]], expected,
                               tmp_path / "layer", "broken", cache=tmp_path / "cache")  # fmt: skip
    finally:
        R._verilator_include.cache_clear()
    assert not res.simulated and not res.passed and res.note.startswith("not simulated")


def test_layer_name_rename_is_exact():
    text = "module StreamingFIFO_rtl_1 (); // StreamingFIFO_rtl_10 stays; ./StreamingFIFO_rtl_1_x"
    out = R._rename(text, "StreamingFIFO_rtl_1")
    assert out == f"module {R.DUT} (); // StreamingFIFO_rtl_10 stays; ./{R.DUT}_x"


@pytest.mark.parametrize("dtype", ["BIPOLAR", "BINARY", "UINT2", "INT4", "INT9", "UINT8"])
@pytest.mark.parametrize("elems,width", [(1, 8), (5, 48), (32, 128)])
def test_stream_packing_matches_finn(dtype, elems, width):
    """Our NumPy packing gives the beats FINN's own (element-wise) packing gives, and back."""
    from finn.util.data_packing import npy_to_rtlsim_input, rtlsim_output_to_npy
    from qonnx.core.datatype import DataType

    dt = DataType[dtype]
    width = max(width, elems * dt.bitwidth())
    rng = np.random.default_rng(elems)
    x = rng.integers(dt.min(), dt.max() + 1, size=(1, 3, 4, elems)).astype(np.float32)
    if dtype == "BIPOLAR":
        x = np.where(x > 0, 1.0, -1.0).astype(np.float32)
    beats = R.pack_beats(x, dt)
    assert beats == list(npy_to_rtlsim_input(x, dt, width))
    back = R.unpack_beats(beats, dt, elems).reshape(x.shape)
    finn_back = rtlsim_output_to_npy(beats, None, dt, x.shape, width, dt.bitwidth())
    assert np.array_equal(back, x) and np.array_equal(finn_back, x)


def _width_converter(gen, in_width: int, out_width: int, elems: int):
    """A lone FINN RTL width converter of binary elements, its HDL generated by FINN."""
    from onnx import TensorProto, helper
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp
    from qonnx.util.basic import qonnx_make_model

    shape = [1, elems]
    node = helper.make_node(
        "StreamingDataWidthConverter_rtl", ["inp"], ["outp"],
        name="StreamingDataWidthConverter_rtl_0", domain="finn.custom_op.fpgadataflow.rtl",
        backend="fpgadataflow", inShape=shape, outShape=shape, inWidth=in_width,
        outWidth=out_width, dataType="BINARY",
    )  # fmt: skip
    tensors = [helper.make_tensor_value_info(t, TensorProto.FLOAT, shape) for t in ("i", "o")]
    node.input[0], node.output[0] = "i", "o"
    model = ModelWrapper(
        qonnx_make_model(helper.make_graph([node], "dwc", [tensors[0]], [tensors[1]]))
    )
    for t in ("i", "o"):
        model.set_tensor_datatype(t, DataType["BINARY"])
    inst = getCustomOp(model.graph.node[0])
    inst.set_nodeattr("code_gen_dir_ipgen", str(gen))
    inst.generate_hdl(model, "xc7z020clg400-1", 10.0)
    return model.graph.node[0], inst


def test_wide_width_converter_is_simulated(tmp_path):
    """1 -> 128 bits (the 1x network's widest converter): 128 output lanes, beyond Verilator's
    default loop-unroll limit that vpc.sv's buffer shift needs."""
    gen = tmp_path / "gen"
    gen.mkdir()
    node, inst = _width_converter(gen, 1, 128, 256)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 2, (1, 256)).astype(np.float32) for _ in range(3)]
    res = R.simulate_layer(node, inst, frames, np.stack(frames), tmp_path / "layer",
                           R.require_verilator(), cache=tmp_path / "cache")  # fmt: skip
    assert res.simulated and res.passed and res.mismatches == 0, res.note or res.first
    assert res.sim_cycles_per_frame >= 256  # one 1-bit input beat per cycle at most
