"""What a plugin author met (issue 15, "Seen writing a third-party plugin"): dataset options without
a default, the contract's graph size and a 4-hop family, the contract's registry, and the pytest
plugin reporting each contract case on its own."""

from __future__ import annotations

from typing import Any

import pytest
from torch_geometric.nn import TAGConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm

from gkd_search.errors import UsageError
from gkd_search.loading import typed_dataset_options
from gkd_search.nn import LayerStack, layer_widths
from gkd_search.testing import FAMILY_CHECKS, check_family, family_cases
from gkd_search.types import DatasetSpec, GraphModel, ModelFamily, Unset

pytest_plugins = ["pytester"]


class SplitSeedDataset(DatasetSpec):
    name = "split-seed"
    options = {"split_seed": Unset(int), "noisy": False}

    def load(self, root, cache_dir, seed, **options):  # pragma: no cover - only option_values is used
        raise NotImplementedError


def test_a_dataset_option_can_be_unset():
    spec = SplitSeedDataset()
    assert spec.option_values({}) == {"split_seed": None, "noisy": False}
    given = typed_dataset_options(spec, {"split_seed": "7", "noisy": "yes"})
    assert given == {"split_seed": 7, "noisy": True}
    assert spec.option_values(given)["split_seed"] == 7
    with pytest.raises(UsageError, match="split-seed: split_seed='seven' is not an integer"):
        typed_dataset_options(spec, {"split_seed": "seven"})


def tag_normalize(edge_index, num_nodes):
    return gcn_norm(edge_index, None, num_nodes, add_self_loops=False)


class FourHops(ModelFamily):
    """TAGConv with K = 2 per layer: 4 hops at two layers."""

    name = "four-hops"

    def build(self, in_channels: int, num_classes: int, num_layers: int, hidden_channels: int,
              dropout: float = 0.0, **params: Any) -> GraphModel:
        layers = [TAGConv(i, o, K=2, normalize=False) for i, o in layer_widths(in_channels, hidden_channels,
                                                                               num_classes, num_layers)]
        return LayerStack(layers, dropout, uses_graph=True, normalize=tag_normalize, chunked_inference=False)

    def num_hops(self, num_layers: int, **params: Any) -> int:
        return 2 * num_layers


def test_a_family_reading_four_hops_passes_on_a_graph_of_the_size_it_needs():
    check_family(FourHops(), num_layers=(2,), num_nodes=120)
    for seed in range(3):  # whatever the seed: the targets are the nodes with the smallest reach
        check_family(FourHops(), num_layers=(1,), num_nodes=120, seed=seed)


def test_a_graph_too_small_for_the_hops_says_how_to_fix_it():
    with pytest.raises(AssertionError, match=r"raise num_nodes \(check_family\(\.\.\., num_nodes=\.\.\.\)\)"):
        check_family(FourHops(), num_layers=(3,), num_nodes=8)


def test_family_cases_are_one_per_check_depth_and_value():
    from gkd_search.registry import build_registry, get_plugin_manager

    gat = build_registry(get_plugin_manager(autoload=False)).families["gat"]
    cases = family_cases(gat, num_layers=(1, 2))
    values = len(gat.hyperparameters["heads"].choices)
    assert len(cases) == 2 * (values * (len(FAMILY_CHECKS) - 1) + 1)
    assert len({c.id for c in cases}) == len(cases)
    assert "gat-2L-heads=4-served_request" in {c.id for c in cases}


def test_the_contract_graph_knows_the_registry_it_is_given(gkd_registry):
    from gkd_search.testing import ContractGraph

    graph = ContractGraph.build(gkd_registry, nodes=200)
    assert set(graph.families) == set(gkd_registry.families)


def test_the_pytest_plugin_reports_each_broken_case_on_its_own(pytester):
    """A family broken in two ways (it normalises inside, and says it reads one hop too few):
    the pytest plugin's parametrised contract reports both, each case as its own test."""
    pytester.makepyfile(test_broken="""
        import torch
        from torch_geometric.nn import GCNConv
        from gkd_search.nn import LayerStack, layer_widths
        from gkd_search.testing.pytest_plugin import family_contract
        from gkd_search.types import ModelFamily

        class SelfNormalising(ModelFamily):
            name = "self-normalising"

            def build(self, in_channels, num_classes, num_layers, hidden_channels, dropout=0.0, **params):
                layers = [GCNConv(i, o) for i, o in layer_widths(in_channels, hidden_channels, num_classes, num_layers)]
                return LayerStack(layers, dropout, uses_graph=True)

            def num_hops(self, num_layers, **params):
                return num_layers - 1

        test_contract = family_contract(SelfNormalising(), num_layers=(2,))
    """)
    result = pytester.runpytest("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=len(FAMILY_CHECKS) - 3, failed=3)
    text = result.stdout.str()
    assert "test_contract[self-normalising-2L-served_request]" in text
    assert "test_contract[self-normalising-2L-receptive_field]" in text
    assert "test_contract[self-normalising-2L-chunked_inference]" in text
