"""``softkd``: soft-label knowledge distillation.

Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network", NIPS DL Workshop 2015,
https://arxiv.org/abs/1503.02531, Sec. 2:

    L = (1 - alpha) * CE(y, s)  +  alpha * tau^2 * KL( softmax(t / tau) || softmax(s / tau) )

The cross-entropy uses the labelled nodes; the KL term uses every node, because the teacher's
soft labels exist for all of them (transductive setting). The ``tau^2`` factor keeps the soft
term's gradient scale independent of ``tau`` (Sec. 2, last paragraph).
"""

from __future__ import annotations

from typing import Any, Mapping

from torch import Tensor

from ..hookspecs import hookimpl
from ..params import FloatRange
from ..types import DistillationBatch, DistillationContext, DistillationLoss, DistillationMethod, ModelOutput
from ._common import soft_label_kl, supervised_cross_entropy


class SoftKDLoss(DistillationLoss):
    def __init__(self, tau: float, alpha: float) -> None:
        super().__init__()
        self.tau, self.alpha = float(tau), float(alpha)

    def forward(self, student: ModelOutput, batch: DistillationBatch) -> Tensor:
        ce = supervised_cross_entropy(student.logits, batch.y, batch.train_mask)
        kd = soft_label_kl(student.logits, batch.teacher_logits, self.tau) * self.tau**2
        return (1.0 - self.alpha) * ce + self.alpha * kd


class SoftKD(DistillationMethod):
    name = "softkd"
    paper = "Hinton et al., Distilling the Knowledge in a Neural Network, 2015 (arXiv:1503.02531)"
    description = "soft-label KD: temperature tau, KL scaled by tau^2, weight alpha"
    requires = frozenset({"logits"})
    hyperparameters = {"tau": FloatRange(1.0, 8.0), "alpha": FloatRange(0.1, 0.95)}
    combines_with_softkd = False

    def build_loss(self, params: Mapping[str, Any], context: DistillationContext) -> DistillationLoss:
        return SoftKDLoss(tau=params["tau"], alpha=params["alpha"])


@hookimpl
def gkd_methods() -> list[DistillationMethod]:
    return [SoftKD()]
