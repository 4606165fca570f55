"""``gin``: the Graph Isomorphism Network.

Xu, Hu, Leskovec & Jegelka, "How Powerful are Graph Neural Networks?", ICLR 2019,
https://arxiv.org/abs/1810.00826, Eq. 4.1: every layer ``k`` is

    h_v^(k) = MLP^(k)( (1 + eps^(k)) * h_v^(k-1) + sum_{u in N(v)} h_u^(k-1) )

a sum aggregator (injective on multisets, unlike mean or max) followed by a 2-layer MLP
``Linear(d_in, hidden_channels) -> ReLU -> Linear(hidden_channels, d_out)`` (so a 1-layer model
has a hidden width too). ``eps`` is 0 ("GIN-0", the variant
the paper found to generalise best) or learned per layer ("GIN-eps"): the family parameter
``train_eps`` chooses. The last layer's MLP outputs the classes, and, as in gkd-search's
families, ``hidden`` holds every layer's output before the ReLU between layers.

Deviation: the paper's MLPs use batch normalisation (graph classification); here they do not,
so a model's output for a node does not depend on which other nodes share its batch, which
keeps layer-wise chunked inference exact and latency requests independent of each other.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

from torch import nn
from torch_geometric.nn import GINConv

from gkd_search.nn import LayerStack, layer_widths, reject_unknown_params
from gkd_search.params import Choice, Param
from gkd_search.types import GraphModel, ModelFamily


def gin_mlp(in_channels: int, hidden_channels: int, out_channels: int) -> nn.Sequential:
    """``MLP^(k)`` of Eq. 4.1: two linear maps with a ReLU between them."""
    return nn.Sequential(nn.Linear(in_channels, hidden_channels), nn.ReLU(), nn.Linear(hidden_channels, out_channels))


class GINFamily(ModelFamily):
    """GIN-0 / GIN-eps node classifiers: ``num_layers`` GIN layers, the last one to the classes."""

    name = "gin"
    description = "GIN, Xu et al. 2019 (sum aggregation + 2-layer MLP per layer)"
    paper = 'Xu, Hu, Leskovec & Jegelka, "How Powerful are Graph Neural Networks?", ICLR 2019'
    hyperparameters: ClassVar[Mapping[str, Param]] = {"train_eps": Choice((False, True))}
    default_hidden_channels = (16, 32, 64)
    #: a 1-layer GIN still has a hidden width: its MLP's
    hidden_channels_at_one_layer = True

    def build(self, in_channels: int, num_classes: int, num_layers: int, hidden_channels: int,
              dropout: float = 0.0, **params: Any) -> GraphModel:
        reject_unknown_params(self.name, params, tuple(self.hyperparameters))
        if hidden_channels < 1:
            raise ValueError(f"gin: hidden_channels must be >= 1 (every layer's MLP has that width), got {hidden_channels}")
        train_eps = bool(params.get("train_eps", False))
        layers = [GINConv(gin_mlp(i, hidden_channels, o), train_eps=train_eps)
                  for i, o in layer_widths(in_channels, hidden_channels, num_classes, num_layers)]
        return LayerStack(layers, dropout, uses_graph=True)
