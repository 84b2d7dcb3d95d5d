"""Fetch the FINN+ external dependencies this flow needs, with FINN+'s own updater.

`finn deps update` fetches every dependency in FINN+'s definitions file (two XilinxBoardStore
clones, Avnet and RFSoC board files, AuroraFlow, ...) and stops at the first failure; it also
insists on building the XSI simulator bridge, which needs Vivado. A Zynq build of a CNV needs only
finn-hlslib (the HLS layers' C++ library), nlohmann_json (finn_xsi's JSON library, fetched so
CMake does not download it mid-build) and the chosen board's files. This module installs exactly
those through FINN+'s DependencyUpdater and its pinned definitions
(finn/interface/external_dependencies.yaml), and names each one that failed.

    python -m maskbnn.pipeline.finn.deps --dest DIR [--board Pynq-Z1 --board Pynq-Z2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from maskbnn.errors import MissingToolError
from maskbnn.pipeline.finn.env import finn_package_dir

COMMON = ("finn-hlslib", "nlohmann-json")
BOARD_DEPS = {"Pynq-Z1": "pynq-z1", "Pynq-Z2": "pynq-z2"}  # names in FINN+'s definitions file


def needed(boards: list[str]) -> list[str]:
    return [*COMMON, *(BOARD_DEPS[b] for b in boards)]


def fetch_command(dest: Path, boards: list[str]) -> str:
    flags = " ".join(f"--board {b}" for b in boards)
    return f".venv/bin/python -m maskbnn.pipeline.finn.deps --dest {dest} {flags}".rstrip()


def missing(dest: Path) -> list[str]:
    """The common dependencies absent from a FINN_DEPS folder (board files are looked up by
    bitstream.find_board_files, which matches them as Vivado does)."""
    return [d for d, folder in (("finn-hlslib", "finn-hlslib"), ("nlohmann-json", "nlohmann_json"))
            if not (Path(dest) / folder).is_dir()]  # fmt: skip


def fetch(dest: Path, boards: list[str], timeout_s: int = 300) -> Path:
    from finn.interface.manage_deps import DependencyUpdater

    definitions = finn_package_dir() / "interface" / "external_dependencies.yaml"
    dest = Path(dest).resolve()
    updater = DependencyUpdater(dest, definitions, timeout_s, non_interactive=True)
    failed = [name for name in needed(boards) if not updater.install_dependency(name)]
    if failed:
        raise MissingToolError(
            f"could not fetch FINN+ dependencies {', '.join(failed)} into {dest} (definitions: "
            f"{definitions}); check the network, or place them there by hand"
        )
    return dest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dest", type=Path, required=True, help="FINN_DEPS folder to fill")
    p.add_argument("--board", action="append", choices=sorted(BOARD_DEPS), default=[],
                   help="board whose files to fetch (repeatable)")  # fmt: skip
    args = p.parse_args(argv)
    try:
        print(
            f"FINN+ dependencies {', '.join(needed(args.board))} in {fetch(args.dest, args.board)}"
        )
    except MissingToolError as err:
        print(f"finn_deps: error: {err}", file=sys.stderr)
        return err.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
