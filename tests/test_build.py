"""Build: FINN+'s steps to the folded hardware graph, our bit-width fix, estimates, configs."""

from __future__ import annotations

import json

import pytest
from qonnx.core.modelwrapper import ModelWrapper

from maskbnn.errors import UserError


def test_build_outputs_and_estimates(built_025):
    d, s = built_025["dir"], built_025["summary"]
    for f in ("hw_model.onnx", "program.npz", "estimates.json", "estimates.md", "estimates.png",
              "time_per_step.json", "build.json", "intermediate_models/streamline.onnx"):  # fmt: skip
        assert (d / f).is_file(), f
    est = json.loads((d / "estimates.json").read_text())
    assert est["part"] == "xc7z020clg400-1" and est["total"]["fps"] > 100
    cycles = max(L["cycles"] for L in est["layers"])
    assert est["total"]["max_cycles"] == cycles
    assert s["fps"] == pytest.approx(1e8 / cycles)
    assert "| MVAU_hls_7 |" in (d / "estimates.md").read_text()  # the class layer
    # the committed default folding keeps the whole fabric (FIFOs, shell, margin) within budget
    assert est["fabric_percent"]["LUT"] <= 80 and est["fabric_percent"]["BRAM_18K"] <= 90
    assert "## Whole fabric" in (d / "estimates.md").read_text()


def test_finn_minimize_bit_width_bug_is_caught_and_fixed(built_025):
    """FINN+ 1.6.1's own accumulator minimisation types the last 128-input popcount INT8; the
    static range check and the worst-case inputs catch it, FixXnorPopcountWidths repairs it."""
    from finn.transformation.fpgadataflow.minimize_accumulator_width import (
        MinimizeAccumulatorWidth,
    )

    from maskbnn.pipeline.finn.build_steps import FixXnorPopcountWidths
    from maskbnn.pipeline.finn.hwgraph import read_program
    from maskbnn.pipeline.verify.stages import dtype_range_problems, worst_case_layer_problems

    d = built_025["dir"]
    model = ModelWrapper(str(d / "hw_model.onnx"))
    buggy = model.transform(MinimizeAccumulatorWidth())
    last = buggy.get_nodes_by_op_type("MVAU_hls")[-1]
    attrs = {a.name: a.s.decode() for a in last.attribute if a.name.endswith("DataType")}
    assert attrs["outputDataType"] == "INT8"  # the bug, as FINN+ 1.6.1 has it
    path = d.parent / "buggy.onnx"
    buggy.save(str(path))
    program = read_program(path)
    assert any(f"{last.name}: reaches [0, 128]" in p for p in dtype_range_problems(program))
    worst = worst_case_layer_problems(program)
    assert any(last.name in p and "hardware [-128" in p and "exact [128" in p for p in worst)

    fixed, changed = FixXnorPopcountWidths().apply(buggy)
    assert changed
    fixed.save(str(path))
    program = read_program(path)
    assert dtype_range_problems(program) == [] and worst_case_layer_problems(program) == []
    assert FixXnorPopcountWidths().apply(fixed)[1] is False  # idempotent


def test_shipped_build_has_no_narrow_types(built_025):
    from maskbnn.pipeline.finn.hwgraph import read_program
    from maskbnn.pipeline.verify.stages import dtype_range_problems

    assert dtype_range_problems(read_program(built_025["dir"] / "hw_model.onnx")) == []


def test_build_config_is_typed_and_strict(tmp_path):
    from maskbnn.config import load_network_config

    cfg = load_network_config("mask_1w1a")
    assert cfg.build.board == "Pynq-Z1" and cfg.build.folding_path().is_file()
    small = load_network_config("mask_1w1a_0.25").build
    # "{board}" in the folding path picks the optimizer's file for the board being built
    assert small.folding_path(board="Pynq-Z2").name == "mask_1w1a_0.25_Pynq-Z2.json"
    assert all(small.folding_path(board=b).is_file() for b in ("Pynq-Z1", "Pynq-Z2"))
    text = (cfg.path.parent / "mask_1w1a_0.25.yaml").read_text()
    (tmp_path / "mask_1w1a_0.25.yaml").write_text(text.replace("clock_ns:", "clock_mhz:"))
    with pytest.raises(UserError, match="unknown keys \\['clock_mhz'\\]"):
        load_network_config("mask_1w1a_0.25", tmp_path)
    (tmp_path / "mask_1w1a_0.25.yaml").write_text(text.replace("Pynq-Z1", "ZCU104"))
    with pytest.raises(
        UserError, match="board: input should be 'Pynq-Z1' or 'Pynq-Z2', got 'ZCU104'"
    ):
        load_network_config("mask_1w1a_0.25", tmp_path)


def test_missing_tool_names_env_and_docker(monkeypatch):
    from maskbnn.errors import MissingToolError
    from maskbnn.pipeline.finn.env import require_tool

    monkeypatch.delenv("XILINX_VIVADO", raising=False)
    with pytest.raises(
        MissingToolError, match="XILINX_VIVADO.*make docker-bitstream NET=mask_1w1a"
    ):
        require_tool("vivado", "mask_1w1a")


def test_missing_tool_inside_the_image_speaks_of_the_mount(monkeypatch):
    """In our image the docker-bitstream route is what runs: the advice is about the mount."""
    from maskbnn.errors import MissingToolError
    from maskbnn.pipeline.finn.env import require_tool

    monkeypatch.delenv("XILINX_VIVADO", raising=False)
    monkeypatch.setenv("MASKBNN_CONTAINER", "1")
    monkeypatch.setenv("VIVADO_VERSION", "2024.2")
    monkeypatch.setenv("XILINX_ROOT", "/tools/Xilinx")
    with pytest.raises(MissingToolError) as err:
        require_tool("vivado", "mask_1w1a")
    assert "Vivado 2024.2 under /tools/Xilinx, mounted from the host" in str(err.value)
    assert "XILINX_ROOT=/path/to/Xilinx" in str(err.value)


@pytest.mark.slow
def test_shipped_folding_file_is_valid_for_1x(tmp_path):
    """The committed 1x folding file against the 1x hardware graph (export + steps up to
    specialisation)."""
    import torch

    from maskbnn.models.registry import get_network
    from maskbnn.paths import BUILD_CONFIGS
    from maskbnn.pipeline.export.qonnx_export import export_qonnx_files
    from maskbnn.pipeline.finn.build import finn_config, steps
    from maskbnn.pipeline.fold.folding import validate_folding

    torch.manual_seed(0)
    model, cfg = get_network("mask_1w1a")
    exp = export_qonnx_files(model.eval(), "mask_1w1a", tmp_path)
    fcfg = finn_config(cfg, "Pynq-Z1", tmp_path / "b")
    m = ModelWrapper(str(exp.topk))
    for name, fn in steps():
        if name == "validate_folding":
            break
        m = fn(m, fcfg)
    validate_folding(m, BUILD_CONFIGS / "folding" / "mask_1w1a_Pynq-Z1.json")
