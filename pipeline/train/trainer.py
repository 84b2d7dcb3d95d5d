"""A small trainer: `fit` and `evaluate` return dicts; weight clipping, checkpointing and logging
are hooks. Data stays in memory as one uint8 tensor, batches are gathered and augmented in one go,
so a step costs the network's forward/backward and little else (no DataLoader, no per-image PIL).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from maskbnn.errors import UserError
from maskbnn.models.checkpoint import save_checkpoint
from maskbnn.models.quant import SqrHingeLoss
from maskbnn.pipeline.data.datasets import ArrayDataset
from maskbnn.pipeline.train.augment import random_crop_flip
from maskbnn.pipeline.train.distributed import (
    CPU,
    Runtime,
    average_gradients,
    reduce_metrics,
    sync_batchnorm,
)
from maskbnn.pipeline.train.fast_binary import fast_binary
from maskbnn.pipeline.train.metrics import Accumulator

EVAL_BATCH = 500


def to_tensors(data: ArrayDataset) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 NHWC array -> uint8 NCHW tensor (converted once, not per batch) and int64 labels."""
    x = torch.from_numpy(np.ascontiguousarray(data.x.transpose(0, 3, 1, 2)))
    return x, torch.from_numpy(np.asarray(data.y, dtype=np.int64))


def make_loss(
    name: str, num_classes: int, class_weights: torch.Tensor | None = None
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """SqrHinge (upstream default: targets are +-1 one-hot) or CrossEntropy on class indices.
    class_weights: each image's loss times its class's weight, then the plain mean over the batch
    (not divided by the batch's weight sum, so a batch split over ranks adds up the same)."""
    if class_weights is not None:
        return _weighted_loss(name, num_classes, class_weights)
    if name.lower() == "sqrhinge":
        hinge = SqrHingeLoss()

        def sqr_hinge(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            target = torch.full((len(y), num_classes), -1.0, device=out.device)
            target.scatter_(1, y[:, None], 1.0)
            return hinge(out, target)

        return sqr_hinge
    if name.lower() == "crossentropy":
        return nn.CrossEntropyLoss()
    raise UserError(f"unknown loss {name!r}; use SqrHinge or CrossEntropy")


def _weighted_loss(name: str, num_classes: int, weights: torch.Tensor) -> Callable:
    if name.lower() not in ("sqrhinge", "crossentropy"):
        make_loss(name, num_classes)  # the unknown-loss error

    def weighted(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if name.lower() == "sqrhinge":  # brevitas' squared hinge, per image
            target = torch.full((len(y), num_classes), -1.0, device=out.device)
            target.scatter_(1, y[:, None], 1.0)
            per_image = (1.0 - out * target).clamp_min(0.0).square().mean(1)
        else:
            per_image = nn.functional.cross_entropy(out, y, reduction="none")
        return (weights.to(out.device)[y] * per_image).mean()

    return weighted


def class_weights(y: np.ndarray, num_classes: int) -> torch.Tensor:
    """n / (classes x n_c): 1 for every class of a balanced set; a class with half the images
    weighs twice as much. Over the whole set the weights average to 1 (the loss keeps its scale)."""
    counts = np.bincount(np.asarray(y), minlength=num_classes).astype(np.float64)
    if (counts == 0).any():
        raise UserError(f"class weights: some classes have no training images ({counts.tolist()})")
    return torch.tensor(counts.sum() / (num_classes * counts), dtype=torch.float32)


def make_optimizer(
    name: str, params, lr: float, weight_decay: float, momentum: float
) -> torch.optim.Optimizer:
    if name.upper() == "ADAM":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name.upper() == "SGD":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise UserError(f"unknown optimizer {name!r}; use ADAM or SGD")


class HalveEvery40(torch.optim.lr_scheduler.LambdaLR):
    """Upstream's FIXED schedule is not fixed: its trainer halves the LR after every 40th epoch."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        super().__init__(optimizer, lambda e: 0.5 ** (e // 40))


def make_scheduler(
    name: str,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    milestones: Sequence[int],
    warmup_epochs: int = 0,
) -> torch.optim.lr_scheduler.LRScheduler:
    """Stepped once per epoch. STEP: x0.1 at each milestone; COSINE: to 0 over `epochs`.
    warmup_epochs > 0 ramps the LR linearly up first (the main schedule then starts after it)."""
    name = name.upper()
    rest = max(epochs - warmup_epochs, 1)
    if name == "FIXED":
        main = HalveEvery40(optimizer)
    elif name == "STEP":
        main = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(milestones), gamma=0.1)
    elif name == "COSINE":
        main = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=rest)
    else:
        raise UserError(f"unknown scheduler {name!r}; use FIXED, STEP or COSINE")
    if warmup_epochs <= 0:
        return main
    warm = torch.optim.lr_scheduler.LinearLR(
        optimizer, start_factor=1.0 / (warmup_epochs + 1), total_iters=warmup_epochs
    )
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [warm, main], [warmup_epochs])


class Hook:
    """Called by Trainer.fit; override what you need."""

    def on_epoch_start(self, trainer: Trainer, epoch: int, epochs: int) -> None: ...

    def on_step_end(self, trainer: Trainer, epoch: int, step: int, loss: float) -> None: ...

    def on_epoch_end(self, trainer: Trainer, epoch: int, record: dict) -> None: ...

    def on_fit_end(self, trainer: Trainer, result: dict) -> None: ...

    def state_dict(self) -> dict | None:
        """What the hook needs to continue after --resume (saved in every checkpoint)."""
        return None

    def load_state_dict(self, trainer: Trainer, state: dict) -> None: ...


class ClipWeights(Hook):
    """Upstream clips latent weights to [-1, 1] after every optimizer step (keeps sign flips cheap)."""

    def __init__(self, low: float = -1.0, high: float = 1.0) -> None:
        self.low, self.high = low, high

    def on_step_end(self, trainer: Trainer, epoch: int, step: int, loss: float) -> None:
        clip = getattr(trainer.model, "clip_weights", None)
        if clip is not None:
            clip(self.low, self.high)


class Checkpoints(Hook):
    """checkpoint.tar after every epoch (atomic), best.tar when validation top-1 improves.
    Keys as upstream's (state_dict, optim_dict, epoch, best_val_acc) plus what resuming needs."""

    def __init__(self, folder: Path, network: str, extra: dict | None = None) -> None:
        self.folder = Path(folder)
        self.network = network
        self.extra = extra or {}

    def payload(self, trainer: Trainer, epoch: int) -> dict:
        return {
            "state_dict": trainer.model.state_dict(),
            "optim_dict": trainer.optimizer.state_dict(),
            "scheduler_dict": trainer.scheduler.state_dict() if trainer.scheduler else None,
            "epoch": epoch,
            "best_val_acc": trainer.best_val_acc,
            "network": self.network,
            "rng": trainer.rng_state(),
            "history": list(trainer.history),
            "hook_state": {
                type(h).__name__: state
                for h in trainer.hooks
                if (state := h.state_dict()) is not None
            },
            **self.extra,
        }

    def on_epoch_end(self, trainer: Trainer, epoch: int, record: dict) -> None:
        payload = self.payload(trainer, epoch)
        if record.get("improved"):
            save_checkpoint(self.folder / "best.tar", payload)
        save_checkpoint(self.folder / "checkpoint.tar", payload)


class Trainer:
    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None,
        classes: Sequence[str],
        batch_size: int = 100,
        augment: bool = True,
        seed: int = 1,
        hooks: Sequence[Hook] = (),
        log: Callable[[str], None] = print,
        log_freq: int = 0,
        progress: bool = True,
        fast: bool = True,
        distill: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        amp: bool = False,
        channels_last: bool = True,
        precise_bn: bool = False,
        runtime: Runtime = CPU,
        balanced_sampling: bool = False,
    ) -> None:
        # The device and, under torchrun, this process's rank (pipeline/train/distributed.py). The model
        # is expected on runtime.device; data stays uint8 on the CPU and moves per batch.
        self.rt = runtime
        self.model = model
        # Each epoch draws as many images as the split has, with replacement, every class equally
        # likely (for splits kept unbalanced: `data prepare --keep-all`).
        self.balanced_sampling = balanced_sampling
        # Recompute BatchNorm statistics exactly after the last epoch (see recalibrate_bn).
        self.precise_bn = precise_bn
        # oneDNN's CPU convolutions run NHWC natively; in NCHW every conv (and its backward)
        # reorders its operands first. Measured on a CNV step: about 12% faster. Only the memory
        # layout changes: logical shapes, state dicts and exports are the same.
        self.channels_last = channels_last and any(
            isinstance(m, nn.Conv2d) for m in model.modules()
        )
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        # Optional extra loss term from (input batch, output), e.g. knowledge distillation
        # (models/distill.py); amp runs forward and loss under autocast: bfloat16 on the CPU and
        # on GPUs that have it, else float16 with a gradient scaler.
        self.distill = distill
        self.amp = amp
        device = runtime.device
        self.amp_dtype = torch.bfloat16
        if amp and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            self.amp_dtype = torch.float16
        self.scaler = torch.amp.GradScaler(
            device.type, enabled=amp and self.amp_dtype == torch.float16
        )
        self.fast = (
            fast  # fused 1-bit forward/backward while training (pipeline/train/fast_binary.py)
        )
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.classes = tuple(classes)
        self.batch_size = batch_size
        self.augment = augment
        self.hooks = list(hooks)
        self.log = log
        self.log_freq = log_freq
        self.progress = progress
        # One generator for shuffling and augmentation: its state goes into every checkpoint,
        # so a resumed run draws the same batches the uninterrupted run would have.
        self.generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        self.best_val_acc = 0.0
        self.history: list[dict] = []

    # --- state for resuming ----------------------------------------------------------------
    def rng_state(self) -> dict:
        state = {"generator": self.generator.get_state(), "torch": torch.get_rng_state()}
        if self.scaler.is_enabled():
            state["scaler"] = self.scaler.state_dict()  # floats and ints only
        return state

    def load_state(self, ckpt: dict[str, Any]) -> int:
        """Restore optimizer, scheduler, RNG, history from a checkpoint; returns the next epoch."""
        self.optimizer.load_state_dict(ckpt["optim_dict"])
        if self.scheduler is not None and ckpt.get("scheduler_dict"):
            self.scheduler.load_state_dict(ckpt["scheduler_dict"])
        rng = ckpt.get("rng") or {}
        if "generator" in rng:
            self.generator.set_state(rng["generator"])
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "scaler" in rng and self.scaler.is_enabled():
            self.scaler.load_state_dict(rng["scaler"])
        self.best_val_acc = float(ckpt.get("best_val_acc", 0.0))
        self.history = list(ckpt.get("history", []))
        saved = ckpt.get("hook_state") or {}
        for h in self.hooks:
            if type(h).__name__ in saved:
                h.load_state_dict(self, saved[type(h).__name__])
        return int(ckpt.get("epoch", 0)) + 1

    # --- training ----------------------------------------------------------------------------
    def fit(
        self, train: ArrayDataset, val: ArrayDataset | None, epochs: int, start_epoch: int = 1
    ) -> dict:
        """Train epochs start_epoch..epochs (1-based like upstream); returns the last record plus
        the history and timing."""
        x, y = to_tensors(train)
        t_fit = time.perf_counter()
        for epoch in range(start_epoch, epochs + 1):
            for h in self.hooks:
                h.on_epoch_start(self, epoch, epochs)
            t0 = time.perf_counter()
            lr = self.optimizer.param_groups[0]["lr"]
            train_metrics = self.train_epoch(x, y, epoch, epochs)
            seconds = time.perf_counter() - t0
            if self.precise_bn and epoch == epochs:
                self.recalibrate_bn(x)
            if self.scheduler is not None:
                self.scheduler.step()
            record = {
                "epoch": epoch,
                "lr": lr,
                "train_loss": train_metrics["loss"],
                "train_top1": train_metrics["top1"],
                "train_seconds": seconds,
                "train_img_per_s": len(y) / seconds,
            }
            if val is not None and self.rt.is_main:  # other ranks neither evaluate nor log
                v = self.evaluate(val, desc=f"eval {epoch}")
                record |= {"val_top1": v["top1"], "val_loss": v["loss"], "val_n": v["n"]}
                record["improved"] = v["top1"] >= self.best_val_acc
                self.best_val_acc = max(self.best_val_acc, v["top1"])
            self.history.append(record)
            self.log(_format_record(record, epochs))
            for h in self.hooks:
                h.on_epoch_end(self, epoch, record)
        result = {
            "epochs": epochs,
            "last": self.history[-1] if self.history else None,
            "best_val_acc": self.best_val_acc,
            "history": self.history,
            "fit_seconds": time.perf_counter() - t_fit,
        }
        for h in self.hooks:
            h.on_fit_end(self, result)
        return result

    def train_epoch(self, x: torch.Tensor, y: torch.Tensor, epoch: int, epochs: int) -> dict:
        self.model.train()
        n = len(y)
        if self.balanced_sampling:
            per_image = 1.0 / torch.bincount(y).double()[y]
            order = torch.multinomial(per_image, n, replacement=True, generator=self.generator)
        else:
            order = torch.randperm(n, generator=self.generator)
        starts = list(range(0, n, self.batch_size))
        # BatchNorm cannot train on a batch of one image; with several ranks each needs two.
        if len(starts) > 1 and n - starts[-1] < 2 * self.rt.world:
            starts.pop()
        acc = Accumulator(len(self.classes))
        bar = tqdm(
            starts,
            desc=f"epoch {epoch}/{epochs}",
            unit="batch",
            leave=False,
            disable=not self.progress,
        )
        with fast_binary(self.model, self.fast), sync_batchnorm(self.model, self.rt):
            for step, s in enumerate(bar):
                self._step(x, y, order, s, step, epoch, len(starts), acc, bar)
        reduce_metrics(acc, self.rt)
        return acc.result(self.classes)

    def _batch(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """uint8 images -> the float batch this rank trains on, on its device: the global batch
        is gathered and augmented (on uint8, cheap) on every rank, so the random draws are the
        same as in one process; then this rank's slice moves to the device (pinned for CUDA)."""
        xb = x[idx]
        if self.augment:
            xb = random_crop_flip(xb, generator=self.generator)
        xb = xb[self.rt.shard(len(idx))]
        if self.rt.device.type == "cuda":
            xb = xb.pin_memory().to(self.rt.device, non_blocking=True)
        xb = xb.float().div_(255.0)
        if self.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        return xb

    def recalibrate_bn(self, x: torch.Tensor, model: nn.Module | None = None) -> int:
        """Replace every BatchNorm's running mean/var by their exact average over one pass of the
        training set (training batches, training augmentation), instead of the exponential average
        of the last ~10 batches that training leaves behind. With 1-bit activations, each sign's
        threshold is a function of these statistics; at the end of a cosine schedule, where the LR
        (~1e-5) hardly moves the weights, test top-1 still moved by +-0.2% from one epoch to the
        next (logs in models/pretrained/). The "precise BN" of Wu & Johnson, "Rethinking 'Batch' in
        BatchNorm" (2021). `model`: another network to recalibrate (default: the one trained).
        Returns the number of batches used."""
        model = self.model if model is None else model
        bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not bns:
            return 0
        momenta = [m.momentum for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches below
        model.train()
        n = len(x)
        order = torch.randperm(n, generator=self.generator)
        starts = range(0, n - self.batch_size + 1, self.batch_size) if n >= self.batch_size else [0]
        try:
            # fast_binary probes its layers with a backward pass: no_grad only inside it
            with (
                fast_binary(model, self.fast),
                sync_batchnorm(model, self.rt),
                torch.no_grad(),
            ):
                for s in starts:
                    model(self._batch(x, order[s : s + self.batch_size]))
        finally:
            for m, mom in zip(bns, momenta, strict=True):
                m.momentum = mom
        return len(starts)

    def _step(self, x, y, order, s: int, step: int, epoch: int, n_steps: int, acc, bar) -> None:
        idx = order[s : s + self.batch_size]
        xb = self._batch(x, idx)
        yb = y[idx][self.rt.shard(len(idx))].to(self.rt.device, non_blocking=True)
        with torch.autocast(self.rt.device.type, dtype=self.amp_dtype, enabled=self.amp):
            out = self.model(xb)
            loss = self.loss_fn(out, yb)
            if self.distill is not None:
                loss = loss + self.distill(xb, out)
        out = out.float()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise UserError(
                f"loss became {value} at epoch {epoch}, batch {step + 1} of {n_steps}; "
                "training stopped (lower --lr, or check the data)"
            )
        self.optimizer.zero_grad(set_to_none=True)
        if self.rt.distributed:
            # The loss is a mean over this rank's slice; weighted by the slice's share of the
            # batch, the ranks' averaged gradients are those of the mean over the global batch.
            loss = loss * (self.rt.world * len(yb) / len(idx))
        self.scaler.scale(loss).backward()
        average_gradients([p for g in self.optimizer.param_groups for p in g["params"]], self.rt)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        for h in self.hooks:
            h.on_step_end(self, epoch, step, value)
        acc.update(out.cpu(), yb.cpu(), value)
        if self.log_freq and step % self.log_freq == 0:
            bar.set_postfix(loss=f"{value:.4f}", top1=f"{acc.result(self.classes)['top1']:.1f}")

    @torch.no_grad()
    def evaluate(self, data: ArrayDataset, desc: str = "eval") -> dict:
        """{"top1", "top<k>", "k", "n", "loss", "per_class", "confusion"} over every image."""
        return self.evaluate_other(self.model, data, desc)

    @torch.no_grad()
    def evaluate_other(self, model: nn.Module, data: ArrayDataset, desc: str = "eval") -> dict:
        """`evaluate` for another network with this trainer's classes and loss."""
        return evaluate_model(
            model, data, self.classes, self.loss_fn, progress=self.progress, desc=desc
        )


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    data: ArrayDataset,
    classes: Sequence[str],
    loss_fn: Callable | None = None,
    progress: bool = True,
    desc: str = "eval",
) -> dict:
    """Metrics of `model` (eval mode) on every image of `data`."""
    if len(data) == 0:
        raise UserError("nothing to evaluate: the chosen split has no images")
    model.eval()
    device = next(model.parameters()).device
    x, y = to_tensors(data)
    acc = Accumulator(len(classes))
    starts = range(0, len(y), EVAL_BATCH)
    for s in tqdm(starts, desc=desc, unit="batch", leave=False, disable=not progress):
        xb = x[s : s + EVAL_BATCH].to(device).float().div_(255.0)
        out = model(xb).float().cpu()
        loss = float(loss_fn(out, y[s : s + EVAL_BATCH])) if loss_fn else 0.0
        acc.update(out, y[s : s + EVAL_BATCH], loss)
    return acc.result(classes)


def _format_record(r: dict, epochs: int) -> str:
    text = (
        f"epoch {r['epoch']}/{epochs}  lr {r['lr']:.2e}  loss {r['train_loss']:.4f}  "
        f"train top1 {r['train_top1']:.2f}%  {r['train_img_per_s']:.0f} img/s"
    )
    if "val_top1" in r:
        text += f"  val top1 {r['val_top1']:.2f}% (n={r['val_n']})"
    return text
