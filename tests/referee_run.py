"""Run one driver against the PYNQ double and record what the board saw (run in .venv-board).

    python referee_run.py finn|ours DEPLOY_DIR SETTINGS_JSON IMAGES_NPY BATCH OUT_NPZ

``finn``: finn-plus-driver's FINNDMAOverlay, configured by the settings FINN's make_driver wrote;
``ours``: maskbnn_board's pynq backend with the deployment's own settings. Both drive the same
bitstream (the deployment's accelerator.bit) on the same double. The record: outputs, every
register access and clock setting in order, and the packed bytes each input DMA run read.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def run_finn(bit: Path, settings: dict, x: np.ndarray, batch: int, workdir: Path) -> np.ndarray:
    from finn_plus_driver.overlays.dma import FINNDMAOverlay

    info = settings["driver_information"]
    ol = FINNDMAOverlay(str(bit), info["platform"], info["io_shape_dict"], batch_size=batch,
                        fclk_mhz=info["fclk_mhz"], runtime_weight_dir=str(workdir / "none"),
                        mlo_weight_dir=str(workdir / "none"))  # fmt: skip
    outs = []
    for start in range(0, len(x), batch):
        chunk = x[start : start + batch]
        if len(chunk) != ol.batch_size:  # FINN's driver runs whole batches only: resize
            ol.batch_size = len(chunk)
        outs.append(np.asarray(ol.execute(chunk)))
    return np.concatenate(outs)


def run_ours(dep: Path, x: np.ndarray, batch: int) -> np.ndarray:
    from maskbnn_board.backend_pynq import PynqAccelerator
    from maskbnn_board.deployment import Deployment

    acc = PynqAccelerator(Deployment(dep), batch)
    try:
        return acc.execute(x)
    finally:
        acc.close()


def main(argv: list[str]) -> None:
    which, dep, settings, images, batch, out = argv
    from pynq._board import BOARD  # the double: tests/doubles on PYTHONPATH

    dep, x, batch = Path(dep), np.load(images), int(batch)
    if which == "finn":
        y = run_finn(dep / "accelerator.bit", json.loads(Path(settings).read_text()), x, batch,
                     Path(out).parent)  # fmt: skip
    else:
        y = run_ours(dep, x, batch)
    log = [[str(a), str(b), str(c), float(d)] for a, b, c, d in BOARD.log]
    np.savez(out, outputs=np.asarray(y).astype(np.int64).reshape(len(x), -1),
             log=json.dumps(log), inputs=np.concatenate(BOARD.inputs_seen))  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
