"""The step registry and its runner; the Makefile and the README's stage table follow its order."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from maskbnn.errors import UserError
from maskbnn.paths import REPO_ROOT
from maskbnn.pipeline.steps import STEPS, Context, Registry, Step, StepFailed, run_steps


def _ctx(tmp_path: Path) -> Context:
    return Context("mask_1w1a_0.25", "Pynq-Z1", tmp_path / "src", tmp_path / "out",
                   tmp_path / "w.tar", tmp_path / "build")  # fmt: skip


def _writer(name: str, code: int = 0):
    """A step that writes {out}/<name>.txt and exits `code`."""

    def run(ctx: Context) -> int:
        ctx.out.mkdir(parents=True, exist_ok=True)
        (ctx.out / f"{name}.txt").write_text(name)
        return code

    return run


def _chain(*steps: Step) -> Registry:
    reg = Registry()
    for s in steps:
        reg.add(s)
    return reg


def test_a_step_name_is_registered_once():
    reg = _chain(Step("a", _writer("a")))
    with pytest.raises(ValueError, match="'a' is registered twice"):
        reg.add(Step("a", _writer("b")))


def test_select_from_to_only_in_run_order():
    reg = _chain(*(Step(n, _writer(n)) for n in "abcd"))
    assert [s.name for s in reg.select("b", "c")] == ["b", "c"]
    assert [s.name for s in reg.select("c")] == ["c", "d"]
    assert [s.name for s in reg.select(stop="b")] == ["a", "b"]
    assert [s.name for s in reg.select(only=["d", "a"])] == ["a", "d"]
    for bad in (dict(start="x"), dict(start="c", stop="a"), dict(start="a", only=["b"])):
        with pytest.raises(UserError):
            reg.select(**bad)


def test_runner_runs_in_order_timed_and_recorded(tmp_path):
    ctx = _ctx(tmp_path)
    reg = _chain(
        Step("a", _writer("a"), outputs=("{out}/a.txt",)),
        Step("b", _writer("b"), inputs=("{out}/a.txt",), outputs=("{out}/b.txt",)),
    )
    results = run_steps(reg.select(), ctx, record=tmp_path / "steps.json")
    assert [(r.name, r.code) for r in results] == [("a", 0), ("b", 0)]
    assert [r["name"] for r in json.loads((tmp_path / "steps.json").read_text())] == ["a", "b"]


def test_a_failing_step_stops_the_run_with_its_code_and_its_name(tmp_path):
    ctx = _ctx(tmp_path)
    reg = _chain(Step("a", _writer("a", code=3)), Step("b", _writer("b")))
    with pytest.raises(StepFailed, match="step 'a' failed with exit code 3") as err:
        run_steps(reg.select(), ctx, record=tmp_path / "steps.json")
    assert err.value.exit_code == 3
    assert not (ctx.out / "b.txt").exists()
    assert [r["code"] for r in json.loads((tmp_path / "steps.json").read_text())] == [3]


def test_an_accepted_code_goes_on(tmp_path):
    ctx = _ctx(tmp_path)
    reg = _chain(Step("a", _writer("a", code=4), accept=frozenset({0, 4})), Step("b", _writer("b")))
    assert [r.code for r in run_steps(reg.select(), ctx)] == [4, 0]


def test_missing_inputs_and_missing_outputs_are_errors(tmp_path):
    ctx = _ctx(tmp_path)
    needs = Step("b", _writer("b"), inputs=("{build}/build.json",))
    with pytest.raises(UserError, match=r"step 'b' needs .*Pynq-Z1/build\.json"):
        run_steps([needs], ctx)
    liar = Step("c", _writer("c"), outputs=("{out}/never.txt",))
    with pytest.raises(RuntimeError, match="step 'c' exited 0 without writing"):
        run_steps([liar], ctx)


def test_a_step_error_names_the_step(tmp_path):
    def bad_input(ctx: Context) -> int:
        raise UserError("no such folder")

    def bug(ctx: Context) -> int:
        raise KeyError("x")

    with pytest.raises(UserError, match="step 'a': no such folder"):
        run_steps([Step("a", bad_input)], _ctx(tmp_path))
    with pytest.raises(KeyError) as err:
        run_steps([Step("b", bug)], _ctx(tmp_path))
    assert "(in step 'b')" in err.value.__notes__


def test_the_makefile_defines_the_step_targets_in_step_order():
    text = (REPO_ROOT / "Makefile").read_text()
    where = {}
    for m in re.finditer(r"^([a-z][\w -]*?)\s*:(?!=)", text, re.M):
        for target in m.group(1).split():
            where.setdefault(target, m.start())
    targets = [s.make_target for s in STEPS.select() if s.make_target]
    missing = [t for t in targets if t not in where]
    assert not missing, missing
    assert sorted(targets, key=where.__getitem__) == targets


def test_the_readme_stage_table_lists_every_step_in_order():
    text = (REPO_ROOT / "README.md").read_text()
    table = text[text.index("## Stages") :].split("\n\n")[2]
    first = [row.split("|")[1].strip() for row in table.splitlines()[2:]]
    steps = [c.strip("`") for c in first if c.startswith("`")]
    assert steps == STEPS.names()
