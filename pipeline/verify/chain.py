"""Golden verification: every stage computes exactly what the Brevitas model computes.

Chain, on >= 1,000 real MaskedFace-Net images plus worst-case inputs:

    Brevitas (torch)  ->  QONNX (qonnx execution)  ->  FINN-ONNX  ->  streamlined
                      ->  hardware graph, FINN's own Python execution (a subset: it is slow)
                      ->  hardware graph, our bit-exact executor (all images)

Compared: top-1 always, exactly; the last layer's integer XNOR popcount wherever the representation
has it (Brevitas' +-1 dot product d maps to popcount (d + MW) / 2); float logits to 1e-4 where the
stage holds floats; every layer's output between FINN's execution and ours. Static checks: every
accumulator and output type holds the range its layer can reach (FINN+ 1.6.1 gets this wrong for
XNOR layers), and inner layers are driven to their extremes (input = a weight column, its
complement, all ones, all zeros) in hardware semantics vs. unbounded integers.

Any mismatch: the reports (``verification.json`` / ``.md`` beside the build) name the stage, the
images and the first differing values, and the command exits with VerificationError (code 3).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from maskbnn.config import BOARDS, load_network_config
from maskbnn.errors import UserError, VerificationError
from maskbnn.outputs import folder_lock, remove, write_atomic, write_json
from maskbnn.paths import REPO_ROOT, rel
from maskbnn.pipeline.builddir import BuildDir
from maskbnn.pipeline.data.datasets import load_dataset
from maskbnn.pipeline.export.qonnx_export import load_model, weights_hash
from maskbnn.pipeline.finn import env as finn_env  # noqa: F401  (FINN's environment before importing it)
from maskbnn.pipeline.finn.hwgraph import HardwareProgram, read_program, run_mvau
from maskbnn.pipeline.verify.stages import (
    brevitas_outputs,
    dtype_range_problems,
    finn_hw_trace,
    onnx_stage,
    worst_case_images,
    worst_case_layer_problems,
)
from maskbnn.report import md_table

LOGIT_ATOL = 1e-4


@dataclass
class Stage:
    name: str
    compared: str
    images: int
    passed: bool
    mismatches: int = 0
    first: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    note: str = ""


def compare(
    name: str, compared: str, ref: np.ndarray, got: np.ndarray, names: list[str], atol: float = 0.0
) -> Stage:
    """Exact (or atol) equality per image; the first differing images and values are kept."""
    ref = np.asarray(ref).reshape(len(names), -1)
    got = np.asarray(got).reshape(len(names), -1)
    if ref.shape != got.shape:
        return Stage(name, compared, len(names), False, len(names),
                     [{"error": f"shape {got.shape} != reference {ref.shape}"}])  # fmt: skip
    diff = np.abs(ref.astype(np.float64) - got.astype(np.float64)) > atol
    bad = np.flatnonzero(diff.any(axis=1))
    first = []
    for i in bad[:5]:
        j = np.flatnonzero(diff[i])
        first.append(
            {
                "image": names[i],
                "positions": j[:8].tolist(),
                "expected": ref[i, j[:8]].tolist(),
                "got": got[i, j[:8]].tolist(),
            }
        )
    return Stage(name, compared, len(names), len(bad) == 0, int(len(bad)), first)


def load_images(net: str, n: int, data: Path | None = None, split: str | None = None):
    cfg = load_network_config(net)
    v = cfg.build.verify
    folder = Path(data) if data else REPO_ROOT / v.data
    ds = load_dataset(cfg.dataset, folder, split or v.split, cfg.model.image_size)
    if len(ds) == 0:
        raise UserError(f"no images in {folder} ({split or v.split} split)")
    n = min(n, len(ds))
    names = list(ds.names[:n]) if ds.names else [f"{folder.name}[{i}]" for i in range(n)]
    return ds.x[:n], names, rel(folder)


def verify(
    net: str,
    board: str | None = None,
    checkpoint: Path | None = None,
    n_images: int | None = None,
    finn_images: int | None = None,
    data: Path | None = None,
    split: str | None = None,
    build: Path | None = None,
    streamlined_images: int | None = None,
) -> dict:
    """Run the chain on a finished build; writes the reports and raises on any mismatch."""

    t_all = time.perf_counter()
    cfg = load_network_config(net)
    board = board or cfg.build.board
    if board not in BOARDS:
        raise UserError(f"unknown board {board!r}; choose one of {', '.join(BOARDS)}")
    out = BuildDir.at(build, net, board).root
    # A build running on this folder finishes first; Make's stamp goes until this one passes.
    with folder_lock(out, f"maskbnn verify --net {net} --board {board}", create=False):
        remove(BuildDir(out).verified_stamp)
        return _verify(cfg, board, out, t_all, checkpoint, n_images, finn_images, data, split,
                       streamlined_images)  # fmt: skip


class StageLog:
    """The stages in order, each timed from the end of the previous one and printed as it ends."""

    def __init__(self) -> None:
        self.stages: list[Stage] = []
        self.clock = time.perf_counter()

    def restart(self) -> float:
        self.clock = time.perf_counter()
        return self.clock

    def run(self, fn, *a, **k) -> Stage:
        """Run a stage (a function returning a Stage); its seconds include the work since the
        previous stage ended."""
        st = fn(*a, **k)
        now = time.perf_counter()
        st.seconds = round(now - self.clock, 2)
        self.clock = now
        return self.add(st, f"{st.images:5d} images {st.seconds:6.1f} s  {st.compared}")

    def add(self, st: Stage, line: str) -> Stage:
        self.stages.append(st)
        print(f"  {'ok  ' if st.passed else 'FAIL'} {st.name:34s} {line}", flush=True)
        return st


def _verify(cfg, board: str, out: Path, t_all: float, checkpoint, n_images, finn_images, data,
            split, streamlined_images) -> dict:  # fmt: skip
    net = cfg.name
    bd = BuildDir(out)
    summary_path = bd.summary
    if not summary_path.is_file():
        raise UserError(f"no build in {out}: run `maskbnn build --net {net} --board {board}` first")
    summary = json.loads(summary_path.read_text())
    n_images = n_images or cfg.build.verify.images
    finn_images = cfg.build.verify.finn_images if finn_images is None else finn_images
    x_real, names_real, source = load_images(net, n_images, data, split)
    x_worst, names_worst = worst_case_images(x_real.shape[1:])
    x = np.concatenate([x_real, x_worst])
    names = names_real + names_worst
    log = StageLog()
    model = load_model(net, checkpoint)
    ref, float32_differs = _reference(model, net, board, summary, out, x, names)

    topk_onnx = REPO_ROOT / summary["input"]  # absolute paths stay absolute under `/`
    log.restart()
    _onnx_stages(log, topk_onnx, bd.intermediate, x, names, ref)
    # streamlined: TopK's input is the last XNOR popcount itself. FINN executes this graph
    # image by image (0.1-0.5 s each), so a config may limit it to a subset plus the worst cases.
    n_s = streamlined_images or cfg.build.verify.streamlined_images or len(x_real)
    ss = _with_worst_cases(min(n_s, len(x_real)), len(x_real), len(x_worst))
    _streamlined_stages(log, bd.intermediate_model("streamline"), x, names, ref, ss)

    # hardware graph: the program is read again from the ONNX, so a stale program cannot pass
    hw_model = out / summary["hw_model"]
    program = read_program(hw_model)
    sub = _with_worst_cases(min(finn_images, len(x_real)), len(x_real), len(x_worst))
    _finn_hw_stages(log, program, hw_model, x, names, ref, sub)
    t_hw = _hwexec_stages(
        log, program, HardwareProgram.load(out / summary["program"]), x, names, ref
    )
    _static_stages(log, program)

    stages = log.stages
    passed = all(s.passed for s in stages)
    report = {
        "network": net,
        "board": board,
        "passed": passed,
        "images": {
            "real": len(x_real),
            "source": source,
            "worst_case": len(x_worst),
            "finn_execution_subset": len(sub),
            "streamlined_subset": len(ss),
        },  # fmt: skip
        "hw_model": rel(hw_model),
        "brevitas_accuracy_percent": _accuracy(ref["top1"][: len(x_real)], names_real),
        # images where float32 Brevitas rounds a value across a quantiser step (not a failure:
        # the reference is the float64 run, which every stage must match)
        "brevitas_float32_differs": float32_differs,
        "hwexec_images_per_second": round(len(x) / t_hw, 1),
        "stages": [s.__dict__ for s in stages],
        "seconds": round(time.perf_counter() - t_all, 1),
    }
    write_atomic(bd.verification_md, to_markdown(report))
    write_json(bd.verification_json, report, default=_json)
    if not passed:
        failed = [s for s in stages if not s.passed]
        s = failed[0]
        detail = json.dumps(s.first[:2], default=_json)
        raise VerificationError(
            f"{net} on {board}: {len(failed)} verification stage(s) failed, first "
            f"{s.name} ({s.compared}) on {s.mismatches} of {s.images}: {detail}; "
            f"report: {rel(out / 'verification.md')}"
        )
    return report


def _with_worst_cases(n: int, n_real: int, n_worst: int) -> np.ndarray:
    """Indices of the first n real images and of every worst-case input after them."""
    return np.r_[np.arange(n), n_real + np.arange(n_worst)]


def _reference(model, net: str, board: str, summary: dict, out: Path, x, names: list[str]):
    """Brevitas in float64 (the reference every stage must match), after checking the build was
    made from these weights; and the images where float32 Brevitas rounds differently."""
    t0 = time.perf_counter()
    digest = weights_hash(model)
    if f"_{digest}" not in Path(summary["input"]).name:
        raise UserError(
            f"the build in {rel(out)} was made from {Path(summary['input']).name}, not from these "
            f"weights ({digest}): export and build them first (`make verify NET={net} BOARD={board}` does)"
        )
    ref = brevitas_outputs(model, x)  # in float64: see brevitas_outputs
    f32 = brevitas_outputs(model, x, exact=False)
    float32_differs = [
        names[i] for i in np.flatnonzero((f32["popcount"] != ref["popcount"]).any(1))
    ]
    print(f"  ref  brevitas (float64)                 {len(x):5d} images "
          f"{time.perf_counter() - t0:6.1f} s; float32 differs on {len(float32_differs)}"
          f"{': ' + ', '.join(float32_differs[:5]) if float32_differs else ''}", flush=True)  # fmt: skip
    return ref, float32_differs


def _onnx_stages(log: StageLog, topk_onnx: Path, inter: Path, x, names, ref) -> None:
    """QONNX (logits variant): float logits and top-1; FINN-ONNX after conversion and tidy-up
    (TopK variant): top-1 and the logits feeding TopK."""
    logits_onnx = topk_onnx.with_name(topk_onnx.stem + "_logits.onnx")
    q = onnx_stage(logits_onnx, x, last_input=False)
    log.run(compare, "qonnx.logits", "logits vs Brevitas (atol 1e-4)", ref["logits"], q["output"],
            names, LOGIT_ATOL)  # fmt: skip
    log.run(compare, "qonnx.top1", "top-1 vs Brevitas", ref["top1"], q["output"].argmax(axis=1),
            names)  # fmt: skip
    f = onnx_stage(inter / "tidy_up.onnx", x, last_input=True)
    log.run(compare, "finn_onnx.top1", "top-1 vs Brevitas", ref["top1"], f["output"], names)
    log.run(compare, "finn_onnx.logits", "TopK input vs Brevitas logits (atol 1e-4)",
            ref["logits"], f["last_input"], names, LOGIT_ATOL)  # fmt: skip


def _streamlined_stages(log: StageLog, onnx: Path, x, names, ref, ss: np.ndarray) -> None:
    s_names = [names[i] for i in ss]
    s = onnx_stage(onnx, x[ss], last_input=True)
    log.run(compare, "streamlined.top1", "top-1 vs Brevitas", ref["top1"][ss], s["output"], s_names)
    log.run(compare, "streamlined.popcount", "last-layer popcount vs Brevitas (exact)",
            ref["popcount"][ss], s["last_input"], s_names)  # fmt: skip


def _finn_hw_stages(log: StageLog, program, hw_model: Path, x, names, ref, sub) -> None:
    """FINN's execution of the hardware graph vs our executor, layer by layer, and its top-1."""
    t0 = time.perf_counter()
    trace = program.trace(x[sub])
    finn_trace = finn_hw_trace(hw_model, x[sub])
    st_names = [names[i] for i in sub]
    bad_layers = []
    first = []
    for layer in program.layers:
        c = compare("", "", finn_trace[layer.name], trace[layer.name], st_names)
        if not c.passed:
            bad_layers.append(layer.name)
            first.extend({"layer": layer.name, **d} for d in c.first[:2])
    st = Stage("hw_graph.finn_vs_hwexec", "every layer's output: FINN execute_onnx vs our executor",
               len(sub), not bad_layers, len(bad_layers), first[:6],
               round(time.perf_counter() - t0, 2), f"differing layers: {bad_layers}" if bad_layers else "")  # fmt: skip
    log.add(st, f"{st.images:5d} images {st.seconds:6.1f} s  {st.compared}")
    log.restart()
    log.run(compare, "hw_graph.finn.top1", "FINN execute_onnx top-1 vs Brevitas",
            ref["top1"][sub], finn_trace[program.layers[-1].name], st_names)  # fmt: skip


def _hwexec_stages(log: StageLog, program, saved, x, names, ref) -> float:
    """Our bit-exact executor on every image vs Brevitas, and the saved program vs the one read
    from the ONNX; returns the executor's seconds."""
    t0 = log.restart()
    hw_out = program.run(x)
    last = program.layers[_last_mvau(program)]
    hw_trace_last = run_mvau(program.layer_input(x, last.name).astype(np.float32), last)
    t_hw = time.perf_counter() - t0
    log.run(compare, "hwexec.top1", "bit-exact executor top-1 vs Brevitas", ref["top1"], hw_out,
            names)  # fmt: skip
    log.run(compare, "hwexec.popcount", "last MVAU output vs Brevitas popcount (exact)",
            ref["popcount"], hw_trace_last, names)  # fmt: skip
    log.run(compare, "hwexec.saved_program", "program.npz vs program read from hw_model.onnx",
            hw_out, saved.run(x), names)  # fmt: skip
    return t_hw


def _static_stages(log: StageLog, program) -> None:
    """Types wide enough, and inner layers driven to their extremes."""
    t0 = time.perf_counter()
    for name, compared, problems in (
        ("hw_graph.dtype_ranges", "reachable range fits every declared type",
         dtype_range_problems(program)),
        ("hw_graph.worst_case_layers", "MVAU inputs = weight column, complement, ones, zeros",
         worst_case_layer_problems(program)),
    ):  # fmt: skip
        st = Stage(name, compared, len(program.layers), not problems, len(problems),
                   [{"problem": p} for p in problems[:6]], round(time.perf_counter() - t0, 2))  # fmt: skip
        log.add(st, f"{st.images:5d} layers          {st.compared}")


def _last_mvau(program) -> int:
    idx = [i for i, L in enumerate(program.layers) if L.kind == "MVAU"]
    return idx[-1]


def _accuracy(pred: np.ndarray, names: list[str]) -> float | None:
    from maskbnn.pipeline.data.maskedface import label_from_filename

    labels = np.array([_label(label_from_filename, n) for n in names])
    ok = labels >= 0
    return round(100.0 * float((pred[ok] == labels[ok]).mean()), 2) if ok.any() else None


def _label(fn, name: str) -> int:
    try:
        lb = fn(Path(name))
    except Exception:
        return -1
    return -1 if lb is None else int(lb)


def _json(o):
    if isinstance(o, np.integer | np.floating):
        return o.item()
    return str(o)


def to_markdown(r: dict) -> str:
    lines = [
        f"# Verification: {r['network']} on {r['board']}: {'PASSED' if r['passed'] else 'FAILED'}",
        "",
        f"{r['images']['real']} real images ({r['images']['source']}), {r['images']['worst_case']} "
        f"worst-case inputs; FINN's own execution of the streamlined graph on "
        f"{r['images']['streamlined_subset']} and of the hardware graph on "
        f"{r['images']['finn_execution_subset']}. Brevitas accuracy on the real images: "
        f"{r['brevitas_accuracy_percent']}%. Executor: {r['hwexec_images_per_second']:,} images/s. "
        f"{r['seconds']} s in total. The reference is Brevitas in float64; in float32 it "
        f"rounds differently on {len(r['brevitas_float32_differs'])} image(s)"
        f"{': ' + ', '.join(r['brevitas_float32_differs'][:10]) if r['brevitas_float32_differs'] else ''}.",
        "",
    ]
    lines += md_table(
        ("stage", "compared", "n", "result", "mismatches", "s"),
        (
            (s["name"], s["compared"], s["images"], "ok" if s["passed"] else "**FAIL**",
             s["mismatches"], s["seconds"])
            for s in r["stages"]
        ),
    )  # fmt: skip
    for s in r["stages"]:
        if not s["passed"]:
            lines += ["", f"## {s['name']}: first differences", ""]
            lines += [f"- `{json.dumps(d, default=_json)}`" for d in s["first"]]
            if s.get("note"):
                lines.append(f"- {s['note']}")
    return "\n".join(lines) + "\n"


# --- CLI ---------------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--net", required=True, help="network name, e.g. mask_1w1a_0.25")
    p.add_argument("--board", choices=sorted(BOARDS), help="default: the config's build.board")
    p.add_argument("--checkpoint", type=Path, help="weights (default: the shipped ones)")
    p.add_argument("--images", type=int, help="real images (default: build.verify.images)")
    p.add_argument("--finn-images", type=int, help="subset for FINN's slow execution")
    p.add_argument("--data", type=Path, help="image folder (default: build.verify.data)")
    p.add_argument("--split", help="train, test or all (default: build.verify.split)")
    p.add_argument("--build", type=Path, help="build folder (default build/<net>/<board>)")
    p.add_argument("--streamlined-images", type=int, help="subset for the streamlined graph")


def run(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(1)
    r = verify(args.net, args.board, args.checkpoint, args.images, args.finn_images, args.data,
               args.split, args.build, args.streamlined_images)  # fmt: skip
    print(f"verification PASSED for {r['network']} on {r['board']} ({r['seconds']} s)")
    return 0
