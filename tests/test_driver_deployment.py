"""Deployment folders: manifest checksums, settings validation, clear errors for what is missing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from maskbnn.pipeline.data.maskedface import CLASSES, label_from_filename
from maskbnn.pipeline.release.deploy import (
    GOLDEN_FILES,
    golden_inputs,
    list_sample_images,
)
from maskbnn_board.cli import main as board_main
from maskbnn_board.deployment import FORMAT, Deployment, parse_settings
from maskbnn_board.errors import DeploymentError
from maskbnn_board.manifest import write_manifest


def cnv_settings(odt: str = "UINT8", out_normal=(1, 1), out_folded=(1, 1, 1)) -> dict:
    """Settings shaped like a CNV build's: UINT8 NHWC image in (SIMD 3), a label or scores out."""
    packed = [*out_folded[:-1], (out_folded[-1] * int(odt.lstrip("UINT")) + 7) // 8]
    return {
        "driver_information": {
            "driver_type": "FINNDMAOverlay",
            "platform": "zynq-iodma",
            "fclk_mhz": 100.0,
            "io_shape_dict": {
                "idt": ["DataType['UINT8']"],
                "odt": [f"DataType['{odt}']"],
                "ishape_normal": [[1, 32, 32, 3]],
                "ishape_folded": [[1, 32, 32, 1, 3]],
                "ishape_packed": [[1, 32, 32, 1, 3]],
                "oshape_normal": [list(out_normal)],
                "oshape_folded": [list(out_folded)],
                "oshape_packed": [packed],
                "idma_names": ["idma0"],
                "odma_names": ["odma0"],
            },
        },
        "maskbnn": {"classes": list(CLASSES), "dma": "iodma"},
    }


def make_deployment(
    root: Path, sample_dir: Path, n: int = 8, bitstream: bool = False, settings=None
) -> Path:
    """A deployment folder with real golden inputs; expected outputs = the file-name labels."""
    dep = root / "deploy"
    (dep / "golden").mkdir(parents=True)
    (dep / "settings.json").write_text(json.dumps(settings or cnv_settings()))
    files = list_sample_images(sample_dir)[::125][:n]
    x = golden_inputs(files)
    labels = np.array([label_from_filename(p) for p in files])
    np.save(dep / GOLDEN_FILES["inputs"], x)
    np.save(dep / GOLDEN_FILES["expected"], labels.reshape(-1, 1))
    np.save(dep / GOLDEN_FILES["labels"], labels)
    (dep / GOLDEN_FILES["names"]).write_text(json.dumps([p.name for p in files]))
    artifacts = {"settings": "settings.json"}
    if bitstream:
        # never loaded in these tests: the off-board check comes first
        (dep / "accelerator.bit").write_bytes(bytes(range(256)) * 4)
        (dep / "accelerator.hwh").write_text("<hwh/>")
        artifacts.update({"bitstream": "accelerator.bit", "hwh": "accelerator.hwh"})
    write_manifest(
        dep,
        FORMAT,
        {"network": "test", "clock_mhz": 100.0, "artifacts": artifacts, "golden": GOLDEN_FILES},
    )
    return dep


def test_deployment_loads_and_checks_every_file(tmp_path, sample_dir):
    dep = Deployment(make_deployment(tmp_path, sample_dir))
    s = dep.settings
    assert (s.input.dtype.name, s.input.normal, s.input.folded) == (
        "UINT8",
        (32, 32, 3),
        (32, 32, 1, 3),
    )
    assert s.output_kind == "label" and dep.clock_mhz == 100.0
    assert set(dep.verify_all()) == {"settings.json", *GOLDEN_FILES.values()}
    g = dep.golden()
    assert g.inputs.shape == (8, 32, 32, 3) and g.expected.shape == (8, 1)


def test_altered_settings_or_bitstream_is_refused(tmp_path, sample_dir, capsys):
    path = make_deployment(tmp_path, sample_dir, bitstream=True)
    settings = json.loads((path / "settings.json").read_text())
    settings["driver_information"]["fclk_mhz"] = 125.0
    (path / "settings.json").write_text(json.dumps(settings))
    with pytest.raises(DeploymentError, match="does not match the manifest"):
        Deployment(path)
    assert board_main(["check", "--deploy", str(path)]) == 2
    assert "settings.json: sha256" in capsys.readouterr().err

    path = make_deployment(tmp_path / "b", sample_dir, bitstream=True)
    with open(path / "accelerator.bit", "r+b") as f:
        f.seek(100)
        f.write(b"\x00")
    assert board_main(["run", "--deploy", str(path), "--golden", "--backend", "pynq"]) == 2
    assert "accelerator.bit: sha256" in capsys.readouterr().err


def test_missing_files_give_clear_errors(tmp_path, sample_dir, capsys):
    path = make_deployment(tmp_path, sample_dir)
    with pytest.raises(DeploymentError, match="has no manifest.json"):
        Deployment(tmp_path)
    with pytest.raises(DeploymentError, match="does not exist"):
        Deployment(tmp_path / "nowhere")
    # no bitstream in an emulation-only deployment: the board backend says what to do
    assert board_main(["run", "--deploy", str(path), "--golden", "--backend", "pynq"]) == 2
    err = capsys.readouterr().err
    assert "holds no bitstream" in err and "--backend emulate" in err
    # the manifest lists no emulation program
    assert board_main(["run", "--deploy", str(path), "--golden", "--backend", "emulate"]) == 2
    assert "names no program file" in capsys.readouterr().err
    (path / "settings.json").unlink()
    with pytest.raises(DeploymentError, match="settings file settings.json is missing"):
        Deployment(path)
    shutil.rmtree(path / "golden")


def test_pynq_backend_off_board_suggests_emulation(tmp_path, sample_dir, capsys):
    path = make_deployment(tmp_path, sample_dir, bitstream=True)
    code = board_main(["run", "--deploy", str(path), "--golden", "--backend", "pynq"])
    err = capsys.readouterr().err
    assert code == 4, err
    assert "pynq" in err and "--backend emulate" in err


def test_missing_hwh_is_a_clear_error(tmp_path, sample_dir, capsys):
    path = make_deployment(tmp_path, sample_dir, bitstream=True)
    (path / "accelerator.hwh").unlink()
    assert board_main(["run", "--deploy", str(path), "--golden", "--backend", "pynq"]) == 2
    assert "hwh file accelerator.hwh is missing" in capsys.readouterr().err


def test_inconsistent_settings_are_refused():
    good = cnv_settings()
    parse_settings(good)
    bad = json.loads(json.dumps(good))
    bad["driver_information"]["io_shape_dict"]["ishape_packed"] = [[1, 32, 32, 1, 4]]
    with pytest.raises(DeploymentError, match="ishape_packed"):
        parse_settings(bad)
    bad = json.loads(json.dumps(good))
    bad["driver_information"]["io_shape_dict"]["ishape_folded"] = [[1, 32, 32, 2, 3]]
    with pytest.raises(DeploymentError, match="does not hold"):
        parse_settings(bad)
    bad = json.loads(json.dumps(good))
    bad["driver_information"]["io_shape_dict"]["odt"] = ["DataType['FLOAT32']"]
    with pytest.raises(DeploymentError, match="not supported"):
        parse_settings(bad)
    with pytest.raises(DeploymentError, match="io_shape_dict"):
        parse_settings({"driver_information": {}})
    scores = cnv_settings("INT10", (1, 4), (1, 2, 2))
    assert parse_settings(scores).output_kind == "scores"
    wrong = cnv_settings("INT10", (1, 3), (1, 3, 1))
    with pytest.raises(DeploymentError, match="one value per class"):
        parse_settings(wrong)


@pytest.mark.parametrize(
    ("field", "value"),
    [("clock_mhz", 900.0), ("classes", ["a", "b", "c", "d"]), ("network", "mask_1w1a")],
)
def test_an_edited_manifest_field_the_driver_reads_is_refused(tmp_path, sample_dir, capsys,
                                                              field, value):  # fmt: skip
    """manifest.json carries no hash of itself: the fields the driver acts on are cross-checked
    against the hash-checked settings, so an edit is refused with the field named."""
    settings = cnv_settings()
    settings["maskbnn"]["network"] = "test"
    path = make_deployment(tmp_path, sample_dir, bitstream=True, settings=settings)
    Deployment(path)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest[field] = value
    (path / "manifest.json").write_text(json.dumps(manifest))
    for cmd in (["check"], ["run", "--golden", "--backend", "emulate"]):
        assert board_main([*cmd, "--deploy", str(path)]) == 2
        err = capsys.readouterr().err
        assert f"field '{field}'" in err and "Traceback" not in err


def test_a_manifest_role_pointed_at_another_listed_file_is_refused(tmp_path, sample_dir):
    path = make_deployment(tmp_path, sample_dir, bitstream=True)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["artifacts"]["bitstream"] = "golden/inputs.npy"  # listed, hash matches, wrong role
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DeploymentError, match="artifacts.bitstream"):
        Deployment(path)
