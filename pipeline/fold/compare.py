"""Comparison report: our folding vs FINN's target_fps folding vs published foldings, per width.

For each network: FPS / LUT / BRAM18 from FINN's estimates of
(a) our committed folding file (through the build's steps, as `make estimate` reports it);
(b) FINN's SetFolding (what `target_fps` does), at the highest target whose result fits the same
    budget (binary search over the target);
(c) the published foldings (finn-examples cnv-w1a1, BinaryCoP CNV; numbers in
    ../shared/notes/finn-offline.md) where their PE/SIMD are legal for the network, on its graph
    with the first conv as FINN's HLS MVAU, as those designs were built;
plus the per-layer board bound and a Pareto plot of accuracy vs FPS vs LUT across widths.
Writes ``build/fold-report/{fold_report.md,fold_report.json,pareto.png}``.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import logging
import math
from pathlib import Path

from maskbnn.config import BOARDS, FoldingTable, load_folding_table
from maskbnn.paths import BUILD_DIR, REPO_ROOT
from maskbnn.pipeline.finn.hwgraph import base_op
from maskbnn.pipeline.fold import calibration
from maskbnn.pipeline.fold import optimizer as fo
from maskbnn.pipeline.fold.cli import default_out
from maskbnn.pipeline.fold.folding import folding_problems


@functools.cache
def _table() -> FoldingTable:
    """build_configs/tables/folding.yaml: networks, FINN targets, published foldings."""
    return load_folding_table()


def _totals(model, part: str, clock_ns: float) -> dict:
    """FINN's analyses on a folded graph: summed node estimates and the slowest node."""
    from finn.analysis.fpgadataflow.exp_cycles_per_layer import exp_cycles_per_layer
    from finn.analysis.fpgadataflow.res_estimation import res_estimation

    res = model.analysis(lambda m: res_estimation(m, part))
    cyc = model.analysis(exp_cycles_per_layer)
    worst = max(cyc, key=cyc.get)
    return {
        "fps": round(1e9 / clock_ns / cyc[worst], 1),
        "max_cycles": int(cyc[worst]),
        "bottleneck": worst,
        "LUT": int(sum(r["LUT"] for r in res.values())),
        "BRAM_18K": int(sum(r["BRAM_18K"] for r in res.values())),
    }


def finn_target_fps(graph, part: str, clock_ns: float, budget: fo.Budget) -> dict:
    """FINN's SetFolding at the highest cycle target whose folding fits the budget."""
    from finn.transformation.fpgadataflow.set_folding import SetFolding
    from finn.util.logging import log

    def run(target: int) -> tuple[dict, object]:
        m = copy.deepcopy(graph).transform(SetFolding(target, two_pass_relaxation=True))
        return _totals(m, part, clock_ns), m

    quiet = log.level
    log.setLevel(logging.ERROR)  # SetFolding warns for every layer that misses each probe target
    try:
        return _search_target(run, budget)
    finally:
        log.setLevel(quiet)


def _search_target(run, budget: fo.Budget) -> dict:
    lo, hi = 1, 1 << 20  # cycles per frame: lo never fits, hi is fully folded
    best, model = run(hi)
    if best["LUT"] > budget.lut or best["BRAM_18K"] > budget.bram18:
        return {**best, "target_cycles": hi, "fits": False}
    best["target_cycles"] = hi
    while hi - lo > max(1, hi // 200):  # 0.5 % resolution is plenty for a baseline
        mid = (lo + hi) // 2
        t, m = run(mid)
        if t["LUT"] <= budget.lut and t["BRAM_18K"] <= budget.bram18:
            best, model, hi = {**t, "target_cycles": mid}, m, mid
        else:
            lo = mid
    best["fits"] = True
    # SetFolding folds each layer on its own: is the result legal by the build's rules?
    best["problems"] = folding_problems(model, _folding_of(model))
    return best


def _folding_of(model) -> dict:
    from qonnx.custom_op.registry import getCustomOp

    out = {}
    for node in model.graph.node:
        inst = getCustomOp(node)
        attrs = {}
        for a in ("PE", "SIMD", "parallel_window"):
            try:
                attrs[a] = int(inst.get_nodeattr(a))
            except Exception:  # the layer has no such attribute
                continue
        if attrs:
            out[node.name] = attrs
    return out


def published_folding(graph, name: str, units: list[fo.Unit], part: str) -> tuple[dict | None, str]:
    """A folding file from a published PE/SIMD list, or None and why it is illegal here."""
    from qonnx.custom_op.registry import getCustomOp

    spec = _table().published[name]
    mvaus = [n for n in graph.graph.node if base_op(n.op_type) == "MVAU"]
    if len(mvaus) != len(spec.PE):
        return None, f"{len(mvaus)} MVAUs here, {len(spec.PE)} in the published design"
    folding: dict = {"Defaults": {}}
    notes = []
    for i, (node, pe, simd) in enumerate(zip(mvaus, spec.PE, spec.SIMD, strict=True)):
        inst = getCustomOp(node)
        mh, mw = int(inst.get_nodeattr("MH")), int(inst.get_nodeattr("MW"))
        if i == len(mvaus) - 1 and mh % pe:  # the class layer: the published PE is per class
            pe = max(d for d in fo.divisors(mh) if d <= pe)
            notes.append(f"last PE -> {pe} for {mh} classes")
        if mh % pe or mw % simd:
            return None, f"{node.name}: PE {pe} / SIMD {simd} do not divide MH {mh} / MW {mw}"
        # LUT multipliers as published, where the layer has that choice (FINN's RTL MVAU has not)
        res_type = fo._res_types(node, inst)[0]
        folding[node.name] = {"PE": pe, "SIMD": simd, "ram_style": "block",
                              "mem_mode": "internal_decoupled", "resType": res_type}  # fmt: skip
        swg = fo._swg_of(graph, node)
        if swg is not None:
            ch = int(getCustomOp(swg).get_nodeattr("IFMChannels"))
            style = getCustomOp(swg).get_nodeattr("ram_style")
            folding[swg.name] = {"SIMD": math.gcd(ch, simd), "parallel_window": 0,
                                 "ram_style": style}  # fmt: skip
    # Layers the published FINN versions did not have as separate foldable nodes (Pool after an
    # SWG, input thresholds, label select): the cheapest folding that is not the bottleneck.
    cycles = 0
    work = copy.deepcopy(graph)
    for unit in units:
        if unit.name in folding:
            cycles = max(cycles, fo._price(work, {k: folding[k] for k in unit.nodes}, part).cycles)
    for unit in units:
        if unit.name in folding or not unit.options[0].attrs:
            continue
        ok = [o for o in unit.options if o.cycles <= cycles] or [
            min(unit.options, key=lambda o: o.cycles)
        ]
        folding.update(min(ok, key=lambda o: (o.lut, o.bram)).attrs)
    return folding, "; ".join(notes)


def compare(net: str, board: str, out: Path) -> dict:
    """Every folding at the same budget for the layers: what the default profile's whole-fabric
    budget leaves them once the inserted FIFOs/DWCs, the shell and the margin are taken."""
    cfg_clock = 10.0
    part = BOARDS[board]
    graph_path = fo.hardware_graph(net, board)
    graph = fo.load_graph(graph_path)
    res = fo.optimize(graph, net, board)
    budget, units = res.layer_budget, res.units
    row: dict = {"network": net, "board": board, "budget": vars(budget),
                 "whole_budget": vars(res.budget), "binding": res.binding,
                 "explain": fo.explain(res)}  # fmt: skip
    ours_file = default_out(net, board)
    if ours_file.is_file():
        est = fo.finn_estimates(graph_path, ours_file, board, cfg_clock, out / net / "ours")
        row["ours"] = {k: est["total"][k] for k in ("fps", "max_cycles", "bottleneck", "LUT",
                                                      "BRAM_18K", "DSP")}  # fmt: skip
        row["ours"]["file"] = str(ours_file.relative_to(REPO_ROOT))
        row["ours"]["fabric"] = est["fabric"]["total"]
        row["ours"]["fabric_percent"] = est["fabric_percent"]
    row["finn_target_fps"] = finn_target_fps(graph, part, cfg_clock, budget)
    row["published"] = {}
    # published designs had the first conv as FINN's HLS MVAU (as the calibration pairs)
    pub_path = fo.hardware_graph(net, board, rtl_mvau=False)
    pub_graph = graph if pub_path == graph_path else fo.load_graph(pub_path)
    pub_units = units if pub_graph is graph else fo.build_units(pub_graph, part)
    for name in _table().published:
        folding, note = published_folding(pub_graph, name, pub_units, part)
        if folding is None:
            row["published"][name] = {"legal": False, "why": note}
            continue
        path = out / net / f"{name.split()[0]}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(folding, indent=2) + "\n")
        est = fo.finn_estimates(pub_path, path, board, cfg_clock, out / net / name.split()[0])
        t = est["total"]
        row["published"][name] = {"legal": True, "note": note, "fps": t["fps"],
                                  "LUT": t["LUT"], "BRAM_18K": t["BRAM_18K"],
                                  "bottleneck": t["bottleneck"]}  # fmt: skip
    bound = fo.board_bound(units, budget, cfg_clock)
    row["bound"] = {k: bound[k] for k in ("bound_fps", "bound_unit", "bound_cycles")}
    front = fo.fully_folded_front(units)
    row["fully_folded"] = [{"LUT": lu, "BRAM_18K": b} for lu, b in sorted({front[-1], front[0]})]
    row["accuracy"] = accuracy(net)
    row["target_fps"] = _table().target_fps.get(net)
    if row["target_fps"] and res.fps < row["target_fps"]:
        row["target_need"] = fo.target_need(graph, res, row["target_fps"])
    return row


def accuracy(net: str) -> float | None:
    path = REPO_ROOT / "models" / "pretrained" / f"{net}.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get("test_top1")


def to_markdown(rows: list[dict]) -> str:
    lines = [
        "# Folding comparison (FINN estimates, 100 MHz, xc7z020)",
        "",
        "Budget per network: what the default profile (whole fabric <= 80% LUT / 90% BRAM) "
        "leaves the layers after the inserted FIFOs/width converters, the shell and the margin "
        "(*layer budget* column); every folding below is held to it. "
        "FPS / LUT / BRAM18 per folding; *bound* = the slowest layer when each layer alone may "
        "use the whole budget left by the others at their cheapest. *FINN target_fps*: FINN's "
        "SetFolding as the build runs it (mvau_wwidth_max 36, two-pass relaxation) at the "
        "highest target whose folding fits the budget. Published foldings: MVAU PE/SIMD as "
        "published, window generators at the largest SIMD their MVAU accepts, pools and "
        "other layers at the cheapest folding that is not the bottleneck.",
        "",
        "| network | board | layer budget LUT / BRAM18 | target | ours FPS | LUT | BRAM18 | DSP "
        "| whole fabric LUT % | binds | FINN target_fps FPS | LUT | BRAM18 | finn-examples FPS "
        "| LUT | BRAM18 | BinaryCoP FPS | LUT | BRAM18 | bound FPS | top-1 % |",
        "|" + "---|" * 21,
    ]
    for r in rows:
        o = r.get("ours", {})
        f = r["finn_target_fps"]
        b = r["budget"]
        cells = [r["network"], r["board"], f"{b['lut']:,} / {b['bram18']}",
                 f"{r['target_fps']:,}" if r["target_fps"] else "–"]  # fmt: skip
        cells += [f"{o['fps']:,.0f}", f"{o['LUT']:,.0f}", f"{o['BRAM_18K']:,.0f}",
                  f"{o['DSP']:,.0f}", f"{o['fabric_percent']['LUT']}",
                  r.get("binding", "")] if o else ["–"] * 6  # fmt: skip
        legal = "" if not f.get("problems") else " (illegal)"
        cells += [f"{f['fps']:,.0f}{legal}", f"{f['LUT']:,}", f"{f['BRAM_18K']}"]
        for name in _table().published:
            p = r["published"][name]
            if p["legal"]:
                cells += [f"{p['fps']:,.0f}", f"{p['LUT']:,.0f}", f"{p['BRAM_18K']:,.0f}"]
            else:
                cells += ["illegal", "", ""]
        acc = r["accuracy"]
        cells += [f"{r['bound']['bound_fps']:,.0f}", f"{acc:.1f}" if acc is not None else "–"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Notes:"]
    for r in rows:
        for name, p in r["published"].items():
            if not p["legal"]:
                lines.append(f"- {r['network']}: {name} folding is illegal here: {p['why']}")
            elif p.get("note"):
                lines.append(f"- {r['network']}: {name} adapted: {p['note']}")
        if r["finn_target_fps"].get("problems"):
            lines.append(
                f"- {r['network']}: FINN's target_fps folding breaks the build's rules: "
                + "; ".join(r["finn_target_fps"]["problems"])
            )
        if "ours" in r and r["target_fps"]:
            if r["ours"]["fps"] >= r["target_fps"]:
                why = "met"
            elif "target_need" in r:
                why = f"not met: {fo.need_text(r['target_need'], r['target_fps'])}"
            else:
                why = f"not met: {r.get('explain', '')}"
            lines.append(f"- {r['network']} ({r['board']}): target {r['target_fps']:,} FPS {why}.")
        if "ours" in r:
            lines.append(
                f"- {r['network']} ({r['board']}): ours is limited by {r['ours']['bottleneck']}; "
                f"{r.get('explain', '')}; fully folded it needs "
                + " or ".join(
                    f"{m['LUT']:,} LUT + {m['BRAM_18K']} BRAM18" for m in r["fully_folded"]
                )
                + "."
            )
    return "\n".join(lines) + "\n\n" + calibration.to_markdown(calibration.table())


WIDTH_LABEL = {"mask_1w1a": "1x", "mask_1w1a_0.5": "0.5x", "mask_1w1a_0.25": "0.25x"}


def pareto_plot(rows: list[dict], path: Path) -> Path:
    """Left: estimated FPS vs LUT per width and folding. Right: accuracy (shipped weights) vs
    FPS, colour = LUT; widths without shipped weights are named in the panel instead."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r["network"] in WIDTH_LABEL and "ours" in r]
    rows = list({r["network"]: r for r in rows}.values())  # one board per width (same part)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.5))
    styles = {"ours": ("o", "tab:green"), "FINN target_fps": ("s", "tab:blue"),
              "finn-examples cnv-w1a1": ("^", "tab:red")}  # fmt: skip
    for r in rows:
        pts = {"ours": r["ours"], "FINN target_fps": r["finn_target_fps"]}
        pub = r["published"]["finn-examples cnv-w1a1"]
        if pub["legal"]:
            pts["finn-examples cnv-w1a1"] = pub
        for name, d in pts.items():
            marker, colour = styles[name]
            a.scatter(d["LUT"], d["fps"], marker=marker, color=colour, s=60,
                      label=name if r is rows[0] else None)  # fmt: skip
            a.annotate(WIDTH_LABEL[r["network"]], (d["LUT"], d["fps"]), fontsize=8,
                       xytext=(4, 3), textcoords="offset points")  # fmt: skip
    budget = rows[0]["budget"]["lut"]
    a.axvline(budget, color="grey", lw=0.8, ls="--", label=f"layers' LUT budget ({budget:,})")
    a.set_yscale("log")
    a.set_xlabel("LUT (FINN estimate)")
    a.set_ylabel("estimated FPS at 100 MHz")
    a.set_title("Throughput vs LUT per width")
    a.legend(fontsize=7)
    with_acc = [r for r in rows if r["accuracy"] is not None]
    if with_acc:
        sc = b.scatter([r["ours"]["fps"] for r in with_acc], [r["accuracy"] for r in with_acc],
                       c=[r["ours"]["LUT"] for r in with_acc], cmap="viridis", vmin=0,
                       vmax=53200, s=90)  # fmt: skip
        for r in with_acc:
            b.annotate(f"{WIDTH_LABEL[r['network']]} ({r['ours']['LUT']:,.0f} LUT)",
                       (r["ours"]["fps"], r["accuracy"]), fontsize=8, xytext=(5, 4),
                       textcoords="offset points")  # fmt: skip
        fig.colorbar(sc, ax=b, label="LUT (ours)")
    missing = [WIDTH_LABEL[r["network"]] for r in rows if r["accuracy"] is None]
    if missing:
        b.text(0.02, 0.03, "no shipped weights (accuracy unknown): " + ", ".join(missing),
               transform=b.transAxes, fontsize=8)  # fmt: skip
    b.set_xscale("log")
    b.set_xlabel("estimated FPS at 100 MHz (our folding)")
    b.set_ylabel("test top-1 % (models/pretrained/<net>.json)")
    b.set_title("Accuracy vs FPS vs LUT")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--nets", nargs="+", help="default: build_configs/tables/folding.yaml's networks"
    )
    p.add_argument("--boards", nargs="+", default=["Pynq-Z1"], choices=sorted(BOARDS))
    p.add_argument("--out", type=Path, default=BUILD_DIR / "fold-report")


def run(args: argparse.Namespace) -> int:
    rows = []
    for net in args.nets or _table().networks:
        for board in args.boards:
            print(f"== {net} on {board}", flush=True)
            rows.append(compare(net, board, args.out))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fold_report.json").write_text(json.dumps(rows, indent=2, default=str) + "\n")
    md = to_markdown(rows)
    (args.out / "fold_report.md").write_text(md + "\n![pareto](pareto.png)\n")
    pareto_plot(rows, args.out / "pareto.png")
    print(md)
    return 0
