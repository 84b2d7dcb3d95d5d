"""The deployment folder: manifest with checksums, FINN+-style driver settings, artifacts.

Format (see driver/README.md): ``manifest.json`` lists every other file with its sha256; a file
is read only after its hash has been checked, so a bitstream or settings file that was altered or
mixed up with another build's is refused before it reaches the FPGA.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maskbnn_board.datatypes import IntType, parse_datatype
from maskbnn_board.errors import DeploymentError
from maskbnn_board.manifest import MANIFEST, file_problems
from maskbnn_board.packing import packed_bytes
from maskbnn_board.preprocess import CLASSES

FORMAT = "maskbnn-deploy/1"
OUTPUT_KINDS = ("label", "scores")
DMA_KINDS = ("iodma", "axi_dma")
ARTIFACT_SUFFIXES = {"settings": ".json", "program": ".npz", "bitstream": ".bit", "hwh": ".hwh"}
GOLDEN_SUFFIXES = {"inputs": ".npy", "expected": ".npy", "labels": ".npy", "names": ".json"}


def _number(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class StreamSpec:
    """One DMA stream: data type and per-image shapes (batch dimension removed)."""

    dtype: IntType
    normal: tuple[int, ...]
    folded: tuple[int, ...]
    packed: tuple[int, ...]
    dma_name: str

    def with_batch(self, kind: str, n: int) -> tuple[int, ...]:
        return (n, *getattr(self, kind))

    @property
    def values_per_word(self) -> int:
        return self.folded[-1]


@dataclass(frozen=True)
class Settings:
    """What the driver needs to talk to one accelerator build."""

    input: StreamSpec
    output: StreamSpec
    output_kind: str  # "label": the accelerator emits the class index; "scores": one per class
    classes: tuple[str, ...]
    image_size: int
    platform: str
    dma: str
    fclk_mhz: float | None
    identity: dict  # network / board the deploy step recorded in the settings, when it did


def _shape(value: object, what: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError) as err:
        raise DeploymentError(
            f"settings: {what} must be a list of integers, got {value!r}"
        ) from err
    if not shape or any(v <= 0 for v in shape):
        raise DeploymentError(f"settings: {what} must be a non-empty list of positive sizes")
    return shape


def _stream(io: dict, prefix: str, dt_key: str, dma_key: str) -> StreamSpec:
    try:
        dtypes, dmas = io[dt_key], io.get(dma_key, [f"{dma_key[0]}dma0"])
        normal, folded, packed = (io[f"{prefix}shape_{k}"] for k in ("normal", "folded", "packed"))
    except KeyError as err:
        raise DeploymentError(f"settings: io_shape_dict has no {err.args[0]!r}") from err
    if len(dtypes) != 1 or len(normal) != 1:
        raise DeploymentError(
            "settings: the driver supports accelerators with one input and one output stream, "
            f"found {len(dtypes)} {dt_key} entries"
        )
    dtype = parse_datatype(dtypes[0])
    spec = StreamSpec(
        dtype,
        _shape(normal[0], f"{prefix}shape_normal")[1:],
        _shape(folded[0], f"{prefix}shape_folded")[1:],
        _shape(packed[0], f"{prefix}shape_packed")[1:],
        str(dmas[0]),
    )
    if math.prod(spec.normal) != math.prod(spec.folded):
        raise DeploymentError(
            f"settings: {prefix}shape_folded {spec.folded} does not hold the "
            f"{math.prod(spec.normal)} values of {prefix}shape_normal {spec.normal}"
        )
    want = (*spec.folded[:-1], packed_bytes(spec.folded[-1], dtype))
    if spec.packed != want:
        raise DeploymentError(
            f"settings: {prefix}shape_packed {spec.packed} does not match {prefix}shape_folded "
            f"{spec.folded} of {dtype} (expected {want})"
        )
    return spec


def parse_settings(data: dict) -> Settings:
    """Validate a settings dict (FINN+ ``driver_information`` plus our ``maskbnn`` section)."""
    info = data.get("driver_information")
    if not isinstance(info, dict) or "io_shape_dict" not in info:
        raise DeploymentError(
            "settings: no driver_information.io_shape_dict (not a FINN+ driver settings file)"
        )
    io = info["io_shape_dict"]
    ours = data.get("maskbnn", {})
    inp = _stream(io, "i", "idt", "idma_names")
    out = _stream(io, "o", "odt", "odma_names")
    classes = tuple(ours.get("classes", CLASSES))
    n_out = math.prod(out.normal)
    kind = ours.get("output", "label" if n_out == 1 else "scores")
    if kind not in OUTPUT_KINDS:
        raise DeploymentError(
            f"settings: maskbnn.output must be one of {OUTPUT_KINDS}, got {kind!r}"
        )
    if kind == "scores" and n_out != len(classes):
        raise DeploymentError(
            f"settings: a scores output needs one value per class ({len(classes)}), "
            f"oshape_normal {out.normal} holds {n_out}"
        )
    size = int(ours.get("image_size", inp.normal[0]))
    if inp.normal != (size, size, 3):
        raise DeploymentError(
            f"settings: ishape_normal {inp.normal} is not an NHWC {size}x{size} RGB image"
        )
    dma = ours.get("dma", "iodma")
    if dma not in DMA_KINDS:
        raise DeploymentError(f"settings: maskbnn.dma must be one of {DMA_KINDS}, got {dma!r}")
    fclk = info.get("fclk_mhz")
    return Settings(
        inp,
        out,
        kind,
        classes,
        size,
        str(info.get("platform", "zynq-iodma")),
        dma,
        float(fclk) if fclk is not None else None,
        {k: ours[k] for k in ("network", "board") if isinstance(ours.get(k), str)},
    )


@dataclass(frozen=True)
class Golden:
    """Golden vectors: pre-processed inputs, the accelerator's expected outputs, and names."""

    inputs: np.ndarray  # (N, H, W, 3) uint8
    expected: np.ndarray  # (N, *oshape_normal) integers
    names: tuple[str, ...]
    labels: np.ndarray | None  # (N,) class index, -1 where unknown


class Deployment:
    """A checked deployment folder. Files are hash-checked when first used."""

    def __init__(self, root: Path):
        self.root = Path(root)
        mpath = self.root / MANIFEST
        if not self.root.is_dir():
            raise DeploymentError(f"deployment folder {self.root} does not exist")
        if not mpath.is_file():
            raise DeploymentError(
                f"{self.root} has no {MANIFEST}: point --deploy at the folder `make deploy` "
                "produced (it holds manifest.json, settings.json, golden/ ...)"
            )
        try:
            self.manifest = json.loads(mpath.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DeploymentError(f"{mpath} is not valid JSON: {err}") from err
        if self.manifest.get("format") != FORMAT:
            raise DeploymentError(
                f"{mpath}: format {self.manifest.get('format')!r} is not {FORMAT!r}; rebuild the "
                "deployment with this driver's version of `make deploy`"
            )
        self.files: dict[str, dict] = self.manifest.get("files", {})
        self._checked: set[str] = set()
        self.settings = parse_settings(json.loads(self.checked_path("settings").read_text()))
        self._cross_check_manifest()

    # --- files -----------------------------------------------------------------------------
    def role_name(self, role: str) -> str | None:
        """The file a manifest role (settings, bitstream, hwh, program) points to, or None."""
        return self.manifest.get("artifacts", {}).get(role)

    def checked_path(self, role: str) -> Path:
        """Path of an artifact after verifying it exists and matches its manifest sha256."""
        name = self.role_name(role)
        if not name:
            raise DeploymentError(
                f"{self.root}: the manifest names no {role} file; re-run `make deploy` to get a "
                "complete deployment folder"
            )
        return self._checked_file(name, role)

    def _checked_file(self, name: str, role: str) -> Path:
        path = self.root / name
        if not path.is_file():
            raise DeploymentError(f"{self.root}: {role} file {name} is missing")
        entry = self.files.get(name)
        if not entry or "sha256" not in entry:
            raise DeploymentError(
                f"{self.root}: {name} is not listed with a sha256 in the manifest"
            )
        if name not in self._checked:
            for bad in file_problems(self.root, {name: entry}):
                raise DeploymentError(
                    f"{path}: sha256 {bad.got[:16]}... does not match the manifest "
                    f"({bad.want[:16]}...); the file was changed or belongs to another "
                    "build: re-run `make deploy` and copy the whole folder again"
                )
            self._checked.add(name)
        return path

    def verify_all(self) -> list[str]:
        """Check every file the manifest lists; returns their names."""
        for name in self.files:
            self._checked_file(name, "listed")
        return list(self.files)

    def _cross_check_manifest(self) -> None:
        """manifest.json has no hash of its own: each field the driver reads either names a file
        whose hash it then checks, or must agree with the hash-checked settings."""
        s = self.settings
        want = {"clock_mhz": s.fclk_mhz, "classes": list(s.classes)}
        want.update({k: s.identity[k] for k in ("network", "board") if k in s.identity})
        for field, expected in want.items():
            got = self.manifest.get(field)
            if field == "clock_mhz" and got is not None and expected is not None:
                same = abs((_number(got) or -1.0) - float(expected)) <= 1e-3
            else:
                same = got is None or got == expected
            if not same:
                raise DeploymentError(
                    f"{self.root / MANIFEST}: field {field!r} is {got!r} but the hash-checked "
                    f"settings.json says {expected!r}; the manifest was edited: re-run "
                    "`make deploy` and copy the whole folder again"
                )
        for section, roles in (("artifacts", ARTIFACT_SUFFIXES), ("golden", GOLDEN_SUFFIXES)):
            entries = self.manifest.get(section) or {}
            for role, suffix in roles.items():
                name = entries.get(role)
                if name is not None and not str(name).endswith(suffix):
                    raise DeploymentError(
                        f"{self.root / MANIFEST}: field {section}.{role} names {name!r}, not a "
                        f"{suffix} file; the manifest was edited: re-run `make deploy`"
                    )

    @property
    def clock_mhz(self) -> float | None:
        """The accelerator clock the bitstream was built for (from the hash-checked settings)."""
        return self.settings.fclk_mhz

    @property
    def network(self) -> str:
        return str(self.manifest.get("network", "?"))

    def golden(self) -> Golden:
        """Load the golden vectors (hash-checked)."""
        g = self.manifest.get("golden")
        if not g:
            raise DeploymentError(f"{self.root}: the manifest lists no golden vectors")
        x = np.load(self._checked_file(g["inputs"], "golden inputs"), allow_pickle=False)
        y = np.load(self._checked_file(g["expected"], "golden outputs"), allow_pickle=False)
        names = tuple(json.loads(self._checked_file(g["names"], "golden names").read_text()))
        labels = None
        if g.get("labels"):
            labels = np.load(self._checked_file(g["labels"], "golden labels"), allow_pickle=False)
        s = self.settings
        if x.dtype != np.uint8 or x.shape[1:] != s.input.normal:
            raise DeploymentError(
                f"golden inputs {x.shape} {x.dtype} are not uint8 (N, {s.input.normal})"
            )
        if y.shape != (len(x), *s.output.normal) or len(names) != len(x):
            raise DeploymentError(
                f"golden outputs {y.shape} / {len(names)} names do not match {len(x)} inputs of "
                f"output shape {s.output.normal}"
            )
        return Golden(x, y, names, labels)
