"""``at``: attention transfer, matching where student and teacher put their activation mass.

Zagoruyko & Komodakis, "Paying More Attention to Attention: Improving the Performance of
Convolutional Neural Networks via Attention Transfer", ICLR 2017,
https://arxiv.org/abs/1612.03928.

Attention map (Sec. 3.1, ``F_sum^2``): for a layer output ``A`` with channels ``A_c``,
``F(A) = sum_c |A_c|^2``, one value per spatial position. On a graph the positions are the
nodes, so for a layer output ``h`` ``[N, d]`` the map is the vector ``Q[v] = sum_c h[v, c]^2``
of length ``N``; student and teacher widths may differ (no projection is needed).

Eq. 2 (with ``p = 2``):

    L = CE(student, y)  +  beta/2 * sum_{j in I} || Q_S^j / ||Q_S^j||_2  -  Q_T^j / ||Q_T^j||_2 ||_p

over the pairs ``I`` of student and teacher layers. Pairs: every student non-logit layer with
the teacher layer at the same relative depth (:func:`~gkd_search.methods._common.layer_pairs`,
as FitNets' ``hints=all``); a 1-layer student (or teacher) pairs its logits with the other
side's logits.

Deviation (scale of the distance): Eq. 2 writes the plain 2-norm of the difference, but the
paper's beta is defined against a per-element mean: "we set it to 10^3 divided by number of
elements in attention map and batch size for each layer" (Sec. 4), and the authors' released
code takes the mean over positions of the squared difference. We follow that, which is what
beta = 1000 was chosen for:

    L = CE  +  beta/2 * sum_{j in I} 1/N * sum_v ( q_S^j[v] - q_T^j[v] )^2,    q = Q / ||Q||_2

(the graph is one "batch" element). Every node enters; the cost is ``O(N d)`` per pair.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from ..hookspecs import hookimpl
from ..params import FloatRange, Param
from ..types import (
    DistillationBatch,
    DistillationContext,
    DistillationLoss,
    DistillationMethod,
    ModelOutput,
)
from ._common import supervised_cross_entropy
from .fitnets import check_layers, hint_pairs


def attention_map(h: Tensor) -> Tensor:
    """``F_sum^2``: per-node sum of squared channels, L2-normalised over the nodes, ``[N]``."""
    return F.normalize(h.pow(2).sum(dim=-1), p=2.0, dim=0)


class AttentionTransferLoss(DistillationLoss):
    """``CE + beta/2 * sum over pairs of mean_v (q_S[v] - q_T[v])^2``."""

    def __init__(self, beta: float, pairs: list[tuple[int, int]], num_student: int, num_teacher: int) -> None:
        super().__init__()
        self.beta = float(beta)
        self.pairs = list(pairs)
        self.num_student, self.num_teacher = num_student, num_teacher

    def transfer_loss(self, student: ModelOutput, batch: DistillationBatch) -> Tensor:
        """``sum_j mean_v (q_S^j[v] - q_T^j[v])^2`` over the layer pairs."""
        check_layers(student, batch, self.num_student, self.num_teacher)
        terms = [
            (attention_map(student.hidden[j]) - attention_map(batch.teacher_hidden[i].detach())).pow(2).mean()
            for j, i in self.pairs
        ]
        return torch.stack(terms).sum()

    def forward(self, student: ModelOutput, batch: DistillationBatch) -> Tensor:
        ce = supervised_cross_entropy(student.logits, batch.y, batch.train_mask)
        return ce + 0.5 * self.beta * self.transfer_loss(student, batch)


class AttentionTransfer(DistillationMethod):
    name = "at"
    paper = ("Zagoruyko & Komodakis, Paying More Attention to Attention: Improving the Performance of "
             "Convolutional Neural Networks via Attention Transfer, ICLR 2017 (arXiv:1612.03928)")
    description = "attention transfer (Eq. 2): match normalised per-node sum-of-squares maps, weight beta"
    requires = frozenset({"logits", "hidden"})
    hyperparameters: ClassVar[Mapping[str, Param]] = {"beta": FloatRange(1.0, 1000.0, log=True)}

    def build_loss(self, params: Mapping[str, Any], context: DistillationContext) -> DistillationLoss:
        num_student, num_teacher = len(context.student_hidden_dims), len(context.teacher_hidden_dims)
        pairs = hint_pairs(num_student, num_teacher, "all")
        return AttentionTransferLoss(beta=params["beta"], pairs=pairs, num_student=num_student,
                                     num_teacher=num_teacher)


@hookimpl
def gkd_methods() -> list[DistillationMethod]:
    return [AttentionTransfer()]
