"""The driver and the board notebook fit the oldest board Python (PYNQ 2.7: Python 3.8)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from maskbnn.paths import REPO_ROOT

VERMIN = Path(sys.executable).parent / "vermin"


def vermin(*paths: Path) -> subprocess.CompletedProcess:
    cmd = [str(VERMIN), "-t=3.8-", "--violations", "--no-tips", "-q", *map(str, paths)]
    return subprocess.run(cmd, capture_output=True, text=True)


def test_driver_and_notebook_syntax_fit_python_38(tmp_path):
    nb = json.loads((REPO_ROOT / "driver" / "notebooks" / "maskbnn_board.ipynb").read_text())
    cells = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    (tmp_path / "notebook.py").write_text("\n\n".join(cells) + "\n")
    proc = vermin(REPO_ROOT / "driver" / "maskbnn_board", tmp_path / "notebook.py")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_vermin_does_catch_what_python_38_lacks(tmp_path):
    """The check above is only worth something if vermin fails on 3.9+ constructs."""
    (tmp_path / "new.py").write_text(
        "import math\nd = {} | {}\nprint(str.removeprefix('ab', 'a'))\n"
    )
    assert vermin(tmp_path / "new.py").returncode != 0
