"""A trial's training objective: the method's loss, optionally plus Hinton's soft-label term.

Every method with ``combines_with_softkd`` gains two hyperparameters, ``softkd_weight`` (``w``)
and ``softkd_tau`` (``tau``), and its objective becomes

    L = L_method + w * tau^2 * KL( softmax(t / tau) || softmax(s / tau) )

which is how Joshi et al. (2022, Table 3, the "KD + LSP/GSP/G-CRD" rows) combine a
representation-distillation loss with soft-label KD. ``w = 0`` is the method alone.
"""

from __future__ import annotations

from typing import Any, Mapping

from torch import Tensor

from ..methods._common import soft_label_kl
from ..params import FloatRange, Param
from ..types import DistillationBatch, DistillationContext, DistillationLoss, DistillationMethod, ModelOutput

#: The parameters every combinable method gains, with their default search ranges.
SOFTKD_COMBINATION: dict[str, Param] = {
    "softkd_weight": FloatRange(0.0, 1.0),
    "softkd_tau": FloatRange(1.0, 8.0),
}


def method_hyperparameters(method: DistillationMethod) -> dict[str, Param]:
    """The method's own hyperparameters plus the soft-label combination where it applies."""
    params = dict(method.hyperparameters)
    if method.combines_with_softkd:
        for name, param in SOFTKD_COMBINATION.items():
            params.setdefault(name, param)
    return params


def split_params(method: DistillationMethod, params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(the method's own parameters, the softkd combination's)``."""
    own = {k: v for k, v in params.items() if k in method.hyperparameters or k not in SOFTKD_COMBINATION}
    combo = {k: v for k, v in params.items() if k not in own}
    return own, combo


class WithSoftKD(DistillationLoss):
    """``inner + weight * tau^2 * KL(teacher || student)`` on the logits (Hinton et al. 2015)."""

    def __init__(self, inner: DistillationLoss, weight: float, tau: float) -> None:
        super().__init__()
        self.inner, self.weight, self.tau = inner, float(weight), float(tau)

    def forward(self, student: ModelOutput, batch: DistillationBatch) -> Tensor:
        soft = soft_label_kl(student.logits, batch.teacher_logits, self.tau) * self.tau**2
        return self.inner(student, batch) + self.weight * soft

    def diagnostics(self, student: ModelOutput, batch: DistillationBatch) -> dict[str, Tensor]:
        return self.inner.diagnostics(student, batch)


def build_objective(method: DistillationMethod, params: Mapping[str, Any], context: DistillationContext) -> DistillationLoss:
    """The loss a trial minimises: ``method.build_loss`` on its own parameters, wrapped in
    :class:`WithSoftKD` when ``softkd_weight`` is given and positive."""
    own, combo = split_params(method, params)
    loss = method.build_loss(own, context)
    weight = float(combo.get("softkd_weight", 0.0))
    if method.combines_with_softkd and weight > 0.0:
        loss = WithSoftKD(loss, weight, float(combo.get("softkd_tau", 1.0)))
    return loss
