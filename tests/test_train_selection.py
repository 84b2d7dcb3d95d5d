"""Choosing a recipe without the test split: `--val-faces` (a face-disjoint validation split cut
from the train split) and `--swa K` (weights averaged over the last K epochs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from maskbnn.cli import main
from maskbnn.errors import UserError
from maskbnn.models.checkpoint import read_checkpoint
from maskbnn.models.registry import get_network
from maskbnn.paths import ABSOLUTE_PATH, SAMPLE_DIR
from maskbnn.pipeline.data.datasets import ArrayDataset, hold_out, load_maskedface
from maskbnn.pipeline.train.ship_pretrained import ship
from maskbnn.pipeline.train.trainer import Checkpoints, Hook, Trainer, make_optimizer, to_tensors
from maskbnn.pipeline.train.weight_average import WeightAverage
from tests.test_train import quiet_trainer, train_args


def faces_dataset(n_faces: int, per_face: int) -> ArrayDataset:
    """per_face images of each of n_faces faces; the label of an image is its face number mod 4."""
    n = n_faces * per_face
    g = np.random.default_rng(0)
    faces = tuple(f"{i // per_face:04d}" for i in range(n))
    return ArrayDataset(
        g.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
        np.array([int(f) % 4 for f in faces], dtype=np.int64),
        ("a", "b", "c", "d"),
        tuple(f"{f}_{i}.jpg" for i, f in enumerate(faces)),
        faces,
    )


def test_hold_out_keeps_faces_whole_and_is_stable():
    data = faces_dataset(200, 3)
    fit, val = hold_out(data, 0.2)
    assert len(fit) + len(val) == len(data)
    assert not set(fit.groups) & set(val.groups)  # every face on one side
    assert 0.1 < len(set(val.groups)) / 200 < 0.3
    again_fit, again_val = hold_out(data, 0.2)
    assert again_val.names == val.names and np.array_equal(again_val.x, val.x)
    # images stay with their labels and names
    i = data.names.index(val.names[0])
    assert np.array_equal(data.x[i], val.x[0]) and data.y[i] == val.y[0]
    # a larger fraction only adds faces: the validation split of 0.2 is inside that of 0.4
    assert set(val.groups) <= set(hold_out(data, 0.4)[1].groups)


def test_hold_out_without_faces_splits_images_and_refuses_bad_fractions():
    data = faces_dataset(100, 1)
    plain = ArrayDataset(data.x, data.y, data.classes)
    fit, val = hold_out(plain, 0.3)
    assert len(fit) + len(val) == 100 and 10 < len(val) < 50
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(UserError, match="between 0 and 1"):
            hold_out(plain, bad)
    with pytest.raises(UserError, match="one side empty"):
        hold_out(ArrayDataset(data.x[:1], data.y[:1], data.classes), 0.5)


def test_sample_train_split_holds_out_whole_faces():
    train = load_maskedface(SAMPLE_DIR, "train")
    assert train.groups, "the prepared sample carries face ids"
    fit, val = hold_out(train, 0.15)
    assert not set(fit.groups) & set(val.groups)
    assert not set(val.groups) & set(load_maskedface(SAMPLE_DIR, "test").groups)


class Snapshots(Hook):
    """The trained weights after every epoch (floats only)."""

    def __init__(self) -> None:
        self.after: dict[int, dict[str, torch.Tensor]] = {}

    def on_epoch_end(self, trainer: Trainer, epoch: int, record: dict) -> None:
        self.after[epoch] = {k: p.detach().clone() for k, p in trainer.model.named_parameters()}


def small_trainer(hooks: list[Hook], seed: int = 0) -> Trainer:
    """test_train's quiet trainer (SqrHinge, batches of 10) on a seeded mask_1w1a_0.125."""
    torch.manual_seed(seed)
    model, _ = get_network("mask_1w1a_0.125")
    opt = make_optimizer("ADAM", model.parameters(), 0.01, 0.0, 0.9)
    return quiet_trainer(model, opt, faces_dataset(1, 1), hooks=hooks)


def test_weight_average_is_the_mean_of_the_last_epochs_with_its_own_batchnorm():
    torch.set_num_threads(1)
    data = faces_dataset(30, 1)
    snaps, average = Snapshots(), WeightAverage(2)
    trainer = small_trainer([average, snaps])
    trainer.fit(data, None, epochs=4)
    assert average.count == 2
    trained = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    swa = average.finish(trainer, to_tensors(data)[0])
    params = dict(swa.named_parameters())
    for k in snaps.after[4]:
        torch.testing.assert_close(params[k], (snaps.after[3][k] + snaps.after[4][k]) / 2)
    # BatchNorm statistics were recomputed for the averaged weights; the trained net is untouched
    key = next(k for k in trained if k.endswith("running_mean"))
    assert not torch.equal(swa.state_dict()[key], trained[key])
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, trained[k]), k


class KillAfter(Hook):
    """Stops the run after epoch `epoch` was checkpointed, as a SIGKILL between epochs would."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, trainer: Trainer, epoch: int, record: dict) -> None:
        if epoch == self.epoch:
            raise KeyboardInterrupt


def test_weight_average_survives_resume(tmp_path: Path):
    torch.set_num_threads(1)
    data = faces_dataset(30, 1)
    whole = WeightAverage(2)
    small_trainer([whole]).fit(data, None, epochs=4)

    # killed after epoch 3, inside the averaging window (epochs 3 and 4)
    folder = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        small_trainer([WeightAverage(2), Checkpoints(folder, "n"), KillAfter(3)]).fit(
            data, None, epochs=4
        )
    ckpt = read_checkpoint(folder / "checkpoint.tar")
    assert ckpt["epoch"] == 3 and "WeightAverage" in ckpt["hook_state"]
    resumed = WeightAverage(2)
    trainer = small_trainer([resumed], seed=1)  # another init: everything must come from ckpt
    trainer.model.load_state_dict(ckpt["state_dict"])
    start = trainer.load_state(ckpt)
    assert (start, resumed.count) == (4, 1)
    trainer.fit(data, None, epochs=4, start_epoch=start)
    assert resumed.count == whole.count == 2
    theirs = dict(whole.average.module.named_parameters())
    for k, v in resumed.average.module.named_parameters():
        assert torch.equal(v, theirs[k]), k


def one_run(tmp: Path, *extra: str) -> Path:
    assert main(train_args(tmp, "mask_1w1a_0.125", *extra)) == 0
    (run,) = (tmp / "exp").iterdir()
    return run


def test_cli_validates_on_held_out_faces_and_writes_the_average(tmp_path: Path, capsys):
    run = one_run(tmp_path, "--epochs", "2", "--val-faces", "0.2", "--swa", "2")
    out = capsys.readouterr().out
    metrics = json.loads((run / "metrics.json").read_text())
    n_val = metrics["val"]["n"]
    # every epoch validated on the held-out faces, never on the test split
    assert [r["val_n"] for r in metrics["history"]] == [n_val, n_val]
    assert metrics["n_train"] + n_val == len(load_maskedface(SAMPLE_DIR, "train"))
    assert metrics["test"]["n"] == len(load_maskedface(SAMPLE_DIR, "test")) != n_val
    assert metrics["swa"]["epochs_averaged"] == 2 and {"val", "test"} <= set(metrics["swa"])
    assert "swa (mean of the last 2 epochs) test top1" in out
    swa = read_checkpoint(run / "checkpoints" / "swa.tar")
    assert swa["network"] == "mask_1w1a_0.125" and swa["swa_epochs"] == 2
    # the averaged weights evaluate through the evaluation contract like any checkpoint
    out_json = tmp_path / "eval.json"
    args = ["train", "--evaluate", "--network", "mask_1w1a_0.125", "--datadir", str(SAMPLE_DIR)]
    args += ["--resume", str(run / "checkpoints" / "swa.tar"), "--metrics-json", str(out_json)]
    assert main([*args, "--no-progress"]) == 0
    assert json.loads(out_json.read_text())["top1"] == metrics["swa"]["test"]["top1"]
    # shipping the average ships exactly swa.tar's weights and re-measures the same accuracy
    meta = ship(run, tmp_path / "shipped", swa=True)
    shipped = read_checkpoint(tmp_path / "shipped" / "mask_1w1a_0.125.tar")
    assert all(torch.equal(v, swa["state_dict"][k]) for k, v in shipped["state_dict"].items())
    assert meta["test_top1"] == metrics["swa"]["test"]["top1"]
    assert meta["test_top1_selection"].startswith("mean of the last 2 epochs")
    assert meta["best_epoch_val_top1_for_information"] == metrics["best_val_acc"]
    # the record and log name the repo's sample relatively and no folder of this machine
    record = (tmp_path / "shipped" / "mask_1w1a_0.125.json").read_text()
    log = (tmp_path / "shipped" / "mask_1w1a_0.125.train-log.txt").read_text()
    assert '"datadir": "data/maskedface-net-sample"' in record and f"<data>/{run.name}" in log
    assert not ABSOLUTE_PATH.search(record + log), ABSOLUTE_PATH.search(record + log)
    # resuming with another split or average is refused
    ckpt = str(run / "checkpoints" / "checkpoint.tar")
    for flag, value in (("--val-faces", "0.3"), ("--swa", "1")):
        assert main(train_args(tmp_path, "mask_1w1a_0.125", "--resume", ckpt, flag, value)) == 2
        assert "resume it the same way" in capsys.readouterr().err
