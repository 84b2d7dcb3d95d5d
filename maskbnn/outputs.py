"""Outputs that are never half-written, and one command at a time per build folder.

Make decides what to re-run from the summary files a stage writes (export.json, build.json,
verified.stamp): a stage removes them before it starts and writes them last, atomically, so a stage
killed part-way leaves Make seeing its target as out of date. Commands that work on the same build
folder (build, verify, rtlsim) take its lock: the second one waits, saying whom it waits for.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = ".lock"
_held: dict[Path, int] = {}  # folders this process holds, with nesting depth


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write to a temporary sibling, fsync, rename over `path`: readers see old or new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: Path, obj, **kwargs) -> None:
    write_atomic(path, json.dumps(obj, indent=2, **kwargs) + "\n")


def remove(*paths: Path) -> None:
    """Remove stamps/summaries before a stage starts (missing ones are fine)."""
    for p in paths:
        Path(p).unlink(missing_ok=True)


@contextmanager
def folder_lock(folder: Path, command: str, create: bool = True) -> Iterator[None]:
    """Hold `folder`'s lock for the body. Held by another process: print who holds it and wait.
    Re-entrant within a process (a stage may call another stage on the same folder). A reader
    (create=False) of a folder that does not exist has nothing to wait for and creates nothing."""
    folder = Path(folder).resolve()
    if not create and not folder.is_dir():
        yield
        return
    if folder in _held:
        _held[folder] += 1
        try:
            yield
        finally:
            _held[folder] -= 1
        return
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another command"
            print(f"{command}: waiting for {holder} to finish with {folder}", file=sys.stderr)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"`{command}` (pid {os.getpid()})".encode(), 0)
        _held[folder] = 1
        try:
            yield
        finally:
            del _held[folder]
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing releases the flock
