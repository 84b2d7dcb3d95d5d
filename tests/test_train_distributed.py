"""Training past one process: the device flag, and torchrun data parallelism over gloo on the CPU.

The CUDA path is the same code with another device; it cannot run on this machine (no GPU), so what
is proven here is the CPU one: 2 processes take the same steps as 1 with the same global batch."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from maskbnn.errors import UserError
from maskbnn.models.checkpoint import load_weights, read_checkpoint
from maskbnn.models.quant import TensorNorm
from maskbnn.models.registry import get_network
from maskbnn.paths import REPO_ROOT, SAMPLE_DIR
from maskbnn.pipeline.train import distributed
from maskbnn.pipeline.train.distributed import Runtime, parse_gpus

NET = "mask_1w1a_0.25"


def test_parse_gpus_takes_bnn_pynq_device_lists():
    assert parse_gpus(None) is None and parse_gpus("None") is None and parse_gpus("") is None
    assert parse_gpus("0") == [0] and parse_gpus("0,1") == [0, 1]
    for bad in ("cuda", "0,0", "-1"):
        with pytest.raises(UserError):
            parse_gpus(bad)


def test_shards_cover_a_global_batch_once():
    for n in (2, 7, 50, 101):
        for world in (1, 2, 3):
            parts = [Runtime(torch.device("cpu"), r, world).shard(n) for r in range(world)]
            covered = [i for p in parts for i in range(n)[p]]
            assert covered == list(range(n))
            assert max(len(range(n)[p]) for p in parts) - min(len(range(n)[p]) for p in parts) <= 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_gpus_without_cuda_exits_2_naming_the_device(tmp_path: Path):
    cmd = [sys.executable, "-m", "maskbnn", "train", "--network", NET, "--gpus", "0"]
    cmd += ["--epochs", "1", "--experiments", str(tmp_path), "--no-progress"]
    res = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr
    assert "cuda:0 is not available" in res.stderr
    assert "Traceback" not in res.stderr
    assert not any(tmp_path.iterdir())  # nothing written


# --- BatchNorm and TensorNorm over the global batch ------------------------------------------
def _norm_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.BatchNorm2d(4, eps=1e-4),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 5),
        nn.BatchNorm1d(5),
        TensorNorm(),
    )


def _ranked_step(rank: int, world: int, port: int, x, out_q) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    rt = Runtime(torch.device("cpu"), rank, world)
    net = _norm_net().train()
    part = x[rt.shard(len(x))]
    with distributed.sync_batchnorm(net, rt):
        out = net(part)
        (out.square().mean() * (world * len(part) / len(x))).backward()
    distributed.average_gradients(list(net.parameters()), rt)
    # numpy: tensors would travel as shared memory that vanishes with this process
    buffers = {k: v.numpy().copy() for k, v in net.state_dict().items() if "running" in k}
    grads = {k: p.grad.numpy().copy() for k, p in net.named_parameters()}
    out_q.put((rank, out.detach().numpy().copy(), grads, buffers))
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_ranks_normalise_and_differentiate_like_one_batch():
    """Forward outputs, every gradient and the running statistics of a BatchNorm2d/BatchNorm1d/
    TensorNorm network on 2 gloo ranks equal one process on the whole (uneven) batch."""
    x = torch.randn(7, 3, 8, 8)
    net = _norm_net().train()
    ref_out = net(x)
    ref_out.square().mean().backward()
    ref_grads = {k: p.grad for k, p in net.named_parameters()}
    ref_buf = {k: v for k, v in net.state_dict().items() if "running" in k}

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    port = 29500 + os.getpid() % 1000
    procs = [ctx.Process(target=_ranked_step, args=(r, 2, port, x, q)) for r in range(2)]
    for p in procs:
        p.start()
    results = sorted((q.get(timeout=120) for _ in procs), key=lambda r: r[0])
    for p in procs:
        p.join(timeout=60)
    out = torch.cat([torch.from_numpy(r[1]) for r in results])
    torch.testing.assert_close(out, ref_out.detach(), rtol=1e-5, atol=1e-5)
    for _, _, grads, buffers in results:
        for k, g in ref_grads.items():
            torch.testing.assert_close(torch.from_numpy(grads[k]), g, rtol=1e-4, atol=1e-6, msg=k)
        for k, b in ref_buf.items():
            torch.testing.assert_close(torch.from_numpy(buffers[k]), b, rtol=1e-5, atol=1e-6, msg=k)


# --- the CI proof: torchrun, 2 gloo processes vs 1 process --------------------------------------
def _command(exp: Path, nproc: int, epochs: int, *extra: str) -> list[str]:
    launch = [sys.executable, "-m", "maskbnn"]
    if nproc > 1:
        launch = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        launch += ["--nproc_per_node", str(nproc), "-m", "maskbnn"]
    cmd = launch + ["train", "--network", NET, "--datadir", str(SAMPLE_DIR), "--experiments"]
    cmd += [str(exp), "--epochs", str(epochs), "--batch_size", "50", "--limit", "200"]
    return cmd + ["--threads", "1", "--no-progress", "--save-every", "1", *extra]


ENV = dict(os.environ, OMP_NUM_THREADS="1")


def _train(exp: Path, nproc: int, *extra: str, epochs: int = 2) -> subprocess.CompletedProcess:
    cmd = _command(exp, nproc, epochs, *extra)
    res = subprocess.run(cmd, cwd=REPO_ROOT, env=ENV, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    return res


def _run_dir(exp: Path) -> Path:
    (run,) = exp.iterdir()
    return run


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_and_resume(tmp_path: Path):
    """2 epochs of mask_1w1a_0.25 on 200 sample images, global batch 50 (4 steps an epoch).
    Tolerance: every 1-bit weight (the sign of a latent weight) equal; every trained parameter
    within 2e-3, a tenth of the 0.02 learning rate (Adam divides each gradient by its own running
    size, so float rounding in the all-reduce can move a near-zero gradient's step by up to ~lr);
    BatchNorm/TensorNorm running statistics within 1e-3 relative. Measured: 0 sign flips, at
    most 6e-4 on a parameter, 2e-5 relative on a statistic."""
    _train(tmp_path / "one", 1)
    two = _train(tmp_path / "two", 2)
    assert two.stdout.count("epoch 2/2") == 1  # only rank 0 logs
    one_run, two_run = _run_dir(tmp_path / "one"), _run_dir(tmp_path / "two")
    a = read_checkpoint(one_run / "checkpoints" / "checkpoint.tar")
    b = read_checkpoint(two_run / "checkpoints" / "checkpoint.tar")
    assert a["epoch"] == b["epoch"] == 2
    assert len(a["history"]) == len(b["history"]) == 2
    model, _ = get_network(NET)
    params = {k for k, _ in model.named_parameters()}
    for key, want in a["state_dict"].items():
        got = b["state_dict"][key]
        if key in params:  # trained by Adam at lr 0.02
            torch.testing.assert_close(got, want, rtol=0, atol=2e-3, msg=key)
            if want.dim() > 1:  # a binarised layer: its 1-bit weights
                assert torch.equal(torch.sign(got), torch.sign(want)), key
        elif key.endswith("num_batches_tracked"):
            assert torch.equal(got, want), key
        else:  # running statistics
            torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-5, msg=key)

    # Loadable on the CPU into a plain model.
    load_weights(model, two_run / "checkpoints" / "checkpoint.tar", NET)

    # Resume every rank from epoch 1: exactly the uninterrupted 2-process run's weights.
    done = two_run / "checkpoints" / "uninterrupted.tar"
    shutil.copyfile(two_run / "checkpoints" / "checkpoint.tar", done)
    resumed = _train(tmp_path / "two", 2, "--resume", str(two_run / "checkpoints" / "epoch_1.tar"))
    assert f"resuming {NET} at epoch 2 of 2" in resumed.stdout
    c = read_checkpoint(two_run / "checkpoints" / "checkpoint.tar")
    ref = read_checkpoint(done)
    assert c["epoch"] == 2
    for key, value in ref["state_dict"].items():
        assert torch.equal(c["state_dict"][key], value), key


@pytest.mark.slow
def test_a_killed_rank_ends_the_run_and_its_checkpoint_resumes(tmp_path: Path):
    """SIGKILL to rank 1 mid-run: torchrun stops rank 0 and exits non-zero, checkpoint.tar (rank
    0's, atomic) is whole, and the same launch with --resume finishes the run."""
    import psutil

    epochs = 8
    proc = subprocess.Popen(
        _command(tmp_path, 2, epochs),
        cwd=REPO_ROOT,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 600
        ckpt = None
        while time.monotonic() < deadline and proc.poll() is None and ckpt is None:
            ckpt = next(iter(tmp_path.glob("*/checkpoints/epoch_1.tar")), None)
            time.sleep(0.1)
        assert ckpt is not None and proc.poll() is None, "no epoch-1 checkpoint while running"
        workers = psutil.Process(proc.pid).children(recursive=True)
        (rank1,) = [w for w in workers if w.environ().get("RANK") == "1"]
        rank1.kill()
        assert proc.wait(timeout=120) != 0
        assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    last = ckpt.parent / "checkpoint.tar"
    killed_at = read_checkpoint(last)["epoch"]
    assert 1 <= killed_at < epochs, "the kill came too late"
    resumed = _train(tmp_path, 2, "--resume", str(last), epochs=epochs)
    assert f"resuming {NET} at epoch {killed_at + 1} of {epochs}" in resumed.stdout
    done = read_checkpoint(last)
    assert done["epoch"] == epochs and len(done["history"]) == epochs
