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
    from maskbnn.pipeline.fold.folding import folding_problems

    ok = {
        "Defaults": {},
        "MVAU_hls_0": {"PE": 4, "SIMD": 16},
        "ConvolutionInputGenerator_rtl_1": {"SIMD": 16},
    }
    assert folding_problems(hw_model, ok) == []


def test_unknown_node_lists_valid_names(hw_model, tmp_path):
    from maskbnn.pipeline.fold.folding import validate_folding

    path = tmp_path / "f.json"
    path.write_text(json.dumps({"MVAU_0": {"PE": 2}}))
    with pytest.raises(UserError, match=r"unknown node names \['MVAU_0'\].*MVAU_hls_0"):
        validate_folding(hw_model, path)


def test_pe_and_simd_must_divide(hw_model):
    from maskbnn.pipeline.fold.folding import folding_problems

    probs = folding_problems(hw_model, {"MVAU_hls_0": {"PE": 3, "SIMD": 5}})
    assert any("PE=3 must divide MH=16; legal: [1, 2, 4, 8, 16]" in p for p in probs)
    assert any("SIMD=5 must divide MW=144" in p for p in probs)


def test_window_generator_coupling(hw_model):
    from maskbnn.pipeline.fold.folding import folding_problems

    probs = folding_problems(
        hw_model,
        {
            "ConvolutionInputGenerator_rtl_1": {"SIMD": 16},
            "MVAU_hls_0": {"SIMD": 8},
            "ConvolutionInputGenerator_rtl_2": {"SIMD": 2},
            "Pool_hls_0": {"PE": 4},
        },  # fmt: skip
    )
    assert any(
        "MVAU's SIMD (8) must be a multiple of the window generator's SIMD (16)" in p for p in probs
    )
    assert any("must equal the pool's PE (4)" in p for p in probs)


def test_bad_file_is_a_user_error(tmp_path, hw_model):
    from maskbnn.pipeline.fold.folding import validate_folding

    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        validate_folding(hw_model, bad)


@pytest.mark.parametrize(
    "folding,expected",
    [
        ({"MVAU_hls_0": 4}, "MVAU_hls_0: expected an object of attributes, got 4"),
        ({"Defaults": [1, 2]}, "Defaults: expected an object of attributes, got [1, 2]"),
        ({"MVAU_hls_0": {"SIMD": "lots"}}, "MVAU_hls_0: SIMD='lots' must be a whole number"),
        ({"MVAU_hls_0": {"PE": True}}, "MVAU_hls_0: PE=True must be a whole number"),
        (
            {"ConvolutionInputGenerator_rtl_1": {"SIMD": "16"}},
            "ConvolutionInputGenerator_rtl_1: SIMD='16' must be a whole number",
        ),
        ({"Defaults": {"PE": 4}}, "Defaults.PE: expected [value, [op types]"),
        ({"Defaults": {"PE": [2, "all", 4, "all"]}}, 'Defaults.PE: "all" must be the only pair'),
        ({"Defaults": {"PE": [2, 7]}}, "Defaults.PE: op types must be a list of names"),
        (
            {"Defaults": {"PE": [3, ["MVAU_hls"]]}},
            "Defaults.PE on MVAU_hls_0: PE=3 must divide MH=16",
        ),
        ({"Defaults": {"PE": [1, "all"]}}, "have no attribute 'PE'"),
    ],
)
def test_malformed_entries_and_defaults_are_reported_not_crashed_on(hw_model, folding, expected):
    from maskbnn.pipeline.fold.folding import folding_problems

    probs = folding_problems(hw_model, folding)
    assert any(expected in p for p in probs), probs


def test_legal_defaults_are_accepted_and_node_entries_override_them(hw_model):
    from maskbnn.pipeline.fold.folding import folding_problems

    assert folding_problems(hw_model, {"Defaults": {"PE": [1, ["Thresholding_rtl"]]}}) == []
    bad = {"Defaults": {"PE": [2, ["Thresholding_rtl"]]}}  # Thresholding_rtl_0 has 3 channels
    assert folding_problems(hw_model, bad) != []
    assert folding_problems(hw_model, bad | {"Thresholding_rtl_0": {"PE": 1}}) == []


def test_the_message_names_file_key_and_value(hw_model, tmp_path):
    from maskbnn.pipeline.fold.folding import validate_folding

    path = tmp_path / "f.json"
    path.write_text(json.dumps({"MVAU_hls_0": {"SIMD": "lots"}, "Pool_hls_0": []}))
    with pytest.raises(UserError) as err:
        validate_folding(hw_model, path)
    text = str(err.value)
    assert str(path) in text and "SIMD='lots'" in text and "Pool_hls_0: expected an object" in text
