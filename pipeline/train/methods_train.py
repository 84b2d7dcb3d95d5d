"""`maskbnn methods-train`: train the networks of the methods table on a CPU budget and keep each
run's record (models/runs/<net>.json: command, epochs, time, test accuracy re-measured from the
final weights) for `maskbnn methods-table`. Networks whose dataset folder is not given are skipped
and say so; a network with shipped weights (models/pretrained/) is not retrained.

maskbnn methods-train --maskedface DIR [--cifar10 DIR] [--mnist DIR] [--epochs N] [--only NET,..]
"""

from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path

from maskbnn.config import load_network_config
from maskbnn.errors import UserError
from maskbnn.paths import BUILD_DIR, REPO_ROOT
from maskbnn.pipeline.reports.methods_table import TABLE, load_table

RUNS_DIR = REPO_ROOT / "models" / "runs"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--maskedface", type=Path, help="MaskedFace-Net folder (any layout) or prepared")
    p.add_argument("--cifar10", type=Path, help="CIFAR-10 python-pickle folder")
    p.add_argument("--mnist", type=Path, help="MNIST idx folder")
    p.add_argument("--epochs", type=int, default=30, help="per network (default 30)")
    p.add_argument("--only", help="comma-separated networks (default: every row of the table)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--experiments", type=Path, default=BUILD_DIR / "methods-runs")
    p.add_argument("--out", type=Path, default=RUNS_DIR, help="where the records go")


def run(args: argparse.Namespace) -> int:
    from maskbnn.models.checkpoint import PRETRAINED_DIR
    from maskbnn.pipeline.train import cli as train_cli
    from maskbnn.pipeline.train.ship_pretrained import ship

    nets = [r["network"] for r in load_table(TABLE)["rows"]]
    if args.only:
        wanted = args.only.split(",")
        unknown = sorted(set(wanted) - set(nets))
        if unknown:
            raise UserError(f"--only: {unknown} are not rows of {TABLE}; rows: {nets}")
        nets = wanted
    folders = {"maskedface": args.maskedface, "cifar10": args.cifar10, "mnist": args.mnist}
    for net in nets:
        cfg = load_network_config(net)
        if (PRETRAINED_DIR / f"{net}.tar").is_file():
            print(f"{net}: shipped weights and record in models/pretrained/, not retrained")
            continue
        datadir = folders[cfg.dataset]
        if datadir is None:
            print(f"{net}: skipped, no --{cfg.dataset} folder given")
            continue
        argv = ["--net", net, "--datadir", str(datadir), "--epochs", str(args.epochs),
                "--threads", str(args.threads), "--experiments", str(args.experiments / net),
                "--no-progress"]  # fmt: skip
        t0 = time.perf_counter()
        parser = argparse.ArgumentParser()
        train_cli.add_arguments(parser)
        train_cli.run(parser.parse_args(argv))
        run_dir = max((args.experiments / net).iterdir(), key=lambda p: p.stat().st_mtime)
        meta = ship(run_dir, args.out, command="maskbnn train " + shlex.join(argv),
                    record_only=True)  # fmt: skip
        print(f"{net}: test top1 {meta['test_top1']:.2f}% after {args.epochs} epochs, "
              f"{(time.perf_counter() - t0) / 60:.1f} min; record {args.out / (net + '.json')}")  # fmt: skip
    return 0
