"""Export step: a Brevitas checkpoint -> QONNX with the pre-processing inside the graph.

The exported graph takes what the board receives: uint8 images, NHWC (or NCHW), values 0..255. In
the graph: a Transpose to NCHW (NHWC only), the division by 255 and the model's own 2x-1, so every
later stage sees exactly the pixels the driver sends. Two files per checkpoint:

- ``<net>_<hash>.onnx``: TopK(k=1) at the output (what the accelerator computes: the class index);
- ``<net>_<hash>_logits.onnx``: no TopK, for logit-level comparisons.

``<hash>`` is a short hash of the weights (state dict), so a file name says which weights it holds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from maskbnn.config import load_network_config
from maskbnn.errors import UserError
from maskbnn.models.checkpoint import load_weights, pretrained_path, read_checkpoint
from maskbnn.models.registry import build_model
from maskbnn.outputs import remove, write_json
from maskbnn.paths import rel
from maskbnn.pipeline.builddir import BuildDir, export_dir, export_index
from maskbnn.pipeline.verify.deployability import require_deployable

LAYOUTS = ("NHWC", "NCHW")


class UInt8Input(nn.Module):
    """uint8-valued image (as float) -> the [0, 1] NCHW tensor the Brevitas model expects."""

    def __init__(self, model: nn.Module, layout: str = "NHWC") -> None:
        super().__init__()
        if layout not in LAYOUTS:
            raise UserError(f"unknown input layout {layout!r}; use {' or '.join(LAYOUTS)}")
        self.model = model
        self.layout = layout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layout == "NHWC":
            x = x.permute(0, 3, 1, 2)
        return self.model(x / 255.0)


@dataclass(frozen=True)
class ExportResult:
    topk: Path
    logits: Path
    weights_hash: str
    meta: Path


def weights_hash(model: nn.Module) -> str:
    """Short sha256 over the state dict (names, shapes, float32 bytes), container-independent."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        arr = t.detach().cpu().numpy()
        h.update(name.encode())
        h.update(str(arr.shape).encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:8]


def load_model(net: str, checkpoint: Path | None) -> nn.Module:
    """The network with the checkpoint's weights (the shipped ones when checkpoint is None), as
    plain Brevitas layers: a training method's forwards are baked into weights and BatchNorms.
    The method is the one the checkpoint was trained with (`train --method` may override the
    config's), so the baked network computes what was trained."""
    import dataclasses

    from maskbnn.models.brevitas_methods import bake_if_installed

    path = Path(checkpoint) if checkpoint else pretrained_path(net)
    cfg = load_network_config(net).model
    trained = read_checkpoint(path).get("hparams", {}).get("method")
    if trained is not None:
        cfg = dataclasses.replace(cfg, method=trained)
    model = build_model(cfg)
    load_weights(model, path, net)
    return bake_if_installed(model, cfg.method).eval()


def export_qonnx_files(
    model: nn.Module, net: str, out_dir: Path, layout: str = "NHWC", image_size: int = 32
) -> ExportResult:
    """Write the TopK and logits QONNX files for an eval-mode model; returns their paths."""
    import qonnx.core.data_layout as DataLayout
    from brevitas.export import export_qonnx
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.transformation.insert_topk import InsertTopK
    from qonnx.util.cleanup import cleanup_model

    out_dir.mkdir(parents=True, exist_ok=True)
    meta = export_index(out_dir)  # names the latest export of this folder (Make and build read it)
    remove(meta)  # first: an export killed part-way leaves no index to an unfinished model
    model = model.eval()
    in_ch = _in_channels(model)
    shape = (
        (1, image_size, image_size, in_ch)
        if layout == "NHWC"
        else (1, in_ch, image_size, image_size)
    )
    digest = weights_hash(model)
    stem = f"{net}_{digest}" + ("" if layout == "NHWC" else "_nchw")
    logits_path = out_dir / f"{stem}_logits.onnx"
    topk_path = out_dir / f"{stem}.onnx"
    wrapped = UInt8Input(model, layout).eval()
    with torch.no_grad():
        export_qonnx(wrapped, torch.zeros(shape), export_path=str(logits_path))
    m = cleanup_model(ModelWrapper(str(logits_path)))
    # The graph input holds integers 0..255: say so, FINN's streamlining relies on it.
    m.set_tensor_datatype(m.graph.input[0].name, DataType["UINT8"])
    # and its layout: unannotated 4D inputs are taken as NCHW by FINN's layout inference, which
    # then refuses to convert the input thresholds once the Transpose is absorbed into them.
    m.set_tensor_layout(
        m.graph.input[0].name, DataLayout.NHWC if layout == "NHWC" else DataLayout.NCHW
    )
    m.model.doc_string = f"maskbnn {net}: uint8 {layout} image in, logits out (weights {digest})"
    m.save(str(logits_path))
    t = m.transform(InsertTopK(k=1)).transform(InferShapes())
    t.model.doc_string = (
        f"maskbnn {net}: uint8 {layout} image in, class index out (weights {digest})"
    )
    t.save(str(topk_path))
    write_json(
        meta,
        {
            "network": net,
            "weights_hash": digest,
            "layout": layout,
            "input_shape": list(shape),
            "input_dtype": "UINT8",
            "topk": topk_path.name,
            "logits": logits_path.name,
        },
    )
    return ExportResult(topk_path, logits_path, digest, meta)


def export_checkpoint(
    net: str, checkpoint: Path | None, out_dir: Path | None = None, layout: str = "NHWC"
) -> ExportResult:
    cfg = load_network_config(net)
    require_deployable(cfg)  # before any work: name what FINN cannot map
    model = load_model(net, checkpoint)
    out_dir = Path(out_dir) if out_dir else export_dir(net)
    return export_qonnx_files(model, net, out_dir, layout, cfg.model.image_size)


def _in_channels(model: nn.Module) -> int:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return int(m.in_channels)
    raise UserError("export supports the CNV family only (the model has no convolution)")


# --- CLI ---------------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--net", required=True, help="network name, e.g. mask_1w1a_0.25")
    p.add_argument("--checkpoint", type=Path, help="weights (default: the shipped pretrained ones)")
    p.add_argument("--out", type=Path, help="output folder (default build/<net>/export)")
    p.add_argument("--layout", choices=LAYOUTS, default="NHWC", help="input layout (default NHWC)")


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    res = export_checkpoint(args.net, args.checkpoint, args.out, args.layout)
    print(f"exported {rel(res.topk)}")
    print(f"exported {rel(res.logits)}")
    print(f"weights {res.weights_hash}, {time.perf_counter() - t0:.1f} s")
    return 0


def build_weights_hash(build: Path) -> str | None:
    """The weights hash of the export a build was made from (``<net>_<hash>.onnx``)."""
    info = BuildDir(Path(build)).summary
    if not info.is_file():
        return None
    stem = Path(json.loads(info.read_text()).get("input", "")).stem
    return stem.rsplit("_", 1)[-1] if "_" in stem else None
