"""GAT (Velickovic et al., ICLR 2018, https://arxiv.org/abs/1710.10903), Eq. 5-6."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch_geometric.nn import GATConv

from ..errors import UsageError
from ..hookspecs import hookimpl
from ..params import Choice
from ..types import GraphModel, ModelFamily
from ._stack import LayerStack, layer_widths, reject_unknown_params


class GATFamily(ModelFamily):
    """Graph attention network.

    ``hidden_channels`` is the width of a hidden layer's concatenated output, as in PyG's
    ``GAT`` model: each of the ``heads`` heads has ``hidden_channels // heads`` channels, so
    ``hidden_channels`` must be a multiple of ``heads``. The output layer has one head.
    """

    name = "gat"
    description = "GAT, Velickovic et al. 2018"
    paper = 'Velickovic et al., "Graph Attention Networks", ICLR 2018'
    hyperparameters = {"heads": Choice((1, 2, 4, 8))}
    single_layer_ignores = frozenset({"heads"})

    def build(self, in_channels: int, num_classes: int, num_layers: int, hidden_channels: int,
              dropout: float = 0.0, heads: int = 1, **params: Any) -> GraphModel:
        reject_unknown_params(self.name, params, known=("heads",))
        heads = int(heads)
        if num_layers > 1 and hidden_channels % heads:
            raise UsageError(f"gat: hidden_channels={hidden_channels} is not a multiple of heads={heads}")
        layers = []
        widths = layer_widths(in_channels, hidden_channels, num_classes, num_layers)
        for index, (i, o) in enumerate(widths):
            last = index == len(widths) - 1
            if last:
                layers.append(GATConv(i, o, heads=1))
            else:
                layers.append(GATConv(i, o // heads, heads=heads, concat=True))
        return LayerStack(layers, dropout, uses_graph=True, act=F.elu)


@hookimpl
def gkd_families() -> list[ModelFamily]:
    return [GATFamily()]
