"""``gsp``: the Global Structure Preserving loss.

Joshi, Liu, Xun, Lin & Foo, "On Representation Knowledge Distillation for Graph Neural
Networks", IEEE TNNLS 2022, https://arxiv.org/abs/2111.04964, Sec. III (GSP). The paper
describes GSP as LSP (Yang et al., CVPR 2020, Eqs. 2-4, see :mod:`.lsp`) extended from the
edges of the graph to all pairwise interactions; read literally, that is LSP on the fully
connected graph, which is the default here: node ``i``'s structure is its similarity
distribution over every other node

    GS_ij = exp(k(z_i, z_j)) / sum_{l != i} exp(k(z_i, z_l)),    j != i

in the student's and the teacher's embedding space (no projection; widths may differ), and

    L_GSP = 1/n sum_i KL(GS_i^T || GS_i^S)                                   (criterion "kl")

with the teacher's distribution as the target, as in :mod:`.lsp`. The kernels are those of
:mod:`._similarity`; the default is the cosine kernel, the one the authors' released scripts
run GSP with (on Cora, RBF with unit bandwidth on raw embeddings made the global distributions
of the 256-wide teacher nearly uniform and hurt the student). The released code matches the
raw kernel matrices with a mean squared error instead, available as ``criterion="mse"``:

    L_GSP = 1/(n (n - 1)) sum_{i != j} (k(z_i^S, z_j^S) - k(z_i^T, z_j^T))^2

Deviation for cost: all pairs of N nodes are O(N^2 d), so each call samples ``num_nodes``
nodes uniformly (torch's global RNG, seeded by the trial) and uses the pairs among them,
O(n^2 d); ``num_nodes = 0`` uses every row (only for small graphs: PubMed's 19,717 nodes would
need several GB). The released code samples likewise (4,096 nodes on ogbn-arxiv). The
diagonal ``i = j`` is left out in both criteria. ``edge_index`` is not read.

Scale (our deviation, hyperparameter ``scale``, default ``"rms"``): the kernels act on each
network's sampled embeddings divided by their root-mean-square row norm; ``"raw"`` is the
literal form. Why, and what it changed: :mod:`._similarity`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor

from ..hookspecs import hookimpl
from ..methods._common import sample_nodes
from ..params import Choice, Fixed, FloatRange, Param
from ..types import StructuralLoss, StructuralLossModule
from ._similarity import (
    KERNELS,
    SCALES,
    check_kernel,
    check_scale,
    drop_diagonal,
    pairwise_kernel,
    resolve_params,
    unit_rms,
)

CRITERIA = ("kl", "mse")


class GSPModule(StructuralLossModule):
    """``forward(student [N, d_s], teacher [N, d_t], edge_index) -> L_GSP`` on ``num_nodes``
    sampled rows (all rows when 0 or when there are fewer)."""

    def __init__(self, kernel: str = "cosine", sigma: float = 1.0, num_nodes: int = 1024,
                 criterion: str = "kl", scale: str = "rms") -> None:
        super().__init__()
        self.scale = check_scale(scale)
        if criterion not in CRITERIA:
            raise ValueError(f"unknown criterion {criterion!r}; known: {', '.join(CRITERIA)}")
        self.kernel, self.sigma = check_kernel(kernel), float(sigma)
        self.num_nodes, self.criterion = int(num_nodes), criterion

    def forward(self, student: Tensor, teacher: Tensor, edge_index: Tensor) -> Tensor:
        index = sample_nodes(student.size(0), self.num_nodes, device=student.device)
        if index is not None:
            student, teacher = student[index], teacher[index]
        if student.size(0) < 2:
            return student.sum() * 0.0  # no pairs
        if self.scale == "rms":
            student, teacher = unit_rms(student), unit_rms(teacher)
        k_s = drop_diagonal(pairwise_kernel(student, self.kernel, self.sigma))
        k_t = drop_diagonal(pairwise_kernel(teacher, self.kernel, self.sigma))
        if self.criterion == "mse":
            return (k_s - k_t).pow(2).mean()
        log_s, log_t = F.log_softmax(k_s, dim=-1), F.log_softmax(k_t, dim=-1)
        return (log_t.exp() * (log_t - log_s)).sum(-1).mean()

    def extra_repr(self) -> str:
        return (f"kernel={self.kernel!r}, sigma={self.sigma}, num_nodes={self.num_nodes}, "
                f"criterion={self.criterion!r}, scale={self.scale!r}")


class GSP(StructuralLoss):
    """Registered as ``gsp``; ``build`` fills missing hyperparameters from :attr:`defaults`."""

    name = "gsp"
    paper = ("Joshi et al., On Representation Knowledge Distillation for Graph Neural Networks, "
             "IEEE TNNLS 2022 (arXiv:2111.04964)")
    description = "LSP over all pairs of sampled nodes: KL (or MSE) of global similarity structure"
    hyperparameters: ClassVar[Mapping[str, Param]] = {
        "kernel": Choice(("cosine", *(k for k in KERNELS if k != "cosine"))),
        "sigma": FloatRange(0.25, 8.0, log=True),  # RBF bandwidth; unused by the other kernels
        "num_nodes": Fixed(1024),
        "criterion": Choice(CRITERIA),
        "scale": Fixed("rms", allowed=SCALES),
    }
    #: the values used when a hyperparameter is not given
    defaults: ClassVar[Mapping[str, Any]] = {"kernel": "cosine", "sigma": 1.0, "num_nodes": 1024,
                                             "criterion": "kl", "scale": "rms"}

    def build(self, params: Mapping[str, Any], student_channels: int, teacher_channels: int) -> GSPModule:
        p = resolve_params(params, self.hyperparameters, self.defaults)
        return GSPModule(kernel=p["kernel"], sigma=p["sigma"], num_nodes=p["num_nodes"],
                         criterion=p["criterion"], scale=p["scale"])


@hookimpl
def gkd_structural_losses() -> list[StructuralLoss]:
    return [GSP()]
