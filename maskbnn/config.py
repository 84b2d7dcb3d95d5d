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
    pad_value: float = -1.0  # FINN forms: value binary convs pad with (-1 = the hardware's)
    first_last_weight_bits: int = 8  # FINN forms: weight bits of the first conv and the FC
    res_bits: int = 4  # resnet20_finn: bits of the residual stream's shared quantiser
    # Binary training method of the method families (vgg_small, resnet20, resnet18, alexnet_small):
    # a mapping validated into models/method.py's BinaryMethod (unknown keys are errors).
    method: dict | None = None


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


BOARDS = {"Pynq-Z1": "xc7z020clg400-1", "Pynq-Z2": "xc7z020clg400-1"}


@dataclass(frozen=True)
class VerifyConfig:
    """Golden verification: how many real images, and how many go through FINN's slow execution."""

    data: str = "data/maskedface-net-sample"  # relative to the repository
    split: str = "all"
    images: int = 1000  # real images compared at every stage (>= 1,000 for a release)
    finn_images: int = 16  # subset also run through FINN's execute_onnx of the hardware graph
    streamlined_images: int | None = None  # subset for the streamlined graph (None: all images)


@dataclass(frozen=True)
class BuildConfig:
    """The `build:` section: target board, clock, parallelism (folding file or target fps),
    outputs, verification. Paths are relative to the config file's folder."""

    board: str = "Pynq-Z1"
    clock_ns: float = 10.0
    target_fps: int | None = None
    folding: str | None = None  # FINN folding JSON, relative to build_configs/; "{board}" expands
    outputs: tuple[str, ...] = ("estimates",)
    verify: VerifyConfig = field(default_factory=VerifyConfig)

    def folding_path(self, base: Path = BUILD_CONFIGS, board: str | None = None) -> Path | None:
        if self.folding is None:
            return None
        return base / self.folding.replace("{board}", board or self.board)


@dataclass(frozen=True)
class NetworkConfig:
    name: str
    dataset: str  # "maskedface", "mnist", "cifar10"
    model: ModelConfig
    train: TrainConfig = field(default_factory=TrainConfig)
    build: BuildConfig = field(default_factory=BuildConfig)
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
    raw = load_yaml(path)
    try:
        cfg = NetworkConfig(
            name=_pop(raw, "name", path),
            dataset=_pop(raw, "dataset", path),
            model=_strict(ModelConfig, raw.pop("model", None) or {}, f"{path}: model"),
            train=_strict(TrainConfig, raw.pop("train", None) or {}, f"{path}: train"),
            build=_build_config(raw.pop("build", None) or {}, path),
            path=path,
        )
    except TypeError as err:
        raise UserError(f"{path}: {err}") from None
    if raw:
        raise UserError(f"{path}: unknown keys {sorted(raw)}")
    if cfg.model.method is not None:
        from maskbnn.models.method import BinaryMethod

        if not isinstance(cfg.model.method, dict):
            raise UserError(f"{path}: model.method must be a mapping of method options")
        BinaryMethod.from_dict(cfg.model.method, f"{path}: model.method")
    if cfg.name != name:
        raise UserError(f"{path}: name {cfg.name!r} does not match the file name {name!r}")
    return cfg


def load_yaml(path: Path) -> dict:
    """A YAML file holding a mapping; invalid YAML is a UserError naming the file, line and column."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f", line {mark.line + 1} column {mark.column + 1}" if mark else ""
        why = getattr(err, "problem", None) or str(err)
        raise UserError(f"{path}{at}: not valid YAML ({why})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping of keys, got a {type(raw).__name__}")
    return raw


def _build_config(values: dict, path: Path) -> BuildConfig:
    values = dict(values)
    verify = _strict(VerifyConfig, values.pop("verify", None) or {}, f"{path}: build.verify")
    cfg = _strict(BuildConfig, values, f"{path}: build")
    cfg = dataclasses.replace(cfg, verify=verify)
    if cfg.board not in BOARDS:
        raise UserError(
            f"{path}: build.board {cfg.board!r} unknown; choose one of {sorted(BOARDS)}"
        )
    known = ("estimates",)
    bad = [o for o in cfg.outputs if o not in known]
    if bad:
        raise UserError(f"{path}: build.outputs {bad} unknown; known: {list(known)}")
    return cfg


def _pop(raw: dict, key: str, path: Path) -> Any:
    if key not in raw:
        raise UserError(f"{path}: missing key {key!r}")
    return raw.pop(key)


# Smallest value of numeric keys that have one (a non-positive epoch count is the YAML's error).
MINIMUM = {
    (TrainConfig, "epochs"): 1,
    (TrainConfig, "batch_size"): 2,
    (TrainConfig, "warmup_epochs"): 0,
    (BuildConfig, "target_fps"): 1,
    (VerifyConfig, "images"): 1,
    (VerifyConfig, "finn_images"): 0,
    (VerifyConfig, "streamlined_images"): 0,
}
# Field annotation (as written above) -> accepted YAML value types.
_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "bool": (bool,),
    "dict": (dict,),
    "tuple[int, ...]": (list,),
    "tuple[str, ...]": (list,),
}


def _strict(cls: type, values: dict, where: str) -> Any:
    if not isinstance(values, dict):
        raise UserError(f"{where}: expected a mapping of keys, got {values!r}")
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise UserError(f"{where}: unknown keys {unknown}; known: {sorted(names)}")
    for key, v in values.items():
        _check_value(names[key].type, v, f"{where}.{key}", MINIMUM.get((cls, key)))
    coerced = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return cls(**coerced)


def _check_value(annotation: str, v: Any, where: str, minimum: float | None) -> None:
    """A YAML value of the field's type (and at least `minimum`), else a UserError naming the key."""
    options = [a.strip() for a in str(annotation).split("|")]
    if v is None and "None" in options:
        return
    accepted = tuple(t for a in options for t in _TYPES.get(a, ()))
    if len(accepted) < len([a for a in options if a != "None"]):
        return  # an annotation this check does not know: the dataclass takes it as it is
    bad_bool = isinstance(v, bool) and bool not in accepted
    if bad_bool or not isinstance(v, accepted):
        want = " or ".join(a for a in options if a != "None")
        raise UserError(f"{where}: expected {want}, got {v!r}")
    if isinstance(v, list):
        inner = int if "int" in options[0] else str
        if not all(isinstance(x, inner) and not isinstance(x, bool) for x in v):
            raise UserError(f"{where}: expected a list of {inner.__name__}, got {v!r}")
    if minimum is not None and v < minimum:
        raise UserError(f"{where}: must be >= {minimum}, got {v!r}")
