"""Batched training-time augmentation on uint8 tensors (no per-image PIL work).

Same transforms as upstream bnn_pynq's CIFAR pipeline (RandomCrop(32, padding=4) and
RandomHorizontalFlip), done for a whole batch with one gather instead of N PIL calls.
"""

from __future__ import annotations

import torch


def random_crop_flip(
    x: torch.Tensor, padding: int = 4, flip: bool = True, generator: torch.Generator | None = None
) -> torch.Tensor:
    """x: (N, C, H, W) any dtype. Zero-padded random crop back to H x W, then random h-flip."""
    n, c, h, w = x.shape
    if padding:
        xp = torch.nn.functional.pad(x, (padding, padding, padding, padding))
        oy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
        ox = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
        rows = (oy[:, None] + torch.arange(h)[None, :])[:, None, :, None]  # N,1,H,1
        cols = (ox[:, None] + torch.arange(w)[None, :])[:, None, None, :]  # N,1,1,W
        if flip:
            mirror = torch.rand(n, generator=generator) < 0.5
            cols = torch.where(mirror[:, None, None, None], cols.flip(-1), cols)
        bidx = torch.arange(n)[:, None, None, None]
        cidx = torch.arange(c)[None, :, None, None]
        return xp[bidx, cidx, rows, cols]
    if flip:
        mirror = torch.rand(n, generator=generator) < 0.5
        return torch.where(mirror[:, None, None, None], x.flip(-1), x)
    return x
