"""``fitnets``: hint-based training of a thin student on the teacher's intermediate layers.

Romero, Ballas, Kahou, Chassang, Gatta & Bengio, "FitNets: Hints for Thin Deep Nets",
ICLR 2015, https://arxiv.org/abs/1412.6550, Eq. 3 (the hint loss):

    L_HT(W_guided, W_r) = 1/2 * || u_h(x; W_hint) - r(v_g(x; W_guided); W_r) ||^2

where ``u_h`` is the teacher's hint layer, ``v_g`` the student's guided layer and ``r`` a
regressor that maps the guided layer to the hint's width. On graphs the positions are nodes:
for one pair (student layer ``j``, teacher layer ``i``)

    L_HT(j, i) = 1/N * sum_v 1/2 * || h_T^i[v] - (W h_S^j[v] + b) ||_2^2

with ``r = nn.Linear(d_s_j, d_t_i)`` owned by the loss and trained with the student. Both
``h`` are layer outputs before the activation (:class:`~gkd_search.types.ModelOutput`), so
the regressor is linear (the paper's regressor carries the hint layer's nonlinearity; here
neither side has one). With several pairs the hint term is their mean.

Pairs (option ``hints``):

* ``middle``: the paper's single pair (Sec. 2.2: "the middle layer" of each network). The
  non-logit layers are paired by relative depth
  (:func:`~gkd_search.methods._common.layer_pairs`) and the pair of the student's middle
  non-logit layer (index ``(L_s - 2) // 2``, the lower middle for an even count) is kept.
* ``all``: every student non-logit layer with the teacher layer at the same relative depth.

A 1-layer student (or teacher) has no hidden layer; then its logits are paired with the
other side's logits, the only pair there is.

Deviation: the paper trains in two stages (Sec. 2.3: first the hint stage up to the guided
layer, then the whole student with KD). A trial here trains once, so both are joint:

    L = CE(student, y)  +  beta * L_HT

and the KD stage's soft-label term is the shared ``softkd_weight``/``softkd_tau`` combination
(:mod:`gkd_search.distill.objective`), not part of this loss.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..hookspecs import hookimpl
from ..params import Choice, FloatRange, Param
from ..types import (
    DistillationBatch,
    DistillationContext,
    DistillationLoss,
    DistillationMethod,
    ModelOutput,
)
from ._common import layer_pairs, supervised_cross_entropy

HINT_MODES = ("middle", "all")


def hint_pairs(num_student: int, num_teacher: int, mode: str = "all") -> list[tuple[int, int]]:
    """``[(student layer, teacher layer), ...]`` indexing :attr:`ModelOutput.hidden`.

    The non-logit layers (all but the last) are paired by relative depth; ``mode="middle"``
    keeps the pair of the student's middle non-logit layer. A model with one layer has only
    logits, so then the pair is ``(logits, logits)``.
    """
    if mode not in HINT_MODES:
        raise ValueError(f"unknown hints mode {mode!r} (known: {', '.join(HINT_MODES)})")
    if num_student < 1 or num_teacher < 1:
        raise ValueError(f"need at least one layer on each side, got {num_student} and {num_teacher}")
    if num_student == 1 or num_teacher == 1:
        return [(num_student - 1, num_teacher - 1)]
    pairs = layer_pairs(num_student - 1, num_teacher - 1)
    if mode == "middle":
        return [pairs[(num_student - 2) // 2]]
    return pairs


def check_layers(student: ModelOutput, batch: DistillationBatch, num_student: int, num_teacher: int) -> None:
    """Raise if the outputs do not have the layer counts the loss was built for."""
    if len(student.hidden) != num_student or len(batch.teacher_hidden) != num_teacher:
        raise ValueError(
            f"loss built for {num_student} student and {num_teacher} teacher layers, got "
            f"{len(student.hidden)} and {len(batch.teacher_hidden)} (does the method require 'hidden'?)"
        )


class FitNetsLoss(DistillationLoss):
    """``CE + beta * mean over pairs of 1/N sum_v 1/2 ||h_T[v] - r(h_S[v])||^2``."""

    def __init__(self, beta: float, pairs: list[tuple[int, int]], student_dims: list[int],
                 teacher_dims: list[int]) -> None:
        super().__init__()
        self.beta = float(beta)
        self.pairs = list(pairs)
        self.num_student, self.num_teacher = len(student_dims), len(teacher_dims)
        self.regressors = nn.ModuleList(nn.Linear(student_dims[j], teacher_dims[i]) for j, i in self.pairs)

    def hint_loss(self, student: ModelOutput, batch: DistillationBatch) -> Tensor:
        """``L_HT`` (Eq. 3) averaged over nodes and over pairs."""
        check_layers(student, batch, self.num_student, self.num_teacher)
        terms = []
        for (j, i), regressor in zip(self.pairs, self.regressors):
            diff = batch.teacher_hidden[i].detach() - regressor(student.hidden[j])
            terms.append(0.5 * diff.pow(2).sum(dim=-1).mean())
        return torch.stack(terms).mean()

    def forward(self, student: ModelOutput, batch: DistillationBatch) -> Tensor:
        ce = supervised_cross_entropy(student.logits, batch.y, batch.train_mask)
        return ce + self.beta * self.hint_loss(student, batch)


class FitNets(DistillationMethod):
    name = "fitnets"
    paper = "Romero et al., FitNets: Hints for Thin Deep Nets, ICLR 2015 (arXiv:1412.6550)"
    description = "hint loss (Eq. 3): linear regressor from student to teacher layers, weight beta, joint with CE"
    requires = frozenset({"logits", "hidden"})
    hyperparameters: ClassVar[Mapping[str, Param]] = {"beta": FloatRange(0.01, 10.0, log=True), "hints": Choice(HINT_MODES)}

    def build_loss(self, params: Mapping[str, Any], context: DistillationContext) -> DistillationLoss:
        s_dims, t_dims = list(context.student_hidden_dims), list(context.teacher_hidden_dims)
        pairs = hint_pairs(len(s_dims), len(t_dims), str(params["hints"]))
        return FitNetsLoss(beta=params["beta"], pairs=pairs, student_dims=s_dims, teacher_dims=t_dims)


@hookimpl
def gkd_methods() -> list[DistillationMethod]:
    return [FitNets()]
