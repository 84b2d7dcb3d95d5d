"""The NumPy executor of the hardware graph: numpy-only, bit-exact against FINN's own execution."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from maskbnn.paths import REPO_ROOT, SAMPLE_DIR


def test_executor_imports_only_numpy():
    code = (
        "import sys; sys.path.insert(0, 'driver'); import maskbnn_board.hwexec; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'torch', 'onnx', 'qonnx', 'finn', 'brevitas', 'maskbnn', 'onnxruntime'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_wrap_is_twos_complement():
    from maskbnn_board.hwexec import dtype_range, wrap

    x = np.array([127, 128, -129, 255, 256])
    assert wrap(x, "INT8").tolist() == [127, -128, 127, -1, 0]
    assert wrap(x, "UINT8").tolist() == [127, 128, 127, 255, 0]
    assert dtype_range("INT13") == (-4096, 4095)


@pytest.mark.parametrize("acc_dtype", ["INT12", "INT6"])  # holds every sum / wraps them
def test_multibit_mvau_table_equals_threshold_comparison(acc_dtype):
    """A multi-bit MVAU's thresholds through the value table give what comparing each
    accumulator with every threshold gives, wrapped accumulators included."""
    from maskbnn_board.hwexec import Layer, _activate, run_mvau, wrap

    rng = np.random.default_rng(0)
    weights = rng.integers(-1, 2, (27, 16))
    thresholds = np.sort(rng.integers(-60, 60, (16, 14)), axis=1)
    attrs = {"in_dtype": "INT4", "acc_dtype": acc_dtype, "out_dtype": "INT4", "act_val": -8,
             "binary_xnor": False, "exact_f32": True}  # fmt: skip
    layer = Layer("mvau", "MVAU", attrs, {"weights": weights, "thresholds": thresholds})
    x = rng.integers(-8, 8, (5, 6, 6, 27)).astype(np.float32)
    acc = wrap(x.reshape(-1, 27).astype(np.int64) @ weights, acc_dtype)
    want = _activate(acc, Layer("ref", "MVAU", attrs, {"thresholds": thresholds}))
    np.testing.assert_array_equal(run_mvau(x, layer).reshape(-1, 16), want)


def test_every_layer_equals_finn_execution(built_025):
    """All 21 layers' outputs of our executor equal FINN's execute_onnx on real images."""
    from maskbnn.pipeline.data.datasets import load_dataset
    from maskbnn.pipeline.finn.hwgraph import read_program
    from maskbnn.pipeline.verify.stages import finn_hw_trace, worst_case_images

    hw = built_25_path(built_025)
    program = read_program(hw)
    x = np.concatenate([load_dataset("maskedface", SAMPLE_DIR, "all").x[:3],
                        worst_case_images((32, 32, 3))[0][:2]])  # fmt: skip
    ours, finn = program.trace(x), finn_hw_trace(hw, x)
    assert list(ours) == list(finn)
    for name in ours:
        assert np.array_equal(ours[name].reshape(len(x), -1), finn[name].reshape(len(x), -1)), name


def test_program_file_round_trip(built_025, tmp_path):
    from maskbnn_board.hwexec import HardwareProgram, ProgramError

    program = HardwareProgram.load(built_025["dir"] / "program.npz")
    x = np.random.default_rng(1).integers(0, 256, (7, 32, 32, 3)).astype(np.uint8)
    out = program.run(x, batch_size=3)
    assert out.shape == (7, 1) and out.dtype == np.int64
    again = HardwareProgram.load(program.save(tmp_path / "p.npz"))
    assert np.array_equal(again.run(x), out)
    with pytest.raises(ProgramError, match="does not fit"):
        program.run(np.zeros((2, 28, 28, 3), np.uint8))
    with pytest.raises(ProgramError, match="outside UINT8"):
        program.run(np.full((1, 32, 32, 3), 300))


def built_25_path(built):
    return built["dir"] / built["summary"]["hw_model"]
