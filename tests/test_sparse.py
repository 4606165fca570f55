"""CSR propagation and sparse input features (``gkd_search.sparse``): every built-in family gives
the outputs and gradients of PyG's edge-list path (``sparse.disabled()``, the reference) within
float tolerance, with dense and with sparse (bag-of-words-like) features."""

from __future__ import annotations

import pytest
import torch

from gkd_search import sparse
from gkd_search.families import _fast
from gkd_search.types import GraphModel, run_model

pytestmark = pytest.mark.usefixtures("one_thread")

N, F_IN, C = 200, 40, 3  # N over sparse.MIN_SPARSE_ROWS, so sparse features are converted

CASES = [
    ("gcn", {}),
    ("sage", {}),
    ("gcnii", {}),
    ("gcnii", {"alpha": 0.5, "theta": 1.5}),
    ("appnp", {"K": 3, "alpha": 0.2}),
    ("sgc", {}),
    ("mlp", {}),
    ("gat", {"heads": 2}),  # no sparse form: must run as before
]
#: the families whose message passing has a CSR form
FAST = {"gcn", "sage", "gcnii", "appnp", "sgc"}


def _edges(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(0, N, (900,), generator=g)
    dst = torch.randint(0, N, (900,), generator=g)
    keep = src != dst
    return torch.stack([src[keep], dst[keep]])  # parallel edges included, as in real edge lists


@pytest.fixture(scope="module")
def graph():
    g = torch.Generator().manual_seed(0)
    dense_x = torch.randn(N, F_IN, generator=g)
    bag = (torch.rand(N, F_IN, generator=g) < 0.03).float()  # 3% non-zero: kept in CSR
    return dense_x, bag, _edges(1)


def build(registry, family, layers, **params) -> GraphModel:
    torch.manual_seed(0)
    return registry.get("family", family).build(F_IN, C, layers, 16, dropout=0.5, **params)


def forward_and_grads(model: GraphModel, x, edge_index):
    """Eval-mode outputs (dropout off, so both paths compute the same function) and the
    gradients of a loss on them."""
    model.eval()
    model.zero_grad(set_to_none=True)
    out = run_model(model, x, edge_index, None)
    (out.logits.square().sum() + sum(h.sum() for h in out.hidden)).backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return out, grads


def assert_same(got, want):
    (out, grads), (ref, ref_grads) = got, want
    assert len(out.hidden) == len(ref.hidden)
    for a, b in zip(out.hidden, ref.hidden):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.logits, ref.logits, atol=1e-5, rtol=1e-4)
    assert grads.keys() == ref_grads.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], atol=1e-4, rtol=1e-4, msg=name)


@pytest.mark.parametrize("family, params", CASES)
@pytest.mark.parametrize("features", ["dense", "bag-of-words"])
@pytest.mark.parametrize("layers", [1, 2])
def test_outputs_and_gradients_equal_the_edge_list_reference(gkd_registry, graph, family, params, features, layers):
    dense_x, bag, edge_index = graph
    x = dense_x if features == "dense" else bag
    model = build(gkd_registry, family, layers, **params)
    sparse.clear_cache()
    fast = forward_and_grads(model, x, edge_index)
    with sparse.disabled():
        reference = forward_and_grads(model, x, edge_index)
    assert_same(fast, reference)


@pytest.mark.parametrize("family, params", [c for c in CASES if c[0] in FAST])
def test_the_fast_path_is_really_taken(gkd_registry, graph, family, params):
    """The CSR matrix of the graph is built (and cached) by a forward pass of every fast family."""
    dense_x, _, edge_index = graph
    model = build(gkd_registry, family, 2, **params)
    sparse.clear_cache()
    assert len(sparse._CACHE._entries) == 0
    run_model(model, dense_x, edge_index, None)
    assert len(sparse._CACHE._entries) >= 1
    with sparse.disabled():
        sparse.clear_cache()
        run_model(model, dense_x, edge_index, None)
        assert len(sparse._CACHE._entries) == 0


@pytest.mark.parametrize("family, params", [c for c in CASES if c[0] != "gat"])
def test_chunked_inference_equals_the_reference(gkd_registry, graph, family, params):
    dense_x, bag, edge_index = graph
    model = build(gkd_registry, family, 2, **params)
    for x in (dense_x, bag):
        chunked = model.inference(x, edge_index, None, chunk_size=37)
        with sparse.disabled(), torch.no_grad():
            reference = run_model(model.eval(), x, edge_index, None)
        torch.testing.assert_close(chunked.logits, reference.logits, atol=1e-5, rtol=1e-4)


def test_training_mode_with_dropout_runs_and_learns(gkd_registry, graph):
    """Dropout on sparse features (on the non-zeros) and the custom backward train a model."""
    _, bag, edge_index = graph
    y = torch.randint(0, C, (N,), generator=torch.Generator().manual_seed(2))
    for family in sorted(FAST):
        model = build(gkd_registry, family, 2)
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=0.05)
        losses = []
        for _ in range(30):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(run_model(model, bag, edge_index, None).logits, y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[-1] < losses[0], family


def test_inference_mode_keeps_the_edge_list_path(gkd_registry, graph):
    """Requests (served or timed, under ``torch.inference_mode``) build no CSR matrix."""
    dense_x, _, edge_index = graph
    model = build(gkd_registry, "gcn", 2).eval()
    sparse.clear_cache()
    with torch.inference_mode():
        assert not sparse.enabled()
        out = run_model(model, dense_x, edge_index, None).logits
    assert len(sparse._CACHE._entries) == 0
    with torch.no_grad():
        torch.testing.assert_close(out.clone(), run_model(model, dense_x, edge_index, None).logits,
                                   atol=1e-5, rtol=1e-4)


def test_sparse_features_only_when_sparse_enough():
    g = torch.Generator().manual_seed(0)
    bag = (torch.rand(N, F_IN, generator=g) < 0.02).float()
    dense_x = torch.randn(N, F_IN, generator=g)
    converted = sparse.sparse_features(bag)
    assert isinstance(converted, sparse.SparseFeatures)
    assert converted.density <= sparse.MAX_FEATURE_DENSITY
    torch.testing.assert_close(converted.to_dense(), bag)
    assert sparse.sparse_features(bag) is converted  # cached per tensor
    assert sparse.sparse_features(dense_x) is dense_x
    assert sparse.sparse_features(bag[:10]) is not None and not isinstance(sparse.sparse_features(bag[:10]),
                                                                        sparse.SparseFeatures)  # too few rows
    with sparse.disabled():
        assert sparse.sparse_features(bag) is bag


def test_sparse_linear_equals_dense_linear_with_gradients():
    g = torch.Generator().manual_seed(0)
    bag = (torch.rand(N, F_IN, generator=g) < 0.03).float()
    weight = torch.randn(8, F_IN, generator=g, requires_grad=True)
    bias = torch.randn(8, generator=g, requires_grad=True)
    out = sparse.linear(sparse.sparse_features(bag), weight, bias)
    out.square().sum().backward()
    got = (out.detach(), weight.grad.clone(), bias.grad.clone())
    weight.grad = bias.grad = None
    ref = torch.nn.functional.linear(bag, weight, bias)
    ref.square().sum().backward()
    for a, b in zip(got, (ref.detach(), weight.grad, bias.grad)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_sparse_matrix_sums_duplicates_and_its_gradient_is_the_transpose():
    rows = torch.tensor([0, 0, 1, 2, 2, 2])
    cols = torch.tensor([1, 1, 0, 2, 0, 2])
    values = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    m = sparse.SparseMatrix.from_coo(rows, cols, values, (3, 3))
    dense = torch.zeros(3, 3).index_put_((rows, cols), values, accumulate=True)
    torch.testing.assert_close(m.to_dense(), dense)
    h = torch.randn(3, 4, requires_grad=True)
    (m.matmul(h) * torch.arange(12.0).view(3, 4)).sum().backward()
    grad = h.grad.clone()
    h.grad = None
    (dense @ h * torch.arange(12.0).view(3, 4)).sum().backward()
    torch.testing.assert_close(grad, h.grad)
    torch.testing.assert_close(m.transpose_csr().to_dense(), dense.t())


def test_mean_propagation_counts_parallel_edges_as_pyg_does():
    from torch_geometric.nn import SimpleConv

    edge_index = _edges(5)
    h = torch.randn(N, 6)
    mean = sparse.propagation_matrix(edge_index, N, reduce="mean")
    torch.testing.assert_close(mean.matmul(h), SimpleConv(aggr="mean")(h, edge_index), atol=1e-5, rtol=1e-5)


def test_the_cache_follows_in_place_changes_and_new_graphs(gkd_registry, graph):
    dense_x, _, _ = graph
    edge_index = _edges(3)
    model = build(gkd_registry, "gcn", 2).eval()
    with torch.no_grad():
        first = run_model(model, dense_x, edge_index, None).logits
        edge_index[1] = edge_index[1].flip(0)  # in place: the version counter changes
        changed = run_model(model, dense_x, edge_index, None).logits
        with sparse.disabled():
            reference = run_model(model, dense_x, edge_index, None).logits
    assert not torch.allclose(first, changed)
    torch.testing.assert_close(changed, reference, atol=1e-5, rtol=1e-4)


def test_supports_names_only_the_layers_it_reproduces():
    from torch_geometric.nn import GATConv, GCNConv, SAGEConv

    assert _fast.supports(GCNConv(4, 4, normalize=False)) == "sum"
    assert _fast.supports(GCNConv(4, 4)) is None  # normalises itself: another computation
    assert _fast.supports(SAGEConv(4, 4)) == "mean"
    assert _fast.supports(SAGEConv(4, 4, aggr="max")) is None
    assert _fast.supports(GATConv(4, 4)) is None
    assert _fast.supports(torch.nn.Linear(4, 4)) == "none"
