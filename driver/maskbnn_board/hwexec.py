"""Bit-exact, batched executor of a FINN hardware graph, in NumPy only.

A *program* is what ``maskbnn.pipeline.finn.hwgraph`` reads out of a folded FINN hardware graph (weights,
thresholds, window geometry, and every declared data type), stored as one ``.npz`` holding the
arrays and a JSON description. This module must import nothing but NumPy, the standard library and
the driver's own modules: the board driver's emulation backend uses it where no FPGA is present.

Semantics are the hardware's, not FINN's Python simulation's: accumulators and unthresholded
outputs are wrapped to the bit width the graph declares for them, exactly as an ``ap_int<N>``
register or an N-bit AXI stream would. Where FINN declares a type too narrow for the values a layer
can reach, this executor therefore disagrees with FINN's Python execution, which is the point.

Numbers travel between layers as float32 holding integers: every value and partial sum is checked
(when the program is read) to stay below 2**24, where float32 is exact, so BLAS does the matrix
products; layers that could exceed it fall back to int64.

Layers (FINN op types with the ``_hls``/``_rtl`` suffix removed):
Thresholding, ConvolutionInputGenerator, MVAU, Pool (MaxPool), StreamingMaxPool, LabelSelect,
FMPadding, and for residual graphs DuplicateStreams and AddStreams/ElementwiseAdd.
A chain's layers feed each other in order; a graph's layers name their input and output tensors
and run in the file's (topological) order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from maskbnn_board.datatypes import parse_datatype
from maskbnn_board.errors import DeploymentError

FORMAT = "maskbnn-hwprogram/1"
# float32 BLAS products are exact while every partial sum stays below 2**24.
_F32_EXACT = 2**24


class ProgramError(ValueError):
    """A program file that cannot be used (wrong format, unknown layer, inconsistent shapes)."""


# --- FINN data types, by name ---------------------------------------------------------------------


def dtype_range(name: str) -> tuple[int, int]:
    """(min, max) of a FINN integer data type name: BINARY, BIPOLAR, INTn, UINTn."""
    try:
        t = parse_datatype(name)
    except DeploymentError:
        raise ProgramError(f"unsupported data type {name!r} (integer types only)") from None
    return t.min, t.max


def wrap(x: np.ndarray, name: str) -> np.ndarray:
    """Values as an N-bit register of type `name` holds them (two's complement wrap-around)."""
    if name == "BIPOLAR":  # stored as one bit: 0 -> -1, 1 -> +1
        return np.where(x > 0, 1, -1).astype(x.dtype)
    lo, hi = dtype_range(name)
    span = hi - lo + 1
    return ((x - lo) % span + lo).astype(x.dtype)


# --- layers ---------------------------------------------------------------------------------------


@dataclass
class Layer:
    name: str
    kind: str
    attrs: dict
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    cache: dict = field(default_factory=dict, repr=False)  # derived from arrays; not saved
    inputs: list[str] = field(default_factory=list)  # tensor names (graphs; empty in a chain)
    outputs: list[str] = field(default_factory=list)

    def f32(self, key: str) -> np.ndarray:
        if key not in self.cache:
            self.cache[key] = self.arrays[key].astype(np.float32)
        return self.cache[key]


def _thresholds(acc: np.ndarray, thr: np.ndarray) -> np.ndarray:
    """Number of thresholds each value reaches: acc (..., C), thr (C or 1, T) sorted per row."""
    channels, steps = thr.shape
    if steps == 1:
        return (acc >= thr[:, 0]).astype(acc.dtype)
    if steps <= 16:
        return (acc[..., None] >= thr).sum(axis=-1).astype(acc.dtype)
    if channels == 1:
        return np.searchsorted(thr[0], acc, side="right").astype(acc.dtype)
    out = np.empty(acc.shape, acc.dtype)
    for c in range(channels):
        out[..., c] = np.searchsorted(thr[c], acc[..., c], side="right")
    return out


def _activate(acc: np.ndarray, layer: Layer) -> np.ndarray:
    a = layer.attrs
    thr = layer.f32("thresholds") if acc.dtype == np.float32 else layer.arrays["thresholds"]
    count = _thresholds(acc, thr)
    if a["out_dtype"] == "BIPOLAR":
        return 2 * count - 1
    return count + int(a["act_val"])


def _lookup_or_activate(x: np.ndarray, layer: Layer, lo: int, hi: int) -> np.ndarray:
    """Thresholds applied to integers x in [lo, hi]: through a table of every value's output per
    channel when the range is small (a gather instead of comparing each value with every
    threshold), else by comparison."""
    thr = layer.arrays["thresholds"]
    if hi - lo >= 2**16 or thr.shape[0] * (hi - lo + 1) > 2**22:
        return _activate(x, layer)
    if "lut" not in layer.cache:
        values = np.arange(lo, hi + 1, dtype=np.int64)
        rows = [_activate(values, _one_channel(layer, c)) for c in range(thr.shape[0])]
        layer.cache["lut"] = np.stack(rows).astype(np.float32)
    lut = layer.cache["lut"]
    idx = (x - lo).astype(np.intp)
    if idx.size and (idx.min() < 0 or idx.max() > hi - lo):  # never index the table wrapped
        raise ProgramError(f"{layer.name}: values outside [{lo}, {hi}] reach its thresholds")
    if lut.shape[0] == 1:
        return lut[0][idx]
    return lut[np.arange(lut.shape[0]), idx]


def run_thresholding(x: np.ndarray, layer: Layer) -> np.ndarray:
    return _lookup_or_activate(x, layer, *dtype_range(layer.attrs["in_dtype"]))


def _one_channel(layer: Layer, c: int) -> Layer:
    return Layer(
        layer.name, layer.kind, layer.attrs, {"thresholds": layer.arrays["thresholds"][c : c + 1]}
    )


def run_im2col(x: np.ndarray, layer: Layer) -> np.ndarray:
    """Sliding windows, NHWC in, (N, OH, OW, KH*KW*C) out: kernel position major, channel fastest."""
    a = layer.attrs
    kh, kw = a["kernel"]
    sh, sw = a["stride"]
    dh, dw = a["dilation"]
    oh, ow = a["ofm_dim"]
    # one strided slice per kernel position, channels contiguous: cheaper than a transposed
    # sliding-window view
    parts = [
        x[:, i * dh : i * dh + (oh - 1) * sh + 1 : sh, j * dw : j * dw + (ow - 1) * sw + 1 : sw, :]
        for i in range(kh)
        for j in range(kw)
    ]
    return np.concatenate(parts, axis=-1)


def mvau_reachable(layer: Layer) -> tuple[int, int]:
    """[min, max] the accumulator can reach over all inputs of the declared input type."""
    if "reachable" not in layer.cache:
        w = layer.arrays["weights"]
        if layer.attrs["binary_xnor"]:
            layer.cache["reachable"] = 0, int(w.shape[0])
        else:
            lo, hi = dtype_range(layer.attrs["in_dtype"])
            col_min = np.minimum(w * lo, w * hi).sum(axis=0)
            col_max = np.maximum(w * lo, w * hi).sum(axis=0)
            layer.cache["reachable"] = int(col_min.min()), int(col_max.max())
    return layer.cache["reachable"]


def _fits(layer: Layer, key: str) -> bool:
    """Whether wrapping to attrs[key] is the identity (the type holds every reachable value)."""
    flag = f"fits:{key}"
    if flag not in layer.cache:
        lo, hi = mvau_reachable(layer)
        tlo, thi = dtype_range(layer.attrs[key])
        layer.cache[flag] = tlo <= lo and hi <= thi
    return bool(layer.cache[flag])


def run_mvau(x: np.ndarray, layer: Layer) -> np.ndarray:
    a = layer.attrs
    w = layer.arrays["weights"]  # (MW, MH)
    mw = w.shape[0]
    # An FC after a conv stack reads the whole NHWC map as one vector (FINN reorders its weight
    # rows to that order when it drops the Flatten).
    lead = x.shape[:-1] if x.shape[-1] == mw else x.shape[:1]
    flat = x.reshape(-1, mw)
    if a["exact_f32"] and flat.dtype == np.float32:
        acc = flat @ layer.f32("weights")
        wsum = layer.f32("weights").sum(axis=0)
    else:
        flat = flat.astype(np.int64)
        acc = flat @ w
        wsum = w.sum(axis=0)
    if a["binary_xnor"]:
        # popcount(xnor(x, w)) = x.w + (1-x).(1-w) = 2 x.w - sum(x) - sum(w) + MW
        acc = 2 * acc - flat.sum(axis=1)[:, None] - wsum[None, :] + mw
    if not _fits(layer, "acc_dtype"):
        acc = wrap(acc, a["acc_dtype"])  # the accumulator register is acc_dtype bits wide
    if "thresholds" in layer.arrays and layer.arrays["thresholds"].shape[1] > 1:
        # multi-bit output: comparing with every threshold costs more than a table lookup
        fits = _fits(layer, "acc_dtype")
        lo, hi = mvau_reachable(layer) if fits else dtype_range(a["acc_dtype"])
        out = _lookup_or_activate(acc, layer, lo, hi)
    elif "thresholds" in layer.arrays:
        out = _activate(acc, layer)
    elif not _fits(layer, "out_dtype"):
        out = wrap(acc, a["out_dtype"])  # the output stream is out_dtype bits wide
    else:
        out = acc
    return out.reshape(*lead, w.shape[1])


def run_pool(x: np.ndarray, layer: Layer) -> np.ndarray:
    a = layer.attrs
    if a["function"] != "MaxPool":
        raise ProgramError(f"{layer.name}: pool function {a['function']!r} is not supported")
    k2 = a["kernel"][0] * a["kernel"][1]
    return x.reshape(*x.shape[:-1], k2, a["channels"]).max(axis=-2)


def run_streaming_maxpool(x: np.ndarray, layer: Layer) -> np.ndarray:
    ph, pw = layer.attrs["pool"]
    n, h, w, c = x.shape
    oh, ow = h // ph, w // pw
    x = x[:, : oh * ph, : ow * pw].reshape(n, oh, ph, ow, pw, c)
    return x.max(axis=(2, 4))


def run_labelselect(x: np.ndarray, layer: Layer) -> np.ndarray:
    k = layer.attrs["k"]
    flat = x.reshape(x.shape[0], -1)
    if k == 1:  # first index among equal values, as ONNX TopK and torch.argmax
        return flat.argmax(axis=1)[:, None]
    return np.argsort(-flat, axis=1, kind="stable")[:, :k]


def run_fmpadding(x: np.ndarray, layer: Layer) -> np.ndarray:
    """Zero padding of the stored values (NHWC); for a binary map bit 0 is the value -1."""
    top, left, bottom, right = layer.attrs["padding"]
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))


def run_duplicate(x: np.ndarray, layer: Layer) -> np.ndarray:
    return x  # every output stream carries the input


def run_add(xs: list[np.ndarray], layer: Layer) -> np.ndarray:
    """Integer add of two streams, wrapped to the declared output type as its register would."""
    y = xs[0] + xs[1]
    lo, hi = add_reachable(layer)
    olo, ohi = dtype_range(layer.attrs["out_dtype"])
    return y if olo <= lo and hi <= ohi else wrap(y, layer.attrs["out_dtype"])


def add_reachable(layer: Layer) -> tuple[int, int]:
    (a0, b0), (a1, b1) = (dtype_range(layer.attrs[k]) for k in ("in0_dtype", "in1_dtype"))
    return a0 + a1, b0 + b1


RUNNERS = {
    "Thresholding": run_thresholding,
    "ConvolutionInputGenerator": run_im2col,
    "MVAU": run_mvau,
    "Pool": run_pool,
    "StreamingMaxPool": run_streaming_maxpool,
    "LabelSelect": run_labelselect,
    "FMPadding": run_fmpadding,
    "DuplicateStreams": run_duplicate,
}
JOINS = {"AddStreams": run_add, "ElementwiseAdd": run_add}  # two input streams


def _apply(layer: Layer, args: list[np.ndarray]) -> np.ndarray:
    if layer.kind in JOINS:
        return JOINS[layer.kind](args, layer)
    return RUNNERS[layer.kind](args[0], layer)


def _to_int(x: np.ndarray) -> np.ndarray:
    return x if x.dtype == np.int64 else np.rint(x).astype(np.int64)


# --- the program ----------------------------------------------------------------------------------


@dataclass
class HardwareProgram:
    """Layers in stream order; `run` maps uint8 NHWC images to the graph's outputs."""

    layers: list[Layer]
    input_shape: tuple[int, ...]  # one image, e.g. (32, 32, 3)
    input_dtype: str
    output_shape: tuple[int, ...]  # one image's output, e.g. (1,)
    output_dtype: str
    meta: dict = field(default_factory=dict)
    input_name: str = ""  # graph tensor names (a chain needs none)
    output_name: str = ""

    # --- running ---

    def run(self, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Outputs (N, *output_shape) int64 for images (N, *input_shape) (or one image)."""
        x = self._check_input(x)
        outs = [self._forward(x[s : s + batch_size]) for s in range(0, len(x), batch_size)]
        out = np.concatenate(outs) if outs else np.zeros((0, *self.output_shape), np.int64)
        return out.reshape(len(x), *self.output_shape)

    def trace(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every layer's output by layer name (for verification; keep batches small)."""
        x = self._check_input(x).astype(np.float32)
        return {layer.name: _to_int(y) for layer, _, y in self._walk(x)}

    def layer_input(self, x: np.ndarray, name: str, batch_size: int = 256) -> np.ndarray:
        """The (first) input of layer `name` for images x (worst-case inputs of inner layers)."""
        x = self._check_input(x)
        outs = []
        for s in range(0, len(x), batch_size):
            for layer, args, _ in self._walk(x[s : s + batch_size].astype(np.float32)):
                if layer.name == name:
                    outs.append(_to_int(args[0]))
                    break
            else:
                raise KeyError(f"no layer {name!r}")
        return np.concatenate(outs)

    @property
    def is_graph(self) -> bool:
        return any(layer.inputs for layer in self.layers)

    def _walk(self, x: np.ndarray):
        """(layer, its inputs, its output) in order; a graph's tensors are dropped after their
        last reader, so only the live ones (the open shortcuts) stay in memory."""
        if not self.is_graph:
            for layer in self.layers:
                y = RUNNERS[layer.kind](x, layer)
                yield layer, [x], y
                x = y
            return
        last = {}
        for i, layer in enumerate(self.layers):
            for n in layer.inputs:
                last[n] = i
        env = {self.input_name: x}
        for i, layer in enumerate(self.layers):
            args = [env[n] for n in layer.inputs]
            y = _apply(layer, args)
            yield layer, args, y
            for n in layer.inputs:
                if last[n] == i and n != self.output_name:
                    env.pop(n, None)
            for n in layer.outputs:
                env[n] = y

    def _forward(self, x: np.ndarray) -> np.ndarray:
        graph, out = self.is_graph, None
        for layer, _, y in self._walk(x.astype(np.float32)):
            if not graph or self.output_name in layer.outputs:
                out = y  # a chain's last layer; a graph's producer of the output tensor
        return _to_int(out)

    def _check_input(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.shape == self.input_shape:
            x = x[None]
        if x.shape[1:] != self.input_shape:
            raise ProgramError(
                f"input of shape {x.shape} does not fit the program: expected (N, "
                f"{', '.join(map(str, self.input_shape))}) {self.input_dtype} values"
            )
        lo, hi = dtype_range(self.input_dtype)
        if x.size and (x.min() < lo or x.max() > hi):
            raise ProgramError(f"input values outside {self.input_dtype} [{lo}, {hi}]")
        return x

    # --- files ---

    def save(self, path: str | Path) -> Path:
        """One .npz: arrays as '<layer index>/<name>', the description as JSON under 'program'."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        desc = {
            "format": FORMAT,
            "input_shape": list(self.input_shape),
            "input_dtype": self.input_dtype,
            "output_shape": list(self.output_shape),
            "output_dtype": self.output_dtype,
            "meta": self.meta,
            "input_name": self.input_name,
            "output_name": self.output_name,
            "layers": [
                {
                    "name": L.name,
                    "kind": L.kind,
                    "attrs": L.attrs,
                    "arrays": sorted(L.arrays),
                    "inputs": L.inputs,
                    "outputs": L.outputs,
                }
                for L in self.layers
            ],
        }
        arrays = {f"{i}/{k}": v for i, L in enumerate(self.layers) for k, v in L.arrays.items()}
        tmp = path.with_name(f".{path.name}.tmp.npz")
        np.savez_compressed(tmp, program=np.array(json.dumps(desc)), **arrays)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> HardwareProgram:
        path = Path(path)
        if not path.is_file():
            raise ProgramError(f"program file {path} does not exist")
        try:
            with np.load(path, allow_pickle=False) as z:
                desc = json.loads(str(z["program"]))
                arrays = {k: z[k] for k in z.files if k != "program"}
        except (OSError, ValueError, KeyError) as err:
            raise ProgramError(f"{path} is not a hardware-graph program ({err})") from err
        if desc.get("format") != FORMAT:
            raise ProgramError(f"{path}: format {desc.get('format')!r}, expected {FORMAT!r}")
        layers = []
        for i, d in enumerate(desc["layers"]):
            if d["kind"] not in RUNNERS and d["kind"] not in JOINS:
                raise ProgramError(f"{path}: layer {d['name']} has unknown kind {d['kind']!r}")
            layers.append(
                Layer(
                    d["name"],
                    d["kind"],
                    d["attrs"],
                    {k: arrays[f"{i}/{k}"] for k in d["arrays"]},
                    inputs=d.get("inputs", []),
                    outputs=d.get("outputs", []),
                )
            )
        return cls(
            layers,
            tuple(desc["input_shape"]),
            desc["input_dtype"],
            tuple(desc["output_shape"]),
            desc["output_dtype"],
            desc.get("meta", {}),
            desc.get("input_name", ""),
            desc.get("output_name", ""),
        )

    def layer_index(self, name: str) -> int:
        for i, layer in enumerate(self.layers):
            if layer.name == name:
                return i
        raise KeyError(f"no layer {name!r}; layers: {', '.join(L.name for L in self.layers)}")
