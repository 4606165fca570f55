"""``glnn``: Graph-Less Neural Networks, distilling a GNN into an MLP.

Zhang, Liu, Sun & Shah, "Graph-less Neural Networks: Teaching Old MLPs New Tricks via
Distillation", ICLR 2022, https://arxiv.org/abs/2110.08727, Eq. 1:

    L = lambda * sum_{v in V_L} L_label(y_hat_v, y_v)  +  (1 - lambda) * sum_{v in V} L_teacher(y_hat_v, z_v)

with ``L_label`` the cross-entropy, ``L_teacher`` the KL divergence to the teacher's soft labels
``z_v = softmax(teacher logits)``; both sums are taken as means here. The student is an MLP
(graph-free at inference), so GLNN accepts only graph-free students.
"""

from __future__ import annotations

from typing import Any, Mapping

from torch import Tensor

from ..hookspecs import hookimpl
from ..params import FloatRange
from ..types import DistillationBatch, DistillationContext, DistillationLoss, DistillationMethod, ModelOutput
from ._common import soft_label_kl, supervised_cross_entropy


class GLNNLoss(DistillationLoss):
    def __init__(self, lam: float) -> None:
        super().__init__()
        self.lam = float(lam)

    def forward(self, student: ModelOutput, batch: DistillationBatch) -> Tensor:
        label = supervised_cross_entropy(student.logits, batch.y, batch.train_mask)
        teacher = soft_label_kl(student.logits, batch.teacher_logits, tau=1.0)
        return self.lam * label + (1.0 - self.lam) * teacher


class GLNN(DistillationMethod):
    name = "glnn"
    paper = "Zhang et al., Graph-less Neural Networks, ICLR 2022 (arXiv:2110.08727)"
    description = "GNN-to-MLP distillation on the teacher's soft labels, weight lambda"
    requires = frozenset({"logits"})
    student_kinds = frozenset({"graph_free"})
    hyperparameters = {"lambda": FloatRange(0.0, 1.0)}
    combines_with_softkd = False  # already a soft-label loss

    def build_loss(self, params: Mapping[str, Any], context: DistillationContext) -> DistillationLoss:
        return GLNNLoss(lam=params["lambda"])


@hookimpl
def gkd_methods() -> list[DistillationMethod]:
    return [GLNN()]
