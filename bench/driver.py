"""Driver packing benchmark: maskbnn-board's pack+unpack against FINN's on the same data.

Per batch size it times the host side of one accelerator call, as FINN's PYNQ driver does it:
input fold + pack (UINT8 images) and output unpack + unfold, best of several repeats, and reports
images/s for
- ``maskbnn_board.packing`` (this repo's driver),
- FINN+'s ``finnpy_to_packed_bytearray`` / ``packed_bytearray_to_finnpy`` with the arguments FINN's
  driver passes (reverse_inner, reverse_endian) — FINN+ 1.6.1 already vectorises these,
- FINN's element-wise hex-string packing (``pack_innermost_dim_as_hex_string`` /
  ``unpack_innermost_dim_from_hex_string``), the path FINN's driver packing was built on before
  FINN+ vectorised it (the finn-examples "1.5 s per 100 outputs" figure), timed on fewer images.

Writes build/bench/driver.json and driver.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from maskbnn.paths import BUILD_DIR, SAMPLE_DIR
from maskbnn_board.datatypes import parse_datatype
from maskbnn_board.packing import pack, unpack

# Output streams of the CNV accelerators: LabelSelect's class index (UINT8 after FINN rounds it
# to whole bytes), and the last MVAU's per-class popcount scores as an odd-width signed type.
OUTPUT_CASES = {
    "label": ("UINT8", (1,), (1, 1)),
    "scores": ("INT10", (4,), (1, 4)),
}


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def real_images(n: int) -> np.ndarray:
    from maskbnn.pipeline.data.maskedface import load_image as project_load
    from maskbnn.pipeline.data.maskedface import scan

    _, items, _ = scan(SAMPLE_DIR)
    reps = -(-n // len(items))
    x = np.stack([project_load(it, 32) for it in items])
    return np.concatenate([x] * reps)[:n]


def _ours_fn(pack, unpack, x, in_t, in_folded, y_packed, odt, ofolded, onormal):
    n = len(x)

    def run():
        packed = pack(x.reshape(n, *in_folded), in_t)
        out = unpack(y_packed, odt, ofolded[-1]).reshape(n, *onormal)
        return packed, out

    return run


def _finn_fn(fdp, DataType, x, in_folded, y_packed, odt_name, ofolded, onormal):
    n = len(x)

    def run():
        packed = fdp.finnpy_to_packed_bytearray(
            x.reshape(n, *in_folded), DataType["UINT8"], reverse_inner=True, reverse_endian=True
        )
        out = fdp.packed_bytearray_to_finnpy(
            y_packed, DataType[odt_name], (n, *ofolded), reverse_inner=True, reverse_endian=True
        )
        return packed, out.reshape(n, *onormal)

    return run


def _finn_elementwise_fn(fdp, DataType, x, in_folded, y_packed, odt_name, ofolded, bits):
    n = len(x)

    def run():
        hexes = fdp.pack_innermost_dim_as_hex_string(
            x.reshape(n, *in_folded), DataType["UINT8"], 8 * in_folded[-1], reverse_inner=True
        )
        packed = np.stack([fdp.hexstring2npbytearray(h)[::-1] for h in hexes.ravel()])
        words = np.array(["0x" + bytes(w[::-1]).hex() for w in y_packed.reshape(n, -1)])
        out = fdp.unpack_innermost_dim_from_hex_string(
            words, DataType[odt_name], (n, *ofolded), bits * ofolded[-1], reverse_inner=True
        )
        return packed, out

    return run


def bench(batches=(1, 100, 1000), repeats: int = 5, elementwise_images: int = 20) -> dict:
    """Images/s of pack+unpack for our driver and FINN's functions; checks equal results first."""
    from maskbnn.pipeline.release.settings import _finn_environment

    _finn_environment()
    from finn.util import data_packing as fdp
    from qonnx.core.datatype import DataType

    rng = np.random.default_rng(0)
    x_all = real_images(max(batches))
    in_t, in_folded = parse_datatype("UINT8"), (32, 32, 1, 3)
    results: dict = {"cases": []}
    for case, (odt_name, onormal, ofolded) in OUTPUT_CASES.items():
        odt = parse_datatype(odt_name)
        lo, hi = (0, 4) if case == "label" else (odt.min, odt.max + 1)
        for n in (*batches, elementwise_images):
            x = x_all[:n]
            y = rng.integers(lo, hi, (n, *onormal))
            y_packed = pack(y.reshape(n, *ofolded), odt)
            ours = _ours_fn(pack, unpack, x, in_t, in_folded, y_packed, odt, ofolded, onormal)
            elementwise = n == elementwise_images and n not in batches
            if elementwise:
                ref = _finn_elementwise_fn(
                    fdp, DataType, x, in_folded, y_packed, odt_name, ofolded, odt.bits
                )
            else:
                ref = _finn_fn(fdp, DataType, x, in_folded, y_packed, odt_name, ofolded, onormal)
            (p1, o1), (p2, o2) = ours(), ref()
            if not (
                np.array_equal(p1, np.asarray(p2).reshape(p1.shape))
                and np.array_equal(o1, np.asarray(o2).reshape(o1.shape))
            ):
                raise RuntimeError(f"packing disagrees with FINN for {case} at batch {n}")
            t_ours, t_ref = _best(ours, repeats), _best(ref, 2 if elementwise else repeats)
            key = "finn_elementwise" if elementwise else "finn"
            results["cases"].append(
                {
                    "output": f"{case} ({odt_name} x{onormal[0]})",
                    "batch": n,
                    "ours_images_per_s": n / t_ours,
                    f"{key}_images_per_s": n / t_ref,
                    f"ratio_vs_{key}": t_ref / t_ours,
                }
            )
    results["machine"] = {"python": platform.python_version(), "numpy": np.__version__}
    return results


def write_report(results: dict, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    jpath, mpath = out_dir / "driver.json", out_dir / "driver.md"
    jpath.write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# Driver packing benchmark (host side of one accelerator call: pack input + unpack output)",
        "",
        "| output | batch | ours img/s | FINN+ 1.6.1 img/s | ratio | FINN element-wise img/s | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in results["cases"]:
        lines.append(
            f"| {c['output']} | {c['batch']} | {c['ours_images_per_s']:,.0f} | "
            + (
                f"{c['finn_images_per_s']:,.0f} | {c['ratio_vs_finn']:.1f}x | | |"
                if "finn_images_per_s" in c
                else f" | | {c['finn_elementwise_images_per_s']:,.1f} | "
                f"{c['ratio_vs_finn_elementwise']:,.0f}x |"
            )
        )
    mpath.write_text("\n".join(lines) + "\n")
    return jpath, mpath


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=BUILD_DIR / "bench")
    p.add_argument("--repeats", type=int, default=5)


def run(args: argparse.Namespace) -> int:
    results = bench(repeats=args.repeats)
    jpath, mpath = write_report(results, args.out)
    print(mpath.read_text())
    print(f"wrote {jpath}")
    return 0
