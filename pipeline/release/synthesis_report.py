"""A synthesised design against FINN's estimate and the folding, in maskbnn's terms (the
Vivado reports themselves are read by `maskbnn.pipeline.finn.vivado_reports`).

- `versus_estimate` / `post_synthesis_markdown`: FINN's estimate and the post-synthesis count
  per resource, side by side (the post-synthesis figures include the Zynq shell: DMAs and
  interconnect);
- `next_slower_folding`: the folding optimizer's next slower folding, for a design that misses
  timing.
"""

from __future__ import annotations

import json
from pathlib import Path


def versus_estimate(estimate: dict, post: dict) -> dict[str, dict]:
    """Per resource: FINN's estimate (accelerator) and the post-synthesis count (whole design)."""
    bram18 = int(post.get("BRAM_36K", 0)) * 2 + int(post.get("BRAM_18K", 0))
    rows = {
        "LUT": (estimate.get("LUT"), post.get("LUT")),
        "BRAM18 (RAMB36 = 2)": (estimate.get("BRAM_18K"), bram18),
        "DSP": (estimate.get("DSP"), post.get("DSP")),
        "FF": (None, post.get("FF")),
    }
    return {k: {"finn_estimate": None if e is None else int(e),
                "post_synthesis": None if p is None else int(p)}
            for k, (e, p) in rows.items()}  # fmt: skip


def post_synthesis_markdown(net: str, board: str, table: dict, wns: float | None,
                            clock_ns: float, tool: str | None) -> str:  # fmt: skip
    lines = [
        f"# {net} on {board}: FINN's estimate vs post-synthesis",
        "",
        f"Synthesised by: {tool or 'unknown'}. Post-synthesis counts are the whole design "
        "(accelerator + Zynq shell, Vivado's `(top)` row); FINN estimates the accelerator only.",
        "",
        "| resource | FINN estimate | post-synthesis | post / estimate |",
        "|---|---:|---:|---:|",
    ]
    for name, row in table.items():
        e, p = row["finn_estimate"], row["post_synthesis"]
        ratio = f"{p / e:.2f}" if e and p is not None else "-"
        lines.append(f"| {name} | {'-' if e is None else f'{e:,}'} | "
                     f"{'-' if p is None else f'{p:,}'} | {ratio} |")  # fmt: skip
    slack = "not reported" if wns is None else f"{wns:+.3f} ns"
    lines += ["", f"Worst negative slack at {1000 / clock_ns:.0f} MHz ({clock_ns} ns): {slack}."]
    return "\n".join(lines) + "\n"


def next_slower_folding(net: str, board: str, build: Path, max_cycles: int, clock_ns: float,
                        dest: Path) -> dict | None:  # fmt: skip
    """The folding optimizer's next cycle target above `max_cycles` (the failed design's), its
    cheapest folding within the board budget written to `dest`; None when there is none."""
    from maskbnn.config import BOARDS
    from maskbnn.pipeline.fold import optimizer as F

    graph = Path(build) / "intermediate_models" / "specialize_layers.onnx"
    if not graph.is_file():
        return None
    part = BOARDS[board]
    units = F.build_units(F.load_graph(graph), part)
    budget = F.Budget.of(part, F.DEFAULT_LUT_FRACTION, F.DEFAULT_BRAM_FRACTION)
    for target in (t for t in F._cycle_targets(units) if t > max_cycles):
        choice = F._fit(units, target, budget.lut, budget.bram18, budget.dsp or float("inf"))
        if choice is None:
            continue
        result = F.FoldResult(net, board, part, clock_ns, budget, units, choice, "", None)
        F.write_folding(result, dest)
        return {"file": str(dest), "max_cycles": result.max_cycles,
                "fps": round(result.fps, 1), "bottleneck": result.bottleneck}  # fmt: skip
    return None


def load_json(path: Path) -> dict:
    return json.loads(Path(path).read_text()) if Path(path).is_file() else {}
