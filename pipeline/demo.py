"""Run every stage on the shipped sample and pretrained weights, the way a user would type them.

Each stage is the same CLI command a user runs; a stage that fails stops the demo with its exit
code. The bitstream stage needs Vivado: here it is expected to stop with its missing-tool message,
which the demo shows and accepts (exit 4), so the demo still ends green without pretending.
"""

from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path

from maskbnn.errors import UserError
from maskbnn.paths import BUILD_DIR, SAMPLE_DIR

MISSING_TOOL = 4


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--net", default="mask_1w1a_0.25", help="a network with shipped weights")
    p.add_argument("--board", default="Pynq-Z1", choices=("Pynq-Z1", "Pynq-Z2"))
    p.add_argument("--source", type=Path, default=SAMPLE_DIR)
    p.add_argument("--out", type=Path, default=BUILD_DIR / "demo")


def run(args: argparse.Namespace) -> int:
    from maskbnn.models.checkpoint import pretrained_path

    ckpt = pretrained_path(args.net)
    net, board, src, out = args.net, args.board, str(args.source), args.out
    deploy_dir = out / "deploy"
    stages = [
        ("data", ["data", "prepare", "--source", src, "--out", str(out / "data")]),
        (
            "evaluate",
            [
                "train",
                "--evaluate",
                "--net",
                net,
                "--pretrained",
                "--datadir",
                str(out / "data"),
                "--eval-split",
                "test",
                "--experiments",
                str(out / "experiments"),
                "--metrics-json",
                str(out / "metrics.json"),
            ],
        ),
        ("export", ["export", "--net", net, "--checkpoint", str(ckpt)]),
        ("build", ["build", "--net", net, "--board", board]),
        ("verify", ["verify", "--net", net, "--board", board, "--checkpoint", str(ckpt)]),
        ("rtlsim", ["rtlsim", "--net", net, "--board", board]),
        (
            "deploy",
            [
                "deploy",
                "--net",
                net,
                "--board",
                board,
                "--checkpoint",
                str(ckpt),
                "--out",
                str(deploy_dir),
            ],
        ),
        ("bitstream", ["bitstream", "--net", net, "--board", board, "--checkpoint", str(ckpt)]),
    ]
    timings = []
    for name, argv in stages:
        code, seconds = _stage(name, argv)
        timings.append((name, code, seconds))
        if code == MISSING_TOOL and name == "bitstream":
            print("   (expected on a machine without Vivado: everything before synthesis ran)")
        elif code != 0:
            _print_timings(timings)
            raise UserError(f"demo stopped: stage {name!r} failed with exit code {code}")
    code, seconds = _board_run(deploy_dir / f"{net}_{board}", src, out / "board")
    timings.append(("board (emulate)", code, seconds))
    _print_timings(timings)
    return 0 if code == 0 else code


def _stage(name: str, argv: list[str]) -> tuple[int, float]:
    from maskbnn.cli import main

    print(f"\n== {name}: maskbnn {shlex.join(argv)}", flush=True)
    t0 = time.perf_counter()
    code = main(argv)
    return code, time.perf_counter() - t0


def _board_run(deploy: Path, images: str, results: Path) -> tuple[int, float]:
    """The board driver, emulation backend: the same pack -> buffer -> unpack path as on a PYNQ."""
    from maskbnn_board.cli import main as board_main

    folder = deploy / "deploy" if (deploy / "deploy").is_dir() else deploy
    argv = ["run", "--deploy", str(folder), "--images", images, "--backend", "emulate", "--golden"]
    argv += ["--out", str(results)]
    print(f"\n== board: maskbnn-board {shlex.join(argv)}", flush=True)
    t0 = time.perf_counter()
    code = board_main(argv)
    return int(code or 0), time.perf_counter() - t0


def _print_timings(timings: list[tuple[str, int, float]]) -> None:
    print("\n| stage | exit | seconds |\n|---|---:|---:|")
    for name, code, seconds in timings:
        print(f"| {name} | {code} | {seconds:.1f} |")
