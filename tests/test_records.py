"""Committed records are portable: no file the repository ships as a record (run JSONs, training
logs, notes, configs, folding files) names a folder of the machine that wrote it."""

from __future__ import annotations

import subprocess

from maskbnn.paths import ABSOLUTE_PATH, REPO_ROOT, portable

RECORD_SUFFIXES = {".json", ".txt", ".md", ".yaml", ".csv"}
RECORD_FOLDERS = ("models/", "build_configs/", "data/")


def committed_records() -> list[str]:
    files = subprocess.run(
        ["git", "ls-files", *RECORD_FOLDERS],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [f for f in files if f[f.rfind(".") :] in RECORD_SUFFIXES]


def test_committed_records_hold_no_absolute_path():
    records = committed_records()
    assert "models/pretrained/mask_1w1a_0.25.json" in records
    found = {}
    for name in records:
        text = (REPO_ROOT / name).read_text(errors="replace")
        hits = ABSOLUTE_PATH.findall(text)
        if hits:
            found[name] = hits[:3]
    assert not found, f"absolute paths in committed records: {found}"


def test_portable_makes_paths_relative_or_a_placeholder():
    text = f"--datadir /srv/data/maskedface-net-sample --experiments {REPO_ROOT}/build/runs/a_1"
    assert portable(text) == "--datadir <data>/maskedface-net-sample --experiments build/runs/a_1"
    kept = "1x / 0.5x, https://arxiv.org/abs/2008.08016, build/data/full, mean|W|"
    assert portable(kept) == kept
