"""The machinery ABKD and STRIDE share: per-layer projections, the layer-attention matrix, the
embedding dissimilarity of every teacher-student layer pair, and cheap unbiased estimates of the
attention-weighted sum.

Ahluwalia, Das, Behnam, Khare, Li & Tumanov, "ABKD: Graph Neural Network Compression with
Attention-Based Knowledge Distillation", arXiv:2310.15938v1 (2023), and the
same authors' "STRIDE: Structure and Embedding Distillation with Attention for Graph Neural
Networks", arXiv:2310.15938v2 (2025). With teacher layer outputs ``T_1..T_Lt`` (``[N, d_i]``)
and student layer outputs ``S_1..S_Ls`` (``[N, d_j]``):

* projections: one trainable linear map per teacher layer, ``P_t^i : d_i -> d_a``, and per
  student layer, ``P_s^j : d_j -> d_a`` (no bias, so that projecting the node mean equals the
  node mean of the projection);
* attention: ``T_p[i] = mean_v(T_i) P_t^i``, ``S_p[j] = mean_v(S_j) P_s^j`` and

      A = softmax( T_p S_p^T / sqrt(d_a) )          A in R^{Lt x Ls}

  normalised over the TEACHER axis (each column, one per student layer, sums to 1): every
  student layer spreads one unit of attention over the teacher layers, so that the loss
  ``1^T (A o D) 1 / Ls`` below is the mean over student layers of an attention-weighted
  dissimilarity;
* embedding dissimilarity, with the trainable subspace matrix ``P`` (``d_a x d_a``):

      D_ij = mean_v || (T_i[v] P_t^i - S_j[v] P_s^j) P / d_a ||^2

  (the ``/ d_a`` inside the norm, i.e. a factor ``1 / d_a^2``; the mean over nodes ``v``);
  ``distance="cosine"`` replaces it by ``mean_v (1 - cos(T_i[v] P_t^i P, S_j[v] P_s^j P))``;
* loss: ``L_abkd = 1^T (A o D) 1 / Ls``.

The paper's full text could not be fetched where this was written; the equations above are
those of our specification of the method section of v1 (attention map, dissimilarity, loss).
Where a detail was not given (softmax axis, bias, initialisation) the choice is stated here.

Cost. With a 64-layer, 64-wide teacher and ``d_a = 256`` the exact loss costs about three
times a student's training step on Cora in the projections alone (``T_i P_t^i P`` for all
64 layers: ``64 * 64 * 256^2`` multiply-adds for ``P_t^i P``, twice that backwards). So
(documented deviations; each is an unbiased estimate of the paper's quantity):

* ``D`` is averaged over a uniform random sample of ``node_sample`` nodes per step (torch's
  global RNG); ``0`` uses every node.
* ``layer_sample``: when the teacher has more layers than this, each step draws that many
  teacher layers ``i`` (with replacement) from the attention's teacher marginal
  ``c_i = sum_j A_ij / Ls`` and evaluates ``D`` only on their rows:

      sum_ij A_ij D_ij  ~=  1/K sum_k sum_j (A_{i_k j} / stopgrad(c_{i_k})) D_{i_k j}

  Value and gradients (to ``A``, the student, the projections, ``P``) are unbiased; a
  leave-one-out baseline (a term of value 0 and zero-mean gradient) lowers the variance of the
  gradient reaching ``A``. Compute goes where the attention is. ``0`` evaluates every layer;
  a teacher with at most ``layer_sample`` layers is always evaluated exactly.
* ``P`` is folded into the projections, ``T_i (P_t^i P)``: ``d_i d_a^2`` per layer instead of
  ``n d_a^2`` for ``n`` sampled nodes; ``||a - b||^2 = ||a||^2 + ||b||^2 - 2 <a, b>`` makes the
  cross terms of all pairs one matrix product; the teacher's node means are computed once.
* ``shared_projection`` keeps ONE map for all teacher layers (and one for all student layers);
  layers narrower than the widest are zero-padded to its width, i.e. use the first ``d_i`` rows
  of the shared weight.

Teacher scale (our deviation, ``teacher_scale="rms"``, the default; ``"raw"`` is the paper's
form): every teacher layer is divided by its root-mean-square row norm (a constant per layer,
computed once per teacher output and detached) before it is projected, for the attention and for
``D`` alike. ``D`` is a squared distance, so its size is the square of the teacher's activations,
which depend on the input features: the paper's teachers read row-normalised features (GCNII's
setting; activations of order 1), while Photo's 2-layer GCN teacher (raw bag-of-words) has
hidden rows of norm ~100 against ~6 on Cora, 250 times the energy. There ``beta = 100`` made ``D``
dominate and a 2-layer GAT student collapsed to 0.13 validation accuracy (majority rate 0.125;
0.90 without a teacher). At unit RMS the paper's ``beta`` means the same on every graph.
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
#: ``rms``: teacher layers divided by their root-mean-square row norm; ``raw``: as they are
TEACHER_SCALES = ("rms", "raw")


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
    """ABKD's attention ``A [Lt, Ls]`` and embedding dissimilarity ``D [Lt, Ls]``.

    Args:
        teacher_dims / student_dims: the width of every layer output (``hidden`` sizes).
        d_a: the attention / projection width.
        shared_projection: one projection for all teacher layers and one for all student layers.
        subspace: learn the subspace matrix ``P`` (initialised to the identity); ``False`` fixes
            ``P = I``.
        distance: ``"euclidean"`` or ``"cosine"``.
        last_layer_only: the paper's "modified ABKD" ablation: ``A`` is 1 on (last teacher
            layer, last student layer) and 0 elsewhere, not learned.
        node_sample: nodes per step for ``D`` (0: all).
        layer_sample: teacher layers drawn per step from the attention (0: all).
        anchored: our remedy for the collapse of ``D`` (not in the paper): ``D`` sends no
            gradient into the teacher's projections (the attention still trains them) and ``P``
            is rescaled to its initial Frobenius norm ``sqrt(d_a)`` at every use, so ``D`` can
            only shrink by moving the student (and its projections) towards the teacher.
        teacher_scale: ``"rms"`` divides each teacher layer by its root-mean-square row norm
            (module docstring); ``"raw"`` uses the outputs as they are.
    """

    def __init__(self, teacher_dims: Sequence[int], student_dims: Sequence[int], d_a: int, *,
                 shared_projection: bool = False, subspace: bool = True, distance: str = "euclidean",
                 last_layer_only: bool = False, node_sample: int = 256, layer_sample: int = 16,
                 anchored: bool = False, teacher_scale: str = "rms") -> None:
        super().__init__()
        self.anchored = bool(anchored)
        if teacher_scale not in TEACHER_SCALES:
            raise ValueError(f"teacher_scale must be one of {', '.join(TEACHER_SCALES)}, got {teacher_scale!r}")
        self.teacher_scale = teacher_scale
        if distance not in ("euclidean", "cosine"):
            raise ValueError(f"distance must be 'euclidean' or 'cosine', got {distance!r}")
        self.d_a = int(d_a)
        self.teacher_proj = LayerProjections(teacher_dims, self.d_a, shared_projection)
        self.student_proj = LayerProjections(student_dims, self.d_a, shared_projection)
        self.subspace = nn.Parameter(torch.eye(self.d_a)) if subspace else None
        self.distance = distance
        self.last_layer_only = bool(last_layer_only)
        self.node_sample = int(node_sample)
        self.layer_sample = int(layer_sample)
        self._teacher_src: list[Tensor] = []
        self._teacher_versions: list[int] = []
        self._teacher_means: Tensor | None = None
        self._teacher_scales: Tensor | None = None

    @property
    def num_teacher_layers(self) -> int:
        return self.teacher_proj.num_layers

    # ------------------------------------------------------------------ attention

    def teacher_scales(self, teacher_hidden: Sequence[Tensor]) -> Tensor:
        """``[Lt]``: what each teacher layer is divided by (its root-mean-square row norm, or 1
        with ``teacher_scale="raw"``), computed once per teacher output with the node means."""
        self.teacher_means(teacher_hidden)
        return self._teacher_scales

    def teacher_means(self, teacher_hidden: Sequence[Tensor]) -> Tensor:
        """``[Lt, width]`` node means of the (scaled) teacher layers, computed once per teacher output."""
        same = (len(teacher_hidden) == len(self._teacher_src)
                and all(a is b for a, b in zip(teacher_hidden, self._teacher_src))
                and [t._version for t in teacher_hidden] == self._teacher_versions)
        if not same or self._teacher_means is None:
            with torch.no_grad():
                if self.teacher_scale == "rms":
                    scales = torch.stack([t.detach().pow(2).sum(-1).mean().sqrt().clamp_min(1e-12) for t in teacher_hidden])
                else:
                    scales = torch.ones(len(teacher_hidden), device=teacher_hidden[0].device)
                means = [t.detach().mean(dim=0, keepdim=True) / scale for t, scale in zip(teacher_hidden, scales)]
                self._teacher_means = pad_stack(means, self.teacher_proj.width).squeeze(1)
                self._teacher_scales = scales
            self._teacher_src = list(teacher_hidden)
            self._teacher_versions = [t._version for t in teacher_hidden]
        return self._teacher_means

    def attention(self, teacher_hidden: Sequence[Tensor], student_hidden: Sequence[Tensor]) -> Tensor:
        """``A [Lt, Ls]``: softmax over the teacher axis of ``T_p S_p^T / sqrt(d_a)``."""
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
        return torch.softmax(t_p @ s_p.T / math.sqrt(self.d_a), dim=0)

    # ------------------------------------------------------------------ dissimilarity

    def projected(self, teacher_hidden: Sequence[Tensor], student_hidden: Sequence[Tensor],
                  index: Tensor | None, layers: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(T_i[index] P_t^i P, S_j[index] P_s^j P)`` for the teacher ``layers`` (all when
        ``None``) and every student layer: ``[Lt', n, d_a]`` and ``[Ls, n, d_a]``."""
        wt, ws = self.teacher_proj.weights(layers), self.student_proj.weights()
        if self.anchored:  # D does not train the teacher's projections (the attention still does)
            wt = wt.detach()
        if self.subspace is not None:  # fold P into the projections
            subspace = self.subspace
            if self.anchored:  # P keeps its initial Frobenius norm sqrt(d_a): it can turn, not shrink
                subspace = subspace * (math.sqrt(self.d_a) / subspace.norm().clamp_min(1e-12))
            wt, ws = wt @ subspace, ws @ subspace
        scales = self.teacher_scales(teacher_hidden)
        picked = range(len(teacher_hidden)) if layers is None else layers.tolist()
        x = pad_stack([teacher_hidden[i].detach() / scales[i] for i in picked], self.teacher_proj.width, index)
        y = pad_stack(student_hidden, self.student_proj.width, index)
        return project_rows(x, wt), project_rows(y, ws)

    def pair_dissimilarity(self, u: Tensor, w: Tensor) -> Tensor:
        """``D [Lt', Ls]`` from projected rows ``u [Lt', n, d_a]`` and ``w [Ls, n, d_a]``."""
        lt, n, _ = u.shape
        ls = w.size(0)
        if self.distance == "cosine":
            u, w = F.normalize(u, dim=-1), F.normalize(w, dim=-1)
            return 1.0 - (u.reshape(lt, -1) @ w.reshape(ls, -1).T) / n
        u_sq = u.pow(2).sum(dim=(1, 2)) / n
        w_sq = w.pow(2).sum(dim=(1, 2)) / n
        cross = (u.reshape(lt, -1) @ w.reshape(ls, -1).T) / n
        return (u_sq[:, None] + w_sq[None, :] - 2.0 * cross).clamp_min(0.0) / self.d_a**2

    def dissimilarity(self, teacher_hidden: Sequence[Tensor], student_hidden: Sequence[Tensor],
                      index: Tensor | None = None, layers: Tensor | None = None) -> Tensor:
        """``D [Lt', Ls]`` over the nodes ``index`` (all when ``None``) for the teacher
        ``layers`` (all when ``None``), differentiable."""
        self._check_layers(len(teacher_hidden), len(student_hidden))
        return self.pair_dissimilarity(*self.projected(teacher_hidden, student_hidden, index, layers))

    def sample(self, num_nodes: int, device: torch.device) -> Tensor | None:
        """This step's node sample (global RNG), or ``None`` for all nodes."""
        return sample_nodes(num_nodes, self.node_sample, device=device)

    def weighted_dissimilarity(self, a: Tensor, teacher_hidden: Sequence[Tensor],
                               student_hidden: Sequence[Tensor], num_nodes: int) -> Tensor:
        """This step's estimate of ``1^T (A o D) 1 / Ls`` (node and teacher-layer samples)."""
        index = self.sample(num_nodes, a.device)

        def rows_of_d(layers: Tensor | None) -> Tensor:
            return self.dissimilarity(teacher_hidden, student_hidden, index, layers)

        if self.last_layer_only:  # only the last teacher row carries weight
            last = torch.tensor([a.size(0) - 1], device=a.device)
            return (a[-1:] * rows_of_d(last)).sum() / a.size(1)
        return sampled_attention_sum(a, rows_of_d, self.layer_sample) / a.size(1)

    @torch.no_grad()
    def full_dissimilarity(self, teacher_hidden: Sequence[Tensor], student_hidden: Sequence[Tensor],
                           seed: int = 0, chunk: int = 512) -> Tensor:
        """``D [Lt, Ls]`` of every pair over all nodes, or a fixed sample of
        :data:`DIAGNOSTIC_NODES` (its own RNG), in chunks of nodes; no gradients. For the
        diagnostics heatmaps."""
        num_nodes = int(student_hidden[0].size(0))
        device = student_hidden[0].device
        nodes = sample_nodes(num_nodes, DIAGNOSTIC_NODES, generator=torch.Generator().manual_seed(seed))
        nodes = (torch.arange(num_nodes) if nodes is None else nodes).to(device)
        total = None
        for start in range(0, nodes.numel(), chunk):
            index = nodes[start:start + chunk]
            part = self.dissimilarity(teacher_hidden, student_hidden, index) * index.numel()
            total = part if total is None else total + part
        return total / nodes.numel()

    def _check_layers(self, lt: int, ls: int) -> None:
        if lt != self.teacher_proj.num_layers or ls != self.student_proj.num_layers:
            raise ValueError(
                f"built for {self.teacher_proj.num_layers} teacher and {self.student_proj.num_layers} student "
                f"layers, got {lt} and {ls}"
            )

