"""Locations inside the repository, resolved once from this file's position."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = REPO_ROOT / "build"
BUILD_CONFIGS = REPO_ROOT / "build_configs"
SAMPLE_DIR = REPO_ROOT / "data" / "maskedface-net-sample"
