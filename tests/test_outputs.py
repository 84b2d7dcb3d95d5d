"""A killed stage never looks finished to Make, and two commands on one build folder take turns."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from maskbnn.errors import UserError
from maskbnn.outputs import folder_lock, write_atomic
from maskbnn.paths import REPO_ROOT
from tests.conftest import plain_env

NET, BOARD = "mask_1w1a_0.25", "Pynq-Z1"
HOLD = 3.0  # seconds the other process keeps the lock


def hold_lock(folder: Path, seconds: float = HOLD) -> subprocess.Popen:
    """Another process holding `folder`'s lock for `seconds`; returns once it holds it."""
    code = (
        "import sys, time\n"
        "from maskbnn.outputs import folder_lock\n"
        "with folder_lock(sys.argv[1], 'maskbnn build --net other'):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(float(sys.argv[2]))\n"
    )
    p = subprocess.Popen([sys.executable, "-c", code, str(folder), str(seconds)],
                         stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert p.stdout.readline().strip() == "held"
    return p


def test_write_atomic_leaves_no_temporary_file(tmp_path):
    write_atomic(tmp_path / "a.json", "{}\n")
    write_atomic(tmp_path / "a.json", b"[]\n")
    assert (tmp_path / "a.json").read_text() == "[]\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_a_second_command_waits_for_the_first_and_says_for_whom(tmp_path, capsys):
    other = hold_lock(tmp_path)
    t0 = time.monotonic()
    with folder_lock(tmp_path, "maskbnn verify --net x"):
        waited = time.monotonic() - t0
    assert waited > HOLD * 0.5  # it got the lock only once the holder let go
    assert "waiting for `maskbnn build --net other`" in capsys.readouterr().err
    other.wait()


def test_the_lock_is_reentrant_within_a_process(tmp_path):
    with folder_lock(tmp_path, "outer"), folder_lock(tmp_path, "inner"):
        pass
    with folder_lock(tmp_path, "again"):  # released after the outer one
        pass


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from maskbnn.models.checkpoint import pretrained_path
    from maskbnn.pipeline.export.qonnx_export import export_checkpoint

    return export_checkpoint(NET, pretrained_path(NET), tmp_path_factory.mktemp("exp") / "export")


def _finished_build(root: Path) -> Path:
    """A build folder as a finished, verified build leaves it (files Make and the stages read)."""
    out = root / NET / BOARD
    out.mkdir(parents=True)
    (root / NET / "export").mkdir()
    (root / NET / "export" / "export.json").write_text("{}")
    for name in ("hw_model.onnx", "build.json", "verification.json", "verification.md",
                 "verified.stamp"):  # fmt: skip
        time.sleep(0.01)
        (out / name).write_text("{}")
    return out


def make_up_to_date(root: Path) -> bool:
    """`make -q verify` on this build root: is Make satisfied that nothing needs doing?"""
    r = subprocess.run(["make", "-q", "verify", f"NET={NET}", f"BOARD={BOARD}", f"BUILD={root}"],
                       cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, env=plain_env())  # fmt: skip
    return r.returncode == 0


def test_a_build_killed_part_way_leaves_make_out_of_date(tmp_path, exported, monkeypatch):
    from maskbnn.pipeline.finn import build

    out = _finished_build(tmp_path)
    assert make_up_to_date(tmp_path)
    real = build.steps

    def steps_then_killed(*args, **kwargs):
        def killed(model, cfg):
            raise KeyboardInterrupt  # what Ctrl-C (or a kill the process survives) looks like

        return [real(*args, **kwargs)[0], ("killed", killed)]

    monkeypatch.setattr(build, "steps", steps_then_killed)
    with pytest.raises(KeyboardInterrupt):
        build.run_build(NET, exported.topk, BOARD, out)
    for stamp in ("build.json", "verified.stamp", "verification.json", "hw_model.onnx"):
        assert not (out / stamp).exists(), stamp
    assert not make_up_to_date(tmp_path)
    assert (out / "intermediate_models" / "qonnx_to_finn.onnx").is_file()  # it did start


def test_verify_waits_for_a_build_on_the_same_folder(tmp_path, capsys):
    from maskbnn.pipeline.verify.chain import verify

    other = hold_lock(tmp_path)
    t0 = time.monotonic()
    with pytest.raises(UserError, match="no build in"):  # the build it waited for left none
        verify(NET, BOARD, build=tmp_path)
    assert time.monotonic() - t0 > HOLD * 0.5
    assert "waiting for" in capsys.readouterr().err
    other.wait()


def test_a_killed_export_leaves_no_index(tmp_path, monkeypatch):
    from maskbnn.models.checkpoint import pretrained_path
    from maskbnn.pipeline.export import qonnx_export as export

    out = tmp_path / "export"
    out.mkdir()
    (out / "export.json").write_text('{"topk": "old.onnx"}')

    def killed(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("brevitas.export.export_qonnx", killed)
    with pytest.raises(KeyboardInterrupt):
        export.export_checkpoint(NET, pretrained_path(NET), out)
    assert not (out / "export.json").exists()
    assert os.listdir(out) == []


def test_verify_of_a_missing_build_creates_nothing(tmp_path):
    from maskbnn.pipeline.verify.chain import verify

    with pytest.raises(UserError, match="no build in"):
        verify(NET, BOARD, build=tmp_path / "none")
    assert not (tmp_path / "none").exists()
