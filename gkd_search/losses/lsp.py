"""``lsp``: the Local Structure Preserving loss.

Yang, Qiu, Song, Tao & Wang, "Distilling Knowledge from Graph Convolutional Networks",
CVPR 2020, https://arxiv.org/abs/2003.10477, Sec. 3.2, Eqs. 2-4. For a node ``i`` and its
neighbours ``N(i)`` the *local structure* is a distribution over the neighbours (Eq. 2)

    LS_ij = exp(SIM(z_i, z_j)) / sum_{k in N(i)} exp(SIM(z_i, z_k)),    j in N(i)

computed once in the student's embedding space and once in the teacher's (the widths may
differ: there is no projection), with ``SIM`` a kernel (Eq. 3; the paper compares a linear, a
polynomial and an RBF kernel and finds RBF best, so ``rbf`` is the default here, see
:mod:`._similarity` for the formulas). The loss matches the two distributions node by node
(Eq. 4):

    L_LSP = 1/N' sum_i KL(LS_i^T || LS_i^S) = 1/N' sum_i sum_{j in N(i)} LS_ij^T log(LS_ij^T / LS_ij^S)

Scale (our deviation, hyperparameter ``scale``, default ``"rms"``): the kernels act on each
network's embeddings divided by their root-mean-square row norm over the rows the edges touch,
so the distributions do not depend on either network's arbitrary scale; ``"raw"`` is the
paper's literal form. Why, and what it changed: :mod:`._similarity`.

Notes on reading the paper:

* Direction of the KL. The paper writes ``D_KL(LS_i^s || LS_i^t)``; both released
  implementations (the authors' DistillGCN and Joshi et al.'s efficient-gnns) weight the log
  ratio by the *teacher's* distribution, the usual distillation direction, and so do we.
* ``N(i) = {j : (j, i) in E}``: the sources of the edges into ``i`` (PyG's
  ``source_to_target`` flow); self-loops count as neighbours if ``edge_index`` has them.
* ``N'`` is the number of nodes with at least one neighbour: a node without neighbours has no
  local structure and is skipped (the paper's graphs have none). A node with one neighbour
  contributes 0.

Cost: O(E d) -- one kernel value per edge and a grouped log-softmax over edges
(:func:`torch_geometric.utils.scatter`), so it runs full-graph every epoch. ``edge_index`` may
index any set of rows (STRIDE calls it on a sampled subset with a relabelled ``edge_index``).
A teacher tensor without gradient (the method's fixed teacher embeddings) on the same
``edge_index`` has its distributions computed once and reused at every step.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch_geometric.utils import scatter

from ..hookspecs import hookimpl
from ..params import Choice, Fixed, FloatRange, Param
from ..types import StructuralLoss, StructuralLossModule
from ._similarity import (
    KERNELS,
    SCALES,
    check_kernel,
    check_scale,
    edge_kernel,
    grouped_log_softmax,
    resolve_params,
    unit_rms,
)


def local_structure_log_probs(z: Tensor, edge_index: Tensor, kernel: str, sigma: float, scale: str = "rms") -> Tensor:
    """``log LS_ij`` for every edge ``(j, i)``, normalised over the edges into ``i`` (Eq. 2);
    ``scale="rms"`` first brings the rows the edges touch to unit root-mean-square norm
    (:func:`._similarity.unit_rms`)."""
    src, dst = edge_index
    if scale == "rms":
        touched = torch.zeros(z.size(0), dtype=torch.bool, device=z.device)
        touched[edge_index.reshape(-1)] = True
        z = unit_rms(z, touched)
    return grouped_log_softmax(edge_kernel(z, src, dst, kernel, sigma), dst, z.size(0))


class LSPModule(StructuralLossModule):
    """``forward(student [N, d_s], teacher [N, d_t], edge_index) -> L_LSP`` (Eq. 4)."""

    def __init__(self, kernel: str = "rbf", sigma: float = 1.0, scale: str = "rms") -> None:
        super().__init__()
        self.kernel, self.sigma, self.scale = check_kernel(kernel), float(sigma), check_scale(scale)
        self._teacher_cache: tuple[Any, Any, int, int, Tensor] | None = None

    def _teacher_log_probs(self, teacher: Tensor, edge_index: Tensor) -> Tensor:
        """The teacher's ``log LS``; a constant teacher (no gradient) on the same graph is
        computed once and reused at every step (halves the cost of the full-graph loss)."""
        if teacher.requires_grad:
            return local_structure_log_probs(teacher, edge_index, self.kernel, self.sigma, self.scale)
        cache = self._teacher_cache
        if (cache is not None and cache[0]() is teacher and cache[1]() is edge_index
                and cache[2] == teacher._version and cache[3] == edge_index._version):
            return cache[4]
        log_t = local_structure_log_probs(teacher, edge_index, self.kernel, self.sigma, self.scale)
        self._teacher_cache = (weakref.ref(teacher), weakref.ref(edge_index), teacher._version,
                               edge_index._version, log_t)
        return log_t

    def forward(self, student: Tensor, teacher: Tensor, edge_index: Tensor) -> Tensor:
        if edge_index.numel() == 0:
            return student.sum() * 0.0  # no local structure anywhere
        dst = edge_index[1]
        num_nodes = student.size(0)
        log_s = local_structure_log_probs(student, edge_index, self.kernel, self.sigma, self.scale)
        log_t = self._teacher_log_probs(teacher, edge_index)
        per_edge = log_t.exp() * (log_t - log_s)
        per_node = scatter(per_edge, dst, 0, dim_size=num_nodes, reduce="sum")
        has_neighbours = torch.bincount(dst, minlength=num_nodes) > 0
        return per_node.sum() / has_neighbours.sum()

    def extra_repr(self) -> str:
        return f"kernel={self.kernel!r}, sigma={self.sigma}, scale={self.scale!r}"


class LSP(StructuralLoss):
    """Registered as ``lsp``; ``build`` fills missing hyperparameters from :attr:`defaults`."""

    name = "lsp"
    paper = ("Yang et al., Distilling Knowledge from Graph Convolutional Networks, CVPR 2020 "
             "(arXiv:2003.10477)")
    description = "KL between teacher and student neighbour-similarity distributions over edges"
    hyperparameters: ClassVar[Mapping[str, Param]] = {
        "kernel": Choice(KERNELS),
        "sigma": FloatRange(0.25, 8.0, log=True),  # RBF bandwidth; unused by the other kernels
        "scale": Fixed("rms", allowed=SCALES),
    }
    #: the values used when a hyperparameter is not given (RBF with unit bandwidth)
    defaults: ClassVar[Mapping[str, Any]] = {"kernel": "rbf", "sigma": 1.0, "scale": "rms"}

    def build(self, params: Mapping[str, Any], student_channels: int, teacher_channels: int) -> LSPModule:
        p = resolve_params(params, self.hyperparameters, self.defaults)
        return LSPModule(kernel=p["kernel"], sigma=p["sigma"], scale=p["scale"])


@hookimpl
def gkd_structural_losses() -> list[StructuralLoss]:
    return [LSP()]
