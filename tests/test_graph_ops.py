"""Subgraph extraction: sampled fan-outs, full neighbourhoods, chunks and induced edges."""

from __future__ import annotations

import pytest
import torch

from gkd_search.errors import UsageError
from gkd_search.graph_ops import NeighbourhoodIndex, fanouts_for, parse_fanout


def random_graph(n=200, e=2000, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, n, (2, e), generator=g), n


def test_full_subgraph_keeps_every_edge_into_inner_nodes():
    edge_index, n = random_graph()
    index = NeighbourhoodIndex(edge_index, n)
    seeds = torch.tensor([5, 17, 90])
    sub = index.subgraph(seeds, [-1, -1])
    assert torch.equal(sub.nodes[:3], seeds) and sub.num_seeds == 3
    # by hand: hop-1 nodes are the sources of edges into the seeds
    hop1 = set(edge_index[0][torch.isin(edge_index[1], seeds)].tolist()) - set(seeds.tolist())
    inner = set(seeds.tolist()) | hop1
    expected = {(int(s), int(t)) for s, t in edge_index.t().tolist() if t in inner}
    got = {(int(sub.nodes[s]), int(sub.nodes[t])) for s, t in sub.edge_index.t().tolist()}
    assert got == expected
    # edge ids point at the original edges
    assert torch.equal(edge_index[:, sub.edge_ids], sub.nodes[sub.edge_index])


def test_fanout_caps_sampled_in_edges_per_node():
    edge_index, n = random_graph(e=4000)
    index = NeighbourhoodIndex(edge_index, n)
    seeds = torch.arange(10)
    gen = torch.Generator().manual_seed(1)
    sub = index.subgraph(seeds, [3, 2], gen)
    targets = sub.nodes[sub.edge_index[1]]
    counts = torch.bincount(targets, minlength=n)
    assert int(counts[seeds].max()) == 3  # every seed has > 3 in-edges in this graph
    assert int(counts.max()) <= 3
    hop1 = sub.nodes[sub.num_seeds:]
    # the hop-2 fan-out applies to the nodes first reached at hop 1
    hop1_first = hop1[torch.isin(hop1, sub.nodes[sub.edge_index[0][torch.isin(targets, seeds)]])]
    assert int(counts[hop1_first].max()) <= 2
    # sampled edges are real edges, without repeats
    assert torch.equal(edge_index[:, sub.edge_ids], sub.nodes[sub.edge_index])
    assert sub.edge_ids.unique().numel() == sub.edge_ids.numel()


def test_sampling_is_seeded():
    edge_index, n = random_graph(e=4000)
    index = NeighbourhoodIndex(edge_index, n)
    seeds = torch.arange(20)
    a = index.subgraph(seeds, [4, 4], torch.Generator().manual_seed(3))
    b = index.subgraph(seeds, [4, 4], torch.Generator().manual_seed(3))
    c = index.subgraph(seeds, [4, 4], torch.Generator().manual_seed(4))
    assert torch.equal(a.edge_ids, b.edge_ids)
    assert not torch.equal(a.edge_ids, c.edge_ids)


def test_sampling_is_uniform_over_neighbours():
    # node 0 has 10 in-neighbours; a fan-out of 2 picks each with probability 2/10
    edge_index = torch.stack([torch.arange(1, 11), torch.zeros(10, dtype=torch.long)])
    index = NeighbourhoodIndex(edge_index, 11)
    gen = torch.Generator().manual_seed(0)
    hits = torch.zeros(11)
    draws = 3000
    for _ in range(draws):
        sub = index.subgraph(torch.tensor([0]), [2], gen)
        hits[sub.nodes[sub.edge_index[0]]] += 1
    freq = hits[1:] / draws
    assert torch.allclose(freq, torch.full((10,), 0.2), atol=0.03)


def test_chunks_cover_every_node_once_with_all_in_edges():
    edge_index, n = random_graph()
    index = NeighbourhoodIndex(edge_index, n)
    covered = []
    edges = 0
    for sub in index.chunks(64):
        covered.append(sub.nodes[:sub.num_seeds])
        edges += sub.edge_ids.numel()
    assert torch.equal(torch.cat(covered), torch.arange(n))
    assert edges == edge_index.size(1)


def test_parse_fanout_and_repeat():
    assert parse_fanout("10,5") == (10, 5)
    assert parse_fanout("-1") == (-1,)
    for bad in ("", "a,b", "0", "10,-3"):
        with pytest.raises(UsageError, match="--fanout"):
            parse_fanout(bad)
    assert fanouts_for((10, 5), 3) == [10, 5, 5]
    assert fanouts_for((10, 5), 1) == [10]
    assert fanouts_for((10,), 0) == []
