"""Loss terms shared by several methods."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor


def supervised_cross_entropy(logits: Tensor, y: Tensor, train_mask: Tensor) -> Tensor:
    """Mean cross-entropy over the labelled (training) nodes; 0 (with a zero gradient) when the
    rows hold none, as a mini-batch of a sparsely labelled graph often does."""
    if not bool(train_mask.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[train_mask], y[train_mask])


def soft_label_kl(student_logits: Tensor, teacher_logits: Tensor, tau: float = 1.0) -> Tensor:
    """``KL(softmax(t / tau) || softmax(s / tau))``, averaged over nodes (rows).

    Hinton et al. (2015), Sec. 2: the soft targets of the teacher at temperature ``tau``.
    """
    log_p_student = F.log_softmax(student_logits / tau, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits / tau, dim=-1)
    return F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)


def layer_pairs(num_student: int, num_teacher: int) -> list[tuple[int, int]]:
    """Pair every student layer ``j`` with the teacher layer at the same relative depth.

    Returns ``[(j, i), ...]`` with ``i = ceil((j + 1) * num_teacher / num_student) - 1``: the
    last student layer meets the last teacher layer, a 2-layer student facing a 64-layer
    teacher reads teacher layers 31 and 63. This is the fixed, hand-chosen pairing of FitNets
    and attention transfer that ABKD's learned attention replaces.
    """
    if num_student < 1 or num_teacher < 1:
        raise ValueError(f"need at least one layer on each side, got {num_student} and {num_teacher}")
    return [(j, -(-(j + 1) * num_teacher // num_student) - 1) for j in range(num_student)]


def representation(hidden: list[Tensor]) -> Tensor:
    """The last representation before the classifier: ``hidden[-2]``, or the logits of a
    1-layer model (which has no other)."""
    return hidden[-2] if len(hidden) > 1 else hidden[-1]


def sample_nodes(num_nodes: int, count: int, generator: Optional[torch.Generator] = None,
                 device: Optional[torch.device] = None) -> Optional[Tensor]:
    """``count`` distinct node indices drawn uniformly, or ``None`` (use all nodes) when
    ``count`` is 0 or not smaller than ``num_nodes``."""
    if count <= 0 or count >= num_nodes:
        return None
    return torch.randperm(num_nodes, generator=generator)[:count].to(device or "cpu")
