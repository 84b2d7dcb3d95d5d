"""FINN's step loop, written once: a named range of `step(model, cfg) -> model` steps, in order.

`maskbnn build` (Python steps up to the estimate reports), `maskbnn bitstream` (the hardware steps)
and the folding optimizer (up to specialize_layers; from validate_folding on) all run their steps
through `run_finn_steps`. FINN's own `build_dataflow_cfg` does the same with start/stop step
names, but it cannot be used here: it ends by recording the Vivado install and fails without it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from maskbnn.errors import UserError

FinnStep = tuple[str, Callable]


def step_range(steps: list[FinnStep], start: str | None, stop: str | None) -> list[FinnStep]:
    """The steps from `start` to `stop`, both included (None: from the first / to the last)."""
    names = [n for n, _ in steps]
    for name in (start, stop):
        if name is not None and name not in names:
            raise ValueError(f"no FINN step {name!r}; steps: {', '.join(names)}")
    lo = names.index(start) if start else 0
    hi = names.index(stop) + 1 if stop else len(names)
    return steps[lo:hi]


def run_finn_steps(
    model,
    cfg,
    steps: list[FinnStep],
    start: str | None = None,
    stop: str | None = None,
    save_dir: Path | None = None,
    on_error: Callable[[str, Exception], Exception | None] | None = None,
    log: bool = True,
) -> tuple[object, dict[str, float]]:
    """Run `steps[start..stop]` on `model` with FINN's build config `cfg`; returns the model and
    each step's seconds. Each step's model goes to `save_dir/<step>.onnx` when given. A UserError
    passes through; any other failure is raised as the error `on_error` makes of it (when it
    knows better, e.g. Vivado's placer), else as a RuntimeError naming the step."""
    times: dict[str, float] = {}
    for name, fn in step_range(steps, start, stop):
        t0 = time.perf_counter()
        try:
            model = fn(model, cfg)
        except UserError:
            raise
        except Exception as err:
            better = on_error(name, err) if on_error else None
            if better is not None:
                raise better from err
            raise RuntimeError(f"FINN step {name} failed: {err}") from err
        if save_dir is not None:
            model.save(str(Path(save_dir) / f"{name}.onnx"))
        times[name] = round(time.perf_counter() - t0, 3)
        if log:
            print(f"  {name:30s} {times[name]:8.2f} s", flush=True)
    return model, times
