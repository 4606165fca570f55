"""``lsp``: distillation with the Local Structure Preserving loss.

Yang, Qiu, Song, Tao & Wang, "Distilling Knowledge from Graph Convolutional Networks",
CVPR 2020, https://arxiv.org/abs/2003.10477, Sec. 3 (the training objective: the task loss
plus the weighted LSP term):

    L = CE(y, s)  +  beta * L_LSP(z^S, z^T, E)

with ``L_LSP`` the structural loss ``lsp`` (Eqs. 2-4, :mod:`gkd_search.losses.lsp`), ``z^S`` the
student's last representation before its classifier and ``z^T`` the teacher's
(:func:`._common.representation`), and ``E`` the training graph's edges. The loss reads the
edges, not the student, so graph-free students (MLP) can be trained with it too. ``beta``
is searched on a log range around 100, the weight of the LSP runs of Joshi et al. (TNNLS
2022, arXiv:2111.04964); the loss's own hyperparameters (``kernel``, ``sigma``) are searched
under the same names. Soft-label KD can be added by the objective's ``softkd_weight`` (the
"KD + LSP" rows of Joshi et al.).

This module also holds the shared machinery of the ``lsp``, ``gsp`` and ``gcrd`` methods:
:class:`StructuralDistillationLoss` and :class:`StructuralMethod`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor

from ..hookspecs import hookimpl
from ..losses.lsp import LSP
from ..params import FloatRange, Param
from ..types import (
    DistillationBatch,
    DistillationContext,
    DistillationLoss,
    DistillationMethod,
    ModelOutput,
    StructuralLoss,
    StructuralLossModule,
)
from ._common import representation, supervised_cross_entropy


def representation_width(hidden_dims: list[int]) -> int:
    """The width of :func:`representation` given a model's per-layer widths."""
    return hidden_dims[-2] if len(hidden_dims) > 1 else hidden_dims[-1]


class StructuralDistillationLoss(DistillationLoss):
    """``L = CE + beta * structural(representation(student), representation(teacher), edges)``.

    ``structural`` is a built :class:`StructuralLossModule`; its parameters (G-CRD's heads)
    are this loss's parameters, optimised with the student.
    """

    def __init__(self, structural: StructuralLossModule, beta: float) -> None:
        super().__init__()
        self.structural, self.beta = structural, float(beta)

    def forward(self, student: ModelOutput, batch: DistillationBatch) -> Tensor:
        ce = supervised_cross_entropy(student.logits, batch.y, batch.train_mask)
        term = self.structural(representation(student.hidden), representation(batch.teacher_hidden),
                               batch.edge_index)
        return ce + self.beta * term


class StructuralMethod(DistillationMethod):
    """A method that adds one registered structural loss of the same name to the CE.

    Subclasses set ``name``, ``loss_class`` (used when the context does not list the loss,
    e.g. in unit tests) and ``hyperparameters`` = ``{"beta": ..., **loss_class.hyperparameters}``.
    """

    loss_class: ClassVar[type[StructuralLoss]]
    requires = frozenset({"logits", "hidden"})
    student_kinds = frozenset({"graph", "graph_free"})
    #: ``beta`` when the parameters do not give it
    default_beta: ClassVar[float] = 1.0

    def structural_loss(self, context: DistillationContext) -> StructuralLoss:
        return context.structural_losses.get(self.name) or self.loss_class()

    def build_loss(self, params: Mapping[str, Any], context: DistillationContext) -> DistillationLoss:
        beta = float(params.get("beta", self.default_beta))
        loss_params = {k: v for k, v in params.items() if k != "beta"}
        module = self.structural_loss(context).build(
            loss_params, representation_width(context.student_hidden_dims),
            representation_width(context.teacher_hidden_dims),
        )
        return StructuralDistillationLoss(module, beta)


class LSPMethod(StructuralMethod):
    name = "lsp"
    paper = LSP.paper
    description = "CE + beta * LSP: match neighbour-similarity distributions (kernel on edges)"
    loss_class = LSP
    hyperparameters: ClassVar[Mapping[str, Param]] = {"beta": FloatRange(1.0, 1000.0, log=True),
                                                      **LSP.hyperparameters}
    default_beta = 100.0


@hookimpl
def gkd_methods() -> list[DistillationMethod]:
    return [LSPMethod()]
