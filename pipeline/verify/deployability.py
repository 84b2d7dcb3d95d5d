"""Can FINN carry this network? Decided from its config before anything is exported or built.

`reasons(cfg)` lists what a FINN dataflow accelerator cannot map in a network, each with what would
make it deployable; an empty list means export -> build -> verify is expected to work (the golden
chain still decides whether it is bit-exact). `maskbnn export` and `maskbnn build` refuse with
these reasons instead of failing half-way through FINN.

The plain-PyTorch method families (models/vgg_small.py, resnet_cifar.py, alexnet_small.py) are the
papers' training networks. They are trained and evaluated here, but their layers are not Brevitas
quantisers, so no QONNX can describe them; the FINN form of VGG-Small (models/vgg_small_finn.py)
trains with the same methods (model.method) and deploys.
"""

from __future__ import annotations

from maskbnn.config import NetworkConfig
from maskbnn.errors import UserError
from maskbnn.models.method import BinaryMethod

DEPLOYABLE_FAMILIES = ("cnv", "vgg_small_finn", "resnet20_finn")
FINN_FORM = "vgg_small_finn_* (models/vgg_small_finn.py) trained with the same model.method"
RESNET_FINN_FORM = "resnet20_finn_* (models/resnet20_finn.py) trained with the same model.method"


def reasons(cfg: NetworkConfig) -> list[str]:
    """What FINN cannot map in `cfg`'s network, each with the remedy; [] when deployable."""
    model = cfg.model
    out: list[str] = []
    method = _method(cfg)
    if model.family in DEPLOYABLE_FAMILIES:
        if model.family != "cnv" and method is not None:
            from maskbnn.models.brevitas_methods import unsupported

            out += unsupported(method)
            if model.family == "resnet20_finn" and method.rsign:
                from maskbnn.models.registry import RESNET_RSIGN

                out.append(RESNET_RSIGN)
        return out
    if model.family == "fc":
        return [
            "FC family: maskbnn's export and build handle convolutional networks only (FINN itself "
            "builds TFC/SFC/LFC, see finn-examples bnn-pynq); use a CNV-family network"
        ]
    if method is None:
        return [f"family {model.family!r} has no FINN mapping in maskbnn"]
    out.append(
        f"{model.family}: plain-PyTorch training network (no Brevitas quantisers), so no QONNX "
        f"export exists; deployable form: "
        f"{RESNET_FINN_FORM if model.family in ('resnet20', 'resnet18') else FINN_FORM}"
    )
    if model.family in ("vgg_small", "alexnet_small"):
        out.append(
            "max-pool between the convolution and its BatchNorm: FINN folds BN + sign into "
            "thresholds only next to each other (a pooled BN with a negative scale is not "
            "monotone); use the order conv -> BN -> sign -> pool"
        )
    if model.family in ("resnet20", "resnet18"):
        out.append(
            "real-valued residual additions: FINN adds integer streams only; quantise the "
            "residual stream with one shared quantiser at every add, or drop the shortcuts"
        )
    if model.family == "resnet18":
        out.append(
            "real-valued downsampling shortcut (avg-pool + full-precision 1x1 conv): make it an "
            "integer-weight conv on a quantised stream"
        )
    if method.first_last == "float":
        out.append("full-precision first conv and last FC: set model.method.first_last: int8")
    if method.rprelu:
        out.append("RPReLU (a per-channel PReLU on a real stream): FINN has no PReLU layer")
    if method.learned_scale:
        out.append(
            "learned per-channel output scale on a real stream: fold a positive scale into BN "
            "(weight_binarizer mean_abs/libra_pb do) or drop it"
        )
    if method.pad_value == 0.0:
        out.append(
            "zero padding of binary feature maps: the hardware pads with bit 0, i.e. -1 "
            "(set model.method.pad_value: -1.0)"
        )
    return out


def require_deployable(cfg: NetworkConfig) -> None:
    """Raise a UserError naming every reason when `cfg`'s network cannot go to FINN."""
    why = reasons(cfg)
    if why:
        lines = "\n".join(f"  - {r}" for r in why)
        raise UserError(f"{cfg.name} cannot be deployed through FINN:\n{lines}")


def _method(cfg: NetworkConfig):
    if cfg.model.method is None:
        return None

    return BinaryMethod.from_dict(cfg.model.method, f"{cfg.name}: model.method")
