"""Read a FINN hardware graph (ONNX) into the NumPy program `maskbnn_board.hwexec` runs.

Everything the executor needs is taken from the graph itself: weights and thresholds from the
initializers, window geometry and data types from the node attributes. Nothing is recomputed from
the Brevitas model, so the program is a faithful copy of what the build would put on the FPGA.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from maskbnn.errors import UserError
from maskbnn.pipeline.finn import env as finn_env  # noqa: F401  (FINN's environment before importing it)
from maskbnn_board.hwexec import HardwareProgram, Layer, dtype_range, run_mvau  # noqa: F401

SUPPORTED = ("Thresholding", "ConvolutionInputGenerator", "MVAU", "Pool", "StreamingMaxPool",
             "LabelSelect", "FMPadding", "DuplicateStreams", "AddStreams",
             "ElementwiseAdd")  # fmt: skip


def base_op(op_type: str) -> str:
    for suffix in ("_hls", "_rtl"):
        if op_type.endswith(suffix):
            return op_type[: -len(suffix)]
    return op_type


def load_dataflow_model(path: Path):
    """The hardware (dataflow partition) model: a parent model's single partition is followed."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp

    model = ModelWrapper(str(path))
    sdp = model.get_nodes_by_op_type("StreamingDataflowPartition")
    if sdp:
        if len(model.graph.node) != 1:
            others = [
                n.op_type for n in model.graph.node if n.op_type != "StreamingDataflowPartition"
            ]
            raise UserError(
                f"{path}: layers outside the hardware partition ({', '.join(others)}); the "
                "accelerator must hold the whole network"
            )
        model = ModelWrapper(getCustomOp(sdp[0]).get_nodeattr("model"))
    return model


def _attr(inst, name: str):
    return inst.get_nodeattr(name)


def read_program(path: Path) -> HardwareProgram:
    """A HardwareProgram from a hardware-graph ONNX file (after specialize_layers and folding)."""
    from qonnx.custom_op.registry import getCustomOp

    model = load_dataflow_model(Path(path))
    layers: list[Layer] = []
    for node in model.graph.node:
        op = base_op(node.op_type)
        if op not in SUPPORTED or "fpgadataflow" not in (node.domain or ""):
            raise UserError(
                f"{path}: node {node.name} ({node.op_type}) is not supported by the bit-exact "
                f"executor; supported: {', '.join(SUPPORTED)}"
            )
        inst = getCustomOp(node)
        init = [model.get_initializer(i) for i in node.input[1:]]
        if op == "Thresholding":
            thr = _sorted_thresholds(node.name, init[0])
            layers.append(
                Layer(
                    node.name,
                    op,
                    {
                        "in_dtype": _attr(inst, "inputDataType"),
                        "out_dtype": _attr(inst, "outputDataType"),
                        "act_val": int(_attr(inst, "ActVal")),
                        "PE": int(_attr(inst, "PE")),
                    },
                    {"thresholds": thr},
                )
            )
        elif op == "ConvolutionInputGenerator":
            layers.append(
                Layer(
                    node.name,
                    op,
                    {
                        "kernel": list(_attr(inst, "ConvKernelDim")),
                        "stride": list(_attr(inst, "Stride")),
                        "dilation": list(_attr(inst, "Dilation")),
                        "ifm_dim": list(_attr(inst, "IFMDim")),
                        "ofm_dim": list(_attr(inst, "OFMDim")),
                        "channels": int(_attr(inst, "IFMChannels")),
                        "depthwise": int(_attr(inst, "depthwise")),
                        "SIMD": int(_attr(inst, "SIMD")),
                    },
                )
            )
        elif op == "MVAU":
            w = np.asarray(init[0])
            if not np.array_equal(w, np.rint(w)):
                raise UserError(f"{path}: {node.name} has non-integer weights")
            w = w.astype(np.int64)
            idt, wdt = _attr(inst, "inputDataType"), _attr(inst, "weightDataType")
            xmax = max(abs(v) for v in dtype_range(idt))
            wmax = int(np.abs(w).max()) if w.size else 0
            attrs = {
                "MW": int(_attr(inst, "MW")),
                "MH": int(_attr(inst, "MH")),
                "SIMD": int(_attr(inst, "SIMD")),
                "PE": int(_attr(inst, "PE")),
                "binary_xnor": int(_attr(inst, "binaryXnorMode")),
                "no_activation": int(_attr(inst, "noActivation")),
                "act_val": int(_attr(inst, "ActVal")),
                "in_dtype": idt,
                "weight_dtype": wdt,
                "acc_dtype": _attr(inst, "accDataType"),
                "out_dtype": _attr(inst, "outputDataType"),
                "exact_f32": bool(xmax * wmax * w.shape[0] < 2**24),
            }
            arrays = {"weights": w}
            if not attrs["no_activation"]:
                arrays["thresholds"] = _sorted_thresholds(node.name, init[1])
            layers.append(Layer(node.name, op, attrs, arrays))
        elif op == "Pool":
            layers.append(
                Layer(
                    node.name,
                    op,
                    {
                        "function": _attr(inst, "Function"),
                        "kernel": list(_attr(inst, "KernelSize")),
                        "channels": int(_attr(inst, "Channels")),
                    },
                )
            )
        elif op == "StreamingMaxPool":
            layers.append(Layer(node.name, op, {"pool": list(_attr(inst, "PoolDim"))}))
        elif op == "LabelSelect":
            layers.append(Layer(node.name, op, {"k": int(_attr(inst, "K"))}))
        elif op == "DuplicateStreams":
            layers.append(Layer(node.name, op, {"outputs": len(node.output)}))
        elif op in ("AddStreams", "ElementwiseAdd"):
            layers.append(Layer(node.name, op, _add_attrs(model, node, inst)))
        elif op == "FMPadding":
            layers.append(
                Layer(
                    node.name,
                    op,
                    {
                        "padding": list(_attr(inst, "Padding")),
                        "channels": int(_attr(inst, "NumChannels")),
                        "SIMD": int(_attr(inst, "SIMD")),
                    },
                )
            )
    inp, out = model.graph.input[0].name, model.graph.output[0].name
    graph = _is_graph(model)
    if graph:  # residual networks: each layer names the tensors it reads and writes
        for layer, node in zip(layers, model.graph.node, strict=True):
            layer.inputs = [i for i in node.input if model.get_initializer(i) is None and i]
            layer.outputs = list(node.output)
    return HardwareProgram(
        layers,
        tuple(int(v) for v in model.get_tensor_shape(inp)[1:]),
        model.get_tensor_datatype(inp).name,
        tuple(int(v) for v in model.get_tensor_shape(out)[1:]),
        model.get_tensor_datatype(out).name,
        {"source": Path(path).name},
        inp if graph else "",
        out if graph else "",
    )


def _is_graph(model) -> bool:
    """Whether any layer forks or joins streams (else the layers form a chain)."""
    for node in model.graph.node:
        dynamic = [i for i in node.input if i and model.get_initializer(i) is None]
        if len(dynamic) > 1 or len(node.output) > 1:
            return True
    return False


def _add_attrs(model, node, inst) -> dict:
    dynamic = [i for i in node.input if model.get_initializer(i) is None]
    if len(dynamic) != 2:
        raise UserError(f"{node.name}: an add of a stream and a constant is not supported")
    return {
        "in0_dtype": model.get_tensor_datatype(node.input[0]).name,
        "in1_dtype": model.get_tensor_datatype(node.input[1]).name,
        "out_dtype": model.get_tensor_datatype(node.output[0]).name,
        "PE": int(inst.get_nodeattr("PE")),
    }


def _sorted_thresholds(name: str, thr: np.ndarray | None) -> np.ndarray:
    if thr is None:
        raise UserError(f"{name}: thresholds are not constant initializers")
    thr = np.asarray(thr, dtype=np.float64)
    if thr.ndim != 2:
        raise UserError(f"{name}: thresholds of shape {thr.shape}, expected (channels, steps)")
    if np.any(np.diff(thr, axis=1) < 0):
        raise UserError(f"{name}: thresholds are not sorted ascending per channel")
    if np.array_equal(thr, np.rint(thr)):
        # integer thresholds on integer accumulators: comparing as int64 is exact
        return thr.astype(np.int64)
    # fractional thresholds on integers: x >= t  <=>  x >= ceil(t)
    return np.ceil(thr).astype(np.int64)


def export_program(model_path: Path, out_path: Path) -> Path:
    return read_program(model_path).save(out_path)
