"""SGC (Wu, Souza, Zhang, Fifty, Yu & Weinberger, "Simplifying Graph Convolutional Networks",
ICML 2019, https://arxiv.org/abs/1902.07153), Eq. 8: ``Y = softmax(S^K X W)``.

``S = D^-1/2 (A + I) D^-1/2`` (the GCN normalisation, computed once per forward) and
``K = num_layers``. The model applies the linear map first and then propagates ``K`` times,
``h_0 = X W``, ``h_k = S h_{k-1}``: the same function as ``S^K X W`` (matrix products associate),
but it propagates ``C`` instead of ``F`` channels.

Deviations from the paper:

* a bias ``b`` is added after the last propagation, ``logits = S^K X W + b``, as PyG's ``SGConv``
  (the paper has no bias). It is not folded into ``W`` because ``S`` does not preserve constants
  (``S 1 != 1`` on a graph with unequal degrees);
* optional dropout on ``X`` before ``W`` (training only; the paper uses none).
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import SimpleConv

from .. import sparse
from ..errors import UsageError
from ..hookspecs import hookimpl
from ..types import GraphModel, ModelFamily, ModelOutput
from ._stack import gcn_normalize, layer_in_chunks, normalized_index, reject_unknown_params


class SGC(GraphModel):
    """``logits = S^K (dropout(X) W) + b``; ``hidden = [h_1, ..., h_K]`` (no activation; the bias
    is in ``h_K``, which is ``logits``).

    Args:
        in_channels: ``F``.
        num_classes: ``C``.
        num_layers: ``K``, the number of propagations (``>= 1``).
        dropout: dropout on ``X`` (training only).
    """

    def __init__(self, in_channels: int, num_classes: int, num_layers: int, dropout: float = 0.0) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.num_layers = int(num_layers)
        self.dropout = float(dropout)
        self.lin = nn.Linear(in_channels, num_classes, bias=False)
        self.bias = nn.Parameter(torch.zeros(num_classes))
        self.propagation = SimpleConv(aggr="sum")  # sum_j w_ji h_j, no parameters

    def _step(self, k: int, h: Tensor, edge_index: Tensor, edge_weight: Tensor) -> Tensor:
        if sparse.enabled():
            h = sparse.propagation_matrix(edge_index, h.size(0), edge_weight=edge_weight).matmul(h)
        else:
            h = self.propagation(h, edge_index, edge_weight)
        return h + self.bias if k == self.num_layers - 1 else h

    normalize = staticmethod(gcn_normalize)

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Optional[Tensor] = None) -> ModelOutput:
        """``edge_weight``: the edges are already normalised (``S``'s weights)."""
        hidden: list[Tensor] = []
        if sparse.enabled():  # S as one CSR matrix (gkd_search.sparse), built once per graph
            propagation = sparse.propagation_matrix(edge_index, x.size(0), normalize=gcn_normalize,
                                                    edge_weight=edge_weight)
            features = sparse.dropout(sparse.sparse_features(x), self.dropout, self.training)
            h = sparse.linear(features, self.lin.weight)
            for k in range(self.num_layers):
                h = propagation.matmul(h)
                h = h + self.bias if k == self.num_layers - 1 else h
                hidden.append(h)
            return ModelOutput(logits=h, hidden=hidden)
        if edge_weight is None:
            edge_index, edge_weight = gcn_normalize(edge_index, x.size(0))
        h = self.lin(F.dropout(x, p=self.dropout, training=self.training))
        for k in range(self.num_layers):
            h = self._step(k, h, edge_index, edge_weight)
            hidden.append(h)
        return ModelOutput(logits=h, hidden=hidden)

    @torch.no_grad()
    def inference(self, x: Tensor, edge_index: Tensor, edge_type: Optional[Tensor] = None, *,
                  chunk_size: Optional[int] = None, keep_hidden: bool = True) -> ModelOutput:
        """One propagation at a time, ``chunk_size`` nodes at a time (see
        :meth:`GraphModel.inference`); ``S`` is normalised on the whole graph first."""
        self.eval()
        num_nodes = x.size(0)
        if chunk_size is None or num_nodes <= chunk_size:
            return super().inference(x, edge_index, edge_type, keep_hidden=keep_hidden)
        index, edge_weight = normalized_index(edge_index, num_nodes)
        h = self.lin(x)  # row-wise: needs no graph
        hidden: list[Tensor] = []
        for k in range(self.num_layers):
            h = layer_in_chunks(index, chunk_size, lambda sub, k=k, h=h: self._step(
                k, h[sub.nodes], sub.edge_index, edge_weight[sub.edge_ids]))
            if keep_hidden:
                hidden.append(h)
        return ModelOutput(logits=h, hidden=hidden if keep_hidden else [h])


class SGCFamily(ModelFamily):
    """Simplified graph convolution: ``K = num_layers`` propagations of one linear map.

    ``hidden_channels`` is ignored (there is no hidden width; search spaces record 0).
    """

    name = "sgc"
    description = "SGC, Wu et al. 2019"
    paper = 'Wu et al., "Simplifying Graph Convolutional Networks", ICML 2019'
    uses_hidden_channels = False

    def build(self, in_channels: int, num_classes: int, num_layers: int, hidden_channels: int,
              dropout: float = 0.0, **params: Any) -> GraphModel:
        reject_unknown_params(self.name, params)
        if num_layers < 1:
            raise UsageError(f"sgc: num_layers={num_layers} must be >= 1 (it is K, the number of propagations)")
        return SGC(in_channels, num_classes, num_layers, dropout)


@hookimpl
def gkd_families() -> list[ModelFamily]:
    return [SGCFamily()]
