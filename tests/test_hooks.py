"""One test per component hook, through the paths a search uses: a plugin registered with the
plugin manager provides a component, and gkd-search reaches it where it matters (the search
space, STRIDE's structural term, ``--dataset``). The observer hooks are tested on a real search
in ``test_search_failures.py``; ``test_plugin_docs.py`` checks that every hook has such a test."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from gkd_search import hookimpl
from gkd_search.params import Choice, FloatRange
from gkd_search.registry import build_registry, get_plugin_manager
from gkd_search.search import parse_dataset
from gkd_search.space import load_space
from gkd_search.testing import ContractGraph, check_loss
from gkd_search.types import (
    DatasetSpec,
    DistillationMethod,
    GraphDataset,
    ModelFamily,
    StructuralLoss,
    StructuralLossModule,
)


def registry_with(plugin: object):
    pm = get_plugin_manager(autoload=False)
    pm.register(plugin, name="hook-test-plugin")
    return build_registry(pm)


class LogitsMSE(DistillationMethod):
    name = "logits-mse"
    hyperparameters = {"beta": FloatRange(0.1, 1.0)}

    def build_loss(self, params, context):
        from gkd_search.methods.none import CrossEntropyOnly

        return CrossEntropyOnly()


class MethodPlugin:
    @hookimpl
    def gkd_methods(self) -> list[DistillationMethod]:
        return [LogitsMSE()]


def test_hook_gkd_methods_adds_a_searchable_method(tmp_path):
    registry = registry_with(MethodPlugin())
    assert registry.components["method"]["logits-mse"].plugin == "hook-test-plugin"
    space = load_space("default", registry.families, registry.methods, only_methods=["logits-mse", "none"])
    assert space.methods["logits-mse"]["beta"] == FloatRange(0.1, 1.0)
    assert {"softkd_weight", "softkd_tau"} <= set(space.methods["logits-mse"])  # combines_with_softkd


class TwoLayerMLPFamily(ModelFamily):
    name = "mlp2"
    uses_graph = False
    hyperparameters = {"bias": Choice((True, False))}
    default_num_layers = (2,)
    default_hidden_channels = (8, 16)

    def build(self, in_channels, num_classes, num_layers, hidden_channels, dropout=0.0, **params: Any):
        return registry_with(object()).families["mlp"].build(in_channels, num_classes, num_layers, hidden_channels,
                                                             dropout)


class FamilyPlugin:
    @hookimpl
    def gkd_families(self) -> list[ModelFamily]:
        return [TwoLayerMLPFamily()]


def test_hook_gkd_families_adds_a_student_family():
    registry = registry_with(FamilyPlugin())
    space = load_space("default", registry.families, registry.methods, only_families=["mlp2"])
    keys = sorted(a.key for a in space.architectures(registry.families))
    assert keys == ["mlp2-2L-16-bias=False", "mlp2-2L-16-bias=True", "mlp2-2L-8-bias=False", "mlp2-2L-8-bias=True"]


class MeanGap(StructuralLossModule):
    def forward(self, student, teacher, edge_index):
        return (student.mean(0).norm() - teacher.mean(0).norm()) ** 2


class MeanGapLoss(StructuralLoss):
    name = "mean-gap"

    def build(self, params, student_channels, teacher_channels):
        return MeanGap()


class LossPlugin:
    @hookimpl
    def gkd_structural_losses(self) -> list[StructuralLoss]:
        return [MeanGapLoss()]


def test_hook_gkd_structural_losses_reaches_stride():
    registry = registry_with(LossPlugin())
    assert "mean-gap" in registry.losses
    stride = registry.methods["stride"]
    params = {**{k: p.default for k, p in stride.hyperparameters.items()}, "structure": "mean-gap"}
    graph = ContractGraph.build(registry, nodes=200)
    assert torch.isfinite(torch.tensor(check_loss(stride, graph, ("gcn", 2, 8, {}), params)))


class RingDataset(DatasetSpec):
    name = "ring"
    default_teacher = "gcn:2:8"
    options = {"nodes": 60}

    def load(self, root, cache_dir, seed, **options: Any) -> GraphDataset:
        from torch_geometric.data import Data

        n = int(options.get("nodes", self.options["nodes"]))
        src = torch.arange(n)
        edge_index = torch.stack([torch.cat([src, (src + 1) % n]), torch.cat([(src + 1) % n, src])])
        y = (src * 2 // n).long()
        masks = [src % 3 == k for k in range(3)]
        return GraphDataset(f"ring-{n}", Data(x=torch.eye(n), edge_index=edge_index, y=y, train_mask=masks[0],
                                              val_mask=masks[1], test_mask=masks[2]), 2)


class DatasetPlugin:
    @hookimpl
    def gkd_datasets(self) -> list[DatasetSpec]:
        return [RingDataset()]


def test_hook_gkd_datasets_adds_a_dataset_value(tmp_path):
    registry = registry_with(DatasetPlugin())
    name, options = parse_dataset("ring:nodes=90")
    dataset = registry.get("dataset", name).load(None, tmp_path, 0, **options)
    assert (name, dataset.name, dataset.num_nodes) == ("ring", "ring-90", 90)


def test_dataset_options_are_checked_and_typed_before_load():
    """A plugin's ``load`` gets the options the user gave, converted to their defaults' types."""
    from gkd_search.errors import UsageError
    from gkd_search.search import typed_dataset_options

    class Typed(RingDataset):
        options = {"nodes": 60, "noise": 0.5, "directed": False, "label": "a"}

    got = typed_dataset_options(Typed(), parse_dataset("ring:nodes=90,noise=1e-2,directed=yes,label=b")[1])
    assert got == {"nodes": 90, "noise": 0.01, "directed": True, "label": "b"}
    assert type(got["nodes"]) is int and type(got["noise"]) is float
    assert typed_dataset_options(Typed(), {}) == {}
    with pytest.raises(UsageError, match="ring: unknown option 'colour' \\(known: nodes, noise, directed, label\\)"):
        typed_dataset_options(Typed(), {"colour": "red"})
    with pytest.raises(UsageError, match="ring: directed='maybe' is not true or false"):
        typed_dataset_options(Typed(), {"directed": "maybe"})
