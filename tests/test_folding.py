"""Folding files are refused before a build when a node name or a PE/SIMD value is illegal."""

from __future__ import annotations

import json

import pytest
from qonnx.core.modelwrapper import ModelWrapper

from maskbnn.errors import UserError


@pytest.fixture(scope="module")
def hw_model(built_025):
    return ModelWrapper(str(built_025["dir"] / "intermediate_models" / "specialize_layers.onnx"))


def test_shipped_style_folding_is_accepted(hw_model):
    from maskbnn.pipeline.folding import folding_problems

    ok = {
        "Defaults": {},
        "MVAU_hls_1": {"PE": 4, "SIMD": 16},
        "ConvolutionInputGenerator_rtl_1": {"SIMD": 16},
    }
    assert folding_problems(hw_model, ok) == []


def test_unknown_node_lists_valid_names(hw_model, tmp_path):
    from maskbnn.pipeline.folding import validate_folding

    path = tmp_path / "f.json"
    path.write_text(json.dumps({"MVAU_0": {"PE": 2}}))
    with pytest.raises(UserError, match=r"unknown node names \['MVAU_0'\].*MVAU_hls_0"):
        validate_folding(hw_model, path)


def test_pe_and_simd_must_divide(hw_model):
    from maskbnn.pipeline.folding import folding_problems

    probs = folding_problems(hw_model, {"MVAU_hls_1": {"PE": 3, "SIMD": 5}})
    assert any("PE=3 must divide MH=16; legal: [1, 2, 4, 8, 16]" in p for p in probs)
    assert any("SIMD=5 must divide MW=144" in p for p in probs)


def test_window_generator_coupling(hw_model):
    from maskbnn.pipeline.folding import folding_problems

    probs = folding_problems(
        hw_model,
        {
            "ConvolutionInputGenerator_rtl_1": {"SIMD": 16},
            "MVAU_hls_1": {"SIMD": 8},
            "ConvolutionInputGenerator_rtl_2": {"SIMD": 2},
            "Pool_hls_0": {"PE": 4},
        },  # fmt: skip
    )
    assert any(
        "MVAU's SIMD (8) must be a multiple of the window generator's SIMD (16)" in p for p in probs
    )
    assert any("must equal the pool's PE (4)" in p for p in probs)


def test_bad_file_is_a_user_error(tmp_path, hw_model):
    from maskbnn.pipeline.folding import validate_folding

    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        validate_folding(hw_model, bad)
