"""The built-in families' layers as sparse products (:mod:`gkd_search.sparse`).

Each function computes exactly what the PyG layer's ``forward`` computes (the same parameters,
the same equation), with the message passing as one CSR product ``M @ H`` instead of a gather and
scatter over the edges, and the input features in CSR when they are sparse. Outputs equal PyG's
within float rounding (the sums run in another order); ``tests/test_sparse.py`` checks every
family against the edge-list path (``gkd_search.sparse.disabled()``).

:func:`supports` says whether a layer has a sparse form here; a layer that has none (GAT's
attention, RGCN's relations, a plugin's layer) runs as PyG runs it.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn
from torch_geometric.nn import GCN2Conv, GCNConv, SAGEConv

from ..sparse import Features, SparseFeatures, SparseMatrix, dense, linear


def _pyg_linear_weight(lin: nn.Module) -> tuple[Tensor, Optional[Tensor]]:
    return lin.weight, getattr(lin, "bias", None)


def supports(layer: nn.Module) -> Optional[str]:
    """The propagation a layer needs (``"sum"`` of weighted messages, ``"mean"``), or ``None``
    when it has no sparse form here (or one but not with these settings)."""
    if type(layer) is GCNConv and not layer.normalize and layer.aggr == "add" and layer.flow == "source_to_target":
        return "sum"
    if (type(layer) is SAGEConv and layer.aggr == "mean" and not layer.project and not layer.normalize
            and layer.root_weight and layer.flow == "source_to_target"):
        return "mean"
    if type(layer) is nn.Linear:
        return "none"
    return None


def gcn_conv(conv: GCNConv, x: Features, propagation: SparseMatrix) -> Tensor:
    """``GCNConv(normalize=False)``: ``P (X W) + b`` (Kipf & Welling 2017, Eq. 2)."""
    weight, bias = _pyg_linear_weight(conv.lin)
    out = propagation.matmul(linear(x, weight, bias))
    return out if conv.bias is None else out + conv.bias


def sage_conv(conv: SAGEConv, x: Features, mean: SparseMatrix) -> Tensor:
    """``SAGEConv(aggr="mean")``: ``W_1 x_i + W_2 mean_{j -> i} x_j + b`` (Hamilton et al. 2017,
    Alg. 1 with the concatenation written as two maps, as PyG does).

    The mean is linear, so ``W_2 mean(x) = mean(W_2 x)``: with fewer output than input channels
    (or sparse input) both maps run first, as one product, and the mean reads the narrower
    result."""
    w_neigh, b_neigh = _pyg_linear_weight(conv.lin_l)
    w_root, _ = _pyg_linear_weight(conv.lin_r)
    out_channels, in_channels = w_neigh.shape
    if isinstance(x, SparseFeatures) or out_channels < in_channels:
        both = linear(x, torch.cat([w_neigh, w_root], dim=0))
        neigh, root = both[:, :out_channels], both[:, out_channels:]
        out = mean.matmul(neigh) + root
        return out if b_neigh is None else out + b_neigh
    x = dense(x)
    return torch.nn.functional.linear(mean.matmul(x), w_neigh, b_neigh) + torch.nn.functional.linear(x, w_root)


def run_layer(layer: nn.Module, x: Features, propagation: Optional[SparseMatrix]) -> Tensor:
    """One layer that :func:`supports` names, on ``propagation`` (the matrix of its kind)."""
    if type(layer) is GCNConv:
        return gcn_conv(layer, x, propagation)
    if type(layer) is SAGEConv:
        return sage_conv(layer, x, propagation)
    weight, bias = _pyg_linear_weight(layer)
    return linear(x, weight, bias)


def gcn2_conv(conv: GCN2Conv, h: Tensor, x_0: Tensor, propagation: SparseMatrix) -> Tensor:
    """``GCN2Conv`` (Chen et al. 2020, Eq. 5):
    ``((1 - alpha) P H + alpha H_0) ((1 - beta) I + beta W)`` (and ``W_2`` for GCNII*)."""
    h = propagation.matmul(h) * (1 - conv.alpha)
    x_0 = conv.alpha * x_0[:h.size(0)]
    if conv.weight2 is None:
        out = h + x_0
        return torch.addmm(out, out, conv.weight1, beta=1.0 - conv.beta, alpha=conv.beta)
    out = torch.addmm(h, h, conv.weight1, beta=1.0 - conv.beta, alpha=conv.beta)
    return out + torch.addmm(x_0, x_0, conv.weight2, beta=1.0 - conv.beta, alpha=conv.beta)


def gcn2_supported(conv: nn.Module) -> bool:
    return type(conv) is GCN2Conv and not conv.normalize and conv.aggr == "add" and conv.flow == "source_to_target"
