"""Per-network configs (build_configs/<network>.yaml), loaded strictly into frozen dataclasses.

One file per network holds what defines it: the model (family, bit widths, width), the dataset,
the training recipe, and the build settings. Unknown keys are errors, so a typo never goes unseen.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from maskbnn.errors import UserError
from maskbnn.paths import BUILD_CONFIGS


@dataclass(frozen=True)
class ModelConfig:
    family: str  # "cnv" or "fc"
    num_classes: int
    weight_bit_width: int
    act_bit_width: int
    in_bit_width: int
    in_channels: int = 3
    width: float = 1.0  # CNV channel-width multiplier
    image_size: int = 32
    hidden: tuple[int, ...] = ()  # FC hidden layer widths


@dataclass(frozen=True)
class TrainConfig:
    """Defaults are brevitas_bnn_pynq_train's; each network's file overrides what it needs."""

    epochs: int = 1000
    batch_size: int = 100
    lr: float = 0.02
    optim: str = "ADAM"
    loss: str = "SqrHinge"
    scheduler: str = "FIXED"
    milestones: tuple[int, ...] = (100, 150, 200, 250)
    weight_decay: float = 0.0
    momentum: float = 0.9
    random_seed: int = 1
    augment: bool = True  # random crop (padding 4) + horizontal flip, batched
    warmup_epochs: int = 0


@dataclass(frozen=True)
class NetworkConfig:
    name: str
    dataset: str  # "maskedface", "mnist", "cifar10"
    model: ModelConfig
    train: TrainConfig = field(default_factory=TrainConfig)
    build: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


def network_names(folder: Path = BUILD_CONFIGS) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.yaml"))


def load_network_config(name: str, folder: Path = BUILD_CONFIGS) -> NetworkConfig:
    """Load build_configs/<name>.yaml; an unknown name lists the valid ones."""
    path = folder / f"{name}.yaml"
    if not path.is_file():
        raise UserError(
            f"unknown network {name!r}; valid names: {', '.join(network_names(folder))}"
        )
    raw = yaml.safe_load(path.read_text()) or {}
    try:
        cfg = NetworkConfig(
            name=_pop(raw, "name", path),
            dataset=_pop(raw, "dataset", path),
            model=_strict(ModelConfig, raw.pop("model", None) or {}, f"{path}: model"),
            train=_strict(TrainConfig, raw.pop("train", None) or {}, f"{path}: train"),
            build=raw.pop("build", None) or {},
            path=path,
        )
    except TypeError as err:
        raise UserError(f"{path}: {err}") from None
    if raw:
        raise UserError(f"{path}: unknown keys {sorted(raw)}")
    if cfg.name != name:
        raise UserError(f"{path}: name {cfg.name!r} does not match the file name {name!r}")
    return cfg


def _pop(raw: dict, key: str, path: Path) -> Any:
    if key not in raw:
        raise UserError(f"{path}: missing key {key!r}")
    return raw.pop(key)


def _strict(cls: type, values: dict, where: str) -> Any:
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise UserError(f"{where}: unknown keys {unknown}; known: {sorted(names)}")
    coerced = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return cls(**coerced)
