"""What is timed is what is served and what was evaluated: a served request (``serving.answer``)
returns exactly the full-graph outputs for every family (GCN-style normalisation with the whole
graph's degrees included), the saved serving graph round-trips, and the pyfunc model checks its input."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from gkd_search.graph_ops import NeighbourhoodIndex
from gkd_search.serving import ServingGraph, answer, normalizer_name
from gkd_search.types import run_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def sparse_graph():
    """A sparse directed graph (a target's 2-hop neighbourhood is a small part of it), 3 relations."""
    g = torch.Generator().manual_seed(4)
    n = 3000
    return torch.randn(n, 10, generator=g), torch.randint(0, n, (2, 7000), generator=g), \
        torch.randint(0, 3, (7000,), generator=g)


@pytest.mark.parametrize("family", ["gcn", "sage", "gat", "mlp", "gcnii", "sgc", "appnp", "rgcn"])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_a_served_request_is_exactly_the_full_graph_output(gkd_registry, sparse_graph, family, num_layers):
    x, edge_index, edge_type = sparse_graph
    fam = gkd_registry.families[family]
    extra = {"num_relations": 3} if fam.relational else {}
    torch.manual_seed(0)
    model = fam.build(10, 4, num_layers, 16, **extra).eval()
    hops = fam.num_hops(num_layers)
    edge_type_arg = edge_type if fam.relational else None
    targets = torch.tensor([11, 2999, 11, 450, 0])
    with torch.no_grad():
        full = run_model(model, x, edge_index, edge_type_arg).logits
        served = answer(model, ServingGraph.for_model(model, x, edge_index, edge_type_arg), targets, hops)
    torch.testing.assert_close(served, full[targets], atol=1e-5, rtol=1e-4)
    if family in ("gcn", "sgc", "gcnii") and hops:
        # the k-hop subgraph alone, normalised with its own degrees, would not be (the old protocol)
        sub = NeighbourhoodIndex(edge_index, x.size(0)).subgraph(torch.unique(targets), [-1] * hops)
        with torch.no_grad():
            naive = run_model(model, x[sub.nodes], sub.edge_index).logits[:sub.num_seeds]
        assert (naive - full[torch.unique(targets)]).abs().max() > 1e-3


def test_normalising_families_declare_their_normalisation(gkd_registry):
    names = {f: normalizer_name(getattr(gkd_registry.families[f].build(4, 2, 2, 8), "normalize", None))
             for f in ("gcn", "sgc", "appnp", "gcnii", "sage", "gat", "mlp")}
    assert {names[f] for f in ("gcn", "sgc", "appnp", "gcnii")} == {"gkd_search.families._stack.gcn_normalize"}
    assert {names[f] for f in ("sage", "gat", "mlp")} == {""}


def test_serving_graph_state_round_trips_through_weights_only_load(gkd_registry, sparse_graph, tmp_path):
    x, edge_index, _ = sparse_graph
    x = torch.where(torch.rand_like(x) < 0.05, x, torch.zeros_like(x))  # bag-of-words-like: stored sparse
    model = gkd_registry.families["gcn"].build(10, 4, 2, 16).eval()
    graph = ServingGraph.for_model(model, x, edge_index)
    torch.save(graph.state(), tmp_path / "graph.pt")
    state = torch.load(tmp_path / "graph.pt", weights_only=True)
    assert state["x"].is_sparse
    again = ServingGraph.from_state(state)
    targets = torch.tensor([5, 6, 7])
    with torch.no_grad():
        assert torch.equal(answer(model, again, targets, 2), answer(model, graph, targets, 2))
    again.check_model(model)
    with pytest.raises(ValueError, match="normalised by 'gkd_search.families._stack.gcn_normalize', the model needs"):
        again.check_model(gkd_registry.families["sage"].build(10, 4, 2, 16))


def test_a_served_fanout_samples_the_same_way_for_the_same_generator(gkd_registry, sparse_graph):
    x, edge_index, _ = sparse_graph
    model = gkd_registry.families["sage"].build(10, 4, 2, 16).eval()
    graph = ServingGraph.for_model(model, x, edge_index)
    targets = torch.arange(0, 3000, 97)
    with torch.no_grad():
        a = answer(model, graph, targets, 2, (2, 1), torch.Generator().manual_seed(0))
        b = answer(model, graph, targets, 2, (2, 1), torch.Generator().manual_seed(0))
        full = answer(model, graph, targets, 2)
    assert torch.equal(a, b) and not torch.allclose(a, full)


def test_pyfunc_input_checks():
    from gkd_search.pyfunc import node_ids_from, output_columns, signature

    assert node_ids_from(pd.DataFrame({"node_id": [3, 1]})).tolist() == [3, 1]
    assert node_ids_from([4, 5]).dtype.name == "int64"
    with pytest.raises(ValueError, match="the input needs a column 'node_id'; got columns \\['id'\\]"):
        node_ids_from(pd.DataFrame({"id": [1]}))
    with pytest.raises(ValueError, match="node_id must be a column of integer node ids"):
        node_ids_from(pd.DataFrame({"node_id": [1.5]}))
    assert output_columns(2) == ["node_id", "predicted_class", "probability_0", "probability_1"]
    assert [c.name for c in signature(3).outputs.inputs] == output_columns(3)
