"""Our own build steps and graph rewrites, with FINN's step signature ``step(model, cfg) -> model``.

The one that matters: FINN+ 1.6.1's bit-width minimisation gives XNOR-popcount MVAUs an accumulator
(and, without activation, an output) type that is too narrow. ``MVAU.minimize_accumulator_width``
maps the binary weights to bipolar and bounds ``sum(+-1 * x)`` for x in {0, 1}, i.e. a signed range
of about +-MW/2, but in binaryXnorMode the accumulator holds ``popcount(xnor(x, w))``, which spans
[0, MW]. A 128-input popcount reaches 128 and FINN picks INT8: the hardware wraps it to -128 (the
last layer's class scores), and RoundAndClipThresholds clips any threshold above 127 of the
thresholded layers. `FixXnorPopcountWidths` sets the true popcount range before thresholds are
rounded and clipped; `step_minimize_bit_width_xnor_safe` runs FINN's minimisation with that fix in
between and replaces both of FINN's minimize_bit_width steps in our step list.
"""

from __future__ import annotations

import math

from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.base import Transformation
from qonnx.transformation.infer_datatypes import InferDataTypes

from maskbnn.pipeline import finn_env  # noqa: F401  (FINN's environment before importing it)


def popcount_dtype(mw: int, last: bool) -> DataType:
    """Smallest unsigned type holding 0..MW; byte-aligned for a graph output (as FINN does)."""
    bits = max(1, math.ceil(math.log2(mw + 1)))
    if last:
        bits = 8 * math.ceil(bits / 8)
    return DataType[f"UINT{bits}"]


class FixXnorPopcountWidths(Transformation):
    """Give every XNOR-popcount MVAU an accumulator type that holds [0, MW] (see module doc)."""

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        changed = False
        for node in model.graph.node:
            if not node.op_type.startswith("MVAU"):
                continue
            inst = getCustomOp(node)
            if not inst.get_nodeattr("binaryXnorMode"):
                continue
            mw = int(inst.get_nodeattr("MW"))
            last = model.find_direct_successors(node) is None
            want = popcount_dtype(mw, last and bool(inst.get_nodeattr("noActivation")))
            have = DataType[inst.get_nodeattr("accDataType")]
            if have.min() <= 0 and have.max() >= mw and have.bitwidth() <= want.bitwidth():
                continue  # already holds the whole popcount range without waste
            inst.set_nodeattr("accDataType", want.name)
            if inst.get_nodeattr("noActivation"):
                inst.set_nodeattr("outputDataType", want.name)
                model.set_tensor_datatype(node.output[0], want)
            changed = True
        return model, changed


def step_minimize_bit_width_xnor_safe(model: ModelWrapper, cfg) -> ModelWrapper:
    """FINN's minimize_bit_width (weights, accumulators, thresholds), with the XNOR popcount
    accumulators corrected *before* thresholds are rounded and clipped to the accumulator range."""
    from finn.transformation.fpgadataflow.minimize_accumulator_width import (
        MinimizeAccumulatorWidth,
    )
    from finn.transformation.fpgadataflow.minimize_weight_bit_width import MinimizeWeightBitWidth
    from finn.transformation.streamline.round_thresholds import RoundAndClipThresholds

    if cfg.minimize_bit_width:
        model = model.transform(MinimizeWeightBitWidth())
        model = model.transform(MinimizeAccumulatorWidth())
        model = model.transform(InferDataTypes())
    model = model.transform(FixXnorPopcountWidths())
    model = model.transform(InferDataTypes())
    model = model.transform(RoundAndClipThresholds())
    model = model.transform(InferDataTypes())
    if cfg.minimize_bit_width:
        model = model.transform(MinimizeWeightBitWidth())
        model = model.transform(InferDataTypes())
    return model


def step_minimize_bit_width_finn(model: ModelWrapper, cfg) -> ModelWrapper:
    """FINN's own step, unfixed: only for demonstrating that verification catches its bug."""
    from finn.builder.build_dataflow_steps import step_minimize_bit_width

    return step_minimize_bit_width(model, cfg)
