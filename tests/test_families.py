"""The built-in model families: shapes, per-layer outputs, parameter counts, bad parameters."""

from __future__ import annotations

import math

import pytest
import torch

from gkd_search.errors import UsageError
from gkd_search.types import GraphModel, count_parameters, run_model

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


@pytest.fixture(scope="module")
def edge_type(graph):
    """A relation (0..R-1) per edge of :func:`graph`, for RGCN."""
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, R, (graph[1].size(1),), generator=g)


R = 3

CASES = [
    ("gcn", {}),
    ("sage", {}),
    ("gat", {"heads": 1}),
    ("gat", {"heads": 4}),
    ("mlp", {}),
    ("gcnii", {}),
    ("gcnii", {"alpha": 0.5, "theta": 1.5}),
    ("sgc", {}),
    ("appnp", {"K": 3, "alpha": 0.2}),
    ("rgcn", {"num_relations": R}),
    ("rgcn", {"num_relations": R, "bases": 2}),
]


def expected_hidden_shapes(family, layers, hidden):
    """What ``ModelOutput.hidden`` holds for each family (see the families' docstrings)."""
    if family == "gcnii":  # every convolution, then the logits
        return [(N, hidden)] * layers + [(N, C)]
    if family == "sgc":  # every propagation step, each C wide
        return [(N, C)] * layers
    return [(N, hidden)] * (layers - 1) + [(N, C)]  # appnp: the MLP's hidden layers, then Z^(K)


@pytest.mark.parametrize("family, params", CASES)
@pytest.mark.parametrize("layers", [1, 2, 3])
def test_output_shapes(gkd_registry, graph, edge_type, family, params, layers):
    x, edge_index = graph
    hidden = 16
    model = build(gkd_registry, family, layers, hidden, **params).eval()
    out = run_model(model, x, edge_index, edge_type)
    assert out.logits.shape == (N, C)
    assert [tuple(h.shape) for h in out.hidden] == expected_hidden_shapes(family, layers, hidden)
    assert len(out.hidden) == (layers + 1 if family == "gcnii" else layers)
    assert out.hidden[-1] is out.logits
    assert torch.isfinite(out.logits).all()


def test_uses_graph_flags(gkd_registry):
    expected = {"gcn": True, "sage": True, "gat": True, "mlp": False,
                "gcnii": True, "sgc": True, "appnp": True, "rgcn": True}
    for name, flag in expected.items():
        family = gkd_registry.get("family", name)
        assert family.uses_graph is flag
        assert build(gkd_registry, name, 2, 8).uses_graph is flag
        if name != "appnp":
            assert family.num_hops(3) == (3 if flag else 0)


def test_relational_and_hidden_channels_flags(gkd_registry):
    for name in ("gcn", "sage", "gat", "mlp", "gcnii", "sgc", "appnp", "rgcn"):
        family = gkd_registry.get("family", name)
        assert family.relational is (name == "rgcn"), name
        assert build(gkd_registry, name, 2, 8).relational is (name == "rgcn"), name
        assert family.uses_hidden_channels is (name != "sgc"), name


def test_num_hops(gkd_registry):
    appnp = gkd_registry.get("family", "appnp")
    assert appnp.num_hops(2, K=10, alpha=0.1) == 10
    assert appnp.num_hops(3, K=5) == 5
    assert appnp.num_hops(1) == 10  # the default K
    assert gkd_registry.get("family", "sgc").num_hops(4) == 4  # K = num_layers
    assert gkd_registry.get("family", "gcnii").num_hops(64, alpha=0.1, theta=0.5) == 64
    assert gkd_registry.get("family", "rgcn").num_hops(2, bases=4) == 2


def test_graph_families_read_edges(gkd_registry, graph):
    x, edge_index = graph
    for name in ("gcn", "sage", "gat", "gcnii", "sgc", "appnp", "rgcn"):
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


@pytest.mark.parametrize("family", ["gcn", "gcnii", "sgc", "appnp", "rgcn"])
def test_dropout_only_in_training(gkd_registry, graph, family):
    x, edge_index = graph
    model = build(gkd_registry, family, 2, 16, dropout=0.5)
    with torch.no_grad():
        model.eval()
        e1, e2 = model(x, edge_index).logits, model(x, edge_index).logits
        model.train()
        t1, t2 = model(x, edge_index).logits, model(x, edge_index).logits
    assert torch.equal(e1, e2)
    assert not torch.equal(t1, t2)


# ------------------------------------------------------------------------------ chunked inference


@pytest.mark.parametrize("family, params", CASES)
@pytest.mark.parametrize("layers", [1, 3])
def test_chunked_inference_equals_forward(gkd_registry, graph, edge_type, family, params, layers):
    x, edge_index = graph
    edge_type = edge_type if family == "rgcn" else None
    model = build(gkd_registry, family, layers, 16, dropout=0.5, **params)
    model.train()  # inference() must switch to eval mode itself
    chunked = model.inference(x, edge_index, edge_type, chunk_size=7)
    assert not model.training
    with torch.no_grad():
        full = run_model(model, x, edge_index, edge_type)
    assert len(chunked.hidden) == len(full.hidden)
    for got, want in zip(chunked.hidden, full.hidden):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    torch.testing.assert_close(chunked.logits, full.logits, atol=1e-5, rtol=0)
    assert chunked.hidden[-1] is chunked.logits

    logits_only = model.inference(x, edge_index, edge_type, chunk_size=7, keep_hidden=False)
    assert len(logits_only.hidden) == 1 and logits_only.hidden[0] is logits_only.logits
    torch.testing.assert_close(logits_only.logits, full.logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", ["gcn", "sage", "gat", "mlp", "gcnii", "sgc", "appnp"])
def test_inference_ignores_edge_type_of_non_relational_models(gkd_registry, graph, edge_type, family):
    """``run_model`` ignores relation types for non-relational models; chunked inference must too."""
    x, edge_index = graph
    model = build(gkd_registry, family, 2, 16).eval()
    with torch.no_grad():
        full = model(x, edge_index).logits
    torch.testing.assert_close(model.inference(x, edge_index, edge_type, chunk_size=7).logits, full, atol=1e-5, rtol=0)


def test_chunked_inference_really_chunks(gkd_registry, graph):
    """With chunk_size < N a chunk's subgraph holds only part of the nodes, so equal outputs above
    are not the full graph computed once; a chunk_size >= N is the plain forward."""
    from gkd_search.graph_ops import NeighbourhoodIndex

    x, edge_index = graph
    subs = list(NeighbourhoodIndex(edge_index, N).chunks(7))
    assert len(subs) == 5 and all(sub.num_seeds <= 7 < N for sub in subs)
    assert sum(int(sub.edge_ids.numel()) for sub in subs) == edge_index.size(1)
    for family in ("gcnii", "sgc", "appnp"):
        model = build(gkd_registry, family, 2, 16).eval()
        with torch.no_grad():
            torch.testing.assert_close(model.inference(x, edge_index, chunk_size=N).logits, model(x, edge_index).logits)


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


def gcnii_count(layers, hidden):
    # lin_in + one hidden x hidden weight per GCN2Conv (shared_weights, no bias) + lin_out
    return linear(10, hidden) + layers * hidden * hidden + linear(hidden, 3)


def rgcn_count(dims, relations, bases):
    # RGCNConv: per-relation weights (R x in x out) or bases (B x in x out + R x B), root (in x out), bias
    per_relation = (lambda i, o: relations * i * o) if bases == 0 else (lambda i, o: bases * i * o + relations * bases)
    return sum(per_relation(i, o) + i * o + o for i, o in dims)


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
        # GCNII: lin_in (10x16 + 16), one shared 16x16 weight per GCN2Conv (no bias), lin_out (16x3 + 3)
        ("gcnii", 1, 16, {}, (10 * 16 + 16) + 16 * 16 + (16 * 3 + 3)),
        ("gcnii", 4, 8, {"alpha": 0.2, "theta": 1.0}, gcnii_count(4, 8)),
        ("gcnii", 64, 64, {}, gcnii_count(64, 64)),
        # SGC: one 10x3 map and a bias, whatever K and hidden_channels are
        ("sgc", 1, 0, {}, 10 * 3 + 3),
        ("sgc", 5, 64, {}, 10 * 3 + 3),
        # APPNP: the MLP's linears; the propagation has no parameters
        ("appnp", 1, 0, {}, 10 * 3 + 3),
        ("appnp", 2, 16, {"K": 10, "alpha": 0.1}, (10 * 16 + 16) + (16 * 3 + 3)),
        ("appnp", 3, 32, {"K": 2}, (10 * 32 + 32) + (32 * 32 + 32) + (32 * 3 + 3)),
        # RGCN, full weights: R per-relation matrices + the root matrix + bias per layer
        ("rgcn", 1, 0, {"num_relations": 1}, 1 * 10 * 3 + 10 * 3 + 3),
        ("rgcn", 2, 16, {"num_relations": 3}, rgcn_count([(10, 16), (16, 3)], 3, 0)),
        # with B = 2 < R = 3 bases: B matrices and an R x B coefficient table per layer
        ("rgcn", 2, 16, {"num_relations": 3, "bases": 2}, (2 * 10 * 16 + 3 * 2 + 10 * 16 + 16) + (2 * 16 * 3 + 3 * 2 + 16 * 3 + 3)),
        ("rgcn", 3, 8, {"num_relations": 10, "bases": 4}, rgcn_count([(10, 8), (8, 8), (8, 3)], 10, 4)),
        # B >= R falls back to full per-relation weights
        ("rgcn", 2, 16, {"num_relations": 3, "bases": 4}, rgcn_count([(10, 16), (16, 3)], 3, 0)),
        ("rgcn", 2, 16, {"num_relations": 3, "bases": 3}, rgcn_count([(10, 16), (16, 3)], 3, 0)),
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


# ------------------------------------------------------------------------------ the papers' equations by hand


def dense_gcn_operator(edge_index, num_nodes):
    """``P = D^-1/2 (A + I) D^-1/2`` as a dense matrix, ``A[i, j]`` = number of edges ``j -> i``."""
    a = torch.zeros(num_nodes, num_nodes)
    a.index_put_((edge_index[1], edge_index[0]), torch.ones(edge_index.size(1)), accumulate=True)
    a = a + torch.eye(num_nodes)
    d = a.sum(1).pow(-0.5)
    return d[:, None] * a * d[None, :]


def test_gcnii_is_equation_5(gkd_registry, graph):
    """Chen et al. 2020, Eq. 5: H' = relu(((1-a) P H + a H0)((1-b_l) I + b_l W_l)), b_l = log(theta/l + 1)."""
    x, edge_index = graph
    alpha, theta, width, layers = 0.2, 1.5, 8, 3
    model = build(gkd_registry, "gcnii", layers, width, alpha=alpha, theta=theta).eval()
    p = dense_gcn_operator(edge_index, N)
    x0 = torch.relu(x @ model.lin_in.weight.T + model.lin_in.bias)
    h, expected = x0, []
    for layer, conv in enumerate(model.convs, start=1):
        beta = math.log(theta / layer + 1)
        assert conv.beta == pytest.approx(beta) and conv.alpha == alpha
        h = ((1 - alpha) * p @ h + alpha * x0) @ ((1 - beta) * torch.eye(width) + beta * conv.weight1)
        expected.append(h)
        h = torch.relu(h)
    expected.append(h @ model.lin_out.weight.T + model.lin_out.bias)
    with torch.no_grad():
        out = model(x, edge_index)
    assert len(out.hidden) == len(expected) == layers + 1
    for got, want in zip(out.hidden, expected):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_gcnii_defaults_are_the_papers_cora_setting(gkd_registry):
    model = build(gkd_registry, "gcnii", 2, 8)
    assert [c.alpha for c in model.convs] == [0.1, 0.1]  # alpha = 0.1, lambda = 0.5 (Chen et al. 2020, Sec. 6.1)
    assert [c.beta for c in model.convs] == pytest.approx([math.log(0.5 / 1 + 1), math.log(0.5 / 2 + 1)])


def test_sgc_is_equation_8(gkd_registry, graph):
    """Wu et al. 2019, Eq. 8: logits = S^K X W (+ b after the last step); hidden = [S X W, ..., S^K X W + b]."""
    from torch_geometric.nn import SGConv

    x, edge_index = graph
    model = build(gkd_registry, "sgc", 3, 0).eval()
    with torch.no_grad():
        model.bias.copy_(torch.tensor([0.5, -1.0, 2.0]))  # a bias that is not zero, to see where it goes
        out = model(x, edge_index)
    s = dense_gcn_operator(edge_index, N)
    xw = x @ model.lin.weight.T
    expected = [s @ xw, s @ s @ xw, s @ s @ s @ xw + model.bias]
    for got, want in zip(out.hidden, expected):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # the same function as PyG's SGConv (propagate K times, then the linear map with its bias)
    reference = SGConv(F_IN, C, K=3)
    with torch.no_grad():
        reference.lin.weight.copy_(model.lin.weight)
        reference.lin.bias.copy_(model.bias)
        torch.testing.assert_close(out.logits, reference(x, edge_index), atol=1e-5, rtol=1e-5)


def test_appnp_is_equations_3_and_4(gkd_registry, graph):
    """Gasteiger et al. 2019, Eq. 4: Z <- (1-a) S Z + a H, K times from Z = H = MLP(X); for large K
    it reaches Eq. 3's closed form a (I - (1-a) S)^-1 H."""
    x, edge_index = graph
    alpha = 0.2
    s = dense_gcn_operator(edge_index, N)
    for k in (1, 5, 120):
        model = build(gkd_registry, "appnp", 2, 16, K=k, alpha=alpha).eval()
        first, last = model.lins
        pre = x @ first.weight.T + first.bias
        h = torch.relu(pre) @ last.weight.T + last.bias
        z = h
        for _ in range(k):
            z = (1 - alpha) * s @ z + alpha * h
        with torch.no_grad():
            out = model(x, edge_index)
        torch.testing.assert_close(out.hidden[0], pre, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.logits, z, atol=1e-5, rtol=1e-5)
    # (1 - alpha)^120 < 1e-11: the iteration has converged to personalised PageRank
    closed = alpha * torch.linalg.solve(torch.eye(N) - (1 - alpha) * s, h)
    torch.testing.assert_close(out.logits, closed, atol=1e-4, rtol=1e-4)


def test_rgcn_one_relation_by_hand(gkd_registry):
    """Schlichtkrull et al. 2018, Eq. 2 with R = 1, c_i = |N_i|: h_i' = W_0 h_i + mean_{j->i} W_1 h_j + b."""
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, -1.0], [0.5, 0.5]])
    # edges j -> i: 0->1, 2->1, 3->1, 1->2, 0->3; node 0 has no in-neighbours
    edge_index = torch.tensor([[0, 2, 3, 1, 0], [1, 1, 1, 2, 3]])
    torch.manual_seed(0)
    model = gkd_registry.get("family", "rgcn").build(2, 3, 2, 4, num_relations=1).eval()
    first, second = model.layers

    def layer(conv, h):
        w, root, b = conv.weight[0], conv.root, conv.bias
        return torch.stack([
            h[0] @ root + b,
            h[1] @ root + (h[0] + h[2] + h[3]) / 3 @ w + b,
            h[2] @ root + h[1] @ w + b,
            h[3] @ root + h[0] @ w + b,
        ])

    h1 = layer(first, x)
    logits = layer(second, torch.relu(h1))
    with torch.no_grad():
        out = model(x, edge_index)  # no edge types: one relation
        typed = model(x, edge_index, torch.zeros(5, dtype=torch.long))
    torch.testing.assert_close(out.hidden[0], h1, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(out.logits, logits, atol=1e-6, rtol=1e-6)
    assert torch.equal(out.logits, typed.logits)


@pytest.mark.parametrize("bases", [0, 2])
def test_rgcn_reads_relation_types(gkd_registry, graph, edge_type, bases):
    """Relabelling the relations changes the output; relabelling the per-relation weights
    (or basis coefficients) the same way restores it exactly."""
    x, edge_index = graph
    model = build(gkd_registry, "rgcn", 2, 16, num_relations=R, bases=bases).eval()
    shifted = (edge_type + 1) % R
    with torch.no_grad():
        out = model(x, edge_index, edge_type).logits
        assert not torch.allclose(model(x, edge_index, shifted).logits, out, atol=1e-3)
        for conv in model.layers:
            table = conv.weight if bases == 0 else conv.comp  # [R, ...] either way
            assert table.size(0) == R
            table.copy_(table[(torch.arange(R) - 1) % R])  # relation r's weights move to r + 1
        torch.testing.assert_close(model(x, edge_index, shifted).logits, out, atol=1e-5, rtol=1e-5)


def test_rgcn_bases_fall_back_to_full_weights(gkd_registry):
    family = gkd_registry.get("family", "rgcn")
    assert [c.num_bases for c in family.build(F_IN, C, 2, 8, num_relations=5, bases=4).layers] == [4, 4]
    for bases in (0, 5, 8):
        layers = family.build(F_IN, C, 2, 8, num_relations=5, bases=bases).layers
        assert [c.num_bases for c in layers] == [None, None]
        assert [tuple(c.weight.shape) for c in layers] == [(5, F_IN, 8), (5, 8, C)]


# ------------------------------------------------------------------------------ bad parameters


@pytest.mark.parametrize("family", ["gcn", "sage", "mlp", "sgc"])
def test_unknown_family_param(gkd_registry, family):
    with pytest.raises(UsageError, match=f"{family}: unknown family parameter 'heads' \\(known: none\\)"):
        build(gkd_registry, family, 2, 16, heads=2)


@pytest.mark.parametrize("family, known", [("gcnii", "alpha, theta"), ("appnp", "K, alpha"), ("rgcn", "bases")])
def test_new_families_unknown_param(gkd_registry, family, known):
    with pytest.raises(UsageError, match=rf"{family}: unknown family parameter 'heads' \(known: {known}\)"):
        build(gkd_registry, family, 2, 16, heads=2)


@pytest.mark.parametrize("family, layers, hidden, params, message", [
    ("gcnii", 1, 0, {}, "gcnii: hidden_channels=0 must be >= 1"),
    ("gcnii", 2, 8, {"alpha": 1.5}, r"gcnii: alpha=1.5 must be in \[0, 1\]"),
    ("gcnii", 2, 8, {"theta": 0}, "gcnii: theta=0.0 must be > 0"),
    ("gcnii", 2, 8, {"alpha": "high"}, "gcnii: alpha='high' and theta=0.5 must be numbers"),
    ("gcnii", 0, 8, {}, "gcnii: num_layers=0 must be >= 1"),
    ("sgc", 0, 0, {}, "sgc: num_layers=0 must be >= 1"),
    ("appnp", 2, 8, {"K": 0}, "appnp: K=0 must be an integer >= 1"),
    ("appnp", 2, 8, {"K": 2.5}, "appnp: K=2.5 must be an integer >= 1"),
    ("appnp", 2, 8, {"alpha": 0}, r"appnp: alpha=0 must be in \(0, 1\]"),
    ("appnp", 0, 8, {}, "appnp: num_layers=0 must be >= 1"),
    ("rgcn", 2, 8, {"bases": -1}, "rgcn: bases=-1 must be an integer >= 0"),
    ("rgcn", 2, 8, {"num_relations": 0}, "rgcn: num_relations=0 must be an integer >= 1"),
])
def test_new_families_bad_values(gkd_registry, family, layers, hidden, params, message):
    with pytest.raises(UsageError, match=message):
        build(gkd_registry, family, layers, hidden, **params)


def test_string_values_from_the_teacher_spec_are_accepted(gkd_registry):
    # TeacherConfig.parse keeps "0.2" as a string; the families convert it
    model = build(gkd_registry, "gcnii", 2, 8, alpha="0.2", theta="1.0")
    assert model.convs[0].alpha == 0.2
    assert build(gkd_registry, "appnp", 2, 8, K="5", alpha="0.2").K == 5


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
