"""`maskbnn train`: train or evaluate a network with brevitas_bnn_pynq_train's flags.

maskbnn train --net mask_1w1a_0.25 --datadir DIR [--epochs N] [--resume CKPT]
maskbnn train --evaluate --net NET (--pretrained | --resume CKPT) --datadir DIR
              [--eval-split all] [--metrics-json OUT]
torchrun --standalone --nproc_per_node N -m maskbnn train ... [--gpus 0,1,...]   (data parallel,
              pipeline/train/distributed.py; --batch_size is then the global batch)

Each training run writes, in <experiments>/<network>_<timestamp>/: checkpoints/{checkpoint,best}.tar,
log.txt, metrics.json, training_curve.png and confusion.png. Validation is on the test split of the
data (the face-disjoint one for MaskedFace-Net), as upstream; metrics.json reports the last epoch's
weights. To choose a recipe without looking at the test split, --val-faces F validates on a fraction
F of the train split's faces instead. --swa K adds checkpoints/swa.tar, the last K epochs' mean.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from maskbnn.config import NetworkConfig, TrainConfig, load_network_config, parse
from maskbnn.errors import UserError
from maskbnn.models.method import BinaryMethod
from maskbnn.paths import SAMPLE_DIR
from maskbnn.pipeline.data.datasets import ArrayDataset, hold_out, load_dataset

SPLITS = ("train", "test", "all")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--net",
        "--network",
        dest="network",
        required=True,
        help="a name from build_configs/ (--network: bnn_pynq's spelling)",
    )
    p.add_argument("--experiments", type=Path, default=Path("build/experiments"))
    p.add_argument("--datadir", type=Path, help="default: the shipped MaskedFace-Net sample")
    p.add_argument("--evaluate", action="store_true", help="evaluate only, no training")
    p.add_argument("--resume", type=Path, help="checkpoint to continue from (or to evaluate)")
    p.add_argument("--pretrained", action="store_true", help="start from the shipped weights")
    p.add_argument("--epochs", type=int, help="default: the network's config")
    p.add_argument("--batch_size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--optim", type=str.upper, help="ADAM or SGD")
    p.add_argument("--loss", type=_loss_name, help="SqrHinge (default) or CrossEntropy")
    p.add_argument(
        "--scheduler",
        type=str.upper,
        help="FIXED (halve every 40 epochs, as upstream), STEP, COSINE",
    )
    p.add_argument("--milestones", help="STEP epochs, comma separated, e.g. 100,150,200,250")
    p.add_argument("--momentum", type=float)
    p.add_argument("--weight_decay", type=float)
    p.add_argument("--random_seed", type=int)
    p.add_argument(
        "--gpus",
        help="CUDA devices as upstream, e.g. 0 or 0,1 (several: one torchrun process each); "
        "default: the CPU",
    )
    p.add_argument("--dry_run", action="store_true", help="write no files")
    p.add_argument(
        "--num_workers",
        type=int,
        default=0,
        help="accepted for compatibility: data is in memory and augmented in batches, no workers",
    )
    p.add_argument("--log_freq", type=int, default=10, help="batches between progress updates")
    p.add_argument(
        "--strict",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="strict state-dict loading (default on; --no-strict to relax)",
    )
    p.add_argument("--no-augment", dest="augment", action="store_false", default=None)
    p.add_argument("--eval-split", choices=SPLITS, default="test")
    p.add_argument("--metrics-json", type=Path, help="where --evaluate writes its metrics")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--limit", type=int, help="use only the first N training images (smoke tests)")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=True)
    p.add_argument(
        "--no-fast-binary",
        dest="fast_binary",
        action="store_false",
        default=True,
        help="train through Brevitas' own 1-bit quantisers (same math, slower)",
    )
    # Binary training methods (models/method.py; networks vgg_small_*, resnet*, alexnet_*).
    p.add_argument(
        "--method",
        help="override the config's binary method, KEY=VAL,... e.g. estimator=ede,rsign=true",
    )
    p.add_argument(
        "--teacher",
        help="knowledge distillation from this checkpoint ('pretrained': the shipped weights)",
    )
    p.add_argument("--teacher-network", help="the teacher's network name (default: --network)")
    p.add_argument(
        "--kd-weight",
        type=float,
        help="loss = task loss + W * KL(p_teacher || p_student) (default 1.0)",
    )
    p.add_argument(
        "--precise-bn",
        action="store_true",
        help="after the last epoch, set BatchNorm statistics to their exact training-set average",
    )
    p.add_argument("--save-every", type=int, help="also keep checkpoints/epoch_<N>.tar every N")
    p.add_argument(
        "--val-faces",
        type=float,
        metavar="FRACTION",
        help="validate each epoch on this fraction of the train split's faces (held out of "
        "training) instead of the test split, which is then evaluated once, at the end",
    )
    p.add_argument(
        "--swa",
        type=int,
        metavar="K",
        help="also produce checkpoints/swa.tar: the weights averaged over the last K epochs, "
        "BatchNorm statistics recomputed",
    )
    p.add_argument(
        "--class-balance",
        choices=("none", "sample", "weights"),
        help="for unbalanced data (data prepare --keep-all): draw every class equally often "
        "(sample) or weight each image's loss by n / (classes x its class's count) (weights)",
    )
    p.add_argument(
        "--amp",
        action="store_true",
        help="mixed precision: bfloat16 autocast (CUDA without bfloat16: float16 with a gradient "
        "scaler); refused on CPUs without avx512_bf16/amx_bf16",
    )


def _loss_name(text: str) -> str:
    """The config's spelling of a loss named in any case (the trainer ignores case)."""
    return {"sqrhinge": "SqrHinge", "crossentropy": "CrossEntropy"}.get(text.lower(), text)


def run(args: argparse.Namespace) -> int:
    import torch

    from maskbnn.pipeline.train import distributed

    cfg = load_network_config(args.network)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.pretrained and args.resume:
        raise UserError("use either --pretrained or --resume, not both")
    datadir = args.datadir
    if datadir is None:
        if cfg.dataset != "maskedface":
            raise UserError(f"{cfg.name} trains on {cfg.dataset}: pass --datadir")
        datadir = SAMPLE_DIR
    if not Path(datadir).exists():
        raise UserError(f"--datadir {datadir} does not exist")
    rt = distributed.start(args.gpus)
    try:
        if args.evaluate:
            if rt.distributed:
                raise UserError("--evaluate runs in one process; start it without torchrun")
            return _evaluate(args, cfg, Path(datadir), rt)
        if args.amp and rt.device.type == "cpu":
            from maskbnn.pipeline.train.method_hooks import cpu_has_bf16

            if not cpu_has_bf16():
                raise UserError(
                    "--amp: this CPU has no native bfloat16 (neither avx512_bf16 nor amx_bf16 in "
                    "/proc/cpuinfo); torch would emulate it, slower than float32. Train without "
                    "--amp."
                )
        return _train(args, cfg, Path(datadir), rt)
    finally:
        distributed.stop(rt)


def with_method(cfg: NetworkConfig, override: str | None, saved: dict | None) -> NetworkConfig:
    """The config with its effective binary method: --method KEY=VAL over the resumed run's method
    (`saved`) over the config's. Networks without a method refuse --method."""
    from maskbnn.models.registry import METHOD_FAMILIES

    # A method family, or any family whose config names a method (e.g. vgg_small_finn).
    if cfg.model.family not in METHOD_FAMILIES and cfg.model.method is None:
        if override:
            raise UserError(
                f"--method: {cfg.name} ({cfg.model.family} family) has no binary method; "
                f"method families: {sorted(METHOD_FAMILIES)}"
            )
        return cfg
    base = saved if saved is not None else cfg.model.method
    method = BinaryMethod.from_dict(base, f"{cfg.name}: model.method")
    if override:
        method = method.with_overrides(override)
    model = dataclasses.replace(cfg.model, method=method.as_dict())
    return dataclasses.replace(cfg, model=model)


# --- evaluation --------------------------------------------------------------------------------
def _evaluate(args: argparse.Namespace, cfg: NetworkConfig, datadir: Path, rt) -> int:
    from maskbnn.models.checkpoint import load_weights, pretrained_path, read_checkpoint
    from maskbnn.models.registry import build_model
    from maskbnn.pipeline.train.plots import plot_confusion
    from maskbnn.pipeline.train.trainer import evaluate_model

    if not (args.pretrained or args.resume):
        raise UserError("--evaluate needs weights: --pretrained or --resume CKPT")
    weights = pretrained_path(cfg.name) if args.pretrained else args.resume
    saved_method = read_checkpoint(weights).get("hparams", {}).get("method")
    cfg = with_method(cfg, args.method, saved_method)
    model = build_model(cfg.model)
    load_weights(model, weights, cfg.name, strict=args.strict)
    model.to(rt.device)
    data = load_eval_data(cfg, datadir, args.eval_split)
    t0 = time.perf_counter()
    m = evaluate_model(model, data, data.classes, progress=args.progress)
    m |= {
        "network": cfg.name,
        "weights": str(weights),
        "datadir": str(datadir),
        "split": args.eval_split,
        "classes": list(data.classes),
        "seconds": time.perf_counter() - t0,
    }
    print(f"{cfg.name} on {datadir} ({args.eval_split}): top1 {m['top1']:.2f}% of {m['n']} images")
    for name, acc in m["per_class"].items():
        print(f"  {name:<22} {acc:6.2f}%" if acc is not None else f"  {name:<22}    n/a")
    if not args.dry_run:
        out = args.metrics_json or args.experiments / f"eval_{cfg.name}_{args.eval_split}.json"
        _write_json(out, m)
        png = plot_confusion(
            m["confusion"], data.classes, out.with_suffix(".confusion.png"), cfg.name
        )
        print(f"metrics: {out}\nconfusion matrix: {png}")
    return 0


def load_eval_data(cfg: NetworkConfig, datadir: Path, split: str):
    """The images to evaluate on. For a raw MaskedFace-Net folder and split 'all' that is every
    readable image (the data stage balances classes, which would leave some out); train/test are
    the data stage's face-disjoint sides."""
    if cfg.dataset == "maskedface" and split == "all" and not (datadir / "dataset.npz").is_file():
        from maskbnn.pipeline.data.maskedface import CLASSES, load_image, scan

        _, items, skipped = scan(datadir)

        def read(item):
            try:
                return load_image(item, cfg.model.image_size)
            except Exception as err:  # corrupt image: counted and reported, not fatal
                skipped.append({"file": item.name, "reason": f"{type(err).__name__}: {err}"})
                return None

        with ThreadPoolExecutor(2) as pool:
            pixels = list(pool.map(read, items))
        keep = [i for i, px in enumerate(pixels) if px is not None]
        if skipped:
            print(f"skipped {len(skipped)} unreadable or unlabelled files", file=sys.stderr)
        if not keep:
            raise UserError(f"{datadir}: no readable images to evaluate")
        return ArrayDataset(
            np.stack([pixels[i] for i in keep]),
            np.array([items[i].label for i in keep], np.int64),
            CLASSES,
            tuple(items[i].name for i in keep),
        )
    return load_dataset(cfg.dataset, datadir, split, cfg.model.image_size)


# --- training ----------------------------------------------------------------------------------
# The flags that override a TrainConfig field of the same name.
RECIPE_FLAGS = ("epochs", "batch_size", "lr", "optim", "loss", "scheduler", "momentum",
                "weight_decay", "random_seed", "augment")  # fmt: skip


def _resumed_checkpoint(path: Path, network: str) -> dict:
    """The checkpoint --resume names, refused unless it continues a run of `network`."""
    from maskbnn.models.checkpoint import read_checkpoint

    ckpt = read_checkpoint(path)
    saved = ckpt.get("network")
    if saved != network:
        raise UserError(
            f"--resume {path} is a checkpoint of {saved!r}; it cannot continue a "
            f"{network!r} run (pass --net {saved})"
            if saved
            else f"--resume {path} names no network; it cannot be resumed"
        )
    if "optim_dict" not in ckpt:
        raise UserError(f"--resume {path} holds weights only (no optimizer state)")
    return ckpt


def _recipe(args: argparse.Namespace, config: TrainConfig, saved: dict) -> dict:
    """The run's training recipe as recorded in its hparams: each flag over the resumed run's
    value over the network's config, checked by the typed TrainConfig (ranges, choices)."""
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    values = dataclasses.asdict(config) | {k: saved[k] for k in names if k in saved}
    values |= {k: getattr(args, k) for k in RECIPE_FLAGS if getattr(args, k) is not None}
    if args.milestones:
        values["milestones"] = [
            int(m) if m.strip().isdigit() else m for m in args.milestones.split(",")
        ]
    hp = dataclasses.asdict(parse(TrainConfig, values, "training options"))
    return hp | {"milestones": list(hp["milestones"])}


def _hparams(args: argparse.Namespace, cfg: NetworkConfig, ckpt: dict | None, rt):
    """The run's hparams (recorded in its checkpoints and metrics), its class balance and teacher;
    refuses flags that contradict the resumed run or each other."""
    saved_hp = (ckpt or {}).get("hparams", {})
    hp = _recipe(args, cfg.train, saved_hp)
    balance = args.class_balance or saved_hp.get("class_balance", "none")
    if balance != "none":  # recorded only when used, so other runs' hparams stay as they were
        hp["class_balance"] = balance
    if hp["batch_size"] < 2 * rt.world:
        raise UserError(
            f"--batch_size {hp['batch_size']} is the global batch: with {rt.world} processes "
            f"it must be at least {2 * rt.world} (two images per process for BatchNorm)"
        )
    planned = saved_hp.get("epochs")
    if (
        ckpt is not None
        and planned
        and planned != hp["epochs"]
        and hp["scheduler"].upper() == "COSINE"
    ):
        # The checkpoint's cosine was planned to reach 0 at epoch `planned`; its saved state
        # would carry on past that (the LR climbs again) or stop short of 0.
        raise UserError(
            f"--resume {args.resume}: the run's cosine schedule ends at epoch {planned}, not at "
            f"{hp['epochs']}; resume with --epochs {planned} (or leave --epochs out)"
        )
    # Recorded only where they apply, so other networks' hparams stay as they were.
    if cfg.model.method is not None:
        hp["method"] = cfg.model.method
    teacher = args.teacher or saved_hp.get("teacher")
    if teacher:
        hp["teacher"] = str(teacher)
        hp["teacher_network"] = args.teacher_network or saved_hp.get("teacher_network", cfg.name)
        kd_weight = args.kd_weight if args.kd_weight is not None else saved_hp.get("kd_weight")
        hp["kd_weight"] = 1.0 if kd_weight is None else kd_weight
    elif args.teacher_network or args.kd_weight is not None:
        raise UserError("--teacher-network and --kd-weight need --teacher CKPT")
    if args.save_every is not None and args.save_every < 1:
        raise UserError("--save-every must be >= 1")
    if args.amp:
        hp["amp"] = True
    if args.precise_bn or saved_hp.get("precise_bn"):
        hp["precise_bn"] = True
    for flag in ("val_faces", "swa"):  # a resumed run keeps its split and its average
        value = getattr(args, flag)
        value = saved_hp.get(flag) if value is None else value
        if value is not None:
            hp[flag] = value
            if ckpt is not None and value != saved_hp.get(flag):
                opt, was = f"--{flag.replace('_', '-')}", saved_hp.get(flag)
                started = "without " + opt if was is None else f"with {opt} {was}"
                raise UserError(
                    f"--resume {args.resume}: the run was started {started}; resume it the same way"
                )
    return hp, balance, teacher


def _splits(args: argparse.Namespace, cfg: NetworkConfig, datadir: Path, hp: dict, rt):
    """(train, test, validation or None) images of the run."""
    from maskbnn.pipeline.train import distributed

    if not rt.is_main:  # a raw folder is prepared into a cache once, by rank 0
        distributed.barrier(rt)
    train = load_dataset(cfg.dataset, datadir, "train", cfg.model.image_size)
    test = load_dataset(cfg.dataset, datadir, "test", cfg.model.image_size)
    if rt.is_main:
        distributed.barrier(rt)
    val = None
    if hp.get("val_faces") is not None:
        train, val = hold_out(train, hp["val_faces"])
    if args.limit:
        train = type(train)(train.x[: args.limit], train.y[: args.limit], train.classes)
    if len(train) < 2:
        raise UserError(f"{datadir}: the train split has {len(train)} images; need at least 2")
    return train, test, val


@dataclasses.dataclass
class _Run:
    """One training session: its settings, data and run folder, shared by the steps of `_train`."""

    args: argparse.Namespace
    cfg: NetworkConfig  # with the run's effective binary method
    datadir: Path
    rt: Any  # distributed.Runtime: device, rank, world size
    ckpt: dict | None  # the checkpoint --resume names
    hp: dict
    balance: str  # --class-balance: none, weights or sample
    teacher: str | None
    train: ArrayDataset
    test: ArrayDataset
    val: ArrayDataset | None  # --val-faces
    run_dir: Path
    command: str

    @property
    def saved_hp(self) -> dict:
        return (self.ckpt or {}).get("hparams", {})

    @property
    def writes(self) -> bool:
        return not self.args.dry_run and self.rt.is_main  # only rank 0 logs and writes files

    def log(self, line: str) -> None:
        if not self.rt.is_main:
            return
        print(line, flush=True)
        if self.writes:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            with open(self.run_dir / "log.txt", "a") as f:
                f.write(line + "\n")


def _train(args: argparse.Namespace, cfg: NetworkConfig, datadir: Path, rt) -> int:
    from maskbnn.pipeline.train.trainer import to_tensors

    run = _setup(args, cfg, datadir, rt)
    trainer, average, checkpoints = _make_trainer(run)
    start = _resume(run, trainer, checkpoints)
    t0 = time.perf_counter()
    # With --val-faces the test split is not looked at until the weights are final.
    val = run.test if run.val is None else run.val
    result = trainer.fit(run.train, val, run.hp["epochs"], start_epoch=start)
    # The average's BatchNorm pass runs on every rank (its statistics are collective).
    swa = average.finish(trainer, to_tensors(run.train)[0]) if average is not None else None
    if not rt.is_main:
        return 0
    metrics = _final_metrics(run, trainer, result, t0)
    if average is not None:
        out = None if args.dry_run else run.run_dir / "checkpoints" / "swa.tar"
        splits = {"val": run.val, "test": run.test}
        metrics["swa"] = _finish_average(
            average, swa, trainer, run.train, splits, run.cfg.name, run.hp, out, run.log
        )
    if not args.dry_run:
        _write_outputs(run, trainer, metrics)
    return 0


def _setup(args: argparse.Namespace, cfg: NetworkConfig, datadir: Path, rt) -> _Run:
    """The session's effective config, hparams and data, and its run folder: the one --resume
    continues, else a new timestamped one under --experiments."""
    ckpt = _resumed_checkpoint(args.resume, cfg.name) if args.resume else None
    saved_hp = (ckpt or {}).get("hparams", {})
    cfg = with_method(cfg, args.method, saved_hp.get("method"))
    hp, balance, teacher = _hparams(args, cfg, ckpt, rt)
    train, test, val = _splits(args, cfg, datadir, hp, rt)
    if ckpt is not None:
        ck = Path(args.resume).resolve().parent
        run_dir = ck.parent if ck.name == "checkpoints" else ck
    else:
        run_dir = args.experiments / f"{cfg.name}_{datetime.now().strftime('%Y%m%d_%H%M%S')}"
    command = shlex.join(["maskbnn", "train", *sys.argv[2:]]) if sys.argv[1:2] == ["train"] else ""
    return _Run(
        args, cfg, datadir, rt, ckpt, hp, balance, teacher, train, test, val, run_dir, command
    )


def _make_trainer(run: _Run):
    """The seeded model, its optimizer, schedule, loss and hooks in a Trainer; also the hooks
    `_train` reads afterwards (the weight average, the checkpoints; None when not used)."""
    import torch

    from maskbnn.models.checkpoint import load_weights, pretrained_path
    from maskbnn.models.registry import build_model
    from maskbnn.pipeline.train.trainer import (
        Trainer,
        class_weights,
        make_loss,
        make_optimizer,
        make_scheduler,
    )

    args, cfg, hp, rt = run.args, run.cfg, run.hp, run.rt
    torch.manual_seed(hp["random_seed"])
    model = build_model(cfg.model)
    if args.pretrained:
        load_weights(model, pretrained_path(cfg.name), cfg.name, strict=args.strict)
    model.to(rt.device)
    optimizer = make_optimizer(
        hp["optim"], model.parameters(), hp["lr"], hp["weight_decay"], hp["momentum"]
    )
    scheduler = make_scheduler(
        hp["scheduler"], optimizer, hp["epochs"], hp["milestones"], hp["warmup_epochs"]
    )
    hooks, average, checkpoints = _hooks(run)
    distill = _distiller(cfg, hp, rt.device) if run.teacher else None
    n = cfg.model.num_classes
    weights = class_weights(run.train.y, n) if run.balance == "weights" else None
    trainer = Trainer(
        model,
        make_loss(hp["loss"], n, weights),
        optimizer,
        scheduler,
        run.train.classes,
        batch_size=hp["batch_size"],
        augment=hp["augment"],
        seed=hp["random_seed"],
        hooks=hooks,
        log=run.log,
        log_freq=args.log_freq,
        progress=args.progress and rt.is_main,
        fast=args.fast_binary,
        distill=distill,
        amp=args.amp,
        precise_bn=hp.get("precise_bn", False),
        runtime=rt,
        balanced_sampling=run.balance == "sample",
    )
    return trainer, average, checkpoints


def _hooks(run: _Run):
    """The trainer's hooks in their order (EDE annealing, weight clipping, the weight average,
    checkpoints), and the weight average and checkpoints themselves (None when not used)."""
    from maskbnn.pipeline.train.trainer import Checkpoints, ClipWeights

    hooks = [ClipWeights(-1.0, 1.0)]
    if run.cfg.model.method is not None:
        from maskbnn.pipeline.train.method_hooks import EdeAnneal

        method = BinaryMethod.from_dict(run.cfg.model.method)
        if method.uses_ede:
            hooks.insert(0, EdeAnneal(method.ede_t_min, method.ede_t_max))
    average = None
    if run.hp.get("swa") is not None:  # before the checkpoints, which save its state
        from maskbnn.pipeline.train.weight_average import WeightAverage

        average = WeightAverage(run.hp["swa"])
        hooks.append(average)
    checkpoints = None
    if run.writes:
        extra = {"hparams": run.hp, "datadir": str(run.datadir), "classes": list(run.train.classes)}
        checkpoints = Checkpoints(run.run_dir / "checkpoints", run.cfg.name, extra)
        hooks.append(checkpoints)
        if run.args.save_every:
            from maskbnn.pipeline.train.method_hooks import SaveEvery

            hooks.append(SaveEvery(checkpoints, run.args.save_every))
    return hooks, average, checkpoints


def _resume(run: _Run, trainer, checkpoints) -> int:
    """Restore the --resume checkpoint's weights and trainer state (else log a fresh start), make
    every rank start from rank 0's weights, and log the session; returns the first epoch to train.
    A finished run given --precise-bn has its last weights' BatchNorm statistics recomputed."""
    import torch

    from maskbnn.models.checkpoint import load_weights
    from maskbnn.pipeline.train import distributed
    from maskbnn.pipeline.train.trainer import to_tensors

    args, cfg, hp, rt = run.args, run.cfg, run.hp, run.rt
    start = 1
    if run.ckpt is not None:
        load_weights(trainer.model, args.resume, cfg.name, strict=args.strict)
        start = trainer.load_state(run.ckpt)
        run.log(f"resuming {cfg.name} at epoch {start} of {hp['epochs']} from {args.resume}")
    else:
        held = f", {len(run.val)} validation (--val-faces)" if run.val is not None else ""
        run.log(
            f"training {cfg.name} on {run.datadir}: {len(run.train)} train{held}, "
            f"{len(run.test)} test images"
        )
    distributed.broadcast_state(trainer.model, rt)
    run.log(f"command: {run.command}")
    where = f"{rt.world} processes ({rt.device.type}), global batch" if rt.distributed else "batch"
    run.log(f"hyper-parameters: {json.dumps(hp)}; torch threads {torch.get_num_threads()}")
    run.log(f"training on {rt.device}; {where} {hp['batch_size']}")
    if start > hp["epochs"] and hp.get("precise_bn") and not run.saved_hp.get("precise_bn"):
        # A finished run given --precise-bn: recalibrate its last weights, as if it had been on.
        n = trainer.recalibrate_bn(to_tensors(run.train)[0])
        run.log(f"finished run: BatchNorm statistics recomputed over {n} training batches")
        if checkpoints is not None:
            checkpoints.on_epoch_end(trainer, start - 1, {})
    elif start > hp["epochs"]:
        run.log(f"nothing to do: the checkpoint already finished epoch {start - 1}")
    return start


def _final_metrics(run: _Run, trainer, result: dict, t0: float) -> dict:
    """The last epoch's weights on the test split (and the --val-faces split), with the run's
    hparams, history and times: the content of metrics.json."""
    final = trainer.evaluate(run.test, desc="final eval")
    now = time.perf_counter()
    metrics = {
        "network": run.cfg.name,
        "command": run.command,
        "datadir": str(run.datadir),
        "n_train": len(run.train),
        "device": str(run.rt.device),
        "processes": run.rt.world,
        "hparams": run.hp,
        "epochs": run.hp["epochs"],
        "best_val_acc": result["best_val_acc"],
        "train_seconds_total": sum(r["train_seconds"] for r in trainer.history),
        "wall_seconds_this_session": now - t0,
        # plus the earlier sessions that ended with a metrics.json (a killed one leaves none)
        "wall_seconds_total": now - t0 + _earlier_wall(run.run_dir, run.ckpt),
        "test": final,  # the last epoch's weights on the test split
        "history": trainer.history,
    }
    if run.val is not None:
        metrics["val"] = trainer.evaluate(run.val, desc="final val")
        run.log(
            f"final (last epoch) val top1 {metrics['val']['top1']:.2f}% of {len(run.val)} images"
        )
    run.log(f"final (last epoch) test top1 {final['top1']:.2f}% of {final['n']} images")
    return metrics


def _write_outputs(run: _Run, trainer, metrics: dict) -> None:
    """metrics.json (also to --metrics-json), the training curve and the confusion matrix."""
    from maskbnn.pipeline.train.plots import plot_confusion, plot_training_curve

    name, run_dir = run.cfg.name, run.run_dir
    _write_json(run_dir / "metrics.json", metrics)
    if run.args.metrics_json:
        _write_json(run.args.metrics_json, metrics)
    if trainer.history:
        plot_training_curve(trainer.history, run_dir / "training_curve.png", name)
    plot_confusion(metrics["test"]["confusion"], run.train.classes, run_dir / "confusion.png", name)
    run.log(f"run folder: {run_dir}")


def _finish_average(average, swa, trainer, train, splits: dict, network: str, hp: dict, out, log):
    """--swa: the averaged weights `swa` (WeightAverage.finish) evaluated on each split given and
    saved to `out` (None: not saved). Returns their metrics, or None if no epoch was averaged."""
    from maskbnn.models.checkpoint import save_checkpoint

    if swa is None:
        log(f"--swa {hp['swa']}: no epoch was averaged (the run trained none)")
        return None
    result = {"epochs_averaged": average.count}
    for name, data in splits.items():
        if data is not None:
            m = result[name] = trainer.evaluate_other(swa, data, desc=f"swa {name}")
            log(
                f"swa (mean of the last {average.count} epochs) {name} top1 "
                f"{m['top1']:.2f}% of {m['n']} images"
            )
    if out is not None:
        payload = {"state_dict": swa.state_dict(), "network": network, "epoch": hp["epochs"]}
        payload |= {"swa_epochs": average.count, "hparams": hp, "classes": list(train.classes)}
        save_checkpoint(out, payload)
    return result


def _earlier_wall(run_dir: Path, ckpt: dict | None) -> float:
    """Wall seconds of the run's earlier sessions, from the metrics.json the last one left."""
    prev = run_dir / "metrics.json"
    if ckpt is None or not prev.is_file():
        return 0.0
    m = json.loads(prev.read_text())
    return float(m.get("wall_seconds_total", m.get("wall_seconds_this_session")) or 0.0)


def _distiller(cfg: NetworkConfig, hp: dict, device):
    """The KD term of a run: the teacher network built as its checkpoint was trained (its method
    included), its weights loaded, frozen; it must see the same images and classes."""
    from maskbnn.models.checkpoint import load_weights, pretrained_path, read_checkpoint
    from maskbnn.models.distill import make_distiller
    from maskbnn.models.registry import build_model

    name = hp["teacher_network"]
    tcfg = load_network_config(name)
    same = ("num_classes", "image_size", "in_channels")
    diff = [k for k in same if getattr(tcfg.model, k) != getattr(cfg.model, k)]
    if tcfg.dataset != cfg.dataset or diff:
        raise UserError(
            f"--teacher-network {name} does not fit {cfg.name}: dataset or {diff or same} differ"
        )
    path = pretrained_path(name) if hp["teacher"] == "pretrained" else Path(hp["teacher"])
    tcfg = with_method(tcfg, None, read_checkpoint(path).get("hparams", {}).get("method"))
    teacher = build_model(tcfg.model)
    load_weights(teacher, path, name)
    return make_distiller(teacher.to(device), hp["kd_weight"])


def _write_json(path: Path, payload: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
