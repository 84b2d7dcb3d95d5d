"""The driver installs into a clean venv with only numpy and pillow, and runs there."""

from __future__ import annotations

import shutil
import subprocess
import venv
from pathlib import Path

import pytest

from maskbnn.paths import REPO_ROOT

from .test_driver_deployment import make_deployment
from .test_driver_emulate import BOARD, NET, deploy_built

FORBIDDEN = ("torch", "finn", "qonnx", "brevitas", "onnx", "maskbnn", "tqdm")


@pytest.fixture(scope="module")
def clean_venv(tmp_path_factory) -> Path:
    """A fresh venv with `pip install <copy of driver/>` (deps from the local wheels / PyPI)."""
    root = tmp_path_factory.mktemp("clean")
    src = root / "driver"
    # pip builds in the source tree; build from a copy so driver/ stays clean
    shutil.copytree(
        REPO_ROOT / "driver",
        src,
        ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"),
    )
    env_dir = root / "venv"
    venv.create(env_dir, with_pip=True, symlinks=True)
    proc = subprocess.run(
        [str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", str(src)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        pytest.fail(f"pip install of the driver failed:\n{proc.stdout}\n{proc.stderr}")
    return env_dir


@pytest.mark.slow
def test_installs_with_only_its_own_dependencies(clean_venv):
    py = str(clean_venv / "bin" / "python")
    listed = subprocess.run(
        [py, "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True, check=True
    ).stdout
    names = {line.split("==")[0].lower() for line in listed.split()}
    assert {"maskbnn-board", "numpy", "pillow"} <= names
    assert not names & set(FORBIDDEN), names
    # importing every module pulls in nothing but numpy and pillow
    code = (
        "import sys, pkgutil, importlib, maskbnn_board\n"
        "for m in pkgutil.iter_modules(maskbnn_board.__path__):\n"
        "    if m.name != '__main__': importlib.import_module('maskbnn_board.' + m.name)\n"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}]\n"
        "assert not bad, bad\n"
        "print(sys.prefix)\n"
    )
    out = subprocess.run([py, "-c", code], capture_output=True, text=True, cwd="/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(clean_venv)
    version = subprocess.run(
        [str(clean_venv / "bin" / "maskbnn-board"), "--version"], capture_output=True, text=True
    )
    assert version.returncode == 0 and "0.1.0" in version.stdout


@pytest.mark.slow
def test_installed_cli_checks_a_deployment_and_refuses_the_board_backend(
    clean_venv, tmp_path, sample_dir
):
    dep = make_deployment(tmp_path, sample_dir, bitstream=True)
    exe = str(clean_venv / "bin" / "maskbnn-board")
    ok = subprocess.run([exe, "check", "--deploy", str(dep)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "files match manifest.json" in ok.stdout
    board = subprocess.run(
        [exe, "run", "--deploy", str(dep), "--golden", "--backend", "pynq"],
        capture_output=True,
        text=True,
    )
    assert board.returncode == 4 and "--backend emulate" in board.stderr


@pytest.mark.slow
def test_installed_driver_emulates_the_accelerator_bit_exactly(clean_venv, built_025, tmp_path):
    """The whole emulation path with only numpy and pillow: golden vectors and real JPEGs."""
    import json

    from maskbnn.paths import SAMPLE_DIR

    deploy_built(built_025, tmp_path)
    dep = tmp_path / "deploy" / f"{NET}_{BOARD}" / "deploy"
    out = tmp_path / "r"
    proc = subprocess.run(
        [str(clean_venv / "bin" / "maskbnn-board"), "run", "--deploy", str(dep), "--backend",
         "emulate", "--golden", "--images", str(SAMPLE_DIR), "--limit", "200", "--out", str(out)],
        capture_output=True, text=True, cwd="/",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["golden"]["golden_agreeing"] == summary["golden"]["golden_images"] == 1000
    assert summary["golden_agreeing"] == summary["golden_compared"] == 200
