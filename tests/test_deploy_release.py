"""`make deploy` takes the bitstream only from the release `make bitstream` wrote, refuses one
built from another hardware graph (or folding), and never loses the previous good package."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from maskbnn.cli import main as maskbnn_main
from maskbnn.pipeline.release import deploy as D
from maskbnn_board.manifest import sha256_of

NET, BOARD = "mask_1w1a_0.25", "Pynq-Z1"


def fake_release(folder: Path, hw_sha: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "accelerator.bit").write_bytes(b"\x00\x09\x0f\xf0")
    (folder / "accelerator.hwh").write_text("<hwh/>")
    (folder / "settings.json").write_text("{}")
    manifest = {"status": "complete", "clock_ns": 10.0, "hw_model": {"sha256": hw_sha},
                "artifacts": {"bitstream": "accelerator.bit", "hwh": "accelerator.hwh",
                              "settings": "settings.json"},
                "files": {}}  # fmt: skip
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_bitfile_of_another_hardware_graph_is_refused(tmp_path: Path, capsys):
    build = tmp_path / "build"
    build.mkdir()
    (build / "hw_model.onnx").write_bytes(b"this build's graph")
    (build / "build.json").write_text('{"hw_model": "hw_model.onnx"}')
    (build / "verification.json").write_text('{"passed": true}')
    (build / "stale.bit").write_bytes(b"an old bitfile left in the build folder")
    release = fake_release(tmp_path / "release", "0" * 64)
    code = maskbnn_main(["deploy", "--net", NET, "--build-dir", str(build), "--release",
                         str(release), "--out", str(tmp_path / "o")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, err
    assert "another hardware graph" in err and sha256_of(build / "hw_model.onnx")[:12] in err
    assert "make bitstream" in err
    assert not (tmp_path / "o").exists()


def test_release_of_this_graph_gives_its_bitfile_settings_and_clock(tmp_path: Path):
    hw = tmp_path / "hw_model.onnx"
    hw.write_bytes(b"graph")
    release = fake_release(tmp_path / "release", sha256_of(hw))
    got = D.release_artifacts(release, hw, NET, BOARD)
    assert got == (release / "accelerator.bit", release / "settings.json", 100.0)
    assert D.release_artifacts(tmp_path / "none", hw, NET, BOARD) is None
    (release / "manifest.json").write_text(json.dumps({"status": "incomplete"}))
    with pytest.raises(D.UserError, match="not complete"):
        D.release_artifacts(release, hw, NET, BOARD)


def test_failed_deploy_keeps_the_previous_package(tmp_path: Path):
    """An exception mid-way (here: unreadable driver settings) leaves the previous package and
    its archive as they were, and no partial folder or archive under the final names."""
    name = f"{NET}_{BOARD}"
    old = tmp_path / name
    (old / "deploy").mkdir(parents=True)
    (old / "deploy" / "manifest.json").write_text('{"previous": true}')
    with tarfile.open(tmp_path / f"{name}.tar.gz", "w:gz") as tar:
        tar.add(old, arcname=name)
    before = sha256_of(tmp_path / f"{name}.tar.gz")
    program = tmp_path / "program.npz"
    program.write_bytes(b"x")
    broken = tmp_path / "settings.json"
    broken.write_text("{ truncated")
    with pytest.raises(json.JSONDecodeError):
        D.deploy(NET, BOARD, tmp_path, program, finn_settings=broken)
    assert (old / "deploy" / "manifest.json").read_text() == '{"previous": true}'
    assert sha256_of(tmp_path / f"{name}.tar.gz") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [name, f"{name}.tar.gz", "program.npz", "settings.json"]
    )


def test_killed_writer_leaves_the_previous_output(tmp_path: Path):
    """SIGKILL while the new folder and the new archive are half-written: the previous ones are
    intact under their names."""
    import signal
    import subprocess
    import sys

    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "old.txt").write_text("previous")
    (tmp_path / "pkg.tar.gz").write_bytes(b"previous archive")
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from maskbnn.pipeline.release.atomic import staged_file, staged_folder\n"
        "root = Path(sys.argv[1])\n"
        "with staged_folder(root / 'pkg') as tmp:\n"
        "    (tmp / 'new.txt').write_text('half')\n"
        "    with staged_file(root / 'pkg.tar.gz') as f:\n"
        "        f.write_bytes(b'trunc')\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=tmp_path)
    assert proc.returncode == -signal.SIGKILL
    assert [p.name for p in (tmp_path / "pkg").iterdir()] == ["old.txt"]
    assert (tmp_path / "pkg.tar.gz").read_bytes() == b"previous archive"


@pytest.mark.slow
def test_deploy_stops_on_a_missing_or_failed_verification(built_025, tmp_path: Path, capsys):
    """Like `maskbnn bitstream`, `maskbnn deploy` ships only a build whose graph passed verify."""
    import shutil

    build = tmp_path / "build"
    shutil.copytree(built_025["dir"], build)
    argv = ["deploy", "--net", NET, "--build-dir", str(build), "--out", str(tmp_path / "o")]
    (build / "verification.json").unlink(missing_ok=True)
    code = maskbnn_main(argv)
    err = capsys.readouterr().err
    assert code == 2 and "is not verified" in err and "make verify" in err, err
    (build / "verification.json").write_text(json.dumps({"passed": False}))
    code = maskbnn_main(argv)
    err = capsys.readouterr().err
    assert code == 3 and "reports a failed verification" in err, err
    assert not (tmp_path / "o").exists()
