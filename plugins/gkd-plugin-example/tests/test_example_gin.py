"""GIN: Eq. 4.1 by hand and gkd-search's family contract."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from gkd_plugin_example.gin import GINFamily

from gkd_search.testing.pytest_plugin import family_contract

# gkd-search's pytest plugin: every depth, eps variant and check is a test of its own
test_gin_meets_the_family_contract = family_contract(GINFamily(), num_layers=(1, 2, 3))


def test_one_gin_layer_is_equation_4_1():
    """``h_v = MLP((1 + eps) h_v + sum_{u in N(v)} h_u)`` with the sum over in-neighbours."""
    torch.manual_seed(0)
    model = GINFamily().build(4, 3, 1, 8, train_eps=True).eval()
    conv = model.layers[0]
    with torch.no_grad():
        conv.eps.fill_(0.25)
    x = torch.randn(5, 4)
    edge_index = torch.tensor([[1, 2, 3, 0], [0, 0, 0, 4]])  # 1, 2, 3 -> 0 and 0 -> 4
    aggregated = 1.25 * x
    aggregated[0] += x[1] + x[2] + x[3]
    aggregated[4] += x[0]
    lin1, lin2 = conv.nn[0], conv.nn[2]
    expected = lin2(F.relu(lin1(aggregated)))
    with torch.no_grad():
        out = model(x, edge_index)
    torch.testing.assert_close(out.logits, expected)
    assert len(out.hidden) == 1


def test_gin0_has_no_eps_parameter_and_gin_eps_has_one_per_layer():
    gin0 = GINFamily().build(4, 3, 3, 8)
    gin_eps = GINFamily().build(4, 3, 3, 8, train_eps=True)
    assert not any(name.endswith("eps") for name, _ in gin0.named_parameters())
    assert sum(name.endswith("eps") for name, _ in gin_eps.named_parameters()) == 3


def test_hidden_width_and_parameter_count():
    """Every layer's MLP is in -> hidden -> out: a 2-layer, 8-wide GIN on 4 features and 3 classes
    has (4*8+8 + 8*8+8) + (8*8+8 + 8*3+3) parameters."""
    model = GINFamily().build(4, 3, 2, 8)
    assert sum(p.numel() for p in model.parameters()) == (4 * 8 + 8 + 8 * 8 + 8) + (8 * 8 + 8 + 8 * 3 + 3)
    with torch.no_grad():
        out = model.eval()(torch.randn(6, 4), torch.tensor([[0, 1], [1, 2]]))
    assert [h.size(-1) for h in out.hidden] == [8, 3]
