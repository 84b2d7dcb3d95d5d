"""Typed configs: a wrong type, choice or range in a network YAML stops every command at load
time with exit 2 and a message naming the file, the key path, the value and what is allowed."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from maskbnn import config
from maskbnn.cli import main
from maskbnn.config import load_network_config
from maskbnn.errors import UserError
from maskbnn.paths import REPO_ROOT

NET = "mask_1w1a_0.25"
SOURCE = (REPO_ROOT / "build_configs" / f"{NET}.yaml").read_text()


def _with(tmp_path: Path, section: str, key: str, value: str) -> Path:
    """The shipped config with `section.key` set to the YAML text `value`."""
    text = re.sub(rf"^  {key}: .*\n", "", SOURCE, flags=re.M)
    assert f"\n{section}:\n" in text
    text = text.replace(f"\n{section}:\n", f"\n{section}:\n  {key}: {value}\n", 1)
    (tmp_path / f"{NET}.yaml").write_text(text)
    return tmp_path


BAD = [
    ("model", "num_classes", '"four"', r"model\.num_classes: input should be a valid integer, got 'four'"),
    ("model", "width", "half", r"model\.width: input should be 0\.125, 0\.25, 0\.5 or 1\.0, got 'half'"),
    ("train", "epochs", "lots", r"train\.epochs: input should be a valid integer, got 'lots'"),
    ("build", "clock_ns", "fast", r"build\.clock_ns: input should be a valid number, got 'fast'"),
    ("build", "clock_ns", "-5", r"build\.clock_ns: input should be greater than 0, got -5"),
    ("build", "clock_ns", "0", r"build\.clock_ns: input should be greater than 0, got 0"),
    ("model", "family", "cnn", r"model\.family: input should be 'cnv', 'fc', .*, got 'cnn'"),
    ("train", "optim", "ADAMW", r"train\.optim: input should be 'ADAM' or 'SGD', got 'ADAMW'"),
    ("model", "num_classes", "1", r"model\.num_classes: input should be greater than or equal to 2"),
    ("train", "augment", '"yes"', r"train\.augment: input should be a valid boolean, got 'yes'"),
]  # fmt: skip


@pytest.mark.parametrize("section,key,value,message", BAD)
def test_a_bad_value_names_file_key_value_and_what_is_allowed(
    tmp_path, section, key, value, message
):
    folder = _with(tmp_path, section, key, value)
    with pytest.raises(UserError, match=rf"{re.escape(str(folder))}/{NET}\.yaml: {message}"):
        load_network_config(NET, folder)


@pytest.mark.parametrize(
    "section,key,value", [("build", "clock_ns", "-5"), ("model", "width", "half")]
)
def test_every_command_exits_2_without_traceback(
    tmp_path, monkeypatch, capsys, section, key, value
):
    """`maskbnn build` took clock_ns: -5 and wrote "fps": -115740.74; now it stops at the config."""
    monkeypatch.setattr(
        config.load_network_config, "__defaults__", (_with(tmp_path, section, key, value),)
    )
    assert main(["build", "--net", NET, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{NET}.yaml: {section}.{key}:" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_unknown_keys_are_listed_with_the_known_ones(tmp_path):
    (tmp_path / f"{NET}.yaml").write_text(
        SOURCE.replace("clock_ns:", "clock_mhz:").replace("lr:", "rate:")
    )
    with pytest.raises(UserError) as err:
        load_network_config(NET, tmp_path)
    assert "build: unknown keys ['clock_mhz']; known: ['board', 'clock_ns'," in str(err.value)
    assert "train: unknown keys ['rate']" in str(err.value)


def test_configs_stay_frozen_dataclasses_checked_on_replace():
    cfg = load_network_config(NET)
    assert (cfg.model.width, cfg.train.weight_decay, cfg.build.outputs) == (
        0.25,
        0.0,
        ("estimates",),
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.model.width = 0.5  # type: ignore[misc]
    assert dataclasses.replace(cfg.build, clock_ns=5).clock_ns == 5.0
    with pytest.raises(ValueError, match="greater than 0"):
        dataclasses.replace(cfg.build, clock_ns=-5)


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--epochs", "0"], "training options: epochs: input should be greater than or equal to 1, got 0"),
        (["--milestones", "a,2"], "milestones.0: input should be a valid integer, got 'a'"),
        (["--optim", "adamw"], "optim: input should be 'ADAM' or 'SGD', got 'ADAMW'"),
    ],
)  # fmt: skip
def test_train_flags_go_through_the_typed_recipe(capsys, flags, message):
    """`maskbnn train` merges its flags into the typed TrainConfig: bad ones exit 2, named."""
    assert main(["train", "--net", "mask_1w1a_0.125", "--dry_run", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_the_folding_table_is_typed_and_names_known_networks(tmp_path):
    from maskbnn.config import load_folding_table

    table = load_folding_table()
    assert "mask_1w1a" in table.networks and table.target_fps["mask_1w1a_0.25"] > 0
    assert all(len(p.PE) == len(p.SIMD) for p in table.published.values())
    (tmp_path / "tables").mkdir()
    (tmp_path / "mask_1w1a.yaml").write_text("")
    bad = tmp_path / "tables" / "folding.yaml"
    bad.write_text("networks: [mask_1w1a]\ntarget_fps: {mask_1w1a: fast}\npublished: {}\n")
    with pytest.raises(UserError, match=r"folding\.yaml: target_fps\.mask_1w1a.*'fast'"):
        load_folding_table(bad)
    bad.write_text("networks: [mask_1w1a, nope]\ntarget_fps: {}\npublished: {}\n")
    with pytest.raises(UserError, match=r"unknown networks \['nope'\]"):
        load_folding_table(bad)


def test_the_calibration_and_network_set_tables_are_typed(tmp_path):
    from maskbnn.config import load_calibration_table, load_network_sets

    pairs = load_calibration_table().published
    assert [p.current for p in pairs] == [True, False, False] and pairs[0].post.BRAM_36K == 98
    assert [p.whole_design for p in pairs] == [False, False, True]
    assert {p.network for p in pairs} == {"cnv_1w1a", "mask_1w1a"}
    assert "mask_1w1a_0.5" in load_network_sets().estimates
    (tmp_path / "tables").mkdir()
    (tmp_path / "mask_1w1a.yaml").write_text("")
    (tmp_path / "tables" / "folding.yaml").write_text(
        "networks: [mask_1w1a]\ntarget_fps: {}\npublished: {pub: {PE: [1], SIMD: [1]}}\n"
    )
    bad = tmp_path / "tables" / "calibration.yaml"
    row = ("- {design: d, source: s, scope: s, finn: f, network: %s, folding: %s, current: true,\n"
           "   post: {LUT: %s, BRAM_18K: 1, DSP: 0}, estimate: {LUT: 1, BRAM_18K: 1, DSP: 0}}\n")  # fmt: skip
    bad.write_text("published:\n" + row % ("mask_1w1a", "pub", "many"))
    with pytest.raises(UserError, match=r"calibration\.yaml: published\.0\.post\.LUT.*'many'"):
        load_calibration_table(bad)
    bad.write_text("published:\n" + row % ("mask_1w1a", "nope", 1))
    with pytest.raises(UserError, match=r"unknown foldings \['nope'\]; valid names: pub"):
        load_calibration_table(bad)
    bad.write_text("published:\n" + row % ("cnv_9w9a", "pub", 1))
    with pytest.raises(UserError, match=r"unknown networks \['cnv_9w9a'\]"):
        load_calibration_table(bad)
    bad.write_text("published:\n" + row % ("mask_1w1a", "pub", 1))
    assert load_calibration_table(bad).published[0].note == ""
