"""Latency: k-hop extraction, the measuring loop, the protocol checks and the cache."""

from __future__ import annotations

import json
import re

import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.utils import k_hop_subgraph

from gkd_search.errors import UsageError
from gkd_search.graph_ops import NeighbourhoodIndex
from gkd_search.latency import (
    LatencyBench,
    LatencyCache,
    LatencyMeasurement,
    LatencyProtocol,
    measure_all,
    request_batches,
)
from gkd_search.types import GraphDataset

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = dict(warmup=2, repeats=30)


@pytest.fixture(scope="module")
def random_graph():
    """A small directed random graph (not symmetric, so the direction of the hops matters)."""
    g = torch.Generator().manual_seed(1)
    n = 60
    src = torch.randint(0, n, (110,), generator=g)
    dst = torch.randint(0, n, (110,), generator=g)
    keep = src != dst
    return torch.stack([src[keep], dst[keep]]), n


# ------------------------------------------------------------------------------ NeighbourhoodIndex


@pytest.mark.parametrize("hops", [0, 1, 2, 3])
@pytest.mark.parametrize("batch", [1, 5])
def test_extract_matches_k_hop_subgraph(random_graph, hops, batch):
    edge_index, n = random_graph
    index = NeighbourhoodIndex(edge_index, n)
    g = torch.Generator().manual_seed(100 + batch)
    for _ in range(10):
        targets = torch.randint(0, n, (batch,), generator=g)
        subset, sub_edges, positions = index.extract(targets, hops)
        expected, _, _, _ = k_hop_subgraph(targets, hops, edge_index, num_nodes=n, flow="source_to_target")
        assert set(subset.tolist()) == set(expected.tolist())
        assert subset.numel() == len(set(subset.tolist()))  # no node twice
        # the target positions map back to the targets
        assert torch.equal(subset[positions], targets)
        # every extracted edge is an edge of the graph, into a node closer than `hops`
        assert sub_edges.dtype == torch.long and sub_edges.size(0) == 2
        if sub_edges.numel():
            assert int(sub_edges.min()) >= 0 and int(sub_edges.max()) < subset.numel()
        original = {tuple(e) for e in edge_index.t().tolist()}
        mapped = [(int(subset[s]), int(subset[d])) for s, d in sub_edges.t().tolist()]
        assert set(mapped) <= original
        if hops == 0:
            assert sub_edges.size(1) == 0


def test_extract_covers_far_part_of_graph(random_graph):
    # make sure the 3-hop cases above are not the whole graph (else the test says little)
    edge_index, n = random_graph
    index = NeighbourhoodIndex(edge_index, n)
    sizes = [index.extract(torch.tensor([t]), 2)[0].numel() for t in range(n)]
    assert min(sizes) < n // 2


def test_extracted_subgraph_gives_exact_predictions(random_graph, gkd_registry):
    """A GraphSAGE model on the k-hop subgraph predicts the targets exactly as on the whole graph:
    every edge into every node closer than k hops is present."""
    edge_index, n = random_graph
    torch.manual_seed(0)
    x = torch.randn(n, 6)
    index = NeighbourhoodIndex(edge_index, n)
    for layers in (1, 2, 3):
        model = gkd_registry.get("family", "sage").build(6, 3, layers, 8).eval()
        with torch.no_grad():
            full = model(x, edge_index).logits
            targets = torch.tensor([0, 7, 7, 31, 59])
            subset, sub_edges, positions = index.extract(targets, layers)
            part = model(x[subset], sub_edges).logits[positions]
        torch.testing.assert_close(part, full[targets], rtol=1e-5, atol=1e-6)


def test_isolated_target():
    edge_index = torch.tensor([[0, 1], [1, 0]])
    index = NeighbourhoodIndex(edge_index, 4)
    subset, sub_edges, positions = index.extract(torch.tensor([3]), 2)
    assert subset.tolist() == [3] and sub_edges.size(1) == 0 and positions.tolist() == [0]


# ------------------------------------------------------------------------------ protocol


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"repeats": 29}, "latency repeats must be >= 30, got 29"),
        ({"name": "bogus"}, "unknown latency protocol 'bogus'; known: request, full"),
        ({"batch_size": 0}, "--latency-batch must be >= 1, got 0"),
        ({"threads": 0}, "--latency-threads must be >= 1, got 0"),
    ],
)
def test_protocol_rejects(kwargs, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        LatencyProtocol(**kwargs)


def test_protocol_cache_key_depends_on_fields():
    a = LatencyProtocol()
    assert a.cache_key() == LatencyProtocol().cache_key()
    assert a.cache_key() != LatencyProtocol(batch_size=4).cache_key()
    assert a.cache_key() != LatencyProtocol(name="full").cache_key()
    assert a.cache_key() != LatencyProtocol(repeats=31).cache_key()


def test_request_batches_are_seeded():
    p = LatencyProtocol(batch_size=3, seed=4)
    a, b = request_batches(100, p, 5), request_batches(100, p, 5)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert all(x.shape == (3,) and int(x.max()) < 100 for x in a)
    c = request_batches(100, LatencyProtocol(batch_size=3, seed=5), 5)
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_measurement_percentiles():
    m = LatencyMeasurement.from_samples([i / 1000 for i in range(100, 0, -1)])  # 1..100 ms, unsorted
    assert m.repeats == 100
    assert m.p50_ms == pytest.approx(50.5)
    assert m.p95_ms == pytest.approx(95.0)
    assert m.min_ms == pytest.approx(1.0)
    assert m.mean_ms == pytest.approx(50.5)


# ------------------------------------------------------------------------------ LatencyBench


@pytest.mark.parametrize("protocol", ["request", "full"])
@pytest.mark.parametrize("family, layers", [("gcn", 2), ("mlp", 2)])
def test_bench_measures(gkd_registry, small_synthetic, protocol, family, layers):
    p = LatencyProtocol(protocol, batch_size=4, **FAST)
    bench = LatencyBench(small_synthetic, p)
    fam = gkd_registry.get("family", family)
    threads = torch.get_num_threads()
    m = bench.measure(fam.build(small_synthetic.num_features, small_synthetic.num_classes, layers, 16),
                      fam.num_hops(layers))
    assert m.repeats == p.repeats == 30
    assert 0 < m.min_ms <= m.p50_ms <= m.p95_ms
    assert m.min_ms <= m.mean_ms
    assert torch.get_num_threads() == threads  # the thread count is restored


def test_bench_request_output_shape(gkd_registry, small_synthetic):
    bench = LatencyBench(small_synthetic, LatencyProtocol("request", batch_size=5, **FAST))
    targets = bench.batches[0]
    for name in ("gcn", "mlp"):
        fam = gkd_registry.get("family", name)
        model = fam.build(small_synthetic.num_features, small_synthetic.num_classes, 2, 8).eval()
        with torch.no_grad():
            out = bench._request(model, fam.num_hops(2), targets)
        assert out.shape == (5, small_synthetic.num_classes)
    assert len(bench.batches) == 2 + 30


# ------------------------------------------------------------------------------ cache


def tiny_dataset(seed=0) -> GraphDataset:
    g = torch.Generator().manual_seed(seed)
    n = 50
    data = Data(x=torch.randn(n, 4, generator=g), edge_index=torch.randint(0, n, (2, 200), generator=g),
                y=torch.randint(0, 2, (n,), generator=g), num_nodes=n)
    data.train_mask = torch.arange(n) < 10
    data.val_mask = (torch.arange(n) >= 10) & (torch.arange(n) < 20)
    data.test_mask = torch.arange(n) >= 20
    return GraphDataset("tiny", data, 2)


def test_cache_round_trip(tmp_path):
    ds, p = tiny_dataset(), LatencyProtocol(**FAST)
    cache = LatencyCache(tmp_path, ds, p)
    assert cache.get("gcn-2L-16") is None
    m = LatencyMeasurement(1.5, 2.5, 1.7, 1.1, 30)
    cache.put("gcn-2L-16", m)
    cache.save()
    assert cache.path.is_file()
    assert cache.path.parent == tmp_path / "latency"
    again = LatencyCache(tmp_path, ds, p)
    assert again.path == cache.path
    assert again.get("gcn-2L-16") == m
    assert again.get("gcn-3L-16") is None
    # another protocol or another dataset: another file
    assert LatencyCache(tmp_path, ds, LatencyProtocol(name="full", **FAST)).get("gcn-2L-16") is None
    assert LatencyCache(tmp_path, tiny_dataset(seed=1), p).get("gcn-2L-16") is None
    assert not list((tmp_path / "latency").glob("tmp-*"))  # no temporary files left


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"", b"\xff\xfe\x00binary", b"[]", b'{"version": "0.1.0"}', b'{"entries": [1, 2]}',
     b'{"entries": {"gcn-2L-16": {"p50": 1}}}', b'{"entries": {"gcn-2L-16": 3}}'],
)
def test_corrupt_cache_is_ignored(tmp_path, content):
    ds, p = tiny_dataset(), LatencyProtocol(**FAST)
    path = LatencyCache(tmp_path, ds, p).path
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    cache = LatencyCache(tmp_path, ds, p)
    assert cache.get("gcn-2L-16") is None
    # and it is overwritten by the next save
    m = LatencyMeasurement(1.0, 2.0, 1.5, 0.5, 30)
    cache.put("gcn-2L-16", m)
    cache.save()
    assert json.loads(path.read_text())["entries"]["gcn-2L-16"]["p50_ms"] == 1.0
    assert LatencyCache(tmp_path, ds, p).get("gcn-2L-16") == m


def test_measure_all_uses_cache(gkd_registry, tmp_path):
    ds = tiny_dataset()
    p = LatencyProtocol(batch_size=2, **FAST)
    bench = LatencyBench(ds, p)
    calls: list[str] = []
    events: list[tuple[str, bool]] = []

    def builder(name, layers):
        fam = gkd_registry.get("family", name)

        def build():
            calls.append(f"{name}-{layers}")
            return fam.build(ds.num_features, ds.num_classes, layers, 8)

        return (f"{name}-{layers}L-8", build, fam.num_hops(layers))

    archs = [builder("gcn", 2), builder("mlp", 2)]
    first = measure_all(archs, bench, LatencyCache(tmp_path, ds, p), lambda k, m, cached: events.append((k, cached)))
    assert calls == ["gcn-2", "mlp-2"]  # each built once
    assert events == [("mlp-2L-8", False), ("gcn-2L-8", False)]  # the cheapest (fewest hops) timed first
    assert set(first) == {"gcn-2L-8", "mlp-2L-8"}
    assert all(m.repeats == 30 for m in first.values())

    # a new cache object reads the file written after each measurement: no builder is called
    events.clear()
    second = measure_all(archs, bench, LatencyCache(tmp_path, ds, p), lambda k, m, cached: events.append((k, cached)))
    assert calls == ["gcn-2", "mlp-2"]
    assert events == [("gcn-2L-8", True), ("mlp-2L-8", True)]
    assert second == first

    # a new architecture alone is measured
    measure_all([*archs, builder("gcn", 1)], bench, LatencyCache(tmp_path, ds, p))
    assert calls == ["gcn-2", "mlp-2", "gcn-1"]


def test_request_full_neighbourhood_matches_whole_graph_and_fanout_samples(gkd_registry, small_synthetic):
    """Without a fan-out a request's predictions are the whole-graph ones (GraphSAGE reads only
    in-neighbours); with the serving fan-out the subgraph is smaller and the request still answers."""
    fam = gkd_registry.get("family", "sage")
    torch.manual_seed(0)
    model = fam.build(small_synthetic.num_features, small_synthetic.num_classes, 2, 8).eval()
    data = small_synthetic.data
    full = LatencyBench(small_synthetic, LatencyProtocol("request", batch_size=6, **FAST))
    sampled = LatencyBench(small_synthetic, LatencyProtocol("request", batch_size=6, fanout=(1,), **FAST))
    targets = full.batches[0]
    with torch.no_grad():
        whole = model(data.x, data.edge_index).logits[targets]
        assert torch.allclose(full._request(model, 2, targets), whole, atol=1e-5)
        out = sampled._request(model, 2, targets, torch.Generator().manual_seed(0))
    assert out.shape == whole.shape and not torch.allclose(out, whole, atol=1e-3)
    assert LatencyProtocol(fanout=(1,)).cache_key() != LatencyProtocol().cache_key()
