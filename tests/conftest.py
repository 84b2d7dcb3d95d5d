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
