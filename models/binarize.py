"""Binary layers of the papers' training methods, in plain PyTorch: sign estimators (clipped STE,
EDE, ApproxSign), weight binarisers (sign, Libra-PB, per-channel mean|W|), learnable thresholds
(RSign), and the EDE schedule. `BinaryMethod` (models/method.py) says which to use.

Convention: sign(0) = +1 everywhere, as Brevitas' binary quantisers and FINN's hardware compute
(bit 1 means +1, bit 0 means -1). The IR-Net and ReActNet code use torch.sign, which maps 0 to 0;
we deviate on purpose so a trained network means the same thing in the hardware.

Each forward returns exact +-1 (times a per-channel scale for weights); only the backward differs.
tests/test_binary_methods.py checks every forward and backward against its formula.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from maskbnn.models.method import ESTIMATORS, WEIGHT_BINARIZERS, BinaryMethod

# IR-Net's initial EDE state (t = T_min = 0.1, k = 1/t); EdeAnneal overwrites it every epoch.
EDE_T0, EDE_K0 = 0.1, 10.0


def sign(x: torch.Tensor) -> torch.Tensor:
    """+1 where x >= 0, else -1 (sign(0) = +1, see the module docstring)."""
    return (x >= 0).to(x.dtype) * 2 - 1


# --- sign estimators ------------------------------------------------------------------------------
class SignSte(torch.autograd.Function):
    """Clipped straight-through estimator (Hubara et al., "Binarized Neural Networks", NeurIPS 2016;
    BNN-PYNQ / Brevitas: clamp to [-1, 1] then STE): backward grad * 1{|x| <= 1}."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return sign(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= 1).to(grad.dtype)


class SignIdentity(torch.autograd.Function):
    """Unclipped STE: backward grad (Brevitas' BinaryQuant on weights, BNN-PYNQ)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return sign(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad


class SignEde(torch.autograd.Function):
    """Error Decay Estimator (Qin et al., "Forward and Backward Information Retention for Accurate
    Binary Neural Networks" (IR-Net), CVPR 2020, Eq. 11-12): backward k * t * (1 - tanh^2(t x)),
    t annealed from T_min to T_max over training (`ede_schedule`), k = max(1/t, 1)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, t: float, k: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.t, ctx.k = float(t), float(k)
        return sign(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        t, k = ctx.t, ctx.k
        return grad * (k * t * (1 - torch.tanh(t * x).square())), None, None


class SignApprox(torch.autograd.Function):
    """ApproxSign (Liu et al., "Bi-Real Net", ECCV 2018, Eq. 5): the derivative of the piecewise
    polynomial -1 | 2x + x^2 | 2x - x^2 | 1, i.e. backward 2 + 2x on [-1, 0), 2 - 2x on [0, 1),
    0 elsewhere (= 2 - 2|x| clipped at 0). ReActNet's RSign uses the same backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return sign(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * (2 - 2 * x.abs()).clamp_min(0)


def binarize(
    x: torch.Tensor, rule: str, t: float | torch.Tensor = EDE_T0, k: float | torch.Tensor = EDE_K0
) -> torch.Tensor:
    """sign(x) with the backward `rule`: ste/clipped, identity, ede, approxsign."""
    if rule in ("ste", "clipped"):
        return SignSte.apply(x)
    if rule == "identity":
        return SignIdentity.apply(x)
    if rule == "ede":
        return SignEde.apply(x, t, k)
    if rule == "approxsign":
        return SignApprox.apply(x)
    raise ValueError(f"unknown sign estimator {rule!r}")


def ede_schedule(
    epoch: int, epochs: int, t_min: float = 0.1, t_max: float = 10.0
) -> tuple[float, float]:
    """IR-Net's EDE state for a 0-based epoch: t = T_min * 10^(e/E * log10(T_max/T_min)) (log-linear
    from T_min at e = 0 to T_max at e = E), k = max(1/t, 1). Defaults T_min = 0.1, T_max = 10 as the
    paper and its VGG-Small code (its ResNet-20 code uses T_min = 1e-3)."""
    t = t_min * 10 ** (epoch / epochs * math.log10(t_max / t_min))
    return t, max(1.0 / t, 1.0)


def set_ede(model: nn.Module, t: float, k: float) -> None:
    """Set the EDE state of every layer of `model` that has one."""
    for m in model.modules():
        if isinstance(m, _EdeState):
            m.set_ede(t, k)


class _EdeState(nn.Module):
    """Holds EDE's t and k as non-persistent buffers: they follow .to(), stay out of state dicts
    (the forward does not depend on them), and are reset by EdeAnneal at every epoch start."""

    def _init_ede(self) -> None:
        self.register_buffer("t", torch.tensor(EDE_T0), persistent=False)
        self.register_buffer("k", torch.tensor(EDE_K0), persistent=False)

    def set_ede(self, t: float, k: float) -> None:
        self.t.fill_(float(t))
        self.k.fill_(float(k))


# --- activations ----------------------------------------------------------------------------------
class BinaryActivation(_EdeState):
    """+-1 activations with the backward of `estimator` ("ste", "ede", "approxsign").

    learnable_threshold=True makes it ReActNet's RSign (Liu et al., "ReActNet", ECCV 2020, Eq. 2):
    sign(x - alpha_c) with a learnable per-channel threshold alpha (init 0; ReActNet writes it as a
    learnable bias added before the sign, alpha = -bias)."""

    def __init__(
        self, estimator: str = "ste", channels: int | None = None, learnable_threshold: bool = False
    ) -> None:
        super().__init__()
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator {estimator!r} unknown; choose one of {list(ESTIMATORS)}")
        self.estimator = estimator
        self._init_ede()
        if learnable_threshold:
            if not channels:
                raise ValueError("a learnable threshold (RSign) needs the channel count")
            self.threshold = nn.Parameter(torch.zeros(channels))
        else:
            self.register_parameter("threshold", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.threshold is not None:
            x = x - _per_channel(self.threshold, x)
        return binarize(x, self.estimator, float(self.t), float(self.k))

    def extra_repr(self) -> str:
        rsign = f", rsign({self.threshold.numel()})" if self.threshold is not None else ""
        return f"estimator={self.estimator}{rsign}"


def _per_channel(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A (C,) vector shaped to broadcast over dim 1 of x (N, C, ...)."""
    return v.view(1, -1, *([1] * (x.dim() - 2))).to(x.dtype)


# --- weights --------------------------------------------------------------------------------------
class _BinaryWeights(_EdeState):
    """Weight binarisation shared by BinaryConv2d and BinaryLinear (mixed in before nn.Conv2d/Linear).

    sign      w_b = sign(w), scale 1 (BNN-PYNQ; Courbariaux/Hubara et al. 2016)
    libra_pb  IR-Net's Libra Parameter Binarization (Qin et al., CVPR 2020, Eq. 6-8): per output
              channel w_hat = (w - mean) / std, w_b = sign(w_hat) * 2^round(log2(mean|w_hat|)); the
              power-of-two scale is detached as in the authors' code, the gradient flows through the
              standardisation (std is torch's unbiased std, as their code)
    mean_abs  per output channel alpha_c = mean|W_c| (Rastegari et al., "XNOR-Net", ECCV 2016; Bi-Real
              and ReActNet code), w_b = alpha_c * sign(W_c), alpha detached as in the Bi-Real code
    """

    is_binary = True  # 1-bit weights and 1-bit inputs: the ops counter counts BOPs

    def _init_binary(
        self,
        weight_binarizer: str,
        estimator: str,
        weight_estimator: str | None,
        binarize_input: bool,
    ) -> None:
        if weight_binarizer not in WEIGHT_BINARIZERS:
            raise ValueError(
                f"weight_binarizer {weight_binarizer!r} unknown; choose one of {list(WEIGHT_BINARIZERS)}"
            )
        method = BinaryMethod(
            estimator=estimator,
            weight_binarizer=weight_binarizer,
            weight_estimator=weight_estimator,
        )
        self.weight_binarizer = weight_binarizer
        self.weight_grad = method.weight_grad
        self._init_ede()
        self.act = BinaryActivation(estimator) if binarize_input else None

    def _standardized(self) -> torch.Tensor:
        w = self.weight.flatten(1)
        centred = w - w.mean(1, keepdim=True)
        # IR-Net divides by the std without an epsilon; the clamp only guards a constant channel.
        return (centred / centred.std(1, keepdim=True).clamp_min(1e-12)).view_as(self.weight)

    def weight_scale(self) -> torch.Tensor:
        """The positive per-output-channel scale of the forward weight, shape (out,)."""
        with torch.no_grad():
            return self._scale().flatten()

    def _scale(self, standardized: torch.Tensor | None = None) -> torch.Tensor:
        """Per-output-channel scale shaped (out, 1, ...), no gradient (detached in every source)."""
        shape = (-1,) + (1,) * (self.weight.dim() - 1)
        if self.weight_binarizer == "sign":
            return torch.ones(self.weight.shape[0], dtype=self.weight.dtype).view(shape)
        if self.weight_binarizer == "libra_pb":
            w_hat = self._standardized() if standardized is None else standardized
            mean_abs = w_hat.detach().abs().flatten(1).mean(1)
            return torch.exp2(torch.round(torch.log2(mean_abs))).view(shape)
        return self.weight.detach().abs().flatten(1).mean(1).view(shape)

    def binary_weight(self) -> torch.Tensor:
        """The forward weight: sign pattern times the per-channel scale, with the method's backward.
        libra_pb: the gradient is scaled by the power of two (IR-Net's code multiplies after the
        sign); mean_abs: it is not (Bi-Real's and ReActNet's code add the scaled sign as a
        detached constant to the clipped latent weight)."""
        w = self._standardized() if self.weight_binarizer == "libra_pb" else self.weight
        b = binarize(w, self.weight_grad, float(self.t), float(self.k))
        scale = self._scale(w if self.weight_binarizer == "libra_pb" else None)
        if self.weight_binarizer == "mean_abs":
            return (b * scale).detach() + (b - b.detach())  # exact forward, unscaled gradient
        return b * scale

    def _binary_input(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x) if self.act is not None else x

    def clip_weights(self, low: float, high: float) -> None:
        """BNN-PYNQ clips latent weights after every step; only meaningful for the plain sign
        binariser with an unclipped STE (the others standardise or clip in the backward)."""
        if self.weight_binarizer == "sign":
            self.weight.data.clamp_(low, high)

    def _binary_repr(self) -> str:
        return f", weight_binarizer={self.weight_binarizer}, weight_grad={self.weight_grad}"


class BinaryConv2d(_BinaryWeights, nn.Conv2d):
    """Conv with binary weights and (binarize_input=True) binary inputs.

    The module pads by itself with F.pad(value=pad_value), then convolves with padding 0:
    pad_value=-1.0 is what FINN's hardware does on binary activations (it pads with bit 0, which
    means -1); 0.0 is PyTorch's zero padding, which the hardware does not reproduce (the padding
    trap). `self.padding` keeps the nominal amount, so output shapes and op counts read as usual."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = False,
        weight_binarizer: str = "sign",
        estimator: str = "ste",
        pad_value: float = 0.0,
        *,
        binarize_input: bool = True,
        weight_estimator: str | None = None,
    ) -> None:
        nn.Conv2d.__init__(
            self, in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias
        )
        self._init_binary(weight_binarizer, estimator, weight_estimator, binarize_input)
        self.pad_value = float(pad_value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._binary_input(x)
        ph, pw = self.padding
        if ph or pw:
            x = F.pad(x, (pw, pw, ph, ph), value=self.pad_value)
        return F.conv2d(x, self.binary_weight(), self.bias, self.stride, 0, self.dilation)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", pad_value={self.pad_value}" + self._binary_repr()


class BinaryLinear(_BinaryWeights, nn.Linear):
    """Linear layer with binary weights and (binarize_input=True) binary inputs."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = False,
        weight_binarizer: str = "sign",
        estimator: str = "ste",
        *,
        binarize_input: bool = True,
        weight_estimator: str | None = None,
    ) -> None:
        nn.Linear.__init__(self, in_features, out_features, bias=bias)
        self._init_binary(weight_binarizer, estimator, weight_estimator, binarize_input)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self._binary_input(x), self.binary_weight(), self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + self._binary_repr()


# --- 8-bit first and last layers --------------------------------------------------------------------
class _RoundSte(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad


def int8_weight(w: torch.Tensor) -> torch.Tensor:
    """Symmetric narrow-range 8-bit fake quantisation, one scale per tensor (max|w| / 127, as
    Brevitas' Int8WeightPerTensorFloat), straight-through gradient."""
    scale = w.detach().abs().max().clamp_min(1e-12) / 127.0
    return _RoundSte.apply(w / scale).clamp(-127, 127) * scale


class Int8Conv2d(nn.Conv2d):
    """Conv with 8-bit weights (first layer in FINN-mappable form); zero padding (real input)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, int8_weight(self.weight), self.bias)


class Int8Linear(nn.Linear):
    """Linear with 8-bit weights (last layer in FINN-mappable form)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, int8_weight(self.weight), self.bias)


# --- builders the network families share ----------------------------------------------------------
def make_activation(method: BinaryMethod, channels: int) -> BinaryActivation:
    """The sign before a binary layer: the method's estimator, RSign when method.rsign."""
    return BinaryActivation(method.estimator, channels, learnable_threshold=method.rsign)


def make_conv(
    method: BinaryMethod, cin: int, cout: int, kernel: int = 3, stride: int = 1, padding: int = 1
) -> BinaryConv2d:
    """A binary conv fed by an explicit `make_activation` (its input is already +-1)."""
    return BinaryConv2d(
        cin,
        cout,
        kernel,
        stride,
        padding,
        weight_binarizer=method.weight_binarizer,
        estimator=method.estimator,
        pad_value=method.pad_value,
        binarize_input=False,
        weight_estimator=method.weight_estimator,
    )


def first_conv(
    method: BinaryMethod, cin: int, cout: int, kernel: int = 3, stride: int = 1, padding: int = 1
) -> nn.Conv2d:
    """Full precision (the papers) or 8-bit weights (FINN); no bias, a BatchNorm follows."""
    cls = Int8Conv2d if method.first_last == "int8" else nn.Conv2d
    return cls(cin, cout, kernel, stride=stride, padding=padding, bias=False)


def last_linear(method: BinaryMethod, features: int, classes: int) -> nn.Linear:
    cls = Int8Linear if method.first_last == "int8" else nn.Linear
    return cls(features, classes)


def last_input(method: BinaryMethod, channels: int) -> nn.Module:
    """What feeds the last FC: a real-valued Hardtanh as IR-Net's code with a float last layer;
    the binary activation with an 8-bit last layer (FINN: 1-bit inputs x 8-bit weights)."""
    if method.first_last == "int8":
        return make_activation(method, channels)
    return nn.Hardtanh()


def init_weights(model: nn.Module) -> None:
    """Kaiming-normal (fan-out) convs as IR-Net's and torchvision's ResNets, BN to (1, 0)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def clip_binary_weights(model: nn.Module, low: float, high: float) -> None:
    for m in model.modules():
        if isinstance(m, _BinaryWeights):
            m.clip_weights(low, high)


__all__ = [
    "BinaryActivation",
    "BinaryConv2d",
    "BinaryLinear",
    "BinaryMethod",
    "Int8Conv2d",
    "Int8Linear",
    "SignApprox",
    "SignEde",
    "SignIdentity",
    "SignSte",
    "ede_schedule",
    "set_ede",
    "sign",
]
