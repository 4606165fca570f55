"""GraphSAGE (Hamilton et al., NeurIPS 2017, https://arxiv.org/abs/1706.02216), mean aggregator, Alg. 1."""

from __future__ import annotations

from typing import Any

from torch_geometric.nn import SAGEConv

from ..hookspecs import hookimpl
from ..types import GraphModel, ModelFamily
from ._stack import LayerStack, layer_widths, reject_unknown_params


class SAGEFamily(ModelFamily):
    """GraphSAGE: ``h' = W_1 h + W_2 mean_{u in N(v)} h_u``."""

    name = "sage"
    description = "GraphSAGE (mean), Hamilton et al. 2017"
    paper = 'Hamilton, Ying & Leskovec, "Inductive Representation Learning on Large Graphs", NeurIPS 2017'

    def build(self, in_channels: int, num_classes: int, num_layers: int, hidden_channels: int,
              dropout: float = 0.0, **params: Any) -> GraphModel:
        reject_unknown_params(self.name, params)
        layers = [SAGEConv(i, o, aggr="mean") for i, o in layer_widths(in_channels, hidden_channels, num_classes, num_layers)]
        return LayerStack(layers, dropout, uses_graph=True)


@hookimpl
def gkd_families() -> list[ModelFamily]:
    return [SAGEFamily()]
