"""`make bench` (training part): training images/s of maskbnn's trainer against upstream brevitas'
bnn_pynq training path, same machine, same run, same batch size and threads.

Baseline: upstream's CNV class (brevitas_examples.bnn_pynq.models.CNV, shipped in the brevitas wheel;
for 0.5x its module-level channel tables are divided by 2, as the seed's fork does) fed by a torch
DataLoader whose dataset applies upstream's per-image RandomCrop(32, padding=4), RandomHorizontalFlip
and ToTensor. Upstream's trainer imports torchvision, which does not install beside torch 2.13 here,
so those three transforms are re-done in PIL/NumPy with the same semantics.
Ours: maskbnn's Trainer.train_epoch (in-memory uint8 tensor, batched crop/flip, same loss/optimizer).
Ceilings put the ratio in context: the step's float32 convolutions (forward, weight and input
gradients) alone, timed in oneDNN; and their operation count at this machine's large-GEMM rate.
No trainer that keeps float32 convolutions can beat upstream by more than the second. A third,
the gradients alone at that rate, bounds even a trainer whose binary forward convolutions cost
nothing, as long as its gradients stay float32 (this CPU has no faster float type).

python -m maskbnn.bench.train [--nets mask_1w1a_0.5 mask_1w1a] [--steps 8] [--rounds 3]
Writes build/bench/train.json and build/bench/train.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from configparser import ConfigParser
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from PIL import Image, ImageOps

from maskbnn.config import load_network_config
from maskbnn.models.registry import build_model
from maskbnn.paths import BUILD_DIR, SAMPLE_DIR
from maskbnn.pipeline.data.datasets import ArrayDataset, load_dataset
from maskbnn.pipeline.train.trainer import (
    ClipWeights,
    Trainer,
    make_loss,
    make_optimizer,
    to_tensors,
)
from maskbnn.report import md_table

BATCH = 100


class UpstreamStyleDataset(torch.utils.data.Dataset):
    """Per-image PIL work as torchvision's RandomCrop(32, padding=4) + RandomHorizontalFlip +
    ToTensor would do it (zero padding, uniform offsets, p=0.5, HWC uint8 -> CHW float / 255)."""

    def __init__(self, data: ArrayDataset, padding: int = 4) -> None:
        self.images = [Image.fromarray(a) for a in data.x]
        self.labels = data.y
        self.padding = padding

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        img = ImageOps.expand(self.images[i], border=self.padding, fill=0)
        w, h = self.images[i].size
        top = int(torch.randint(0, 2 * self.padding + 1, (1,)))
        left = int(torch.randint(0, 2 * self.padding + 1, (1,)))
        img = img.crop((left, top, left + w, top + h))
        if torch.rand(1) < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)
        return x.float().div(255.0), int(self.labels[i])


def upstream_cnv(width: float, num_classes: int) -> torch.nn.Module:
    """Upstream's CNV class at a channel width: its topology lives in module-level tables."""
    from brevitas_examples.bnn_pynq.models import CNV as cnv_mod  # noqa: N811

    def w(c: int) -> int:
        return int(round(c * width))

    cfg = ConfigParser()
    cfg.read_dict(
        {
            "MODEL": {"NUM_CLASSES": str(num_classes), "IN_CHANNELS": "3"},
            "QUANT": {"WEIGHT_BIT_WIDTH": "1", "ACT_BIT_WIDTH": "1", "IN_BIT_WIDTH": "8"},
        }
    )
    tables = {
        "CNV_OUT_CH_POOL": [(w(c), p) for c, p in cnv_mod.CNV_OUT_CH_POOL],
        "INTERMEDIATE_FC_FEATURES": [(w(a), w(b)) for a, b in cnv_mod.INTERMEDIATE_FC_FEATURES],
        "LAST_FC_IN_FEATURES": w(cnv_mod.LAST_FC_IN_FEATURES),
    }
    with mock.patch.multiple(cnv_mod, **tables):
        return cnv_mod.cnv(cfg)


def time_upstream(data: ArrayDataset, width: float, steps: int, num_classes: int) -> float:
    """img/s of upstream's loop body: DataLoader -> forward -> SqrHinge -> Adam -> clip."""
    from brevitas_examples.bnn_pynq.models.losses import SqrHingeLoss

    model = upstream_cnv(width, num_classes)
    model.train()
    loss_fn = SqrHingeLoss()
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    loader = torch.utils.data.DataLoader(
        UpstreamStyleDataset(data), batch_size=BATCH, shuffle=True, num_workers=0, drop_last=True
    )

    def one_step(inp, target):
        onehot = torch.full((len(target), num_classes), -1.0)
        onehot.scatter_(1, target[:, None], 1.0)
        loss = loss_fn(model(inp), onehot)
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.clip_weights(-1, 1)

    it = iter(loader)
    for _ in range(2):  # warm-up
        one_step(*next(it))
    done, t0 = 0, time.perf_counter()
    while done < steps:
        try:
            inp, target = next(it)
        except StopIteration:
            it = iter(loader)
            continue
        one_step(inp, target)
        done += 1
    return steps * BATCH / (time.perf_counter() - t0)


def time_ours(data: ArrayDataset, network: str, steps: int) -> float:
    """img/s of Trainer.train_epoch over exactly `steps` batches (after a 2-batch warm-up)."""
    cfg = load_network_config(network)
    model = build_model(cfg.model)
    opt = make_optimizer("ADAM", model.parameters(), 0.02, 0.0, 0.9)
    trainer = Trainer(
        model,
        make_loss("SqrHinge", cfg.model.num_classes),
        opt,
        None,
        data.classes,
        batch_size=BATCH,
        hooks=[ClipWeights()],
        progress=False,
        log=str,
    )

    x, y = to_tensors(data)
    trainer.train_epoch(x[: 2 * BATCH], y[: 2 * BATCH], 0, 0)  # warm-up
    n = steps * BATCH
    t0 = time.perf_counter()
    trainer.train_epoch(x[:n], y[:n], 1, 1)
    return n / (time.perf_counter() - t0)


def conv_calls(network: str) -> list[tuple[torch.nn.Conv2d, torch.Size]]:
    """Every convolution of a training forward pass with the input shape it sees (batch BATCH)."""
    model = build_model(load_network_config(network).model).train()
    calls: list[tuple[torch.nn.Conv2d, torch.Size]] = []
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    handles = [
        m.register_forward_hook(lambda m, i, _o: calls.append((m, i[0].shape))) for m in convs
    ]
    try:
        with torch.no_grad():
            model(torch.rand(BATCH, 3, 32, 32))
    finally:
        for h in handles:
            h.remove()
    return calls


def conv_seconds(network: str, reps: int = 3) -> float:
    """Seconds per batch of the convolutions alone, forward and backward, at the training
    shapes: the part of a step no training path can skip. Upstream's step time over this is
    the highest ratio any trainer that keeps float32 convolutions could reach here."""
    calls = conv_calls(network)
    fmt = torch.channels_last
    times = []
    for _ in range(reps + 1):  # the first round builds oneDNN's kernels: not timed
        total = 0.0
        for i, (m, shape) in enumerate(calls):
            # no input gradient for the first conv: it reads the image
            x = torch.randn(shape).sign().contiguous(memory_format=fmt).requires_grad_(i > 0)
            w = m.weight.detach().sign().contiguous(memory_format=fmt).requires_grad_(True)
            t0 = time.perf_counter()
            out = torch.nn.functional.conv2d(x, w, None, m.stride, m.padding)
            out.backward(torch.ones_like(out))
            total += time.perf_counter() - t0
        times.append(total)
    return statistics.median(times[1:])


def conv_gflop(network: str) -> tuple[float, float]:
    """Float operations (GFLOP) of one training batch's convolutions, as torch's flop counter
    counts them: (forward, gradients). The gradients are the weight and input gradients; the first
    conv has no input gradient, it reads the image."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(load_network_config(network).model).train()
    with FlopCounterMode(display=False) as counter:
        model(torch.rand(BATCH, 3, 32, 32)).sum().backward()
    ops = counter.get_flop_counts()["Global"]
    aten = torch.ops.aten
    return ops.get(aten.convolution, 0) / 1e9, ops.get(aten.convolution_backward, 0) / 1e9


def gemm_gflops(size: int = 2048, reps: int = 10) -> float:
    """This machine's float32 multiply-add rate at the current thread count: a large square
    matrix product, the best case for any BLAS. The fastest of reps (after one untimed): a
    ceiling must not drop because another process took the CPU for one of them."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    times = []
    for _ in range(reps + 1):
        t0 = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - t0)
    return 2 * size**3 / min(times[1:]) / 1e9


def bench(nets: list[str], steps: int, rounds: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    data = load_dataset("maskedface", SAMPLE_DIR, "all")
    reps = -(-steps * BATCH // len(data))
    data = ArrayDataset(
        np.concatenate([data.x] * reps), np.concatenate([data.y] * reps), data.classes
    )
    results = {}
    for net in nets:
        cfg = load_network_config(net)
        ours, base = [], []
        for _ in range(rounds):  # interleaved, so load from other processes hits both alike
            ours.append(time_ours(data, net, steps))
            base.append(time_upstream(data, cfg.model.width, steps, cfg.model.num_classes))
            print(f"{net}: ours {ours[-1]:.0f} img/s, upstream {base[-1]:.0f} img/s", flush=True)
        o, b = statistics.median(ours), statistics.median(base)
        conv_s = conv_seconds(net)
        peak, (fwd, grads) = gemm_gflops(), conv_gflop(net)
        flop_s = (fwd + grads) / peak  # the convolutions at the peak rate
        # A binary forward conv could run as XNOR-popcount at next to no cost, but its gradients
        # multiply real-valued output gradients: they stay float whatever the trainer does.
        grad_s = grads / peak
        results[net] = {
            "ours_img_per_s": o,
            "upstream_img_per_s": b,
            "ratio": o / b,
            "conv_only_img_per_s": BATCH / conv_s,
            "ceiling_ratio": BATCH / conv_s / b,
            "conv_gflop_per_batch": fwd + grads,
            "conv_grad_gflop_per_batch": grads,
            "gemm_gflops": peak,
            "conv_at_peak_img_per_s": BATCH / flop_s,
            "peak_ceiling_ratio": BATCH / flop_s / b,
            "grads_at_peak_img_per_s": BATCH / grad_s,
            "grads_peak_ceiling_ratio": BATCH / grad_s / b,
            "ours_runs": ours,
            "upstream_runs": base,
        }
    return {
        "what": "training images/s, forward+backward+Adam+clip, batch 100, augmentation on",
        "baseline": "brevitas_examples.bnn_pynq CNV + DataLoader with per-image PIL crop/flip",
        "threads": threads,
        "steps_per_run": steps,
        "rounds": rounds,
        "statistic": "median of rounds",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
        "load_average_at_end": os.getloadavg(),
        "results": results,
        "target_ratio": 3.0,
    }


def write(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "train.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Training speed (images/s)",
        "",
        f"{report['what']}; {report['threads']} torch threads; {report['machine']}; "
        f"{report['statistic']} of {report['rounds']} interleaved runs of "
        f"{report['steps_per_run']} batches; load average at end {report['load_average_at_end']}.",
        "",
    ]
    header = ("network", "maskbnn", "upstream bnn_pynq path", "ratio", "convolutions alone",
              "ceiling", "convolutions at GEMM peak", "ceiling",
              "their gradients alone at GEMM peak", "ceiling")  # fmt: skip
    lines += md_table(
        header,
        (
            (net, f"{r['ours_img_per_s']:.0f}", f"{r['upstream_img_per_s']:.0f}",
             f"{r['ratio']:.2f}x", f"{r['conv_only_img_per_s']:.0f}", f"{r['ceiling_ratio']:.2f}x",
             f"{r['conv_at_peak_img_per_s']:.0f}", f"{r['peak_ceiling_ratio']:.2f}x",
             f"{r['grads_at_peak_img_per_s']:.0f}", f"{r['grads_peak_ceiling_ratio']:.2f}x")
            for net, r in report["results"].items()
        ),
    )  # fmt: skip
    peaks = ", ".join(f"{r['gemm_gflops']:.0f}" for r in report["results"].values())
    lines += [
        "",
        "*Convolutions alone*: img/s if a step were nothing but its float32 convolutions, forward",
        "and backward, at the training shapes (oneDNN, same threads). *Ceiling*: that over upstream,",
        "the best ratio any trainer keeping float32 convolutions could reach on this machine.",
        "*Convolutions at GEMM peak*: the same convolutions' float operations (forward, weight and",
        "input gradients) at the rate of a 2048x2048 float32 matrix product on the same threads",
        f"({peaks} GFLOP/s); its ceiling holds for any convolution code, not just oneDNN's.",
        "*Their gradients alone*: the weight and input gradients only, at that rate: the ceiling",
        "even for a trainer whose binary forward convolutions cost nothing (XNOR-popcount); the",
        "gradients multiply real-valued output gradients, so they stay float32 here.",
    ]
    (out / "train.md").write_text("\n".join(lines) + "\n")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nets", nargs="+", default=["mask_1w1a_0.5", "mask_1w1a"])
    p.add_argument("--steps", type=int, default=8, help="batches per timed run")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--out", type=Path, default=BUILD_DIR / "bench")


def run(args: argparse.Namespace) -> int:
    report = bench(args.nets, args.steps, args.rounds, args.threads)
    write(report, args.out)
    print((args.out / "train.md").read_text())
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
