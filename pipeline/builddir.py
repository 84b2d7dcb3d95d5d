"""Every artefact of `build/<net>/<board>/` (and the network's `build/<net>/export/`, and the release
folder `bitstreams/<net>/<board>/`), named once.

Stages take a folder (a test's tmp_path, or the default under `build/`) and reach each file through
a `BuildDir`, so a file's name is written in one place and Make, the steps and the stages agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from maskbnn.paths import BUILD_DIR, REPO_ROOT

BITSTREAMS_DIR = REPO_ROOT / "bitstreams"


@dataclass(frozen=True)
class BuildDir:
    root: Path  # build/<net>/<board>, or any folder a caller chose for one build

    @classmethod
    def of(cls, net: str, board: str, build_root: Path = BUILD_DIR) -> BuildDir:
        return cls(Path(build_root) / net / board)

    @classmethod
    def at(cls, folder: Path | str | None, net: str, board: str) -> BuildDir:
        """`folder` when a caller gave one, else the default under `build/`."""
        return cls(Path(folder)) if folder else cls.of(net, board)

    # the FINN build (maskbnn build)
    @property
    def summary(self) -> Path:  # written last: Make's target for the whole build
        return self.root / "build.json"

    @property
    def hw_model(self) -> Path:
        return self.root / "hw_model.onnx"

    @property
    def program(self) -> Path:
        return self.root / "program.npz"

    @property
    def time_per_step(self) -> Path:
        return self.root / "time_per_step.json"

    @property
    def intermediate(self) -> Path:
        return self.root / "intermediate_models"

    def intermediate_model(self, step: str) -> Path:
        return self.intermediate / f"{step}.onnx"

    @property
    def report(self) -> Path:  # FINN's own estimate reports
        return self.root / "report"

    def estimates(self, suffix: str) -> Path:  # json, md, png
        return self.root / f"estimates.{suffix}"

    # verification (maskbnn verify) and Make's stamp after verify + rtlsim
    @property
    def verification_json(self) -> Path:
        return self.root / "verification.json"

    @property
    def verification_md(self) -> Path:
        return self.root / "verification.md"

    @property
    def verified_stamp(self) -> Path:
        return self.root / "verified.stamp"

    # Verilator simulation (maskbnn rtlsim)
    @property
    def rtlsim(self) -> Path:
        return self.root / "rtlsim"

    @property
    def rtlsim_json(self) -> Path:
        return self.rtlsim / "rtlsim.json"

    # the FPGA flow (maskbnn bitstream)
    @property
    def bitstream(self) -> Path:
        return self.root / "bitstream"

    @property
    def stamps(self) -> tuple[Path, ...]:
        """What a new build invalidates: Make's targets and the verification of the old graph."""
        return (self.summary, self.verified_stamp, self.verification_json, self.verification_md)


def export_dir(net: str, build_root: Path = BUILD_DIR) -> Path:
    """build/<net>/export: the QONNX files of every checkpoint of `net`, and their index."""
    return Path(build_root) / net / "export"


def export_index(folder: Path) -> Path:
    return Path(folder) / "export.json"


def bitstream_dir(net: str, board: str, root: Path = BITSTREAMS_DIR) -> Path:
    """bitstreams/<net>/<board>: where `maskbnn bitstream` releases and `maskbnn deploy` looks."""
    return Path(root) / net / board
