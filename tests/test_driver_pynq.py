"""The driver's pynq backend on the PYNQ double (tests/doubles/pynq): the board path run without a
board. The double's programmable logic is the project's emulated accelerator fed from the bytes
in (simulated) DDR, so the pynq backend must agree with `--backend emulate` image for image, and
a driver that forgets a cache flush, the high address word or the clock's meaning fails here."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from maskbnn.paths import REPO_ROOT, SAMPLE_DIR
from maskbnn.pipeline.release.deploy import deploy

from .board_double import double_env, fake_bitstream, pynq_double
from .test_driver_emulate import BOARD, NET

BOARD_CLI = [sys.executable, "-m", "maskbnn_board"]


def deploy_with_bitstream(built: dict, tmp, images=SAMPLE_DIR, clock_mhz=100.0, accel_mhz=None):
    bit = fake_bitstream(tmp / "bit", accel_mhz or clock_mhz)
    build = built["dir"]
    deploy(NET, BOARD, tmp / "out", build / "program.npz", hw_model=build / "hw_model.onnx",
           bitstream=bit, images=images, checkpoint=built["checkpoint"], clock_mhz=clock_mhz,
           weights_hash=built["export"].weights_hash)  # fmt: skip
    return tmp / "out" / f"{NET}_{BOARD}" / "deploy"


@pytest.fixture(scope="module")
def board_deploy(built_025, tmp_path_factory):
    """mask_1w1a_0.25 deployed with a bitstream (and its .hwh) and the 1,000 shipped images."""
    return deploy_with_bitstream(built_025, tmp_path_factory.mktemp("board"))


def board_run(dep, backend: str, out, *extra: str) -> subprocess.CompletedProcess:
    args = ["run", "--deploy", str(dep), "--backend", backend, "--out", str(out), "--no-progress"]
    return subprocess.run([*BOARD_CLI, *args, *extra], capture_output=True, text=True,
                          env=double_env(), timeout=900)  # fmt: skip


@pytest.mark.slow
def test_pynq_backend_on_the_double_agrees_with_emulation_on_every_sample_image(
    board_deploy, tmp_path
):
    runs = {}
    for backend in ("pynq", "emulate"):
        proc = board_run(board_deploy, backend, tmp_path / backend, "--images", str(SAMPLE_DIR),
                         "--golden", "--batch", "100")  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        summary = json.loads((tmp_path / backend / "summary.json").read_text())
        rows = list(csv.DictReader(open(tmp_path / backend / "predictions.csv")))
        runs[backend] = (summary, rows)
    (pynq_sum, pynq_rows), (emu_sum, emu_rows) = runs["pynq"], runs["emulate"]
    assert pynq_sum["images"] == 1000 and pynq_sum["skipped"] == []
    assert pynq_sum["golden"]["golden_agreeing"] == pynq_sum["golden"]["golden_images"] == 1000
    assert pynq_sum["golden_agreeing"] == pynq_sum["golden_compared"] == 1000
    assert pynq_sum["accelerator"]["backend"] == "pynq"
    assert pynq_rows == emu_rows  # same file, prediction, raw output, golden match, row by row
    assert pynq_sum["accuracy"] == emu_sum["accuracy"]


@pytest.mark.slow
def test_a_bitfile_that_does_not_match_its_manifest_is_refused_on_the_board(board_deploy, tmp_path):
    dep = tmp_path / "deploy"
    shutil.copytree(board_deploy, dep)
    with open(dep / "accelerator.bit", "r+b") as f:
        f.seek(64)
        f.write(b"\xff")
    proc = board_run(dep, "pynq", tmp_path / "r", "--golden")
    assert proc.returncode == 2, proc.stderr
    assert "accelerator.bit: sha256" in proc.stderr and "Traceback" not in proc.stderr


def run_on_double(dep, images: np.ndarray, batch: int, accelerator_class=None):
    """Our pynq backend on a fresh double: outputs, the register log, the input bytes DMA'd."""
    with pynq_double() as pynq:
        from maskbnn_board.backend_pynq import PynqAccelerator
        from maskbnn_board.deployment import Deployment

        board = sys.modules["pynq._board"].BOARD
        acc = (accelerator_class or PynqAccelerator)(Deployment(dep), batch)
        try:
            out = acc.execute(images)
        finally:
            acc.close()
        return out, list(board.log), list(board.inputs_seen), pynq


@pytest.mark.slow
def test_register_protocol_high_address_word_and_clock(built_025, tmp_path, small_original):
    """A 125 MHz build: FCLK0 stays the clocking wizard's 100 MHz reference (setting it to 125 would
    clock the accelerator at 156 MHz); every run writes address low and high words."""
    dep = deploy_with_bitstream(built_025, tmp_path, small_original, clock_mhz=125.0)
    golden = np.load(dep / "golden" / "inputs.npy")
    expected = np.load(dep / "golden" / "expected.npy")
    out, log, seen, _ = run_on_double(dep, golden[:7], 7)
    np.testing.assert_array_equal(out, expected[:7])
    assert ("Clocks", "write", "fclk0_mhz", 100.0) in log
    writes = [(ip, off) for ip, kind, off, _ in log if kind == "write" and ip != "Clocks"]
    assert writes == [(ip, off) for ip in ("odma0", "idma0") for off in (0x10, 0x14, 0x1C, 0x00)]
    assert len(seen) == 1 and seen[0].shape == (7, 32, 32, 1, 3)


@pytest.mark.slow
def test_settings_and_bitstream_clocks_that_disagree_are_refused(
    built_025, tmp_path, small_original
):
    from maskbnn_board.errors import DeploymentError

    dep = deploy_with_bitstream(built_025, tmp_path, small_original, 100.0, accel_mhz=125.0)
    with pytest.raises(DeploymentError, match="clocking wizard makes 125.0 MHz"):
        run_on_double(dep, np.zeros((1, 32, 32, 3), np.uint8), 1)


@pytest.mark.slow
def test_the_double_catches_a_driver_that_forgets_the_cache(built_025, tmp_path, small_original):
    """Without flush() the DMA reads stale memory; without invalidate() the CPU reads a stale cache:
    either way the outputs are wrong, so a careless driver cannot pass on the double."""
    from maskbnn_board.backend_pynq import PynqAccelerator

    class NoFlush(PynqAccelerator):
        def copy_in(self, packed):
            self.ibuf[: len(packed)] = packed

    class NoInvalidate(PynqAccelerator):
        def copy_out(self, n):
            return np.array(self.obuf[:n], copy=True)

    dep = deploy_with_bitstream(built_025, tmp_path, small_original)
    x = np.load(dep / "golden" / "inputs.npy")
    expected = np.load(dep / "golden" / "expected.npy")
    good, *_ = run_on_double(dep, x, 16)
    np.testing.assert_array_equal(good, expected)
    for careless in (NoFlush, NoInvalidate):
        bad, *_ = run_on_double(dep, x, 16, careless)
        assert not np.array_equal(bad, expected), careless.__name__


@pytest.mark.slow
def test_the_double_refuses_register_misuse(built_025, tmp_path, small_original):
    dep = deploy_with_bitstream(built_025, tmp_path, small_original)
    with pynq_double() as pynq:
        from pynq._board import ProtocolError

        ol = pynq.Overlay(str(dep / "accelerator.bit"))
        pynq.ps.Clocks.fclk0_mhz = 100.0
        buf = pynq.allocate((4, 32, 32, 1, 3), np.uint8, cacheable=True)
        with pytest.raises(ValueError, match="Data type must be int or bytes"):
            ol.idma0.write(0x1C, np.int64(4))  # PYNQ's MMIO takes plain int only
        with pytest.raises(ProtocolError, match="without writing 0x10, 0x14"):
            ol.idma0.write(0x1C, 4)
            ol.idma0.write(0x00, 1)
        for ip in (ol.odma0, ol.idma0):
            ip.write(0x10, buf.physical_address)
            ip.write(0x14, 0)
            ip.write(0x1C, 5)  # one image more than the buffer holds
        ol.odma0.write(0x00, 1)
        with pytest.raises(ProtocolError, match="does not match the buffer"):
            ol.idma0.write(0x00, 1)


# --- FINN+'s own driver as the referee ------------------------------------------------------------

BOARD_PY = REPO_ROOT / ".venv-board" / "bin" / "python"
SHARED_IO_KEYS = ("idt", "odt", "ishape_normal", "ishape_folded", "ishape_packed", "oshape_normal",
                  "oshape_folded", "oshape_packed", "idma_names", "odma_names", "num_inputs",
                  "num_outputs")  # fmt: skip


@pytest.fixture(scope="module")
def finn_settings(built_025, tmp_path_factory) -> Path:
    from .finn_driver_settings import finn_make_driver_settings

    tmp = tmp_path_factory.mktemp("make_driver")
    settings = finn_make_driver_settings(built_025["dir"] / "hw_model.onnx", BOARD, 10.0, tmp)
    path = tmp / "settings.json"
    path.write_text(json.dumps(settings))
    return path


@pytest.mark.slow
def test_deployed_settings_are_the_ones_finn_make_driver_writes(board_deploy, finn_settings):
    ours = json.loads((board_deploy / "settings.json").read_text())["driver_information"]
    finn = json.loads(finn_settings.read_text())["driver_information"]
    assert finn["driver_type"] == ours["driver_type"] == "FINNDMAOverlay"
    assert finn["platform"] == ours["platform"] == "zynq-iodma"
    assert finn["fclk_mhz"] == ours["fclk_mhz"] == 100.0
    for key in SHARED_IO_KEYS:
        assert ours["io_shape_dict"][key] == finn["io_shape_dict"][key], key


def referee_run(which: str, dep: Path, settings: Path, images: Path, batch: int, out: Path):
    if not BOARD_PY.is_file():
        pytest.fail(f"{BOARD_PY} is missing: `make setup` creates it (FINN+'s board driver)")
    script = REPO_ROOT / "tests" / "referee_run.py"
    args = [str(BOARD_PY), str(script), which, str(dep), str(settings), str(images), str(batch)]
    proc = subprocess.run([*args, str(out)], capture_output=True, text=True, env=double_env(),
                          timeout=600, cwd=out.parent)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rec = np.load(out)
    return rec["outputs"], json.loads(str(rec["log"])), rec["inputs"]


def without_addresses(log: list) -> list:
    """Buffer addresses (0x10) depend on each driver's allocation order and sizes (FINN's driver
    re-allocates for a short last batch); that they point at the right bytes is proved by the
    input bytes and outputs being identical. Everything else must match exactly."""
    return [[ip, kind, off, None if off == str(0x10) else val] for ip, kind, off, val in log]


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 7, 100])
def test_finn_plus_driver_and_ours_agree_on_the_double(
    board_deploy, finn_settings, tmp_path, batch
):
    """Same 100 sample images through FINN+'s FINNDMAOverlay and through maskbnn_board's pynq
    backend, both on the PYNQ double: identical outputs (and equal to the golden vectors),
    identical input bytes DMA'd, identical register sequences (clock, 0x14, 0x1C, start order)."""
    x = np.load(board_deploy / "golden" / "inputs.npy")[:100]
    expected = np.load(board_deploy / "golden" / "expected.npy")[:100].reshape(100, -1)
    np.save(tmp_path / "x.npy", x)
    finn = referee_run("finn", board_deploy, finn_settings, tmp_path / "x.npy", batch,
                       tmp_path / "finn.npz")  # fmt: skip
    ours = referee_run("ours", board_deploy, finn_settings, tmp_path / "x.npy", batch,
                       tmp_path / "ours.npz")  # fmt: skip
    np.testing.assert_array_equal(finn[0], expected)
    np.testing.assert_array_equal(ours[0], finn[0])
    np.testing.assert_array_equal(ours[2], finn[2])
    assert ours[2].shape == (100, 32, 32, 1, 3)
    assert without_addresses(ours[1]) == without_addresses(finn[1])
    assert ["Clocks", "write", "fclk0_mhz", 100.0] in finn[1]
    runs = -(-100 // batch)
    assert sum(1 for e in ours[1] if e[:3] == ["idma0", "write", "0"]) == runs


# --- the board notebook -------------------------------------------------------------------------


def execute_notebook(package: Path, env: dict) -> list[str]:
    """Run the package's notebook end to end in a fresh python3 kernel; its printed output."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(package / "maskbnn_board.ipynb", as_version=4)
    client = NotebookClient(nb, kernel_name="python3", timeout=600,
                            resources={"metadata": {"path": str(package)}})  # fmt: skip
    client.execute(env=env)  # raises CellExecutionError on any failing cell
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            texts.append(out.get("text", ""))
    return texts


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["emulate", "pynq"])
def test_the_board_notebook_runs_end_to_end(board_deploy, backend):
    """Off-board the notebook falls back to the emulation; with the PYNQ double as `pynq` it drives
    the pynq backend. Either way every cell runs and the golden vectors all agree."""
    import os

    env = double_env() if backend == "pynq" else dict(os.environ)
    text = "".join(execute_notebook(board_deploy.parent, env))
    assert f"backend {backend}" in text
    assert "golden agreement: 1000/1000" in text and "images/s through the driver path" in text
    assert ("no FPGA here" in text) == (backend == "emulate")


# --- the oldest board Python ----------------------------------------------------------------------


def python38() -> str | None:
    """A Python 3.8 interpreter (PYNQ 2.7's), on PATH or in pyenv's versions."""
    import os
    import shutil

    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    for cand in (shutil.which("python3.8"), *sorted(pyenv.glob("versions/3.8*/bin/python3.8"))):
        check = [str(cand), "-c", "import sys; assert sys.version_info[:2] == (3, 8)"]
        if cand and subprocess.run(check, capture_output=True).returncode == 0:
            return str(cand)
    return None


@pytest.mark.slow
def test_the_package_wheel_installs_offline_and_runs_on_python_38_with_numpy_120(
    board_deploy, tmp_path
):
    """A PYNQ 2.7 image's Python: 3.8 with numpy 1.20 and Pillow already there. The package's
    wheel installs with --no-deps --no-index and runs the golden vectors and the samples."""
    py = python38()
    if py is None:
        pytest.skip("no Python 3.8 interpreter on this machine")
    venv = tmp_path / "py38"
    subprocess.run([py, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "numpy==1.20.3", "pillow==8.4.0"], check=True, capture_output=True)
    wheel = next(board_deploy.parent.glob("maskbnn_board-*.whl"))
    offline = subprocess.run([*pip, "--no-deps", "--no-index", str(wheel)], capture_output=True,
                             text=True)  # fmt: skip
    assert offline.returncode == 0, offline.stderr
    out = tmp_path / "r"
    proc = subprocess.run(
        [str(venv / "bin" / "maskbnn-board"), "run", "--deploy", str(board_deploy), "--backend",
         "emulate", "--golden", "--images", str(board_deploy.parent / "samples"), "--out",
         str(out), "--no-progress"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["golden"]["golden_agreeing"] == summary["golden"]["golden_images"] == 1000
    assert summary["images"] == 16 and summary["golden_agreeing"] == summary["golden_compared"]


def test_double_buffers_keep_the_cpu_cache_apart_from_memory():
    """As on the Zynq's ARM cores: a cacheable buffer's writes reach memory through flush() only
    (of the buffer or of a contiguous slice, at the slice's own address), memory reaches the CPU
    through invalidate() only; a non-cacheable buffer is memory itself."""
    with pynq_double() as pynq:
        buf = pynq.allocate((4, 3), np.uint8, cacheable=True)
        memory = buf._memory
        buf[:] = 7
        assert not memory.any()
        buf[1:3].flush()
        assert buf[1:3].physical_address == buf.physical_address + 3
        assert memory.tolist() == [0] * 3 + [7] * 6 + [0] * 3
        memory[:] = 9
        assert (buf == 7).all()
        buf.invalidate()
        assert (buf == 9).all()
        plain = pynq.allocate((5,), np.uint8, cacheable=False)
        plain[:] = 5
        assert plain._memory.tolist() == [5] * 5 and not plain.cacheable
