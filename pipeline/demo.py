"""Run every stage that exists on the shipped sample and pretrained weights."""

from __future__ import annotations

import argparse
from pathlib import Path

from maskbnn.paths import BUILD_DIR, SAMPLE_DIR


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", type=Path, default=SAMPLE_DIR)
    p.add_argument("--out", type=Path, default=BUILD_DIR / "demo")


def run(args: argparse.Namespace) -> int:
    from maskbnn.pipeline.data_cli import format_summary
    from maskbnn.pipeline.prepare import PrepareParams, prepare

    print(f"== data: preparing {args.source}")
    manifest = prepare(args.source, args.out / "data", PrepareParams(test_fraction=0.0))
    print(format_summary(manifest))
    return 0
