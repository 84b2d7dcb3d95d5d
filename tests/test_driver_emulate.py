"""End to end: export -> FINN build -> `maskbnn deploy` -> `maskbnn-board run --backend emulate`.

The 1,000 shipped real images go through the driver's whole path (its own JPEG decoding and
pre-processing, fold, pack, buffers, the bit-exact executor, unpack) and must agree exactly with
the golden vectors, whose top-1 the deploy step checked against the Brevitas model.
"""

from __future__ import annotations

import csv
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from maskbnn.paths import SAMPLE_DIR
from maskbnn.pipeline.release.deploy import deploy
from maskbnn_board.cli import main as board_main
from maskbnn_board.deployment import FORMAT
from maskbnn_board.manifest import write_manifest

NET, BOARD = "mask_1w1a_0.25", "Pynq-Z1"


def deploy_built(built: dict, tmp: Path) -> dict:
    """A built 0.25x network (conftest's built_025) deployed with the 1,000 shipped images."""
    build, summary = built["dir"], built["summary"]
    return deploy(
        NET,
        BOARD,
        tmp / "deploy",
        build / summary["program"],
        hw_model=build / summary["hw_model"],
        images=SAMPLE_DIR,
        checkpoint=built["checkpoint"],
        weights_hash=built["export"].weights_hash,
    )


@pytest.fixture(scope="module")
def deployment(built_025, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    return tmp, deploy_built(built_025, tmp), built_025


@pytest.mark.slow
def test_deploy_package_contents(deployment):
    tmp, manifest, _ = deployment
    assert manifest["checks"]["golden_images"] == 1000
    # the golden outputs' top-1 equals the Brevitas model's on all 1,000 real images
    assert manifest["checks"]["brevitas_top1_agreement"] == "1000/1000"
    with tarfile.open(manifest["archive"]) as tar:
        names = set(tar.getnames())
    root = f"{NET}_{BOARD}"
    for f in ("README.md", "deploy/manifest.json", "deploy/settings.json", "deploy/program.npz",
              "deploy/golden/inputs.npy", "deploy/golden/expected.npy"):  # fmt: skip
        assert f"{root}/{f}" in names, f
    assert any(n.endswith(".whl") for n in names)
    assert len([n for n in names if n.startswith(f"{root}/samples/")]) == 16
    readme = (tmp / "deploy" / root / "README.md").read_text()
    assert "maskbnn-board run --deploy deploy --images samples --golden" in readme
    assert "NO bitstream" in readme


@pytest.mark.slow
def test_emulated_run_over_1000_real_images_agrees_with_golden(deployment, tmp_path, capsys):
    tmp, manifest, _ = deployment
    dep = tmp / "deploy" / f"{NET}_{BOARD}" / "deploy"
    out = tmp_path / "results"
    args = ["run", "--deploy", str(dep), "--images", str(SAMPLE_DIR), "--backend", "emulate",
            "--golden", "--batch", "128", "--out", str(out), "--no-progress"]  # fmt: skip
    code = board_main(args)
    text = capsys.readouterr()
    assert code == 0, text.err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 1000 and summary["skipped"] == []
    assert summary["golden"]["golden_agreeing"] == summary["golden"]["golden_images"] == 1000
    assert summary["golden_agreeing"] == summary["golden_compared"] == 1000
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    assert len(rows) == 1000 and all(r["golden_match"] == "1" for r in rows)
    # accuracy from the file names equals the deploy step's accuracy of the golden outputs
    assert summary["accuracy"] == pytest.approx(
        manifest["checks"]["golden_accuracy_percent"], abs=1e-3
    )
    acc = summary["accelerator"]
    assert acc["images"] == 1000 and acc["compute_s"] > 0 and acc["host_s"] > 0
    # throughput test: images/s, latency and the split, on the same deployment
    code = board_main(["throughput", "--deploy", str(dep), "--backend", "emulate", "--batch", "50",
                       "--batches", "2"])  # fmt: skip
    thr = json.loads(capsys.readouterr().out)
    assert code == 0 and thr["images"] == 100 and thr["images_per_s"] > 0
    assert thr["latency_one_image_s"] > 0 and set(thr["stages_s"]) >= {"pack", "run", "unpack"}


@pytest.mark.slow
def test_a_wrong_accelerator_is_caught_by_the_golden_vectors(deployment, tmp_path, capsys):
    """Flip one weight of the emulated accelerator (and re-sign the manifest): exit code 3."""
    import shutil

    tmp, _, _ = deployment
    dep = tmp_path / "deploy"
    shutil.copytree(tmp / "deploy" / f"{NET}_{BOARD}" / "deploy", dep)
    from maskbnn_board.hwexec import HardwareProgram

    prog = HardwareProgram.load(dep / "program.npz")
    last = [i for i, layer in enumerate(prog.layers) if layer.kind == "MVAU"][-1]
    w = prog.layers[last].arrays["weights"]
    w[:, :] = w[:, ::-1]  # swap the class columns of the last layer
    prog.save(dep / "program.npz")
    meta = json.loads((dep / "manifest.json").read_text())
    meta.pop("files"), meta.pop("format")
    write_manifest(dep, FORMAT, meta)
    code = board_main(["run", "--deploy", str(dep), "--golden", "--backend", "emulate",
                       "--out", str(tmp_path / "r"), "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 3, err
    report = json.loads((tmp_path / "r" / "summary.json").read_text())["golden"]
    assert report["golden_agreeing"] < report["golden_images"]
    first = report["first_mismatches"][0]
    assert first["expected"] != first["got"]
    # and without re-signing, the altered program is refused before it runs
    np.save(dep / "golden" / "labels.npy", np.zeros(3))
    assert board_main(["check", "--deploy", str(dep)]) == 2


@pytest.mark.slow
def test_deploy_with_a_bitstream_ships_it_and_the_board_backend_refuses_off_board(
    deployment, small_original, tmp_path, capsys
):
    from maskbnn.errors import UserError

    _, _, built = deployment
    build, ckpt = built["dir"], built["checkpoint"]
    bit = tmp_path / "accel.bit"
    bit.write_bytes(b"\x00\x09\x0f\xf0" * 1024)  # never loaded: the off-board check comes first
    kwargs = dict(hw_model=build / "hw_model.onnx", images=small_original, checkpoint=ckpt)
    with pytest.raises(UserError, match="accel.hwh"):
        deploy(NET, BOARD, tmp_path / "a", build / "program.npz", bitstream=bit, **kwargs)
    bit.with_suffix(".hwh").write_text("<hwh/>")
    m = deploy(NET, BOARD, tmp_path / "b", build / "program.npz", bitstream=bit, **kwargs)
    assert m["artifacts"]["bitstream"] == "accelerator.bit" and m["golden"]
    dep = tmp_path / "b" / f"{NET}_{BOARD}" / "deploy"
    assert "holds the accelerator bitstream" in (dep.parent / "README.md").read_text()
    code = board_main(["run", "--deploy", str(dep), "--images", str(small_original)])
    assert code == 4 and "--backend emulate" in capsys.readouterr().err


def test_deploy_without_a_build_says_what_to_run(tmp_path, capsys):
    from maskbnn.cli import main as maskbnn_main

    code = maskbnn_main(
        ["deploy", "--net", NET, "--build-dir", str(tmp_path), "--out", str(tmp_path / "o")]
    )
    err = capsys.readouterr().err
    assert code == 2 and "no hardware graph" in err and "make build" in err


def test_a_run_with_no_usable_image_fails(deployment, tmp_path, capsys):
    tmp, _, _ = deployment
    images = tmp_path / "images"
    images.mkdir()
    (images / "broken_Mask.jpg").write_bytes(b"not a jpeg")
    code = board_main(["run", "--deploy", str(tmp / "deploy" / f"{NET}_{BOARD}" / "deploy"),
                       "--images", str(images), "--backend", "emulate",
                       "--out", str(tmp_path / "r"), "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"no image under {images} could be used (1 skipped" in err
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["skipped"][0]["reason"].startswith("unreadable image")
