"""Trainer hooks of the binary training methods: EDE annealing (IR-Net) and extra checkpoints every
N epochs (IR-Net's --save-every), plus the CPU bfloat16 check behind `maskbnn train --amp`."""

from __future__ import annotations

from pathlib import Path

from maskbnn.models.binarize import ede_schedule, set_ede
from maskbnn.models.checkpoint import save_checkpoint
from maskbnn.pipeline.train.trainer import Checkpoints, Hook, Trainer


class EdeAnneal(Hook):
    """Sets EDE's t and k on every layer at the start of each epoch (IR-Net's per-epoch update):
    epoch e of E (1-based here) uses ede_schedule(e - 1, E), so the first epoch trains at T_min.
    Derived from the epoch number alone, so a resumed run continues the same schedule."""

    def __init__(self, t_min: float = 0.1, t_max: float = 10.0, log: bool = True) -> None:
        self.t_min, self.t_max = t_min, t_max
        self.log = log
        self.current: tuple[float, float] | None = None

    def on_epoch_start(self, trainer: Trainer, epoch: int, epochs: int) -> None:
        t, k = ede_schedule(epoch - 1, epochs, self.t_min, self.t_max)
        set_ede(trainer.model, t, k)
        self.current = (t, k)
        if self.log:
            trainer.log(f"epoch {epoch}/{epochs}: EDE t {t:.4g}, k {k:.4g}")


class SaveEvery(Hook):
    """checkpoints/epoch_<N>.tar every `every` epochs, with the same payload as checkpoint.tar
    (so any of them can be resumed or evaluated)."""

    def __init__(self, checkpoints: Checkpoints, every: int) -> None:
        if every < 1:
            raise ValueError("save-every needs N >= 1")
        self.checkpoints = checkpoints
        self.every = every

    def path(self, epoch: int) -> Path:
        return self.checkpoints.folder / f"epoch_{epoch}.tar"

    def on_epoch_end(self, trainer: Trainer, epoch: int, record: dict) -> None:
        if epoch % self.every == 0:
            save_checkpoint(self.path(epoch), self.checkpoints.payload(trainer, epoch))


def cpu_has_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Native bfloat16 arithmetic: the avx512_bf16 or amx_bf16 CPU flags (Linux /proc/cpuinfo).
    Without them torch still runs bfloat16 autocast, emulated and slower than float32."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})
