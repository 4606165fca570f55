"""``abkd``: Attention-Based Knowledge Distillation for GNN compression.

Ahluwalia, Das, Behnam, Khare, Li & Tumanov, "ABKD: Graph Neural Network Compression with
Attention-Based Knowledge Distillation", arXiv:2310.15938v1, 2023, Sec. 3.2 (its text is in
``shared/papers/abkd.txt``). ``T_i`` (``[n, d_t]``) and ``S_j`` (``[n, d_s]``) are the
pre-activation outputs of teacher layer ``i`` and student layer ``j`` (Sec. 3.1.3; our models'
``hidden``, whose last entry is the logits), ``Lt`` and ``Ls`` their numbers of layers.

**Eq. 3, attention.** The node means ``T_a[i] = mean_v T_i[v]`` pass through each layer's own
linear map ``W_i^{pt}`` (``d_t x d_a``, Table 8; bias-free, so the projection of the mean is the
mean of the projection) into ``T_p [Lt, d_a]``; likewise ``S_p [Ls, d_a]``; then

    A = softmax( T_p S_p^T / sqrt(d_a) )                                             (3)

**Eq. 4, dissimilarity**, with separate projections ``P_t`` (``d_t x d_a``), ``P_s`` and the
trainable subspace matrix ``P`` (``d_a x d_a``, initialised to the identity):

    D_ij = || (T_i P_t - S_j P_s) P 1_{d_a} / d_a ||_2^2                             (4)

``(T_i P_t - S_j P_s) P`` is ``[n, d_a]``; ``1_{d_a}/d_a`` averages each node's row over the
embedding dimension ("the final step is to average over the embedding dimension"), leaving one
number per node; the squared 2-norm then sums their squares over the ``n`` nodes.

**Eq. 5**, ``L_abkd = 1_{Lt}^T (A o D) 1_{Ls} / Ls`` (sum over teacher layers, mean over
student layers), and **eq. 6**, the objective ``L = H(s_p, y) + beta L_abkd`` (cross-entropy on
the labelled nodes). Gradients reach the student through ``D`` and through ``A`` (its node
means): with learned attention the gradient at a shallow student layer depends on deep teacher
layers (Theorem 1; a test checks it).

Readings the text leaves open, the one taken by default and why (each other reading is a
``Fixed`` option a space file may list):

* ``attention_axis`` -- which axis eq. 3's softmax normalises. Default ``"student"``: each
  teacher row of ``A`` sums to 1. Eq. 3 is scaled dot-product attention with the teacher layers
  as queries, whose softmax runs over the keys (the student layers); App. B.2 takes "a row-wise
  argmax" of ``A`` to "find the student layer that has the most information distilled down to
  it", and Fig. 5's caption says the knowledge "from the teacher layers is distilled into one
  student layer": rows are teacher layers that spread their attention over student layers.
  ``"teacher"`` (each student column sums to 1) was our formulation before.
* ``node_reduction`` -- eq. 4's norm over nodes. Default ``"sum"``: the squared 2-norm of an
  ``n``-vector is the sum of its squares, and the text divides by nothing but ``d_a``. ``"mean"``
  divides by ``n`` (a scale independent of the graph's size).
* ``node_sample`` with eq. 4 -- ``1_{d_a}/d_a`` acts on each node's row, so a sample of nodes
  changes nothing in it: the per-node means are exact and only the sum over nodes is estimated,
  as ``N / m`` times the sum over the ``m`` sampled nodes (unbiased; ``N`` the graph's nodes, also
  in mini-batch training). Because ``1_{d_a}/d_a`` folds into one vector per layer
  (``P_t P 1/d_a``), the exact loss is cheap (``n d`` per layer) and the default samples nothing
  (``node_sample = 0``, ``layer_sample = 0``).
* ``dissimilarity_projection`` -- default ``"network"``: ONE ``P_t`` for all teacher layers and one
  ``P_s`` for all student layers. Eq. 4 and Table 8 give ``P_t``, ``P_s`` no layer index (Table
  8: "the learnable projection matrix for the teacher network"), while they index the attention
  maps ``W_i^{pt}`` ("the learnable i-th projection matrix"), and Sec. 3.2.2 uses "a separate set
  of projection matrices" from the attention's. Our models' logits are narrower than the hidden
  layers: they meet the first rows of the one map (zero padding). ``"layer"``: one per layer,
  apart from the attention's (Sec. 3.1.2's "separate trainable linear layers for each hidden
  layer"); ``"attention"``: the attention's per-layer maps, our formulation before.
* ``embedding_reduction`` -- ``"mean"`` is eq. 4. ``"norm"`` is our formulation before issue 13:
  ``D_ij = mean_v ||(T_i[v] P_t - S_j[v] P_s) P / d_a||^2`` (with ``node_reduction="mean"``), the
  squared norm of each node's row divided by ``d_a^2``: a different quantity (it cannot cancel
  opposite signs within a row) on a scale ``n`` times smaller than eq. 4's sum.
* ``distance="cosine"`` (Table 12): ``D_ij = 1 - cos(u_i, w_j)`` between eq. 4's two node vectors
  ``u_i = T_i P_t P 1/d_a`` and ``w_j = S_j P_s P 1/d_a`` (the Euclidean ``D_ij`` is
  ``||u_i - w_j||^2``); with ``"norm"``, the per-node cosine of the projected rows.

Our formulation before issue 13 is ``attention_axis="teacher"``, ``embedding_reduction="norm"``,
``node_reduction="mean"``, ``dissimilarity_projection="attention"`` (it sampled 256 nodes and 16
teacher layers per step, ``node_sample=256``, ``layer_sample=16``); ``bench/reproduce_abkd.py``
runs it as the row "abkd, previous formulation".

Hyperparameters (paper defaults first; App. B.3: "we used a beta of 10 and a d_a of 256"):

* ``beta`` -- weight of the ABKD term; ``[1, 100]`` log-uniformly, default (geometric mean) 10.
* ``d_a`` -- projection / attention width; ``Choice(256, 128, 64, 32)``.
* the readings above, ``Fixed`` at the defaults.
* ``node_sample`` (``Fixed(0)``), ``layer_sample`` (``Fixed(0)``) -- samples for the cost of the
  ``"norm"`` reduction (see :mod:`gkd_search.methods._layer_attention`); unbiased estimates.
* Ablations, ``Fixed`` at the full method: ``last_layer_only`` (Table 5's "modified ABKD": ``A``
  is 1 on the last teacher x last student layer pair and 0 elsewhere), ``shared_projection``
  (Table 7's "one linear layer": one map for all teacher layers and one for all student layers,
  for the attention too), ``distance`` (``"euclidean"`` or Table 12's ``"cosine"``), ``subspace``
  (Table 6; ``False``: ``P = I``).
* ``anchored`` (``False``; not in the paper): with trainable projections and ``P`` the Euclidean
  ``D`` can be driven to zero by shrinking them instead of moving the student. ``True`` stops
  ``D``'s gradient into the teacher's dissimilarity projection and keeps ``P`` at Frobenius norm
  ``sqrt(d_a)``, so ``D`` falls only when the student moves.

* ``teacher_scale`` (``"rms"``; not in the paper, ``"raw"`` is its form): each teacher layer is
  divided by its root-mean-square row norm before the attention and ``D`` read it, so ``D`` and
  ``beta`` mean the same on any graph (the paper's teachers read row-normalised features; on
  Photo's raw bag-of-words the teacher's hidden rows have norm ~100 and a GAT student collapsed to
  0.13 with ``beta`` 100). See :mod:`gkd_search.methods._layer_attention`.

Other choices the text does not fix: no biases, ``P`` starts at the identity, the projections
start like :class:`torch.nn.Linear`, the projections and ``P`` are trained by the student's
optimiser with its weight decay.

:meth:`ABKDLoss.diagnostics` returns ``attention`` (``A``) and ``dissimilarity`` (``D`` over all
nodes, or a fixed sample of 2,048 nodes on larger graphs, a sum scaled to all nodes) for the
before/after heatmaps (the paper's Figure 4).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor

from ..hookspecs import hookimpl
from ..params import Choice, Fixed, FloatRange, Param
from ..types import (
    DistillationBatch,
    DistillationContext,
    DistillationLoss,
    DistillationMethod,
    ModelOutput,
)
from ._common import supervised_cross_entropy
from ._layer_attention import (
    ATTENTION_AXES,
    DISTANCES,
    EMBEDDING_REDUCTIONS,
    NODE_REDUCTIONS,
    PROJECTIONS,
    TEACHER_SCALES,
    LayerAttention,
)

#: the options that pick a reading of eqs. 3-4 (see the module docstring) and their defaults
READINGS = {"attention_axis": "student", "embedding_reduction": "mean", "node_reduction": "sum",
            "dissimilarity_projection": "network"}
#: our formulation before issue 13, as option values
PREVIOUS_FORMULATION = {"attention_axis": "teacher", "embedding_reduction": "norm", "node_reduction": "mean",
                        "dissimilarity_projection": "attention", "node_sample": 256, "layer_sample": 16}


def graph_nodes(context: DistillationContext) -> int | None:
    """The node count of the context's graph (what a node sum is scaled to), if known."""
    return None if context.x is None else int(context.x.size(0))


class ABKDLoss(DistillationLoss):
    """Eq. 6: ``CE + beta * 1^T (A o D) 1 / Ls``."""

    def __init__(self, context: DistillationContext, beta: float, d_a: int, *, attention_axis: str = "student",
                 embedding_reduction: str = "mean", node_reduction: str = "sum",
                 dissimilarity_projection: str = "network", node_sample: int = 0, layer_sample: int = 0,
                 last_layer_only: bool = False, shared_projection: bool = False, distance: str = "euclidean",
                 subspace: bool = True, anchored: bool = False, teacher_scale: str = "rms") -> None:
        super().__init__()
        self.beta = float(beta)
        self.seed = int(context.seed)
        self.layers = LayerAttention(
            context.teacher_hidden_dims, context.student_hidden_dims, int(d_a), attention_axis=str(attention_axis),
            embedding_reduction=str(embedding_reduction), node_reduction=str(node_reduction),
            dissimilarity_projection=str(dissimilarity_projection), shared_projection=bool(shared_projection),
            subspace=bool(subspace), distance=str(distance), last_layer_only=bool(last_layer_only),
            node_sample=int(node_sample), layer_sample=int(layer_sample), anchored=bool(anchored),
            graph_nodes=graph_nodes(context), teacher_scale=str(teacher_scale),
        )

    def distillation_term(self, student: ModelOutput, batch: DistillationBatch) -> Tensor:
        """This step's ``L_abkd`` (eq. 5; an estimate when sampling)."""
        teacher = self.layers.scale_teacher(batch.teacher_hidden)
        a = self.layers.attention(teacher, student.hidden)
        return self.layers.weighted_dissimilarity(a, teacher, student.hidden, batch.num_nodes)

    def forward(self, student: ModelOutput, batch: DistillationBatch) -> Tensor:
        ce = supervised_cross_entropy(student.logits, batch.y, batch.train_mask)
        return ce + self.beta * self.distillation_term(student, batch)

    def diagnostics(self, student: ModelOutput, batch: DistillationBatch) -> dict[str, Tensor]:
        teacher = self.layers.scale_teacher(batch.teacher_hidden)
        a = self.layers.attention(teacher, student.hidden).detach()
        d = self.layers.full_dissimilarity(teacher, student.hidden, seed=self.seed)
        return {"attention": a, "dissimilarity": d}


class ABKD(DistillationMethod):
    name = "abkd"
    paper = ("Ahluwalia et al., ABKD: Graph Neural Network Compression with Attention-Based Knowledge "
             "Distillation, 2023 (arXiv:2310.15938v1)")
    description = "learned attention over all teacher x student layer pairs weights a projected embedding distance"
    requires = frozenset({"logits", "hidden"})
    hyperparameters: ClassVar[Mapping[str, Param]] = {
        "beta": FloatRange(1.0, 100.0, log=True),
        "d_a": Choice((256, 128, 64, 32)),
        "attention_axis": Fixed("student", allowed=ATTENTION_AXES),
        "embedding_reduction": Fixed("mean", allowed=EMBEDDING_REDUCTIONS),
        "node_reduction": Fixed("sum", allowed=NODE_REDUCTIONS),
        "dissimilarity_projection": Fixed("network", allowed=PROJECTIONS),
        "node_sample": Fixed(0),
        "layer_sample": Fixed(0),
        "last_layer_only": Fixed(False),
        "shared_projection": Fixed(False),
        "distance": Fixed("euclidean", allowed=DISTANCES),
        "subspace": Fixed(True),
        "anchored": Fixed(False),
        "teacher_scale": Fixed("rms", allowed=TEACHER_SCALES),
    }

    def build_loss(self, params: Mapping[str, Any], context: DistillationContext) -> DistillationLoss:
        p = {name: params.get(name, param.default) for name, param in self.hyperparameters.items()}
        return ABKDLoss(context, **p)


@hookimpl
def gkd_methods() -> list[DistillationMethod]:
    return [ABKD()]
