"""``none``: the student trained on labels alone, the baseline every method is compared with."""

from __future__ import annotations

from typing import Any, Mapping

from torch import Tensor

from ..hookspecs import hookimpl
from ..types import DistillationBatch, DistillationContext, DistillationLoss, DistillationMethod, ModelOutput
from ._common import supervised_cross_entropy


class CrossEntropyOnly(DistillationLoss):
    """``L = CE(student, y)`` over the training nodes."""

    def forward(self, student: ModelOutput, batch: DistillationBatch) -> Tensor:
        return supervised_cross_entropy(student.logits, batch.y, batch.train_mask)


class NoDistillation(DistillationMethod):
    name = "none"
    description = "no teacher: cross-entropy on the labelled nodes (baseline)"
    requires = frozenset()
    combines_with_softkd = False  # none + softkd is softkd

    def build_loss(self, params: Mapping[str, Any], context: DistillationContext) -> DistillationLoss:
        return CrossEntropyOnly()


@hookimpl
def gkd_methods() -> list[DistillationMethod]:
    return [NoDistillation()]
