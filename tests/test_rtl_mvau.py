"""The first conv on FINN's DSP-based RTL MVAU: thresholds split out, weights INT2
(pipeline/finn/rtl_mvau.py); same outputs on real images, priced by FINN, legal, checked."""

from __future__ import annotations

import math

import numpy as np
import pytest
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp

from maskbnn.pipeline.finn.rtl_mvau import SplitThresholdsForRtlMvau

PART = "xc7z020clg400-1"


@pytest.fixture(scope="module")
def before_split(built_025):
    """The build's graph right after convert_to_hw: the first MVAU still holds its thresholds."""
    return ModelWrapper(str(built_025["dir"] / "intermediate_models" / "convert_to_hw.onnx"))


@pytest.fixture(scope="module")
def images():
    from maskbnn.pipeline.verify.chain import load_images

    x, _, _ = load_images("mask_1w1a_0.25", 6)
    return x


def _run(model, x: np.ndarray) -> np.ndarray:
    from qonnx.core.onnx_exec import execute_onnx

    inp, out = model.graph.input[0].name, model.graph.output[0].name
    return np.concatenate(
        [execute_onnx(model, {inp: x[i : i + 1].astype(np.float32)})[out] for i in range(len(x))]
    )


def test_split_keeps_outputs_on_real_images(before_split, images):
    import copy

    first = before_split.get_nodes_by_op_type("MVAU")[0]
    assert getCustomOp(first).get_input_datatype(1).name == "BIPOLAR" and len(first.input) == 3
    split, changed = SplitThresholdsForRtlMvau().apply(copy.deepcopy(before_split))
    assert changed
    mvau = split.get_nodes_by_op_type("MVAU")[0]
    inst = getCustomOp(mvau)
    assert (inst.get_nodeattr("noActivation"), inst.get_input_datatype(1).name) == (1, "INT2")
    assert inst.get_nodeattr("preferred_impl_style") == "rtl" and len(mvau.input) == 2
    np.testing.assert_array_equal(  # weight values unchanged, only their type
        split.get_initializer(mvau.input[1]), before_split.get_initializer(first.input[1])
    )
    thr = split.find_consumer(mvau.output[0])
    assert thr.op_type == "Thresholding" and thr.output[0] == first.output[0]
    # the XNOR-popcount MVAUs are left alone, and a second pass changes nothing
    assert len(split.get_nodes_by_op_type("MVAU")) == len(before_split.get_nodes_by_op_type("MVAU"))
    assert SplitThresholdsForRtlMvau().apply(split)[1] is False
    np.testing.assert_array_equal(_run(split, images), _run(before_split, images))


def test_build_config_switches_the_split(before_split):
    """build.rtl_mvau (on by default; off for cnv_1w1a, the finn-examples design the margin is
    calibrated on) selects the split or leaves FINN's HLS MVAU with its thresholds."""
    import copy

    from maskbnn.config import load_network_config
    from maskbnn.pipeline.finn.build import steps

    assert load_network_config("mask_1w1a_0.25").build.rtl_mvau
    assert not load_network_config("cnv_1w1a").build.rtl_mvau
    for on, inputs in ((True, 2), (False, 3)):
        step = dict(steps(rtl_mvau=on))["split_rtl_mvau"]
        m = step(copy.deepcopy(before_split), None)
        assert len(m.get_nodes_by_op_type("MVAU")[0].input) == inputs


def test_build_specialises_the_first_conv_to_the_rtl_mvau(built_025):
    model = ModelWrapper(str(built_025["dir"] / "hw_model.onnx"))
    ops = [n.op_type for n in model.graph.node]
    assert ops[:4] == ["Thresholding_rtl", "ConvolutionInputGenerator_rtl", "MVAU_rtl",
                       "Thresholding_rtl"]  # fmt: skip
    inst = getCustomOp(model.graph.node[2])
    # FINN's minimisation narrowed the 27-input 8-bit x +-1 accumulator from INT32
    assert inst.get_output_datatype().bitwidth() < 16 and inst.get_nodeattr("resType") == "dsp"
    assert ops.count("MVAU_rtl") == 1  # the XNOR-popcount layers stay HLS (no multiplier)


def test_optimizer_offers_the_rtl_mvau_priced_by_finn(built_025):
    from maskbnn.pipeline.fold import optimizer as fo

    graph = fo.load_graph(built_025["dir"] / "intermediate_models" / "specialize_layers.onnx")
    unit = next(u for u in fo.build_units(graph, PART) if u.name.startswith("MVAU_rtl"))
    assert unit.options
    for o in unit.options:
        a = o.attrs[unit.name]
        # DSP only; weights in BRAM only (FINN prices LUTRAM weights of the RTL MVAU at 0 LUT)
        assert (a["resType"], a["ram_style"]) == ("dsp", "block")
        assert o.dsp == math.ceil(a["PE"] / 4) * a["SIMD"]  # FINN's DSP48E1 formula
        swg_lut = o.lut  # FINN's MVAU_rtl LUT estimate is 0: what is left is the window generator
        assert swg_lut == sum(
            v for n, v in _luts(graph, o.attrs).items() if not n.startswith("MVAU_rtl")
        )
    fastest = min(unit.options, key=lambda o: o.cycles)
    assert fastest.attrs[unit.name]["PE"] == 16 and fastest.attrs[unit.name]["SIMD"] == 27


def _luts(graph, attrs: dict) -> dict[str, int]:
    import copy

    work = copy.deepcopy(graph)
    out = {}
    for name, values in attrs.items():
        inst = getCustomOp(work.get_node_from_name(name))
        for k, v in values.items():
            inst.set_nodeattr(k, v)
        out[name] = int(inst.node_res_estimation(PART)["LUT"])
    return out


def test_folding_rules_accept_the_rtl_mvau(built_025):
    from maskbnn.pipeline.fold.folding import folding_problems

    graph = ModelWrapper(str(built_025["dir"] / "intermediate_models" / "specialize_layers.onnx"))
    ok = {"MVAU_rtl_0": {"PE": 16, "SIMD": 27, "resType": "dsp", "ram_style": "block",
                         "mem_mode": "internal_decoupled"},
          "ConvolutionInputGenerator_rtl_0": {"SIMD": 3}, "Thresholding_rtl_1": {"PE": 4}}  # fmt: skip
    assert folding_problems(graph, ok) == []
    bad = folding_problems(graph, {"MVAU_rtl_0": {"PE": 3, "resType": "lut"}})
    assert any("PE=3 must divide MH=16" in p for p in bad)
    assert any("FINN's RTL MVAU takes only 'dsp'" in p for p in bad)


def test_static_checks_read_the_split_thresholds(built_025):
    """A Thresholding reading an MVAU's accumulator must take its whole range: a narrow input
    type is named by the range check and by the worst-case inputs."""
    from maskbnn.pipeline.finn.hwgraph import read_program
    from maskbnn.pipeline.verify.stages import dtype_range_problems, worst_case_layer_problems

    program = read_program(built_025["dir"] / "hw_model.onnx")
    assert dtype_range_problems(program) == [] and worst_case_layer_problems(program) == []
    thr = next(L for L in program.layers if L.kind == "Thresholding" and L.name.endswith("_1"))
    thr.attrs["in_dtype"] = "INT8"
    assert any(thr.name in p and "in_dtype is INT8" in p for p in dtype_range_problems(program))
    assert any(thr.name in p for p in worst_case_layer_problems(program))


@pytest.mark.slow
def test_published_folding_keeps_the_rtl_mvau_on_dsps():
    """fold-report's published foldings (LUT multipliers, as published) stay legal when the
    first conv is FINN's RTL MVAU, which takes only resType 'dsp'."""
    from maskbnn.pipeline.fold import compare as fc
    from maskbnn.pipeline.fold import optimizer as fo
    from maskbnn.pipeline.fold.folding import folding_problems

    graph = fo.load_graph(fo.hardware_graph("mask_1w1a", "Pynq-Z1"))
    units = fo.build_units(graph, PART)
    folding, _ = fc.published_folding(graph, "finn-examples cnv-w1a1", units, PART)
    assert folding["MVAU_rtl_0"]["resType"] == "dsp" and folding["MVAU_hls_0"]["resType"] == "lut"
    assert folding_problems(graph, folding) == []
