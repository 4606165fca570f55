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
other side's logits, the only pair there is, and directly, without a regressor (our deviation:
the paper's regressor exists to widen a thin guided layer, Sec. 2.2, and logits already share
the teacher's width and meaning, class by class). With a trainable regressor the hint is
indifferent to any invertible linear map of the student's logits, so when it outweighs the
cross-entropy the student can settle on permuted or negated logits: on Cora a 1-layer GCN
student with ``beta`` 1.8 reached 0.14 validation accuracy, below the majority-class rate (0.32),
while the same student without a teacher reached 0.75 (bench/robustness.py, seed 0). Matching
logits directly is Ba & Caruana's logit regression (NeurIPS 2014).

Deviation (scale of the hint, option ``hint_scale``, default ``"variance"``): the paper trains
the hint stage on its own, so the size of ``L_HT`` never competes with another term. Here it is
added to the cross-entropy, and ``1/2 ||h_T - r(h_S)||^2`` grows with the square of the
teacher's activations, which depend on its input features: about 20 for Cora's teacher at
initialisation and about 5,000 for Photo's (un-normalised bag-of-words features, hidden rows of
norm ~100), where it was up to 9,000 times the cross-entropy and a 1-layer MLP student collapsed
to 0.24 validation accuracy (0.83 without a teacher). So each pair's term is divided by the
teacher layer's total variance over the nodes (detached),

    L_HT(j, i) / (1/N sum_v ||h_T^i[v] - mean_u h_T^i[u]||^2),

half the fraction of the teacher layer's variance the regression leaves unexplained: about 1 at
initialisation on any graph, 0 for a perfect hint. ``beta``'s range is scaled to match
(``[0.1, 100]``, log; on Cora the old default 0.32 weighed the raw hint about as ``beta = 5``
weighs the normalised one). ``"raw"`` is Eq. 3 as written (in a mini-batch the variance is the
batch's).

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
from ..params import Choice, Fixed, FloatRange, Param
from ..types import (
    DistillationBatch,
    DistillationContext,
    DistillationLoss,
    DistillationMethod,
    ModelOutput,
)
from ._common import layer_pairs, supervised_cross_entropy

HINT_MODES = ("middle", "all")
#: ``variance``: each hint term divided by its teacher layer's variance; ``raw``: Eq. 3 as written
HINT_SCALES = ("variance", "raw")


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
    """``CE + beta * mean over pairs of 1/N sum_v 1/2 ||h_T[v] - r(h_S[v])||^2`` (each pair's
    term divided by its teacher layer's variance with ``hint_scale="variance"``)."""

    def __init__(self, beta: float, pairs: list[tuple[int, int]], student_dims: list[int],
                 teacher_dims: list[int], hint_scale: str = "variance") -> None:
        super().__init__()
        if hint_scale not in HINT_SCALES:
            raise ValueError(f"unknown hint_scale {hint_scale!r} (known: {', '.join(HINT_SCALES)})")
        self.beta, self.hint_scale = float(beta), hint_scale
        self.pairs = list(pairs)
        self.num_student, self.num_teacher = len(student_dims), len(teacher_dims)
        last_s, last_t = len(student_dims) - 1, len(teacher_dims) - 1
        self.regressors = nn.ModuleList(
            nn.Identity() if (j, i) == (last_s, last_t) and student_dims[j] == teacher_dims[i]
            else nn.Linear(student_dims[j], teacher_dims[i])
            for j, i in self.pairs
        )

    def hint_loss(self, student: ModelOutput, batch: DistillationBatch) -> Tensor:
        """``L_HT`` (Eq. 3) averaged over nodes and over pairs, each divided by its teacher layer's
        variance unless ``hint_scale="raw"``."""
        check_layers(student, batch, self.num_student, self.num_teacher)
        terms = []
        for (j, i), regressor in zip(self.pairs, self.regressors):
            teacher = batch.teacher_hidden[i].detach()
            term = 0.5 * (teacher - regressor(student.hidden[j])).pow(2).sum(dim=-1).mean()
            if self.hint_scale == "variance":
                term = term / (teacher - teacher.mean(dim=0)).pow(2).sum(dim=-1).mean().clamp_min(1e-12)
            terms.append(term)
        return torch.stack(terms).mean()

    def forward(self, student: ModelOutput, batch: DistillationBatch) -> Tensor:
        ce = supervised_cross_entropy(student.logits, batch.y, batch.train_mask)
        return ce + self.beta * self.hint_loss(student, batch)


class FitNets(DistillationMethod):
    name = "fitnets"
    paper = "Romero et al., FitNets: Hints for Thin Deep Nets, ICLR 2015 (arXiv:1412.6550)"
    description = "hint loss (Eq. 3): linear regressor from student to teacher layers, weight beta, joint with CE"
    requires = frozenset({"logits", "hidden"})
    hyperparameters: ClassVar[Mapping[str, Param]] = {"beta": FloatRange(0.1, 100.0, log=True), "hints": Choice(HINT_MODES),
                                                      "hint_scale": Fixed("variance", allowed=HINT_SCALES)}

    def build_loss(self, params: Mapping[str, Any], context: DistillationContext) -> DistillationLoss:
        s_dims, t_dims = list(context.student_hidden_dims), list(context.teacher_hidden_dims)
        pairs = hint_pairs(len(s_dims), len(t_dims), str(params["hints"]))
        return FitNetsLoss(beta=params["beta"], pairs=pairs, student_dims=s_dims, teacher_dims=t_dims,
                           hint_scale=str(params.get("hint_scale", "variance")))


@hookimpl
def gkd_methods() -> list[DistillationMethod]:
    return [FitNets()]
