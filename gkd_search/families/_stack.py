"""A stack of layers that records every layer's pre-activation output (shared by the families)."""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import sparse
from ..errors import UsageError
from ..graph_ops import NeighbourhoodIndex, Subgraph
from ..types import GraphModel, ModelOutput
from . import _fast


def layer_widths(in_channels: int, hidden_channels: int, num_classes: int, num_layers: int) -> list[tuple[int, int]]:
    """``(in, out)`` of each layer: ``in -> hidden -> ... -> hidden -> classes``."""
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    dims = [in_channels] + [hidden_channels] * (num_layers - 1) + [num_classes]
    return list(zip(dims[:-1], dims[1:]))


def reject_unknown_params(family: str, params: dict, known: tuple[str, ...] = ()) -> None:
    """Raise :class:`UsageError` for a family parameter the family does not have."""
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise UsageError(
            f"{family}: unknown family parameter {unknown[0]!r} (known: {', '.join(known) or 'none'})"
        )


#: ``normalize(edge_index, num_nodes) -> (edge_index, edge_weight)``: a family's edge weights
#: (GCN's symmetric normalisation with self-loops), computed once per forward for all layers
Normalizer = Callable[[Tensor, int], tuple[Tensor, Tensor]]


def gcn_normalize(edge_index: Tensor, num_nodes: int) -> tuple[Tensor, Tensor]:
    """``D^-1/2 (A + I) D^-1/2`` as weighted edges (Kipf & Welling 2017, Eq. 2)."""
    from torch_geometric.nn.conv.gcn_conv import gcn_norm

    edge_index, edge_weight = gcn_norm(edge_index, None, num_nodes, add_self_loops=True)
    return edge_index, edge_weight


def normalized_index(edge_index: Tensor, num_nodes: int) -> tuple[NeighbourhoodIndex, Tensor]:
    """The whole graph's GCN-normalised edges as a chunking index, and their weights (which a
    chunk gathers with ``sub.edge_ids``), for the chunked inference of SGC, APPNP and GCNII."""
    edge_index, edge_weight = gcn_normalize(edge_index, num_nodes)
    return NeighbourhoodIndex(edge_index, num_nodes), edge_weight


def layer_in_chunks(index: NeighbourhoodIndex, chunk_size: int, layer: Callable[[Subgraph], Tensor]) -> Tensor:
    """One layer's output for every node, computed ``chunk_size`` nodes at a time.

    ``layer(sub)`` returns rows for ``sub.nodes`` (the chunk's seeds first, then their
    in-neighbours) computed on the chunk's full 1-hop in-neighbourhood ``sub``; the seeds' rows
    are exact, the others are dropped. :meth:`LayerStack.inference` uses it for
    every layer; SGC, APPNP and GCNII for layers that need more than ``layer(x, edge_index)``
    (GCNII's ``x_0``, APPNP's teleport term).
    """
    out: Optional[Tensor] = None
    for sub in index.chunks(chunk_size):
        rows = layer(sub)[:sub.num_seeds]
        if out is None:
            out = rows.new_empty(index.num_nodes, rows.size(-1))
        out[sub.nodes[:sub.num_seeds]] = rows
    assert out is not None, "a graph without nodes"
    return out


class LayerStack(GraphModel):
    """``dropout -> layer -> (record) -> activation`` for every layer but the last, which gives logits.

    Its chunked :meth:`inference` and a served request (:mod:`gkd_search.serving`) are exact for
    layers that read one hop of in-neighbours and do not normalise by degree themselves (GCN with
    ``normalize=``, GraphSAGE, GAT, GIN). A layer reading several hops (``TAGConv(K=2)``) needs the
    family's ``num_hops`` to say so and its own chunked inference; a layer normalising inside
    (``GCNConv(normalize=True)``, ``ChebConv``) must get its normalisation as ``normalize=`` instead,
    or it would see a chunk's or a request's degrees. ``gkd_search.testing.check_family`` fails
    for both.

    Args:
        layers: the layers, each called as ``layer(x, edge_index)`` when ``uses_graph`` (with
            ``edge_weight`` when ``normalize`` is given, ``edge_type`` when ``relational``),
            else ``layer(x)``.
        dropout: feature dropout before every layer (training only).
        uses_graph: whether the layers read ``edge_index``.
        normalize: edge weights computed once per forward and passed to every layer, so the
            layers themselves do not normalise (GCN, GCNII); :meth:`inference` computes them on
            the whole graph, which keeps chunked inference exact.
        relational: the layers take ``edge_type`` (RGCN).
        chunked_inference: False for layers that read more than one hop (``TAGConv(K=2)``):
            :meth:`inference` then runs the whole forward at once (exact, not chunked).
    """

    def __init__(self, layers: list[nn.Module], dropout: float, uses_graph: bool,
                 act: Callable[[Tensor], Tensor] = F.relu, normalize: Optional[Normalizer] = None,
                 relational: bool = False, chunked_inference: bool = True) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.dropout = float(dropout)
        self.uses_graph = uses_graph
        self.relational = relational
        self.act = act
        self.normalize = normalize
        self.chunked_inference = chunked_inference

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def _run_layer(self, layer: nn.Module, x: Tensor, edge_index: Optional[Tensor], edge_weight: Optional[Tensor],
               edge_type: Optional[Tensor]) -> Tensor:
        if not self.uses_graph:
            return layer(x)
        if self.relational:
            if edge_type is None:  # a homogeneous graph: one relation
                edge_type = edge_index.new_zeros(edge_index.size(1))
            return layer(x, edge_index, edge_type)
        if edge_weight is not None:
            return layer(x, edge_index, edge_weight)
        return layer(x, edge_index)

    def _sparse_kind(self) -> Optional[str]:
        """The propagation every layer shares when all have a sparse form (``"sum"``, ``"mean"``,
        ``"none"`` for graph-free layers), else ``None`` (:mod:`gkd_search.families._fast`)."""
        if self.relational or not sparse.enabled():
            return None
        kinds = {_fast.supports(layer) for layer in self.layers}
        if None in kinds:
            return None
        graph_kinds = kinds - {"none"}
        if not self.uses_graph:
            return "none" if not graph_kinds else None
        return graph_kinds.pop() if len(graph_kinds) == 1 else None

    def _forward_sparse(self, x: Tensor, propagation: Optional[sparse.SparseMatrix]) -> ModelOutput:
        """:meth:`forward` with CSR products (:mod:`gkd_search.sparse`); the same outputs."""
        h: sparse.Features = sparse.sparse_features(x)
        hidden: list[Tensor] = []
        for i, layer in enumerate(self.layers):
            h = sparse.dropout(h, self.dropout, self.training)
            h = _fast.run_layer(layer, h, propagation)
            hidden.append(h)
            if i < len(self.layers) - 1:
                h = self.act(h)
        return ModelOutput(logits=h, hidden=hidden)

    def _propagation(self, kind: str, edge_index: Tensor, num_nodes: int,
                     edge_weight: Optional[Tensor]) -> Optional[sparse.SparseMatrix]:
        if kind == "none":
            return None
        return sparse.propagation_matrix(edge_index, num_nodes, normalize=self.normalize, edge_weight=edge_weight,
                                         reduce=kind)

    def forward(self, x: Tensor, edge_index: Optional[Tensor] = None, edge_type: Optional[Tensor] = None,
                edge_weight: Optional[Tensor] = None) -> ModelOutput:
        """``edge_weight``: the edges are already normalised (see :attr:`GraphModel.normalize`)."""
        kind = self._sparse_kind()
        if kind is not None and (kind != "none" or sparse.sparse_features(x) is not x):
            return self._forward_sparse(x, self._propagation(kind, edge_index, x.size(0), edge_weight))
        if self.uses_graph and self.normalize is not None and edge_weight is None:
            edge_index, edge_weight = self.normalize(edge_index, x.size(0))
        hidden: list[Tensor] = []
        for i, layer in enumerate(self.layers):
            x = F.dropout(x, p=self.dropout, training=self.training)
            x = self._run_layer(layer, x, edge_index, edge_weight, edge_type)
            hidden.append(x)
            if i < len(self.layers) - 1:
                x = self.act(x)
        return ModelOutput(logits=x, hidden=hidden)

    @torch.no_grad()
    def inference(self, x: Tensor, edge_index: Tensor, edge_type: Optional[Tensor] = None, *,
                  chunk_size: Optional[int] = None, keep_hidden: bool = True) -> ModelOutput:
        """Layer by layer, ``chunk_size`` nodes at a time (see :meth:`GraphModel.inference`)."""
        self.eval()
        num_nodes = x.size(0)
        if chunk_size is None or not self.uses_graph or num_nodes <= chunk_size or not self.chunked_inference:
            return super().inference(x, edge_index, edge_type, keep_hidden=keep_hidden)
        if not self.relational:
            edge_type = None  # the homogeneous view: relation types are not read
        edge_weight = None
        if self.normalize is not None:
            edge_index, edge_weight = self.normalize(edge_index, num_nodes)
        index = NeighbourhoodIndex(edge_index, num_nodes)
        kind = self._sparse_kind()
        hidden: list[Tensor] = []
        h = x

        def run(layer: nn.Module, h: Tensor, sub: Subgraph) -> Tensor:
            weight = None if edge_weight is None else edge_weight[sub.edge_ids]
            if kind is not None:  # the chunk's edges carry the whole graph's weights
                propagation = None if kind == "none" else sparse.propagation_matrix(
                    sub.edge_index, sub.num_nodes, edge_weight=weight, reduce=kind)
                return _fast.run_layer(layer, h[sub.nodes], propagation)
            return self._run_layer(layer, h[sub.nodes], sub.edge_index, weight,
                                   None if edge_type is None else edge_type[sub.edge_ids])

        for i, layer in enumerate(self.layers):
            out = layer_in_chunks(index, chunk_size, lambda sub, layer=layer, h=h: run(layer, h, sub))
            if keep_hidden:
                hidden.append(out)
            h = self.act(out) if i < len(self.layers) - 1 else out
        return ModelOutput(logits=h, hidden=hidden if keep_hidden else [h])
