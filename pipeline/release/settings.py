"""The board driver's settings.json (maskbnn_board reads it): from a hardware graph, or from FINN+'s
make_driver output when a bitfile exists. `maskbnn deploy` and `maskbnn bitstream` both write it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from maskbnn.errors import UserError
from maskbnn.paths import BUILD_DIR
from maskbnn.pipeline.data.maskedface import CLASSES


def _finn_environment() -> None:
    """FINN+ refuses to import without FINN_BUILD_DIR; the project's finn_env owns that setup."""
    try:
        from maskbnn.pipeline.finn import env as finn_env  # noqa: F401
    except ImportError:  # finn_env not written yet: the one variable packing needs
        import os

        os.environ.setdefault("FINN_BUILD_DIR", str(BUILD_DIR / "finn"))
        (BUILD_DIR / "finn").mkdir(parents=True, exist_ok=True)


def settings_from_hw_model(model_path: Path, clock_mhz: float, dma: str = "iodma") -> dict:
    """FINN+-style driver settings from a folded hardware (dataflow) graph.

    FINN's own ``get_driver_shapes`` needs IODMA partitions, which only the Vivado flow inserts;
    the folded shapes it reports are the first and last hardware node's, so we read those.
    """
    _finn_environment()
    from finn.util.data_packing import finnpy_to_packed_bytearray
    from qonnx.custom_op.registry import getCustomOp
    from qonnx.util.basic import gen_finn_dt_tensor

    from maskbnn.pipeline.finn.hwgraph import load_dataflow_model

    model = load_dataflow_model(Path(model_path))
    nodes = list(model.graph.node)
    if not nodes or any("fpgadataflow" not in (n.domain or "") for n in (nodes[0], nodes[-1])):
        raise UserError(
            f"{model_path}: first and last nodes must be FINN hardware layers (got "
            f"{nodes[0].op_type if nodes else 'none'} ... {nodes[-1].op_type if nodes else 'none'}); "
            "pass the folded dataflow-partition model of `make build`"
        )
    first, last = getCustomOp(nodes[0]), getCustomOp(nodes[-1])
    io: dict = {}
    for prefix, tensor, folded in (
        ("i", model.graph.input[0].name, first.get_folded_input_shape()),
        ("o", model.graph.output[0].name, last.get_folded_output_shape()),
    ):
        dt = model.get_tensor_datatype(tensor)
        folded = tuple(int(v) for v in folded)
        packed = finnpy_to_packed_bytearray(gen_finn_dt_tensor(dt, folded), dt).shape
        io[f"{prefix}dt"] = [f"DataType['{dt.name}']"]
        io[f"{prefix}shape_normal"] = [list(model.get_tensor_shape(tensor))]
        io[f"{prefix}shape_folded"] = [list(folded)]
        io[f"{prefix}shape_packed"] = [list(int(v) for v in packed)]
    io.update({"idma_names": ["idma0"], "odma_names": ["odma0"], "num_inputs": 1, "num_outputs": 1})
    output_kind = "label" if nodes[-1].op_type.startswith("LabelSelect") else "scores"
    return {
        "driver_information": {
            "driver_type": "FINNDMAOverlay",
            "platform": "zynq-iodma",
            "fclk_mhz": clock_mhz,
            "io_shape_dict": io,
        },
        "maskbnn": {
            "output": output_kind,
            "classes": list(CLASSES),
            "image_size": int(io["ishape_normal"][0][1]),
            "dma": dma,
            "source_model": model_path.name,
        },
    }


def settings_from_finn_driver(path: Path, clock_mhz: float) -> dict:
    """FINN+'s make_driver settings.json (from a real bitstream build), plus our section."""
    data = json.loads(Path(path).read_text())
    info = data.get("driver_information", {})
    io = info.get("io_shape_dict", {})
    n_out = int(np.prod(io.get("oshape_normal", [[1, 1]])[0][1:]))
    data["maskbnn"] = {
        "output": "label" if n_out == 1 else "scores",
        "classes": list(CLASSES),
        "image_size": int(io.get("ishape_normal", [[1, 32]])[0][1]),
        "dma": "iodma",
    }
    info.setdefault("fclk_mhz", clock_mhz)
    return data
