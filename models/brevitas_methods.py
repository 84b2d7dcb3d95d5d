"""The papers' training methods on the Brevitas layers of a FINN-deployable network.

A deployable network (CNV, VGG-Small in FINN form) is built from Brevitas quantisers, which is what
export and FINN read. To train one with IR-Net's EDE and Libra-PB (or Bi-Real's ApproxSign, XNOR's
mean|W| scale, ReActNet's RSign threshold), `install_method` gives its 1-bit layers the method's
forward and backward as instance attributes (the modules' classes and state dicts stay Brevitas'),
and `bake` turns the trained network back into plain Brevitas layers that compute the same
function: the weight scales of Libra-PB / mean|W| and the RSign thresholds are positive per-channel
affine maps in front of a BatchNorm, so they fold into it, and Libra-PB's standardisation is a
per-channel shift whose sign pattern becomes the latent weight. FINN then folds the BatchNorm and
the sign into thresholds as for any CNV.

What cannot be baked into a Brevitas/FINN network is refused by `unsupported` (RPReLU and a learned
output scale act on a real-valued stream FINN does not have in these topologies).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear
from torch import nn

from maskbnn.models.binarize import _EdeState, binarize, sign
from maskbnn.models.method import BinaryMethod


class MethodState(_EdeState):
    """EDE's t and k for the installed forwards (set_ede / EdeAnneal find it); no parameters."""

    def __init__(self) -> None:
        super().__init__()
        self._init_ede()


def unsupported(method: BinaryMethod) -> list[str]:
    """Options of `method` a Brevitas/FINN network cannot carry, with the reason for each."""
    out = []
    if method.rprelu:
        out.append(
            "rprelu: RPReLU acts on ReActNet's real-valued residual stream; FINN maps no PReLU"
        )
    if method.learned_scale:
        out.append(
            "learned_scale: Real-to-Binary's scale may turn negative and is trained on a real stream; "
            "use weight_binarizer mean_abs or libra_pb for a per-channel scale FINN can fold"
        )
    if method.first_last != "int8":
        out.append("first_last: the FINN form has 8-bit first and last layers (first_last: int8)")
    return out


def _is_binary_act(m: nn.Module) -> bool:
    return isinstance(m, QuantIdentity) and m.act_quant.bit_width() == 1


def _is_binary_weight(m: nn.Module) -> bool:
    return isinstance(m, QuantConv2d | QuantLinear) and int(m.quant_weight().bit_width) == 1


def _standardized(w: torch.Tensor) -> torch.Tensor:
    """Libra-PB's per-output-channel standardisation (IR-Net, Qin et al., CVPR 2020, Eq. 6)."""
    flat = w.flatten(1)
    centred = flat - flat.mean(1, keepdim=True)
    return (centred / centred.std(1, keepdim=True).clamp_min(1e-12)).view_as(w)


def weight_scale(w: torch.Tensor, binarizer: str) -> torch.Tensor:
    """Positive per-output-channel scale of the binary weight, shape (out,), no gradient."""
    with torch.no_grad():
        if binarizer == "libra_pb":  # 2^round(log2(mean|w_hat|)) (IR-Net Eq. 8)
            return torch.exp2(torch.round(torch.log2(_standardized(w).abs().flatten(1).mean(1))))
        if binarizer == "mean_abs":  # alpha_c = mean|W_c| (XNOR-Net, Rastegari et al., ECCV 2016)
            return w.abs().flatten(1).mean(1)
        return torch.ones(w.shape[0], dtype=w.dtype)


def binary_weight(m: nn.Module, method: BinaryMethod, state: MethodState) -> torch.Tensor:
    """The method's forward weight of a 1-bit Brevitas layer (sign pattern x channel scale)."""
    w = _standardized(m.weight) if method.weight_binarizer == "libra_pb" else m.weight
    b = binarize(w, method.weight_grad, float(state.t), float(state.k))
    s = weight_scale(m.weight, method.weight_binarizer).view(-1, *([1] * (w.dim() - 1)))
    if method.weight_binarizer == "mean_abs":
        return (b * s).detach() + (b - b.detach())  # exact forward, unscaled gradient (Bi-Real)
    return b * s


def install_method(model: nn.Module, method: BinaryMethod) -> nn.Module:
    """Give the 1-bit layers of a Brevitas network the method's forward/backward (in place)."""
    bad = unsupported(method)
    if bad:
        raise ValueError("method not deployable in a Brevitas/FINN network: " + "; ".join(bad))
    state = MethodState()
    model.method_state = state
    for m in list(model.modules()):
        if _is_binary_act(m):
            channels = _channels_before(model, m)
            if method.rsign:
                m.rsign_threshold = nn.Parameter(torch.zeros(channels))
            m.forward = _act_forward(m, method, state)
        elif _is_binary_weight(m):
            m.forward = _weight_forward(m, method, state)
    return model


def _channels_before(model: nn.Module, act: nn.Module) -> int:
    prev = None
    for m in model.modules():
        if m is act:
            break
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            prev = m.num_features
    return int(prev or 1)


def _act_forward(m: QuantIdentity, method: BinaryMethod, state: MethodState):
    def forward(x: torch.Tensor) -> torch.Tensor:
        thr = getattr(m, "rsign_threshold", None)
        if thr is not None:  # ReActNet's RSign: sign(x - alpha_c)
            x = x - thr.view(1, -1, *([1] * (x.dim() - 2)))
        return binarize(x, method.estimator, float(state.t), float(state.k))

    return forward


def _weight_forward(m: nn.Module, method: BinaryMethod, state: MethodState):
    if isinstance(m, QuantConv2d):

        def forward(x: torch.Tensor) -> torch.Tensor:
            w = binary_weight(m, method, state)
            return F.conv2d(x, w, None, m.stride, m.padding, m.dilation, m.groups)

        return forward

    def forward_linear(x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, binary_weight(m, method, state))

    return forward_linear


@torch.no_grad()
def bake(model: nn.Module, method: BinaryMethod) -> nn.Module:
    """Plain Brevitas network computing what the installed method computes (in place): latent
    weights := the +-1 sign pattern, channel scales and RSign thresholds folded into the BatchNorm
    that follows each layer / precedes each sign; installed forwards removed."""
    modules = list(model.modules())
    for i, m in enumerate(modules):
        if "forward" in m.__dict__ and _is_binary_weight(m):
            w = _standardized(m.weight) if method.weight_binarizer == "libra_pb" else m.weight
            s = weight_scale(m.weight, method.weight_binarizer)
            m.weight.copy_(sign(w))
            _scale_bn_input(_next_bn(modules, i), s)
        elif "forward" in m.__dict__ and _is_binary_act(m):
            thr = m.__dict__.get("_parameters", {}).get("rsign_threshold")
            if thr is not None:
                bn = _previous_bn(modules, i)
                bn.bias.sub_(thr)  # sign(BN(x) - alpha) = sign(BN'(x)), beta' = beta - alpha
                del m.rsign_threshold
    for m in modules:
        m.__dict__.pop("forward", None)
    if hasattr(model, "method_state"):
        del model.method_state
    return model


def _next_bn(modules: list[nn.Module], i: int) -> nn.Module:
    for m in modules[i + 1 :]:
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            return m
        if isinstance(m, QuantConv2d | QuantLinear):
            break
    raise ValueError("a scaled binary layer must be followed by a BatchNorm to fold its scale into")


def _previous_bn(modules: list[nn.Module], i: int) -> nn.Module:
    for m in reversed(modules[:i]):
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            return m
    raise ValueError("an RSign threshold needs a BatchNorm in front of its sign")


def _scale_bn_input(bn: nn.Module, s: torch.Tensor) -> None:
    """BN(s * z) == BN'(z) for a positive per-channel s: mean' = mean / s and
    var' + eps = (var + eps) / s^2 (exact for Libra-PB's powers of two, up to the float add)."""
    if torch.all(s == 1):
        return
    eps = bn.eps
    bn.running_mean.div_(s)
    bn.running_var.copy_((bn.running_var + eps) / s.square() - eps)


def bake_if_installed(model: nn.Module, method: dict | None) -> nn.Module:
    """`bake` when the registry installed a method (config `model.method`), else the model as is:
    every path that exports, counts or hashes a deployable network goes through here."""
    if hasattr(model, "method_state"):
        bake(model, BinaryMethod.from_dict(method, "model.method"))
    return model
