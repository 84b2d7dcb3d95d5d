"""Where `maskbnn train` runs: the device (`--gpus`) and, under `torchrun`, the torch.distributed group.

One process per device. torchrun starts the processes and gives each its RANK, WORLD_SIZE and
LOCAL_RANK (its documented contract); gloo carries the collectives on the CPU, NCCL on CUDA. Every
rank holds the whole in-memory split and draws the same seeded permutation each epoch; of every
global batch each rank trains on its contiguous slice, gradients are summed with one all-reduce
after backward, and BatchNorm statistics are taken over the global batch (see `sync_batchnorm`),
so N processes take the same steps as one process with the same global batch.

Why not DistributedDataParallel: its reducer hooks every parameter's gradient, and the trainer runs
backward passes outside the wrapped forward (fast_binary probes each layer with one), which DDP
would take for a training step. The models here are small (CNV 0.25x: 0.1 M parameters), so the
overlap DDP gains by bucketing is not worth that; the same all-reduce runs once per step instead.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from maskbnn.errors import UserError
from maskbnn.models.quant import TensorNorm
from maskbnn.pipeline.train.metrics import Accumulator

# A rank that waits longer than this for its peers gives up. Long enough for rank 0 to prepare a
# raw folder while the others wait (the full MaskedFace-Net takes minutes); a killed peer is
# noticed at once anyway: torchrun stops the others when one exits.
TIMEOUT = datetime.timedelta(minutes=60)


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def shard(self, n: int) -> slice:
        """This rank's contiguous part of a global batch of n images (sizes differ by <= 1)."""
        base, extra = divmod(n, self.world)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (self.rank < extra))


CPU = Runtime(torch.device("cpu"))


def parse_gpus(spec: str | None) -> list[int] | None:
    """bnn_pynq's --gpus: a comma-separated list of CUDA device indices ('0', '0,1'); None: CPU."""
    if spec is None or spec.strip() in ("", "None"):
        return None
    try:
        ids = [int(s) for s in spec.split(",")]
    except ValueError:
        raise UserError(
            f"--gpus {spec!r}: give CUDA device indices, e.g. --gpus 0 or 0,1"
        ) from None
    if any(i < 0 for i in ids) or len(set(ids)) != len(ids):
        raise UserError(f"--gpus {spec!r}: indices must be distinct and >= 0")
    return ids


def start(gpus: str | None) -> Runtime:
    """The device of this process, and the process group when torchrun started several."""
    ids = parse_gpus(gpus)
    # torchrun's contract with the processes it starts: these variables, read here only.
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    if ids is None:
        device = torch.device("cpu")
    else:
        if not torch.cuda.is_available():
            why = "is built without CUDA" if torch.version.cuda is None else "sees no GPU"
            raise UserError(
                f"--gpus {gpus}: CUDA device cuda:{ids[0]} is not available (torch "
                f"{torch.__version__} here {why}); leave --gpus out to train on the CPU"
            )
        if len(ids) > 1 and world == 1:
            raise UserError(
                f"--gpus {gpus}: one process trains on one GPU; start one per GPU with "
                f"`torchrun --standalone --nproc_per_node {len(ids)} -m maskbnn train --gpus {gpus} ...`"
            )
        if world > 1 and len(ids) != local_world:
            raise UserError(
                f"--gpus {gpus} names {len(ids)} devices but torchrun started {local_world} "
                "processes on this machine; give one device per process"
            )
        index = ids[local_rank] if world > 1 else ids[0]
        if index >= torch.cuda.device_count():
            raise UserError(
                f"--gpus {gpus}: CUDA device cuda:{index} does not exist "
                f"({torch.cuda.device_count()} visible)"
            )
        device = torch.device("cuda", index)
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, rank=rank, world_size=world, timeout=TIMEOUT)
    return Runtime(device, rank, world)


def stop(rt: Runtime) -> None:
    if rt.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(rt: Runtime) -> None:
    if rt.distributed:
        dist.barrier()


def broadcast_state(model: nn.Module, rt: Runtime) -> None:
    """Every rank starts from rank 0's parameters and buffers."""
    if rt.distributed:
        for t in list(model.parameters()) + list(model.buffers()):
            dist.broadcast(t.data, src=0)


def average_gradients(params: list[nn.Parameter], rt: Runtime) -> None:
    """Mean of every rank's gradients, in one flat all-reduce."""
    if not rt.distributed:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat.div_(rt.world)
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def reduce_metrics(acc: Accumulator, rt: Runtime) -> None:
    """Sum every rank's confusion matrix, top-k hits and loss into `acc` (train metrics over the
    whole split, not one shard)."""
    if not rt.distributed:
        return
    extra = torch.tensor([float(acc.topk_hits), acc.loss_sum], dtype=torch.float64)
    dist.all_reduce(acc.confusion)
    dist.all_reduce(extra)
    acc.topk_hits, acc.loss_sum = int(extra[0]), float(extra[1])


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks whose backward sums the gradients over ranks: each rank's share of a
    statistic computed from every rank's images gets the gradient of every rank's loss.
    (torch.distributed.nn.functional.all_reduce does the same but is deprecated in torch 2.13,
    and its named successor in _functional_collectives is private.)"""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def _global_moments(x: torch.Tensor, dims: list[int]) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Mean and biased variance over `dims` of every rank's x (kept dims), and the count.
    Two passes (mean, then the centred squares) keep the variance as precise as BatchNorm's."""
    count = torch.tensor([float(math.prod(x.shape[d] for d in dims))], device=x.device)
    total = _AllReduceSum.apply(torch.cat([x.sum(dims).reshape(-1), count]))
    n = float(total[-1].detach())
    keep = [1 if d in dims else x.shape[d] for d in range(x.dim())]
    mean = (total[:-1] / n).reshape(keep)
    centred = x - mean
    var = _AllReduceSum.apply((centred * centred).sum(dims).reshape(-1)) / n
    return mean, var.reshape(keep), n


def _update_running(module: nn.Module, mean: torch.Tensor, var: torch.Tensor, n: float, factor):
    with torch.no_grad():
        module.running_mean.mul_(1 - factor).add_(mean.detach().reshape(-1), alpha=factor)
        unbiased = var.detach().reshape(-1) * (n / (n - 1))
        module.running_var.mul_(1 - factor).add_(unbiased, alpha=factor)


def _sync_bn_forward(bn: nn.modules.batchnorm._BatchNorm):
    """BatchNorm over the global batch, forward and backward, running statistics as torch's.
    Written here because torch's SyncBatchNorm refuses CPU tensors ("expected input tensor to be
    on GPU or xpu"), and the CPU path must be the CUDA path."""
    plain = type(bn).forward.__get__(bn)

    def forward(x: torch.Tensor) -> torch.Tensor:
        if not bn.training:
            return plain(x)
        xf = x.float()
        mean, var, n = _global_moments(xf, [0] + list(range(2, x.dim())))
        if bn.track_running_stats and bn.running_mean is not None:
            factor = bn.momentum
            if bn.num_batches_tracked is not None:
                bn.num_batches_tracked.add_(1)
                if factor is None:  # cumulative moving average
                    factor = 1.0 / float(bn.num_batches_tracked)
            _update_running(bn, mean, var, n, factor)
        y = (xf - mean) * torch.rsqrt(var + bn.eps)
        if bn.affine:
            shape = [1, -1] + [1] * (x.dim() - 2)
            y = y * bn.weight.view(shape) + bn.bias.view(shape)
        return y.to(x.dtype)

    return forward


def _sync_tensor_norm_forward(tn: TensorNorm):
    """bnn_pynq's TensorNorm (one mean and variance over the whole output) over the global batch."""
    plain = type(tn).forward.__get__(tn)

    def forward(x: torch.Tensor) -> torch.Tensor:
        if not tn.training:
            return plain(x)
        mean, var, n = _global_moments(x, list(range(x.dim())))
        _update_running(tn, mean, var, n, tn.momentum)
        return (x - mean) * (1 / (var + tn.eps).pow(0.5)) * tn.weight + tn.bias

    return forward


@contextlib.contextmanager
def sync_batchnorm(model: nn.Module, rt: Runtime) -> Iterator[None]:
    """Within the block, the model's BatchNorms normalise over the global batch (no-op on one
    process). Instance attributes, as fast_binary does: classes and state dicts stay as they are."""
    patched: list[nn.Module] = []
    try:
        if rt.distributed:
            for m in model.modules():
                if "forward" in m.__dict__:
                    continue
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.forward = _sync_bn_forward(m)
                elif isinstance(m, TensorNorm):
                    m.forward = _sync_tensor_norm_forward(m)
                else:
                    continue
                patched.append(m)
        yield
    finally:
        for m in patched:
            del m.forward
