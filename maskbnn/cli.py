"""`maskbnn` command line: one sub-command per stage, each living next to the stage's code."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

from maskbnn.errors import UserError

# Sub-command name -> module providing `add_arguments(parser)` and `run(args) -> int`.
# Modules are imported lazily so `maskbnn data ...` does not pay for importing torch or FINN.
COMMANDS = {
    "data": ("maskbnn.pipeline.data.cli", "prepare, summarise or sample MaskedFace-Net data"),
    "train": ("maskbnn.pipeline.train.cli", "train or evaluate a network (bnn_pynq-compatible)"),
    "bench-train": ("maskbnn.bench.train", "training speed vs upstream bnn_pynq"),
    "bench-verify": ("maskbnn.bench.verify", "bit-exact NumPy executor vs FINN execute_onnx"),
    "bench-driver": ("maskbnn.bench.driver", "driver packing vs FINN's"),
    "bench-prepare": ("maskbnn.bench.prepare", "data prepare on 1024 px JPEGs"),
    "demo": ("maskbnn.pipeline.demo", "run every stage on the shipped sample and weights"),
    "export": (
        "maskbnn.pipeline.export.qonnx_export",
        "checkpoint -> QONNX (uint8 image in, TopK out)",
    ),
    "build": (
        "maskbnn.pipeline.finn.build",
        "FINN build to the folded hardware graph, with estimates",
    ),
    "estimate": (
        "maskbnn.pipeline.finn.estimates",
        "FINN estimates for several networks and boards",
    ),
    "verify": (
        "maskbnn.pipeline.verify.chain",
        "bit-exact golden verification of every build stage",
    ),
    "deploy": (
        "maskbnn.pipeline.release.deploy",
        "assemble the board package (driver, golden vectors)",
    ),
    "bitstream": (
        "maskbnn.pipeline.release.bitstream_cli",
        "HLS/RTL sources -> IP -> bitfile (Vivado)",
    ),
    "rtlsim": ("maskbnn.pipeline.rtlsim.verilator", "Verilator simulation of the RTL layers"),
    "fold": ("maskbnn.pipeline.fold.cli", "folding that maximises estimated FPS in a budget"),
    "methods-table": (
        "maskbnn.pipeline.reports.methods_table",
        "training methods: accuracy, BOPs, FINN deployability and estimates",
    ),
    "methods-train": (
        "maskbnn.pipeline.train.methods_train",
        "train the methods table's networks on a CPU budget, keep their records",
    ),
    "fold-report": (
        "maskbnn.pipeline.fold.compare",
        "ours vs FINN target_fps vs published foldings",
    ),
    "ops": (
        "maskbnn.pipeline.reports.ops_count",
        "BOPs, FLOPs and OPs = BOPs/64 + FLOPs of networks",
    ),
}


def _build_parser(argv: list[str]) -> tuple[argparse.ArgumentParser, object | None]:
    parser = argparse.ArgumentParser(prog="maskbnn", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = argv[0] if argv and argv[0] in COMMANDS else None
    module = None
    for name, (modname, summary) in COMMANDS.items():
        p = sub.add_parser(name, help=summary, description=summary)
        if name == chosen:
            module = importlib.import_module(modname)
            module.add_arguments(p)
    return parser, module


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if os.environ.get("XILINX_VIVADO"):  # before anything runs: it may restart the process
        from maskbnn.pipeline.finn.env import ensure_xilinx_libraries

        ensure_xilinx_libraries()
    parser, module = _build_parser(argv)
    args = parser.parse_args(argv)
    if module is None:
        parser.print_help()
        return 2
    try:
        return int(module.run(args) or 0)
    except UserError as err:
        print(f"maskbnn {args.command}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"maskbnn {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception:  # internal error: keep the traceback, it is a bug report
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())
