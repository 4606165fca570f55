"""Similarity kernels and grouped softmax shared by the structure-preserving losses.

The kernels are the ones Yang et al. (CVPR 2020, arXiv:2003.10477, Sec. 3.2) discuss for the
similarity ``SIM(z_i, z_j)`` of the local-structure distribution, plus the cosine kernel that
Joshi et al. (TNNLS 2022, arXiv:2111.04964) run LSP/GSP with in their released scripts:

* ``rbf``:    ``k(x, y) = exp(-||x - y||^2 / (2 sigma^2))``
* ``linear``: ``k(x, y) = x^T y``
* ``poly``:   ``k(x, y) = (x^T y + 1)^2`` (degree 2, offset 1)
* ``cosine``: ``k(x, y) = x^T y / (||x|| ||y||)``

All of them act on the embeddings without a projection, so the student's and the teacher's
widths may differ.

Scale (``scale``, a hyperparameter of ``lsp`` and ``gsp``; our deviation from both papers, which
apply the kernels to raw embeddings). With ``"rms"`` (the default) each network's embeddings are
first divided by their root-mean-square row norm over the rows the loss reads
(:func:`unit_rms`), so the similarity distributions do not depend on the arbitrary overall scale
of either network. On raw embeddings they do: the linear and polynomial kernels' values grow
with the squared (fourth power of the) row norm, and a teacher's hidden rows are far from unit
norm (Photo's 256-wide GCN teacher: about 100, from un-normalised bag-of-words features), so
their softmax became one-hot and the loss at initialisation reached 1e3 to 1e18 times the
cross-entropy (measured on Photo, docs/methods.md), which collapsed the students; an RBF kernel
of bandwidth 1 saw every pair of teacher rows as dissimilar (uniform distributions, no
structure to transfer). ``"raw"`` is the papers' literal form. The cosine kernel is
scale-free either way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.utils import scatter

from ..params import Param

#: The kernel names, the LSP paper's best (RBF) first.
KERNELS: tuple[str, ...] = ("rbf", "linear", "poly", "cosine")

#: ``k(x, y) = (x^T y + POLY_OFFSET)^POLY_DEGREE``
POLY_OFFSET, POLY_DEGREE = 1.0, 2


#: ``rms``: embeddings divided by their root-mean-square row norm first; ``raw``: as given
SCALES: tuple[str, ...] = ("rms", "raw")


def check_scale(scale: str) -> str:
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; known: {', '.join(SCALES)}")
    return scale


def unit_rms(z: Tensor, rows: Tensor | None = None, eps: float = 1e-12) -> Tensor:
    """``z / sqrt(mean_v ||z_v||^2)`` with the mean over ``rows`` (a boolean mask; all rows when
    ``None``): the embeddings at unit root-mean-square row norm. Differentiable; a zero matrix
    stays zero."""
    squares = z.pow(2).sum(-1)
    mean = squares.mean() if rows is None else squares[rows].mean() if bool(rows.any()) else squares.new_zeros(())
    return z / mean.clamp_min(eps).sqrt()


def check_kernel(kernel: str) -> str:
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; known: {', '.join(KERNELS)}")
    return kernel


def edge_kernel(z: Tensor, src: Tensor, dst: Tensor, kernel: str, sigma: float = 1.0) -> Tensor:
    """``k(z[dst[e]], z[src[e]])`` for every edge ``e``: ``[E]``, O(E d)."""
    a, b = z[dst], z[src]
    if kernel == "rbf":
        return torch.exp(-(a - b).pow(2).sum(-1) / (2.0 * sigma**2))
    if kernel == "linear":
        return (a * b).sum(-1)
    if kernel == "poly":
        return ((a * b).sum(-1) + POLY_OFFSET).pow(POLY_DEGREE)
    if kernel == "cosine":
        return F.cosine_similarity(a, b, dim=-1)
    raise ValueError(f"unknown kernel {kernel!r}; known: {', '.join(KERNELS)}")


def pairwise_kernel(z: Tensor, kernel: str, sigma: float = 1.0) -> Tensor:
    """``K[i, j] = k(z_i, z_j)`` for all pairs of rows: ``[n, n]``, O(n^2 d)."""
    if kernel == "rbf":
        sq = z.pow(2).sum(-1)
        dist2 = (sq[:, None] + sq[None, :] - 2.0 * z @ z.t()).clamp_min(0.0)
        return torch.exp(-dist2 / (2.0 * sigma**2))
    if kernel == "linear":
        return z @ z.t()
    if kernel == "poly":
        return (z @ z.t() + POLY_OFFSET).pow(POLY_DEGREE)
    if kernel == "cosine":
        unit = F.normalize(z, p=2, dim=-1)
        return unit @ unit.t()
    raise ValueError(f"unknown kernel {kernel!r}; known: {', '.join(KERNELS)}")


def grouped_log_softmax(scores: Tensor, index: Tensor, num_groups: int) -> Tensor:
    """``log softmax`` of ``scores`` within each group of equal ``index`` (over edges).

    The log-space version of :func:`torch_geometric.utils.softmax`: it stays finite where a
    probability underflows to zero, so a KL divergence of sharp distributions does not NaN.
    """
    peak = scatter(scores.detach(), index, 0, dim_size=num_groups, reduce="max")
    shifted = scores - peak[index]
    log_norm = scatter(shifted.exp(), index, 0, dim_size=num_groups, reduce="sum").log()
    return shifted - log_norm[index]


def drop_diagonal(matrix: Tensor) -> Tensor:
    """``[n, n] -> [n, n - 1]``: every row without its diagonal entry, order kept."""
    n = matrix.size(0)
    if n < 2:
        return matrix.new_zeros(n, 0)
    return matrix.flatten()[1:].view(n - 1, n + 1)[:, :-1].reshape(n, n - 1)


def resolve_params(params: Mapping[str, Any], hyperparameters: Mapping[str, Param],
                   defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The declared hyperparameters' values: ``params`` where given, else ``defaults`` (the
    paper's values), else the declared :class:`~gkd_search.params.Param`'s ``default``.
    Keys that are not declared hyperparameters are ignored (a caller such as STRIDE may pass
    its whole parameter dict)."""
    return {name: params[name] if name in params else defaults.get(name, param.default)
            for name, param in hyperparameters.items()}
