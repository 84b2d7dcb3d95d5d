"""Checkpoints load as data only: a pickle that would run code is refused before any of it runs."""

from __future__ import annotations

import builtins
from pathlib import Path

import pytest
import torch

from maskbnn.errors import UserError
from maskbnn.models.checkpoint import PRETRAINED_DIR, load_weights, read_checkpoint
from maskbnn.paths import REPO_ROOT

SHIPPED = sorted(PRETRAINED_DIR.glob("*.tar")) + sorted(
    (REPO_ROOT / "models" / "runs").glob("*.tar")
)


class _CreatesFile:
    """Unpickling this calls open(path, "w"): the file appearing proves the payload ran."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (builtins.open, (self.path, "w"))


def test_a_checkpoint_carrying_code_is_refused_before_it_runs(tmp_path):
    victim = tmp_path / "created-by-the-checkpoint"
    crafted = tmp_path / "crafted.tar"
    torch.save({"state_dict": {}, "network": "mask_1w1a_0.25", "x": _CreatesFile(victim)}, crafted)
    with pytest.raises(UserError, match=r"crafted\.tar refused: it names io\.open"):
        read_checkpoint(crafted)
    assert not victim.exists()


def test_a_corrupt_checkpoint_is_a_user_error(tmp_path):
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="corrupt or not a torch file"):
        read_checkpoint(bad)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_checkpoint_loads_into_its_network(path):
    from maskbnn.models.registry import get_network

    model, _ = get_network(path.stem)
    ckpt = load_weights(model, path, path.stem)
    assert ckpt["network"] == path.stem


def test_a_dataset_pickle_carrying_code_is_refused_before_it_runs(tmp_path):
    import pickle

    from maskbnn.pipeline.data.datasets import read_pickle_batch

    victim = tmp_path / "created-by-the-pickle"
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({"data": _CreatesFile(victim), "labels": [0]}))
    with open(path, "rb") as f, pytest.raises(UserError, match="refused: it names io.open"):
        read_pickle_batch(f)
    assert not victim.exists()


def test_no_loader_in_the_product_can_run_code_from_a_file():
    """torch.load, np.load and pickle only in their data-only forms, everywhere in the product."""
    unsafe = ("weights_only=False", "allow_pickle=True", "pickle.load(", "pickle.loads(")
    found = [
        f"{p.relative_to(REPO_ROOT)}: {u}"
        for folder in ("maskbnn", "pipeline", "bench", "models", "driver/maskbnn_board")
        for p in sorted((REPO_ROOT / folder).rglob("*.py"))
        for u in unsafe
        if u in p.read_text()
    ]
    assert not found, found
