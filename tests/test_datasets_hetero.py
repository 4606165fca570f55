"""typed_graph (the heterogeneous -> relational conversion) on hand-made graphs, and synthetic-hetero."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from torch_geometric.nn import RGCNConv

from gkd_search.datasets.hetero import typed_graph
from gkd_search.errors import UsageError

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------ typed_graph


def two_type_graph(**kwargs):
    """3 papers (target, 2 features) and 2 authors (no features).

    author 0 wrote papers 0 and 1, author 1 wrote paper 2; paper 1 and paper 2 cite paper 0.
    """
    x_dict = {"paper": torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])}
    edge_index_dict = {
        ("paper", "cites", "paper"): torch.tensor([[1, 2], [0, 0]]),
        ("author", "writes", "paper"): torch.tensor([[0, 0, 1], [0, 1, 2]]),
    }
    masks = {"train": torch.tensor([0]), "val": torch.tensor([False, True, False]), "test": torch.tensor([2])}
    return typed_graph(x_dict, edge_index_dict, {"author": 2, "paper": 3}, "paper", torch.tensor([[2], [0], [1]]),
                       masks, **kwargs)


def test_typed_graph_by_hand():
    data, names = two_type_graph()
    # ids: papers 0, 1, 2 keep theirs, authors 0, 1 -> 3, 4; relations sorted by triplet:
    # (author, writes, paper) = 0, (paper, cites, paper) = 1, then their reverses 2, 3
    assert names == ("writes", "cites", "rev_writes", "rev_cites")
    assert data.edge_index.tolist() == [
        [3, 3, 4, 1, 2, 0, 1, 2, 0, 0],
        [0, 1, 2, 0, 0, 3, 3, 4, 1, 2],
    ]
    assert data.edge_type.tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3]
    assert data.node_type.tolist() == [0, 0, 0, 1, 1]
    # papers: their features; author 0: mean of papers 0, 1; author 1: paper 2; then the type one-hot
    assert data.x.tolist() == [
        [1.0, 2.0, 1.0, 0.0],
        [3.0, 4.0, 1.0, 0.0],
        [5.0, 6.0, 1.0, 0.0],
        [2.0, 3.0, 0.0, 1.0],
        [5.0, 6.0, 0.0, 1.0],
    ]
    assert data.y.tolist() == [2, 0, 1, -1, -1]
    assert data.train_mask.tolist() == [True, False, False, False, False]
    assert data.val_mask.tolist() == [False, True, False, False, False]
    assert data.test_mask.tolist() == [False, False, True, False, False]
    assert data.target_mask.tolist() == [True, True, True, False, False]
    assert data.num_nodes == 5


def test_typed_graph_without_reverse():
    data, names = two_type_graph(add_reverse=False)
    assert names == ("writes", "cites")
    assert data.edge_index.tolist() == [[3, 3, 4, 1, 2], [0, 1, 2, 0, 0]]
    assert data.edge_type.tolist() == [0, 0, 0, 1, 1]


def test_feature_filling_runs_in_rounds():
    """paper -> author (round 1) -> institution (round 2); a type with no relation stays zero.

    paper 0 = (2, 0), paper 1 = (0, 4); author 0 wrote both, author 1 paper 1, author 2 nothing;
    authors 0, 1 are at institution 0, author 2 at institution 1.
    """
    x_dict = {"paper": torch.tensor([[2.0, 0.0], [0.0, 4.0]])}
    edges = {
        ("author", "writes", "paper"): torch.tensor([[0, 0, 1], [0, 1, 1]]),
        ("author", "affiliated_with", "institution"): torch.tensor([[0, 1, 2], [0, 0, 1]]),
    }
    counts = {"paper": 2, "author": 3, "institution": 2, "zoo": 1}
    data, names = typed_graph(x_dict, edges, counts, "paper", torch.tensor([0, 1]),
                              {"train": torch.tensor([0]), "val": torch.tensor([1]), "test": torch.tensor([], dtype=torch.long)})
    assert names == ("affiliated_with", "writes", "rev_affiliated_with", "rev_writes")
    # order: paper, author, institution, zoo
    assert data.node_type.tolist() == [0, 0, 1, 1, 1, 2, 2, 3]
    features = data.x[:, :2].tolist()
    assert features[:2] == [[2.0, 0.0], [0.0, 4.0]]
    assert features[2:5] == [[1.0, 2.0], [0.0, 4.0], [0.0, 0.0]]  # authors; author 2 wrote nothing
    assert features[5:7] == [[0.5, 3.0], [0.0, 0.0]]  # institutions: mean of their authors
    assert features[7] == [0.0, 0.0]  # no relation to any featured type
    assert torch.equal(data.x[:, 2:], torch.eye(4)[data.node_type])

    # a round only reads types featured before it: with a paper->institution relation,
    # institutions are filled in round 1 from papers alone, not from the authors filled alongside
    edges[("paper", "funds", "institution")] = torch.tensor([[1], [1]])
    data, _ = typed_graph(x_dict, edges, counts, "paper", torch.tensor([0, 1]),
                          {"train": torch.tensor([0]), "val": torch.tensor([1]), "test": torch.tensor([], dtype=torch.long)})
    assert data.x[5:7, :2].tolist() == [[0.0, 0.0], [0.0, 4.0]]


def test_shared_relation_names_get_full_names():
    edges = {("a", "to", "b"): torch.tensor([[0], [0]]), ("b", "to", "a"): torch.tensor([[0], [0]])}
    _, names = typed_graph({"a": torch.ones(1, 1)}, edges, {"a": 1, "b": 1}, "a", torch.tensor([0]),
                           {"train": torch.tensor([0]), "val": torch.tensor([0]), "test": torch.tensor([0])})
    assert names == ("a__to__b", "b__to__a", "rev_a__to__b", "rev_b__to__a")


def test_typed_graph_rejects_bad_input():
    masks = {"train": torch.tensor([0]), "val": torch.tensor([0]), "test": torch.tensor([0])}
    with pytest.raises(ValueError, match="feature widths differ"):
        typed_graph({"a": torch.ones(1, 2), "b": torch.ones(1, 3)}, {}, {"a": 1, "b": 1}, "a", torch.tensor([0]), masks)
    with pytest.raises(ValueError, match="target type 'c'"):
        typed_graph({"a": torch.ones(1, 2)}, {}, {"a": 1}, "c", torch.tensor([0]), masks)
    with pytest.raises(ValueError, match="without a node count"):
        typed_graph({"a": torch.ones(1, 2)}, {("a", "r", "z"): torch.tensor([[0], [0]])}, {"a": 1}, "a",
                    torch.tensor([0]), masks)


# ------------------------------------------------------------------------------ synthetic-hetero

SMALL = {"papers": 600, "authors": 300, "fields": 20, "features": 16, "classes": 3}


def load(registry, tmp_path, seed=0, **options):
    return registry.get("dataset", "synthetic-hetero").load(None, tmp_path, seed=seed, **{**SMALL, **options})


def test_synthetic_hetero_sizes_and_split(gkd_registry, tmp_path):
    ds = load(gkd_registry, tmp_path)
    d = ds.data
    assert ds.name == "synthetic-hetero-600p-300a-20fos-16f-3c"
    assert ds.is_heterogeneous and ds.num_classes == 3
    assert ds.num_nodes == 600 + 300 + 20
    assert ds.relation_names == ("writes", "cites", "has_topic", "rev_writes", "rev_cites", "rev_has_topic")
    assert ds.num_relations == 6 and int(d.edge_type.max()) == 5
    assert ds.num_features == 16 + 3  # features + one-hot of 3 node types
    # papers first, then author, field_of_study
    assert d.node_type.tolist() == [0] * 600 + [1] * 300 + [2] * 20
    assert torch.equal(d.target_mask, d.node_type == 0)
    assert torch.equal(ds.target_nodes, torch.arange(600))
    assert bool((d.y[600:] == -1).all()) and int(d.y[:600].min()) >= 0 and int(d.y[:600].max()) < 3
    for mask in (d.train_mask, d.val_mask, d.test_mask):
        assert not mask[600:].any()
    assert not (d.train_mask & d.val_mask).any() and not (d.train_mask & d.test_mask).any()
    assert bool((d.train_mask | d.val_mask | d.test_mask)[:600].all())
    assert torch.bincount(d.y[d.train_mask], minlength=3).tolist() == [20] * 3
    assert torch.bincount(d.y[d.val_mask], minlength=3).tolist() == [30] * 3
    # every edge joins the types its relation names, and reverse types mirror forward ones
    src_type, dst_type = d.node_type[d.edge_index[0]], d.node_type[d.edge_index[1]]
    expected = {0: (1, 0), 1: (0, 0), 2: (0, 2), 3: (0, 1), 4: (0, 0), 5: (2, 0)}
    for rel, (s, t) in expected.items():
        sel = d.edge_type == rel
        assert sel.any()
        assert bool((src_type[sel] == s).all()) and bool((dst_type[sel] == t).all()), rel
    for rel in range(3):
        assert torch.equal(d.edge_index[:, d.edge_type == rel].flip(0), d.edge_index[:, d.edge_type == rel + 3])
    cites = d.edge_index[:, d.edge_type == 1]
    assert not bool((cites[0] == cites[1]).any())  # no self-citations
    assert torch.unique(cites, dim=1).size(1) == cites.size(1)
    # authors and fields carry the mean of their papers' features (round 1 of typed_graph)
    papers_of_author_0 = d.edge_index[1, (d.edge_type == 0) & (d.edge_index[0] == 600)]
    assert torch.allclose(d.x[600, :16], d.x[papers_of_author_0, :16].mean(0), atol=1e-5)
    assert ds.fingerprint()["edge_type_sum"] == int(d.edge_type.sum())


def test_synthetic_hetero_relations_carry_the_class(gkd_registry, tmp_path):
    d = load(gkd_registry, tmp_path).data
    y = d.y
    cites = d.edge_index[:, d.edge_type == 1]
    # homophily 0.8, 3 classes: P(same class) = 0.8 + 0.2 / 3 = 0.867
    assert float((y[cites[0]] == y[cites[1]]).float().mean()) > 0.8
    topics = d.edge_index[:, d.edge_type == 2]
    field_class = (topics[1] - 900) % 3
    assert float((y[topics[0]] == field_class).float().mean()) > 0.8
    # an author's papers: mostly of one class
    writes = d.edge_index[:, d.edge_type == 0]
    majority = []
    for author in range(600, 900):
        classes = y[writes[1, writes[0] == author]]
        if classes.numel() >= 3:
            majority.append(float(torch.bincount(classes, minlength=3).max()) / classes.numel())
    assert sum(majority) / len(majority) > 0.7


def _fit(model, d, epochs=60):
    """Full-batch Adam; test accuracy at the best validation accuracy."""
    torch.manual_seed(0)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=5e-4)
    best = (-1.0, 0.0)
    for _ in range(epochs):
        model.train()
        optimiser.zero_grad()
        F.cross_entropy(model(d)[d.train_mask], d.y[d.train_mask]).backward()
        optimiser.step()
        model.eval()
        with torch.no_grad():
            pred = model(d).argmax(-1)
        val = float((pred[d.val_mask] == d.y[d.val_mask]).float().mean())
        test = float((pred[d.test_mask] == d.y[d.test_mask]).float().mean())
        if val > best[0]:
            best = (val, test)
    return best[1]


class _RGCN(torch.nn.Module):
    def __init__(self, channels, classes, relations):
        super().__init__()
        self.conv1, self.conv2 = RGCNConv(channels, 32, relations), RGCNConv(32, classes, relations)

    def forward(self, d):
        return self.conv2(F.relu(self.conv1(d.x, d.edge_index, d.edge_type)), d.edge_index, d.edge_type)


def test_synthetic_hetero_rgcn_beats_mlp(gkd_registry, tmp_path):
    ds = load(gkd_registry, tmp_path)
    d = ds.data
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(ds.num_features, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
    mlp_acc = _fit(_Features(mlp), d)
    rgcn_acc = _fit(_RGCN(ds.num_features, 3, ds.num_relations), d)
    # measured (seed 0): MLP 0.59, RGCN 0.96; features alone are noisy, the relations are not
    assert mlp_acc < 0.8
    assert rgcn_acc > mlp_acc + 0.15


class _Features(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, d):
        return self.net(d.x)


def test_synthetic_hetero_seeded(gkd_registry, tmp_path):
    a = load(gkd_registry, tmp_path, seed=3).data
    b = load(gkd_registry, tmp_path, seed=3).data
    c = load(gkd_registry, tmp_path, seed=4).data
    for key in ("x", "y", "edge_index", "edge_type", "node_type", "train_mask", "val_mask", "test_mask"):
        assert torch.equal(a[key], b[key]), key
    assert not torch.equal(a.x, c.x) and not torch.equal(a.train_mask, c.train_mask)


def test_synthetic_hetero_string_options(gkd_registry, tmp_path):
    ds = load(gkd_registry, tmp_path, papers="240", authors="10", fields="2", features="4", classes="2", homophily="0.5")
    assert ds.num_nodes == 252 and ds.num_features == 4 + 3 and ds.num_classes == 2


@pytest.mark.parametrize(
    "options, message",
    [
        ({"venues": 3}, "synthetic-hetero: unknown option 'venues' (known: papers, authors, fields, features, classes, homophily)"),
        ({"papers": "many"}, "synthetic-hetero: option values must be numbers"),
        ({"classes": 1}, "classes >= 2"),
        ({"authors": 0}, "authors, features must be >= 1"),
        ({"homophily": -0.1}, "0 <= homophily <= 1"),
        ({"papers": 100}, "synthetic-hetero: papers=100 is too few for 3 classes; use at least 180"),
        ({"fields": 2}, "synthetic-hetero: fields=2 is fewer than classes=3; use at least 3"),
    ],
)
def test_synthetic_hetero_bad_options(gkd_registry, tmp_path, options, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        load(gkd_registry, tmp_path, **options)
