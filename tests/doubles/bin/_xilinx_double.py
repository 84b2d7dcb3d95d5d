"""Shared by the test doubles of `vivado` and `vitis_hls` (tests only; never the product).

They stand in for the two programs at the process boundary: they read the Tcl scripts FINN+
generates, check what the real tool would refuse (missing sources, unknown board part, IP not in
the repository), and write the files FINN+'s next steps and maskbnn read, in the tools' own
formats. Every resource figure they write is their own invention, not a synthesis result.
Stdlib only: they run under whatever python3 is on PATH.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

VERSION = "2024.2"


def log_call(tool: str) -> None:
    """One JSON line per call into $MASKBNN_DOUBLE_LOG (what ran, where, with which loader path)."""
    path = os.environ.get("MASKBNN_DOUBLE_LOG")
    if path:
        entry = {"tool": tool, "argv": sys.argv[1:], "cwd": os.getcwd(),
                 "ld_library_path": os.environ.get("LD_LIBRARY_PATH", "")}  # fmt: skip
        with open(path, "a") as f:
            f.write(json.dumps(entry) + "\n")


def tcl_sets(text: str) -> dict[str, str]:
    """`set name value` lines of a script, quotes stripped."""
    return {m[0]: m[1].strip().strip('"') for m in re.findall(r"^\s*set (\w+) (.+)$", text, re.M)}


def fail(message: str, code: int = 1) -> None:
    print(message, file=sys.stderr)
    print(message)
    sys.exit(code)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def component_xml(vendor: str, library: str, name: str, files: list[str]) -> str:
    """A minimal IP-XACT component description, as Vivado's IP packager writes."""
    refs = "".join(
        f"      <spirit:file><spirit:name>{f}</spirit:name></spirit:file>\n" for f in files
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<spirit:component xmlns:spirit="http://www.spiritconsortium.org/XMLSchema/SPIRIT/1685-2009">\n'
        f"  <spirit:vendor>{vendor}</spirit:vendor>\n  <spirit:library>{library}</spirit:library>\n"
        f"  <spirit:name>{name}</spirit:name>\n  <spirit:version>1.0</spirit:version>\n"
        f"  <spirit:fileSets><spirit:fileSet>\n{refs}  </spirit:fileSet></spirit:fileSets>\n"
        "</spirit:component>\n"
    )
