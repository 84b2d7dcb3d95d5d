"""Trainer and `maskbnn train`: a real run on the shipped sample, the evaluation contract, and every
bad-input case of the issue."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from maskbnn.cli import main
from maskbnn.errors import UserError
from maskbnn.models.checkpoint import read_checkpoint, save_checkpoint
from maskbnn.models.registry import get_network
from maskbnn.paths import SAMPLE_DIR
from maskbnn.pipeline.data.datasets import ArrayDataset
from maskbnn.pipeline.train.trainer import ClipWeights, Trainer, make_loss, make_optimizer

FAST = ["--threads", "1", "--no-progress"]


def train_args(tmp: Path, net: str = "mask_1w1a_0.125", *extra: str) -> list[str]:
    return [
        "train",
        "--network",
        net,
        "--datadir",
        str(SAMPLE_DIR),
        "--experiments",
        str(tmp / "exp"),
        *FAST,
        *extra,
    ]


@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory) -> Path:
    """One real epoch of mask_1w1a_0.125 on the shipped sample (its train side), as `make train`."""
    tmp = tmp_path_factory.mktemp("run")
    assert main(train_args(tmp, "mask_1w1a_0.125", "--epochs", "1")) == 0
    (run,) = (tmp / "exp").iterdir()
    return run


def test_run_leaves_checkpoints_plots_and_metrics(one_epoch_run: Path):
    run = one_epoch_run
    for name in ("log.txt", "metrics.json", "training_curve.png", "confusion.png"):
        assert (run / name).stat().st_size > 0, name
    ckpt = read_checkpoint(run / "checkpoints" / "checkpoint.tar")
    # upstream's keys, plus what resuming needs
    for key in ("state_dict", "optim_dict", "epoch", "best_val_acc", "scheduler_dict", "rng"):
        assert key in ckpt, key
    assert ckpt["network"] == "mask_1w1a_0.125" and ckpt["epoch"] == 1
    assert (run / "checkpoints" / "best.tar").is_file()
    m = json.loads((run / "metrics.json").read_text())
    assert m["test"]["n"] == sum(sum(r) for r in m["test"]["confusion"])
    assert m["n_train"] > 100 and m["test"]["n"] > 500  # the sample's two face-disjoint sides
    assert set(m["test"]["per_class"]) == {
        "mask_correct",
        "nose_uncovered",
        "chin_uncovered",
        "nose_mouth_uncovered",
    }
    assert "top2" in m["test"]  # top-k with k below the 4 classes


def test_evaluate_checkpoint_on_every_image(one_epoch_run: Path, tmp_path: Path):
    out = tmp_path / "m.json"
    ckpt = one_epoch_run / "checkpoints" / "checkpoint.tar"
    args = ["train", "--evaluate", "--network", "mask_1w1a_0.125", "--resume", str(ckpt)]
    args += ["--datadir", str(SAMPLE_DIR), "--eval-split", "all", "--metrics-json", str(out)]
    assert main(args + FAST) == 0
    m = json.loads(out.read_text())
    assert m["n"] == len(list(SAMPLE_DIR.rglob("*.jpg")))  # every image of the folder
    assert len(m["confusion"]) == 4 and sum(map(sum, m["confusion"])) == m["n"]
    assert 0.0 <= m["top1"] <= 100.0 and len(m["per_class"]) == 4
    assert out.with_suffix(".confusion.png").is_file()


@pytest.mark.parametrize(
    ("net", "floor"), [("mask_1w1a_0.25", 97.0), ("mask_1w1a_0.5", 97.0), ("mask_1w1a", 97.0)]
)
def test_shipped_weights_on_the_sample_test_side(net: str, floor: float, tmp_path: Path):
    """The evaluation contract on the shipped weights; the sample's test side was never trained on."""
    out = tmp_path / "m.json"
    args = ["train", "--evaluate", "--network", net, "--pretrained", "--datadir", str(SAMPLE_DIR)]
    assert main(args + ["--eval-split", "test", "--metrics-json", str(out)] + FAST) == 0
    m = json.loads(out.read_text())
    assert m["n"] > 600
    assert m["top1"] >= floor, m


def test_unknown_network_lists_valid_names(capsys):
    assert main(["train", "--network", "nope", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "mask_1w1a_0.25" in err and "tfc_1w1a" in err


def test_checkpoint_of_another_width_is_refused(one_epoch_run: Path, capsys):
    ckpt = one_epoch_run / "checkpoints" / "checkpoint.tar"
    args = ["train", "--evaluate", "--network", "mask_1w1a_0.25", "--resume", str(ckpt)]
    assert main(args + FAST) == 2
    err = capsys.readouterr().err
    assert "mask_1w1a_0.125" in err and "mask_1w1a_0.25" in err


def test_weights_of_another_width_without_a_name_are_refused(one_epoch_run: Path, tmp_path, capsys):
    ckpt = read_checkpoint(one_epoch_run / "checkpoints" / "checkpoint.tar")
    bare = tmp_path / "bare.tar"
    save_checkpoint(bare, {"state_dict": ckpt["state_dict"]})  # like upstream's .pth files
    args = ["train", "--evaluate", "--network", "mask_1w1a_0.25", "--resume", str(bare)]
    assert main(args + FAST) == 2
    assert "shape" in capsys.readouterr().err


def test_corrupt_checkpoint_is_a_clear_error(one_epoch_run: Path, tmp_path: Path, capsys):
    good = (one_epoch_run / "checkpoints" / "checkpoint.tar").read_bytes()
    bad = tmp_path / "cut.tar"
    bad.write_bytes(good[: len(good) // 2])
    args = ["train", "--evaluate", "--network", "mask_1w1a_0.125", "--resume", str(bad)]
    assert main(args + FAST) == 2
    assert "corrupt" in capsys.readouterr().err


def test_resume_with_another_network_is_refused(one_epoch_run: Path, tmp_path: Path, capsys):
    ckpt = one_epoch_run / "checkpoints" / "checkpoint.tar"
    args = train_args(tmp_path, "mask_1w1a_0.25", "--resume", str(ckpt), "--epochs", "2")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "mask_1w1a_0.125" in err and "mask_1w1a_0.25" in err


def test_resume_past_the_cosine_schedule_is_refused(one_epoch_run: Path, tmp_path: Path, capsys):
    # The saved cosine reached LR 0 at epoch 1; carrying it on would raise the LR again.
    ckpt = one_epoch_run / "checkpoints" / "checkpoint.tar"
    args = train_args(tmp_path, "mask_1w1a_0.125", "--resume", str(ckpt), "--epochs", "3")
    args[args.index("--network")] = "--net"  # the spelling the other commands use
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "cosine schedule ends at epoch 1" in err and "--epochs 1" in err
    assert not (tmp_path / "exp").exists()  # refused before any run folder is made


def test_gpus_are_refused_clearly(tmp_path: Path, capsys):
    assert main(train_args(tmp_path, "mask_1w1a_0.125", "--gpus", "0")) == 2
    assert "CPU" in capsys.readouterr().err


def random_images(n: int) -> ArrayDataset:
    """n seeded random 32x32 RGB images with labels in 4 classes (for trainer mechanics only)."""
    g = torch.Generator().manual_seed(0)
    return ArrayDataset(
        torch.randint(0, 256, (n, 32, 32, 3), generator=g, dtype=torch.uint8).numpy(),
        torch.randint(0, 4, (n,), generator=g).numpy(),
        ("a", "b", "c", "d"),
    )


def quiet_trainer(model, opt, data: ArrayDataset, **kw) -> Trainer:
    """SqrHinge, batches of 10, no scheduler, no progress bar or log."""
    return Trainer(
        model,
        make_loss("SqrHinge", 4),
        opt,
        None,
        data.classes,
        batch_size=10,
        progress=False,
        log=str,
        **kw,
    )


def test_nan_loss_stops_with_epoch_and_batch():
    torch.set_num_threads(1)
    model, cfg = get_network("mask_1w1a_0.125")
    data = random_images(40)
    hinge = make_loss("SqrHinge", 4)
    calls = {"n": 0}

    def loss_going_nan(out, y):  # finite for 5 batches, then NaN (as a diverging run would)
        calls["n"] += 1
        loss = hinge(out, y)
        return loss * float("nan") if calls["n"] == 6 else loss

    opt = make_optimizer("ADAM", model.parameters(), 0.01, 0.0, 0.9)
    trainer = Trainer(
        model, loss_going_nan, opt, None, data.classes, batch_size=10, progress=False, log=str
    )
    with pytest.raises(UserError, match=r"epoch 2, batch 2 of 4"):
        trainer.fit(data, None, epochs=3)


def test_precise_bn_sets_the_exact_average_of_training_batch_statistics():
    torch.set_num_threads(1)
    model, _ = get_network("mask_1w1a_0.125")
    data = random_images(30)
    opt = make_optimizer("ADAM", model.parameters(), 0.01, 0.0, 0.9)
    trainer = quiet_trainer(model, opt, data, augment=False, precise_bn=True)
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    seen: list[torch.Tensor] = []
    hook = bn.register_forward_hook(lambda m, i, o: seen.append(i[0].detach().clone()))
    trainer.fit(data, None, epochs=1)
    hook.remove()
    # fit: 3 training batches, then the 3 batches of the recalibration pass
    assert len(seen) == 6
    means = torch.stack([b.mean((0, 2, 3)) for b in seen[3:]])
    variances = torch.stack([b.var((0, 2, 3), unbiased=True) for b in seen[3:]])
    torch.testing.assert_close(bn.running_mean, means.mean(0))
    torch.testing.assert_close(bn.running_var, variances.mean(0), rtol=1e-5, atol=1e-4)
    assert bn.momentum == 0.1  # restored for any later training


def test_precise_bn_finishes_a_finished_run(one_epoch_run: Path, tmp_path: Path, capsys):
    run = tmp_path / "run"
    shutil.copytree(one_epoch_run, run)  # the fixture's run is shared by other tests
    ckpt = run / "checkpoints" / "checkpoint.tar"
    before = read_checkpoint(ckpt)
    assert main(train_args(tmp_path, "mask_1w1a_0.125", "--resume", str(ckpt), "--precise-bn")) == 0
    assert "recomputed over" in capsys.readouterr().out
    after = read_checkpoint(ckpt)
    assert after["hparams"]["precise_bn"] and after["epoch"] == before["epoch"] == 1
    key = next(k for k in after["state_dict"] if k.endswith("running_mean"))
    assert not torch.equal(after["state_dict"][key], before["state_dict"][key])
    weights = [k for k in after["state_dict"] if k.endswith(".weight")]
    assert all(torch.equal(after["state_dict"][k], before["state_dict"][k]) for k in weights)


def test_clip_hook_keeps_latent_weights_in_unit_range():
    torch.set_num_threads(1)
    model, _ = get_network("mask_1w1a_0.125")
    data = random_images(20)
    opt = make_optimizer("SGD", model.parameters(), 100.0, 0.0, 0.0)  # huge steps
    trainer = quiet_trainer(model, opt, data, hooks=[ClipWeights()])
    trainer.fit(data, None, epochs=1)
    weights = [p for n, p in model.named_parameters() if n.endswith(".weight") and p.dim() > 1]
    assert weights and all(float(w.detach().abs().max()) <= 1.0 for w in weights)
    assert any(float(w.detach().abs().max()) == 1.0 for w in weights)  # the clip did bite


@pytest.mark.parametrize(
    ("name", "warmup", "expect"),
    [
        ("FIXED", 0, {0: 1.0, 39: 1.0, 40: 0.5, 80: 0.25}),  # upstream halves every 40 epochs
        ("STEP", 0, {0: 1.0, 9: 1.0, 10: 0.1, 20: 0.01}),
        ("COSINE", 0, {0: 1.0, 50: 0.5, 99: 0.000247}),
        ("COSINE", 4, {0: 0.2, 2: 0.6, 4: 1.0, 52: 0.5}),
    ],
)
def test_schedules_per_epoch(name: str, warmup: int, expect: dict):
    from maskbnn.pipeline.train.trainer import make_scheduler

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = make_scheduler(name, opt, 100, [10, 20], warmup)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    for epoch, lr in expect.items():
        assert lrs[epoch] == pytest.approx(lr, rel=1e-2, abs=1e-6), (epoch, lrs[epoch])
