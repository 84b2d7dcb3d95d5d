"""FINN's analytical estimates, per layer and in total, as JSON, Markdown and a plot.

Reads the reports FINN's ``step_generate_estimate_reports`` writes (cycles and resources per layer,
network performance) and the applied folding, so one file says what each layer costs and why.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from maskbnn.config import BOARDS, load_network_sets
from maskbnn.paths import BUILD_DIR
from maskbnn.pipeline.builddir import BuildDir
from maskbnn.pipeline.finn.fabric import fabric, percent
from maskbnn.pipeline.finn.fabric import to_markdown as fabric_markdown

RESOURCES = ("LUT", "BRAM_18K", "URAM", "DSP")
XC7Z020 = {"LUT": 53200, "BRAM_18K": 280, "DSP": 220, "URAM": 0}


def collect(report_dir: Path, model_path: Path, clock_ns: float, board: str, net: str) -> dict:
    """One dict with per-layer and total estimates from FINN's report folder."""
    from qonnx.custom_op.registry import getCustomOp

    from maskbnn.pipeline.finn.hwgraph import load_dataflow_model

    cycles = json.loads((report_dir / "estimate_layer_cycles.json").read_text())
    res = json.loads((report_dir / "estimate_layer_resources.json").read_text())
    perf = json.loads((report_dir / "estimate_network_performance.json").read_text())
    model = load_dataflow_model(model_path)
    layers = []
    for node in model.graph.node:
        inst = getCustomOp(node)
        fold = {}
        for attr in ("PE", "SIMD"):
            try:
                fold[attr] = int(inst.get_nodeattr(attr))
            except Exception:  # the layer has no such attribute
                pass
        r = res.get(node.name, {})
        layers.append(
            {
                "name": node.name,
                "op_type": node.op_type,
                **fold,
                "cycles": int(cycles.get(node.name, 0)),
                **{k: float(r.get(k, 0)) for k in RESOURCES},
            }
        )
    total = res.get("total", {})
    max_cycles = int(perf["max_cycles"])
    fab = fabric(total, model, board, BOARDS[board])
    return {
        "network": net,
        "board": board,
        "part": BOARDS[board],
        "clock_ns": clock_ns,
        "layers": layers,
        "total": {
            **{k: float(total.get(k, 0)) for k in RESOURCES},
            "max_cycles": max_cycles,
            "bottleneck": perf.get("max_cycles_node_name"),
            "critical_path_cycles": int(perf["critical_path_cycles"]),
            "fps": 1e9 / clock_ns / max_cycles,
            "latency_us": int(perf["critical_path_cycles"]) * clock_ns / 1000.0,
        },
        "utilisation_percent": {
            k: round(100.0 * float(total.get(k, 0)) / XC7Z020[k], 1)
            for k in ("LUT", "BRAM_18K", "DSP")
        },
        "fabric": fab,
        "fabric_percent": percent(fab["total"], BOARDS[board]),
    }


def to_markdown(est: dict) -> str:
    t = est["total"]
    lines = [
        f"# Estimates: {est['network']} on {est['board']} ({est['part']}, "
        f"{1000 / est['clock_ns']:.0f} MHz)",
        "",
        f"**{t['fps']:,.0f} FPS**, latency {t['latency_us']:.1f} us, bottleneck "
        f"{t['bottleneck']} ({t['max_cycles']:,} cycles); layers LUT {t['LUT']:,.0f} "
        f"({est['utilisation_percent']['LUT']}%), BRAM18 {t['BRAM_18K']:,.0f} "
        f"({est['utilisation_percent']['BRAM_18K']}%), DSP {t['DSP']:,.0f}"
        + (
            f"; whole fabric LUT {est['fabric_percent']['LUT']}%, BRAM "
            f"{est['fabric_percent']['BRAM_18K']}% (below)."
            if "fabric_percent" in est
            else "."
        ),
        "",
        "| layer | PE | SIMD | cycles | LUT | BRAM18 | DSP |",
        "|---|---|---|---|---|---|---|",
    ]
    for L in est["layers"]:
        lines.append(
            f"| {L['name']} | {L.get('PE', '')} | {L.get('SIMD', '')} | {L['cycles']:,} | "
            f"{L['LUT']:,.0f} | {L['BRAM_18K']:,.0f} | {L['DSP']:,.0f} |"
        )
    lines.append(
        f"| **total** | | | {t['max_cycles']:,} (max) | {t['LUT']:,.0f} | "
        f"{t['BRAM_18K']:,.0f} | {t['DSP']:,.0f} |"
    )
    if "fabric" in est:
        lines += ["", fabric_markdown(est["fabric"], est["fabric_percent"])]
    return "\n".join(lines) + "\n"


def plot(est: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [L["name"].replace("ConvolutionInputGenerator", "SWG") for L in est["layers"]]
    fig, (a, b) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    a.bar(names, [L["cycles"] for L in est["layers"]], color="tab:blue")
    a.axhline(est["total"]["max_cycles"], color="tab:red", lw=0.8)
    a.set_ylabel("cycles / frame")
    a.set_title(
        f"{est['network']} on {est['board']}: {est['total']['fps']:,.0f} FPS at "
        f"{1000 / est['clock_ns']:.0f} MHz"
    )
    b.bar(names, [L["LUT"] for L in est["layers"]], color="tab:green")
    b.set_ylabel("LUT")
    b.tick_params(axis="x", rotation=90, labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_estimates(est: dict, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {suffix: BuildDir(out_dir).estimates(suffix) for suffix in ("json", "md", "png")}
    paths["json"].write_text(json.dumps(est, indent=2) + "\n")
    paths["md"].write_text(to_markdown(est))
    plot(est, paths["png"])
    return paths


def summary_table(estimates: list[dict]) -> str:
    """One row per (network, board), for the README and the closing note."""
    lines = [
        "| network | board | FPS | latency (us) | bottleneck | LUT | BRAM18 | DSP "
        "| whole fabric LUT % / BRAM % |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for e in estimates:
        t, pct = e["total"], e.get("fabric_percent")
        whole = f"{pct['LUT']} / {pct['BRAM_18K']}" if pct else "–"
        lines.append(
            f"| {e['network']} | {e['board']} | {t['fps']:,.0f} | {t['latency_us']:.1f} | "
            f"{t['bottleneck']} | {t['LUT']:,.0f} | {t['BRAM_18K']:,.0f} | {t['DSP']:,.0f} | "
            f"{whole} |"
        )
    return "\n".join(lines) + "\n"


# --- CLI: estimates for several networks and boards, one table -------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    nets = load_network_sets().estimates
    p.add_argument("--nets", nargs="+", default=nets, help=f"networks (default: {' '.join(nets)})")
    p.add_argument("--boards", nargs="+", default=sorted(BOARDS), choices=sorted(BOARDS))
    p.add_argument("--rebuild", action="store_true", help="build even when estimates exist")
    p.add_argument("--out", type=Path, default=BUILD_DIR / "estimates")


def run(args: argparse.Namespace) -> int:
    """Build (FINN steps up to the estimate reports) what is missing, then tabulate."""
    from maskbnn.pipeline.finn.build import latest_export, run_build

    rows = []
    for net in args.nets:
        for board in args.boards:
            path = BuildDir.of(net, board).estimates("json")
            export = latest_export(net)
            if args.rebuild or not path.is_file() or path.stat().st_mtime < export.stat().st_mtime:
                print(f"== building {net} for {board}", flush=True)
                run_build(net, export, board)
            rows.append(json.loads(path.read_text()))
    args.out.mkdir(parents=True, exist_ok=True)
    table = summary_table(rows)
    (args.out / "summary.md").write_text(
        "# FINN estimates (analytical, before synthesis)\n\n" + table
    )
    (args.out / "summary.json").write_text(
        json.dumps(
            [
                {
                    k: r[k]
                    for k in (
                        "network",
                        "board",
                        "part",
                        "clock_ns",
                        "total",
                        "utilisation_percent",
                        "fabric_percent",
                    )
                    if k in r
                }
                for r in rows
            ],
            indent=2,
        )
        + "\n"
    )
    print(table)
    return 0
