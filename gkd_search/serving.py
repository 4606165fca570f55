"""Answering a request for some nodes the way a deployed student answers it.

One code path serves three callers, so that what is timed is what is served and what is served
is what was evaluated:

* the ``request`` latency protocol (:mod:`gkd_search.latency`) times :func:`answer`;
* the registered MLflow model (:mod:`gkd_search.pyfunc`) answers ``node_id`` tables with it;
* the tests check that it returns exactly the full-graph outputs for every family.

A :class:`ServingGraph` is the graph as a server holds it in memory: the node features, a CSR
index of incoming edges and, for a model that normalises its edges (GCN, SGC, APPNP, GCNII:
``D^-1/2 (A + I) D^-1/2``), the edge weights computed once **on the whole graph**. A request
extracts the targets' k-hop in-neighbourhood (k = the model's hops) and runs the model on it
with those weights, so every target's output equals its row of the full-graph forward: a node at
distance ``d < k`` from a target keeps all its incoming edges, and the degrees in the weights
are the full graph's, not the subgraph's. With a ``fanout`` (``--fanout``) each hop keeps at
most that many sampled neighbours, as the model was trained; the answer is then an
approximation by design.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor

from .graph_ops import NeighbourhoodIndex, fanouts_for
from .types import GraphModel, run_model

#: ``normalize(edge_index, num_nodes) -> (edge_index, edge_weight)``
Normalizer = Callable[[Tensor, int], tuple[Tensor, Tensor]]


def normalizer_name(normalize: Optional[Normalizer]) -> str:
    """A stable name of a model's edge normalisation (``""`` for none), stored with a saved graph."""
    if normalize is None:
        return ""
    return f"{normalize.__module__}.{normalize.__qualname__}"


@dataclass
class ServingGraph:
    """The graph a server holds: features, incoming-edge CSR index, normalised edge weights.

    Attributes:
        x: ``[N, F]`` the features the model reads (a method's pre-propagated features for an
            InfGraND student).
        index: CSR index of the incoming edges (after normalisation: with GCN's self-loops).
        edge_weight: ``[E']`` the normalised weight of each indexed edge (``None``: raw edges).
        edge_type: ``[E']`` relation types for relational models (``None``: homogeneous).
        normalized_by: :func:`normalizer_name` of the normalisation the weights come from.
    """

    x: Tensor
    index: NeighbourhoodIndex
    edge_weight: Optional[Tensor] = None
    edge_type: Optional[Tensor] = None
    normalized_by: str = ""

    @classmethod
    def build(cls, x: Tensor, edge_index: Tensor, *, edge_type: Optional[Tensor] = None,
              normalize: Optional[Normalizer] = None) -> ServingGraph:
        """Index the whole graph once; with ``normalize``, normalise it first (its edge types are
        then dropped: a normalising family is not relational)."""
        num_nodes = int(x.size(0))
        edge_weight = None
        if normalize is not None:
            edge_index, edge_weight = normalize(edge_index, num_nodes)
            edge_type = None
        return cls(x, NeighbourhoodIndex(edge_index, num_nodes), edge_weight, edge_type, normalizer_name(normalize))

    @classmethod
    def for_model(cls, model: GraphModel, x: Tensor, edge_index: Tensor,
                  edge_type: Optional[Tensor] = None) -> ServingGraph:
        """The serving graph ``model`` needs: normalised with the model's own normalisation."""
        return cls.build(x, edge_index, edge_type=edge_type if model.relational else None,
                         normalize=getattr(model, "normalize", None))

    @property
    def num_nodes(self) -> int:
        return int(self.x.size(0))

    def state(self) -> dict[str, Any]:
        """Tensors and names only (``torch.load(weights_only=True)`` reads it back); sparse
        features (bag-of-words: about 1% non-zero) are stored sparse."""
        x = self.x
        density = float((x != 0).float().mean()) if x.numel() else 1.0
        return {
            "format": 1,
            "x": x.to_sparse() if density < 0.25 else x,
            "rowptr": self.index.rowptr, "src": self.index.src, "edge_ids": self.index.edge_ids,
            "edge_weight": self.edge_weight, "edge_type": self.edge_type, "normalized_by": self.normalized_by,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ServingGraph:
        x = state["x"]
        x = x.to_dense() if x.is_sparse else x
        index = NeighbourhoodIndex.from_csr(state["rowptr"], state["src"], state["edge_ids"])
        return cls(x, index, state.get("edge_weight"), state.get("edge_type"), str(state.get("normalized_by", "")))

    def check_model(self, model: GraphModel) -> None:
        """Raise ``ValueError`` when the graph was normalised for a different model."""
        wanted = normalizer_name(getattr(model, "normalize", None)) if model.uses_graph else self.normalized_by
        if wanted != self.normalized_by:
            raise ValueError(f"the serving graph is normalised by {self.normalized_by or 'nothing'!r}, "
                             f"the model needs {wanted or 'raw edges'!r}")


def answer(model: GraphModel, graph: ServingGraph, targets: Tensor, num_hops: int,
           fanout: Sequence[int] = (), generator: Optional[torch.Generator] = None) -> Tensor:
    """The model's logits for ``targets`` (node ids, may repeat), as one served request.

    A graph-free model (MLP) reads the targets' feature rows. A message-passing model runs on
    the targets' ``num_hops``-hop in-neighbourhood (sampled per hop with ``fanout``), with the
    whole graph's normalised edge weights when it normalises.
    """
    if not model.uses_graph:
        return model(graph.x[targets], graph.index.src.new_empty(2, 0)).logits
    seeds, positions = torch.unique(targets, return_inverse=True)
    fanouts = fanouts_for(fanout, num_hops) if fanout else [-1] * num_hops
    sub = graph.index.subgraph(seeds, fanouts, generator)
    edge_type = None if graph.edge_type is None else graph.edge_type[sub.edge_ids]
    edge_weight = None if graph.edge_weight is None else graph.edge_weight[sub.edge_ids]
    out = run_model(model, graph.x[sub.nodes], sub.edge_index, edge_type, edge_weight)
    return out.logits[positions]
