"""`maskbnn bitstream`: the hardware flow of bitstream.py from the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

from maskbnn.config import BOARDS
from maskbnn.paths import rel
from maskbnn.pipeline.builddir import bitstream_dir


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--net", required=True, help="network name, e.g. mask_1w1a_0.5")
    p.add_argument("--board", choices=sorted(BOARDS), help="default: the config's build.board")
    p.add_argument("--build", type=Path, help="verified build folder (default build/<net>/<board>)")
    p.add_argument(
        "--board-files",
        type=Path,
        help="folder with the board's Vivado board files (Pynq-Z2: board part "
        "tul.com.tw:pynq-z2:part0:1.0); default: FINN+'s dependency folder",
    )
    p.add_argument("--checkpoint", type=Path, help="weights of the build (golden vectors)")
    p.add_argument("--out", type=Path, help="release folder (default bitstreams/<net>/<board>)")


def run(args: argparse.Namespace) -> int:
    import torch

    from maskbnn.pipeline.release.bitstream import run_bitstream

    torch.set_num_threads(1)
    m = run_bitstream(args.net, args.board, args.build, args.board_files, args.checkpoint, args.out)
    where = args.out or bitstream_dir(args.net, m["board"])
    print(f"bitstream for {m['network']} on {m['board']}: {rel(Path(where))} ({m['seconds']} s)")
    return 0
