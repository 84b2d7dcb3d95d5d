"""Bitstream step: verified hardware graph -> HLS/RTL sources -> IP -> stitched IP -> bitfile.

FINN+'s hardware steps, in FINN's order, on ``build/<net>/<board>/hw_model.onnx`` (the graph `make
verify` proved bit-exact):

    hw_codegen          HLS C++ + tcl per HLS layer, filled RTL templates per RTL layer  (offline)
    hw_ipgen            Vitis HLS synthesis of every HLS layer                       (Vitis HLS)
    set_fifo_depths     DWC/FIFO insertion, FIFO sizing by rtlsim                   (Vivado xsim)
    create_stitched_ip  one Vivado IP of the whole accelerator                          (Vivado)
    prepare_synthesis, synthesize_bitfile   the Zynq shell and bitfile, post-synth reports (Vivado)
    make_driver         PYNQ driver settings                                   (after the bitfile)

Without Vivado/Vitis everything that can run here runs: hw_codegen, and the DWC/FIFO insertion of
set_fifo_depths (FINN's `force_minimal_fifos` graph, FIFOs unsized) with its codegen, so every
layer's HLS and RTL sources exist and the RTL ones can be simulated with Verilator
(rtlsim_verilator.py). The outputs are written to ``build/<net>/<board>/bitstream/`` (sources
listing, golden vectors, manifest.json marked incomplete), then the step raises one
MissingToolError naming the missing tools, the variables looked at and the Docker command.

With the tools, the result is released to ``bitstreams/<net>/<board>/``: accelerator.bit/.hwh,
driver settings, golden vectors (real images and the Brevitas model's outputs) and manifest.json
(sha256 of every file and of the exported model; network, board, clock, folding, tool versions,
estimates, post-synthesis resources and timing, verification summary).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from importlib.metadata import version as dist_version
from pathlib import Path

import numpy as np

from maskbnn.config import BOARDS, load_network_config
from maskbnn.errors import MissingToolError, UserError
from maskbnn.paths import REPO_ROOT
from maskbnn.pipeline import finn_env
from maskbnn.pipeline.export import rel
from maskbnn_board.deployment import sha256_of

BITSTREAMS_DIR = REPO_ROOT / "bitstreams"
MANIFEST_FORMAT = "maskbnn-bitstream/1"
# Vivado board parts FINN+'s Zynq shell sets (finn/transformation/fpgadataflow/templates.py)
BOARD_PARTS = {
    "Pynq-Z1": "www.digilentinc.com:pynq-z1:part0:1.0",
    "Pynq-Z2": "tul.com.tw:pynq-z2:part0:1.0",
}
# What FINN+ looks at to find the tools (finn/interface/interface_utils.py) and the board files
TOOL_ENV = {"vivado": ("XILINX_VIVADO",), "vitis_hls": ("XILINX_HLS", "XILINX_VITIS")}
GOLDEN_IMAGES = 100  # real images with the Brevitas model's outputs shipped next to a bitstream


def bitstream_dir(net: str, board: str) -> Path:
    return BITSTREAMS_DIR / net / board


# --- tools and board files ---------------------------------------------------------------------


def tool_status() -> dict[str, bool]:
    return {tool: finn_env.tool_available(tool) for tool in TOOL_ENV}


def vivado_version() -> str | None:
    """ "2024.2"-style version of the Vivado on PATH (None without Vivado)."""
    root = os.environ.get("XILINX_VIVADO", "")
    m = re.search(r"(20\d\d\.\d)", root)
    if m:
        return m.group(1)
    if shutil.which("vivado"):
        out = subprocess.run(["vivado", "-version"], capture_output=True, text=True).stdout
        m = re.search(r"v(20\d\d\.\d)", out)
        return m.group(1) if m else out.strip().splitlines()[0] if out.strip() else None
    return None


def finn_deps_dir() -> Path:
    from finn.util.settings import get_settings

    return Path(get_settings().finn_deps)


def find_board_files(board: str, search: Path | None = None) -> Path | None:
    """The folder holding `board`'s Vivado board files (a board.xml naming its board part),
    searched in `search` if given, else in FINN+'s dependency folder (``finn deps update``)."""
    vendor, name = BOARD_PARTS[board].split(":")[:2]
    roots = [Path(search)] if search else [finn_deps_dir() / "board_files"]
    for root in roots:
        if not root.is_dir():
            continue
        for xml in sorted(root.rglob("board.xml")):
            text = xml.read_text(errors="replace")
            if f'vendor="{vendor}"' in text and f'name="{name}"' in text:
                return xml.parent
    return None


def board_files_problem(board: str, board_files: Path | None) -> str | None:
    """None when the board files Vivado needs are found, else what is missing and where we
    looked. Pynq-Z1's come with FINN+'s dependencies; Pynq-Z2's often do not (their download
    is a TUL site FINN+ fetches from a CDN)."""
    if find_board_files(board, board_files) is not None:
        return None
    where = board_files if board_files else finn_deps_dir() / "board_files"
    return (
        f"the {board} board files (Vivado board part {BOARD_PARTS[board]}) are absent: looked "
        f"for a board.xml naming it under {where}; pass their folder with --board-files DIR "
        f"(BOARD_FILES=DIR for make) or fetch them with `finn deps update`"
    )


def _link_board_files(board: str, board_files: Path) -> None:
    """FINN+'s Zynq shell adds only ``<FINN_DEPS>/board_files`` to Vivado's board repository
    paths; make a user-given folder visible there."""
    found = find_board_files(board, board_files)
    target = finn_deps_dir() / "board_files" / f"maskbnn-{board.lower()}"
    if found is None or find_board_files(board) is not None:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        target.unlink()
    target.symlink_to(found.resolve(), target_is_directory=True)


def missing_tools_message(
    net: str, board: str, missing: list[str], board_note: str | None, out: Path
) -> str:
    names = {"vivado": "Vivado (vivado)", "vitis_hls": "Vitis HLS (vitis_hls)"}
    looked = ", ".join(v for t in missing for v in TOOL_ENV[t])
    also = f" Also: {board_note}." if board_note else ""
    msg = (
        f"{' and '.join(names[t] for t in missing)} not found: looked for "
        f"{' and '.join(t for t in missing)} on PATH and for the environment variables {looked} "
        f"(Vivado's settings64.sh sets them). The flow for {net} on {board} stopped "
        f"after hw_codegen; its sources, golden vectors and manifest are in {rel(out)}.{also} "
        f"To finish it: {finn_env.vivado_route(net, board)}"
    )
    return msg


# --- FINN steps --------------------------------------------------------------------------------


@contextlib.contextmanager
def finn_scratch(folder: Path) -> Iterator[Path]:
    """Point FINN's scratch folder (where hw_codegen/ipgen put every layer's sources) into the
    build for the duration of the step, so the sources live and die with the build."""
    from finn.util.settings import get_settings

    folder.mkdir(parents=True, exist_ok=True)
    settings = get_settings()
    before, env_before = settings._finn_build_dir, os.environ.get("FINN_BUILD_DIR")
    settings._finn_build_dir = str(folder.resolve())
    os.environ["FINN_BUILD_DIR"] = str(folder.resolve())
    try:
        yield folder
    finally:
        settings._finn_build_dir = before
        if env_before is None:
            os.environ.pop("FINN_BUILD_DIR", None)
        else:
            os.environ["FINN_BUILD_DIR"] = env_before


def hardware_config(net: str, board: str, out: Path):
    """FINN's DataflowBuildConfig for the hardware steps: the build's own config plus the
    products of a Zynq bitfile build."""
    from finn.builder.build_dataflow_config import DataflowOutputType

    from maskbnn.pipeline.build import finn_config

    cfg = finn_config(load_network_config(net), board, out)
    cfg.generate_outputs = [
        DataflowOutputType.ESTIMATE_REPORTS,
        DataflowOutputType.STITCHED_IP,
        DataflowOutputType.BITFILE,
        DataflowOutputType.PYNQ_DRIVER,
        DataflowOutputType.DEPLOYMENT_PACKAGE,
    ]
    cfg.verify_steps = []
    cfg.save_intermediate_models = True
    return cfg


def insert_minimal_fifos(model, cfg):
    """The graph half of FINN's set_fifo_depths with ``force_minimal_fifos``: data-width
    converters and depth-2 FIFOs between all layers, specialised to their RTL back-ends. FIFO
    sizing itself simulates the stitched design in Vivado's xsim, so these depths are unsized."""
    from finn.transformation.fpgadataflow.insert_dwc import InsertDWC
    from finn.transformation.fpgadataflow.insert_fifo import InsertFIFO
    from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers
    from finn.transformation.qonnx.give_unique_node_names_recursive import (
        GiveUniqueNodeNamesRecursive,
    )
    from qonnx.transformation.general import GiveReadableTensorNames

    model = model.transform(InsertDWC())
    model = model.transform(InsertFIFO(create_shallow_fifos=True))
    model = model.transform(SpecializeLayers(cfg._resolve_fpga_part()))
    model = model.transform(GiveUniqueNodeNamesRecursive())
    return model.transform(GiveReadableTensorNames())


def run_hardware_steps(hw_model: Path, cfg, out: Path, tools: dict[str, bool]) -> tuple:
    """Run FINN's hardware steps as far as the tools allow. Returns (model, steps run, times)."""
    import finn.builder.build_dataflow_steps as S
    from qonnx.core.modelwrapper import ModelWrapper

    inter = out / "intermediate_models"
    inter.mkdir(parents=True, exist_ok=True)
    model = ModelWrapper(str(hw_model))
    done: list[str] = []
    times: dict[str, float] = {}

    def step(name: str, fn) -> None:
        nonlocal model
        t0 = time.perf_counter()
        try:
            model = fn(model, cfg)
        except (UserError, MissingToolError):
            raise
        except Exception as err:
            raise RuntimeError(f"FINN step {name} failed: {err}") from err
        model.save(str(inter / f"{name}.onnx"))
        times[name] = round(time.perf_counter() - t0, 2)
        done.append(name)
        print(f"  {name:30s} {times[name]:8.2f} s", flush=True)

    with finn_scratch(out / "finn"):
        step("hw_codegen", S.step_hw_codegen)
        if tools["vitis_hls"] and tools["vivado"]:
            step("hw_ipgen", S.step_hw_ipgen)
            step("set_fifo_depths", S.step_set_fifo_depths)
            step("create_stitched_ip", S.step_create_stitched_ip)
            step("prepare_synthesis", S.step_prepare_synthesis)
            step("synthesize_bitfile", S.step_synthesize_bitfile)
            step("make_driver", S.step_make_driver)
        else:
            # hw_ipgen and FIFO sizing cannot run: insert the DWCs and FIFOs as FINN would and
            # generate their RTL, so every layer of the final graph has its sources here
            step("insert_dwc_fifo_unsized", insert_minimal_fifos)
            step("hw_codegen_dwc_fifo", S.step_hw_codegen)
    return model, done, times


# --- sources -----------------------------------------------------------------------------------


def layer_sources(node, inst) -> dict[str, list[str]]:
    """The generated sources of one layer: HLS C++ and tcl, or the RTL file list."""
    code_gen = Path(inst.get_nodeattr("code_gen_dir_ipgen") or "")
    if node.op_type.endswith("_rtl"):
        files = [Path(f) for f in inst.get_rtl_file_list(abspath=True)]
        kind = "rtl"
    elif node.op_type.endswith("_hls"):
        files = [code_gen / f"top_{node.name}.cpp", code_gen / f"hls_syn_{node.name}.tcl"]
        kind = "hls"
    else:
        raise UserError(f"{node.name} ({node.op_type}) has no HLS or RTL back-end")
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise UserError(f"{node.name}: hw_codegen did not produce {', '.join(missing)}")
    return {"kind": kind, "files": [rel(f) for f in files]}


def sources_report(model) -> dict:
    from qonnx.custom_op.registry import getCustomOp

    layers = {}
    for node in model.graph.node:
        inst = getCustomOp(node)
        src = layer_sources(node, inst)
        layers[node.name] = {"op_type": node.op_type, **src,
                             "finn_estimate_cycles": int(inst.get_exp_cycles())}  # fmt: skip
    kinds = [v["kind"] for v in layers.values()]
    return {"layers": layers, "hls": kinds.count("hls"), "rtl": kinds.count("rtl")}


def applied_folding(model) -> dict[str, dict[str, int]]:
    from qonnx.custom_op.registry import getCustomOp

    out: dict[str, dict[str, int]] = {}
    for node in model.graph.node:
        inst = getCustomOp(node)
        attrs = {}
        for a in ("PE", "SIMD", "depth", "ram_style", "mem_mode"):
            try:
                v = inst.get_nodeattr(a)
            except AttributeError:
                continue
            if v not in (None, "", 0):
                attrs[a] = v
        if attrs:
            out[node.name] = attrs
    return out


# --- golden vectors ----------------------------------------------------------------------------


def write_golden(net: str, build: Path, dest: Path, n: int, checkpoint: Path | None) -> dict:
    """Real images (pre-processed as in training) and the Brevitas model's outputs on them, from
    the weights the build was exported from."""
    import torch

    from maskbnn.pipeline.deploy import build_weights_hash
    from maskbnn.pipeline.export import load_model, weights_hash
    from maskbnn.pipeline.verify import load_images
    from maskbnn.pipeline.verify_stages import brevitas_outputs

    torch.set_num_threads(1)
    model = load_model(net, checkpoint)
    want, have = build_weights_hash(build), weights_hash(model)
    if want and want != have:
        raise UserError(
            f"the weights ({have}) are not the ones {rel(build)} was built from ({want}): pass "
            "the build's checkpoint with --checkpoint"
        )
    x, names, source = load_images(net, n)
    ref = brevitas_outputs(model, x)
    dest.mkdir(parents=True, exist_ok=True)
    np.save(dest / "inputs.npy", x)
    np.save(dest / "expected_top1.npy", ref["top1"].astype(np.int64))
    np.save(dest / "expected_logits.npy", ref["logits"].astype(np.float32))
    (dest / "names.json").write_text(json.dumps(names, indent=0) + "\n")
    return {"images": len(x), "source": source, "weights_hash": have,
            "inputs": "golden/inputs.npy", "expected_top1": "golden/expected_top1.npy",
            "expected_logits": "golden/expected_logits.npy", "names": "golden/names.json"}  # fmt: skip


# --- manifest ----------------------------------------------------------------------------------


def post_synthesis(report_dir: Path) -> dict | None:
    res = report_dir / "post_synth_resources.json"
    timing = report_dir / "post_route_timing.rpt"
    if not res.is_file():
        return None
    out: dict = {"resources": json.loads(res.read_text())}
    if timing.is_file():
        m = re.search(r"WNS\(ns\).*?\n.*?\n\s*(-?\d+\.\d+)", timing.read_text())
        out["wns_ns"] = float(m.group(1)) if m else None
    return out


def file_entries(folder: Path) -> dict[str, dict]:
    return {
        str(p.relative_to(folder)): {"sha256": sha256_of(p), "bytes": p.stat().st_size}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }


def write_manifest(folder: Path, meta: dict) -> dict:
    manifest = {"format": MANIFEST_FORMAT, **meta, "files": file_entries(folder)}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return manifest


def check_manifest(folder: Path) -> list[str]:
    """Problems with a manifest's hashes (empty when every listed file is intact)."""
    manifest = json.loads((Path(folder) / "manifest.json").read_text())
    problems = []
    for name, entry in manifest["files"].items():
        p = Path(folder) / name
        if not p.is_file():
            problems.append(f"{name}: missing")
        elif sha256_of(p) != entry["sha256"]:
            problems.append(f"{name}: sha256 differs")
    exported = manifest.get("exported_model", {})
    if exported.get("path"):
        p = REPO_ROOT / exported["path"]
        if p.is_file() and sha256_of(p) != exported["sha256"]:
            problems.append(f"{exported['path']}: sha256 differs from the exported model")
    return problems


# --- the step ----------------------------------------------------------------------------------


def verified_build(net: str, board: str, build: Path) -> tuple[dict, dict]:
    """build.json and a passed verification.json newer than the hardware graph, or UserError."""
    info, ver = build / "build.json", build / "verification.json"
    if not info.is_file():
        raise UserError(f"no build in {rel(build)}: run `make build NET={net} BOARD={board}`")
    summary = json.loads(info.read_text())
    hw_model = build / summary["hw_model"]
    if not ver.is_file():
        raise UserError(f"{rel(build)} is not verified: run `make verify NET={net} BOARD={board}`")
    report = json.loads(ver.read_text())
    if not report.get("passed"):
        raise UserError(f"{rel(ver)} reports a failed verification: no bitstream from it")
    if ver.stat().st_mtime < hw_model.stat().st_mtime:
        raise UserError(
            f"{rel(ver)} is older than {rel(hw_model)}: run `make verify NET={net} BOARD={board}`"
        )
    return summary, report


def codegen_model(net: str, board: str, build: Path) -> Path:
    """The code-generated graph of a build (with DWCs and FIFOs), generated if missing/stale."""
    path = build / "bitstream" / "hw_codegen.onnx"
    hw_model = build / "hw_model.onnx"
    if not hw_model.is_file():
        raise UserError(f"no hardware graph in {rel(build)}: run `make build NET={net}` first")
    if path.is_file() and path.stat().st_mtime >= hw_model.stat().st_mtime:
        return path
    generate_sources(net, board, build, tools={"vivado": False, "vitis_hls": False})
    return path


def generate_sources(net: str, board: str, build: Path, tools: dict[str, bool]) -> tuple:
    out = build / "bitstream"
    shutil.rmtree(out / "finn", ignore_errors=True)
    shutil.rmtree(out / "intermediate_models", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    cfg = hardware_config(net, board, out)
    model, done, times = run_hardware_steps(build / "hw_model.onnx", cfg, out, tools)
    model.save(str(out / "hw_codegen.onnx"))
    sources = sources_report(model)
    (out / "sources.json").write_text(json.dumps(sources, indent=2) + "\n")
    return model, done, times, sources


def run_bitstream(
    net: str,
    board: str | None = None,
    build: Path | None = None,
    board_files: Path | None = None,
    checkpoint: Path | None = None,
    release: Path | None = None,
) -> dict:
    """The whole hardware flow; returns the manifest. Raises MissingToolError (after writing
    everything that could be made) when Vivado or Vitis HLS is absent."""
    from maskbnn.pipeline.build import build_dir
    from maskbnn.pipeline.deploy import settings_from_finn_driver, settings_from_hw_model

    t_all = time.perf_counter()
    cfg = load_network_config(net)
    board = board or cfg.build.board
    if board not in BOARDS:
        raise UserError(f"unknown board {board!r}; choose one of {', '.join(BOARDS)}")
    build = Path(build) if build else build_dir(net, board)
    summary, verification = verified_build(net, board, build)
    tools = tool_status()
    complete = all(tools.values())
    board_note = board_files_problem(board, board_files)
    if complete and board_note:
        raise MissingToolError(f"cannot synthesise for {board}: {board_note}")
    if complete and board_files:
        _link_board_files(board, board_files)

    model, done, times, sources = generate_sources(net, board, build, tools)
    out = build / "bitstream"
    dest = (Path(release) if release else bitstream_dir(net, board)) if complete else out
    if complete:
        shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True, exist_ok=True)
    for stale in ("accelerator.bit", "accelerator.hwh", "settings.json", "manifest.json"):
        (dest / stale).unlink(missing_ok=True)

    artifacts: dict = {"bitstream": None, "hwh": None}
    clock_mhz = round(1000.0 / cfg.build.clock_ns, 3)
    if complete:
        bit, hwh = out / "bitfile" / "finn-accel.bit", out / "bitfile" / "finn-accel.hwh"
        if not bit.is_file() or not hwh.is_file():
            raise RuntimeError(f"synthesize_bitfile ran but {rel(bit)} / {rel(hwh)} are missing")
        shutil.copyfile(bit, dest / "accelerator.bit")
        shutil.copyfile(hwh, dest / "accelerator.hwh")
        artifacts = {"bitstream": "accelerator.bit", "hwh": "accelerator.hwh"}
        settings = settings_from_finn_driver(out / "driver" / "settings.json", clock_mhz)
        settings_source = "FINN+ make_driver"
    else:
        settings = settings_from_hw_model(build / summary["hw_model"], clock_mhz)
        settings_source = "hardware graph (FINN+ make_driver needs the bitfile)"
    (dest / "settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    golden = write_golden(net, build, dest / "golden", GOLDEN_IMAGES, checkpoint)

    exported = REPO_ROOT / summary["input"]
    estimates = json.loads((build / summary["estimates"]["json"]).read_text())
    rtlsim = build / "rtlsim" / "rtlsim.json"
    missing = [t for t, ok in tools.items() if not ok]
    meta = {
        "network": net,
        "board": board,
        "board_part": BOARD_PARTS[board],
        "fpga_part": BOARDS[board],
        "clock_ns": cfg.build.clock_ns,
        "status": "complete" if complete else f"incomplete: {', '.join(missing)} missing",
        "steps_run": done,
        "step_seconds": times,
        "artifacts": {**artifacts, "settings": "settings.json", "settings_source": settings_source},
        "exported_model": {"path": rel(exported), "sha256": sha256_of(exported)},
        "hw_model": {
            "path": rel(build / summary["hw_model"]),
            "sha256": sha256_of(build / summary["hw_model"]),
        },  # fmt: skip
        "folding": {
            "file": cfg.build.folding,
            "target_fps": cfg.build.target_fps,
            "applied": applied_folding(model),
        },  # fmt: skip
        "tools": {
            "finn_plus": dist_version("finn-plus"),
            "qonnx": dist_version("qonnx"),
            "brevitas": dist_version("brevitas"),
            "vivado": vivado_version(),
            "available": tools,
        },  # fmt: skip
        "board_files": board_note or "found",
        "estimates": estimates.get("total", estimates),
        "post_synthesis": post_synthesis(out / "report"),
        "verification": {
            "passed": verification.get("passed"),
            "images": verification.get("images"),
            "stages": len(verification.get("stages", [])),
            "report": rel(build / "verification.json"),
        },
        "rtlsim_verilator": _rtlsim_summary(rtlsim),
        "sources": {
            "hls_layers": sources["hls"],
            "rtl_layers": sources["rtl"],
            "listing": rel(out / "sources.json"),
        },  # fmt: skip
        "golden": golden,
        "seconds": round(time.perf_counter() - t_all, 1),
    }
    manifest = write_manifest(dest, meta)
    if not complete:
        raise MissingToolError(missing_tools_message(net, board, missing, board_note, dest))
    return manifest


def _rtlsim_summary(path: Path) -> dict | None:
    if not path.is_file():
        return None
    r = json.loads(path.read_text())
    return {"passed": r["passed"], "layers": len(r["layers"]), "frames": r["frames"],
            "report": rel(path)}  # fmt: skip
