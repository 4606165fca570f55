"""Multi-layer perceptron: the graph-free student of GLNN (Zhang et al., ICLR 2022)."""

from __future__ import annotations

from typing import Any

from torch import nn

from ..hookspecs import hookimpl
from ..types import GraphModel, ModelFamily
from ._stack import LayerStack, layer_widths, reject_unknown_params


class MLPFamily(ModelFamily):
    """Linear layers with ReLU; reads node features only, so inference needs no graph."""

    name = "mlp"
    description = "MLP (graph-free at inference)"
    paper = 'Rosenblatt 1958; Rumelhart, Hinton & Williams 1986 (a multilayer perceptron on node features)'
    uses_graph = False

    def build(self, in_channels: int, num_classes: int, num_layers: int, hidden_channels: int,
              dropout: float = 0.0, **params: Any) -> GraphModel:
        reject_unknown_params(self.name, params)
        layers = [nn.Linear(i, o) for i, o in layer_widths(in_channels, hidden_channels, num_classes, num_layers)]
        return LayerStack(layers, dropout, uses_graph=False)


@hookimpl
def gkd_families() -> list[ModelFamily]:
    return [MLPFamily()]
