"""The whole fabric a folding occupies, not the network's layers alone.

What Vivado places is more than the layers FINN's estimate reports sum:

- the FIFOs and data-width converters the bitstream stage inserts between layers, and the width
  converters after the input and before the output DMA: estimated by FINN itself on a copy of the
  graph after the same insertions (``insert_minimal_fifos`` of the bitstream stage, then FINN's
  InsertIODMA + InsertDWC as its ZynqBuild does). FIFOs are at depth 2 here: their real depths are
  sized by simulation in Vivado, which the margin covers (below);
- the two IODMAs: FINN+ 1.6.1 has no resource model for IODMA_hls (its estimate is 0); kept as a
  part so that the number is visible; their real cost is in SHELL;
- the shell (the PS7's AXI interconnect and SmartConnect, reset, clocking wizard) and the IODMAs'
  real cost: a published post-synthesis figure, see SHELL;
- a margin for the estimate's own error on the parts FINN estimates, from calibration.py. The
  FIFOs' sized depths (beyond 2) are in that error: the calibration pairs' post-synthesis figures
  hold the FIFOs at their sized depths.
"""

from __future__ import annotations

import copy

from maskbnn.pipeline.fold import calibration

# Device totals the percentages refer to (BRAM in 18 Kb halves, as FINN counts them).
DEVICES = {"xc7z020clg400-1": {"LUT": 53200, "BRAM_18K": 280, "DSP": 220}}
RESOURCES = calibration.RESOURCES

# A FINN v0.10 ZynqBuild on the xc7z020 (Pynq-Z2, Vivado 2022 by its README) with FINN's per-node
# post-synthesis rows (post_synth_resources.json): "(top)" 19,486 LUT / 96 RAMB36 + 7 RAMB18 less
# the 57 dataflow node rows (15,148 LUT, the same BRAMs) leaves 4,338 LUT and no BRAM outside the
# nodes (AXI interconnect, SmartConnect, reset); its two IODMA_hls rows are 1,044 + 1,214 LUT and
# one RAMB36 + one RAMB18. FINN+ 1.6.1's Zynq shell is the same plus a PLL clocking wizard (no
# LUT-sized logic). The shell here is both: everything FINN+ 1.6.1 does not estimate.
SHELL = {
    "LUT": 4338 + 1044 + 1214,
    "BRAM_18K": 2 * 1 + 1,
    "DSP": 0,
    "source": "FINN v0.10 ZynqBuild on the xc7z020, post-synthesis: (top) less the dataflow "
    "nodes, plus its two IODMAs (github.com/Ba1tu3han/Finn_Thesis post_synth_resources.json)",
}
INSERTED = ("StreamingFIFO", "StreamingDataWidthConverter")


def _sum(model, part: str, prefixes: tuple[str, ...]) -> dict:
    from qonnx.custom_op.registry import getCustomOp

    out = {k: 0 for k in RESOURCES} | {"nodes": 0}
    for node in model.graph.node:
        if node.op_type.startswith(prefixes):
            res = getCustomOp(node).node_res_estimation(part)
            for k in RESOURCES:
                out[k] += int(res[k])
            out["nodes"] += 1
    return out


def inserted_parts(model, board: str, part: str) -> dict[str, dict]:
    """FINN's estimates of what the bitstream stage adds to the folded graph `model`."""
    from finn.transformation.fpgadataflow.insert_dwc import InsertDWC
    from finn.transformation.fpgadataflow.insert_iodma import InsertIODMA
    from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers
    from finn.util.basic import pynq_native_port_width

    from maskbnn.pipeline.finn.hardware import insert_minimal_fifos

    class _Part:  # the one DataflowBuildConfig method insert_minimal_fifos calls
        def _resolve_fpga_part(self) -> str:
            return part

    work = insert_minimal_fifos(copy.deepcopy(model), _Part())
    work = work.transform(InsertIODMA(pynq_native_port_width[board]))
    work = work.transform(InsertDWC()).transform(SpecializeLayers(part))
    # any FIFO/DWC already in the graph is in the layers' total: count only what was added
    after, before = _sum(work, part, INSERTED), _sum(model, part, INSERTED)
    return {
        "dwc_fifo": {k: after[k] - before[k] for k in after},
        "iodma": _sum(work, part, ("IODMA",)),
    }


def fabric(layers: dict, model, board: str, part: str, margin: dict | None = None) -> dict:
    """Parts, total before the margin, margin and total, in LUT / BRAM18 / DSP."""
    parts = {"layers": {k: int(layers.get(k, 0)) for k in RESOURCES}}
    parts.update(inserted_parts(model, board, part))
    parts["shell"] = dict(SHELL)
    before = {k: sum(int(p[k]) for p in parts.values()) for k in RESOURCES}
    frac = calibration.margin() if margin is None else margin
    # the calibration compares FINN's estimated parts (all but the published shell figure)
    added = {k: round((before[k] - SHELL[k]) * frac[k]) for k in RESOURCES}
    total = {k: before[k] + added[k] for k in RESOURCES}
    return {
        "parts": parts,
        "before_margin": before,
        "margin_fraction": frac,
        "margin": added,
        "total": total,
    }


def percent(total: dict, part: str) -> dict[str, float]:
    dev = DEVICES[part]
    return {k: round(100.0 * total[k] / dev[k], 1) for k in RESOURCES}


def to_markdown(fab: dict, pct: dict) -> str:
    t = fab["total"]
    lines = [
        "## Whole fabric (what the bitstream places)",
        "",
        "| part | LUT | BRAM18 | DSP | note |",
        "|---|---|---|---|---|",
    ]
    notes = {
        "layers": "FINN's estimate of the layers",
        "dwc_fifo": "FINN's estimate after the bitstream stage's FIFO/DWC insertion (depth 2)",
        "iodma": "FINN's estimate (FINN+ 1.6.1 has no IODMA resource model)",
        "shell": SHELL["source"],
    }
    for name, p in fab["parts"].items():
        lines.append(
            f"| {name} | {p['LUT']:,} | {p['BRAM_18K']} | {p['DSP']} | {notes.get(name, '')} |"
        )
    m = fab["margin"]
    fr = ", ".join(f"{k} {100 * v:.1f}%" for k, v in fab["margin_fraction"].items())
    lines += [
        f"| margin | {m['LUT']:,} | {m['BRAM_18K']} | {m['DSP']} | estimate error on FINN's parts "
        f"({fr}; calibration in the folding report) |",
        f"| **total** | {t['LUT']:,} ({pct['LUT']}%) | {t['BRAM_18K']} ({pct['BRAM_18K']}%) | "
        f"{t['DSP']} ({pct['DSP']}%) | |",
    ]
    return "\n".join(lines) + "\n"
