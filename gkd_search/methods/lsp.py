"""``lsp``: distillation with the Local Structure Preserving loss.

Yang, Qiu, Song, Tao & Wang, "Distilling Knowledge from Graph Convolutional Networks",
CVPR 2020, https://arxiv.org/abs/2003.10477, Sec. 3 (the training objective: the task loss
plus the weighted LSP term):

    L = CE(y, s)  +  beta * L_LSP(z^S, z^T, E)

with ``L_LSP`` the structural loss ``lsp`` (Eqs. 2-4, :mod:`gkd_search.losses.lsp`), ``z^S`` the
student's last representation before its classifier and ``z^T`` the teacher's
(:func:`._common.representation`), and ``E`` the training graph's edges. The loss reads the
edges, not the student, so graph-free students (MLP) can be trained with it too. When ``beta``
is not given it is 10 (the LSP runs of Joshi et al., TNNLS 2022, arXiv:2111.04964, weight it 100,
which collapses 1-layer students, below); the loss's own hyperparameters (``kernel``, ``sigma``, ``scale``) are searched
under the same names. Soft-label KD can be added by the objective's ``softkd_weight`` (the
"KD + LSP" rows of Joshi et al.).

Default search range (issue 16, measured on Cora, docs/methods.md): ``beta`` in ``[0.1, 10]``
(log) and the bounded kernels ``rbf`` and ``cosine`` only. A 1-layer student's representation is
its logits, which the cross-entropy reads too, and there a strong structural term wins: a 1-layer
MLP reached the degenerate state (validation accuracy at or below the majority-class rate after
20 epochs) with ``beta`` 30 (cosine kernel) and 100 (RBF), and kept learning at 3 and 10; the
unbounded ``linear`` and ``poly`` kernels collapsed students even at moderate weights (a 1-layer
GraphSAGE with GSP's ``poly`` kernel and ``beta`` 24: 0.29, below the majority rate). A space
file may list them, or a larger ``beta`` for multi-layer students (a 2-layer GCN with ``beta``
100 is fine).

This module also holds the shared machinery of the ``lsp``, ``gsp`` and ``gcrd`` methods:
:class:`StructuralDistillationLoss` and :class:`StructuralMethod`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor

from ..hookspecs import hookimpl
from ..losses.lsp import LSP
from ..params import Choice, FloatRange, Param
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

#: the kernels a default search draws: bounded, so the similarity distributions cannot become
#: one-hot (``linear`` and ``poly`` remain available to a space file)
SAFE_KERNELS = ("rbf", "cosine")


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
    hyperparameters: ClassVar[Mapping[str, Param]] = {"beta": FloatRange(0.1, 10.0, log=True),
                                                      **LSP.hyperparameters, "kernel": Choice(SAFE_KERNELS)}
    default_beta = 10.0


@hookimpl
def gkd_methods() -> list[DistillationMethod]:
    return [LSPMethod()]
