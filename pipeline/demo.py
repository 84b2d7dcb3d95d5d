"""Run every step on the shipped sample and pretrained weights, the way a user would type them.

The steps and their order are `pipeline/steps.py`'s; each is the same command a user runs, and a
step that fails stops the demo with its exit code. The bitstream step needs Vivado: here it is
expected to stop with its missing-tool message, which the demo shows and accepts (exit 4), so the
demo still ends green without pretending. `--from/--to/--only` run a part of the list.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from maskbnn.paths import BUILD_DIR, SAMPLE_DIR
from maskbnn.pipeline.steps import MISSING_TOOL, STEPS, Context, StepResult, run_steps


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--net", default="mask_1w1a_0.25", help="a network with shipped weights")
    p.add_argument("--board", default="Pynq-Z1", choices=("Pynq-Z1", "Pynq-Z2"))
    p.add_argument("--source", type=Path, default=SAMPLE_DIR)
    p.add_argument("--out", type=Path, default=BUILD_DIR / "demo")
    steps = ", ".join(STEPS.names())
    p.add_argument("--from", dest="start", metavar="STEP", help=f"first step ({steps})")
    p.add_argument("--to", dest="stop", metavar="STEP", help="last step")
    p.add_argument("--only", nargs="+", default=[], metavar="STEP", help="just these steps")


def run(args: argparse.Namespace) -> int:
    from maskbnn.models.checkpoint import pretrained_path

    steps = STEPS.select(args.start, args.stop, args.only)
    ctx = Context(
        net=args.net,
        board=args.board,
        source=args.source,
        out=args.out,
        checkpoint=pretrained_path(args.net),
        build_root=BUILD_DIR,
    )
    results: list[StepResult] = []

    def seen(result: StepResult) -> None:
        results.append(result)
        if result.name == "bitstream" and result.code == MISSING_TOOL:
            print("   (expected on a machine without Vivado: everything before synthesis ran)")

    try:
        run_steps(steps, ctx, record=args.out / "steps.json", on_step=seen)
    finally:
        print("\n| step | exit | seconds |\n|---|---:|---:|")
        for r in results:
            print(f"| {r.name} | {r.code} | {r.seconds:.1f} |")
    return 0
