"""A cache-friendly node order for full-batch training on large graphs.

A CSR product ``M @ H`` (:mod:`gkd_search.sparse`) reads, for every edge, the row of ``H`` of
its source node. In the order a graph's nodes come in (often arbitrary: crawl order, ids), the
sources of one node's edges lie anywhere in ``H``, and once ``H`` outgrows the CPU's caches
(``[N, 64]`` floats is 43 MB at ogbn-arxiv's 169,343 nodes) nearly every edge is a cache miss,
which is why time per edge grows with the graph. Reverse Cuthill-McKee (Cuthill & McKee 1969;
George's reversal, 1971; ``scipy.sparse.csgraph.reverse_cuthill_mckee``) renumbers the nodes by a
breadth-first search from a peripheral node, visiting neighbours by increasing degree, so that
neighbours get nearby numbers (a small bandwidth of the adjacency matrix) and the rows one node
reads sit close together.

With ``GKD_NODE_ORDER=rcm`` in the environment (Ray's workers inherit it), full-batch training
(:func:`gkd_search.distill.loop.train_model`, which trains trials and teachers) renumbers a graph
of at least :data:`MIN_NODES` nodes once, runs the model on the renumbered graph and puts every
output row back in the graph's own order (:meth:`NodeOrder.restore`), so losses, metrics, early
stopping and everything downstream see the outputs of the original order (a
permutation-equivariant model: every GNN layer; dropout masks are drawn for other rows, so one
training run is not bitwise the same). Served models and latency requests are unaffected.

It is off by default because it did not pay on the graphs we can measure: on synthetic graphs of
ogbn-arxiv's size, where a bare CSR product got 1.4x faster on the RCM order, a whole training
step (with the outputs put back) was 0.84x-1.09x as fast (``bench/propagation.py``, the *RCM*
column). A real graph with communities that its own numbering scatters is where to try it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from .types import ModelOutput

#: graphs with fewer nodes keep their order even when enabled: their hidden states fit the caches
MIN_NODES = 100_000


@dataclass(frozen=True)
class NodeOrder:
    """A renumbering of a graph's nodes: new node ``i`` is old node ``perm[i]``; old node ``v``
    is new node ``inverse[v]``."""

    perm: Tensor
    inverse: Tensor

    @classmethod
    def from_perm(cls, perm: Tensor) -> NodeOrder:
        perm = perm.long()
        inverse = torch.empty_like(perm)
        inverse[perm] = torch.arange(perm.numel(), dtype=perm.dtype)
        return cls(perm, inverse)

    @classmethod
    def reverse_cuthill_mckee(cls, edge_index: Tensor, num_nodes: int) -> NodeOrder:
        """RCM on the graph made symmetric (the order depends only on which pairs are linked)."""
        import scipy.sparse as sp
        from scipy.sparse.csgraph import reverse_cuthill_mckee

        src, dst = edge_index.cpu().numpy()
        adjacency = sp.csr_matrix((np.ones(src.size, dtype=np.int8), (dst, src)), shape=(num_nodes, num_nodes))
        perm = reverse_cuthill_mckee(adjacency, symmetric_mode=False)
        return cls.from_perm(torch.from_numpy(perm.astype(np.int64)).to(edge_index.device))

    def graph(self, x: Tensor, edge_index: Tensor, edge_type: Optional[Tensor] = None
              ) -> tuple[Tensor, Tensor, Optional[Tensor]]:
        """The graph renumbered: features in the new order, edges between new ids (each edge
        keeps its position, so ``edge_type`` is unchanged)."""
        inverse = self.inverse.to(edge_index.device)
        return x.index_select(0, self.perm.to(x.device)), inverse[edge_index], edge_type

    def restore(self, output: ModelOutput) -> ModelOutput:
        """A model's outputs on the renumbered graph, rows back in the original order."""
        n = self.perm.numel()

        def back(t: Tensor) -> Tensor:
            return t.index_select(0, self.inverse.to(t.device)) if t.dim() > 0 and t.size(0) == n else t

        hidden = [back(h) for h in output.hidden]
        logits = hidden[-1] if hidden and output.hidden[-1] is output.logits else back(output.logits)
        return ModelOutput(logits, hidden)


_ORDERS: dict[tuple, NodeOrder] = {}  # a few graphs at most: a process trains on one


def enabled() -> bool:
    """Whether ``GKD_NODE_ORDER=rcm`` asks full-batch training to renumber large graphs."""
    return os.environ.get("GKD_NODE_ORDER", "").strip().lower() == "rcm"


def node_order_for(data) -> Optional[NodeOrder]:
    """The order full-batch training uses on ``data``: with :func:`enabled`, RCM for a graph of
    at least :data:`MIN_NODES` nodes (computed once per ``edge_index`` in a process); else None
    (the graph's own order)."""
    edge_index = getattr(data, "edge_index", None)
    num_nodes = data.num_nodes
    if not enabled() or edge_index is None or num_nodes is None or num_nodes < MIN_NODES or edge_index.numel() == 0:
        return None
    key = (edge_index.data_ptr(), edge_index._version, tuple(edge_index.shape), num_nodes)
    if key not in _ORDERS:
        if len(_ORDERS) >= 4:
            _ORDERS.clear()
        _ORDERS[key] = NodeOrder.reverse_cuthill_mckee(edge_index, num_nodes)
    return _ORDERS[key]
