"""Kill-and-resume: a real training process is SIGKILLed mid-run, resumed from checkpoint.tar, and
ends with exactly the weights of a run that was never interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from maskbnn.errors import UserError
from maskbnn.models.checkpoint import read_checkpoint
from maskbnn.paths import REPO_ROOT, SAMPLE_DIR

EPOCHS = 6


def command(exp: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "maskbnn.cli",
        "train",
        "--network",
        "mask_1w1a_0.125",
        "--datadir",
        str(SAMPLE_DIR),
        "--experiments",
        str(exp),
        "--epochs",
        str(EPOCHS),
        "--threads",
        "1",
        "--no-progress",
        *extra,
    ]


def checkpoint_epoch(path: Path) -> int:
    try:
        return int(read_checkpoint(path)["epoch"])
    except UserError:  # not written yet
        return 0


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_matches_uninterrupted(tmp_path: Path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # The uninterrupted reference run.
    subprocess.run(command(tmp_path / "ref"), check=True, cwd=REPO_ROOT, env=env, timeout=600)
    (ref_run,) = (tmp_path / "ref").iterdir()

    proc = subprocess.Popen(
        command(tmp_path / "killed"),
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 600
        ckpt = None
        while time.monotonic() < deadline and proc.poll() is None:
            runs = list((tmp_path / "killed").glob("*/checkpoints/checkpoint.tar"))
            if runs and checkpoint_epoch(runs[0]) >= 2:
                ckpt = runs[0]
                break
            time.sleep(0.05)
        assert ckpt is not None, "the training process never wrote an epoch-2 checkpoint"
        proc.send_signal(signal.SIGKILL)  # no chance to clean up: mid-epoch 3 (or just after 2)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    killed_at = read_checkpoint(ckpt)["epoch"]
    assert 2 <= killed_at < EPOCHS, "the kill came too late to test resuming"

    subprocess.run(
        command(tmp_path / "killed", "--resume", str(ckpt)),
        check=True,
        cwd=REPO_ROOT,
        env=env,
        timeout=600,
    )
    run = ckpt.parent.parent
    metrics = json.loads((run / "metrics.json").read_text())
    assert [r["epoch"] for r in metrics["history"]] == list(range(1, EPOCHS + 1))
    log = (run / "log.txt").read_text()
    assert f"resuming mask_1w1a_0.125 at epoch {killed_at + 1}" in log

    done, ref = read_checkpoint(ckpt), read_checkpoint(ref_run / "checkpoints" / "checkpoint.tar")
    assert done["epoch"] == ref["epoch"] == EPOCHS
    # Same batches, same augmentation, same optimizer and LR state: identical weights.
    for key, value in ref["state_dict"].items():
        assert torch.equal(done["state_dict"][key], value), key
    ref_metrics = json.loads((ref_run / "metrics.json").read_text())
    assert metrics["test"]["confusion"] == ref_metrics["test"]["confusion"]
