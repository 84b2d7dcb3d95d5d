"""The stages verify.py compares: each returns plain arrays (or problem lists) for one input batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from maskbnn.pipeline.finn import env as finn_env  # noqa: F401  (FINN's environment before importing it)
from maskbnn.pipeline.finn.hwgraph import base_op, load_dataflow_model
from maskbnn_board.hwexec import (
    ProgramError,
    _activate,
    dtype_range,
    mvau_reachable,
    run_mvau,
    run_thresholding,
)

# --- inputs ---------------------------------------------------------------------------------------


def worst_case_images(shape: tuple[int, ...]) -> tuple[np.ndarray, list[str]]:
    """Images at the input range's corners: all 0, all 255, one channel saturated, high-frequency
    patterns (maximal first-layer windows), seeded noise."""
    h, w, c = shape
    imgs, names = [], []

    def add(name: str, img: np.ndarray) -> None:
        imgs.append(img.astype(np.uint8))
        names.append(f"worst:{name}")

    add("zeros", np.zeros(shape))
    add("all_255", np.full(shape, 255))
    for ch in range(c):
        img = np.zeros(shape)
        img[..., ch] = 255
        add(f"channel{ch}_255", img)
    yy, xx = np.mgrid[:h, :w]
    add("checkerboard", np.repeat(((yy + xx) % 2 * 255)[..., None], c, axis=2))
    add("stripes", np.repeat((yy % 2 * 255)[..., None], c, axis=2))
    rng = np.random.default_rng(0)
    add("noise0", rng.integers(0, 256, shape))
    add("binary_noise", rng.integers(0, 2, shape) * 255)
    return np.stack(imgs), names


# --- Brevitas -------------------------------------------------------------------------------------


def brevitas_outputs(
    model, x: np.ndarray, batch: int = 250, exact: bool = True
) -> dict[str, np.ndarray]:
    """Logits, top-1 and the last layer's integer accumulator of a model: the XNOR popcount for a
    binary last layer (+-1 inputs and weights), the integer-input x integer-weight dot product for
    a last layer with wider weights or inputs (what FINN's MVAU accumulates once the scales move
    to the TopK; a residual network's last layer reads the k-bit residual stream).

    `exact` runs the model in float64. The hardware computes the network's function in integers;
    float32 PyTorch sums a conv in another order than onnxruntime and can move a pre-activation
    that lies within rounding of a quantiser step across it (seen: 1 of 1,009 images of the 4-bit
    ResNet-20, whose float64 run agrees with every later stage)."""
    import copy

    import torch
    from brevitas.nn import QuantIdentity, QuantLinear

    dtype = torch.float64 if exact else torch.float32
    if exact:
        model = copy.deepcopy(model).to(dtype)

    last = [m for m in model.modules() if isinstance(m, QuantLinear)][-1]
    seen: list[torch.Tensor] = []
    hook = last.register_forward_pre_hook(lambda m, a: seen.append(_value(a[0])))
    # the scale of the quantiser that ran last before the last layer: its input's grid
    grid: list[float] = []
    quants = [m for m in model.modules() if isinstance(m, QuantIdentity)]
    hooks = [q.register_forward_hook(lambda m, a, o: grid.append(_act_scale(m))) for q in quants]
    logits = []
    try:
        with torch.no_grad():
            for s in range(0, len(x), batch):
                t = torch.from_numpy(x[s : s + batch]).permute(0, 3, 1, 2).to(dtype) / 255.0
                logits.append(model(t).numpy())
            qw = last.quant_weight()
            w = _value(qw).numpy()
            w_int = qw.int().numpy().astype(np.int64) if hasattr(qw, "int") else None
    finally:
        hook.remove()
        for h in hooks:
            h.remove()
    acts = np.concatenate([a.numpy() for a in seen])
    binary = np.all(np.isin(acts, (-1.0, 1.0)))
    scale = 1.0 if binary or not grid else grid[-1]
    a_int = np.rint(acts / scale).astype(np.int64)
    if not np.allclose(a_int * scale, acts, rtol=0, atol=1e-6 * max(1.0, scale)):
        raise ValueError("the last layer's inputs are neither binary nor on one quantiser's grid")
    logits = np.concatenate(logits)
    if (
        binary
        and np.all(np.isin(np.sign(w), (-1.0, 1.0)))
        and np.all(np.abs(w) == np.abs(w).flat[0])
    ):
        dot = a_int @ np.sign(w).astype(np.int64).T
        acc = (dot + w.shape[1]) // 2  # popcount of xnor(bits) = (dot + K) / 2
    elif w_int is not None:
        acc = a_int @ w_int.T
    else:
        raise ValueError("the last layer's weights are neither binary nor integer-quantised")
    return {"logits": logits, "top1": logits.argmax(axis=1), "popcount": acc}


def _act_scale(quant) -> float:
    scale = quant.act_quant.scale()
    return float(scale) if scale is not None and scale.numel() == 1 else 1.0


def _value(t):
    return t.value if hasattr(t, "value") else t


# --- ONNX graphs through qonnx/FINN execution -----------------------------------------------------


def onnx_stage(path: Path, x: np.ndarray, last_input: bool = False) -> dict[str, np.ndarray]:
    """Run a (Q)ONNX model on uint8 NHWC images with qonnx's execute_onnx, batched when the
    graph allows it; returns the output and, optionally, the last node's input."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.change_batchsize import ChangeBatchSize
    from qonnx.transformation.infer_shapes import InferShapes

    model = ModelWrapper(str(path))
    inp, outp = model.graph.input[0].name, model.graph.output[0].name
    last_in = model.graph.node[-1].input[0]
    xf = x.astype(np.float32)

    def run(m, xb):
        ctx = execute_onnx(m, {inp: xb}, return_full_exec_context=last_input)
        return ctx[outp], (ctx[last_in] if last_input else None)

    outs, lasts = [], []
    # qonnx's Im2Col interleaves the images of a batch (its column matrix is reshaped as if N were
    # 1; see tests/test_verify.py), so a lowered graph runs one image at a time.
    batchable = not model.get_nodes_by_op_type("Im2Col")
    if batchable:
        try:
            chunk, batched = 250, {}
            for s in range(0, len(x), chunk):
                xb = xf[s : s + chunk]
                if len(xb) not in batched:
                    m = ModelWrapper(str(path)).transform(ChangeBatchSize(len(xb)))
                    batched[len(xb)] = m.transform(InferShapes())
                o, li = run(batched[len(xb)], xb)
                outs.append(o)
                lasts.append(li)
        except Exception:  # other FINN ops infer shapes for batch 1 only
            batchable = False
    if not batchable:
        outs, lasts = [], []
        for i in range(len(x)):
            o, li = run(model, xf[i : i + 1])
            outs.append(o)
            lasts.append(li)
    res = {"output": np.concatenate(outs).reshape(len(x), -1)}
    if last_input:
        res["last_input"] = np.concatenate(lasts).reshape(len(x), -1)
    res["output"] = res["output"] if res["output"].shape[1] > 1 else res["output"][:, 0]
    return res


def generic_hw_model(path: Path):
    """The hardware graph with each `_hls`/`_rtl` layer mapped back to FINN's generic layer: after
    specialize_layers FINN only executes those in C++/RTL simulation (Vitis HLS / Vivado), while
    the generic layers carry FINN's own Python execution of the same attributes and parameters."""
    model = load_dataflow_model(Path(path))
    for node in model.graph.node:
        op = base_op(node.op_type)
        if op != node.op_type:
            node.op_type = op
            node.domain = "finn.custom_op.fpgadataflow"
    return model


def finn_hw_trace(path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every hardware layer's output under FINN's execute_onnx, image by image (it is slow)."""
    from qonnx.core.onnx_exec import execute_onnx

    model = generic_hw_model(path)
    inp = model.graph.input[0].name
    per_node: dict[str, list[np.ndarray]] = {n.name: [] for n in model.graph.node}
    for i in range(len(x)):
        ctx = execute_onnx(
            model, {inp: x[i : i + 1].astype(np.float32)}, return_full_exec_context=True
        )
        for n in model.graph.node:
            per_node[n.name].append(ctx[n.output[0]])
    return {k: np.concatenate(v) for k, v in per_node.items()}


# --- static checks on the program -----------------------------------------------------------------


def _range(name: str) -> tuple[int, int]:
    return dtype_range(name)


def split_thresholds(program) -> dict[str, object]:
    """MVAU name -> the Thresholding layer that reads its accumulator (thresholds split out so
    FINN can use its RTL MVAU, pipeline/finn/rtl_mvau.py): together they are one MVAU."""
    out = {}
    for i, layer in enumerate(program.layers):
        if layer.kind != "Thresholding":
            continue
        if program.is_graph:
            src = [L for L in program.layers if layer.inputs and layer.inputs[0] in L.outputs]
        else:
            src = program.layers[i - 1 : i] if i else []
        if src and src[0].kind == "MVAU" and "thresholds" not in src[0].arrays:
            out[src[0].name] = layer
    return out


def dtype_range_problems(program) -> list[str]:
    """Layers whose declared accumulator/output type cannot hold the values they can reach."""
    problems = []
    for name, thr in split_thresholds(program).items():
        lo, hi = mvau_reachable(program.layers[program.layer_index(name)])
        tlo, thi = _range(thr.attrs["in_dtype"])
        if lo < tlo or hi > thi:
            problems.append(
                f"{thr.name}: reads {name}'s [{lo}, {hi}] but in_dtype is "
                f"{thr.attrs['in_dtype']} [{tlo}, {thi}]"
            )
    for layer in program.layers:
        a = layer.attrs
        if layer.kind == "MVAU":
            lo, hi = mvau_reachable(layer)
            for key in ("acc_dtype",) + (
                ("out_dtype",) if "thresholds" not in layer.arrays else ()
            ):
                tlo, thi = _range(a[key])
                if lo < tlo or hi > thi:
                    problems.append(
                        f"{layer.name}: reaches [{lo}, {hi}] but {key} is {a[key]} [{tlo}, {thi}]"
                    )
        if "thresholds" in layer.arrays and a.get("out_dtype") not in ("BIPOLAR",):
            steps = layer.arrays["thresholds"].shape[1]
            lo, hi = a["act_val"], a["act_val"] + steps
            tlo, thi = _range(a["out_dtype"])
            if lo < tlo or hi > thi:
                problems.append(
                    f"{layer.name}: outputs [{lo}, {hi}] but out_dtype is {a['out_dtype']}"
                )
    return problems


def worst_case_layer_inputs(layer, columns: int = 64) -> np.ndarray:
    """Inputs that drive an MVAU's accumulators to their extremes."""
    w = layer.arrays["weights"]
    a = layer.attrs
    if a["binary_xnor"]:
        cols = w[:, :columns].T  # input = weight column -> popcount MW; complement -> 0
        return np.concatenate([cols, 1 - cols, np.ones((1, w.shape[0])), np.zeros((1, w.shape[0]))])
    lo, hi = _range(a["in_dtype"])
    cols = w[:, :columns].T
    return np.concatenate(
        [
            np.where(cols > 0, hi, lo),
            np.where(cols > 0, lo, hi),
            np.full((2, w.shape[0]), hi)[:1],
            np.full((1, w.shape[0]), lo),
        ]  # fmt: skip
    ).astype(np.int64)


def ideal_mvau(x: np.ndarray, layer) -> np.ndarray:
    """The MVAU in unbounded integers (what FINN's Python execution computes)."""
    w = layer.arrays["weights"].astype(np.int64)
    x = x.astype(np.int64)
    if layer.attrs["binary_xnor"]:
        acc = x @ w + (1 - x) @ (1 - w)
    else:
        acc = x @ w
    return _activate(acc, layer) if "thresholds" in layer.arrays else acc


def worst_case_layer_problems(program) -> list[str]:
    """MVAUs whose hardware-width result differs from the unbounded one on extreme inputs (an
    MVAU with split-out thresholds together with its Thresholding layer)."""
    problems = []
    split = split_thresholds(program)
    for layer in program.layers:
        if layer.kind != "MVAU":
            continue
        x = worst_case_layer_inputs(layer)
        hw, ideal = run_mvau(x, layer), ideal_mvau(x, layer)
        if layer.name in split:
            thr = split[layer.name]
            try:
                hw = run_thresholding(hw, thr)
            except ProgramError as err:
                problems.append(f"{layer.name} -> {thr.name}: {err}")
                continue
            ideal = _activate(ideal, thr)
        bad = np.flatnonzero((hw != ideal).any(axis=1))
        if len(bad):
            i = bad[0]
            j = np.flatnonzero(hw[i] != ideal[i])[:4]
            problems.append(
                f"{layer.name}: {len(bad)} of {len(x)} extreme inputs differ, e.g. input #{i}: "
                f"hardware {hw[i, j].tolist()} vs exact {ideal[i, j].tolist()} at outputs "
                f"{j.tolist()} (acc {layer.attrs['acc_dtype']}, out {layer.attrs['out_dtype']})"
            )
    return problems
