"""The bitstream step on this machine (no Vivado): it reaches hw_codegen, every layer's HLS/RTL
sources exist, the missing-tool message is exact, the manifest is complete and its hashes verify.
No test makes or fakes a bitstream."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from maskbnn.errors import MissingToolError
from maskbnn.pipeline.finn import hardware as H
from maskbnn.pipeline.release import bitstream as B
from maskbnn.pipeline.release.deploy import check_manifest

NET = "mask_1w1a_0.25"
BOARD = "Pynq-Z1"


@pytest.fixture(scope="module")
def offline_run(built_025) -> dict:
    """verify (a small real-image run) then the bitstream step, which must stop at the tools."""
    import torch

    from maskbnn.pipeline.verify.chain import verify

    if all(B.tool_status().values()):
        pytest.skip("Vivado and Vitis HLS are installed: these tests cover the offline path")
    torch.set_num_threads(1)
    build = built_025["dir"]
    verify(NET, BOARD, built_025["checkpoint"], n_images=40, finn_images=2, build=build)
    for stale in ("bitfile", "driver", "report", "stitched_ip"):  # an earlier run's outputs
        (build / "bitstream" / stale).mkdir(parents=True, exist_ok=True)
        (build / "bitstream" / stale / "from_an_earlier_run").write_text("stale")
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
def test_no_output_of_an_earlier_run_survives(offline_run):
    assert not list(offline_run["out"].rglob("from_an_earlier_run"))


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
    assert check_manifest(out) == []
    # the golden vectors are the Brevitas model's outputs on real images
    import numpy as np

    x = np.load(out / "golden" / "inputs.npy")
    top1 = np.load(out / "golden" / "expected_top1.npy")
    assert x.dtype == np.uint8 and x.shape[1:] == (32, 32, 3) and len(top1) == len(x)
    # a changed file is caught
    settings = out / "settings.json"
    settings.write_text(settings.read_text() + " ")
    assert check_manifest(out) == ["settings.json: sha256 differs"]


# board.xml as the vendors ship them: Digilent spells the board element's name in capitals while
# Vivado's board part id is lower case; each board sits in <board>/<revision>/board.xml.
BOARD_XML = {
    "Pynq-Z1": ("pynq-z1", "A.0", 'vendor="www.digilentinc.com" name="PYNQ-Z1" '
                'display_name="PYNQ-Z1"'),
    "Pynq-Z2": ("pynq-z2", "A.0", 'vendor="tul.com.tw" name="pynq-z2" display_name="PYNQ-Z2"'),
}  # fmt: skip


def write_board_files(root: Path, board: str) -> Path:
    folder, revision, attrs = BOARD_XML[board]
    where = root / folder / revision
    where.mkdir(parents=True)
    (where / "board.xml").write_text(
        f'<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n'
        f'<board schema_version="2.1" {attrs} url="https://example.invalid" '
        f'preset_file="preset.xml">\n  <file_version>1.1</file_version>\n</board>\n'
    )
    return where


@pytest.mark.parametrize("board", sorted(BOARD_XML))
def test_board_files_found_as_vivado_matches_them(tmp_path: Path, board: str):
    note = B.board_files_problem(board, tmp_path)
    assert note is not None and B.BOARD_PARTS[board] in note and "--board-files" in note
    where = write_board_files(tmp_path, board)
    assert B.find_board_files(board, tmp_path) == where
    assert B.board_files_problem(board, tmp_path) is None
    other = next(b for b in BOARD_XML if b != board)
    assert B.find_board_files(other, tmp_path) is None


def test_unverified_build_is_refused(tmp_path: Path):
    from maskbnn.errors import UserError
    from maskbnn.pipeline.verify.gate import verified_build

    with pytest.raises(UserError, match="make build"):
        verified_build(NET, BOARD, tmp_path)


def test_xilinx_libraries_are_on_the_loader_path_from_process_start(tmp_path: Path):
    """As FINN+'s own entry point: $XILINX_VIVADO/lib/lnx64.o (where the node simulators dlopen
    the simulator kernel from, by bare name) is on LD_LIBRARY_PATH of the process itself, which
    the loader reads only at start, so the process restarts once with it."""
    import os
    import subprocess
    import sys
    import sysconfig

    vivado = tmp_path / "Vivado" / "2024.2"
    script = tmp_path / "probe.py"
    script.write_text(
        "from maskbnn.pipeline.finn.env import ensure_xilinx_libraries\n"
        "ensure_xilinx_libraries()\n"
        "import multiprocessing\n"
        "multiprocessing.get_context('spawn').Lock()  # fails on a foreign libpython\n"
        "env = open('/proc/self/environ', 'rb').read().split(b'\\0')\n"
        "print([e.decode() for e in env if e.startswith(b'LD_LIBRARY_PATH=')])\n"
    )
    env = {**os.environ, "XILINX_VIVADO": str(vivado), "LD_LIBRARY_PATH": "/keep"}
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    paths = out.stdout.strip().split("=", 1)[1].rstrip("']").split(os.pathsep)
    assert f"{vivado}/lib/lnx64.o" in paths and paths[-1] == "/keep"
    # the system library folder FINN+ puts first must not shadow this interpreter's libpython
    libdir = sysconfig.get_config_var("LIBDIR")
    if sysconfig.get_config_var("Py_ENABLE_SHARED") and "/lib/x86_64-linux-gnu/" in paths:
        assert paths.index(libdir) < paths.index("/lib/x86_64-linux-gnu/")


def test_fifo_sizing_simulates_only_with_the_simulator_library(tmp_path: Path, monkeypatch):
    from finn.builder.build_dataflow_config import AutoFIFOSizingMethod, DataflowOutputType

    vivado = tmp_path / "Vivado" / "2024.2"
    monkeypatch.setenv("XILINX_VIVADO", str(vivado))
    cfg = H.hardware_config(NET, BOARD, tmp_path / "out")
    assert (
        cfg.auto_fifo_depths and cfg.auto_fifo_strategy == AutoFIFOSizingMethod.FORCE_MINIMAL_FIFOS
    )
    # FINN's deployment package is not asked for (make deploy makes ours); what is asked runs
    assert DataflowOutputType.DEPLOYMENT_PACKAGE not in cfg.generate_outputs
    kernel = vivado / "lib" / "lnx64.o" / "libxv_simulator_kernel.so"
    kernel.parent.mkdir(parents=True)
    kernel.write_bytes(b"")
    assert H.fifo_sizing()["strategy"] == "distributed_sim"
    cfg = H.hardware_config(NET, BOARD, tmp_path / "out")
    assert cfg.auto_fifo_strategy == AutoFIFOSizingMethod.DISTRIBUTED_SIMULATION


def test_missing_finn_dependencies_are_named_with_the_one_command(tmp_path: Path, monkeypatch):
    from finn.util.settings import get_settings

    monkeypatch.setattr(type(get_settings()), "finn_deps", property(lambda self: tmp_path))
    with pytest.raises(MissingToolError) as err:
        B.deps_problem(BOARD)
    text = str(err.value)
    assert "finn-hlslib, nlohmann-json" in text
    assert f"python -m maskbnn.pipeline.finn.deps --dest {tmp_path} --board {BOARD}`" in text
    (tmp_path / "finn-hlslib").mkdir()
    (tmp_path / "nlohmann_json").mkdir()
    B.deps_problem(BOARD)
    # simulated FIFO sizing (Vivado's simulator library present) also needs Boost
    kernel = tmp_path / "Vivado" / "lib" / "lnx64.o" / "libxv_simulator_kernel.so"
    kernel.parent.mkdir(parents=True)
    kernel.write_bytes(b"")
    monkeypatch.setenv("XILINX_VIVADO", str(tmp_path / "Vivado"))
    monkeypatch.setattr(B, "BOOST_HEADER", tmp_path / "no" / "program_options.hpp")
    with pytest.raises(MissingToolError, match="apt-get install libboost-dev"):
        B.deps_problem(BOARD)


def test_failed_rtl_simulation_of_the_graph_is_refused(tmp_path: Path):
    import json
    import os

    from maskbnn.errors import VerificationError
    from maskbnn.pipeline.builddir import BuildDir
    from maskbnn.pipeline.verify.gate import verified_build

    bd = BuildDir(tmp_path)
    (tmp_path / "hw.onnx").write_bytes(b"graph")
    bd.summary.write_text(json.dumps({"hw_model": "hw.onnx"}))
    bd.verification_json.write_text(json.dumps({"passed": True}))
    bd.rtlsim.mkdir()
    bd.rtlsim_json.write_text(json.dumps({"passed": False}))
    with pytest.raises(VerificationError, match="Verilator"):
        verified_build(NET, BOARD, tmp_path)
    bd.rtlsim_json.write_text(json.dumps({"passed": True}))
    assert verified_build(NET, BOARD, tmp_path)[1]["passed"]
    # a failed report about an earlier graph says nothing about this one
    bd.rtlsim_json.write_text(json.dumps({"passed": False}))
    old = (tmp_path / "hw.onnx").stat().st_mtime - 60
    os.utime(bd.rtlsim_json, (old, old))
    assert verified_build(NET, BOARD, tmp_path)[1]["passed"]
