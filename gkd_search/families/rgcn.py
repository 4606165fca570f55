"""R-GCN (Schlichtkrull, Kipf, Bloem, van den Berg, Titov & Welling, "Modeling Relational Data with
Graph Convolutional Networks", ESWC 2018, https://arxiv.org/abs/1703.06103), Eq. 2 per layer:

``h_i' = W_0 h_i + sum_r sum_{j in N_i^r} (1 / |N_i^r|) W_r h_j + b``

(``c_{i,r} = |N_i^r|``, PyG's ``RGCNConv(aggr="mean")``), with optional basis decomposition,
Eq. 3: ``W_r = sum_b a_rb V_b``. Layers are stacked as every family here (dropout before each
layer, ReLU between, the last gives logits).

A ``bases`` count ``B >= num_relations`` falls back to full per-relation weights: ``B >= R``
bases span every choice of ``R`` matrices, so the model is no more constrained than with full
weights, only larger (``B (in x out) + R B`` against ``R (in x out)`` scalars per layer). The fall
back keeps one search space usable on graphs with few and with many relations.
"""

from __future__ import annotations

from typing import Any, Optional

from torch_geometric.nn import RGCNConv

from ..errors import UsageError
from ..hookspecs import hookimpl
from ..params import Choice
from ..types import GraphModel, ModelFamily
from ._stack import LayerStack, layer_widths, reject_unknown_params


def effective_bases(bases: int, num_relations: int) -> Optional[int]:
    """``RGCNConv``'s ``num_bases``: ``None`` (full weights) for ``bases == 0`` or ``bases >= num_relations``."""
    return bases if 0 < bases < num_relations else None


class RGCNFamily(ModelFamily):
    """Relational GCN: one weight per relation (or a basis mix), mean over each relation's neighbours.

    ``build`` takes ``num_relations`` (``R``, the relation types of the graph; 1 for a homogeneous
    graph). The model is called as ``model(x, edge_index, edge_type)`` (``edge_type=None``: every
    edge is relation 0). Family parameter ``bases``: 0 for full weights, else the number of basis
    matrices (Eq. 3), used only when smaller than ``R``.
    """

    name = "rgcn"
    description = "R-GCN, Schlichtkrull et al. 2018"
    paper = 'Schlichtkrull et al., "Modeling Relational Data with Graph Convolutional Networks", ESWC 2018'
    relational = True
    hyperparameters = {"bases": Choice((0, 4, 8))}

    def build(self, in_channels: int, num_classes: int, num_layers: int, hidden_channels: int,
              dropout: float = 0.0, num_relations: int = 1, bases: int = 0, **params: Any) -> GraphModel:
        reject_unknown_params(self.name, params, known=("bases",))
        if not isinstance(num_relations, int) or num_relations < 1:
            raise UsageError(f"rgcn: num_relations={num_relations!r} must be an integer >= 1")
        if not isinstance(bases, int) or bases < 0:
            raise UsageError(f"rgcn: bases={bases!r} must be an integer >= 0 (0: full per-relation weights)")
        num_bases = effective_bases(bases, num_relations)
        layers = [RGCNConv(i, o, num_relations, num_bases=num_bases, aggr="mean")
                  for i, o in layer_widths(in_channels, hidden_channels, num_classes, num_layers)]
        return LayerStack(layers, dropout, uses_graph=True, relational=True)


@hookimpl
def gkd_families() -> list[ModelFamily]:
    return [RGCNFamily()]
