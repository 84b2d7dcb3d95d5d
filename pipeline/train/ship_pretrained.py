"""Turn a finished training run into shipped weights: models/pretrained/<net>.tar (weights only, no
optimizer state) and <net>.json (command, epochs, wall time, test accuracy re-measured from the
shipped file, sha256). Records are portable: absolute paths become repo-relative or `<data>/NAME`.
models/pretrained/README.md (the table of shipped weights and how each was chosen) is written by hand.

python -m maskbnn.pipeline.train.ship_pretrained RUN_DIR [--out models/pretrained] [--record-only]

--record-only keeps a run's record without its weights (models/runs/: results of the training
methods' networks, which are reported but not shipped).

The last epoch's weights (checkpoint.tar) are shipped, not best.tar: best.tar is chosen on the test
split, so its accuracy would be a selection on test. --swa ships the run's checkpoints/swa.tar (the
mean of its last epochs' weights, `maskbnn train --swa K`) instead; choose between the two on a
validation split (`--val-faces`), not on the test split.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

from maskbnn.config import load_network_config
from maskbnn.errors import UserError
from maskbnn.models.checkpoint import PRETRAINED_DIR, read_checkpoint, save_checkpoint
from maskbnn.paths import portable
from maskbnn.pipeline.data.datasets import load_dataset
from maskbnn.pipeline.export.qonnx_export import load_model

DATA_ATTRIBUTION = (
    "MaskedFace-Net (Cabani, Hammoudi, Benhabiles, Melkemi, Smart Health 19 (2021) 100144, "
    "arXiv:2008.08016), derived from FFHQ (NVlabs); CC BY-NC-SA 4.0, non-commercial use only"
)


ATTRIBUTIONS = {
    "maskedface": DATA_ATTRIBUTION,
    "cifar10": "CIFAR-10 (A. Krizhevsky, Learning Multiple Layers of Features from Tiny Images, 2009)",
    "mnist": "MNIST (Y. LeCun, C. Cortes, C. J. C. Burges)",
}


def ship(
    run_dir: Path,
    out_dir: Path = PRETRAINED_DIR,
    unfinished: bool = False,
    command: str = "",
    note: str = "",
    record_only: bool = False,
    swa: bool = False,
) -> dict:
    import torch

    from maskbnn.pipeline.train.trainer import evaluate_model

    run_dir = Path(run_dir)
    metrics_path = run_dir / "metrics.json"
    ckpt = read_checkpoint(run_dir / "checkpoints" / "checkpoint.tar")
    network = ckpt["network"]
    if metrics_path.is_file():
        run = json.loads(metrics_path.read_text())
    elif unfinished:  # a run stopped early (time budget): describe it from its last checkpoint
        hist = ckpt["history"]
        run = {
            "epochs": ckpt["epoch"],
            "datadir": ckpt["datadir"],
            "command": command,
            "n_train": None,
            "hparams": ckpt["hparams"],
            "best_val_acc": ckpt["best_val_acc"],
            "train_seconds_total": sum(r["train_seconds"] for r in hist),
            "wall_seconds_this_session": None,
            "history": hist,
            "stopped_early": f"stopped after epoch {ckpt['epoch']} of {ckpt['hparams']['epochs']}",
        }
    else:
        raise UserError(f"{run_dir} has no metrics.json: the run did not finish")
    if ckpt["epoch"] != run["epochs"]:
        raise UserError(f"checkpoint is at epoch {ckpt['epoch']} of {run['epochs']}: not finished")
    selection = "last epoch (no selection on the test split)"
    if swa:
        averaged = read_checkpoint(run_dir / "checkpoints" / "swa.tar")
        ckpt = {**ckpt, "state_dict": averaged["state_dict"]}
        selection = (
            f"mean of the last {averaged['swa_epochs']} epochs' weights (--swa), BatchNorm "
            "statistics recomputed (no selection on the test split)"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    tar = out_dir / f"{network}.tar"
    save_checkpoint(
        tar,
        {
            "state_dict": ckpt["state_dict"],
            "network": network,
            "epoch": ckpt["epoch"],
            "best_val_acc": ckpt["best_val_acc"],
            "hparams": ckpt.get("hparams"),
            "classes": ckpt.get("classes"),
        },
    )
    # Re-measure from the file just written, so the number belongs to the shipped bytes; a
    # network trained with a method on Brevitas layers is measured baked, as it is deployed.
    cfg = load_network_config(network)
    model = load_model(network, tar)
    test = load_dataset(cfg.dataset, Path(run["datadir"]), "test", cfg.model.image_size)
    torch.set_num_threads(1)
    m = evaluate_model(model, test, test.classes, progress=False)
    last = run["history"][-1]
    # the split the run validated on each epoch: held-out train faces (--val-faces), else test
    held_out = (run.get("hparams") or {}).get("val_faces")
    best_key = f"best_epoch_{'val' if held_out else 'test'}_top1_for_information"
    meta = {
        "network": network,
        "file": tar.name,
        "sha256": hashlib.sha256(tar.read_bytes()).hexdigest(),
        "command": run["command"] or command,
        "data": {
            "datadir": run["datadir"],
            "split": "data stage default: face-disjoint, seed 0, test fraction 0.2"
            if cfg.dataset == "maskedface"
            else f"{cfg.dataset}'s own test split",
            "n_train": run["n_train"],
            "n_test": m["n"],
            "attribution": ATTRIBUTIONS[cfg.dataset],
        },
        "epochs": run["epochs"],
        "hparams": run["hparams"],
        "train_seconds": round(run["train_seconds_total"], 1),
        "wall_seconds": round(wall) if (wall := _wall_seconds(run)) else None,
        "stopped_early": run.get("stopped_early"),
        "note": note or None,
        "test_top1": m["top1"],
        "test_per_class": m["per_class"],
        "test_confusion": m["confusion"],
        "test_top1_selection": selection,
        best_key: run["best_val_acc"],
        "train_top1_last_epoch_augmented": last["train_top1"],
        "machine": f"{platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} eval thread",
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if record_only:  # a result, not weights to ship: keep the record, drop the file
        tar.unlink()
        meta["file"] = meta["sha256"] = None
    tar.with_suffix(".json").write_text(portable(json.dumps(meta, indent=2)) + "\n")
    # The run's own record next to the weights (the run folder lives in the git-ignored build/).
    log = (run_dir / "log.txt").read_text()
    (out_dir / f"{network}.train-log.txt").write_text(portable(log))
    shutil.copyfile(run_dir / "training_curve.png", out_dir / f"{network}.training_curve.png")
    return meta


def _wall_seconds(run: dict) -> float | None:
    """All of the run's sessions (a resumed run), else the one recorded."""
    return run.get("wall_seconds_total") or run.get("wall_seconds_this_session")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--out", type=Path, default=PRETRAINED_DIR)
    p.add_argument("--unfinished", action="store_true", help="ship a run stopped before its end")
    p.add_argument("--command", default="", help="the run's command (for --unfinished runs)")
    p.add_argument("--note", default="", help="free text kept in <net>.json, e.g. a run's history")
    p.add_argument(
        "--record-only",
        action="store_true",
        help="write the run's record (JSON, log, curve) to --out without the weights",
    )
    p.add_argument(
        "--swa", action="store_true", help="ship checkpoints/swa.tar, not the last epoch"
    )
    args = p.parse_args(argv)
    try:
        meta = ship(
            args.run_dir,
            args.out,
            args.unfinished,
            args.command,
            args.note,
            args.record_only,
            swa=args.swa,
        )
    except UserError as err:
        print(f"ship_pretrained: error: {err}", file=sys.stderr)
        return err.exit_code
    if not args.record_only:
        print(f"update {args.out / 'README.md'} (by hand): its table of shipped weights")
    print(f"{meta['network']}: test top1 {meta['test_top1']:.2f}% of {meta['data']['n_test']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
