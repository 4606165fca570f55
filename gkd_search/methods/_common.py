"""Loss terms shared by several methods."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def supervised_cross_entropy(logits: Tensor, y: Tensor, train_mask: Tensor) -> Tensor:
    """Mean cross-entropy over the labelled (training) nodes."""
    return F.cross_entropy(logits[train_mask], y[train_mask])


def soft_label_kl(student_logits: Tensor, teacher_logits: Tensor, tau: float = 1.0) -> Tensor:
    """``KL(softmax(t / tau) || softmax(s / tau))``, averaged over nodes (rows).

    Hinton et al. (2015), Sec. 2: the soft targets of the teacher at temperature ``tau``.
    """
    log_p_student = F.log_softmax(student_logits / tau, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits / tau, dim=-1)
    return F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
