"""The bitstream step on this machine (no Vivado): it reaches hw_codegen, every layer's HLS/RTL
sources exist, the missing-tool message is exact, the manifest is complete and its hashes verify.
No test makes or fakes a bitstream."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from maskbnn.errors import MissingToolError
from maskbnn.pipeline import bitstream as B

NET = "mask_1w1a_0.25"
BOARD = "Pynq-Z1"


@pytest.fixture(scope="module")
def offline_run(built_025) -> dict:
    """verify (a small real-image run) then the bitstream step, which must stop at the tools."""
    import torch

    from maskbnn.pipeline.verify import verify

    if all(B.tool_status().values()):
        pytest.skip("Vivado and Vitis HLS are installed: these tests cover the offline path")
    torch.set_num_threads(1)
    build = built_025["dir"]
    verify(NET, BOARD, built_025["checkpoint"], n_images=40, finn_images=2, build=build)
    with pytest.raises(MissingToolError) as err:
        B.run_bitstream(NET, BOARD, build, checkpoint=built_025["checkpoint"])
    return {"build": build, "out": build / "bitstream", "error": err.value}


@pytest.mark.slow
def test_missing_tool_message_is_exact(offline_run):
    err = offline_run["error"]
    missing = [t for t, ok in B.tool_status().items() if not ok]
    note = B.board_files_problem(BOARD, None)  # None where FINN+'s board files are fetched
    assert str(err) == B.missing_tools_message(NET, BOARD, missing, note, offline_run["out"])
    assert err.exit_code == 4
    text = str(err)
    assert "XILINX_VIVADO" in text or "vivado" not in missing
    assert "XILINX_HLS, XILINX_VITIS" in text or "vitis_hls" not in missing
    assert f"`make docker-bitstream NET={NET} BOARD={BOARD} XILINX_ROOT=" in text
    assert "\n" not in text  # one message


@pytest.mark.slow
def test_flow_reaches_hw_codegen_with_sources_for_every_layer(offline_run):
    from qonnx.core.modelwrapper import ModelWrapper

    out = offline_run["out"]
    model = ModelWrapper(str(out / "hw_codegen.onnx"))
    sources = json.loads((out / "sources.json").read_text())
    names = [n.name for n in model.graph.node]
    assert sorted(sources["layers"]) == sorted(names)
    hls = [n for n in model.graph.node if n.op_type.endswith("_hls")]
    rtl = [n for n in model.graph.node if n.op_type.endswith("_rtl")]
    assert sources["hls"] == len(hls) > 0 and sources["rtl"] == len(rtl) > 0
    assert any(n.op_type.startswith("StreamingFIFO") for n in rtl)  # FINN's FIFO insertion ran
    for name, entry in sources["layers"].items():
        for f in entry["files"]:
            p = B.REPO_ROOT / f
            assert p.is_file() and p.stat().st_size > 0, f"{name}: {f}"
    cpp = (B.REPO_ROOT / sources["layers"][hls[0].name]["files"][0]).read_text()
    assert "#include" in cpp and hls[0].name in cpp
    assert (out / "intermediate_models" / "hw_codegen.onnx").is_file()


@pytest.mark.slow
def test_manifest_is_complete_and_hashes_verify(offline_run, built_025):
    out = offline_run["out"]
    m = json.loads((out / "manifest.json").read_text())
    for key in ("network", "board", "board_part", "clock_ns", "folding", "tools", "estimates",
                "verification", "exported_model", "golden", "files", "status"):  # fmt: skip
        assert key in m, key
    assert m["network"] == NET and m["board"] == BOARD
    assert m["artifacts"]["bitstream"] is None and m["status"].startswith("incomplete")
    assert not (out / "accelerator.bit").exists()
    assert m["verification"]["passed"] is True
    assert m["tools"]["finn_plus"] == "1.6.1"
    assert m["folding"]["applied"]  # PE/SIMD per layer, read from the graph
    assert B.check_manifest(out) == []
    # the golden vectors are the Brevitas model's outputs on real images
    import numpy as np

    x = np.load(out / "golden" / "inputs.npy")
    top1 = np.load(out / "golden" / "expected_top1.npy")
    assert x.dtype == np.uint8 and x.shape[1:] == (32, 32, 3) and len(top1) == len(x)
    # a changed file is caught
    settings = out / "settings.json"
    settings.write_text(settings.read_text() + " ")
    assert B.check_manifest(out) == ["settings.json: sha256 differs"]


def test_pynq_z2_board_files_absent_or_found(tmp_path: Path):
    note = B.board_files_problem("Pynq-Z2", tmp_path)
    assert note is not None and "tul.com.tw:pynq-z2:part0:1.0" in note and "--board-files" in note
    # a folder holding Vivado's board.xml for the board part is recognised
    board = tmp_path / "pynq-z2" / "A.0"
    board.mkdir(parents=True)
    (board / "board.xml").write_text(
        '<board schema_version="2.1" vendor="tul.com.tw" name="pynq-z2" display_name="PYNQ-Z2">'
        "</board>"
    )
    assert B.find_board_files("Pynq-Z2", tmp_path) == board
    assert B.board_files_problem("Pynq-Z2", tmp_path) is None
    assert B.find_board_files("Pynq-Z1", tmp_path) is None


def test_unverified_build_is_refused(tmp_path: Path):
    from maskbnn.errors import UserError

    with pytest.raises(UserError, match="make build"):
        B.verified_build(NET, BOARD, tmp_path)
