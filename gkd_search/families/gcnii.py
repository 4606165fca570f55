"""GCNII (Chen, Wei, Huang, Ding & Li, "Simple and Deep Graph Convolutional Networks", ICML 2020,
https://arxiv.org/abs/2007.02133), Eq. 5 per layer:

``H^(l+1) = relu( ((1 - alpha) P H^(l) + alpha H^(0)) ((1 - beta_l) I + beta_l W^(l)) )``

with ``P = D^-1/2 (A + I) D^-1/2``, the initial residual ``H^(0) = relu(dropout(X) W_in + b_in)``
and the identity mapping strength ``beta_l = log(theta / l + 1)`` (the paper's ``lambda``; PyG's
``GCN2Conv`` calls it ``theta``). The logits are ``dropout(H^(L)) W_out + b_out``.

As the paper's Cora model (and PyG's ``examples/gcn2_cora.py``): dropout before the input
linear, before every convolution and before the output linear; one shared weight per layer
(GCNII, not GCNII*). ``P`` is computed once per forward, not once per layer.

The reference trains the convolutions with weight decay 0.01 and the linears with 5e-4:
:meth:`GCNII.parameter_groups` names the two groups, ``conv_weight_decay`` (``--teacher
gcnii:64:64:conv_weight_decay=0.01``) sets the first and ``weight_decay`` the second.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GCN2Conv

from .. import sparse
from ..errors import UsageError
from ..hookspecs import hookimpl
from ..params import Choice
from ..types import GraphModel, ModelFamily, ModelOutput
from . import _fast
from ._stack import gcn_normalize, layer_in_chunks, normalized_index, reject_unknown_params


class GCNII(GraphModel):
    """``Linear(in, hidden) -> ReLU (= x_0) -> num_layers x GCN2Conv -> Linear(hidden, classes)``.

    ``hidden`` holds ``num_layers + 1`` tensors: every convolution's output before its ReLU
    (``[N, hidden_channels]``), then the logits (``[N, num_classes]``). The input linear's output
    (``x_0``) is not among them.
    """

    def __init__(self, in_channels: int, hidden_channels: int, num_classes: int, num_layers: int,
                 alpha: float, theta: float, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = float(dropout)
        self.lin_in = nn.Linear(in_channels, hidden_channels)
        self.convs = nn.ModuleList(
            GCN2Conv(hidden_channels, alpha, theta, layer=layer, shared_weights=True, normalize=False)
            for layer in range(1, num_layers + 1)
        )
        self.lin_out = nn.Linear(hidden_channels, num_classes)

    @property
    def num_layers(self) -> int:
        return len(self.convs)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """``conv``: the convolutions' weights (decayed by ``conv_weight_decay``); ``dense``: the
        input and output linears."""
        return {"conv": list(self.convs.parameters()),
                "dense": [*self.lin_in.parameters(), *self.lin_out.parameters()]}

    def _initial(self, x: sparse.Features) -> Tensor:
        x = sparse.dropout(x, self.dropout, self.training)
        return F.relu(sparse.linear(x, self.lin_in.weight, self.lin_in.bias))

    def _sparse(self) -> bool:
        """Whether the convolutions run as CSR products (:mod:`gkd_search.families._fast`)."""
        return sparse.enabled() and all(_fast.gcn2_supported(conv) for conv in self.convs)

    def _logits(self, h: Tensor) -> Tensor:
        return self.lin_out(F.dropout(h, p=self.dropout, training=self.training))

    normalize = staticmethod(gcn_normalize)

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Optional[Tensor] = None) -> ModelOutput:
        """``edge_weight``: the edges are already normalised (``P``'s weights)."""
        if self._sparse():
            propagation = sparse.propagation_matrix(edge_index, x.size(0), normalize=gcn_normalize,
                                                    edge_weight=edge_weight)
            x_0 = h = self._initial(sparse.sparse_features(x))
        else:
            propagation = None
            if edge_weight is None:
                edge_index, edge_weight = gcn_normalize(edge_index, x.size(0))
            x_0 = h = self._initial(x)
        hidden: list[Tensor] = []
        for conv in self.convs:
            h = F.dropout(h, p=self.dropout, training=self.training)
            if propagation is not None:
                h = _fast.gcn2_conv(conv, h, x_0, propagation)
            else:
                h = conv(h, x_0, edge_index, edge_weight)
            hidden.append(h)
            h = F.relu(h)
        logits = self._logits(h)
        hidden.append(logits)
        return ModelOutput(logits=logits, hidden=hidden)

    @torch.no_grad()
    def inference(self, x: Tensor, edge_index: Tensor, edge_type: Optional[Tensor] = None, *,
                  chunk_size: Optional[int] = None, keep_hidden: bool = True) -> ModelOutput:
        """Layer by layer, ``chunk_size`` nodes at a time, as
        :meth:`~gkd_search.families._stack.LayerStack.inference`: ``P`` is normalised on the whole
        graph and its weights follow the chunk's edges (``sub.edge_ids``); ``x_0`` rows follow
        the chunk's nodes."""
        self.eval()
        num_nodes = x.size(0)
        if chunk_size is None or num_nodes <= chunk_size:
            return super().inference(x, edge_index, edge_type, keep_hidden=keep_hidden)
        index, edge_weight = normalized_index(edge_index, num_nodes)
        x_0 = h = self._initial(x)  # row-wise: needs no graph
        hidden: list[Tensor] = []
        fast = self._sparse()

        def run(conv: GCN2Conv, h: Tensor, sub) -> Tensor:
            if fast:
                propagation = sparse.propagation_matrix(sub.edge_index, sub.num_nodes,
                                                        edge_weight=edge_weight[sub.edge_ids])
                return _fast.gcn2_conv(conv, h[sub.nodes], x_0[sub.nodes], propagation)
            return conv(h[sub.nodes], x_0[sub.nodes], sub.edge_index, edge_weight[sub.edge_ids])

        for conv in self.convs:
            out = layer_in_chunks(index, chunk_size, lambda sub, conv=conv, h=h: run(conv, h, sub))
            if keep_hidden:
                hidden.append(out)
            h = F.relu(out)
        logits = self._logits(h)
        if keep_hidden:
            hidden.append(logits)
        return ModelOutput(logits=logits, hidden=hidden if keep_hidden else [logits])


class GCNIIFamily(ModelFamily):
    """Deep GCN with initial residual and identity mapping.

    ``num_layers`` counts the ``GCN2Conv`` layers (the model has two linears besides);
    ``hidden_channels`` is the width of ``x_0`` and of every convolution, also for one layer.
    Family parameters: ``alpha`` (initial residual), ``theta`` (the paper's ``lambda``).
    """

    name = "gcnii"
    description = "GCNII, Chen et al. 2020"
    paper = 'Chen, Wei, Huang, Ding & Li, "Simple and Deep Graph Convolutional Networks", ICML 2020'
    hidden_channels_at_one_layer = True
    hyperparameters = {"alpha": Choice((0.1, 0.2, 0.5)), "theta": Choice((0.5, 1.0, 1.5))}

    def build(self, in_channels: int, num_classes: int, num_layers: int, hidden_channels: int,
              dropout: float = 0.0, alpha: float = 0.1, theta: float = 0.5, **params: Any) -> GraphModel:
        reject_unknown_params(self.name, params, known=("alpha", "theta"))
        try:
            alpha, theta = float(alpha), float(theta)
        except (TypeError, ValueError):
            raise UsageError(f"gcnii: alpha={alpha!r} and theta={theta!r} must be numbers (e.g. alpha=0.1, theta=0.5)") from None
        if num_layers < 1:
            raise UsageError(f"gcnii: num_layers={num_layers} must be >= 1 (it counts the GCN2Conv layers)")
        if hidden_channels < 1:
            raise UsageError(f"gcnii: hidden_channels={hidden_channels} must be >= 1, also for a 1-layer model "
                             "(the convolutions run at that width)")
        if not 0.0 <= alpha <= 1.0:
            raise UsageError(f"gcnii: alpha={alpha} must be in [0, 1]")
        if theta <= 0.0:
            raise UsageError(f"gcnii: theta={theta} must be > 0")
        return GCNII(in_channels, hidden_channels, num_classes, num_layers, alpha, theta, dropout)


@hookimpl
def gkd_families() -> list[ModelFamily]:
    return [GCNIIFamily()]
