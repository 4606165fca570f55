"""The machinery ABKD and STRIDE share: per-layer projections, the layer-attention matrix (ABKD
eq. 3), the embedding dissimilarity of every teacher-student layer pair (eq. 4), and the
attention-weighted sum (eq. 5) with cheap unbiased estimates of it.

Ahluwalia, Das, Behnam, Khare, Li & Tumanov, "ABKD: Graph Neural Network Compression with
Attention-Based Knowledge Distillation", arXiv:2310.15938v1 (2023), Sec. 3.2 (text in
``shared/papers/abkd.txt``), and the same authors' STRIDE (arXiv:2310.15938v2), which reuses
eqs. 3-4. :mod:`gkd_search.methods.abkd` says which reading of each equation is the default and
why; this module implements every reading it offers. With teacher layer outputs ``T_1..T_Lt``
(``[n, d_i]``, pre-activation) and student layer outputs ``S_1..S_Ls``:

* **eq. 3, attention**: ``T_a[i] = mean_v T_i[v]`` projected by the layer's own bias-free map
  ``W_i^{pt}`` (Table 8: ``d_t x d_a``) gives ``T_p [Lt, d_a]``; likewise ``S_p [Ls, d_a]``;
  ``A = softmax(T_p S_p^T / sqrt(d_a))``, normalised over the student axis (each teacher row sums
  to 1; ``attention_axis="student"``) or over the teacher axis (each column sums to 1,
  ``"teacher"``, the formulation before issue 13).
* **eq. 4, dissimilarity**, with the dissimilarity projections ``P_t``, ``P_s`` and the trainable
  subspace matrix ``P`` (``d_a x d_a``, initialised to the identity):

      embedding_reduction="mean" (eq. 4):  u_i = T_i P_t P 1_{d_a}/d_a  in R^n   (per node: the mean
                                            over the embedding dimension of the projected features)
                                            D_ij = ||u_i - w_j||^2 = sum_v (u_i[v] - w_j[v])^2
      embedding_reduction="norm" (before):  D_ij = sum_v ||(T_i[v] P_t - S_j[v] P_s) P / d_a||^2

  ``node_reduction="sum"`` keeps the sum over the ``n`` nodes the 2-norm of eq. 4 implies,
  ``"mean"`` divides it by ``n``. ``P_t``/``P_s`` are one matrix per network
  (``dissimilarity_projection="network"``, eq. 4 and Table 8), one per layer (``"layer"``), or
  the attention's per-layer maps (``"attention"``, the formulation before issue 13).
  ``distance="cosine"`` (Table 12): with ``"mean"``, ``D_ij = 1 - cos(u_i, w_j)`` between the
  two node vectors of eq. 4; with ``"norm"``, the per-node ``1 - cos`` of the projected rows,
  reduced over nodes like the Euclidean distance.
* **eq. 5**: ``L_abkd = 1_{Lt}^T (A o D) 1_{Ls} / Ls`` (:meth:`LayerAttention.weighted_dissimilarity`).

Because ``1_{d_a}/d_a`` meets the projections before the nodes do, eq. 4's ``"mean"`` reduction
folds into one vector per layer, ``a_i = P_t^i P 1_{d_a}/d_a`` (``[d_i]``), so ``u_i = T_i a_i``
costs ``n d_i`` per layer: the exact loss over every node and every layer of a 64-layer teacher
is cheap, and the defaults sample nothing.

Samples (each an unbiased estimate of the exact quantity; 0 turns a sample off):

* ``node_sample``: ``D`` over a uniform random sample of ``m`` of the ``N`` nodes per step
  (torch's global RNG); a node sum is scaled by ``N / m``. ``N`` is the graph's node count
  (``graph_nodes``, given by the method from its context) so that a mini-batch's sum also
  estimates the whole graph's; without it, the rows of the batch.
* ``layer_sample``: when the teacher has more layers than this, each step draws that many
  teacher layers ``i`` (with replacement) from ``c_i = sum_j A_ij / sum(A)`` and evaluates ``D``
  only on their rows:

      sum_ij A_ij D_ij  ~=  1/K sum_k sum_j (A_{i_k j} / stopgrad(c_{i_k})) D_{i_k j}

  Value and gradients (to ``A``, the student, the projections, ``P``) are unbiased; a
  leave-one-out baseline (a term of value 0 and zero-mean gradient) lowers the variance of the
  gradient reaching ``A``.
* For ``"norm"``, ``P`` is folded into the projections, ``T_i (P_t^i P)``, and
  ``||a - b||^2 = ||a||^2 + ||b||^2 - 2 <a, b>`` makes the cross terms of all pairs one product.

Teacher scale (our deviation, ``teacher_scale="rms"``, the default; ``"raw"`` is the paper's
form): every teacher layer is divided by its root-mean-square row norm (a constant per layer,
computed once per teacher output and detached) before the attention and ``D`` see it
(:meth:`LayerAttention.scale_teacher`, called once by the method on entry). ``D`` is a squared
distance, so its size is the square of the teacher's activations, which depend on the input
features: the paper's teachers read row-normalised features (activations of order 1), while
Photo's 2-layer GCN teacher (raw bag-of-words) has hidden rows of norm ~100 against ~6 on Cora.
There ``beta = 100`` made ``D`` dominate and a 2-layer GAT student collapsed to 0.13 validation
accuracy (majority rate 0.125; 0.90 without a teacher). At unit RMS ``beta`` means the same on
every graph.

``shared_projection`` (Table 7's "one linear layer") keeps ONE map for all teacher layers (and
one for all student layers) for every projection; layers narrower than the widest are
zero-padded to its width, i.e. use the first ``d_i`` rows of the shared weight.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._common import sample_nodes

#: Nodes used by :meth:`LayerAttention.full_dissimilarity` (diagnostics); more are subsampled.
DIAGNOSTIC_NODES = 2048

ATTENTION_AXES = ("student", "teacher")
EMBEDDING_REDUCTIONS = ("mean", "norm")
NODE_REDUCTIONS = ("sum", "mean")
PROJECTIONS = ("network", "layer", "attention")
DISTANCES = ("euclidean", "cosine")
#: ``teacher_scale``: ``"rms"`` (each teacher layer divided by its root-mean-square row norm;
#: our deviation, issue 16) or ``"raw"`` (the paper's form)
TEACHER_SCALES = ("rms", "raw")


def check_choice(name: str, value: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def pad_stack(features: Sequence[Tensor], width: int, index: Tensor | None = None) -> Tensor:
    """``[L, n, width]``: each layer's rows ``index`` (all when ``None``), zero-padded to ``width``."""
    rows = [f if index is None else f.index_select(0, index) for f in features]
    return torch.stack([F.pad(r, (0, width - r.size(1))) if r.size(1) < width else r for r in rows])


class LayerProjections(nn.Module):
    """One bias-free linear map ``d_l -> d_a`` per layer, stored as ``weight [L, width, d_a]``.

    Layer ``l`` uses ``weight[l, :d_l]`` (the rows past ``d_l`` meet zero padding and stay
    unused). With ``shared=True`` there is one map ``weight [1, width, d_a]`` for every layer:
    narrower layers are zero-padded to ``width``. Initialised like :class:`torch.nn.Linear`
    (uniform in ``+-1/sqrt(fan_in)``).
    """

    def __init__(self, dims: Sequence[int], out_channels: int, shared: bool = False) -> None:
        super().__init__()
        self.dims = [int(d) for d in dims]
        self.width = max(self.dims)
        self.shared = bool(shared)
        weight = torch.zeros(1 if shared else len(self.dims), self.width, out_channels)
        for layer, fan_in in enumerate([self.width] if shared else self.dims):
            bound = 1.0 / math.sqrt(fan_in)
            weight[layer, :fan_in].uniform_(-bound, bound)
        self.weight = nn.Parameter(weight)

    @property
    def num_layers(self) -> int:
        return len(self.dims)

    def weights(self, layers: Tensor | None = None) -> Tensor:
        """``[L', width, d_a]`` for the ``layers`` (all when ``None``); ``[1, ...]`` when shared."""
        if self.shared or layers is None:
            return self.weight
        return self.weight.index_select(0, layers)

    def layer_weight(self, layer: int) -> Tensor:
        """``[d_l, d_a]``: the map of one layer."""
        return self.weight[0 if self.shared else layer, : self.dims[layer]]


def project_rows(rows: Tensor, weight: Tensor) -> Tensor:
    """``[L, n, w] x [L or 1, w, d_a] -> [L, n, d_a]``."""
    if weight.size(0) == 1 and rows.size(0) > 1:
        num_layers, n, width = rows.shape
        return (rows.reshape(num_layers * n, width) @ weight[0]).reshape(num_layers, n, -1)
    return torch.bmm(rows, weight)


def sampled_attention_sum(a: Tensor, rows_of_d: Callable[[Tensor | None], Tensor], samples: int) -> Tensor:
    """``sum_ij A_ij D_ij``, exactly (``samples`` 0 or at least ``Lt``) or estimated from
    ``samples`` teacher layers drawn from ``c_i = sum_j A_ij / sum(A)`` (see the module docstring).

    ``rows_of_d(layers)`` returns ``D[layers, :]`` (all rows for ``None``), differentiable.
    """
    lt = a.size(0)
    if samples <= 0 or samples >= lt:
        return (a * rows_of_d(None)).sum()
    a_fixed = a.detach()
    c = a_fixed.sum(dim=1) / a_fixed.sum()
    drawn = torch.multinomial(c, samples, replacement=True)
    layers, counts = torch.unique(drawn, return_counts=True)
    d = rows_of_d(layers)  # [m, Ls]
    weight = counts.to(d.dtype)[:, None] / samples  # draws per unique layer / K
    ratio = a.index_select(0, layers) / c.index_select(0, layers)[:, None]  # A_ij / c_i
    estimate = (weight * ratio * d).sum()
    if samples > 1:  # leave-one-out baseline per column: value 0, zero-mean gradient
        d_fixed = d.detach()
        column_total = (counts.to(d.dtype)[:, None] * d_fixed).sum(dim=0, keepdim=True)
        baseline = (column_total - d_fixed) / (samples - 1)
        estimate = estimate - (weight * (ratio - ratio.detach()) * baseline).sum()
    return estimate


class LayerAttention(nn.Module):
    """ABKD's attention ``A [Lt, Ls]`` (eq. 3) and embedding dissimilarity ``D [Lt, Ls]`` (eq. 4).

    Args:
        teacher_dims / student_dims: the width of every layer output (``hidden`` sizes).
        d_a: the attention / projection width.
        attention_axis: ``"student"`` (each teacher row of ``A`` sums to 1) or ``"teacher"``.
        embedding_reduction: ``"mean"`` (eq. 4's ``1_{d_a}/d_a``) or ``"norm"`` (the squared
            norm over the embedding dimension divided by ``d_a^2``, the formulation before).
        node_reduction: ``"sum"`` (eq. 4's 2-norm over nodes) or ``"mean"``.
        dissimilarity_projection: ``"network"`` (one ``P_t``, one ``P_s``), ``"layer"`` (one
            per layer, apart from the attention's) or ``"attention"`` (the attention's maps).
        shared_projection: one map for all teacher layers and one for all student layers, for
            the attention too (Table 7's "one linear layer").
        subspace: learn the subspace matrix ``P`` (initialised to the identity); ``False`` fixes
            ``P = I`` (Table 6).
        distance: ``"euclidean"`` or ``"cosine"`` (Table 12).
        last_layer_only: the "modified ABKD" ablation (Table 5): ``A`` is 1 on (last teacher
            layer, last student layer) and 0 elsewhere, not learned.
        node_sample: nodes per step for ``D`` (0: all).
        layer_sample: teacher layers drawn per step from the attention (0: all).
        anchored: our remedy for the collapse of ``D`` (not in the paper): ``D`` sends no
            gradient into the teacher's dissimilarity projection and ``P`` is rescaled to its
            initial Frobenius norm ``sqrt(d_a)`` at every use, so ``D`` can only shrink by moving
            the student (and its projection) towards the teacher.
        graph_nodes: the node count a node sum is scaled to (``None``: the rows given).
        teacher_scale: ``"rms"`` or ``"raw"`` (module docstring; :meth:`scale_teacher`).
    """

    def __init__(self, teacher_dims: Sequence[int], student_dims: Sequence[int], d_a: int, *,
                 attention_axis: str = "student", embedding_reduction: str = "mean", node_reduction: str = "sum",
                 dissimilarity_projection: str = "network", shared_projection: bool = False, subspace: bool = True,
                 distance: str = "euclidean", last_layer_only: bool = False, node_sample: int = 0,
                 layer_sample: int = 0, anchored: bool = False, graph_nodes: int | None = None,
                 teacher_scale: str = "rms") -> None:
        super().__init__()
        self.teacher_scale = check_choice("teacher_scale", teacher_scale, TEACHER_SCALES)
        self._scaled_src: list[Tensor] = []
        self._scaled: list[Tensor] = []
        self.attention_axis = check_choice("attention_axis", attention_axis, ATTENTION_AXES)
        self.embedding_reduction = check_choice("embedding_reduction", embedding_reduction, EMBEDDING_REDUCTIONS)
        self.node_reduction = check_choice("node_reduction", node_reduction, NODE_REDUCTIONS)
        self.dissimilarity_projection = check_choice("dissimilarity_projection", dissimilarity_projection, PROJECTIONS)
        self.distance = check_choice("distance", distance, DISTANCES)
        self.anchored = bool(anchored)
        self.d_a = int(d_a)
        self.teacher_proj = LayerProjections(teacher_dims, self.d_a, shared_projection)  # W_i^{pt} (eq. 3)
        self.student_proj = LayerProjections(student_dims, self.d_a, shared_projection)  # W_j^{ps}
        if self.dissimilarity_projection == "attention":
            self.teacher_dis: LayerProjections | None = None
            self.student_dis: LayerProjections | None = None
        else:  # P_t, P_s (eq. 4)
            one = bool(shared_projection) or self.dissimilarity_projection == "network"
            self.teacher_dis = LayerProjections(teacher_dims, self.d_a, one)
            self.student_dis = LayerProjections(student_dims, self.d_a, one)
        self.subspace = nn.Parameter(torch.eye(self.d_a)) if subspace else None
        self.last_layer_only = bool(last_layer_only)
        self.node_sample = int(node_sample)
        self.layer_sample = int(layer_sample)
        self.graph_nodes = None if graph_nodes is None else int(graph_nodes)
        self._teacher_src: list[Tensor] = []
        self._teacher_versions: list[int] = []
        self._teacher_means: Tensor | None = None

    @property
    def num_teacher_layers(self) -> int:
        return self.teacher_proj.num_layers

    def dissimilarity_projections(self) -> tuple[LayerProjections, LayerProjections]:
        """``(P_t, P_s)`` of eq. 4 (the attention's maps with ``dissimilarity_projection="attention"``)."""
        if self.teacher_dis is None or self.student_dis is None:
            return self.teacher_proj, self.student_proj
        return self.teacher_dis, self.student_dis

    def scale_teacher(self, teacher_hidden: Sequence[Tensor]) -> list[Tensor]:
        """The teacher layers as the attention and ``D`` read them: each divided by its
        root-mean-square row norm ``sqrt(mean_v ||t_v||^2)`` with ``teacher_scale="rms"``
        (detached; computed once per teacher output), unchanged with ``"raw"``."""
        if self.teacher_scale == "raw":
            return list(teacher_hidden)
        same = len(teacher_hidden) == len(self._scaled_src) and all(
            a is b for a, b in zip(teacher_hidden, self._scaled_src))
        if not same:
            with torch.no_grad():
                self._scaled = [t.detach() / t.detach().pow(2).sum(dim=1).mean().sqrt().clamp(min=1e-12)
                                for t in teacher_hidden]
            self._scaled_src = list(teacher_hidden)
        return self._scaled

    # ------------------------------------------------------------------ attention (eq. 3)

    def teacher_means(self, teacher_hidden: Sequence[Tensor]) -> Tensor:
        """``[Lt, width]`` node means of the teacher layers, computed once per teacher output."""
        same = (len(teacher_hidden) == len(self._teacher_src)
                and all(a is b for a, b in zip(teacher_hidden, self._teacher_src))
                and [t._version for t in teacher_hidden] == self._teacher_versions)
        if not same or self._teacher_means is None:
            with torch.no_grad():
                means = [t.detach().mean(dim=0, keepdim=True) for t in teacher_hidden]
                self._teacher_means = pad_stack(means, self.teacher_proj.width).squeeze(1)
            self._teacher_src = list(teacher_hidden)
            self._teacher_versions = [t._version for t in teacher_hidden]
        return self._teacher_means

    def attention(self, teacher_hidden: Sequence[Tensor], student_hidden: Sequence[Tensor]) -> Tensor:
        """``A [Lt, Ls] = softmax(T_p S_p^T / sqrt(d_a))`` over :attr:`attention_axis` (eq. 3)."""
        lt, ls = len(teacher_hidden), len(student_hidden)
        self._check_layers(lt, ls)
        if self.last_layer_only:
            a = torch.zeros(lt, ls, device=student_hidden[-1].device)
            a[-1, -1] = 1.0
            return a
        t_mean = self.teacher_means(teacher_hidden)
        s_mean = pad_stack([s.mean(dim=0, keepdim=True) for s in student_hidden], self.student_proj.width)
        wt = self.teacher_proj.weight
        t_p = t_mean @ wt[0] if self.teacher_proj.shared else torch.bmm(t_mean.unsqueeze(1), wt).squeeze(1)
        ws = self.student_proj.weight
        s_p = s_mean.squeeze(1) @ ws[0] if self.student_proj.shared else torch.bmm(s_mean, ws).squeeze(1)
        return torch.softmax(t_p @ s_p.T / math.sqrt(self.d_a), dim=1 if self.attention_axis == "student" else 0)

    # ------------------------------------------------------------------ dissimilarity (eq. 4)

    def _subspace(self) -> Tensor | None:
        if self.subspace is None:
            return None
        if self.anchored:  # P keeps its initial Frobenius norm sqrt(d_a): it can turn, not shrink
            return self.subspace * (math.sqrt(self.d_a) / self.subspace.norm().clamp_min(1e-12))
        return self.subspace

    def _dissimilarity_weights(self, layers: Tensor | None) -> tuple[Tensor, Tensor, bool, bool]:
        """``(teacher weights [Lt' or 1, w, d_a], student weights, teacher shared, student shared)``."""
        proj_t, proj_s = self.dissimilarity_projections()
        wt, ws = proj_t.weights(layers), proj_s.weights()
        if self.anchored:  # D does not train the teacher's projection (the attention still trains its own)
            wt = wt.detach()
        return wt, ws, proj_t.shared, proj_s.shared

    def node_vectors(self, teacher_hidden: Sequence[Tensor], student_hidden: Sequence[Tensor],
                     index: Tensor | None, layers: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Eq. 4's ``u_i = T_i P_t P 1_{d_a}/d_a`` for the teacher ``layers`` (all when ``None``) and
        ``w_j = S_j P_s P 1_{d_a}/d_a`` for every student layer, on the rows ``index``:
        ``[Lt', n]`` and ``[Ls, n]``."""
        wt, ws, shared_t, shared_s = self._dissimilarity_weights(layers)
        subspace = self._subspace()
        mean_vec = (subspace.mean(dim=1) if subspace is not None
                    else torch.full((self.d_a,), 1.0 / self.d_a, device=wt.device))  # P 1_{d_a} / d_a
        at, as_ = wt @ mean_vec, ws @ mean_vec  # [L or 1, width]
        chosen = range(len(teacher_hidden)) if layers is None else layers.tolist()

        def rows(h: Tensor) -> Tensor:
            return h if index is None else h.index_select(0, index)

        u = torch.stack([rows(teacher_hidden[i].detach()) @ at[0 if shared_t else k, : teacher_hidden[i].size(1)]
                         for k, i in enumerate(chosen)])
        w = torch.stack([rows(s) @ as_[0 if shared_s else j, : s.size(1)] for j, s in enumerate(student_hidden)])
        return u, w

    def projected(self, teacher_hidden: Sequence[Tensor], student_hidden: Sequence[Tensor],
                  index: Tensor | None, layers: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(T_i[index] P_t P, S_j[index] P_s P)`` for the teacher ``layers`` (all when
        ``None``) and every student layer: ``[Lt', n, d_a]`` and ``[Ls, n, d_a]``."""
        wt, ws, _, _ = self._dissimilarity_weights(layers)
        subspace = self._subspace()
        if subspace is not None:  # fold P into the projections
            wt, ws = wt @ subspace, ws @ subspace
        proj_t, proj_s = self.dissimilarity_projections()
        chosen = teacher_hidden if layers is None else [teacher_hidden[i] for i in layers.tolist()]
        x = pad_stack([t.detach() for t in chosen], proj_t.width, index)
        y = pad_stack(student_hidden, proj_s.width, index)
        return project_rows(x, wt), project_rows(y, ws)

    def pair_dissimilarity(self, u: Tensor, w: Tensor, total_nodes: int) -> Tensor:
        """``D [Lt', Ls]`` from projected rows ``u [Lt', n, d_a]`` and ``w [Ls, n, d_a]``
        (``"norm"``), reduced over nodes: the mean over the ``n`` rows, times ``total_nodes`` for a sum."""
        lt, n, _ = u.shape
        ls = w.size(0)
        if self.distance == "cosine":
            u, w = F.normalize(u, dim=-1), F.normalize(w, dim=-1)
            per_node_mean = 1.0 - (u.reshape(lt, -1) @ w.reshape(ls, -1).T) / n
        else:
            u_sq = u.pow(2).sum(dim=(1, 2)) / n
            w_sq = w.pow(2).sum(dim=(1, 2)) / n
            cross = (u.reshape(lt, -1) @ w.reshape(ls, -1).T) / n
            per_node_mean = (u_sq[:, None] + w_sq[None, :] - 2.0 * cross).clamp_min(0.0) / self.d_a**2
        return per_node_mean * total_nodes if self.node_reduction == "sum" else per_node_mean

    def vector_dissimilarity(self, u: Tensor, w: Tensor, total_nodes: int) -> Tensor:
        """``D [Lt', Ls]`` from eq. 4's node vectors ``u [Lt', n]``, ``w [Ls, n]`` (``"mean"``)."""
        if self.distance == "cosine":  # 1 - cos between the two node vectors
            return 1.0 - F.normalize(u, dim=1) @ F.normalize(w, dim=1).T
        per_node_mean = (u[:, None, :] - w[None, :, :]).pow(2).mean(dim=-1)
        return per_node_mean * total_nodes if self.node_reduction == "sum" else per_node_mean

    def dissimilarity(self, teacher_hidden: Sequence[Tensor], student_hidden: Sequence[Tensor],
                      index: Tensor | None = None, layers: Tensor | None = None,
                      total_nodes: int | None = None) -> Tensor:
        """``D [Lt', Ls]`` over the nodes ``index`` (all when ``None``) for the teacher ``layers``
        (all when ``None``), differentiable. A node sum is scaled to ``total_nodes`` (default:
        the rows of ``student_hidden``)."""
        self._check_layers(len(teacher_hidden), len(student_hidden))
        total = int(student_hidden[0].size(0)) if total_nodes is None else int(total_nodes)
        if self.embedding_reduction == "mean":
            return self.vector_dissimilarity(*self.node_vectors(teacher_hidden, student_hidden, index, layers), total)
        return self.pair_dissimilarity(*self.projected(teacher_hidden, student_hidden, index, layers), total)

    def sample(self, num_nodes: int, device: torch.device) -> Tensor | None:
        """This step's node sample (global RNG), or ``None`` for all nodes."""
        return sample_nodes(num_nodes, self.node_sample, device=device)

    # ------------------------------------------------------------------ the weighted sum (eq. 5)

    def weighted_sum(self, a: Tensor, teacher_hidden: Sequence[Tensor], student_hidden: Sequence[Tensor],
                     num_nodes: int) -> Tensor:
        """This step's estimate of ``sum_ij A_ij D_ij`` (node and teacher-layer samples)."""
        index = self.sample(num_nodes, a.device)
        total = self.graph_nodes or num_nodes

        def rows_of_d(layers: Tensor | None) -> Tensor:
            return self.dissimilarity(teacher_hidden, student_hidden, index, layers, total)

        if self.last_layer_only:  # only the last teacher row carries weight
            last = torch.tensor([a.size(0) - 1], device=a.device)
            return (a[-1:] * rows_of_d(last)).sum()
        return sampled_attention_sum(a, rows_of_d, self.layer_sample)

    def weighted_dissimilarity(self, a: Tensor, teacher_hidden: Sequence[Tensor],
                               student_hidden: Sequence[Tensor], num_nodes: int) -> Tensor:
        """Eq. 5, ``1_{Lt}^T (A o D) 1_{Ls} / Ls``: this step's estimate."""
        return self.weighted_sum(a, teacher_hidden, student_hidden, num_nodes) / a.size(1)

    @torch.no_grad()
    def full_dissimilarity(self, teacher_hidden: Sequence[Tensor], student_hidden: Sequence[Tensor],
                           seed: int = 0, chunk: int = 512) -> Tensor:
        """``D [Lt, Ls]`` of every pair over all nodes, or a fixed sample of
        :data:`DIAGNOSTIC_NODES` (its own RNG; a node sum scaled to all nodes); no gradients. For
        the diagnostics heatmaps."""
        num_nodes = int(student_hidden[0].size(0))
        device = student_hidden[0].device
        nodes = sample_nodes(num_nodes, DIAGNOSTIC_NODES, generator=torch.Generator().manual_seed(seed))
        nodes = (torch.arange(num_nodes) if nodes is None else nodes).to(device)
        total = self.graph_nodes or num_nodes
        if self.embedding_reduction == "mean":  # node vectors: cheap, and the cosine needs them whole
            return self.dissimilarity(teacher_hidden, student_hidden, nodes, None, total)
        acc = None
        for start in range(0, nodes.numel(), chunk):
            index = nodes[start:start + chunk]
            part = self.dissimilarity(teacher_hidden, student_hidden, index, None, total) * index.numel()
            acc = part if acc is None else acc + part
        return acc / nodes.numel()

    def _check_layers(self, lt: int, ls: int) -> None:
        if lt != self.teacher_proj.num_layers or ls != self.student_proj.num_layers:
            raise ValueError(
                f"built for {self.teacher_proj.num_layers} teacher and {self.student_proj.num_layers} student "
                f"layers, got {lt} and {ls}"
            )
