"""FINN+'s hardware steps on a verified hardware graph: HLS/RTL code generation, and with the
tools IP generation, FIFO sizing, stitching, synthesis and the driver (`maskbnn bitstream` runs
them; `maskbnn rtlsim` simulates the code-generated graph they leave).

Without Vivado/Vitis, hw_codegen runs, then the DWC/FIFO insertion of set_fifo_depths (FINN's
`force_minimal_fifos` graph, FIFOs unsized) with its codegen, so every layer's HLS and RTL sources
exist and the RTL ones can be simulated with Verilator. Outputs in ``build/<net>/<board>/bitstream/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from maskbnn.config import BOARDS, load_network_config
from maskbnn.errors import UserError
from maskbnn.paths import rel
from maskbnn.pipeline.builddir import BuildDir
from maskbnn.pipeline.finn import env as finn_env  # noqa: F401  (FINN's environment before importing it)
from maskbnn.pipeline.finn.build import finn_config
from maskbnn.pipeline.finn.steps import run_finn_steps
from maskbnn.pipeline.finn.vivado_reports import placement_failure

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


def fifo_sizing() -> dict[str, str]:
    """FINN's FIFO sizing for this machine, chosen here and recorded in the manifest.

    FINN's default sizing simulates the stitched design through its XSI bridge, which loads
    Vivado's simulator library (``$XILINX_VIVADO/lib/lnx64.o/libxv_simulator_kernel.so``) and is
    compiled with CMake against Boost (installed by the Dockerfile). With that library present we
    use it. Without it (a Vivado install lacking the simulator, or CI's tool doubles) we keep
    FINN's minimal FIFOs (depth 2, no simulation): our CNVs are straight chains with no forks, so
    shallow FIFOs can cost throughput but cannot deadlock; the board's throughput command measures
    what is reached."""
    from finn.builder.build_dataflow_config import AutoFIFOSizingMethod as M

    kernel = Path(os.environ.get("XILINX_VIVADO", "/nonexistent")) / "lib" / "lnx64.o"
    if (kernel / "libxv_simulator_kernel.so").is_file():
        return {"strategy": M.DISTRIBUTED_SIMULATION.value,
                "why": "Vivado's simulator library found: FINN's simulation-based sizing"}  # fmt: skip
    return {"strategy": M.FORCE_MINIMAL_FIFOS.value,
            "why": "no Vivado simulator library (lib/lnx64.o/libxv_simulator_kernel.so): "
                   "minimal FIFOs, not simulated"}  # fmt: skip


def hardware_config(net: str, board: str, out: Path):
    """FINN's DataflowBuildConfig for the hardware steps: the build's own config plus the
    products of a Zynq bitfile build. FINN's deployment package is not asked for: `make
    deploy` assembles ours from the release folder."""
    from finn.builder.build_dataflow_config import AutoFIFOSizingMethod, DataflowOutputType

    cfg = finn_config(load_network_config(net), board, out)
    cfg.generate_outputs = [
        DataflowOutputType.ESTIMATE_REPORTS,
        DataflowOutputType.STITCHED_IP,
        DataflowOutputType.BITFILE,
        DataflowOutputType.PYNQ_DRIVER,
    ]
    cfg.auto_fifo_depths = True
    cfg.auto_fifo_strategy = AutoFIFOSizingMethod(fifo_sizing()["strategy"])
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


def run_hardware_steps(net: str, hw_model: Path, cfg, out: Path, tools: dict[str, bool]) -> tuple:
    """Run FINN's hardware steps as far as the tools allow. Returns (model, steps run, times)."""
    import finn.builder.build_dataflow_steps as S
    from qonnx.core.modelwrapper import ModelWrapper

    inter = out / "intermediate_models"
    inter.mkdir(parents=True, exist_ok=True)
    model = ModelWrapper(str(hw_model))

    def placed(name: str, err: Exception) -> Exception | None:
        return placement_error(out, net, cfg.board) if name == "synthesize_bitfile" else None

    full = tools["vitis_hls"] and tools["vivado"]
    steps = [("hw_codegen", S.step_hw_codegen)]
    if full:
        steps += [
            ("hw_ipgen", S.step_hw_ipgen),
            ("set_fifo_depths", S.step_set_fifo_depths),
            ("create_stitched_ip", S.step_create_stitched_ip),
            ("prepare_synthesis", S.step_prepare_synthesis),
            ("synthesize_bitfile", S.step_synthesize_bitfile),
            ("make_driver", S.step_make_driver),
        ]
    else:
        # hw_ipgen and FIFO sizing cannot run: insert the DWCs and FIFOs as FINN would and
        # generate their RTL, so every layer of the final graph has its sources here
        steps += [
            ("insert_dwc_fifo_unsized", insert_minimal_fifos),
            ("hw_codegen_dwc_fifo", S.step_hw_codegen),
        ]
    run = dict(cfg=cfg, steps=steps, save_dir=inter, on_error=placed)
    with finn_scratch(out / "finn"):
        if not full:
            model, times = run_finn_steps(model, **run)
            return model, list(times), times
        model, times = run_finn_steps(model, stop="create_stitched_ip", **run)
        # the dataflow graph as stitched; ZynqBuild returns a graph of partitions around it
        dataflow = model
        _, more = run_finn_steps(model, start="prepare_synthesis", **run)
    times |= more
    return dataflow, list(times), times


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


def codegen_model(net: str, board: str, build: Path) -> Path:
    """The code-generated graph of a build (with DWCs and FIFOs), generated if missing/stale."""
    path = BuildDir(build).bitstream / "hw_codegen.onnx"
    hw_model = BuildDir(build).hw_model
    if not hw_model.is_file():
        raise UserError(f"no hardware graph in {rel(build)}: run `make build NET={net}` first")
    if path.is_file() and path.stat().st_mtime >= hw_model.stat().st_mtime:
        return path
    generate_sources(net, board, build, tools={"vivado": False, "vitis_hls": False})
    return path


# everything a previous run of the hardware steps leaves in build/<net>/<board>/bitstream/
RUN_OUTPUTS = ("finn", "intermediate_models", "bitfile", "driver", "report", "stitched_ip")


def generate_sources(net: str, board: str, build: Path, tools: dict[str, bool]) -> tuple:
    """Run the hardware steps from a clean slate (no bitfile, driver or report of an earlier
    run survives to be mistaken for this one's); returns (dataflow graph, steps, times,
    sources). The graph saved as hw_codegen.onnx is the stitched dataflow graph, not the
    partition graph ZynqBuild returns."""
    out = BuildDir(build).bitstream
    for name in RUN_OUTPUTS:
        shutil.rmtree(out / name, ignore_errors=True)
    (out / "next_slower_folding.json").unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    cfg = hardware_config(net, board, out)
    model, done, times = run_hardware_steps(net, BuildDir(build).hw_model, cfg, out, tools)
    model.save(str(out / "hw_codegen.onnx"))
    sources = sources_report(model)
    (out / "sources.json").write_text(json.dumps(sources, indent=2) + "\n")
    return model, done, times, sources


def placement_error(out: Path, net: str, board: str) -> UserError | None:
    """The resource over capacity when Vivado's placer failed (FINN+ only says no bitfile)."""
    fail = placement_failure(out / "finn")
    if fail is None:
        return None
    return UserError(
        f"{net} on {board} does not fit the {BOARDS[board]}: Vivado's placer needs "
        f"{fail['required']:,} {fail['vivado_site']} ({fail['resource']}) where the device has "
        f"{fail['available']:,}, {fail['over_by']:,} over capacity "
        f"({100 * fail['over_by'] / fail['available']:.1f}% more). Fold further (`make fold "
        f"NET={net} BOARD={board}`) or choose a smaller network. Nothing was released"
    )
