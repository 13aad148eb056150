"""Margin-MSE distillation (Hofstätter et al. 2020, "Improving Efficient Neural Ranking Models with
Cross-Architecture Knowledge Distillation"): the student matches the teacher's score *margin* between
a positive and a negative, not the scores themselves.

Batch columns: ``left``, ``right``, ``label`` and ``teacher_score``. The (positive, negative) pairs are
every positive (label > 0) against every negative (label <= 0) of the batch, as the cross-encoder's
pairwise losses pair them; a batch without both contributes zero.
"""

from __future__ import annotations

import torch

from recsys.losses.registry import Distillation, LossSpec, register


def margin_mse_loss(
    student_pos: torch.Tensor, student_neg: torch.Tensor, teacher_pos: torch.Tensor, teacher_neg: torch.Tensor
) -> torch.Tensor:
    """Scores of matching shapes ([P] or [P, N]) -> mean of ((s+ - s-) - (t+ - t-))^2 (scalar)."""
    student_margin = student_pos - student_neg
    teacher_margin = (teacher_pos - teacher_neg).to(student_margin.dtype)
    return ((student_margin - teacher_margin) ** 2).mean()


def margin_mse_in_batch(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``student`` / ``teacher`` / ``labels`` [B] -> margin-MSE over every (positive, negative) pair of
    the batch; 0 (with a graph) when the batch lacks positives or negatives."""
    pos, neg = labels > 0, labels <= 0
    if not bool(pos.any()) or not bool(neg.any()):
        return student.sum() * 0.0
    s_pos, s_neg = student[pos].unsqueeze(1), student[neg].unsqueeze(0)  # [P, 1], [1, N]
    t_pos, t_neg = teacher[pos].unsqueeze(1), teacher[neg].unsqueeze(0)
    return margin_mse_loss(s_pos, s_neg, t_pos, t_neg)  # broadcast to [P, N]


SPEC = register(
    LossSpec(
        name="margin_mse",
        kinds=("cross_encoder",),
        inputs=Distillation,
        compute=lambda x, p: margin_mse_in_batch(x.student, x.teacher, x.labels),
        threshold=0.0,  # margins fix no offset; the student starts from the teacher's head (logit 0)
        summary="distillation: MSE between the student's and the teacher's (pos, neg) score margins",
    )
)
