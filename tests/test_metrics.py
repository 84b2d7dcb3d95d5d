"""Metrics against brute-force counts: top-1, top-k below the class count, per class, confusion."""

from __future__ import annotations

import pytest
import torch

from maskbnn.pipeline.train.metrics import (
    Accumulator,
    confusion_matrix,
    default_topk,
    summarize,
    topk_correct,
)


def test_default_topk_is_below_the_class_count():
    assert default_topk(4) == 2  # upstream's top-5 would crash with 4 classes
    assert default_topk(10) == 5
    assert all(default_topk(n) < n for n in range(2, 50))


def test_topk_and_confusion_match_brute_force():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(257, 4, generator=g)
    target = torch.randint(0, 4, (257,), generator=g)
    for k in (1, 2, 3, 4):
        brute = sum(
            int(t in sorted(range(4), key=lambda c, r=r: -r[c])[:k])
            for r, t in zip(logits.tolist(), target.tolist(), strict=True)
        )
        assert topk_correct(logits, target, k) == brute
    cm = confusion_matrix(logits.argmax(1), target, 4)
    for i in range(4):
        for j in range(4):
            assert cm[i, j] == int(((target == i) & (logits.argmax(1) == j)).sum())
    assert int(cm.sum()) == 257


def test_accumulator_over_batches_equals_one_pass():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(100, 4, generator=g)
    target = torch.randint(0, 4, (100,), generator=g)
    acc = Accumulator(4)
    for s in range(0, 100, 30):
        acc.update(logits[s : s + 30], target[s : s + 30])
    r = acc.result("abcd")
    assert r["n"] == 100
    assert r["top1"] == pytest.approx(100.0 * float((logits.argmax(1) == target).float().mean()))
    assert r["top2"] == pytest.approx(topk_correct(logits, target, 2))
    assert sum(sum(row) for row in r["confusion"]) == 100


def test_per_class_accuracy_and_empty_class():
    cm = torch.tensor([[3, 1, 0], [0, 0, 0], [1, 0, 4]])
    s = summarize(cm, ("a", "b", "c"))
    assert s["per_class"] == {"a": 75.0, "b": None, "c": 80.0}
    assert s["top1"] == pytest.approx(700 / 9)
    assert s["n"] == 9


def test_topk_equal_to_class_count_is_refused():
    with pytest.raises(ValueError):
        Accumulator(4, k=4)
