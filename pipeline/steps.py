"""The pipeline's steps, named and ordered once, and the one runner that executes a range of them.

A step is what a user would type (a `maskbnn` sub-command, or the board driver) plus the files it
reads and writes. `maskbnn demo` runs the list through `run_steps`; the Makefile's step targets and
the README's stage table follow the same order (tests/test_steps.py holds them to it).
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from maskbnn.cli import main
from maskbnn.errors import UserError
from maskbnn.outputs import write_json
from maskbnn.paths import rel
from maskbnn.pipeline.builddir import BuildDir, export_dir


@dataclass(frozen=True)
class Context:
    """What every step of one run shares: the network, board, inputs and where outputs go."""

    net: str
    board: str
    source: Path
    out: Path
    checkpoint: Path
    build_root: Path

    def fields(self) -> dict[str, str]:
        """Values for the steps' artefact templates."""
        bd = BuildDir.of(self.net, self.board, self.build_root)
        return {
            "net": self.net,
            "board": self.board,
            "source": str(self.source),
            "out": str(self.out),
            "checkpoint": str(self.checkpoint),
            "build": str(bd.root),
            "export": str(export_dir(self.net, self.build_root)),
        }


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[Context], int]
    inputs: tuple[str, ...] = ()  # artefact templates ({out}, {build}, {export}, {net}, ...)
    outputs: tuple[str, ...] = ()
    make_target: str | None = None  # the Make target that runs it, when there is one
    accept: frozenset[int] = field(default=frozenset({0}))  # exit codes that let the run go on

    def paths(self, which: Iterable[str], ctx: Context) -> list[Path]:
        values = ctx.fields()
        return [Path(t.format(**values)) for t in which]


class Registry:
    """Steps in run order; a second step under a taken name is a programming error."""

    def __init__(self) -> None:
        self._steps: dict[str, Step] = {}

    def add(self, step: Step) -> Step:
        if step.name in self._steps:
            raise ValueError(f"step {step.name!r} is registered twice")
        self._steps[step.name] = step
        return step

    def names(self) -> list[str]:
        return list(self._steps)

    def select(
        self, start: str | None = None, stop: str | None = None, only: Iterable[str] = ()
    ) -> list[Step]:
        """The steps from `start` to `stop` (both included), or just `only`, in run order."""
        names = self.names()
        for name in [start, stop, *only]:
            if name is not None and name not in self._steps:
                raise UserError(f"no step {name!r}; steps: {', '.join(names)}")
        only = list(only)
        if only:
            if start or stop:
                raise UserError("give either --only or --from/--to, not both")
            return [self._steps[n] for n in names if n in only]
        lo = names.index(start) if start else 0
        hi = names.index(stop) if stop else len(names) - 1
        if lo > hi:
            raise UserError(f"--from {start} comes after --to {stop}; order: {', '.join(names)}")
        return [self._steps[n] for n in names[lo : hi + 1]]


class StepFailed(UserError):
    """A step ended with an exit code the run does not accept; the demo exits with that code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class StepResult:
    name: str
    code: int
    seconds: float


def run_steps(
    steps: list[Step],
    ctx: Context,
    record: Path | None = None,
    on_step: Callable[[StepResult], None] | None = None,
) -> list[StepResult]:
    """Run `steps` in order, timed. A step whose inputs are missing, whose exit code it does not
    accept, or that reports success without writing its outputs stops the run with a UserError
    naming the step; an internal error keeps its traceback, noted with the step. Each step's
    result goes to `on_step` and, with the ones before it, to `record` (JSON) as soon as it ends,
    so a stopped run still shows its timings."""
    results: list[StepResult] = []
    for step in steps:
        missing = [p for p in step.paths(step.inputs, ctx) if not p.exists()]
        if missing:
            raise UserError(
                f"step {step.name!r} needs {', '.join(rel(p) for p in missing)}: run the steps "
                "before it first (without --from/--only)"
            )
        t0 = time.perf_counter()
        try:
            code = int(step.run(ctx) or 0)
        except UserError as err:
            raise type(err)(f"step {step.name!r}: {err}") from err
        except Exception as err:
            err.add_note(f"(in step {step.name!r})")
            raise
        results.append(StepResult(step.name, code, time.perf_counter() - t0))
        if on_step is not None:
            on_step(results[-1])
        if record is not None:
            write_json(record, [r.__dict__ for r in results])
        if code not in step.accept:
            raise StepFailed(f"step {step.name!r} failed with exit code {code}", code)
        absent = [p for p in step.paths(step.outputs, ctx) if code == 0 and not p.exists()]
        if absent:
            raise RuntimeError(
                f"step {step.name!r} exited 0 without writing {', '.join(rel(p) for p in absent)}"
            )
    return results


# --- the pipeline, in order ------------------------------------------------------------------
MISSING_TOOL = 4  # MissingToolError's exit code: the bitstream step without Vivado


def _maskbnn(*argv: str) -> Callable[[Context], int]:
    """A step that is a `maskbnn` command; `{field}` in an argument is filled from the context."""

    def run(ctx: Context) -> int:
        values = ctx.fields()
        args = [a.format(**values) for a in argv]
        print(f"\n== maskbnn {shlex.join(args)}", flush=True)
        return main(args)

    return run


def _board(ctx: Context) -> int:
    """The board driver, emulation backend: the same pack -> buffer -> unpack path as on a PYNQ."""
    from maskbnn_board.cli import main as board_main

    deploy = ctx.out / "deploy" / f"{ctx.net}_{ctx.board}"
    folder = deploy / "deploy" if (deploy / "deploy").is_dir() else deploy
    argv = ["run", "--deploy", str(folder), "--images", str(ctx.source), "--backend", "emulate"]
    argv += ["--golden", "--out", str(ctx.out / "board")]
    print(f"\n== maskbnn-board {shlex.join(argv)}", flush=True)
    return int(board_main(argv) or 0)


NB = ("--net", "{net}", "--board", "{board}")
STEPS = Registry()
for _step in (
    Step(
        "data",
        _maskbnn("data", "prepare", "--source", "{source}", "--out", "{out}/data"),
        inputs=("{source}",),
        outputs=("{out}/data/dataset.npz", "{out}/data/manifest.json"),
        make_target="data",
    ),
    Step(
        "evaluate",
        _maskbnn(
            *"train --evaluate --net {net} --pretrained --datadir {out}/data --eval-split test "
            "--experiments {out}/experiments --metrics-json {out}/metrics.json".split()
        ),
        inputs=("{out}/data/dataset.npz", "{checkpoint}"),
        outputs=("{out}/metrics.json",),
        make_target="evaluate",
    ),
    Step(
        "export",
        _maskbnn("export", "--net", "{net}", "--checkpoint", "{checkpoint}"),
        inputs=("{checkpoint}",),
        outputs=("{export}/export.json",),
        make_target="export",
    ),
    Step(
        "build",
        _maskbnn("build", *NB),
        inputs=("{export}/export.json",),
        outputs=("{build}/build.json", "{build}/hw_model.onnx", "{build}/program.npz"),
        make_target="build",
    ),
    Step(
        "verify",
        _maskbnn("verify", *NB, "--checkpoint", "{checkpoint}"),
        inputs=("{build}/build.json",),
        outputs=("{build}/verification.json", "{build}/verification.md"),
        make_target="verify",
    ),
    Step(
        "rtlsim",
        _maskbnn("rtlsim", *NB),
        inputs=("{build}/hw_model.onnx",),
        outputs=("{build}/rtlsim/rtlsim.json",),
        make_target="rtlsim",
    ),
    Step(
        "deploy",
        _maskbnn("deploy", *NB, "--checkpoint", "{checkpoint}", "--out", "{out}/deploy"),
        inputs=("{build}/verification.json",),
        outputs=("{out}/deploy/{net}_{board}", "{out}/deploy/{net}_{board}.tar.gz"),
        make_target="deploy",
    ),
    Step(
        "bitstream",
        _maskbnn("bitstream", *NB, "--checkpoint", "{checkpoint}"),
        inputs=("{build}/verification.json",),
        make_target="bitstream",
        accept=frozenset({0, MISSING_TOOL}),  # no Vivado here: stops at its sources, says why
    ),
    Step(
        "board",
        _board,
        inputs=("{out}/deploy/{net}_{board}",),
        outputs=("{out}/board/predictions.csv", "{out}/board/summary.json"),
    ),
):
    STEPS.add(_step)
