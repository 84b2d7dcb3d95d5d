"""Build step: exported QONNX -> FINN hardware graph (folded, bit widths minimised) + estimates.

FINN+'s own Python steps run in order, each saving its model to
``build/<net>/<board>/intermediate_models/<step>.onnx`` and its time to ``time_per_step.json``; a
few steps are ours (see build_steps.py). We run the steps directly rather than through
``build_dataflow_cfg``: that wrapper ends by recording the Vivado install and fails without it,
and it never fails on a verification mismatch. Steps needing Vivado are not part of this build.

Outputs in ``build/<net>/<board>/``: ``hw_model.onnx`` (the folded hardware graph),
``program.npz`` (the same graph for the NumPy executor), ``estimates.{json,md,png}``,
``build.json`` (inputs, steps, times).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from maskbnn.config import BOARDS, NetworkConfig, load_network_config
from maskbnn.errors import UserError
from maskbnn.outputs import folder_lock, remove, write_json
from maskbnn.paths import BUILD_CONFIGS, rel
from maskbnn.pipeline.builddir import BuildDir, export_index
from maskbnn.pipeline.builddir import export_dir as default_export_dir
from maskbnn.pipeline.finn import env as finn_env  # noqa: F401  (FINN's environment before importing it)
from maskbnn.pipeline.finn.estimates import collect, write_estimates
from maskbnn.pipeline.finn.hwgraph import export_program
from maskbnn.pipeline.finn.steps import run_finn_steps
from maskbnn.pipeline.fold.folding import validate_folding
from maskbnn.pipeline.verify.deployability import require_deployable


def finn_config(cfg: NetworkConfig, board: str, out: Path):
    from finn.builder.build_dataflow_config import (
        DataflowBuildConfig,
        DataflowOutputType,
        ShellFlowType,
    )

    b = cfg.build
    if b.folding is None and b.target_fps is None:
        raise UserError(
            f"{cfg.path}: build needs a folding file (build.folding) or build.target_fps"
        )
    folding = b.folding_path(BUILD_CONFIGS, board)
    if folding is not None and not folding.is_file():
        raise UserError(f"{cfg.path}: folding file {folding} does not exist")
    return DataflowBuildConfig(
        output_dir=str(out),
        synth_clk_period_ns=b.clock_ns,
        board=board,
        fpga_part=BOARDS[board],
        shell_flow_type=ShellFlowType.VIVADO_ZYNQ,
        target_fps=b.target_fps if folding is None else None,
        folding_config_file=folding,
        generate_outputs=[DataflowOutputType.ESTIMATE_REPORTS],
        verify_steps=[],  # verification is ours (verify.py) and it fails the build
        save_intermediate_models=True,
    )


def step_validate_folding(model, cfg):
    """Refuse a folding file with unknown nodes or illegal PE/SIMD before FINN applies it."""
    if cfg.folding_config_file is not None:
        validate_folding(model, Path(cfg.folding_config_file))
    return model


def steps(finn_minimize: bool = False, rtl_mvau: bool = True) -> list[tuple[str, Callable]]:
    """The ordered step list; `finn_minimize` swaps in FINN's unfixed bit-width minimisation
    (only to show that verification catches it); `rtl_mvau` is the config's build.rtl_mvau."""
    import finn.builder.build_dataflow_steps as S

    from maskbnn.pipeline.finn.build_steps import (
        step_convert_to_hw_actval_safe,
        step_minimize_bit_width_xnor_safe,
        step_streamline_bipolar_pad,
    )
    from maskbnn.pipeline.finn.rtl_mvau import step_keep_hls_mvau, step_split_rtl_mvau

    minimize_initial = (
        S.step_minimize_bit_width_initial if finn_minimize else step_minimize_bit_width_xnor_safe
    )
    minimize = S.step_minimize_bit_width if finn_minimize else step_minimize_bit_width_xnor_safe
    return [
        ("qonnx_to_finn", S.step_qonnx_to_finn),
        ("tidy_up", S.step_tidy_up),
        ("streamline", step_streamline_bipolar_pad),
        ("convert_to_hw", step_convert_to_hw_actval_safe),
        ("split_rtl_mvau", step_split_rtl_mvau if rtl_mvau else step_keep_hls_mvau),
        ("minimize_bit_width_initial", minimize_initial),
        ("create_dataflow_partition", S.step_create_dataflow_partition),
        ("specialize_layers", S.step_specialize_layers),
        ("validate_folding", step_validate_folding),
        ("target_fps_parallelization", S.step_target_fps_parallelization),
        ("apply_folding_config", S.step_apply_folding_config),
        ("minimize_bit_width", minimize),
        ("generate_estimate_reports", S.step_generate_estimate_reports),
    ]


def run_build(
    net: str,
    onnx_path: Path,
    board: str | None = None,
    out: Path | None = None,
    finn_minimize: bool = False,
) -> dict:
    """Run every step on the exported model; returns the build summary (also in build.json)."""
    cfg = load_network_config(net)
    require_deployable(cfg)
    board = board or cfg.build.board
    if board not in BOARDS:
        raise UserError(f"unknown board {board!r}; choose one of {', '.join(BOARDS)}")
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise UserError(f"no exported model at {onnx_path}: run `maskbnn export --net {net}` first")
    out = BuildDir.at(out, net, board).root
    with folder_lock(out, f"maskbnn build --net {net} --board {board}"):
        # The old summary, verification and graphs go first: a build killed part-way leaves
        # nothing that a later stage (or Make) could take for a finished build.
        bd = BuildDir(out)
        remove(*bd.stamps, bd.time_per_step, bd.hw_model, bd.program)
        return _run_steps(cfg, net, onnx_path, board, out, finn_minimize)


def _run_steps(cfg, net: str, onnx_path: Path, board: str, out: Path, finn_minimize: bool) -> dict:
    from qonnx.core.modelwrapper import ModelWrapper

    bd = BuildDir(out)
    shutil.rmtree(bd.intermediate, ignore_errors=True)
    bd.intermediate.mkdir(parents=True, exist_ok=True)
    bd.report.mkdir(parents=True, exist_ok=True)
    fcfg = finn_config(cfg, board, out)
    t_all = time.perf_counter()
    model, times = run_finn_steps(
        ModelWrapper(str(onnx_path)),
        fcfg,
        steps(finn_minimize, cfg.build.rtl_mvau),
        save_dir=bd.intermediate,
    )
    hw_model = bd.hw_model
    model.save(str(hw_model))
    export_program(hw_model, bd.program)
    est = collect(bd.report, hw_model, cfg.build.clock_ns, board, net)
    paths = write_estimates(est, out)
    summary = {
        "network": net,
        "board": board,
        "part": BOARDS[board],
        "clock_ns": cfg.build.clock_ns,
        "config_digest": cfg.hardware_digest(),
        "input": rel(onnx_path),
        "input_sha256": _sha256(onnx_path),
        "folding": None if fcfg.folding_config_file is None else rel(fcfg.folding_config_file),
        "target_fps": cfg.build.target_fps,
        "finn_minimize_bit_width_unfixed": finn_minimize,
        "hw_model": hw_model.name,
        "program": bd.program.name,
        "estimates": {k: p.name for k, p in paths.items()},
        "fps": est["total"]["fps"],
        "seconds": round(time.perf_counter() - t_all, 2),
    }
    write_json(bd.time_per_step, times)
    write_json(bd.summary, summary)  # last: Make's target for the whole build
    return summary


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def latest_export(net: str, export_dir: Path | None = None) -> Path:
    """The TopK model the last `maskbnn export` wrote for `net` (export.json names it)."""
    export_dir = Path(export_dir) if export_dir else default_export_dir(net)
    index = export_index(export_dir)
    if not index.is_file():
        raise UserError(f"{net} has not been exported: run `maskbnn export --net {net}` first")
    return export_dir / json.loads(index.read_text())["topk"]


# --- CLI ---------------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--net", required=True, help="network name, e.g. mask_1w1a_0.25")
    p.add_argument("--board", choices=sorted(BOARDS), help="default: the config's build.board")
    p.add_argument("--onnx", type=Path, help="exported QONNX (default: the last export of --net)")
    p.add_argument("--out", type=Path, help="output folder (default build/<net>/<board>)")
    p.add_argument(
        "--finn-minimize-bit-width",
        action="store_true",
        help="use FINN+'s unfixed minimize_bit_width (to demonstrate that verify catches it)",
    )


def run(args: argparse.Namespace) -> int:
    load_network_config(args.net)  # an unknown name is named before any advice to export it
    onnx_path = args.onnx or latest_export(args.net)
    s = run_build(args.net, onnx_path, args.board, args.out, args.finn_minimize_bit_width)
    out = BuildDir.at(args.out, args.net, s["board"]).root
    print(f"built {rel(out / s['hw_model'])}: {s['fps']:,.0f} FPS estimated, {s['seconds']} s")
    print(BuildDir(out).estimates("md").read_text())
    return 0
