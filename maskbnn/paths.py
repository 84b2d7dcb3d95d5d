"""Locations inside the repository, resolved once from this file's position."""

import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = REPO_ROOT / "build"
BUILD_CONFIGS = REPO_ROOT / "build_configs"
SAMPLE_DIR = REPO_ROOT / "data" / "maskedface-net-sample"


def rel(path: Path) -> str:
    """`path` relative to the repository when inside it (for messages and reports), else as is."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


# An absolute POSIX path inside free text (not the tail of a URL or of a relative path).
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/<>~-])/(?:[\w.+@-]+/)*[\w.+@-]+/?")


def portable(text: str, root: Path = REPO_ROOT) -> str:
    """`text` (a command, a log, a JSON record) with every absolute path made portable: a path
    inside `root` becomes relative to it, any other keeps its last part behind `<data>/`, so a
    committed record names no folder of the machine that wrote it."""

    def swap(match: re.Match) -> str:
        path = Path(match.group(0))
        if path.is_relative_to(root):
            return str(path.relative_to(root)) or "."
        return f"<data>/{path.name}"

    return ABSOLUTE_PATH.sub(swap, text)
