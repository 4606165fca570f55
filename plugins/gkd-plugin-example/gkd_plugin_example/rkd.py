"""``rkd``: relational knowledge distillation on graphs.

Park, Kim, Lu & Cho, "Relational Knowledge Distillation", CVPR 2019,
https://arxiv.org/abs/1904.05068, Sec. 3.2. Instead of matching each node's embedding, the
student matches the *relations* between the teacher's embeddings, so the two widths may differ
and no projection is learned:

* distance-wise potential (Eqs. 3-4): ``psi_D(t_i, t_j) = ||t_i - t_j||_2 / mu``, with ``mu``
  the mean distance over the pairs used, computed separately for teacher and student (which
  makes the loss invariant to the scale of either space);
* angle-wise potential (Eq. 6): ``psi_A(t_i, t_j, t_k) = <e_ij, e_kj>``, the cosine of the angle
  at ``t_j``, with ``e_ij = (t_i - t_j) / ||t_i - t_j||_2``;
* each potential is matched with the Huber loss ``l_delta`` (``delta = 1``, Eqs. 5 and 7):

      L_RKD = mean_{(i,j)} l_delta(psi_D(t_i, t_j), psi_D(s_i, s_j))
              + angle_weight * mean_{(i,j,k)} l_delta(psi_A(t_i, t_j, t_k), psi_A(s_i, s_j, s_k))

  ``angle_weight`` defaults to 2, the paper's ``lambda_A / lambda_D = 2 / 1`` (Sec. 4.1).

Adaptation to graphs (``relations``): the paper takes every pair and triplet of a mini-batch of
images. A graph says which relations matter, so by default (``relations="graph"``) the pairs
are the graph's edges ``(i, j)`` and the triplets are the wedges ``i -> j <- k`` (two
neighbours ``i != k`` of the same node ``j``, the angle at ``j``): the relations a message-passing
student actually uses, O(E) instead of O(N^2). ``relations="random"`` is the paper's recipe on
uniformly drawn nodes. Either way at most ``samples`` pairs and ``samples`` triplets are drawn
per step (torch's global RNG, seeded by the trial), so the cost is O(samples * d).

The method ``rkd`` is ``L = CE + beta * L_RKD`` on the last representation before the classifier
(the paper applies RKD to the final embedding, Sec. 4.2); ``beta`` is the paper's
``lambda_D`` (1 by default).
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from gkd_search.nn import StructuralMethod
from gkd_search.params import Fixed, FloatRange, Param
from gkd_search.types import StructuralLoss, StructuralLossModule

RELATIONS = ("graph", "random")
PAPER = "Park, Kim, Lu & Cho, Relational Knowledge Distillation, CVPR 2019 (Eqs. 3-7)"


def distance_potential(z: Tensor, i: Tensor, j: Tensor) -> Tensor:
    """``psi_D`` (Eqs. 3-4): pair distances divided by their mean (``mu``)."""
    d = (z[i] - z[j]).norm(dim=-1)
    return d / d.detach().mean().clamp_min(1e-12) if d.numel() else d


def angle_potential(z: Tensor, i: Tensor, j: Tensor, k: Tensor) -> Tensor:
    """``psi_A`` (Eq. 6): the cosine of the angle at ``z_j`` between ``z_i`` and ``z_k``."""
    e_ij = F.normalize(z[i] - z[j], dim=-1)
    e_kj = F.normalize(z[k] - z[j], dim=-1)
    return (e_ij * e_kj).sum(dim=-1)


def graph_pairs(edge_index: Tensor, samples: int) -> tuple[Tensor, Tensor]:
    """The edges ``(i, j)``, or ``samples`` of them drawn uniformly when there are more."""
    src, dst = edge_index
    if samples > 0 and src.numel() > samples:
        pick = torch.randint(0, src.numel(), (samples,), device=src.device)
        src, dst = src[pick], dst[pick]
    return src, dst


def graph_wedges(edge_index: Tensor, num_nodes: int, samples: int) -> tuple[Tensor, Tensor, Tensor]:
    """``samples`` wedges ``i -> j <- k`` (``i != k``): an edge ``(i, j)`` drawn uniformly, then a
    second in-neighbour ``k`` of ``j`` drawn uniformly among ``j``'s in-edges."""
    src, dst = edge_index
    empty = src.new_empty(0)
    if src.numel() == 0 or samples <= 0:
        return empty, empty, empty
    order = torch.argsort(dst)
    degree = torch.bincount(dst, minlength=num_nodes)
    start = torch.cumsum(degree, 0) - degree
    first = torch.randint(0, src.numel(), (samples,), device=src.device)
    i, j = src[first], dst[first]
    offset = (torch.rand(samples, device=src.device) * degree[j]).long().clamp_max(degree[j] - 1)
    k = src[order[start[j] + offset]]
    keep = i != k
    return i[keep], j[keep], k[keep]


def random_pairs(num_nodes: int, samples: int, device: torch.device) -> tuple[Tensor, Tensor]:
    i = torch.randint(0, num_nodes, (samples,), device=device)
    j = torch.randint(0, num_nodes, (samples,), device=device)
    keep = i != j
    return i[keep], j[keep]


def random_triplets(num_nodes: int, samples: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    i, j, k = (torch.randint(0, num_nodes, (samples,), device=device) for _ in range(3))
    keep = (i != j) & (k != j) & (i != k)
    return i[keep], j[keep], k[keep]


class RKDModule(StructuralLossModule):
    """``forward(student [N, d_s], teacher [N, d_t], edge_index [2, E]) -> L_RKD``."""

    def __init__(self, angle_weight: float = 2.0, relations: str = "graph", samples: int = 4096) -> None:
        super().__init__()
        if relations not in RELATIONS:
            raise ValueError(f"rkd: relations must be one of {', '.join(RELATIONS)}, got {relations!r}")
        self.angle_weight, self.relations, self.samples = float(angle_weight), relations, int(samples)

    def forward(self, student: Tensor, teacher: Tensor, edge_index: Tensor) -> Tensor:
        num_nodes = student.size(0)
        if self.relations == "graph":
            i, j = graph_pairs(edge_index, self.samples)
            a, b, c = graph_wedges(edge_index, num_nodes, self.samples)
        else:
            count = self.samples if self.samples > 0 else num_nodes * num_nodes
            i, j = random_pairs(num_nodes, count, student.device)
            a, b, c = random_triplets(num_nodes, count, student.device)
        loss = student.sum() * 0.0  # finite and connected to the student when there is no relation
        if i.numel():
            loss = loss + F.smooth_l1_loss(distance_potential(student, i, j), distance_potential(teacher, i, j))
        if a.numel() and self.angle_weight:
            loss = loss + self.angle_weight * F.smooth_l1_loss(angle_potential(student, a, b, c),
                                                               angle_potential(teacher, a, b, c))
        return loss


class RKDLoss(StructuralLoss):
    """RKD's distance- and angle-wise losses as a registered structural loss (usable by the
    ``rkd`` method and by STRIDE's ``structure`` option)."""

    name = "rkd"
    paper = PAPER
    description = "relational KD: match edge distances and wedge angles of the embeddings"
    hyperparameters: ClassVar[Mapping[str, Param]] = {
        "angle_weight": FloatRange(0.5, 8.0, log=True),  # default: the geometric mean, 2
        "relations": Fixed("graph", allowed=RELATIONS),
        "samples": Fixed(4096),
    }

    def build(self, params: Mapping[str, Any], student_channels: int, teacher_channels: int) -> RKDModule:
        values = {name: params.get(name, param.default) for name, param in self.hyperparameters.items()}
        return RKDModule(**values)


class RKDMethod(StructuralMethod):
    """``L = CE + beta * L_RKD(student representation, teacher representation, edges)``."""

    name = "rkd"
    paper = PAPER
    description = "CE + beta * RKD (distance + angle relations over the graph's edges and wedges)"
    loss_class = RKDLoss
    hyperparameters: ClassVar[Mapping[str, Param]] = {"beta": FloatRange(0.1, 10.0, log=True), **RKDLoss.hyperparameters}
    default_beta = 1.0
