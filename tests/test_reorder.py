"""The cache-friendly node order (``gkd_search.reorder``): a renumbered graph gives every family
the original order's outputs back, RCM shrinks a shuffled graph's bandwidth, and full-batch
training on a renumbered graph learns what it learns on the original one."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Data

from gkd_search import reorder
from gkd_search.distill.loop import TrainingSettings, train_model
from gkd_search.reorder import NodeOrder, node_order_for
from gkd_search.types import run_model

pytestmark = pytest.mark.usefixtures("one_thread")

N, F_IN, C = 300, 24, 3
CASES = [("gcn", {}), ("sage", {}), ("gcnii", {}), ("appnp", {"K": 3, "alpha": 0.2}), ("sgc", {}), ("mlp", {}),
         ("gat", {"heads": 2})]


def _grid(side: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A side x side grid (both directions) with shuffled node ids, and the shuffle."""
    ids = torch.arange(side * side).view(side, side)
    right = torch.stack([ids[:, :-1].reshape(-1), ids[:, 1:].reshape(-1)])
    down = torch.stack([ids[:-1, :].reshape(-1), ids[1:, :].reshape(-1)])
    edges = torch.cat([right, down, right.flip(0), down.flip(0)], dim=1)
    shuffle = torch.randperm(side * side, generator=torch.Generator().manual_seed(seed))
    return shuffle[edges], shuffle


def _bandwidth(edge_index: torch.Tensor) -> float:
    return float((edge_index[0] - edge_index[1]).abs().float().mean())


@pytest.fixture(scope="module")
def graph():
    g = torch.Generator().manual_seed(0)
    edge_index, _ = _grid(15, seed=1)  # 225 nodes
    n = 225
    x = torch.randn(n, F_IN, generator=g)
    y = torch.randint(0, C, (n,), generator=g)
    return Data(x=x, edge_index=edge_index, y=y, num_nodes=n)


def test_inverse_undoes_the_permutation():
    order = NodeOrder.from_perm(torch.tensor([2, 0, 3, 1]))
    assert order.inverse.tolist() == [1, 3, 0, 2]
    assert order.perm[order.inverse].tolist() == [0, 1, 2, 3]


def test_rcm_shrinks_the_bandwidth_of_a_shuffled_grid(graph):
    order = NodeOrder.reverse_cuthill_mckee(graph.edge_index, graph.num_nodes)
    assert sorted(order.perm.tolist()) == list(range(graph.num_nodes))  # a permutation
    _, renumbered, _ = order.graph(graph.x, graph.edge_index)
    assert _bandwidth(renumbered) < _bandwidth(graph.edge_index) / 5  # a 15x15 grid: ~15 against ~75


@pytest.mark.parametrize("family,params", CASES, ids=[f"{f}-{p}" for f, p in CASES])
def test_every_family_gives_the_original_orders_outputs(gkd_registry, graph, family, params):
    torch.manual_seed(0)
    model = gkd_registry.get("family", family).build(F_IN, C, 2, 16, **params).eval()
    order = NodeOrder.reverse_cuthill_mckee(graph.edge_index, graph.num_nodes)
    with torch.no_grad():
        reference = run_model(model, graph.x, graph.edge_index)
        restored = order.restore(run_model(model, *order.graph(graph.x, graph.edge_index)))
    torch.testing.assert_close(restored.logits, reference.logits, rtol=1e-4, atol=1e-5)
    assert len(restored.hidden) == len(reference.hidden)
    for got, want in zip(restored.hidden, reference.hidden):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_off_by_default_and_small_graphs_keep_their_order_when_on(graph, monkeypatch):
    monkeypatch.delenv("GKD_NODE_ORDER", raising=False)
    monkeypatch.setattr(reorder, "MIN_NODES", 10)
    assert node_order_for(graph) is None  # not asked for
    monkeypatch.setenv("GKD_NODE_ORDER", "rcm")
    assert node_order_for(graph) is not None
    monkeypatch.setattr(reorder, "MIN_NODES", graph.num_nodes + 1)
    assert node_order_for(graph) is None  # too small to gain


def test_training_on_the_renumbered_graph_learns_the_same_model(gkd_registry, graph, monkeypatch):
    """Without dropout, training is deterministic up to float summation order: the same scores."""
    graph = graph.clone()
    mask = torch.zeros(graph.num_nodes, dtype=torch.bool)
    graph.train_mask, graph.val_mask, graph.test_mask = mask.clone(), mask.clone(), mask.clone()
    graph.train_mask[:100], graph.val_mask[100:160], graph.test_mask[160:] = True, True, True
    graph.y = (graph.x[:, 0] > 0).long() + (graph.x[:, 1] > 0).long()  # learnable from the features
    settings = TrainingSettings(epochs=30, patience=30)

    def train():
        torch.manual_seed(0)
        model = gkd_registry.get("family", "gcn").build(F_IN, C, 2, 16, dropout=0.0)
        objective = lambda out: torch.nn.functional.cross_entropy(out.logits[graph.train_mask],  # noqa: E731
                                                                  graph.y[graph.train_mask])
        return train_model(model, objective, graph, settings)

    monkeypatch.delenv("GKD_NODE_ORDER", raising=False)
    plain = train()
    monkeypatch.setenv("GKD_NODE_ORDER", "rcm")
    monkeypatch.setattr(reorder, "MIN_NODES", 10)
    assert node_order_for(graph) is not None
    renumbered = train()
    assert renumbered.best_epoch == plain.best_epoch
    assert renumbered.val_score == pytest.approx(plain.val_score) and renumbered.test_score == pytest.approx(plain.test_score)
    torch.testing.assert_close(renumbered.logits, plain.logits, rtol=1e-3, atol=1e-4)
    assert plain.val_score > 0.6  # it learned something
