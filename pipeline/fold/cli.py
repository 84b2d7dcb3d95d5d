"""`maskbnn fold`: write the folding file that maximises FINN's estimated FPS within a budget.

The result is checked the way the build will use it: the file is applied to the hardware graph
with the build's own steps and FINN's estimate reports, and those numbers are printed (and must
agree with the optimizer's and stay within the budget, else it is a bug).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from maskbnn.config import BOARDS, load_network_config
from maskbnn.errors import UserError
from maskbnn.paths import BUILD_CONFIGS, BUILD_DIR, rel
from maskbnn.pipeline.fold import optimizer as fo

RECORDS = "folding_records.json"


def default_out(net: str, board: str) -> Path:
    return BUILD_CONFIGS / "folding" / f"{net}_{board}.json"


def fold(
    net: str,
    board: str,
    out: Path,
    clock_ns: float | None = None,
    lut_fraction: float | None = None,
    bram_fraction: float | None = None,
    target_fps: float | None = None,
    rebuild_graph: bool = False,
    max_simd: int | None = None,
    profile: str = "default",
) -> dict:
    """Optimise, write the folding file, re-estimate it through the build's steps; the record."""
    cfg = load_network_config(net)
    clock_ns = cfg.build.clock_ns if clock_ns is None else clock_ns
    graph = fo.hardware_graph(net, board, rebuild_graph)
    out = Path(out)
    try:
        result = fo.optimize(
            fo.load_graph(graph),
            net,
            board,
            clock_ns,
            lut_fraction,
            bram_fraction,
            target_fps,
            max_simd,
            profile,
        )
    except UserError as err:
        best = getattr(err, "result", None)
        if best is not None:  # keep the best folding found next to the requested file
            path = fo.write_folding(best, out.with_suffix(".best.json"))
            raise UserError(f"{err}\nthe best folding found is in {rel(path)}") from None
        raise
    fo.write_folding(result, out)
    est = fo.finn_estimates(graph, out, board, clock_ns, BUILD_DIR / "fold" / net / board / "check")
    t, fab = est["total"], est["fabric"]["total"]
    record = {
        **result.summary(),
        "folding": rel(out),
        "graph": rel(graph),
        "finn": {
            "fps": round(t["fps"], 1),
            "max_cycles": t["max_cycles"],
            "LUT": t["LUT"],
            "BRAM_18K": t["BRAM_18K"],
            "DSP": t["DSP"],
            "bottleneck": t["bottleneck"],
            "fabric": fab,
            "fabric_percent": est["fabric_percent"],
        },
    }
    # the budget bounds the whole fabric (profile "default") or the layers ("max")
    used = fab if result.fabric else {k: t[k] for k in ("LUT", "BRAM_18K", "DSP")}
    b = result.budget
    if used["LUT"] > b.lut or used["BRAM_18K"] > b.bram18 or used["DSP"] > b.dsp:
        raise RuntimeError(f"FINN's estimates of {out} exceed the budget: {record}")
    if out.resolve().parent == (BUILD_CONFIGS / "folding").resolve():
        update_records(out.parent, record)
    return record


def update_records(folder: Path, record: dict) -> Path:
    """Keep what each committed folding file reproduces (tests re-estimate and compare) in
    folding_records.json, and the same as a table in README.md."""
    path = folder / RECORDS
    rows = json.loads(path.read_text()) if path.is_file() else []
    rows = [r for r in rows if (r["network"], r["board"]) != (record["network"], record["board"])]
    rows = sorted([*rows, record], key=lambda r: (r["network"], r["board"]))
    path.write_text(json.dumps(rows, indent=2) + "\n")
    lines = [
        "# Folding files written by `maskbnn fold`",
        "",
        "FINN estimates of each file through the build's steps (100 MHz unless noted). Profile "
        "`default`: the whole fabric (layers, inserted FIFOs/width converters, shell, margin; "
        "`estimates.md` shows the parts) within 80% LUT / 90% BRAM / all DSPs of the xc7z020; "
        "`max`: the layers alone within 85% LUT / 95% BRAM. "
        "Regenerate: `maskbnn fold --network NET --board B [--profile max]`.",
        "",
        "| file | profile | FPS | max cycles | bottleneck | layers LUT | BRAM18 | DSP "
        "| whole fabric LUT / BRAM18 | next step blocked by |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        f = r["finn"]
        fab, pct = f.get("fabric"), f.get("fabric_percent")
        whole = (
            f"{fab['LUT']:,} ({pct['LUT']}%) / {fab['BRAM_18K']} ({pct['BRAM_18K']}%)"
            if fab
            else "–"
        )
        lines.append(
            f"| {Path(r['folding']).name} | {r.get('profile', 'max')} | {f['fps']:,.0f} | "
            f"{f['max_cycles']:,} | {f['bottleneck']} | {f['LUT']:,.0f} | {f['BRAM_18K']:,.0f} | "
            f"{f.get('DSP', 0):,.0f} | {whole} | {r['binding']} |"
        )
    (folder / "README.md").write_text("\n".join(lines) + "\n")
    return path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--net", "--network", dest="network", required=True, help="e.g. mask_1w1a")
    p.add_argument("--board", required=True, choices=sorted(BOARDS))
    p.add_argument("--clock-ns", type=float, help="clock period (default: the config's, 10 ns)")
    p.add_argument("--profile", choices=sorted(fo.PROFILES), default="default",
                   help="default: whole fabric <= 80%% LUT / 90%% BRAM; max: layers alone <= "
                   "85%% LUT / 95%% BRAM")  # fmt: skip
    p.add_argument("--lut-budget", type=float,
                   help="fraction of the device's LUTs (default: the profile's)")  # fmt: skip
    p.add_argument("--bram-budget", type=float,
                   help="fraction of the device's BRAM (default: the profile's)")  # fmt: skip
    p.add_argument("--target-fps", type=float, help="fail (exit 2) when this cannot be reached")
    p.add_argument("--out", type=Path, help="default build_configs/folding/<net>_<board>.json")
    p.add_argument("--max-simd", type=int, help="cap MVAU SIMD (default: legality rules only)")
    p.add_argument("--rebuild-graph", action="store_true", help="re-run FINN to specialize_layers")


def run(args: argparse.Namespace) -> int:
    out = args.out or default_out(args.network, args.board)
    rec = fold(args.network, args.board, out, args.clock_ns, args.lut_budget, args.bram_budget,
               args.target_fps, args.rebuild_graph, args.max_simd, args.profile)  # fmt: skip
    f, b = rec["finn"], rec["budget"]
    used = f["fabric"] if b["applies_to"] == "whole fabric" else f
    print(
        f"wrote {rec['folding']}: {f['fps']:,.0f} FPS at {1000 / rec['clock_ns']:.0f} MHz, "
        f"{b['applies_to']} LUT {used['LUT']:,.0f}/{b['LUT']:,}, BRAM18 {used['BRAM_18K']:,.0f}/"
        f"{b['BRAM_18K']}, DSP {used['DSP']:,.0f}/{b['DSP']}, bottleneck {f['bottleneck']}; "
        f"{rec['binding']} binds"
    )
    print(json.dumps(rec, indent=2))
    return 0
