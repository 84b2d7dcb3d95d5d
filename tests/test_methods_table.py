"""Deployability decisions and the methods table (no FINN build: --no-estimates)."""

from __future__ import annotations

import json

import pytest

from maskbnn.config import load_network_config
from maskbnn.errors import UserError


@pytest.mark.parametrize(
    ("net", "deployable", "names"),
    [
        ("mask_1w1a_0.25", True, []),
        ("vgg_small_finn_irnet", True, []),
        ("resnet20_finn_irnet", True, []),
        ("resnet20_irnet", False, ["resnet20_finn_*", "real-valued residual"]),
        ("vgg_small_irnet", False, ["plain-PyTorch", "max-pool between"]),
        (
            "resnet18_reactnet",
            False,
            ["residual", "RPReLU", "full-precision first", "zero padding"],
        ),
        ("tfc_1w1a", False, ["FC family"]),
    ],
)
def test_deployability_names_what_finn_cannot_map(net, deployable, names):
    from maskbnn.pipeline.verify.deployability import reasons

    why = reasons(load_network_config(net))
    assert (not why) == deployable
    for name in names:
        assert any(name in w for w in why), (name, why)


def test_residual_form_refuses_a_threshold_it_cannot_fold():
    import dataclasses

    from maskbnn.models.registry import build_model
    from maskbnn.pipeline.verify.deployability import reasons

    cfg = load_network_config("resnet20_finn_irnet")
    model = dataclasses.replace(cfg.model, method={**cfg.model.method, "rsign": True})
    assert any("rsign" in w for w in reasons(dataclasses.replace(cfg, model=model)))
    with pytest.raises(UserError, match="rsign"):
        build_model(model)


def test_export_refuses_before_any_work(tmp_path):
    from maskbnn.pipeline.export.qonnx_export import export_checkpoint

    with pytest.raises(UserError, match="cannot be deployed through FINN"):
        export_checkpoint("resnet20_irnet", None, tmp_path)
    assert not any(tmp_path.iterdir())


def test_table_rows_records_and_reasons(tmp_path):
    from maskbnn.pipeline.reports.methods_table import collect, load_table, to_markdown

    table = tmp_path / "t.yaml"
    table.write_text(
        "rows:\n"
        "  - {network: mask_1w1a_0.25, method: BNN-PYNQ}\n"
        "  - {network: resnet20_irnet, method: IR-Net}\n"
        "published:\n"
        "  - {model: ResNet-20, method: IR-Net, dataset: CIFAR-10, top1: 86.5, source: seed}\n"
    )
    spec = load_table(table)
    rows = collect(spec, "Pynq-Z1", tmp_path, estimates=False)
    shipped = json.loads(
        (load_network_config("mask_1w1a_0.25").path.parents[1] / "models" / "pretrained"
         / "mask_1w1a_0.25.json").read_text()
    )  # fmt: skip
    assert rows[0]["top1"] == shipped["test_top1"] and rows[0]["deployable"]
    assert rows[0]["BOPs"] > 0 and rows[0]["OPs"] == rows[0]["BOPs"] / 64 + rows[0]["FLOPs"]
    assert not rows[1]["deployable"] and rows[1]["not_deployable_because"]
    md = to_markdown(rows, spec["published"], "Pynq-Z1")
    assert "| mask_1w1a_0.25 | BNN-PYNQ | MaskedFace-Net | " in md
    assert "residual" in md and "| CIFAR-10 | ResNet-20 | IR-Net | 86.5 | seed |" in md


def test_table_spec_is_strict(tmp_path):
    from maskbnn.pipeline.reports.methods_table import load_table

    bad = tmp_path / "t.yaml"
    bad.write_text("rows:\n  - {network: x, methd: y}\n")
    with pytest.raises(
        UserError, match=r"rows\.0: unknown keys \['methd'\]; known: \['method', 'network'\]"
    ):
        load_table(bad)


def test_pipes_in_method_names_do_not_split_cells():
    from maskbnn.pipeline.reports.methods_table import to_markdown

    row = {"network": "n", "method": "Bi-Real: mean|W|", "dataset": "d", "top1": None,
           "epochs": None, "BOPs": 1.0, "FLOPs": 1.0, "OPs": 1.0, "deployable": False,
           "not_deployable_because": ["x"]}  # fmt: skip
    line = next(x for x in to_markdown([row], [], "Pynq-Z1").splitlines() if x.startswith("| n "))
    assert line.count("|") - line.count("\\|") == 10  # nine cells
