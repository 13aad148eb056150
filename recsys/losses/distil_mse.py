"""Knowledge distillation by logit regression: the student's score regresses the teacher's logit.

Batch columns: ``left``, ``right``, ``label`` and ``teacher_score`` (the teacher cross-encoder's logit
of the pair, written by the train job when ``distil.teacher`` is set); labels are not used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from recsys.losses.registry import Distillation, LossSpec, register


def distil_mse_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """``student`` [B] logits, ``teacher`` [B] logits -> mean squared difference (scalar)."""
    return F.mse_loss(student, teacher.to(student.dtype))


SPEC = register(
    LossSpec(
        name="distil_mse",
        kinds=("cross_encoder",),
        inputs=Distillation,
        compute=lambda x, p: distil_mse_loss(x.student, x.teacher),
        threshold=0.0,  # the student learns the teacher's logit: the (bce-trained) teacher's threshold
        summary="distillation: MSE between the student's and the teacher's logits",
    )
)
