"""The built-in model families: shapes, per-layer outputs, parameter counts, bad parameters."""

from __future__ import annotations

import pytest
import torch

from gkd_search.errors import UsageError
from gkd_search.types import GraphModel, count_parameters

pytestmark = pytest.mark.usefixtures("one_thread")

N, F_IN, C = 30, 10, 3


@pytest.fixture(scope="module")
def graph():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, F_IN, generator=g)
    src = torch.randint(0, N, (120,), generator=g)
    dst = torch.randint(0, N, (120,), generator=g)
    keep = src != dst
    edge_index = torch.stack([src[keep], dst[keep]])
    return x, edge_index


def build(registry, family, layers, hidden, **params) -> GraphModel:
    torch.manual_seed(0)
    return registry.get("family", family).build(F_IN, C, layers, hidden, **params)


CASES = [
    ("gcn", {}),
    ("sage", {}),
    ("gat", {"heads": 1}),
    ("gat", {"heads": 4}),
    ("mlp", {}),
]


@pytest.mark.parametrize("family, params", CASES)
@pytest.mark.parametrize("layers", [1, 2, 3])
def test_output_shapes(gkd_registry, graph, family, params, layers):
    x, edge_index = graph
    hidden = 16
    model = build(gkd_registry, family, layers, hidden, **params).eval()
    out = model(x, edge_index)
    assert out.logits.shape == (N, C)
    assert len(out.hidden) == layers
    for h in out.hidden[:-1]:
        assert h.shape == (N, hidden)
    assert out.hidden[-1] is out.logits
    assert torch.isfinite(out.logits).all()


def test_uses_graph_flags(gkd_registry):
    expected = {"gcn": True, "sage": True, "gat": True, "mlp": False}
    for name, flag in expected.items():
        family = gkd_registry.get("family", name)
        assert family.uses_graph is flag
        assert build(gkd_registry, name, 2, 8).uses_graph is flag
        assert family.num_hops(3) == (3 if flag else 0)


def test_graph_families_read_edges(gkd_registry, graph):
    x, edge_index = graph
    for name in ("gcn", "sage", "gat"):
        model = build(gkd_registry, name, 2, 8).eval()
        with torch.no_grad():
            with_edges = model(x, edge_index).logits
            without = model(x, edge_index[:, :0]).logits
        assert not torch.allclose(with_edges, without), name


def test_mlp_ignores_edges(gkd_registry, graph):
    x, edge_index = graph
    model = build(gkd_registry, "mlp", 3, 16).eval()
    with torch.no_grad():
        a = model(x, edge_index).logits
        b = model(x, edge_index[:, :0]).logits
        c = model(x, None).logits
        # a row's prediction depends on that row only
        d = model(x[:5], edge_index[:, :0]).logits
    assert torch.equal(a, b) and torch.equal(a, c)
    assert torch.allclose(a[:5], d, atol=1e-6)


def test_dropout_only_in_training(gkd_registry, graph):
    x, edge_index = graph
    model = build(gkd_registry, "gcn", 2, 16, dropout=0.5)
    with torch.no_grad():
        model.eval()
        e1, e2 = model(x, edge_index).logits, model(x, edge_index).logits
        model.train()
        t1, t2 = model(x, edge_index).logits, model(x, edge_index).logits
    assert torch.equal(e1, e2)
    assert not torch.equal(t1, t2)


# ------------------------------------------------------------------------------ parameter counts


def linear(i, o, bias=True):
    return i * o + (o if bias else 0)


def gcn_count(dims):
    # GCNConv: one weight matrix (in x out) and a bias (out)
    return sum(linear(i, o) for i, o in dims)


def sage_count(dims):
    # SAGEConv (mean): lin_l on the aggregated neighbours, with bias; lin_r on the root, no bias
    return sum(linear(i, o) + linear(i, o, bias=False) for i, o in dims)


def gat_layer(i, out_per_head, heads):
    # GATConv(i, out_per_head, heads, concat=True): lin (no bias) i -> heads*out,
    # att_src and att_dst [1, heads, out], bias [heads*out]
    total = heads * out_per_head
    return i * total + total + total + total


@pytest.mark.parametrize(
    "family, layers, hidden, params, expected",
    [
        ("gcn", 2, 16, {}, (10 * 16 + 16) + (16 * 3 + 3)),
        ("gcn", 1, 0, {}, 10 * 3 + 3),
        ("gcn", 3, 8, {}, gcn_count([(10, 8), (8, 8), (8, 3)])),
        ("sage", 2, 16, {}, (10 * 16 * 2 + 16) + (16 * 3 * 2 + 3)),
        ("sage", 3, 8, {}, sage_count([(10, 8), (8, 8), (8, 3)])),
        ("mlp", 2, 16, {}, (10 * 16 + 16) + (16 * 3 + 3)),
        ("mlp", 3, 32, {}, (10 * 32 + 32) + (32 * 32 + 32) + (32 * 3 + 3)),
        # GAT, heads=1: hidden 16 -> layer 1 (10*16 + 16 + 16 + 16), output layer (16*3 + 3 + 3 + 3)
        ("gat", 2, 16, {"heads": 1}, (10 * 16 + 3 * 16) + (16 * 3 + 3 * 3)),
        # heads=4: 4 heads of 4 channels, concatenated to 16; output layer has one head
        ("gat", 2, 16, {"heads": 4}, gat_layer(10, 4, 4) + gat_layer(16, 3, 1)),
        ("gat", 3, 16, {"heads": 4}, gat_layer(10, 4, 4) + gat_layer(16, 4, 4) + gat_layer(16, 3, 1)),
        # a 1-layer GAT ignores heads
        ("gat", 1, 0, {"heads": 4}, gat_layer(10, 3, 1)),
    ],
)
def test_parameter_counts(gkd_registry, family, layers, hidden, params, expected):
    model = build(gkd_registry, family, layers, hidden, **params)
    assert count_parameters(model) == expected


def test_gat_heads_numbers_by_hand(gkd_registry):
    # written out once without helpers: in=10, hidden=16, heads=4 (4 per head), classes=3
    layer1 = 10 * 16 + 16 + 16 + 16  # lin, att_src, att_dst, bias
    layer2 = 16 * 3 + 3 + 3 + 3
    assert count_parameters(build(gkd_registry, "gat", 2, 16, heads=4)) == layer1 + layer2 == 265


def test_gat_layers_are_built_as_documented(gkd_registry):
    model = build(gkd_registry, "gat", 3, 16, heads=4)
    first, middle, last = model.layers
    assert (first.heads, first.out_channels, first.concat) == (4, 4, True)
    assert (middle.heads, middle.out_channels) == (4, 4)
    assert (last.heads, last.out_channels) == (1, 3)


# ------------------------------------------------------------------------------ bad parameters


@pytest.mark.parametrize("family", ["gcn", "sage", "mlp"])
def test_unknown_family_param(gkd_registry, family):
    with pytest.raises(UsageError, match=f"{family}: unknown family parameter 'heads' \\(known: none\\)"):
        build(gkd_registry, family, 2, 16, heads=2)


def test_gat_unknown_param(gkd_registry):
    with pytest.raises(UsageError, match=r"gat: unknown family parameter 'depth' \(known: heads\)"):
        build(gkd_registry, "gat", 2, 16, heads=2, depth=3)


def test_gat_hidden_not_multiple_of_heads(gkd_registry):
    with pytest.raises(UsageError, match="gat: hidden_channels=10 is not a multiple of heads=4"):
        build(gkd_registry, "gat", 2, 10, heads=4)
    # a 1-layer model has no hidden layer, so any heads value is accepted
    assert build(gkd_registry, "gat", 1, 10, heads=4) is not None


def test_zero_layers_rejected(gkd_registry):
    with pytest.raises(ValueError, match="num_layers must be >= 1"):
        build(gkd_registry, "gcn", 0, 16)
