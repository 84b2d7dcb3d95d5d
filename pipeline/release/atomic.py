"""Outputs that appear whole or not at all: build a folder or file beside its final name, then
rename. A kill or an exception mid-way leaves the previous good output untouched and nothing
truncated under the final name (only a hidden ``.<name>.partial`` sibling, cleared next run)."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path


def _partial(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.partial")


@contextlib.contextmanager
def staged_folder(dest: Path) -> Iterator[Path]:
    """Yield an empty sibling folder to fill; on success it replaces `dest` (the old one is
    removed only after the new one is in place), on an exception it is deleted."""
    dest = Path(dest)
    tmp = _partial(dest)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = dest.with_name(f".{dest.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staged_file(dest: Path) -> Iterator[Path]:
    """Yield a sibling path to write; on success it atomically replaces `dest`."""
    dest = Path(dest)
    tmp = _partial(dest)
    tmp.unlink(missing_ok=True)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, dest)
