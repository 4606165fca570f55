"""Subgraphs of a large graph: k-hop neighbourhoods, sampled fan-outs and node chunks.

One CSR index of incoming edges, built once per graph, serves three users:

* the ``request`` latency protocol (:mod:`gkd_search.latency`) extracts a request's k-hop
  neighbourhood, all of it or a sampled fan-out, as a server would;
* mini-batch training (:mod:`gkd_search.distill.minibatch`) samples a fan-out around each batch of
  seed nodes, as PyG's ``NeighborLoader`` does (Hamilton et al., "Inductive Representation
  Learning on Large Graphs", NeurIPS 2017, Alg. 2);
* layer-wise inference (:meth:`gkd_search.types.GraphModel.inference`) computes one layer for a
  chunk of nodes from their full in-neighbourhood.

PyG's own ``NeighborLoader`` needs ``pyg-lib`` or ``torch-sparse``, neither of which has a wheel
for our torch on PyPI, so sampling is done here in plain PyTorch. Every subgraph carries the ids
of the original edges it kept (``edge_ids``), so per-edge data (relation types, normalised
weights) follows the edges.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import torch
from torch import Tensor


@dataclass
class Subgraph:
    """A subgraph relabelled to ``0..len(nodes)-1``.

    Attributes:
        nodes: original ids of the subgraph's nodes; the seeds (targets) come first.
        edge_index: the kept edges, relabelled ``[2, E_sub]``.
        edge_ids: the kept edges' positions in the original ``edge_index`` ``[E_sub]``.
        num_seeds: how many of ``nodes`` are the seeds (``nodes[:num_seeds]``).
    """

    nodes: Tensor
    edge_index: Tensor
    edge_ids: Tensor
    num_seeds: int

    @property
    def num_nodes(self) -> int:
        return int(self.nodes.numel())


class NeighbourhoodIndex:
    """A CSR index of incoming edges, built once, that extracts subgraphs around seed nodes.

    The cost of an extraction grows with the size of the neighbourhood, not of the graph (apart
    from one boolean mask and one relabelling vector over the nodes), as in a serving system.
    """

    def __init__(self, edge_index: Tensor, num_nodes: int) -> None:
        src, dst = edge_index
        order = torch.argsort(dst, stable=True)
        self.src = src[order].contiguous()
        self.edge_ids = order.contiguous()
        counts = torch.bincount(dst, minlength=num_nodes)
        self.rowptr = torch.zeros(num_nodes + 1, dtype=torch.long, device=edge_index.device)
        self.rowptr[1:] = torch.cumsum(counts, 0)
        self.num_nodes = num_nodes

    @classmethod
    def from_csr(cls, rowptr: Tensor, src: Tensor, edge_ids: Tensor) -> NeighbourhoodIndex:
        """Rebuild an index from its arrays (``rowptr`` ``[N + 1]``, ``src`` and ``edge_ids``
        ``[E]`` in target order), as a saved serving graph stores it."""
        index = cls.__new__(cls)
        index.rowptr, index.src, index.edge_ids = rowptr, src, edge_ids
        index.num_nodes = int(rowptr.numel()) - 1
        return index

    def in_degree(self, nodes: Tensor) -> Tensor:
        return self.rowptr[nodes + 1] - self.rowptr[nodes]

    def _positions(self, nodes: Tensor) -> tuple[Tensor, Tensor]:
        """CSR positions of every edge into ``nodes`` and, for each, its target."""
        starts = self.rowptr[nodes]
        counts = self.rowptr[nodes + 1] - starts
        total = int(counts.sum())
        if total == 0:
            empty = nodes.new_empty(0)
            return empty, empty
        first = torch.cumsum(counts, 0) - counts
        positions = torch.arange(total, device=nodes.device) - torch.repeat_interleave(first - starts, counts)
        return positions, torch.repeat_interleave(nodes, counts)

    def incoming(self, nodes: Tensor) -> tuple[Tensor, Tensor]:
        """``(sources, targets)`` of every edge into ``nodes``."""
        positions, targets = self._positions(nodes)
        return self.src[positions], targets

    def _sampled_positions(self, nodes: Tensor, fanout: int, generator: Optional[torch.Generator]) -> tuple[Tensor, Tensor]:
        """At most ``fanout`` incoming edges per node, drawn uniformly without replacement."""
        positions, targets = self._positions(nodes)
        if fanout < 0 or positions.numel() == 0:
            return positions, targets
        counts = self.in_degree(nodes)
        if int(counts.max()) <= fanout:
            return positions, targets
        # rank the edges of each target by a random key; keep ranks < fanout
        segment = torch.repeat_interleave(torch.arange(nodes.numel(), device=nodes.device), counts)
        keys = torch.rand(positions.numel(), generator=generator).to(nodes.device)
        order = torch.argsort(segment.double() + keys.double())
        first = torch.cumsum(counts, 0) - counts
        rank = torch.arange(positions.numel(), device=nodes.device) - torch.repeat_interleave(first, counts)
        keep = order[rank < fanout]
        return positions[keep], targets[keep]

    def subgraph(self, seeds: Tensor, fanouts: Sequence[int], generator: Optional[torch.Generator] = None) -> Subgraph:
        """The ``len(fanouts)``-hop subgraph that a message-passing model needs for ``seeds``.

        Hop ``k`` keeps at most ``fanouts[k]`` incoming edges of every node reached at hop
        ``k - 1`` (``-1``: all of them), as PyG's ``NeighborLoader`` does. The subgraph holds
        exactly the sampled edges, so a node's messages come from its sampled neighbours only.
        Seeds must be distinct.
        """
        seen = torch.zeros(self.num_nodes, dtype=torch.bool, device=seeds.device)
        frontier = seeds
        seen[frontier] = True
        layers = [frontier]
        edge_positions: list[Tensor] = []
        for fanout in fanouts:
            positions, _ = self._sampled_positions(frontier, int(fanout), generator)
            edge_positions.append(positions)
            sources = self.src[positions]
            frontier = torch.unique(sources[~seen[sources]])
            seen[frontier] = True
            layers.append(frontier)
        nodes = torch.cat(layers)
        relabel = torch.full((self.num_nodes,), -1, dtype=torch.long, device=seeds.device)
        relabel[nodes] = torch.arange(nodes.numel(), device=seeds.device)
        positions = torch.cat(edge_positions) if edge_positions else seeds.new_empty(0)
        edge_ids = self.edge_ids[positions]
        targets = self._targets_of(positions)
        edge_index = torch.stack([relabel[self.src[positions]], relabel[targets]])
        return Subgraph(nodes, edge_index, edge_ids, int(seeds.numel()))

    def _targets_of(self, positions: Tensor) -> Tensor:
        return torch.searchsorted(self.rowptr, positions, right=True) - 1

    def extract(self, targets: Tensor, num_hops: int) -> tuple[Tensor, Tensor, Tensor]:
        """Return ``(subset, sub_edge_index, target_positions)`` of the full ``num_hops``-hop
        subgraph of ``targets`` (which may repeat); see :meth:`subgraph` for a sampled one."""
        unique = torch.unique(targets)
        sub = self.subgraph(unique, [-1] * num_hops)
        relabel = torch.full((self.num_nodes,), -1, dtype=torch.long, device=targets.device)
        relabel[sub.nodes] = torch.arange(sub.num_nodes, device=targets.device)
        return sub.nodes, sub.edge_index, relabel[targets]

    def chunks(self, chunk_size: int) -> Iterator[Subgraph]:
        """Every node once, in chunks of ``chunk_size`` seeds, each with its full 1-hop
        in-neighbourhood: what one layer needs to compute its output for the chunk."""
        for start in range(0, self.num_nodes, chunk_size):
            seeds = torch.arange(start, min(start + chunk_size, self.num_nodes), device=self.rowptr.device)
            yield self.subgraph(seeds, [-1])


def parse_fanout(text: str) -> tuple[int, ...]:
    """``"10,5"`` -> ``(10, 5)``; ``-1`` keeps every neighbour at that hop."""
    try:
        values = tuple(int(v) for v in str(text).split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or any(v == 0 or v < -1 for v in values):
        from .errors import UsageError

        raise UsageError(f"--fanout {text!r} is not a comma-separated list of positive neighbour counts (or -1 for all), e.g. 10,5")
    return values


def fanouts_for(fanout: Sequence[int], num_hops: int) -> list[int]:
    """One fan-out per hop: ``fanout`` truncated, or its last value repeated, to ``num_hops``."""
    if num_hops <= 0:
        return []
    values = list(fanout) or [-1]
    return (values + [values[-1]] * num_hops)[:num_hops]
