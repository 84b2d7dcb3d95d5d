"""Classification metrics from logits: top-1, top-k (k below the class count), per-class accuracy and
the confusion matrix. Upstream bnn_pynq always asks for top-5, which crashes with 4 classes."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def default_topk(num_classes: int) -> int:
    """Upstream's top-5 where there are enough classes, else half the classes (top-2 of 4)."""
    if num_classes < 2:
        raise ValueError("top-k needs at least 2 classes")
    return min(5, max(1, num_classes // 2))


def topk_correct(logits: torch.Tensor, target: torch.Tensor, k: int) -> int:
    """How many rows have their target among the k largest logits."""
    if not 1 <= k <= logits.shape[1]:
        raise ValueError(f"k={k} must be in [1, {logits.shape[1]}]")
    top = logits.topk(k, dim=1).indices
    return int((top == target[:, None]).any(dim=1).sum())


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(num_classes, num_classes) int64 counts; row = true class, column = predicted class."""
    flat = target.long() * num_classes + pred.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


class Accumulator:
    """Collects batches of (logits, target) and reports the metrics of everything seen."""

    def __init__(self, num_classes: int, k: int | None = None) -> None:
        self.num_classes = num_classes
        self.k = default_topk(num_classes) if k is None else k
        if not 1 <= self.k < num_classes:
            raise ValueError(f"top-{self.k} must be below the {num_classes} classes")
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
        self.topk_hits = 0
        self.loss_sum = 0.0

    def update(self, logits: torch.Tensor, target: torch.Tensor, loss: float = 0.0) -> None:
        logits = logits.detach()
        self.confusion += confusion_matrix(logits.argmax(1), target, self.num_classes)
        self.topk_hits += topk_correct(logits, target, self.k)
        self.loss_sum += float(loss) * len(target)

    @property
    def n(self) -> int:
        return int(self.confusion.sum())

    def result(self, classes: Sequence[str]) -> dict:
        """{"top1", "topk", "k", "n", "loss", "per_class", "confusion"}; accuracies in percent."""
        return summarize(self.confusion, classes) | {
            f"top{self.k}": 100.0 * self.topk_hits / max(self.n, 1),
            "k": self.k,
            "loss": self.loss_sum / max(self.n, 1),
        }


def summarize(confusion: torch.Tensor, classes: Sequence[str]) -> dict:
    """Top-1, count, per-class accuracy (percent; None for a class with no images), confusion."""
    if len(classes) != confusion.shape[0]:
        raise ValueError(f"{len(classes)} class names for a {confusion.shape[0]}-class matrix")
    n = int(confusion.sum())
    per_row = confusion.sum(1)
    per_class = {
        name: (100.0 * int(confusion[i, i]) / int(per_row[i]) if per_row[i] else None)
        for i, name in enumerate(classes)
    }
    return {
        "top1": 100.0 * int(confusion.diagonal().sum()) / max(n, 1),
        "n": n,
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }
