"""`make bitstream` and `make deploy` end to end with test doubles of `vivado` and `vitis_hls`.

Only the two programs are doubles (tests/doubles/bin, first on PATH): FINN+'s own steps (HLS IP
generation scripts, stitched IP, ZynqBuild and its transforms, make_driver) and all of ours run
for real, in a copy of the repository so the checkout's build/ and bitstreams/ stay untouched.
The copy's export and build run through make; its verification runs with fewer images than
`make verify` (and without the Verilator run, tested in test_rtlsim.py) to keep this test near
three minutes, so make is told not to redo the verification stamp (-o).
What only a real Vivado proves is listed in the README (bitstreams/README.md)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from maskbnn.paths import REPO_ROOT
from maskbnn_board.manifest import sha256_of
from tests.test_bitstream import write_board_files

NET, BOARD = "mask_1w1a_0.25", "Pynq-Z1"
DOUBLES = REPO_ROOT / "tests" / "doubles" / "bin"
VENV = REPO_ROOT / ".venv"


def repo_copy(dest: Path) -> Path:
    """The repository's files (tracked and new, not ignored), mtimes kept so make sees the venv
    stamp as up to date; `maskbnn.pipeline`/`maskbnn.models` linked as the editable install maps
    them, so PYTHONPATH=dest imports the copy's code."""
    git = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO_ROOT,
                         capture_output=True, text=True)  # fmt: skip
    if git.returncode == 0:
        for name in git.stdout.split():
            src = REPO_ROOT / name
            if src.is_file():
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / name)
    else:  # not a git checkout: everything but what .gitignore keeps out
        skip = shutil.ignore_patterns(".venv", "build", ".git", "__pycache__", "*.egg-info",
                                      "*.bit", "*.hwh", ".pytest_cache", ".ruff_cache")  # fmt: skip
        shutil.copytree(REPO_ROOT, dest, ignore=skip, symlinks=True)
    for sub in ("pipeline", "models", "bench"):
        (dest / "maskbnn" / sub).symlink_to(Path("..") / sub, target_is_directory=True)
    return dest


@pytest.fixture(scope="module")
def flow(tmp_path_factory) -> dict:
    if not (VENV / "bin" / "maskbnn").is_file():
        pytest.skip("needs the project venv (make setup)")
    tmp = tmp_path_factory.mktemp("doubles")
    repo = repo_copy(tmp / "repo")
    xilinx = tmp / "Xilinx"
    deps = tmp / "finn_deps"
    # stand-ins for FINN+'s external libraries: the doubles compile nothing
    for d in (xilinx / "Vivado" / "2024.2", xilinx / "Vitis_HLS" / "2024.2",
              deps / "finn-hlslib", deps / "nlohmann_json"):  # fmt: skip
        d.mkdir(parents=True)
    board_files = tmp / "board_files"
    write_board_files(board_files, BOARD)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FINN_", "XILINX_"))}
    env.update(PATH=f"{DOUBLES}{os.pathsep}{env['PATH']}", PYTHONPATH=str(repo),
               XILINX_VIVADO=str(xilinx / "Vivado" / "2024.2"),
               XILINX_HLS=str(xilinx / "Vitis_HLS" / "2024.2"), FINN_DEPS=str(deps),
               MASKBNN_DOUBLE_LOG=str(tmp / "calls.jsonl"))  # fmt: skip
    stamp = f"build/{NET}/{BOARD}/verified.stamp"
    args = [f"NET={NET}", f"BOARD={BOARD}", f"VENV={VENV}", f"BOARD_VENV={VENV}-board"]

    def make(target: str, *extra: str, fail: str = "") -> subprocess.CompletedProcess:
        e = {**env, "VIVADO_DOUBLE_FAIL": fail} if fail else env
        return subprocess.run(["make", "-C", str(repo), "--no-print-directory", target, *args,
                               *extra, "-o", stamp], env=e, capture_output=True, text=True)  # fmt: skip

    built = make("estimate")
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    verify = subprocess.run([str(VENV / "bin" / "maskbnn"), "verify", "--net", NET, "--board",
                             BOARD, "--images", "40", "--finn-images", "2",
                             "--streamlined-images", "40"],
                            cwd=repo, env=env, capture_output=True, text=True)  # fmt: skip
    assert verify.returncode == 0, verify.stdout[-3000:] + verify.stderr[-3000:]
    run = make("bitstream", f"BOARD_FILES={board_files}")
    return {"repo": repo, "tmp": tmp, "make": make, "env": env, "run": run, "board_files": board_files,
            "release": repo / "bitstreams" / NET / BOARD}  # fmt: skip


def calls(flow) -> list[dict]:
    return [json.loads(x) for x in (flow["tmp"] / "calls.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_make_bitstream_releases_a_complete_folder(flow):
    run, release, repo = flow["run"], flow["release"], flow["repo"]
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for f in ("accelerator.bit", "accelerator.hwh", "settings.json", "post_synthesis.md",
              "report/post_route_timing.rpt", "report/post_synth_resources.json",
              "golden/inputs.npy", "golden/expected_top1.npy", "manifest.json"):  # fmt: skip
        assert (release / f).is_file(), f
    m = json.loads((release / "manifest.json").read_text())
    assert m["status"] == "complete"
    # the copy's own check (its exported model is the copy's, not the checkout's)
    check = subprocess.run([str(VENV / "bin" / "python"), "-c", "import sys; from maskbnn."
                            "pipeline.release.deploy import check_manifest as c; "
                            "sys.exit(str(c(sys.argv[1])))", str(release)],
                           cwd=flow["repo"], env=flow["env"], capture_output=True,
                           text=True)  # fmt: skip
    assert check.stderr.strip().splitlines()[-1:] == ["[]"], check.stderr[-2000:]
    build = repo / "build" / NET / BOARD
    assert m["hw_model"]["sha256"] == sha256_of(build / "hw_model.onnx")
    assert "test double" in m["tools"]["reported"]["vivado"]
    assert "test double" in m["tools"]["reported"]["vitis_hls"]
    assert m["fifo_sizing"]["strategy"] == "force_minimal_fifos"  # no simulator library here
    assert m["steps_run"][-3:] == ["prepare_synthesis", "synthesize_bitfile", "make_driver"]
    # the driver settings are FINN's make_driver's, for the DMAs its Zynq shell names
    info = json.loads((release / "settings.json").read_text())["driver_information"]
    assert info["driver_type"] == "FINNDMAOverlay" and info["io_shape_dict"]["idma_names"] == [
        "idma0"
    ]
    # FINN's estimate and the post-synthesis figure side by side, per resource
    table = m["post_synthesis"]["vs_estimate"]
    assert table["LUT"]["finn_estimate"] == int(m["estimates"]["LUT"])
    assert table["LUT"]["post_synthesis"] == m["post_synthesis"]["resources"]["(top)"]["LUT"]
    assert "| LUT |" in (release / "post_synthesis.md").read_text()
    # with the whole-fabric estimate recorded, the release calibrates the folding as a whole design
    from maskbnn.pipeline.finn.fabric import SHELL
    from maskbnn.pipeline.fold.calibration import own_pair

    assert own_pair(m, SHELL)["scope"] == "whole design less the shell figure"
    # the sources listing is of the stitched dataflow graph, not ZynqBuild's partitions
    sources = json.loads((build / "bitstream" / "sources.json").read_text())["layers"]
    assert sources and not any("StreamingDataflowPartition" in k for k in sources)
    assert not any(p.name.endswith(".partial") for p in release.parent.iterdir())


@pytest.mark.slow
def test_tools_ran_with_the_xilinx_libraries_on_the_loader_path(flow):
    seen = calls(flow)
    assert {c["tool"] for c in seen} == {"vivado", "vitis_hls"}
    # stitched IP of the accelerator and of each DMA partition, then the Zynq project
    assert sum(c["argv"][:1] == ["-mode"] for c in seen if c["tool"] == "vivado") >= 3
    root = flow["tmp"] / "Xilinx" / "Vivado" / "2024.2"
    for c in seen:
        assert f"{root}/lib/lnx64.o" in c["ld_library_path"].split(os.pathsep), c


@pytest.mark.slow
def test_make_deploy_packages_the_released_bitfile(flow):
    assert flow["run"].returncode == 0
    out = flow["make"]("deploy")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    dep = flow["repo"] / "build" / "deploy" / f"{NET}_{BOARD}" / "deploy"
    assert sha256_of(dep / "accelerator.bit") == sha256_of(flow["release"] / "accelerator.bit")
    m = json.loads((dep / "manifest.json").read_text())
    assert m["artifacts"]["bitstream"] == "accelerator.bit" and m["clock_mhz"] == 100.0
    assert (dep.parent.parent / f"{NET}_{BOARD}.tar.gz").is_file()


@pytest.mark.slow
@pytest.mark.parametrize(
    "fail, expected",
    [
        ("timing", ["worst negative slack -1.234 ns", "100 MHz", "next slower folding"]),
        ("utilization", ["61,234 Slice LUTs", "53,200", "8,034 over capacity"]),
    ],
)
def test_failed_synthesis_says_why_and_keeps_the_release(flow, fail, expected):
    release = flow["release"]
    assert flow["run"].returncode == 0
    before = sha256_of(release / "manifest.json")
    out = flow["make"]("bitstream", f"BOARD_FILES={flow['board_files']}", fail=fail)
    assert out.returncode != 0
    for text in expected:
        assert text in out.stderr, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    assert sha256_of(release / "manifest.json") == before
    assert sorted(p.name for p in release.parent.iterdir()) == [BOARD]
