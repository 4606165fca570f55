"""TAGCN, a family reading 4 hops at 2 layers: Eq. 2 by hand, and the family contract through
gkd-search's pytest plugin on a graph large enough to have nodes beyond 6 hops."""

from __future__ import annotations

import torch
from gkd_plugin_example.tag import TAGFamily, tag_normalize

from gkd_search.testing.pytest_plugin import family_contract

test_tag_meets_the_family_contract = family_contract(TAGFamily(), num_layers=(1, 2, 3), num_nodes=120)


def test_tag_reads_num_layers_times_k_hops():
    assert TAGFamily().num_hops(2) == 4 and TAGFamily().num_hops(3, K=1) == 3


def test_one_tag_layer_is_equation_2():
    """``H' = sum_k (D^-1/2 A D^-1/2)^k H W_k`` (TAGConv adds one bias)."""
    torch.manual_seed(0)
    model = TAGFamily().build(3, 2, 1, 4, K=2).eval()
    conv = model.layers[0]
    x = torch.randn(4, 3)
    edge_index = torch.tensor([[0, 1, 2, 1], [1, 0, 1, 2]])
    ei, w = tag_normalize(edge_index, 4)
    propagate = torch.zeros(4, 4)
    propagate[ei[1], ei[0]] = w
    expected = sum(torch.linalg.matrix_power(propagate, k) @ x @ lin.weight.t() for k, lin in enumerate(conv.lins))
    expected = expected + conv.bias
    with torch.no_grad():
        out = model(x, edge_index)
    torch.testing.assert_close(out.logits, expected)
