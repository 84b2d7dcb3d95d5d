"""Run figures: the training curve and the confusion matrix, as PNG files (matplotlib, Agg backend,
so they render on a headless machine)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen before pyplot loads)


def plot_training_curve(history: Sequence[dict], path: Path, title: str = "") -> Path:
    """Loss (left) and top-1 accuracy (right) per epoch, train and validation."""
    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [r["train_loss"] for r in history], label="train")
    if any("val_loss" in r for r in history):
        ax_loss.plot(epochs, [r.get("val_loss") for r in history], label="validation")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.plot(epochs, [r["train_top1"] for r in history], label="train")
    if any("val_top1" in r for r in history):
        ax_acc.plot(epochs, [r.get("val_top1") for r in history], label="validation")
    ax_acc.set(xlabel="epoch", ylabel="top-1 (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_confusion(
    confusion: Sequence[Sequence[int]], classes: Sequence[str], path: Path, title: str = ""
) -> Path:
    """Counts with row-normalised colour (rows: true class, columns: predicted class)."""
    n = len(classes)
    rows = [max(sum(r), 1) for r in confusion]
    norm = [[c / rows[i] for c in r] for i, r in enumerate(confusion)]
    size = max(4.0, 0.6 * n + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    for i in range(n):
        for j in range(n):
            colour = "white" if norm[i][j] > 0.5 else "black"
            ax.text(j, i, str(confusion[i][j]), ha="center", va="center", color=colour, fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
