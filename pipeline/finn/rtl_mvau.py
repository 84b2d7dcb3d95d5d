"""Put multi-bit-input, bipolar-weight MVAUs (a BNN's first conv) on FINN's DSP-based RTL MVU.

FINN+ 1.6.1's SpecializeLayers picks the RTL MVU (finn-rtllib/mvu, DSP48E1 on the xc7z020) only
for an MVAU without embedded thresholds whose weights are signed, at least 2 bits and, on
DSP48E1, narrow-range (``_mvu_rtl_possible``); with its default impl style it even wants 4-bit
weights. The first conv of our BNNs has 8-bit inputs, bipolar weights and its sign folded into
the MVAU, so it becomes an HLS MVAU in LUTs (24,460 LUT at 0.25x's fastest folding), while the
220 DSP48E1 slices stay unused. FINN has no rewrite that splits thresholds out of an MVAU or
retypes its weights, so we write our own: `SplitThresholdsForRtlMvau`.

For each such MVAU: the weights are retyped BIPOLAR -> INT2 (the values -1/+1 unchanged; INT2 is
signed and narrow there: -2 never occurs), the thresholds move to a standalone Thresholding node
after it (FINN picks its RTL variant), the MVAU outputs its accumulator (noActivation=1) and asks
for the RTL variant. The arithmetic is the same: the MVAU computed sum(w * x) with w in {-1, +1}
and compared it with the thresholds; now one node computes that sum and the next compares it.
FINN's minimize_bit_width steps then narrow the accumulator and round the thresholds to it.
"""

from __future__ import annotations

from onnx import helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.base import Transformation
from qonnx.transformation.infer_datatypes import InferDataTypes

from maskbnn.pipeline.finn import env as finn_env  # noqa: F401  (FINN's environment before importing it)


def splits(model: ModelWrapper, node) -> bool:
    """Whether `node` is a generic MVAU this rewrite applies to."""
    if node.op_type != "MVAU":
        return False
    inst = getCustomOp(node)
    return (
        not inst.get_nodeattr("binaryXnorMode")
        and not inst.get_nodeattr("noActivation")
        and inst.get_input_datatype(0).bitwidth() >= 2
        and inst.get_input_datatype(1) == DataType["BIPOLAR"]
        and model.get_initializer(node.input[1]) is not None
        and len(node.input) > 2
    )


class SplitThresholdsForRtlMvau(Transformation):
    """Multi-bit-input bipolar-weight MVAU with thresholds -> RTL-eligible MVAU + Thresholding."""

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        for index, node in enumerate(model.graph.node):
            if not splits(model, node):
                continue
            inst = getCustomOp(node)
            thresholds = node.input[2]
            acc = model.make_new_valueinfo_name()
            model.set_tensor_shape(acc, model.get_tensor_shape(node.output[0]))
            # the widest accumulator until FINN's minimize_accumulator_width narrows it
            acc_dt = DataType["INT32"]
            model.set_tensor_datatype(acc, acc_dt)
            thr = helper.make_node(
                "Thresholding",
                [acc, thresholds],
                [node.output[0]],
                domain="finn.custom_op.fpgadataflow",
                backend="fpgadataflow",
                NumChannels=int(inst.get_nodeattr("MH")),
                PE=1,
                numSteps=int(model.get_tensor_shape(thresholds)[1]),
                inputDataType=acc_dt.name,
                weightDataType=model.get_tensor_datatype(thresholds).name,
                outputDataType=inst.get_nodeattr("outputDataType"),
                numInputVectors=list(inst.get_nodeattr("numInputVectors")),
                ActVal=int(inst.get_nodeattr("ActVal")),
                name=f"Thresholding_{node.name}",
            )
            del node.input[2]
            node.output[0] = acc
            inst.set_nodeattr("noActivation", 1)
            inst.set_nodeattr("ActVal", 0)
            inst.set_nodeattr("outputDataType", acc_dt.name)
            inst.set_nodeattr("accDataType", acc_dt.name)
            inst.set_nodeattr("weightDataType", "INT2")
            inst.set_nodeattr("preferred_impl_style", "rtl")
            model.set_tensor_datatype(node.input[1], DataType["INT2"])
            model.graph.node.insert(index + 1, thr)
            return model.transform(InferDataTypes()), True
        return model, False


def step_split_rtl_mvau(model: ModelWrapper, cfg) -> ModelWrapper:
    """Our build step (after convert_to_hw, before the bit-width minimisation and
    specialize_layers): see the module doc."""
    return model.transform(SplitThresholdsForRtlMvau())


def step_keep_hls_mvau(model: ModelWrapper, cfg) -> ModelWrapper:
    """The same step with build.rtl_mvau off: the MVAU keeps its thresholds (FINN's HLS MVAU)."""
    return model
