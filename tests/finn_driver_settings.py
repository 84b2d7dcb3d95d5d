"""The settings.json FINN+'s own make_driver step writes for a hardware graph, made without Vivado.

make_driver (MakePYNQDriver) reads the top-level model ZynqBuild leaves behind: IODMAs inserted,
width converters, layers specialised, one StreamingDataflowPartition per kernel. ZynqBuild's
preparation is plain graph rewriting; only what follows it (HLS synthesis, the block design)
needs Vivado. So this runs ZynqBuild's own preparation transformations, in its order, on the
folded hardware graph, names the DMA kernels as ZynqBuild's block design step (MakeZYNQProject)
does, and then runs FINN's MakePYNQDriver as step_make_driver calls it.
"""

from __future__ import annotations

import json
from pathlib import Path


def finn_make_driver_settings(hw_model: Path, board: str, clock_ns: float, workdir: Path) -> dict:
    from maskbnn.pipeline.finn import env as finn_env

    finn_env.configure()
    from finn.transformation.fpgadataflow.create_dataflow_partition import (
        CreateDataflowPartition,
    )
    from finn.transformation.fpgadataflow.floorplan import Floorplan
    from finn.transformation.fpgadataflow.insert_dwc import InsertDWC
    from finn.transformation.fpgadataflow.insert_iodma import InsertIODMA
    from finn.transformation.fpgadataflow.make_driver import MakePYNQDriver
    from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers
    from finn.util.basic import pynq_native_port_width, pynq_part_map
    from qonnx.transformation.general import GiveReadableTensorNames, GiveUniqueNodeNames
    from qonnx.transformation.infer_data_layouts import InferDataLayouts

    from maskbnn.pipeline.finn.hwgraph import load_dataflow_model

    workdir.mkdir(parents=True, exist_ok=True)
    model = load_dataflow_model(hw_model).transform(InferDataLayouts())
    for trn in (InsertIODMA(pynq_native_port_width[board]), InsertDWC(),
                SpecializeLayers(pynq_part_map[board]), Floorplan(),
                CreateDataflowPartition(partition_model_dir=str(workdir / "partitions"))):  # fmt: skip
        model = model.transform(trn)
        model = model.transform(GiveUniqueNodeNames()).transform(GiveReadableTensorNames())
    name_dma_instances(model)
    model = model.transform(MakePYNQDriver("zynq-iodma", "FINNDMAOverlay", clk_period_ns=clock_ns))
    return json.loads(
        (Path(model.get_metadata_prop("pynq_driver_dir")) / "settings.json").read_text()
    )


def name_dma_instances(model) -> None:
    """MakeZYNQProject's rule (it runs inside the Vivado step): the partition fed by the graph
    input is idma<i>, the one feeding the graph output odma<i>, any other keeps its node name."""
    from qonnx.custom_op.registry import getCustomOp

    counts = {"idma": 0, "odma": 0}
    for node in model.get_nodes_by_op_type("StreamingDataflowPartition"):
        producer = model.find_producer(node.input[0]) if node.input else None
        kind = (
            "idma"
            if producer is None
            else "odma"
            if not model.find_consumers(node.output[0])
            else None
        )
        name = node.name if kind is None else f"{kind}{counts[kind]}"
        if kind is not None:
            counts[kind] += 1
        getCustomOp(node).set_nodeattr("instance_name", name)
