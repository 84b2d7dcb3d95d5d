"""Checkpoint files: upstream bnn_pynq's keys (state_dict, optim_dict, epoch, best_val_acc) plus the
network name, written atomically; loading checks the network so a wrong file fails with a clear error.

Loading never runs code from the file: torch's weights-only unpickler rebuilds tensors and plain
containers and refuses any other global before calling it. Our checkpoints hold nothing else (model,
optimizer, scheduler and averaged-model state dicts, RNG byte tensors, numbers, strings, lists,
dicts, collections.Counter for MultiStepLR's milestones, all in torch's own allow-list), so the
project's allow-list of extra globals is empty; a class that a checkpoint must carry goes there.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from maskbnn.errors import UserError

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
# Globals a checkpoint may name beyond torch's weights-only set (see the module docstring).
CHECKPOINT_GLOBALS: tuple = ()


def pretrained_path(network: str) -> Path:
    """The shipped weights of a network, or a UserError naming the networks that have some."""
    path = PRETRAINED_DIR / f"{network}.tar"
    if not path.is_file():
        have = sorted(p.stem for p in PRETRAINED_DIR.glob("*.tar"))
        raise UserError(
            f"no pretrained weights for {network!r}; shipped: {', '.join(have) or 'none'} "
            f"(train with `make train NET={network}`)"
        )
    return path


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """torch.save to a temporary file in the same folder, fsync, then rename over `path`: a run
    killed at any moment leaves either the previous checkpoint or the new one, never half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        torch.save(payload, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint dict (CPU); corrupt or foreign files raise a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        with torch.serialization.safe_globals(list(CHECKPOINT_GLOBALS)):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        refused = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
        if refused:
            raise UserError(
                f"checkpoint {path} refused: it names {refused.group(1)}, which is neither a "
                "tensor nor plain data; loading it could run code, so nothing of it was run"
            ) from None
        raise UserError(
            f"checkpoint {path} is corrupt or not a torch file ({_short(err)})"
        ) from None
    except Exception as err:
        raise UserError(f"checkpoint {path} is corrupt or not a torch file ({err})") from None
    if not isinstance(ckpt, dict):
        raise UserError(f"checkpoint {path} holds a {type(ckpt).__name__}, not a checkpoint dict")
    if "state_dict" not in ckpt:  # upstream's released .pth files are bare state dicts
        ckpt = {"state_dict": ckpt}
    return ckpt


def _short(err: Exception) -> str:
    """The reason inside torch's weights-only message (which otherwise advises unsafe loading)."""
    m = re.search(r"WeightsUnpickler error:\s*(.+)", str(err))
    return m.group(1).strip() if m else str(err).splitlines()[0]


def load_weights(model: nn.Module, path: Path, network: str, strict: bool = True) -> dict[str, Any]:
    """Load a checkpoint's weights into `model`; a checkpoint of another network or width is refused
    with both names. Returns the checkpoint dict (epoch, best_val_acc, ...)."""
    ckpt = read_checkpoint(path)
    saved = ckpt.get("network")
    if saved is not None and saved != network:
        raise UserError(f"checkpoint {path} was trained for {saved!r}, not for {network!r}")
    own = model.state_dict()
    theirs = ckpt["state_dict"]
    bad = [k for k, v in theirs.items() if k in own and tuple(own[k].shape) != tuple(v.shape)]
    if bad:
        k = bad[0]
        raise UserError(
            f"checkpoint {path} does not fit {network!r}: {k} has shape {tuple(theirs[k].shape)}, "
            f"the network expects {tuple(own[k].shape)} (another width or network?)"
        )
    try:
        model.load_state_dict(theirs, strict=strict)
    except RuntimeError as err:
        raise UserError(f"checkpoint {path} does not fit {network!r}: {err}") from None
    return ckpt
