"""GCN (Kipf & Welling, ICLR 2017, https://arxiv.org/abs/1609.02907), Eq. 2 per layer."""

from __future__ import annotations

from typing import Any

from torch_geometric.nn import GCNConv

from ..hookspecs import hookimpl
from ..types import GraphModel, ModelFamily
from ._stack import LayerStack, gcn_normalize, layer_widths, reject_unknown_params


class GCNFamily(ModelFamily):
    """Graph convolutional network: ``H' = D^-1/2 (A + I) D^-1/2 H W``."""

    name = "gcn"
    description = "GCN, Kipf & Welling 2017"
    paper = 'Kipf & Welling, "Semi-Supervised Classification with Graph Convolutional Networks", ICLR 2017'

    def build(self, in_channels: int, num_classes: int, num_layers: int, hidden_channels: int,
              dropout: float = 0.0, **params: Any) -> GraphModel:
        reject_unknown_params(self.name, params)
        # the normalisation is computed once per forward, not once per layer
        layers = [GCNConv(i, o, normalize=False) for i, o in layer_widths(in_channels, hidden_channels, num_classes, num_layers)]
        return LayerStack(layers, dropout, uses_graph=True, normalize=gcn_normalize)


@hookimpl
def gkd_families() -> list[ModelFamily]:
    return [GCNFamily()]
