"""``stride``: Structure and Embedding Distillation with Attention.

Ahluwalia, Das, Behnam, Khare, Li & Tumanov, "STRIDE: Structure and Embedding Distillation with
Attention for Graph Neural Networks", arXiv:2310.15938v2, 2025 (the successor of ABKD,
arXiv:2310.15938v1; see :mod:`gkd_search.methods.abkd`). The equations are those of our
specification of the paper (its full text could not be fetched where this was written, so
equation numbers are not cited).

STRIDE keeps ABKD's learned attention over all teacher x student layer pairs,

    A = softmax( T_p S_p^T / sqrt(d_a) )      (over the teacher axis, see abkd)

and adds to ABKD's embedding dissimilarity of a pair a *structural* dissimilarity: a
structure-preserving loss between the pair's projected node features,

    D_emb[i, j]    = mean_v || (T_i[v] P_t^i - S_j[v] P_s^j) P / d_a ||^2        (ABKD)
    D_struct[i, j] = L_struct( S_j P_s^j, T_i P_t^i, E )
    D = D_emb + D_struct,        L = CE + beta * 1^T (A o D) 1 / Ls

``L_struct`` is one of the registered structural losses (``context.structural_losses``):
G-CRD (Joshi et al. 2022, the default), LSP (Yang et al. 2020) or GSP (Joshi et al. 2022), built
once as ``build({}, d_a, d_a)`` with that loss's own defaults and shared by all pairs (its
trainable parts, G-CRD's heads, are trained with the student). It sees the projections without
the subspace matrix ``P``. Variants (the paper's ablations): ``e-stride`` uses ``D_emb`` only
(it is ABKD with the same weights), ``s-stride`` ``D_struct`` only.

Hyperparameters:

* ``beta`` -- ``FloatRange(0.01, 10, log)``, default 0.32. The structural losses are on a much
  larger scale than ``D_emb`` (G-CRD's InfoNCE starts near ``log n``, about 5 on the sampled
  subgraphs; ``D_emb`` about 0.01), so ABKD's ``beta = 10`` lets G-CRD swamp the cross-entropy
  (Cora, GCN 2x16 student: test accuracy 0.29 at ``beta = 10``, 0.80 at 0.32, 0.81 without
  distillation). The range sits where the structural term is comparable to the cross-entropy.
* ``d_a`` -- ``Choice(256, 128, 64, 32)`` (ABKD's 256 first).
* ``structure`` -- ``Choice("gcrd", "lsp", "gsp")``.
* ``variant`` -- ``Fixed("stride")``; a space file may list ``e-stride``/``s-stride``.
* ``node_sample`` (256), ``layer_sample`` (16) -- as in abkd, for ``D_emb``.
* ``structure_nodes`` (32), ``structure_pairs`` (4) -- the cost deviations below.
* ``teacher_scale`` (``"rms"``; ``"raw"`` is the paper's form) -- every teacher layer divided by
  its root-mean-square row norm before it is projected, for ``A``, ``D_emb`` and ``D_struct``, as
  in abkd (:mod:`._layer_attention`: keeps ``beta`` meaningful when the teacher's activations are
  large, e.g. Photo's raw bag-of-words).

Deviations for cost (each term stays an unbiased estimate of the paper's):

* ``D_emb`` is averaged over ``node_sample`` uniformly drawn nodes per step and, for teachers
  deeper than ``layer_sample``, evaluated on teacher layers drawn from the attention (abkd).
* ``D_struct`` on all ``Lt x Ls`` pairs would call the structural loss 256 times per step
  for a 64-layer teacher and a 4-layer student. Instead ``structure_pairs`` pairs are drawn
  per step with probability ``A_ij / sum(A)`` (with replacement; ``A`` detached) and

      sum_ij A_ij D_struct[i, j]  ~=  1/K sum_k (A_k / stopgrad(p_k)) D_struct[k]

  whose value and gradients (to ``A`` and to the pair's features) are unbiased, plus a
  leave-one-out baseline term (value 0, zero-mean gradient) that lowers the variance of the
  gradient reaching ``A``; compute goes where the attention is. ``0`` evaluates every pair.
* The structural loss sees a sampled subgraph: ``structure_nodes`` centre nodes drawn
  uniformly, every edge into a centre (a centre's full neighbourhood in PyG's
  ``source -> target`` convention, which LSP uses), and the rows of the centres and their
  neighbours, relabelled (about 140 rows on Cora). ``0`` uses the whole graph.

:meth:`STRIDELoss.diagnostics` adds ``structural_dissimilarity`` (every pair, on a fixed
subgraph, without touching torch's global RNG) to ABKD's ``attention`` and ``dissimilarity``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
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
from ._common import sample_nodes, supervised_cross_entropy
from ._layer_attention import TEACHER_SCALES, LayerAttention

VARIANTS = ("stride", "e-stride", "s-stride")
STRUCTURES = ("gcrd", "lsp", "gsp")


def sampled_pair_sum(a: Tensor, value: Callable[[int, int], Tensor], samples: int) -> Tensor:
    """Unbiased estimate of ``sum_ij A_ij V_ij`` from ``samples`` pairs drawn with probability
    ``p_ij = A_ij / sum(A)`` (with replacement, ``A`` detached): ``1/K sum_k (A_k / stopgrad(p_k)) V_k``,
    plus a leave-one-out baseline term of value 0 and zero-mean gradient (it only lowers the
    variance of the gradient reaching ``A``, whose entries sum to a constant). ``value(i, j)``
    is called once per distinct pair drawn."""
    a_fixed = a.detach()
    p = a_fixed.flatten() / a_fixed.sum()
    drawn = torch.multinomial(p, samples, replacement=True)
    ls = a.size(1)
    counts = Counter(int(k) for k in drawn)
    pairs = [(k // ls, k % ls) for k in counts]
    values = [value(i, j) for i, j in pairs]
    fixed = [float(v.detach()) for v in values]
    total = sum(counts[i * ls + j] * f for (i, j), f in zip(pairs, fixed))
    estimate = a.new_zeros(())
    for (i, j), v, f in zip(pairs, values, fixed):
        k = i * ls + j
        ratio = a[i, j] / p[k]
        estimate = estimate + counts[k] / samples * ratio * v
        if samples > 1:
            baseline = (total - f) / (samples - 1)
            estimate = estimate - counts[k] / samples * (ratio - ratio.detach()) * baseline
    return estimate


def sample_subgraph(edge_index: Tensor, num_nodes: int, centres: int,
                    generator: torch.Generator | None = None) -> tuple[Tensor | None, Tensor]:
    """``(rows, edges)``: ``centres`` uniformly drawn nodes, every edge ``(u, c)`` into a centre
    ``c``, the rows of the centres and of those neighbours ``u`` (sorted), and the edges
    relabelled to index ``rows``. ``(None, edge_index)`` when ``centres`` is 0 or covers the graph."""
    picked = sample_nodes(num_nodes, centres, generator=generator, device=edge_index.device)
    if picked is None:
        return None, edge_index
    is_centre = torch.zeros(num_nodes, dtype=torch.bool, device=edge_index.device)
    is_centre[picked] = True
    edges = edge_index[:, is_centre[edge_index[1]]]
    rows = torch.unique(torch.cat([picked, edges[0]]))
    relabel = torch.full((num_nodes,), -1, dtype=torch.long, device=edge_index.device)
    relabel[rows] = torch.arange(rows.numel(), device=edge_index.device)
    return rows, relabel[edges]


class STRIDELoss(DistillationLoss):
    """``CE + beta * 1^T (A o (D_emb + D_struct)) 1 / Ls`` (or one of the two dissimilarities)."""

    def __init__(self, context: DistillationContext, beta: float, d_a: int, *, structure: str = "gcrd",
                 variant: str = "stride", node_sample: int = 256, layer_sample: int = 16,
                 structure_nodes: int = 32, structure_pairs: int = 4, teacher_scale: str = "rms") -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
        self.beta = float(beta)
        self.seed = int(context.seed)
        self.use_embedding = variant in ("stride", "e-stride")
        self.use_structure = variant in ("stride", "s-stride")
        self.structure_nodes, self.structure_pairs = int(structure_nodes), int(structure_pairs)
        self.layers = LayerAttention(context.teacher_hidden_dims, context.student_hidden_dims, int(d_a),
                                     node_sample=int(node_sample), layer_sample=int(layer_sample),
                                     teacher_scale=str(teacher_scale))
        self.structural = None
        if self.use_structure:
            losses = context.structural_losses
            if structure not in losses:
                raise ValueError(f"stride: structural loss {structure!r} is not registered "
                                 f"(registered: {', '.join(sorted(losses)) or 'none'})")
            self.structural = losses[structure].build({}, int(d_a), int(d_a))

    # ------------------------------------------------------------------ structural part

    def pair_structure(self, teacher: Tensor, student: Tensor, i: int, j: int,
                       rows: Tensor | None, edges: Tensor) -> Tensor:
        """``L_struct(S_j P_s^j, T_i P_t^i)`` on the subgraph ``rows``/``edges`` (``teacher`` already
        divided by its layer's scale, :meth:`LayerAttention.teacher_scales`)."""
        t = teacher.detach() if rows is None else teacher.detach().index_select(0, rows)
        s = student if rows is None else student.index_select(0, rows)
        t = t @ self.layers.teacher_proj.layer_weight(i)
        s = s @ self.layers.student_proj.layer_weight(j)
        return self.structural(s, t, edges)

    def structural_term(self, a: Tensor, student: ModelOutput, batch: DistillationBatch) -> Tensor:
        """This step's estimate of ``sum_ij A_ij D_struct[i, j]`` (see the module docstring)."""
        lt, ls = a.shape
        rows, edges = sample_subgraph(batch.edge_index, batch.num_nodes, self.structure_nodes)
        scales = self.layers.teacher_scales(batch.teacher_hidden)

        def value(i: int, j: int) -> Tensor:
            return self.pair_structure(batch.teacher_hidden[i] / scales[i], student.hidden[j], i, j, rows, edges)

        if self.structure_pairs <= 0 or self.structure_pairs >= lt * ls:
            return sum(a[i, j] * value(i, j) for i in range(lt) for j in range(ls))
        return sampled_pair_sum(a, value, self.structure_pairs)

    # ------------------------------------------------------------------ objective

    def forward(self, student: ModelOutput, batch: DistillationBatch) -> Tensor:
        ce = supervised_cross_entropy(student.logits, batch.y, batch.train_mask)
        a = self.layers.attention(batch.teacher_hidden, student.hidden)
        term = ce.new_zeros(())
        if self.use_embedding:
            term = term + self.layers.weighted_dissimilarity(a, batch.teacher_hidden, student.hidden, batch.num_nodes)
        if self.use_structure:
            term = term + self.structural_term(a, student, batch) / a.size(1)
        return ce + self.beta * term

    @torch.no_grad()
    def structural_dissimilarity(self, student: ModelOutput, batch: DistillationBatch) -> Tensor:
        """``D_struct [Lt, Ls]`` of every pair on one fixed subgraph (seeded by the trial)."""
        gen = torch.Generator().manual_seed(self.seed)
        rows, edges = sample_subgraph(batch.edge_index.cpu(), batch.num_nodes, self.structure_nodes, gen)
        device = student.logits.device
        rows, edges = (None if rows is None else rows.to(device)), edges.to(device)
        lt, ls = len(batch.teacher_hidden), len(student.hidden)
        out = torch.zeros(lt, ls, device=device)
        scales = self.layers.teacher_scales(batch.teacher_hidden)
        with torch.random.fork_rng(devices=[]):  # the structural loss may sample; keep training's RNG
            torch.manual_seed(self.seed)
            for i in range(lt):
                for j in range(ls):
                    out[i, j] = self.pair_structure(batch.teacher_hidden[i] / scales[i], student.hidden[j], i, j,
                                                    rows, edges)
        return out

    def diagnostics(self, student: ModelOutput, batch: DistillationBatch) -> dict[str, Tensor]:
        out = {
            "attention": self.layers.attention(batch.teacher_hidden, student.hidden).detach(),
            "dissimilarity": self.layers.full_dissimilarity(batch.teacher_hidden, student.hidden, seed=self.seed),
        }
        if self.structural is not None:
            out["structural_dissimilarity"] = self.structural_dissimilarity(student, batch)
        return out


class STRIDE(DistillationMethod):
    name = "stride"
    paper = ("Ahluwalia et al., STRIDE: Structure and Embedding Distillation with Attention for Graph Neural "
             "Networks, 2025 (arXiv:2310.15938v2)")
    description = "ABKD's layer attention over embedding + structural (G-CRD/LSP/GSP) dissimilarities"
    requires = frozenset({"logits", "hidden"})
    structural_loss_options = frozenset({"structure"})
    hyperparameters: ClassVar[Mapping[str, Param]] = {
        "beta": FloatRange(0.01, 10.0, log=True),
        "d_a": Choice((256, 128, 64, 32)),
        "structure": Choice(STRUCTURES),
        "variant": Fixed("stride", allowed=VARIANTS),
        "node_sample": Fixed(256),
        "layer_sample": Fixed(16),
        "structure_nodes": Fixed(32),
        "structure_pairs": Fixed(4),
        "teacher_scale": Fixed("rms", allowed=TEACHER_SCALES),
    }

    def build_loss(self, params: Mapping[str, Any], context: DistillationContext) -> DistillationLoss:
        p = {name: params.get(name, param.default) for name, param in self.hyperparameters.items()}
        return STRIDELoss(
            context, beta=p["beta"], d_a=p["d_a"], structure=p["structure"], variant=p["variant"],
            node_sample=p["node_sample"], layer_sample=p["layer_sample"], structure_nodes=p["structure_nodes"],
            structure_pairs=p["structure_pairs"], teacher_scale=p["teacher_scale"],
        )


@hookimpl
def gkd_methods() -> list[DistillationMethod]:
    return [STRIDE()]
