"""The driver's execution path, shared by every backend, as explicit timed stages.

fold -> pack -> copy in -> run -> copy out -> unpack -> unfold. A backend supplies only the three
device stages (buffers in, run, buffers out); everything the host does to the data is here, so the
emulation backend exercises exactly the code the board runs.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Callable

import numpy as np

from maskbnn_board.deployment import Settings
from maskbnn_board.errors import DriverError
from maskbnn_board.packing import pack, unpack

STAGES = ("fold", "pack", "copy_in", "run", "copy_out", "unpack", "unfold")
HOST_STAGES = ("fold", "pack", "unpack", "unfold")
TRANSFER_STAGES = ("copy_in", "copy_out")
COMPUTE_STAGES = ("run",)


class Accelerator(ABC):
    """One accelerator behind packed uint8 buffers; subclasses implement the device stages."""

    backend = "abstract"

    def __init__(self, settings: Settings, batch_size: int):
        if batch_size < 1:
            raise DriverError(f"batch size must be at least 1, got {batch_size}")
        self.settings = settings
        self.batch_size = batch_size
        self.timings: dict[str, float] = defaultdict(float)
        self.images_done = 0

    # --- device stages (backend) -----------------------------------------------------------
    @abstractmethod
    def copy_in(self, packed: np.ndarray) -> None:
        """Place a packed input batch (n, *ishape_packed) in the device's input buffer."""

    @abstractmethod
    def run(self, n: int) -> None:
        """Process the first ``n`` images of the input buffer; block until the output is written."""

    @abstractmethod
    def copy_out(self, n: int) -> np.ndarray:
        """The first ``n`` packed outputs (n, *oshape_packed) from the device's output buffer."""

    def close(self) -> None:
        """Release device buffers; the base class holds none."""
        self.closed = True

    # --- host stages -----------------------------------------------------------------------
    def fold_input(self, x: np.ndarray) -> np.ndarray:
        spec = self.settings.input
        if x.shape[1:] != spec.normal:
            raise DriverError(f"input batch {x.shape} is not (N, {spec.normal})")
        return x.reshape(spec.with_batch("folded", len(x)))

    def pack_input(self, folded: np.ndarray) -> np.ndarray:
        return pack(folded, self.settings.input.dtype)

    def unpack_output(self, packed: np.ndarray) -> np.ndarray:
        spec = self.settings.output
        return unpack(packed, spec.dtype, spec.values_per_word)

    def unfold_output(self, folded: np.ndarray) -> np.ndarray:
        return folded.reshape(self.settings.output.with_batch("normal", len(folded)))

    # --- whole path ------------------------------------------------------------------------
    def _timed(self, stage: str, fn: Callable, *args):
        t0 = time.perf_counter()
        out = fn(*args)
        self.timings[stage] += time.perf_counter() - t0
        return out

    def execute(self, x: np.ndarray) -> np.ndarray:
        """uint8 images (N, H, W, 3) -> accelerator outputs (N, *oshape_normal), batch by batch."""
        x = np.asarray(x)
        if x.dtype != np.uint8:
            raise DriverError(f"input images must be uint8, got {x.dtype}")
        outs = []
        for start in range(0, len(x), self.batch_size):
            chunk = x[start : start + self.batch_size]
            n = len(chunk)
            folded = self._timed("fold", self.fold_input, chunk)
            packed = self._timed("pack", self.pack_input, folded)
            self._timed("copy_in", self.copy_in, packed)
            self._timed("run", self.run, n)
            out_packed = self._timed("copy_out", self.copy_out, n)
            out_folded = self._timed("unpack", self.unpack_output, out_packed)
            outs.append(self._timed("unfold", self.unfold_output, out_folded))
            self.images_done += n
        if not outs:
            return np.zeros(
                (0, *self.settings.output.normal), self.settings.output.dtype.numpy_dtype()
            )
        return np.concatenate(outs)

    def predict(self, outputs: np.ndarray) -> np.ndarray:
        """Class index per image from the accelerator's outputs."""
        flat = outputs.reshape(len(outputs), -1)
        if self.settings.output_kind == "label":
            return flat[:, 0].astype(np.int64)
        return np.argmax(flat, axis=1).astype(np.int64)

    def reset_timings(self) -> None:
        self.timings = defaultdict(float)
        self.images_done = 0

    def timing_report(self) -> dict:
        """Seconds per stage, images/s, and the host / transfer / compute split."""
        t = dict(self.timings)
        total = sum(t.values())
        n = self.images_done
        groups = {
            "host_s": sum(t.get(s, 0.0) for s in HOST_STAGES),
            "transfer_s": sum(t.get(s, 0.0) for s in TRANSFER_STAGES),
            "compute_s": sum(t.get(s, 0.0) for s in COMPUTE_STAGES),
        }
        return {
            "backend": self.backend,
            "images": n,
            "batch_size": self.batch_size,
            "total_s": total,
            "images_per_s": n / total if total > 0 else None,
            "stages_s": {k: t.get(k, 0.0) for k in STAGES},
            **groups,
        }

    def throughput_test(self, batches: int = 10) -> dict:
        """Time ``batches`` full batches of random images; latency = one batch of one image."""
        rng = np.random.default_rng(0)
        shape = self.settings.input.with_batch("normal", self.batch_size)
        x = rng.integers(0, 256, size=shape, dtype=np.uint8)
        saved, saved_n = self.timings, self.images_done
        self.reset_timings()
        try:
            self.execute(x[:1])  # warm-up: first-touch of buffers, caches
            self.reset_timings()
            t0 = time.perf_counter()
            self.execute(x[:1])
            latency = time.perf_counter() - t0
            self.reset_timings()
            t0 = time.perf_counter()
            for _ in range(batches):
                self.execute(x)
            wall = time.perf_counter() - t0
            report = self.timing_report()
        finally:
            self.timings, self.images_done = saved, saved_n
        report.update(
            {
                "latency_one_image_s": latency,
                "wall_s": wall,
                "wall_images_per_s": report["images"] / wall,
            }
        )
        return report
