"""Network registry: a name -> (config file, family builder). Networks are data in build_configs/."""

from __future__ import annotations

from torch import nn

from maskbnn.config import ModelConfig, NetworkConfig, load_network_config, network_names
from maskbnn.errors import UserError
from maskbnn.models.method import BinaryMethod

# FINN forms: Brevitas networks a method can be installed on and baked out of before export.
FINN_FORMS = {
    "vgg_small_finn": ("vgg_small_finn", "VGGSmallFINN"),
    "resnet20_finn": ("resnet20_finn", "ResNet20FINN"),
}
RESNET_RSIGN = (
    "method.rsign on resnet20_finn: a block's first sign reads the integer residual stream, not a "
    "BatchNorm, so its learned threshold has nothing to fold into; train without rsign"
)
# Families trained with a BinaryMethod (models/method.py): family -> (module, class).
METHOD_FAMILIES = {
    "vgg_small": ("vgg_small", "VGGSmall"),
    "resnet20": ("resnet_cifar", "ResNet20"),
    "resnet18": ("resnet_cifar", "ResNet18Cifar"),
    "alexnet_small": ("alexnet_small", "AlexNetSmall"),
}


def build_model(cfg: ModelConfig) -> nn.Module:
    """Instantiate the Brevitas network a model config describes."""
    if cfg.method is not None and cfg.family not in (*METHOD_FAMILIES, *FINN_FORMS):
        raise UserError(
            f"model family {cfg.family!r} takes no method; method families: {sorted(METHOD_FAMILIES)}"
        )
    if cfg.family == "cnv":
        from maskbnn.models.cnv import CNV

        return CNV(
            cfg.num_classes,
            cfg.weight_bit_width,
            cfg.act_bit_width,
            cfg.in_bit_width,
            cfg.in_channels,
            cfg.width,
            cfg.image_size,
        )
    if cfg.family == "fc":
        from maskbnn.models.fc import FC

        return FC(
            cfg.num_classes,
            cfg.weight_bit_width,
            cfg.act_bit_width,
            cfg.in_bit_width,
            cfg.hidden,
            (cfg.in_channels, cfg.image_size, cfg.image_size),
        )
    if cfg.family in FINN_FORMS:
        from importlib import import_module

        module, cls = FINN_FORMS[cfg.family]
        net = getattr(import_module(f"maskbnn.models.{module}"), cls)
        extra = {"res_bits": cfg.res_bits} if cfg.family == "resnet20_finn" else {}
        model = net(
            cfg.num_classes,
            cfg.weight_bit_width,
            cfg.act_bit_width,
            cfg.in_bit_width,
            cfg.in_channels,
            cfg.width,
            cfg.image_size,
            cfg.pad_value,
            cfg.first_last_weight_bits,
            **extra,
        )
        if cfg.method is not None:  # trained with a paper's method, baked away before export
            from maskbnn.models.brevitas_methods import install_method

            method = BinaryMethod.from_dict(cfg.method, "model.method")
            if method.pad_value != cfg.pad_value:  # one padding, said once per meaning
                raise UserError(
                    f"model.method.pad_value {method.pad_value} differs from model.pad_value "
                    f"{cfg.pad_value}: the FINN form pads its binary convs with model.pad_value"
                )
            if cfg.family == "resnet20_finn" and method.rsign:
                raise UserError(RESNET_RSIGN)
            install_method(model, method)
        return model
    if cfg.family in METHOD_FAMILIES:
        from importlib import import_module

        module, cls = METHOD_FAMILIES[cfg.family]
        net = getattr(import_module(f"maskbnn.models.{module}"), cls)
        method = BinaryMethod.from_dict(cfg.method, "model.method")
        return net(method, cfg.num_classes, cfg.in_channels, cfg.width, cfg.image_size)
    raise ValueError(f"unknown model family {cfg.family!r}")


def get_network(name: str) -> tuple[nn.Module, NetworkConfig]:
    """Model and config for a registered network name (unknown names list the valid ones)."""
    cfg = load_network_config(name)
    return build_model(cfg.model), cfg


__all__ = ["build_model", "get_network", "network_names"]
