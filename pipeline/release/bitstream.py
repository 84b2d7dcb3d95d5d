"""Bitstream step: verified hardware graph -> HLS/RTL sources -> IP -> stitched IP -> bitfile.

FINN+'s hardware steps, in FINN's order, on ``build/<net>/<board>/hw_model.onnx`` (the graph `make
verify` proved bit-exact):

    hw_codegen          HLS C++ + tcl per HLS layer, filled RTL templates per RTL layer  (offline)
    hw_ipgen            Vitis HLS synthesis of every HLS layer                       (Vitis HLS)
    set_fifo_depths     DWC/FIFO insertion; sizing simulated or minimal (fifo_sizing)  (xsim)
    create_stitched_ip  one Vivado IP of the whole accelerator                          (Vivado)
    prepare_synthesis, synthesize_bitfile   the Zynq shell and bitfile, post-synth reports (Vivado)
    make_driver         PYNQ driver settings                                   (after the bitfile)

Without Vivado/Vitis everything that can run here runs: hw_codegen, and the DWC/FIFO insertion of
set_fifo_depths (FINN's `force_minimal_fifos` graph, FIFOs unsized) with its codegen, so every
layer's HLS and RTL sources exist and the RTL ones can be simulated with Verilator
(pipeline/rtlsim/verilator.py). The outputs are written to ``build/<net>/<board>/bitstream/`` (sources
listing, golden vectors, manifest.json marked incomplete), then the step raises one
MissingToolError naming the missing tools, the variables looked at and the Docker command.

With the tools, the result is released to ``bitstreams/<net>/<board>/``, whole or not at all
(built in a sibling folder, renamed): accelerator.bit/.hwh, FINN's driver settings, Vivado's and
FINN's reports, post_synthesis.md, golden vectors (real images and the Brevitas model's outputs)
and manifest.json (sha256 of every file, of the exported model and of the hardware graph; network,
board, clock, folding, FIFO sizing, tool versions, estimates beside post-synthesis resources,
timing, verification summary). A missed timing or a design too large for the device is a
UserError saying by how much, and leaves the previous release in place.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from importlib.metadata import version as dist_version
from pathlib import Path

import numpy as np

from maskbnn.config import BOARDS, load_network_config
from maskbnn.errors import MissingToolError, UserError
from maskbnn.paths import REPO_ROOT, rel
from maskbnn.pipeline.builddir import BuildDir, bitstream_dir
from maskbnn.pipeline.finn import deps as finn_deps
from maskbnn.pipeline.finn import env as finn_env
from maskbnn.pipeline.finn.hardware import applied_folding, fifo_sizing, generate_sources
from maskbnn.pipeline.finn.vivado_reports import timing_slack
from maskbnn.pipeline.release.atomic import staged_folder
from maskbnn.pipeline.release.synthesis_report import (
    next_slower_folding,
    post_synthesis_markdown,
    versus_estimate,
)
from maskbnn.pipeline.verify.gate import verified_build
from maskbnn.pipeline.verify.stages import brevitas_outputs
from maskbnn_board.manifest import sha256_of, write_manifest

MANIFEST_FORMAT = "maskbnn-bitstream/1"
# Vivado board parts FINN+'s Zynq shell sets (finn/transformation/fpgadataflow/templates.py)
BOARD_PARTS = {
    "Pynq-Z1": "www.digilentinc.com:pynq-z1:part0:1.0",
    "Pynq-Z2": "tul.com.tw:pynq-z2:part0:1.0",
}
# What FINN+ looks at to find the tools (finn/interface/interface_utils.py) and the board files
TOOL_ENV = {"vivado": ("XILINX_VIVADO",), "vitis_hls": ("XILINX_HLS", "XILINX_VITIS")}
# what FINN+'s finn_xsi/CMakeLists.txt needs for simulated FIFO sizing (Debian's libboost-dev)
BOOST_HEADER = Path("/usr/include/boost/program_options.hpp")
GOLDEN_IMAGES = 100  # real images with the Brevitas model's outputs shipped next to a bitstream


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
    searched in `search` if given, else in FINN+'s dependency folder (pipeline/finn/deps.py)."""
    import xml.etree.ElementTree as ET

    # Vivado matches a board part id (lower case) against board.xml's vendor and name without
    # regard to case: Digilent's PYNQ-Z1 file says name="PYNQ-Z1".
    want = tuple(BOARD_PARTS[board].split(":")[:2])
    root = Path(search) if search else finn_deps_dir() / "board_files"
    if not root.is_dir():
        return None
    found = (
        Path(d) / "board.xml"
        for d, _, files in os.walk(root, followlinks=True)
        if "board.xml" in files
    )  # Vivado follows links in its board repositories
    for xml in sorted(found):
        try:
            el = ET.parse(xml).getroot()
        except ET.ParseError:
            continue
        if (el.get("vendor", "").lower(), el.get("name", "").lower()) == want:
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
        f"(BOARD_FILES=DIR for make) or fetch them with "
        f"`{finn_deps.fetch_command(finn_deps_dir(), [board])}`"
    )


def deps_problem(board: str) -> None:
    """MissingToolError naming the one command that fetches what is missing from FINN_DEPS
    (the local route: `make setup` does not fetch FINN+'s external dependencies)."""
    where = finn_deps_dir()
    absent = finn_deps.missing(where)
    if absent:
        raise MissingToolError(
            f"FINN+'s dependencies {', '.join(absent)} are not in FINN_DEPS ({where}); fetch "
            f"what this flow needs with `{finn_deps.fetch_command(where, [board])}`"
        )
    if fifo_sizing()["strategy"] == "distributed_sim" and not BOOST_HEADER.is_file():
        raise MissingToolError(
            "FINN+'s simulated FIFO sizing builds its node simulators against Boost, which is "
            f"not installed ({BOOST_HEADER} is absent): `apt-get install libboost-dev "
            "libboost-program-options-dev` (the Docker image has it)"
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


# --- golden vectors ----------------------------------------------------------------------------


def write_golden(net: str, build: Path, dest: Path, n: int, checkpoint: Path | None) -> dict:
    """Real images (pre-processed as in training) and the Brevitas model's outputs on them, from
    the weights the build was exported from."""
    import torch

    from maskbnn.pipeline.export.qonnx_export import build_weights_hash, load_model, weights_hash
    from maskbnn.pipeline.verify.chain import load_images

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


# --- the step ----------------------------------------------------------------------------------


def run_bitstream(
    net: str,
    board: str | None = None,
    build: Path | None = None,
    board_files: Path | None = None,
    checkpoint: Path | None = None,
    release: Path | None = None,
) -> dict:
    """The whole hardware flow; returns the manifest. Raises MissingToolError (after writing
    everything that could be made) when Vivado or Vitis HLS is absent, UserError when the
    design misses timing or does not fit; the release folder is replaced only by a whole,
    passing release."""
    t_all = time.perf_counter()
    cfg = load_network_config(net)
    board = board or cfg.build.board
    if board not in BOARDS:
        raise UserError(f"unknown board {board!r}; choose one of {', '.join(BOARDS)}")
    build = BuildDir.at(build, net, board).root
    summary, verification = verified_build(net, board, build)
    tools = tool_status()
    complete = all(tools.values())
    board_note = board_files_problem(board, board_files)
    if complete and board_note:
        raise MissingToolError(f"cannot synthesise for {board}: {board_note}")
    if complete:
        deps_problem(board)
    if complete and board_files:
        _link_board_files(board, board_files)

    model, done, times, sources = generate_sources(net, board, build, tools)
    out = BuildDir(build).bitstream
    estimates = json.loads((build / summary["estimates"]["json"]).read_text())
    dest = Path(release) if release else bitstream_dir(net, board)
    synthesis = None
    if complete:
        synthesis = check_synthesis(net, board, build, cfg.build.clock_ns, estimates, dest)
    ctx = {"net": net, "board": board, "build": build, "summary": summary, "cfg": cfg,
           "checkpoint": checkpoint, "model": model, "done": done, "times": times,
           "sources": sources, "tools": tools, "board_note": board_note, "estimates": estimates,
           "verification": verification, "synthesis": synthesis, "t0": t_all}  # fmt: skip
    if not complete:
        for stale in ("accelerator.bit", "accelerator.hwh", "settings.json", "manifest.json"):
            (out / stale).unlink(missing_ok=True)
        fill_release(out, ctx)
        missing = [t for t, ok in tools.items() if not ok]
        raise MissingToolError(missing_tools_message(net, board, missing, board_note, out))
    with staged_folder(dest) as tmp:
        manifest = fill_release(tmp, ctx)
    return manifest


def check_synthesis(
    net: str, board: str, build: Path, clock_ns: float, estimates: dict, dest: Path
) -> dict:
    """Post-synthesis figures of a finished bitfile build, or UserError when it misses timing
    (worst negative slack, clock, the next slower folding to try)."""
    out = BuildDir(build).bitstream
    report = out / "report" / "post_route_timing.rpt"
    wns = timing_slack(report)
    if wns is None:
        raise RuntimeError(f"synthesize_bitfile ran but {rel(report)} has no timing summary")
    if wns < 0:
        cycles = int(estimates.get("total", {}).get("max_cycles", 0))
        nxt = next_slower_folding(net, board, build, cycles, clock_ns,
                                  out / "next_slower_folding.json")  # fmt: skip
        hint = (
            f"the next slower folding the folding optimizer offers runs at {nxt['fps']:,.0f} FPS "
            f"estimated ({nxt['max_cycles']:,} cycles per image, bottleneck {nxt['bottleneck']}), "
            f"written to {rel(Path(nxt['file']))}: copy it to build_configs/folding/ and name it "
            f"in build_configs/{net}.yaml (build.folding), or lengthen build.clock_ns"
            if nxt
            else "the folding optimizer has no slower folding: lengthen build.clock_ns"
        )
        raise UserError(
            f"{net} on {board} misses timing: worst negative slack {wns:.3f} ns at "
            f"{1000 / clock_ns:.0f} MHz (clock period {clock_ns} ns; {rel(report)}); {hint}. "
            f"Nothing was released to {rel(dest)}"
        )
    res = json.loads((out / "report" / "post_synth_resources.json").read_text())
    top = res.get("(top)", {})
    return {"resources": res, "wns_ns": wns, "timing_met": True,
            "vs_estimate": versus_estimate(estimates.get("total", {}), top),
            "report": "post_synthesis.md"}  # fmt: skip


def tool_reports() -> dict[str, str | None]:
    """What each tool on PATH says it is (`-version`, first two lines)."""
    out: dict[str, str | None] = {}
    for tool in TOOL_ENV:
        exe = shutil.which(tool)
        if exe is None:
            out[tool] = None
            continue
        proc = subprocess.run([exe, "-version"], capture_output=True, text=True, timeout=120)
        out[tool] = " | ".join(proc.stdout.strip().splitlines()[:2]) or None
    return out


def fill_release(dest: Path, c: dict) -> dict:
    """Write a release (or, without the tools, the incomplete outputs) into `dest`."""
    from maskbnn.pipeline.release.settings import settings_from_finn_driver, settings_from_hw_model

    build, summary, cfg, net, board = c["build"], c["summary"], c["cfg"], c["net"], c["board"]
    out = BuildDir(build).bitstream
    complete = c["synthesis"] is not None
    dest.mkdir(parents=True, exist_ok=True)
    artifacts: dict = {"bitstream": None, "hwh": None}
    clock_mhz = round(1000.0 / cfg.build.clock_ns, 3)
    if complete:
        bit, hwh = out / "bitfile" / "finn-accel.bit", out / "bitfile" / "finn-accel.hwh"
        if not bit.is_file() or not hwh.is_file():
            raise RuntimeError(f"synthesize_bitfile ran but {rel(bit)} / {rel(hwh)} are missing")
        shutil.copyfile(bit, dest / "accelerator.bit")
        shutil.copyfile(hwh, dest / "accelerator.hwh")
        shutil.copytree(out / "report", dest / "report")
        artifacts = {"bitstream": "accelerator.bit", "hwh": "accelerator.hwh", "reports": "report/"}
        settings = settings_from_finn_driver(out / "driver" / "settings.json", clock_mhz)
        settings_source = "FINN+ make_driver"
    else:
        settings = settings_from_hw_model(build / summary["hw_model"], clock_mhz)
        settings_source = "hardware graph (FINN+ make_driver needs the bitfile)"
    (dest / "settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    golden = write_golden(net, build, dest / "golden", GOLDEN_IMAGES, c["checkpoint"])
    tools, versions = c["tools"], tool_reports() if complete else {}
    if complete:
        (dest / "post_synthesis.md").write_text(post_synthesis_markdown(
            net, board, c["synthesis"]["vs_estimate"], c["synthesis"]["wns_ns"],
            cfg.build.clock_ns, versions.get("vivado")))  # fmt: skip

    exported = REPO_ROOT / summary["input"]
    hw_model = build / summary["hw_model"]
    verification = c["verification"]
    missing = [t for t, ok in tools.items() if not ok]
    meta = {
        "network": net,
        "board": board,
        "board_part": BOARD_PARTS[board],
        "fpga_part": BOARDS[board],
        "clock_ns": cfg.build.clock_ns,
        "status": "complete" if complete else f"incomplete: {', '.join(missing)} missing",
        "steps_run": c["done"],
        "step_seconds": c["times"],
        "artifacts": {**artifacts, "settings": "settings.json", "settings_source": settings_source},
        "exported_model": {"path": rel(exported), "sha256": sha256_of(exported)},
        # the hardware graph (folding included) the bitfile was built from; deploy checks it
        "hw_model": {"path": rel(hw_model), "sha256": sha256_of(hw_model)},
        "folding": {
            "file": cfg.build.folding,
            "target_fps": cfg.build.target_fps,
            "applied": applied_folding(c["model"]),
        },  # fmt: skip
        "fifo_sizing": fifo_sizing() if complete else "not run (needs the tools)",
        "tools": {
            "finn_plus": dist_version("finn-plus"),
            "qonnx": dist_version("qonnx"),
            "brevitas": dist_version("brevitas"),
            "vivado": vivado_version(),
            "reported": versions,
            "available": tools,
        },  # fmt: skip
        "board_files": c["board_note"] or "found",
        # the layers' total and, when the build has it, the whole-fabric estimate: a synthesised
        # release then joins the folding calibration as a whole-design pair (calibration.own_pair)
        "estimates": c["estimates"].get("total", c["estimates"])
        | ({"fabric": c["estimates"]["fabric"]} if "fabric" in c["estimates"] else {}),
        "post_synthesis": c["synthesis"],
        "verification": {
            "passed": verification.get("passed"),
            "images": verification.get("images"),
            "stages": len(verification.get("stages", [])),
            "report": rel(BuildDir(build).verification_json),
        },
        "rtlsim_verilator": _rtlsim_summary(BuildDir(build).rtlsim_json),
        "sources": {
            "hls_layers": c["sources"]["hls"],
            "rtl_layers": c["sources"]["rtl"],
            "listing": rel(out / "sources.json"),
        },  # fmt: skip
        "golden": golden,
        "seconds": round(time.perf_counter() - c["t0"], 1),
    }
    return write_manifest(dest, MANIFEST_FORMAT, meta)


def _rtlsim_summary(path: Path) -> dict | None:
    if not path.is_file():
        return None
    r = json.loads(path.read_text())
    return {"passed": r["passed"], "layers": len(r["layers"]), "frames": r["frames"],
            "report": rel(path)}  # fmt: skip
