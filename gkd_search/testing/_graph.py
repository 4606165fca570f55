"""The contract's shared fixture: a small seeded graph with a trained, deeper-than-every-student
teacher (:class:`ContractGraph`), and the points of a hyperparameter space the checks try."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from ..params import Param
from ..types import DistillationMethod, GraphDataset, ModelFamily, StructuralLoss, TeacherOutputs, count_parameters

#: Student shapes every method is built for: ``(family, num_layers, hidden_channels, family params)``.
GRAPH_STUDENTS: tuple[tuple[str, int, int, dict[str, Any]], ...] = (
    ("gcn", 1, 0, {}),
    ("gcn", 2, 8, {}),
    ("gcn", 3, 32, {}),
    ("sage", 2, 16, {}),
    ("gat", 2, 16, {"heads": 2}),
)
GRAPH_FREE_STUDENTS: tuple[tuple[str, int, int, dict[str, Any]], ...] = (
    ("mlp", 1, 0, {}),
    ("mlp", 2, 32, {}),
    ("mlp", 3, 8, {}),
)
TEACHER_LAYERS = 5
TEACHER_HIDDEN = 24


@dataclass
class ContractGraph:
    """A seeded synthetic graph and a trained ``TEACHER_LAYERS``-layer GCN teacher's outputs."""

    dataset: GraphDataset
    teacher: TeacherOutputs
    families: dict[str, ModelFamily]
    structural_losses: dict[str, StructuralLoss] = field(default_factory=dict)

    @classmethod
    def build(cls, registry=None, *, nodes: int = 200, seed: int = 0) -> ContractGraph:
        """Build the graph and train the teacher (about a second on one core).

        Args:
            registry: the components the checks may use (``families``, ``structural_losses``);
                default: the built-ins only. Pass ``gkd_search.registry.build_registry()`` (every
                installed plugin, yours included) when your method is checked on your own family,
                or your method uses your own structural loss: a family the registry does not know
                is a ``KeyError`` naming it.
            nodes: the graph's size (5 edges per node, 12 features, 3 classes).
            seed: the graph's and the teacher's seed.
        """
        from ..registry import build_registry, get_plugin_manager

        registry = registry or build_registry(get_plugin_manager(autoload=False))
        spec = registry.get("dataset", "synthetic")
        cache = Path(__import__("tempfile").mkdtemp(prefix="gkd-contract-"))
        dataset = spec.load(None, cache, seed=seed, nodes=nodes, edges=nodes * 5, features=12, classes=3)
        family = registry.get("family", "gcn")
        torch.manual_seed(seed)
        model = family.build(dataset.num_features, dataset.num_classes, TEACHER_LAYERS, TEACHER_HIDDEN)
        data = dataset.data
        optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
        for _ in range(30):
            model.train()
            optimizer.zero_grad()
            out = model(data.x, data.edge_index)
            F.cross_entropy(out.logits[data.train_mask], data.y[data.train_mask]).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            out = model(data.x, data.edge_index)
        teacher = TeacherOutputs(logits=out.logits, hidden=list(out.hidden),
                                 spec=f"gcn:{TEACHER_LAYERS}:{TEACHER_HIDDEN}",
                                 num_params=count_parameters(model), val_acc=float("nan"), test_acc=float("nan"))
        return cls(dataset, teacher, dict(registry.families), dict(registry.losses))

    def students_for(self, method: DistillationMethod) -> list[tuple[str, int, int, dict[str, Any]]]:
        """The student shapes of :data:`GRAPH_STUDENTS` / :data:`GRAPH_FREE_STUDENTS` the method accepts."""
        cases = [*GRAPH_STUDENTS, *GRAPH_FREE_STUDENTS]
        return [c for c in cases if c[0] in self.families and method.accepts(self.families[c[0]])]


class _Pick:
    """A :class:`~gkd_search.params.Suggester` that answers every question with the low end,
    the high end or the default of its range."""

    def __init__(self, where: str) -> None:
        self.where = where

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float:
        return low if self.where == "low" else high

    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False) -> int:
        return low if self.where == "low" else high

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        return choices[0] if self.where == "low" else choices[-1]


def parameter_draws(space: Mapping[str, Param]) -> dict[str, dict[str, Any]]:
    """Three points of a hyperparameter space: every default, every low end, every high end."""
    draws: dict[str, dict[str, Any]] = {"default": {k: p.default for k, p in space.items()}}
    for where in ("low", "high"):
        draws[where] = {k: p.suggest(_Pick(where), k) for k, p in space.items()}
    return draws


def _contract_graph_tensors(num_nodes: int, num_edges: int, in_channels: int, num_relations: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(num_nodes, in_channels, generator=gen)
    edge_index = torch.randint(0, num_nodes, (2, num_edges), generator=gen)
    edge_index = edge_index[:, edge_index[0] != edge_index[1]]
    edge_type = torch.randint(0, num_relations, (edge_index.size(1),), generator=gen)
    return x, edge_index, edge_type
