"""Fetch FINN+'s external dependencies (finn-hlslib, board files, ...) with FINN+'s own updater.

`finn deps update` does the same, but first insists on building the XSI simulator bridge, which
needs Vivado; a Docker image is built without Vivado (it is mounted at run time), so the image
calls FINN+'s DependencyUpdater directly on the definitions file shipped in the wheel
(finn/interface/external_dependencies.yaml: pinned commits and URLs). XSI is built by FINN+ on
first use inside the container, where Vivado is mounted.

    python -m maskbnn.pipeline.finn_deps --dest /opt/finn_deps
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from maskbnn.pipeline.finn_env import finn_package_dir


def fetch(dest: Path, timeout_s: int = 300) -> Path:
    from finn.interface.manage_deps import DependencyUpdater

    definitions = finn_package_dir() / "interface" / "external_dependencies.yaml"
    dest = Path(dest).resolve()
    DependencyUpdater(dest, definitions, timeout_s, non_interactive=True).update()
    return dest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dest", type=Path, required=True, help="FINN_DEPS folder to fill")
    args = p.parse_args(argv)
    print(f"FINN+ dependencies in {fetch(args.dest)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
