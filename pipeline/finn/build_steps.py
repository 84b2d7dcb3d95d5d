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

The other: binary convolutions padded with -1 (the value the hardware pads with), which FINN has no
rewrite for; `step_streamline_bipolar_pad` replaces FINN's step_streamline (see the note below).
"""

from __future__ import annotations

import contextlib
import copy
import io
import math

from onnx import helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.base import Transformation
from qonnx.transformation.infer_datatypes import InferDataTypes

from maskbnn.errors import UserError
from maskbnn.pipeline.finn import env as finn_env  # noqa: F401  (FINN's environment before importing it)


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


# --- binary convs padded with -1 ----------------------------------------------------------------
# FINN pads a binary feature map with bit 0 (FMPadding), which after the XNOR conversion means -1;
# it has no rewrite for an explicit Pad node, so a network padding its signs with -1 (the value
# the hardware inserts) exports as Pad(-1) -> Conv and stalls in streamlining. We write our own:
# fold the Pad into the Conv's pads right before FINN's streamlining, which ends with the XNOR
# conversion that gives those zero pads their -1 meaning. The guard afterwards makes sure that
# conversion happened for every padded conv; otherwise the build would silently pad with 0.


def _pad_value_and_amounts(model: ModelWrapper, node) -> tuple[float, list[int]] | None:
    """(constant, [top, left, bottom, right]) of a spatial-only constant NCHW Pad, else None."""
    mode = next((a.s.decode() for a in node.attribute if a.name == "mode"), "constant")
    pads = model.get_initializer(node.input[1]) if len(node.input) > 1 else None
    if mode != "constant" or pads is None or len(pads) != 8:
        return None
    pads = [int(p) for p in pads]
    if any(pads[i] for i in (0, 1, 4, 5)):  # batch or channel padding
        return None
    value = 0.0
    if len(node.input) > 2 and node.input[2]:
        v = model.get_initializer(node.input[2])
        if v is None:
            return None
        value = float(v.reshape(-1)[0])
    return value, [pads[2], pads[3], pads[6], pads[7]]


class AbsorbBipolarPadIntoConv(Transformation):
    """Pad(-1) of a bipolar tensor feeding a Conv -> the Conv's own pads (see the note above)."""

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        for node in model.graph.node:
            if node.op_type != "Pad":
                continue
            spec = _pad_value_and_amounts(model, node)
            consumers = model.find_consumers(node.output[0]) or []
            if spec is None or spec[0] != -1.0 or len(consumers) != 1:
                continue
            conv = consumers[0]
            if (
                conv.op_type != "Conv"
                or model.get_tensor_datatype(node.input[0]) != DataType["BIPOLAR"]
            ):
                continue
            own = next((list(a.ints) for a in conv.attribute if a.name == "pads"), [0, 0, 0, 0])
            if any(own):
                continue
            for a in list(conv.attribute):
                if a.name == "pads":
                    conv.attribute.remove(a)
            conv.attribute.append(helper.make_attribute("pads", spec[1]))
            conv.input[0] = node.input[0]
            model.graph.node.remove(node)
            return model, True
        return model, False


def step_streamline_bipolar_pad(model: ModelWrapper, cfg) -> ModelWrapper:
    """FINN's step_streamline, with -1 padding of binary convs absorbed first and checked after."""
    from finn.builder.build_dataflow_steps import step_streamline

    padded = sum(n.op_type == "Pad" for n in model.graph.node)
    model = model.transform(InferDataTypes()).transform(AbsorbBipolarPadIntoConv())
    left = [n.name for n in model.graph.node if n.op_type == "Pad"]
    if left:
        raise UserError(
            f"{len(left)} Pad node(s) FINN cannot map ({', '.join(left)}): only -1 padding of a "
            "binary (+-1) activation in front of a convolution is supported; pad with -1 "
            "(models/vgg_small_finn.py BipolarPad) or use an unpadded convolution"
        )
    joins = _has_join(model)
    if joins:
        model = streamline_residual(model)
    model = step_streamline(model, cfg)
    if joins:
        model = residual_to_nhwc(model)
    if padded:
        for node in model.get_nodes_by_op_type("Im2Col"):
            amounts = getCustomOp(node).get_nodeattr("pad_amount")
            if any(amounts) and model.get_tensor_datatype(node.input[0]) != DataType["BINARY"]:
                raise UserError(
                    f"{node.name}: a -1-padded convolution was not converted to XNOR-popcount "
                    f"(its input is {model.get_tensor_datatype(node.input[0]).name}); the "
                    "hardware would pad with 0, not -1"
                )
    return model


# --- residual networks ------------------------------------------------------------------------------
# FINN's Streamline stops at a residual add: the shared quantiser's scale sits as a Mul on both of
# the add's inputs and, on the shortcut, in front of a fork, where no Absorb rewrite applies. FINN
# has the rewrites (MoveScalarLinearPastFork, MoveLinearPastEltwiseAdd) but step_streamline does not
# run them; we alternate them with Streamline until the graph stops changing, then hand over to
# FINN's step_streamline for lowering, XNOR conversion and the final absorptions.


def _has_join(model: ModelWrapper) -> bool:
    return any(
        n.op_type == "Add" and all(model.get_initializer(i) is None for i in n.input)
        for n in model.graph.node
    )


class SplitForkedBipolarThresholds(Transformation):
    """A sign (bipolar MultiThreshold) read by two convolutions -> one sign per convolution.

    qonnx's ConvertBipolarMatMulToXnorPopcount turns the sign feeding a MatMul into a {0, 1}
    output; a second MatMul reading that sign then either raises (behind an Im2Col, whose output
    still says BIPOLAR) or silently multiplies 0s where -1s were. A down-sampling block's sign feeds
    both the 3x3 conv and the 1x1 shortcut. With one sign each, both convert; in hardware the
    integer stream forks in front of two threshold units."""

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        for node in model.graph.node:
            if node.op_type != "MultiThreshold":
                continue
            if getCustomOp(node).get_nodeattr("out_dtype") != "BIPOLAR":
                continue
            consumers = model.find_consumers(node.output[0]) or []
            if len(consumers) < 2:
                continue
            index = list(model.graph.node).index(node)
            for k, consumer in enumerate(consumers[1:], start=1):
                twin = copy.deepcopy(node)
                twin.name = f"{node.name}_fork{k}"
                twin.output[0] = model.make_new_valueinfo_name()
                model.set_tensor_shape(twin.output[0], model.get_tensor_shape(node.output[0]))
                model.set_tensor_datatype(twin.output[0], DataType["BIPOLAR"])
                for i, name in enumerate(consumer.input):
                    if name == node.output[0]:
                        consumer.input[i] = twin.output[0]
                model.graph.node.insert(index + k, twin)
            return model, True
        return model, False


def streamline_residual(model: ModelWrapper, rounds: int = 6) -> ModelWrapper:
    """Scales moved past forks and residual adds into the thresholds that follow them."""
    from finn.transformation.streamline import Streamline
    from finn.transformation.streamline.reorder import (
        MoveLinearPastEltwiseAdd,
        MoveScalarLinearPastFork,
    )

    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log):  # FINN prints a line per residual add and round
            for _ in range(rounds):
                before = model.model.SerializeToString()
                model = model.transform(Streamline())
                model = model.transform(MoveScalarLinearPastFork())
                model = model.transform(MoveLinearPastEltwiseAdd())
                model = model.transform(InferDataTypes())
                if model.model.SerializeToString() == before:
                    break
    finally:
        for line in log.getvalue().splitlines():
            if "Bias not constant" not in line:  # the residual adds themselves: expected
                print(line)
    return model.transform(SplitForkedBipolarThresholds())


def residual_to_nhwc(model: ModelWrapper, rounds: int = 8) -> ModelWrapper:
    """After lowering, the adds are left in NCHW between Transposes: move the Transposes past
    forks and adds and through thresholds until they meet and cancel, as FINN's own lowering
    does for a chain."""
    from finn.transformation.streamline.absorb import (
        AbsorbConsecutiveTransposes,
        AbsorbTransposeIntoMultiThreshold,
    )
    from finn.transformation.streamline.reorder import (
        MoveTransposePastFork,
        MoveTransposePastJoinAdd,
    )
    from qonnx.transformation.infer_data_layouts import InferDataLayouts

    for _ in range(rounds):
        before = model.model.SerializeToString()
        for t in (MoveTransposePastFork(), MoveTransposePastJoinAdd(),
                  AbsorbTransposeIntoMultiThreshold(), AbsorbConsecutiveTransposes()):  # fmt: skip
            model = model.transform(t)
        model = model.transform(InferDataTypes()).transform(InferDataLayouts())
        if model.model.SerializeToString() == before:
            break
    return model


# --- XNOR MVAUs with a multi-bit output --------------------------------------------------------------
# FINN+ 1.6.1's InferBinaryMatrixVectorActivation gives an XNOR-popcount MVAU that absorbs a
# multi-bit MultiThreshold the activation offset ActVal = odt.min() instead of the threshold's
# out_bias (its quantized counterpart reads out_bias). A narrow-range INT4 quantiser (outputs
# -7..7, out_bias -7) thus becomes -8..6 in hardware: a ResNet's residual quantiser after a binary
# conv is exactly that case, and the golden chain fails on it. We record each out_bias before the
# conversion and put it back after.


def _xnor_threshold_biases(model: ModelWrapper) -> dict[str, int]:
    out = {}
    for node in model.get_nodes_by_op_type("XnorPopcountMatMul"):
        consumers = model.find_consumers(node.output[0]) or []
        if len(consumers) != 1 or consumers[0].op_type != "MultiThreshold":
            continue
        mt = getCustomOp(consumers[0])
        if DataType[mt.get_nodeattr("out_dtype")].bitwidth() == 1:
            continue  # binary / bipolar outputs: FINN's ActVal 0 is right
        bias = float(mt.get_nodeattr("out_bias"))
        if bias != int(bias):
            raise UserError(f"{consumers[0].name}: out_bias {bias} is not an integer")
        out[consumers[0].output[0]] = int(bias)  # the MVAU keeps this output tensor
    return out


def step_convert_to_hw_actval_safe(model: ModelWrapper, cfg) -> ModelWrapper:
    """FINN's step_convert_to_hw, with the XNOR MVAUs' ActVal taken from their thresholds."""
    from finn.builder.build_dataflow_steps import step_convert_to_hw

    biases = _xnor_threshold_biases(model)
    model = step_convert_to_hw(model, cfg)
    for node in model.graph.node:
        if node.op_type.startswith("MVAU") and node.output[0] in biases:
            getCustomOp(node).set_nodeattr("ActVal", biases[node.output[0]])
    return model
