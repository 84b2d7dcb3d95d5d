"""A faster training path for 1-bit Brevitas layers: the same values and gradients, fewer ops.

Brevitas computes a 1-bit activation as clamp (two `where`s, each with its own backward) -> sign STE
-> times a constant scale, through proxy objects and QuantTensor bookkeeping; a profile of one CNV
training step put ~30% of the time there. With scale 1 that is exactly: forward sign(x) (0 -> +1),
backward grad * (|x| <= 1). A 1-bit weight is sign(w) with a straight-through gradient. This module
swaps those forwards in for the duration of a `with` block (instance attributes, so the modules'
classes, state dicts and exported graphs are untouched) and only after probing each layer: a layer
whose quantiser does not behave as described keeps Brevitas' own forward.
tests/test_train_fast_binary.py checks outputs and every gradient are bit-identical to Brevitas'.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from brevitas.core.quant.binary import BinaryQuant, ClampedBinaryQuant
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear
from torch import nn


class _SignClampSte(torch.autograd.Function):
    """sign with 0 -> +1; gradient passes where |x| <= 1 (Brevitas' clamp to [-1, 1] then STE)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x.abs() <= 1.0)
        return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (inside,) = ctx.saved_tensors
        return grad * inside


class _SignSte(torch.autograd.Function):
    """sign with 0 -> +1; straight-through gradient (Brevitas' BinaryQuant with scale 1)."""

    @staticmethod
    def forward(ctx, w: torch.Tensor) -> torch.Tensor:
        return torch.where(w >= 0, 1.0, -1.0).to(w.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad


_PROBE = torch.tensor([-3.0, -1.0, -0.5, -0.0, 0.0, 0.25, 1.0, 3.0])


def _binary_act_ok(m: QuantIdentity) -> bool:
    """A 1-bit QuantIdentity with clamp range [-1, 1] and scale 1, returning plain tensors."""
    proxy = getattr(m.act_quant, "fused_activation_quant_proxy", None)
    if m.return_quant_tensor or proxy is None:
        return False
    if not isinstance(proxy.tensor_quant, ClampedBinaryQuant):
        return False
    if not isinstance(proxy.activation_impl, nn.Identity):
        return False
    tensor = next(iter(m.state_dict().values()), None)  # the probe goes where the layer is
    probe = _PROBE.to(tensor.device if isinstance(tensor, torch.Tensor) else "cpu")
    x = probe.clone().requires_grad_(True)
    out = m(x)
    out = out.value if hasattr(out, "value") else out
    out.sum().backward()
    want = torch.where(probe >= 0, 1.0, -1.0)
    return torch.equal(out.detach(), want) and torch.equal(x.grad, (probe.abs() <= 1).float())


def _binary_weight_ok(m: QuantConv2d | QuantLinear) -> bool:
    """1-bit weights at scale 1, no bias, no input/output quantisation, plain tensors out."""
    if m.bias is not None or m.return_quant_tensor:
        return False
    if m.input_quant.is_quant_enabled or m.output_quant.is_quant_enabled:
        return False
    if not isinstance(getattr(m.weight_quant, "tensor_quant", None), BinaryQuant):
        return False
    with torch.no_grad():
        q = m.quant_weight()
        q = q.value if hasattr(q, "value") else q
        return torch.equal(q, torch.where(m.weight >= 0, 1.0, -1.0))


def _conv_forward(m: QuantConv2d):
    def forward(x: torch.Tensor) -> torch.Tensor:
        w = _SignSte.apply(m.weight)
        return F.conv2d(x, w, None, m.stride, m.padding, m.dilation, m.groups)

    return forward


def _linear_forward(m: QuantLinear):
    def forward(x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, _SignSte.apply(m.weight))

    return forward


def _act_forward(x: torch.Tensor) -> torch.Tensor:
    return _SignClampSte.apply(x)


@contextlib.contextmanager
def fast_binary(model: nn.Module, enabled: bool = True) -> Iterator[int]:
    """Within the block, 1-bit layers of `model` run the fused forward; yields how many layers
    were switched. Everything is restored on exit, also on an exception."""
    patched: list[nn.Module] = []
    try:
        if enabled:
            for m in model.modules():
                if "forward" in m.__dict__:
                    continue  # a training method's own forward (models/brevitas_methods.py)
                if isinstance(m, QuantIdentity) and _binary_act_ok(m):
                    m.forward = _act_forward
                elif isinstance(m, QuantConv2d) and _binary_weight_ok(m):
                    if m.padding_mode != "zeros" or isinstance(m.padding, str):
                        continue
                    m.forward = _conv_forward(m)
                elif isinstance(m, QuantLinear) and _binary_weight_ok(m):
                    m.forward = _linear_forward(m)
                else:
                    continue
                patched.append(m)
        yield len(patched)
    finally:
        for m in patched:
            del m.forward
