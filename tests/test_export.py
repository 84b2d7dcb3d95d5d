"""Export: uint8 NHWC image in, pre-processing in the graph, TopK (and a logits variant) out."""

from __future__ import annotations

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper


def test_export_files_and_graph(built_025):
    from maskbnn.pipeline.export.qonnx_export import load_model, weights_hash

    exp = built_025["export"]
    model = load_model("mask_1w1a_0.25", built_025["checkpoint"])
    assert exp.weights_hash == weights_hash(model)
    assert exp.topk.name == f"mask_1w1a_0.25_{exp.weights_hash}.onnx"
    topk, logits = ModelWrapper(str(exp.topk)), ModelWrapper(str(exp.logits))
    for m in (topk, logits):
        inp = m.graph.input[0].name
        assert m.get_tensor_shape(inp) == [1, 32, 32, 3]
        assert m.get_tensor_datatype(inp).name == "UINT8"
        assert m.graph.node[0].op_type == "Transpose"
    assert topk.graph.node[-1].op_type == "TopK" and logits.graph.node[-1].op_type != "TopK"


def test_exported_graph_computes_the_model(built_025):
    """The in-graph /255 and 2x-1 reproduce the model on real uint8 images."""
    import torch

    from maskbnn.paths import SAMPLE_DIR
    from maskbnn.pipeline.data.datasets import load_dataset
    from maskbnn.pipeline.export.qonnx_export import load_model
    from maskbnn.pipeline.verify.stages import onnx_stage

    x = load_dataset("maskedface", SAMPLE_DIR, "all").x[:20]
    model = load_model("mask_1w1a_0.25", built_025["checkpoint"])
    with torch.no_grad():
        ref = model(torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255.0).numpy()
    got = onnx_stage(built_025["export"].logits, x)["output"]
    assert np.allclose(got, ref, atol=1e-4)
    assert np.array_equal(onnx_stage(built_025["export"].topk, x)["output"], ref.argmax(axis=1))
