"""``tag``: the Topology Adaptive Graph Convolutional Network, a family that reads K hops per layer.

Du, Shi, Wu & Wang, "Topology Adaptive Graph Convolutional Networks", 2017,
https://arxiv.org/abs/1710.10370, Eq. 2: every layer is

    H' = sum_{k=0..K} (D^-1/2 A D^-1/2)^k H W_k

(PyG's ``TAGConv``), so a model of ``L`` layers reads ``L * K`` hops: 4 for the default two layers
of ``K = 2``. It shows two things a plugin family must get right:

* ``num_hops`` is ``num_layers * K``, not ``num_layers`` (latency requests, serving and
  mini-batches extract that many hops);
* the adjacency is normalised by degree. Inside the layer (``TAGConv(normalize=True)``), a served
  request's k-hop subgraph would be normalised with the subgraph's degrees; so the model declares
  ``normalize`` (the whole graph's ``D^-1/2 A D^-1/2``, no self-loops, computed once) and its layers
  take the weights (``TAGConv(normalize=False)``), through ``gkd_search.nn.LayerStack``;
* a layer reads ``K`` hops, so ``LayerStack``'s chunked inference (one hop per chunk) does not
  apply: ``chunked_inference=False`` runs the whole forward instead.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

from torch import Tensor
from torch_geometric.nn import TAGConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm

from gkd_search.nn import LayerStack, layer_widths, reject_unknown_params
from gkd_search.params import Choice, Param
from gkd_search.types import GraphModel, ModelFamily


def tag_normalize(edge_index: Tensor, num_nodes: int) -> tuple[Tensor, Tensor]:
    """``D^-1/2 A D^-1/2`` as weighted edges, without self-loops (TAGConv's ``gcn_norm``)."""
    return gcn_norm(edge_index, None, num_nodes, add_self_loops=False)


class TAGFamily(ModelFamily):
    """TAGCN node classifiers: ``num_layers`` TAGConv layers of ``K`` hops each."""

    name = "tag"
    description = "TAGCN, Du et al. 2017 (K-hop polynomial filters; reads num_layers * K hops)"
    paper = 'Du, Shi, Wu & Wang, "Topology Adaptive Graph Convolutional Networks", 2017'
    hyperparameters: ClassVar[Mapping[str, Param]] = {"K": Choice((2, 1))}
    default_num_layers = (1, 2)
    default_hidden_channels = (16, 32)

    def build(self, in_channels: int, num_classes: int, num_layers: int, hidden_channels: int,
              dropout: float = 0.0, **params: Any) -> GraphModel:
        reject_unknown_params(self.name, params, tuple(self.hyperparameters))
        k = int(params.get("K", 2))
        layers = [TAGConv(i, o, K=k, normalize=False)
                  for i, o in layer_widths(in_channels, hidden_channels, num_classes, num_layers)]
        # each layer reads K hops: LayerStack's one-hop chunks would be wrong, so no chunking
        return LayerStack(layers, dropout, uses_graph=True, normalize=tag_normalize, chunked_inference=False)

    def num_hops(self, num_layers: int, **params: Any) -> int:
        return num_layers * int(params.get("K", 2))
