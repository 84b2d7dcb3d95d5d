"""File-hash manifests: ``manifest.json`` holds metadata plus the sha256 and size of every other
file of its folder. The one writer and checker, used by the driver's Deployment, by the deploy
step that writes deployment folders and by the bitstream release (which lives in the project,
allowed to import the driver but not the other way round)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import NamedTuple

MANIFEST = "manifest.json"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_entries(folder: Path) -> dict[str, dict]:
    """sha256 and size of every file below ``folder`` except the manifest, by relative path."""
    return {
        str(p.relative_to(folder)): {"sha256": sha256_of(p), "bytes": p.stat().st_size}
        for p in sorted(Path(folder).rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def write_manifest(folder: Path, fmt: str, meta: dict) -> dict:
    """Write ``folder``/manifest.json (format, ``meta``, then the files' hashes); returns it."""
    manifest = {"format": fmt, **meta, "files": file_entries(folder)}
    (Path(folder) / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return manifest


class FileProblem(NamedTuple):
    """A listed file that is missing (``got`` empty) or whose sha256 differs from ``want``."""

    name: str
    got: str
    want: str

    def __str__(self) -> str:
        return f"{self.name}: {'sha256 differs' if self.got else 'missing'}"


def file_problems(folder: Path, files: dict[str, dict]) -> list[FileProblem]:
    """The listed files (name -> {"sha256": ...}) below ``folder`` that do not match."""
    problems = []
    for name, entry in files.items():
        path = Path(folder) / name
        if not path.is_file():
            problems.append(FileProblem(name, "", entry["sha256"]))
        elif (got := sha256_of(path)) != entry["sha256"]:
            problems.append(FileProblem(name, got, entry["sha256"]))
    return problems
