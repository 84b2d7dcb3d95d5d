"""`maskbnn methods-table`: the training methods side by side, and which of them reach the FPGA.

One row per network of build_configs/tables/methods.yaml: method, dataset, accuracy on its test
split with epochs and training time (from the run's record: models/pretrained/<net>.json or
models/runs/<net>.json; a network without a record says so), BOPs / FLOPs / OPs (pipeline/
ops_count.py), and either FINN's estimated FPS and LUTs on the board (export + build run here, with
the shipped weights when there are some) or the reasons FINN cannot map it (pipeline/
deployability.py). The seeds' published figures follow, labelled by dataset.

Writes <out>/methods.md and <out>/methods.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from pydantic import StrictFloat, StrictStr
from pydantic.dataclasses import dataclass

from maskbnn.config import STRICT, load_network_config, load_yaml, parse
from maskbnn.paths import BUILD_CONFIGS, BUILD_DIR, REPO_ROOT
from maskbnn.pipeline.verify.deployability import reasons
from maskbnn.report import md_table

TABLE = BUILD_CONFIGS / "tables" / "methods.yaml"
RECORD_DIRS = (REPO_ROOT / "models" / "pretrained", REPO_ROOT / "models" / "runs")
DATASETS = {"maskedface": "MaskedFace-Net", "cifar10": "CIFAR-10", "mnist": "MNIST"}


@dataclass(frozen=True, config=STRICT)
class Row:
    network: StrictStr
    method: StrictStr


@dataclass(frozen=True, config=STRICT)
class Published:
    model: StrictStr
    method: StrictStr
    dataset: StrictStr
    top1: StrictFloat
    source: StrictStr


@dataclass(frozen=True, config=STRICT)
class TableSpec:
    rows: tuple[Row, ...] = ()
    published: tuple[Published, ...] = ()


def load_table(path: Path = TABLE) -> dict:
    """The table's YAML, checked against TableSpec (the mapping itself is what callers read)."""
    spec = load_yaml(path)
    parse(TableSpec, spec, str(path))
    return spec


def run_record(net: str) -> dict | None:
    """The training record of `net` (its shipped weights' JSON, else its results-only JSON)."""
    for folder in RECORD_DIRS:
        path = folder / f"{net}.json"
        if path.is_file():
            return json.loads(path.read_text()) | {"record": str(path.relative_to(REPO_ROOT))}
    return None


def finn_estimate(net: str, board: str, out: Path) -> dict:
    """Export + FINN build to estimates (shipped weights if any, else the initial weights: FINN's
    estimates depend on the shapes, bit widths and folding, not on the weight values)."""
    import torch

    from maskbnn.models.checkpoint import PRETRAINED_DIR, save_checkpoint
    from maskbnn.models.registry import get_network
    from maskbnn.pipeline.export.qonnx_export import export_checkpoint
    from maskbnn.pipeline.finn.build import run_build

    ckpt = PRETRAINED_DIR / f"{net}.tar"
    if not ckpt.is_file():
        torch.manual_seed(0)
        model, _ = get_network(net)
        ckpt = out / "initial_weights.tar"
        save_checkpoint(ckpt, {"state_dict": model.state_dict(), "network": net})
    exp = export_checkpoint(net, ckpt, out / "export")
    summary = run_build(net, exp.topk, board, out / board)
    est = json.loads((out / board / "estimates.json").read_text())
    return {
        "fps": summary["fps"],
        "LUT": est["total"]["LUT"],
        "BRAM_18K": est["total"]["BRAM_18K"],
        "weights": "shipped" if ckpt.parent == PRETRAINED_DIR else "initial",
    }


def collect(spec: dict, board: str, out: Path, estimates: bool = True) -> list[dict]:
    from maskbnn.pipeline.reports.ops_count import network_ops

    rows = []
    for row in spec["rows"]:
        net = row["network"]
        t0 = time.perf_counter()
        cfg = load_network_config(net)
        ops = network_ops(net)["totals"]
        rec = run_record(net)
        why = reasons(cfg)
        entry = {
            "network": net,
            "method": row["method"],
            "dataset": DATASETS.get(cfg.dataset, cfg.dataset),
            "width": cfg.model.width,
            "top1": rec and rec["test_top1"],
            "n_test": rec and rec["data"]["n_test"],
            "epochs": rec and rec["epochs"],
            "train_minutes": rec and round(rec["train_seconds"] / 60, 1),
            "record": rec and rec["record"],
            "BOPs": ops["bops"],
            "FLOPs": ops["flops"],
            "OPs": ops["ops"],
            "deployable": not why,
            "not_deployable_because": why,
        }
        if not why and estimates:
            entry["finn"] = finn_estimate(net, board, out / net)
        entry["seconds"] = round(time.perf_counter() - t0, 1)
        print(f"  {net:28s} {'deployable' if not why else 'not deployable':15s} "
              f"{entry['seconds']:6.1f} s", flush=True)  # fmt: skip
        rows.append(entry)
    return rows


def _e(x: float) -> str:
    return f"{x:.2e}"


def to_markdown(rows: list[dict], published: list[dict], board: str) -> str:
    lines = [
        "# Binary training methods: accuracy, operations, FINN deployability",
        "",
        f"Generated by `maskbnn methods-table` (board {board}). Accuracy: the last epoch's weights "
        "on the network's test split (MaskedFace-Net: the face-disjoint split of the 4,000-image "
        "sample), from the run record named in methods.json; CPU training, epochs and minutes as "
        "recorded. OPs = BOPs/64 + FLOPs (Bi-Real, Real-to-Binary, ReActNet).",
        "",
    ]
    header = ("network", "method", "dataset", "top-1 % (n)", "epochs / train min", "BOPs",
              "FLOPs", "OPs", f"FINN on {board}")  # fmt: skip
    cells = []
    for r in rows:
        acc = f"{r['top1']:.2f} ({r['n_test']})" if r["top1"] is not None else "no run recorded"
        budget = f"{r['epochs']} / {r['train_minutes']}" if r["epochs"] is not None else "-"
        if r["deployable"] and "finn" in r:
            f = r["finn"]
            finn = f"deployable: {f['fps']:,.0f} FPS est., {f['LUT']:,.0f} LUT"
        elif r["deployable"]:
            finn = "deployable (estimates not run)"
        else:
            finn = "no (reasons below)"
        cells.append((r["network"], r["method"], r["dataset"], acc, budget, _e(r["BOPs"]),
                      _e(r["FLOPs"]), _e(r["OPs"]), finn))  # fmt: skip
    lines += md_table(header, cells)
    refused = [r for r in rows if not r["deployable"]]
    if refused:
        lines += ["", "## Why FINN cannot carry the others (and what would)", ""]
        for r in refused:
            lines.append(f"- **{r['network']}**")
            lines += [f"  - {why}" for why in r["not_deployable_because"]]
    lines += [
        "",
        "## Published figures (the seeds), by dataset",
        "",
        "Full-width networks trained on the full datasets; not comparable one to one with the "
        "CPU-budget rows above (smaller widths, fewer images, fewer epochs).",
        "",
    ]
    lines += md_table(
        ("dataset", "model", "method", "top-1 %", "source"),
        (
            (p["dataset"], p["model"], p["method"], p["top1"], p["source"])
            for p in sorted(published, key=lambda p: p["dataset"])
        ),
    )
    return "\n".join(lines) + "\n"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--table", type=Path, default=TABLE, help="rows and published figures (YAML)")
    p.add_argument("--board", default="Pynq-Z1")
    p.add_argument("--out", type=Path, default=BUILD_DIR / "methods")
    p.add_argument(
        "--no-estimates", action="store_true", help="skip FINN builds of the deployable rows"
    )


def run(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(1)
    spec = load_table(args.table)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = collect(spec, args.board, args.out, estimates=not args.no_estimates)
    md = to_markdown(rows, spec.get("published", []), args.board)
    (args.out / "methods.md").write_text(md)
    (args.out / "methods.json").write_text(
        json.dumps(
            {"board": args.board, "rows": rows, "published": spec.get("published", [])}, indent=2
        )
        + "\n"  # fmt: skip
    )
    print(md)
    print(f"wrote {args.out / 'methods.md'} and methods.json")
    return 0
