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

import numpy as np
import pytest

from maskbnn.paths import SAMPLE_DIR
from maskbnn.pipeline.deploy import deploy

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
        with pytest.raises(ValueError, match="must be int"):
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
