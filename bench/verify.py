"""Benchmark: the bit-exact NumPy executor vs FINN's execute_onnx on the same hardware graph.

Both run the same images through the same folded graph (``build/<net>/<board>/hw_model.onnx``);
outputs must be identical, then images/s of each and their ratio go to build/bench/hwexec.{json,md}.
FINN runs image by image (its hardware layers take one frame); the executor runs batched. Both
sides share one BLAS thread setting per row (1 thread, then the machine's default), so the ratio
compares like with like.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from maskbnn.errors import UserError, VerificationError
from maskbnn.paths import BUILD_DIR, SAMPLE_DIR, rel
from maskbnn.pipeline.builddir import BuildDir
from maskbnn.pipeline.data.datasets import load_dataset
from maskbnn.report import md_table


def bench(
    net: str,
    board: str,
    finn_images: int,
    hwexec_images: int,
    threads: int | None,
    build_root: Path = BUILD_DIR,
) -> dict:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads, user_api="blas"):
        row = _bench(net, board, finn_images, hwexec_images, build_root)
    row["blas_threads"] = threads or "default"
    return row


def _bench(net: str, board: str, finn_images: int, hwexec_images: int, build_root: Path) -> dict:
    from maskbnn.pipeline.finn.hwgraph import read_program
    from maskbnn.pipeline.verify.stages import finn_hw_trace

    hw = BuildDir.of(net, board, build_root).hw_model
    if not hw.is_file():
        raise UserError(
            f"no build at {rel(hw.parent)}: run `maskbnn build --net {net} --board {board}`"
        )
    program = read_program(hw)
    x = load_dataset("maskedface", SAMPLE_DIR, "all").x
    xs = np.concatenate([x] * (hwexec_images // len(x) + 1))[:hwexec_images]
    program.run(xs[:64])  # warm-up (weight casts are cached on first use)
    t0 = time.perf_counter()
    ours = program.run(xs)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    finn = finn_hw_trace(hw, x[:finn_images])[program.layers[-1].name]
    t_finn = time.perf_counter() - t0
    if not np.array_equal(
        finn.reshape(finn_images, -1), ours[:finn_images].reshape(finn_images, -1)
    ):
        raise VerificationError("executor and FINN disagree on the benchmark images")
    ours_ips, finn_ips = len(xs) / t_ours, finn_images / t_finn
    return {
        "network": net,
        "board": board,
        "hwexec_images": len(xs),
        "hwexec_images_per_second": round(ours_ips, 1),
        "finn_images": finn_images,
        "finn_seconds_per_image": round(t_finn / finn_images, 3),
        "finn_images_per_second": round(finn_ips, 2),
        "speedup": round(ours_ips / finn_ips, 1),
        "outputs_equal": True,
        "machine": f"{platform.machine()}, {platform.python_version()}, load {_load()}",
    }


def _load() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def to_markdown(rows: list[dict]) -> str:
    lines = [
        "# Bit-exact executor vs FINN execute_onnx (same hardware graph, same images)",
        "",
    ]
    lines += md_table(
        ("network", "BLAS threads", "executor img/s", "FINN s/img", "speed-up", "outputs equal"),
        (
            (r["network"], r["blas_threads"], f"{r['hwexec_images_per_second']:,}",
             r["finn_seconds_per_image"], f"{r['speedup']:,}x", r["outputs_equal"])
            for r in rows
        ),
    )  # fmt: skip
    return "\n".join(lines) + "\n"


NETS = ("mask_1w1a_0.25", "mask_1w1a_0.5", "mask_1w1a")  # the widths; `make bench` builds them


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nets", nargs="+", default=list(NETS))
    p.add_argument("--board", default="Pynq-Z1")
    p.add_argument("--finn-images", type=int, default=5)
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--threads", nargs="+", default=["1", "default"], help="BLAS thread settings")
    p.add_argument("--build-root", type=Path, default=BUILD_DIR, help="where the builds are")
    p.add_argument("--out", type=Path, default=BUILD_DIR / "bench")


def run(args: argparse.Namespace) -> int:
    rows = []
    for net in args.nets:
        for t in args.threads:
            threads = None if t == "default" else int(t)
            r = bench(net, args.board, args.finn_images, args.images, threads, args.build_root)
            print(f"{net} ({t} BLAS threads): executor {r['hwexec_images_per_second']:,} img/s, FINN "
              f"{r['finn_seconds_per_image']} s/img, {r['speedup']:,}x", flush=True)  # fmt: skip
            rows.append(r)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "hwexec.json").write_text(json.dumps(rows, indent=2) + "\n")
    (args.out / "hwexec.md").write_text(to_markdown(rows))
    return 0
