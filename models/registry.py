"""Network registry: a name -> (config file, family builder). Networks are data in build_configs/."""

from __future__ import annotations

from torch import nn

from maskbnn.config import ModelConfig, NetworkConfig, load_network_config, network_names


def build_model(cfg: ModelConfig) -> nn.Module:
    """Instantiate the Brevitas network a model config describes."""
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
    raise ValueError(f"unknown model family {cfg.family!r}")


def get_network(name: str) -> tuple[nn.Module, NetworkConfig]:
    """Model and config for a registered network name (unknown names list the valid ones)."""
    cfg = load_network_config(name)
    return build_model(cfg.model), cfg


__all__ = ["build_model", "get_network", "network_names"]
