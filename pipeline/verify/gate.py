"""The gate between verification and release: only a build whose hardware graph passed `maskbnn
verify` (and has not changed since), and whose Verilator simulation, when one ran on that graph,
passed too, goes on to a bitstream or a board package."""

from __future__ import annotations

import json
from pathlib import Path

from maskbnn.errors import UserError, VerificationError
from maskbnn.paths import rel
from maskbnn.pipeline.builddir import BuildDir


def verified_build(net: str, board: str, build: Path) -> tuple[dict, dict]:
    """build.json and a passed verification.json newer than the hardware graph: what `maskbnn
    bitstream` and `maskbnn deploy` start from. UserError without them, VerificationError (exit 3)
    when the report says the chain failed."""
    bd = BuildDir(build)
    info, ver = bd.summary, bd.verification_json
    if not info.is_file():
        raise UserError(f"no build in {rel(build)}: run `make build NET={net} BOARD={board}`")
    summary = json.loads(info.read_text())
    hw_model = build / summary["hw_model"]
    if not ver.is_file():
        raise UserError(f"{rel(build)} is not verified: run `make verify NET={net} BOARD={board}`")
    report = json.loads(ver.read_text())
    if not report.get("passed"):
        raise VerificationError(
            f"{rel(ver)} reports a failed verification: nothing is built or shipped from it"
        )
    if ver.stat().st_mtime < hw_model.stat().st_mtime:
        raise UserError(
            f"{rel(ver)} is older than {rel(hw_model)}: run `make verify NET={net} BOARD={board}`"
        )
    # Make runs `maskbnn rtlsim` before its stamp; a direct `maskbnn deploy`/`bitstream` must not
    # ship a graph Verilator found wrong. No report (Verilator absent) or one older than the graph
    # says nothing about this graph.
    sim = bd.rtlsim_json
    if sim.is_file() and sim.stat().st_mtime >= hw_model.stat().st_mtime:
        if not json.loads(sim.read_text()).get("passed"):
            raise VerificationError(
                f"{rel(sim)} reports a failed Verilator simulation of this graph: nothing is "
                f"built or shipped from it (`make verify NET={net} BOARD={board}` re-runs it)"
            )
    return summary, report
