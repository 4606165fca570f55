"""The family, structural-loss and dataset contracts (``gkd_search.testing``) on every built-in,
and proof that each check can fail: a component broken in one way is rejected with a message
naming what broke."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from conftest import SHARED_DATA
from torch import nn

from gkd_search.registry import build_registry, get_plugin_manager
from gkd_search.testing import check_dataset, check_family, check_structural_loss
from gkd_search.types import GraphDataset, GraphModel, ModelFamily, ModelOutput, StructuralLoss, StructuralLossModule

pytestmark = pytest.mark.usefixtures("one_thread")

BUILTINS = build_registry(get_plugin_manager(autoload=False))


@pytest.mark.parametrize("name", sorted(BUILTINS.families))
def test_family_meets_the_contract(name):
    check_family(BUILTINS.families[name])


@pytest.mark.parametrize("name", sorted(BUILTINS.losses))
def test_structural_loss_meets_the_contract(name):
    check_structural_loss(BUILTINS.losses[name])


@pytest.mark.parametrize("name, options", [
    ("synthetic", {"nodes": 300, "edges": 1200, "features": 8, "classes": 3}),
    ("synthetic-hetero", {"papers": 300, "authors": 150, "fields": 10, "features": 8, "classes": 3}),
])
def test_synthetic_datasets_meet_the_contract(name, options, tmp_path):
    dataset = check_dataset(BUILTINS.datasets[name], None, tmp_path / "cache", **options)
    assert dataset.num_nodes >= 300


@pytest.mark.skipif(not (SHARED_DATA / "Cora" / "raw").is_dir(), reason="no Cora in the data root")
def test_cora_meets_the_contract_and_its_root_stays_untouched(tmp_path):
    dataset = check_dataset(BUILTINS.datasets["cora"], SHARED_DATA, tmp_path / "cache")
    assert (dataset.num_nodes, dataset.num_classes) == (2708, 7)


# ------------------------------------------------------------------------ families that break it


class _Wrapped(GraphModel):
    """GCN's model with one thing changed by ``mutate(out, x, edge_index)``."""

    def __init__(self, inner: GraphModel, mutate) -> None:
        super().__init__()
        self.inner, self.mutate = inner, mutate
        self.normalize = inner.normalize

    def forward(self, x, edge_index, edge_weight=None):
        return self.mutate(self.inner(x, edge_index, edge_weight=edge_weight), x, edge_index)


class _BrokenFamily(ModelFamily):
    name = "broken"

    def __init__(self, mutate=None, hops=None, uses_graph=True, build_with=None) -> None:
        self.mutate, self.hops, self.build_with = mutate, hops, build_with
        self.uses_graph = uses_graph

    def build(self, in_channels, num_classes, num_layers, hidden_channels, dropout=0.0, **params: Any) -> GraphModel:
        inner = BUILTINS.families["gcn"].build(in_channels, num_classes, num_layers, hidden_channels, dropout)
        if self.build_with is not None:
            return self.build_with(inner)
        return _Wrapped(inner, self.mutate or (lambda out, x, e: out))

    def num_hops(self, num_layers: int, **params: Any) -> int:
        return self.hops(num_layers) if self.hops else super().num_hops(num_layers, **params)


def test_check_family_accepts_the_unbroken_wrapper():
    check_family(_BrokenFamily(), num_layers=(2,))


@pytest.mark.parametrize("family, message", [
    (_BrokenFamily(hops=lambda layers: layers - 1), "num_hops\\(\\) = 1 hops away change a node's output"),
    (_BrokenFamily(mutate=lambda out, x, e: ModelOutput(out.logits, [out.logits * 2])), "hidden\\[-1\\] is not the logits"),
    (_BrokenFamily(mutate=lambda out, x, e: (out.logits, out.hidden)), "forward returned tuple, not ModelOutput"),
    (_BrokenFamily(mutate=lambda out, x, e: ModelOutput(out.logits[:, :2], [out.logits[:, :2]])),
     "logits have shape \\(40, 2\\)"),
    (_BrokenFamily(uses_graph=False), "model.uses_graph != family.uses_graph"),
    (_BrokenFamily(mutate=lambda out, x, e: ModelOutput(out.logits + torch.rand(1), [*out.hidden[:-1], out.logits + 0])),
     "hidden\\[-1\\] is not the logits|two eval-mode forwards differ"),
])
def test_check_family_rejects(family, message):
    with pytest.raises(AssertionError, match=message):
        check_family(family, num_layers=(2,))


def test_check_family_rejects_a_degree_normalised_family_that_serves_with_subgraph_degrees():
    """GCN normalising inside its forward: a served k-hop request would use the subgraph's
    degrees, so the family must expose ``normalize`` and take ``edge_weight=``."""
    class SelfNormalising(GraphModel):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x, edge_index):
            return self.inner(x, edge_index)

    family = _BrokenFamily(build_with=SelfNormalising)
    with pytest.raises(AssertionError, match="served request .* differs from the full-graph output"):
        check_family(family, num_layers=(2,))


def test_check_family_rejects_an_inference_that_differs_from_forward():
    class WrongInference(_Wrapped):
        @torch.no_grad()
        def inference(self, x, edge_index, edge_type=None, *, chunk_size=None, keep_hidden=True):
            self.eval()
            out = self.inner(x, edge_index[:, : edge_index.size(1) // 2])  # drops half the graph
            return out if keep_hidden else ModelOutput(out.logits, [out.logits])

    family = _BrokenFamily(build_with=lambda inner: WrongInference(inner, lambda out, x, e: out))
    with pytest.raises(AssertionError, match="inference\\(\\) hidden\\[0\\]"):
        check_family(family, num_layers=(2,))


def test_check_family_rejects_a_parameter_without_gradient():
    class Orphan(_Wrapped):
        def __init__(self, inner):
            super().__init__(inner, lambda out, x, e: out)
            self.unused = nn.Parameter(torch.zeros(3))

    with pytest.raises(AssertionError, match="no gradient reaches parameter unused"):
        check_family(_BrokenFamily(build_with=Orphan), num_layers=(2,))


def test_check_family_rejects_a_model_that_cannot_learn():
    class Frozen(_Wrapped):
        def __init__(self, inner):
            super().__init__(inner, lambda out, x, e: out)
            self.scale = nn.Parameter(torch.tensor(1e-4))  # trains, but the logits barely move

        def forward(self, x, edge_index, edge_weight=None):
            out = self.inner(x, edge_index, edge_weight=edge_weight)
            logits = out.logits.detach() * 0 + self.scale * 0 + self.scale.detach() * out.logits
            return ModelOutput(logits, [*out.hidden[:-1], logits])

    with pytest.raises(AssertionError, match="60 training steps took the loss from"):
        check_family(_BrokenFamily(build_with=Frozen), num_layers=(2,))


# ------------------------------------------------------------------- structural losses that break it


class _ConstantModule(StructuralLossModule):
    def forward(self, student, teacher, edge_index):
        return (student * 0).sum() + 1.0


class _ConstantLoss(StructuralLoss):
    name = "constant"

    def build(self, params, student_channels, teacher_channels):
        return _ConstantModule()


class _EdgeMeanModule(StructuralLossModule):
    def forward(self, student, teacher, edge_index):  # nan on a graph without edges
        src, dst = edge_index
        return ((student[src] - student[dst]) ** 2).sum() / edge_index.size(1)


class _EdgeMean(StructuralLoss):
    name = "edge-mean"

    def build(self, params, student_channels, teacher_channels):
        return _EdgeMeanModule()


@pytest.mark.parametrize("loss, message", [
    (_ConstantLoss(), "does not depend on the student embeddings"),
    (_EdgeMean(), "on a graph without edges is nan"),
])
def test_check_structural_loss_rejects(loss, message):
    with pytest.raises(AssertionError, match=message):
        check_structural_loss(loss)


# --------------------------------------------------------------------------- datasets that break it


class _Scribbler:
    """Loads the synthetic graph but writes into ``root`` or overlaps its masks."""

    name = "scribbler"

    def __init__(self, fault: str) -> None:
        self.fault = fault

    def load(self, root, cache_dir, seed, **options) -> GraphDataset:
        dataset = BUILTINS.datasets["synthetic"].load(None, cache_dir, seed, nodes=300, edges=1200, features=8, classes=3)
        if self.fault == "write":
            (root / "processed.pt").write_text("oops")
        if self.fault == "overlap":
            dataset.data.val_mask = dataset.data.train_mask.clone()
        if self.fault == "labels":
            dataset.data.y = dataset.data.y + 5
        return dataset


@pytest.mark.parametrize("fault, message", [
    ("write", "load wrote into the read-only root"),
    ("overlap", "the split masks overlap"),
    ("labels", "label is outside"),
])
def test_check_dataset_rejects(fault, message, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "raw.txt").write_text("data")
    with pytest.raises(AssertionError, match=message):
        check_dataset(_Scribbler(fault), root, tmp_path / "cache")
