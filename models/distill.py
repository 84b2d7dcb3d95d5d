"""Knowledge distillation from a teacher's outputs: ReActNet's distributional loss.

Liu et al., "ReActNet", ECCV 2020, Eq. 5: L = 1/n * sum_c p_teacher(c) log(p_teacher(c) / p_student(c)),
the KL divergence KL(p_teacher || p_student) of the softmax outputs, averaged over the batch. The
authors' code computes the cross-entropy -sum p_teacher log p_student instead, which differs by the
teacher's entropy: a constant for the student, so the gradients are the same; here the loss is the
KL itself (zero when the student matches the teacher).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


class DistributionLoss(nn.Module):
    """KL(softmax(teacher) || softmax(student)), mean over the batch. The teacher gets no gradient."""

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        log_p_student = F.log_softmax(student.float(), dim=1)
        log_p_teacher = F.log_softmax(teacher.detach().float(), dim=1)
        kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(1)
        return kl.mean()


class Distiller:
    """The Trainer's `distill` callable: (input batch, student output) -> weight * KL term.
    The teacher runs in eval mode without gradients; its parameters are frozen."""

    def __init__(self, teacher: nn.Module, weight: float = 1.0) -> None:
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.weight = float(weight)
        self.loss = DistributionLoss()

    def __call__(self, xb: torch.Tensor, student_out: torch.Tensor) -> torch.Tensor:
        self.teacher.eval()  # stays in eval even if someone calls .train() on a parent
        with torch.no_grad():
            teacher_out = self.teacher(xb)
        if teacher_out.shape != student_out.shape:
            raise ValueError(
                f"teacher output {tuple(teacher_out.shape)} does not match the student's "
                f"{tuple(student_out.shape)}"
            )
        return self.weight * self.loss(student_out, teacher_out)


def make_distiller(teacher: nn.Module, weight: float = 1.0) -> Callable:
    """A KD term for Trainer(distill=...): loss = task loss + weight * KL(p_teacher || p_student)."""
    return Distiller(teacher, weight)


__all__ = ["DistributionLoss", "Distiller", "make_distiller"]
