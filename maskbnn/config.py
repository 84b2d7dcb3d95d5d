"""Per-network configs (build_configs/<network>.yaml), loaded strictly into frozen typed dataclasses.

One file per network holds what defines it: the model (family, bit widths, width), the dataset,
the training recipe, and the build settings. The classes are pydantic dataclasses: every value is
checked against its type, choices and range when a file is loaded (and again on
`dataclasses.replace`), unknown keys are errors, and `parse` turns pydantic's report into one
UserError naming the file, the key, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_type_hints

import yaml
from pydantic import (
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
)
from pydantic.dataclasses import dataclass

from maskbnn.errors import UserError
from maskbnn.paths import BUILD_CONFIGS

# Unknown keys are errors; types are checked strictly (Strict* below: "4" is not an int).
STRICT = ConfigDict(extra="forbid")

Board = Literal["Pynq-Z1", "Pynq-Z2"]
BOARDS = dict.fromkeys(get_args(Board), "xc7z020clg400-1")
Family = Literal[
    "cnv", "fc", "vgg_small", "resnet20", "resnet18", "alexnet_small", "vgg_small_finn",
    "resnet20_finn",
]  # fmt: skip
Dataset = Literal["maskedface", "mnist", "cifar10"]
Split = Literal["train", "test", "all"]
PositiveInt = Annotated[StrictInt, Field(ge=1)]
Bits = Annotated[StrictInt, Field(ge=1, le=32)]


@dataclass(frozen=True, config=STRICT)
class ModelConfig:
    family: Family
    num_classes: Annotated[StrictInt, Field(ge=2)]
    weight_bit_width: Bits
    act_bit_width: Bits
    in_bit_width: Bits
    in_channels: PositiveInt = 3
    width: Literal[0.125, 0.25, 0.5, 1.0] = 1.0  # channel-width multiplier
    image_size: PositiveInt = 32
    hidden: tuple[PositiveInt, ...] = ()  # FC hidden layer widths
    pad_value: Literal[
        -1.0, 0.0
    ] = -1.0  # FINN forms: value binary convs pad with (-1 = the hardware's)
    first_last_weight_bits: Bits = 8  # FINN forms: weight bits of the first conv and the FC
    res_bits: Bits = 4  # resnet20_finn: bits of the residual stream's shared quantiser
    # Binary training method of the method families (vgg_small, resnet20, resnet18, alexnet_small):
    # a mapping validated into models/method.py's BinaryMethod when the file is loaded.
    method: dict[StrictStr, Any] | None = None


@dataclass(frozen=True, config=STRICT)
class TrainConfig:
    """Defaults are brevitas_bnn_pynq_train's; each network's file overrides what it needs."""

    epochs: PositiveInt = 1000
    batch_size: Annotated[StrictInt, Field(ge=2)] = 100
    lr: Annotated[StrictFloat, Field(gt=0)] = 0.02
    optim: Literal["ADAM", "SGD"] = "ADAM"
    loss: Literal["SqrHinge", "CrossEntropy"] = "SqrHinge"
    scheduler: Literal["FIXED", "STEP", "COSINE"] = "FIXED"
    milestones: tuple[PositiveInt, ...] = (100, 150, 200, 250)
    momentum: Annotated[StrictFloat, Field(ge=0, lt=1)] = 0.9
    weight_decay: Annotated[StrictFloat, Field(ge=0)] = 0.0
    random_seed: StrictInt = 1
    augment: StrictBool = True  # random crop (padding 4) + horizontal flip, batched
    warmup_epochs: Annotated[StrictInt, Field(ge=0)] = 0


@dataclass(frozen=True, config=STRICT)
class VerifyConfig:
    """Golden verification: how many real images, and how many go through FINN's slow execution."""

    data: StrictStr = "data/maskedface-net-sample"  # relative to the repository
    split: Split = "all"
    images: PositiveInt = 1000  # real images compared at every stage (>= 1,000 for a release)
    finn_images: Annotated[StrictInt, Field(ge=0)] = 16  # also run through FINN's execute_onnx
    # subset for the streamlined graph (None: all images)
    streamlined_images: Annotated[StrictInt, Field(ge=0)] | None = None


@dataclass(frozen=True, config=STRICT)
class BuildConfig:
    """The `build:` section: target board, clock, parallelism (folding file or target fps),
    outputs, verification. Paths are relative to the config file's folder."""

    board: Board = "Pynq-Z1"
    clock_ns: Annotated[StrictFloat, Field(gt=0)] = 10.0
    target_fps: PositiveInt | None = None
    folding: StrictStr | None = (
        None  # FINN folding JSON, relative to build_configs/; "{board}" expands
    )
    outputs: tuple[Literal["estimates"], ...] = ("estimates",)
    # a multi-bit-input, +-1-weight MVAU (the first conv) on FINN's DSP-based RTL MVAU, its
    # thresholds split out (pipeline/finn/rtl_mvau.py); off: FINN's HLS MVAU in LUTs
    rtl_mvau: StrictBool = True
    verify: VerifyConfig = dataclasses.field(default_factory=VerifyConfig)

    def folding_path(self, base: Path = BUILD_CONFIGS, board: str | None = None) -> Path | None:
        if self.folding is None:
            return None
        return base / self.folding.replace("{board}", board or self.board)


@dataclass(frozen=True, config=STRICT)
class NetworkConfig:
    name: StrictStr
    dataset: Dataset
    model: ModelConfig
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    build: BuildConfig = dataclasses.field(default_factory=BuildConfig)
    path: Path | None = None

    def hardware_digest(self) -> str:
        """sha256 of what the hardware graph is made from (the model and build sections, defaults
        included): a cached graph with another digest was made from another config or default."""
        spec = {"model": dataclasses.asdict(self.model), "build": dataclasses.asdict(self.build)}
        text = json.dumps(spec, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, config=STRICT)
class PublishedFolding:
    PE: list[PositiveInt]
    SIMD: list[PositiveInt]


@dataclass(frozen=True, config=STRICT)
class FoldingTable:
    """build_configs/tables/folding.yaml: what `maskbnn fold-report` and `make fold-all` compare."""

    networks: list[StrictStr]
    target_fps: dict[StrictStr, PositiveInt]
    published: dict[StrictStr, PublishedFolding]


FOLDING_TABLE = BUILD_CONFIGS / "tables" / "folding.yaml"


def load_folding_table(path: Path = FOLDING_TABLE) -> FoldingTable:
    """The folding comparison's networks, targets and published foldings; every network named
    must have a config in build_configs/."""
    table = parse(FoldingTable, load_yaml(path), str(path))
    _known_networks(path, {*table.networks, *table.target_fps})
    return table


@dataclass(frozen=True, config=STRICT)
class Resources:
    LUT: Annotated[StrictInt, Field(ge=0)]
    BRAM_18K: Annotated[StrictInt, Field(ge=0)]
    DSP: Annotated[StrictInt, Field(ge=0)]
    BRAM_36K: Annotated[StrictInt, Field(ge=0)] = 0  # RAMB36 tiles, two BRAM_18K each


@dataclass(frozen=True, config=STRICT)
class PublishedPair:
    """A published post-synthesis figure and FINN+ 1.6.1's estimate of the same folding."""

    design: StrictStr
    source: StrictStr  # where the post figure is published (URL, or paper and table)
    scope: StrictStr  # what the post figure covers (the shell or not, which nodes)
    finn: StrictStr  # the FINN version and flow that built the published design
    network: StrictStr  # our graph the estimate is of (build_configs/NAME.yaml)
    folding: StrictStr  # the published folding, a key of folding.yaml's `published`
    post: Resources
    estimate: Resources
    current: StrictBool  # False: shown for the spread, not used for the margin
    whole_design: StrictBool = False  # post includes the shell: fabric.SHELL is taken off
    note: StrictStr = ""


@dataclass(frozen=True, config=STRICT)
class CalibrationTable:
    """build_configs/tables/calibration.yaml: published pairs the fabric margin is set from."""

    published: list[PublishedPair]


CALIBRATION_TABLE = BUILD_CONFIGS / "tables" / "calibration.yaml"


def load_calibration_table(path: Path = CALIBRATION_TABLE) -> CalibrationTable:
    """The published pairs; each names a network with a config and a published folding of the
    folding table beside it (the estimate column is FINN's estimate of that folding there)."""
    table = parse(CalibrationTable, load_yaml(path), str(path))
    _known_networks(path, {p.network for p in table.published})
    known = load_folding_table(Path(path).parent / "folding.yaml").published
    unknown = sorted({p.folding for p in table.published} - set(known))
    if unknown:
        raise UserError(f"{path}: unknown foldings {unknown}; valid names: {', '.join(known)}")
    return table


@dataclass(frozen=True, config=STRICT)
class NetworkSets:
    """build_configs/tables/network_sets.yaml: the networks commands run on by default."""

    estimates: list[StrictStr]
    bench_prepare: list[StrictStr]


NETWORK_SETS = BUILD_CONFIGS / "tables" / "network_sets.yaml"


def load_network_sets(path: Path = NETWORK_SETS) -> NetworkSets:
    sets = parse(NetworkSets, load_yaml(path), str(path))
    _known_networks(path, {*sets.estimates, *sets.bench_prepare})
    return sets


def _known_networks(path: Path, names: set[str]) -> None:
    """A table naming a network without a config in build_configs/ is a UserError."""
    known = set(network_names(Path(path).parent.parent))
    unknown = sorted(names - known)
    if unknown:
        raise UserError(
            f"{path}: unknown networks {unknown}; valid names: {', '.join(sorted(known))}"
        )


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
    for section in ("model", "train", "build"):  # an empty section is an empty mapping
        if section in raw and raw[section] is None:
            raw[section] = {}
    cfg = parse(NetworkConfig, raw | {"path": path}, str(path))
    if cfg.model.method is not None:
        from maskbnn.models.method import BinaryMethod  # method.py imports this module

        BinaryMethod.from_dict(cfg.model.method, f"{path}: model.method")
    if cfg.name != name:
        raise UserError(f"{path}: name {cfg.name!r} does not match the file name {name!r}")
    return cfg


def parse(cls: type, values: Any, where: str) -> Any:
    """`cls(**values)` for a typed dataclass, or a UserError naming `where`, each offending key's
    path, its value and what is allowed (unknown keys listed with the known ones)."""
    if not isinstance(values, dict):
        raise UserError(f"{where}: expected a mapping of keys, got {values!r}")
    try:
        return cls(**values)
    except ValidationError as err:
        raise UserError(f"{where}: " + "; ".join(_problems(cls, err))) from None


def _problems(cls: type, err: ValidationError) -> list[str]:
    unknown: dict[tuple, list[str]] = {}
    out = []
    for e in err.errors():
        loc = tuple(e["loc"])
        if e["type"] == "unexpected_keyword_argument":
            unknown.setdefault(loc[:-1], []).append(str(loc[-1]))
            continue
        key = ".".join(map(str, loc))
        msg = e["msg"][0].lower() + e["msg"][1:]
        if e["type"].startswith("missing"):
            out.append(f"{key}: missing, a required key")
        else:  # a keyless error is a check across keys
            out.append(f"{key}: {msg}, got {e['input']!r}" if key else msg)
    for parent, keys in unknown.items():
        at = ".".join(map(str, parent))
        known = sorted(f.name for f in dataclasses.fields(_field_class(cls, parent)))
        out.insert(0, f"{at + ': ' if at else ''}unknown keys {sorted(keys)}; known: {known}")
    return out


def _field_class(cls: type, loc: tuple) -> type:
    """The dataclass at a key path of `cls` (nested sections, items of a list of sections)."""
    for key in loc:
        if isinstance(key, str):
            cls = _dataclass_in(get_type_hints(cls)[key]) or cls
    return cls


def _dataclass_in(hint: Any) -> type | None:
    if dataclasses.is_dataclass(hint):
        return hint
    return next(filter(None, map(_dataclass_in, get_args(hint))), None)


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
