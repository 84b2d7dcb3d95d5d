"""``maskbnn-board``: run MaskedFace images through the accelerator (or its emulation) and check it."""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

from maskbnn_board import __version__
from maskbnn_board.deployment import Deployment
from maskbnn_board.errors import DriverError, GoldenMismatchError
from maskbnn_board.runner import (
    BACKENDS,
    RunResult,
    check_golden,
    open_accelerator,
    run_images,
    write_results,
)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--deploy", type=Path, required=True, help="deployment folder (manifest.json ...)"
    )
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default="pynq",
        help="pynq: the FPGA; emulate: "
        "the bit-exact software model through the same driver path (default: pynq)",
    )
    p.add_argument(
        "--batch", type=int, default=100, help="images per accelerator run (default 100)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="maskbnn-board", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="predict a folder of images; accuracy, golden check, speed")
    _common(run)
    run.add_argument("--images", type=Path, help="folder of images (searched recursively)")
    run.add_argument(
        "--golden",
        action="store_true",
        help="also run the golden vectors and require exact agreement with them",
    )
    run.add_argument(
        "--out",
        type=Path,
        default=Path("maskbnn-board-results"),
        help="where predictions.csv and summary.json go",
    )
    run.add_argument("--limit", type=int, help="use only the first N images")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")

    thr = sub.add_parser("throughput", help="images/s, latency, transfer vs compute split")
    _common(thr)
    thr.add_argument("--batches", type=int, default=10, help="batches to time (default 10)")

    chk = sub.add_parser(
        "check", help="verify every file of a deployment folder against its manifest"
    )
    chk.add_argument("--deploy", type=Path, required=True)
    return parser


def _print_summary(s: dict) -> None:
    acc = s.get("accelerator", {})
    print(f"images: {s['images']}  skipped: {len(s['skipped'])}")
    for sk in s["skipped"][:10]:
        print(f"  skipped {sk['file']}: {sk['reason']}")
    if s["accuracy"] is not None:
        print(f"accuracy: {s['accuracy']:.2f}% over {s['labelled']} labelled images")
    if s["golden_compared"]:
        print(f"golden agreement (by file name): {s['golden_agreeing']}/{s['golden_compared']}")
    if acc.get("images_per_s"):
        print(
            f"accelerator path: {acc['images_per_s']:.0f} images/s (host {acc['host_s']:.3f} s, "
            f"transfer {acc['transfer_s']:.3f} s, compute {acc['compute_s']:.3f} s); "
            f"end to end incl. decoding: {s['images_per_s_end_to_end']:.0f} images/s"
        )


def cmd_run(args: argparse.Namespace) -> int:
    if args.images is None and not args.golden:
        raise DriverError("give --images DIR, --golden, or both")
    if args.images is not None and not args.images.is_dir():
        raise DriverError(f"image folder {args.images} does not exist")
    dep = Deployment(args.deploy)
    acc = open_accelerator(dep, args.backend, args.batch)
    try:
        failed = False
        extra: dict = {"deployment": str(dep.root), "network": dep.network, "backend": args.backend}
        if args.golden:
            g = check_golden(acc, dep, progress=not args.no_progress)
            extra["golden"] = g
            print(
                f"golden vectors: {g['golden_agreeing']}/{g['golden_images']} outputs identical "
                f"({g['agreement_percent']:.2f}%)"
            )
            failed |= g["golden_agreeing"] != g["golden_images"]
        res = RunResult()
        if args.images is not None:
            res = run_images(acc, dep, args.images, args.limit, progress=not args.no_progress)
            _print_summary(res.summary)
            failed |= res.summary["golden_agreeing"] != res.summary["golden_compared"]
        csv_path, json_path = write_results(res, args.out, extra)
        print(f"wrote {csv_path} and {json_path}")
    finally:
        acc.close()
    if args.images is not None and not res.rows:
        raise DriverError(
            f"no image under {args.images} could be used ({len(res.skipped)} skipped, reasons "
            f"in {json_path})"
        )
    if failed:
        raise GoldenMismatchError(
            f"the {args.backend} accelerator disagrees with the golden vectors; see {json_path}"
        )
    return 0


def cmd_throughput(args: argparse.Namespace) -> int:
    dep = Deployment(args.deploy)
    acc = open_accelerator(dep, args.backend, args.batch)
    try:
        r = acc.throughput_test(args.batches)
    finally:
        acc.close()
    print(json.dumps(r, indent=2))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    dep = Deployment(args.deploy)
    names = dep.verify_all()
    print(f"{dep.root}: {len(names)} files match manifest.json ({dep.network})")
    return 0


COMMANDS = {"run": cmd_run, "throughput": cmd_throughput, "check": cmd_check}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return COMMANDS[args.command](args)
    except DriverError as err:
        print(f"maskbnn-board {args.command}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"maskbnn-board {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception:  # a bug: keep the traceback
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())
