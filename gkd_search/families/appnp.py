"""APPNP (Gasteiger, Bojchevski & Guennemann, "Predict then Propagate: Graph Neural Networks meet
Personalized PageRank", ICLR 2019, https://arxiv.org/abs/1810.05997), Eq. 3-4.

Predict: ``H = f_theta(X)``, an MLP of ``num_layers`` linears (``in -> hidden ... -> classes``,
ReLU between, dropout before each). Propagate ``K`` steps of personalised PageRank:
``Z^(0) = H``, ``Z^(k+1) = (1 - alpha) S Z^(k) + alpha H``, logits ``= Z^(K)``, with
``S = D^-1/2 (A + I) D^-1/2`` computed once per forward (PyG's ``APPNP`` layer with
``normalize=False`` does the propagation).

Deviation: the paper also drops out adjacency entries during propagation; we do not (edge
dropout would make the propagation differ between training and the latency/inference path).
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import APPNP as APPNPPropagation

from .. import sparse
from ..errors import UsageError
from ..hookspecs import hookimpl
from ..params import Choice
from ..types import GraphModel, ModelFamily, ModelOutput
from ._stack import gcn_normalize, layer_in_chunks, layer_widths, normalized_index, reject_unknown_params


class APPNPModel(GraphModel):
    """MLP, then ``K`` personalised-PageRank steps.

    ``hidden`` holds ``num_layers`` tensors: the MLP's pre-activations except its last layer's
    (``[N, hidden_channels]``), then the propagated logits ``Z^(K)`` (``[N, num_classes]``).
    """

    def __init__(self, in_channels: int, hidden_channels: int, num_classes: int, num_layers: int,
                 K: int, alpha: float, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = float(dropout)
        self.lins = nn.ModuleList(nn.Linear(i, o) for i, o in layer_widths(in_channels, hidden_channels, num_classes, num_layers))
        self.propagation = APPNPPropagation(K, alpha, normalize=False)

    @property
    def num_layers(self) -> int:
        return len(self.lins)

    @property
    def K(self) -> int:
        return int(self.propagation.K)

    @property
    def alpha(self) -> float:
        return float(self.propagation.alpha)

    def _predict(self, x: sparse.Features, hidden: list[Tensor]) -> Tensor:
        """``H = f_theta(X)``; appends the hidden layers' pre-activations to ``hidden``."""
        h = x
        for i, lin in enumerate(self.lins):
            h = sparse.linear(sparse.dropout(h, self.dropout, self.training), lin.weight, lin.bias)
            if i < len(self.lins) - 1:
                hidden.append(h)
                h = F.relu(h)
        return h

    normalize = staticmethod(gcn_normalize)

    def _sparse(self) -> bool:
        """Whether propagation runs as CSR products (:mod:`gkd_search.sparse`): PyG's ``APPNP``
        without edge dropout, the only way this model builds it."""
        return sparse.enabled() and not (self.propagation.dropout > 0 and self.training)

    def _propagate(self, propagation: sparse.SparseMatrix, h: Tensor) -> Tensor:
        """``Z^(k+1) = (1 - alpha) S Z^(k) + alpha H``, ``K`` times (Eq. 4), as PyG's ``APPNP``."""
        z = h
        for _ in range(self.K):
            z = propagation.matmul(z) * (1 - self.alpha) + self.alpha * h
        return z

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Optional[Tensor] = None) -> ModelOutput:
        """``edge_weight``: the edges are already normalised (``S``'s weights)."""
        hidden: list[Tensor] = []
        if self._sparse():
            h = self._predict(sparse.sparse_features(x), hidden)
            propagation = sparse.propagation_matrix(edge_index, x.size(0), normalize=gcn_normalize,
                                                    edge_weight=edge_weight)
            logits = self._propagate(propagation, h)
        else:
            h = self._predict(x, hidden)
            if edge_weight is None:
                edge_index, edge_weight = gcn_normalize(edge_index, x.size(0))
            logits = self.propagation(h, edge_index, edge_weight)
        hidden.append(logits)
        return ModelOutput(logits=logits, hidden=hidden)

    @torch.no_grad()
    def inference(self, x: Tensor, edge_index: Tensor, edge_type: Optional[Tensor] = None, *,
                  chunk_size: Optional[int] = None, keep_hidden: bool = True) -> ModelOutput:
        """The MLP row-wise, then one propagation step at a time, ``chunk_size`` nodes at a time
        (see :meth:`GraphModel.inference`); ``S`` is normalised on the whole graph first."""
        self.eval()
        num_nodes = x.size(0)
        if chunk_size is None or num_nodes <= chunk_size:
            return super().inference(x, edge_index, edge_type, keep_hidden=keep_hidden)
        hidden: list[Tensor] = []
        h = self._predict(x, hidden)
        if not keep_hidden:
            hidden.clear()
        index, edge_weight = normalized_index(edge_index, num_nodes)
        alpha, z = self.alpha, h
        fast = self._sparse()

        def step(z: Tensor, sub) -> Tensor:
            if fast:
                propagation = sparse.propagation_matrix(sub.edge_index, sub.num_nodes,
                                                        edge_weight=edge_weight[sub.edge_ids])
                return propagation.matmul(z[sub.nodes]) * (1 - alpha) + alpha * h[sub.nodes]
            return (1 - alpha) * self.propagation.propagate(
                sub.edge_index, x=z[sub.nodes], edge_weight=edge_weight[sub.edge_ids]) + alpha * h[sub.nodes]

        for _ in range(self.K):  # Z <- (1 - alpha) S Z + alpha H, as PyG's APPNP.forward
            z = layer_in_chunks(index, chunk_size, lambda sub, z=z: step(z, sub))
        hidden.append(z)
        return ModelOutput(logits=z, hidden=hidden)


class APPNPFamily(ModelFamily):
    """Predict with an MLP, then propagate with personalised PageRank.

    ``num_layers`` counts the MLP's linears; a prediction reads ``K`` hops (:meth:`num_hops`).
    Family parameters: ``K`` (propagation steps), ``alpha`` (teleport probability).
    """

    name = "appnp"
    description = "APPNP, Gasteiger et al. 2019"
    paper = 'Gasteiger, Bojchevski & Guennemann, "Predict then Propagate", ICLR 2019'
    hyperparameters = {"K": Choice((10, 5, 2)), "alpha": Choice((0.1, 0.2))}

    def build(self, in_channels: int, num_classes: int, num_layers: int, hidden_channels: int,
              dropout: float = 0.0, K: int = 10, alpha: float = 0.1, **params: Any) -> GraphModel:
        reject_unknown_params(self.name, params, known=("K", "alpha"))
        K, alpha = self._check(K, alpha)
        if num_layers < 1:
            raise UsageError(f"appnp: num_layers={num_layers} must be >= 1 (it counts the MLP's linear layers)")
        return APPNPModel(in_channels, hidden_channels, num_classes, num_layers, K, alpha, dropout)

    @staticmethod
    def _check(K: Any, alpha: Any) -> tuple[int, float]:
        try:
            steps, teleport = float(K), float(alpha)
        except (TypeError, ValueError):
            raise UsageError(f"appnp: K={K!r} and alpha={alpha!r} must be numbers (e.g. K=10, alpha=0.1)") from None
        if steps != int(steps) or steps < 1:
            raise UsageError(f"appnp: K={K} must be an integer >= 1 (the number of propagation steps)")
        if not 0.0 < teleport <= 1.0:
            raise UsageError(f"appnp: alpha={alpha} must be in (0, 1] (the teleport probability)")
        return int(steps), teleport

    def num_hops(self, num_layers: int, K: int = 10, **params: Any) -> int:
        """``K``: the MLP is row-wise, each propagation step reads one more hop."""
        return int(K)


@hookimpl
def gkd_families() -> list[ModelFamily]:
    return [APPNPFamily()]
