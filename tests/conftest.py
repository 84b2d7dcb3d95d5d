"""Shared fixtures: the shipped sample, the optional ../shared data, small real-image folders."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from maskbnn.paths import REPO_ROOT, SAMPLE_DIR

SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def shared_path(name: str) -> Path:
    """A folder of ../shared/data, or skip the test saying what is missing."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"needs {path} (the real data set beside the repo); not present here")
    return path


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return SAMPLE_DIR


@pytest.fixture
def small_original(tmp_path: Path) -> Path:
    """A copy of 12 real images per class in the original CMFD/IMFD layout."""
    out = tmp_path / "orig"
    for sub in ("CMFD", "IMFD"):
        (out / sub).mkdir(parents=True)
    for suffix in ("_Mask", "_Mask_Mouth_Chin", "_Mask_Nose_Mouth", "_Mask_Chin"):
        sub = "CMFD" if suffix == "_Mask" else "IMFD"
        files = sorted((SAMPLE_DIR / sub).glob(f"*{suffix}.jpg"))[:12]
        for f in files:
            shutil.copyfile(f, out / sub / f.name)
    return out


# --- export/build/verify (pipeline/export/qonnx_export.py, build.py, verify.py) -----------------------------


def calibrated_checkpoint(net: str, out: Path) -> Path:
    """Trained weights when shipped, else random weights with BatchNorm statistics calibrated on
    400 real images (train-mode forward passes), so activations are not degenerate."""
    import torch

    from maskbnn.models.checkpoint import PRETRAINED_DIR, save_checkpoint
    from maskbnn.models.registry import get_network
    from maskbnn.pipeline.data.datasets import load_dataset

    shipped = PRETRAINED_DIR / f"{net}.tar"
    if shipped.is_file():
        return shipped
    torch.manual_seed(0)
    model, cfg = get_network(net)
    x = load_dataset(cfg.dataset, SAMPLE_DIR, "all").x[:400]
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average over the calibration batches
    model.train()
    with torch.no_grad():
        for s in range(0, len(x), 100):
            model(torch.from_numpy(x[s : s + 100]).permute(0, 3, 1, 2).float() / 255.0)
    path = out / f"{net}.tar"
    save_checkpoint(path, {"state_dict": model.state_dict(), "network": net, "epoch": 0})
    return path


@pytest.fixture(scope="session")
def built_025(tmp_path_factory) -> dict:
    """mask_1w1a_0.25 exported and built once per session (about 20 s)."""
    import torch

    from maskbnn.pipeline.export.qonnx_export import export_checkpoint
    from maskbnn.pipeline.finn.build import run_build

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("build025")
    ckpt = calibrated_checkpoint("mask_1w1a_0.25", root)
    exp = export_checkpoint("mask_1w1a_0.25", ckpt, root / "export")
    summary = run_build("mask_1w1a_0.25", exp.topk, "Pynq-Z1", root / "Pynq-Z1")
    return {"checkpoint": ckpt, "export": exp, "dir": root / "Pynq-Z1", "summary": summary}


def plain_env() -> dict:
    """The environment for a `make` a test runs: without the Make variables of a `make test` above."""
    import os

    return {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
