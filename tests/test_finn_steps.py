"""FINN's step loop, written once (pipeline/finn/steps.py): ranges by name, saving, errors."""

from __future__ import annotations

import pytest

from maskbnn.errors import UserError
from maskbnn.pipeline.finn.steps import run_finn_steps, step_range


class Model:
    """The one method the loop calls on a model (qonnx's ModelWrapper.save)."""

    def __init__(self, trail: tuple[str, ...] = ()) -> None:
        self.trail = trail

    def save(self, path: str) -> None:
        with open(path, "w") as f:
            f.write(",".join(self.trail))


def _step(name: str):
    return name, lambda model, cfg: Model((*model.trail, name))


STEPS = [_step(n) for n in ("a", "b", "c", "d")]


def test_a_named_range_runs_in_order_and_saves_each_model(tmp_path):
    model, times = run_finn_steps(Model(), None, STEPS, start="b", stop="c", save_dir=tmp_path)
    assert model.trail == ("b", "c") and list(times) == ["b", "c"]
    assert (tmp_path / "c.onnx").read_text() == "b,c" and not (tmp_path / "a.onnx").exists()
    assert run_finn_steps(Model(), None, STEPS, start="c", log=False)[0].trail == ("c", "d")


def test_an_unknown_step_name_is_refused():
    with pytest.raises(ValueError, match="no FINN step 'x'"):
        step_range(STEPS, "x", None)


def test_failures_name_the_step_and_user_errors_pass_through():
    def broken(model, cfg):
        raise KeyError("attr")

    def refused(model, cfg):
        raise UserError("fold further")

    with pytest.raises(RuntimeError, match="FINN step broken failed"):
        run_finn_steps(Model(), None, [("broken", broken)], log=False)
    with pytest.raises(UserError, match="fold further"):
        run_finn_steps(Model(), None, [("refused", refused)], log=False)
    placed = UserError("does not fit")
    with pytest.raises(UserError, match="does not fit"):
        run_finn_steps(Model(), None, [("broken", broken)], on_error=lambda n, e: placed, log=False)


def test_the_ranges_the_folding_optimizer_uses_exist_in_the_build():
    from maskbnn.pipeline.finn.build import steps

    names = [n for n, _ in steps()]
    assert [n for n, _ in step_range(steps(), None, "specialize_layers")][-1] == "specialize_layers"
    assert [n for n, _ in step_range(steps(), "validate_folding", None)] == names[
        names.index("validate_folding") :
    ]
