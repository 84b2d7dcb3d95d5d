"""`make bench` runs from a fresh checkout: the builds it times come first, and a missing one is a
clear user error (exit 2, no traceback)."""

from __future__ import annotations

import subprocess
import sys

from maskbnn.bench.verify import NETS
from maskbnn.paths import REPO_ROOT
from tests.conftest import plain_env


def test_make_bench_builds_each_graph_before_timing_it(tmp_path):
    # BUILD in an empty folder: Make plans every build, as on a fresh checkout (-n runs nothing)
    out = subprocess.run(
        ["make", "-n", "--no-print-directory", "bench", f"BUILD={tmp_path}", "BOARD=Pynq-Z2"],
        cwd=REPO_ROOT, env=plain_env(), capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    timed = next(i for i, line in enumerate(out) if "maskbnn bench-verify" in line)
    assert "--board Pynq-Z2" in out[timed]
    for net in NETS:
        built = [i for i, line in enumerate(out) if f"maskbnn build --net {net} " in line]
        assert built and built[0] < timed, (net, out)


def test_bench_verify_without_a_build_is_a_user_error(tmp_path):
    cmd = [sys.executable, "-m", "maskbnn", "bench-verify", "--nets", NETS[0],
           "--build-root", str(tmp_path), "--out", str(tmp_path / "bench")]  # fmt: skip
    r = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert "no build at" in r.stderr and f"maskbnn build --net {NETS[0]}" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "bench").exists()
