"""What Vivado's reports and logs in FINN+'s Zynq project say, in maskbnn's terms.

- `timing_slack`: worst negative slack from the routed timing summary FINN+ copies into
  ``report/post_route_timing.rpt`` (Vivado's ``report_timing_summary`` text);
- `placement_failure`: the resource Vivado's placer could not fit (``[Place 30-640]``), read
  from the logs of FINN+'s Zynq project, since FINN+ only says "no bitfile found".
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# Vivado's site names in a Place 30-640 message -> ours
PLACER_NAMES = {"Slice LUTs": "LUT", "Slice Registers": "FF", "Block RAM Tile": "BRAM36",
                "RAMB36": "BRAM36", "RAMB18": "BRAM18", "DSPs": "DSP"}  # fmt: skip


def timing_slack(report: Path) -> float | None:
    """WNS in ns from a Vivado timing summary (None when the report has no summary table)."""
    if not Path(report).is_file():
        return None
    m = re.search(r"WNS\(ns\).*?\n.*?\n\s*(-?\d+\.\d+)", Path(report).read_text())
    return float(m.group(1)) if m else None


def placement_failure(project_root: Path) -> dict | None:
    """The over-capacity resource of a failed placement in any log under `project_root`."""
    pattern = re.compile(
        r"\[Place 30-640\].*?requires more (.+?) cells than are available.*?requires (\d+) of "
        r"such cell types but only (\d+) compatible sites"
    )
    for dirpath, _, files in os.walk(project_root):
        for name in sorted(f for f in files if f.endswith(".log")):
            m = pattern.search(Path(dirpath, name).read_text(errors="replace"))
            if m:
                site, need, have = m.group(1), int(m.group(2)), int(m.group(3))
                return {"resource": PLACER_NAMES.get(site, site), "vivado_site": site,
                        "required": need, "available": have, "over_by": need - have,
                        "log": name}  # fmt: skip
    return None
