"""The model-family contract, as separate cases: :func:`family_cases` (each case runs and fails on
its own: a pytest parametrisation reports every broken property, not the first) and
:func:`check_family` (every case in turn, for other test runners)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from ..params import Choice
from ..types import ModelFamily
from ._graph import _contract_graph_tensors

#: what :func:`family_cases` checks, in order (``learns`` once per depth, at the defaults)
FAMILY_CHECKS = ("outputs", "deterministic", "receptive_field", "served_request", "chunked_inference",
                 "state_dict", "gradients", "learns")


def family_parameter_draws(family: ModelFamily) -> list[dict[str, Any]]:
    """The family's defaults, then each other value of each ``Choice`` with the rest at default."""
    defaults = {k: p.default for k, p in family.hyperparameters.items()}
    draws = [defaults]
    for key, param in family.hyperparameters.items():
        if isinstance(param, Choice):
            draws += [{**defaults, key: value} for value in param.choices if value != defaults[key]]
    return draws


@dataclass
class _Setting:
    """One seeded contract graph: 4 edges per node, 6 features, 3 classes, 2 relation types for a
    relational family, and a labelling the graph and features explain."""

    family: ModelFamily
    num_nodes: int
    seed: int
    in_channels: int = 6
    num_classes: int = 3
    x: torch.Tensor = field(init=False)
    edge_index: torch.Tensor = field(init=False)
    edge_type: Any = field(init=False)
    y: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        relations = 2 if self.family.relational else 1
        x, edge_index, edge_type = _contract_graph_tensors(self.num_nodes, 4 * self.num_nodes, self.in_channels,
                                                           relations, self.seed)
        self.x, self.edge_index = x, edge_index
        self.edge_type = edge_type if self.family.relational else None
        gen = torch.Generator().manual_seed(self.seed + 1)
        w = torch.randn(self.in_channels, self.num_classes, generator=gen)
        agg = torch.zeros_like(x).index_add_(0, edge_index[1], x[edge_index[0]])
        self.y = ((x + agg) @ w).argmax(dim=1)

    @property
    def extra(self) -> dict[str, Any]:
        return {"num_relations": 2} if self.family.relational else {}


@dataclass
class FamilyCase:
    """One property of :func:`check_family` for one depth and one set of family parameters.

    ``run()`` raises ``AssertionError`` naming the family, the case and what broke; ``id`` names
    the case for a test report (``gin-2L-train_eps=False-served_request``).
    """

    family: ModelFamily
    check: str
    num_layers: int
    params: dict[str, Any]
    hidden_channels: int = 16
    num_nodes: int = 40
    seed: int = 0

    @property
    def id(self) -> str:
        params = "".join(f"-{k}={v}" for k, v in sorted(self.params.items()))
        return f"{self.family.name}-{self.num_layers}L{params}-{self.check}"

    def __str__(self) -> str:
        return self.id

    @property
    def where(self) -> str:
        return (f"family {self.family.name!r} with num_layers={self.num_layers}, hidden_channels={self.hidden_channels}, "
                f"{self.params}")

    def build(self, setting: _Setting, dropout: float = 0.5):
        torch.manual_seed(self.seed)
        return self.family.build(setting.in_channels, setting.num_classes, self.num_layers, self.hidden_channels,
                                 dropout=dropout, **self.params, **setting.extra)

    def run(self) -> None:
        setting = _Setting(self.family, self.num_nodes, self.seed)
        _CHECKS[self.check](self, setting)


def family_cases(family: ModelFamily, *, num_layers: Sequence[int] = (1, 2, 3), hidden_channels: int = 16,
                 num_nodes: int = 40, seed: int = 0) -> list[FamilyCase]:
    """Every case of the family contract: each check of :data:`FAMILY_CHECKS` for every depth in
    ``num_layers`` and every value of every family ``Choice`` (the others at their defaults),
    ``learns`` at the defaults only, on a seeded ``num_nodes``-node graph (raise it for a family
    that reads many hops: the receptive-field check needs nodes beyond them)."""
    cases = []
    for layers in num_layers:
        for params in family_parameter_draws(family):
            for check in FAMILY_CHECKS[:-1]:
                cases.append(FamilyCase(family, check, layers, dict(params), hidden_channels, num_nodes, seed))
        cases.append(FamilyCase(family, "learns", layers, dict(family_parameter_draws(family)[0]), hidden_channels,
                                num_nodes, seed))
    return cases


def check_family(family: ModelFamily, *, num_layers: Sequence[int] = (1, 2, 3), hidden_channels: int = 16,
                 num_nodes: int = 40, seed: int = 0) -> None:
    """The contract every model family meets; raises ``AssertionError`` naming what broke.

    For every depth in ``num_layers`` and every value of every family ``Choice`` (the others at
    their defaults), on a seeded ``num_nodes``-node random graph with 4 edges per node (and 2
    relation types for a relational family), the model built by ``family.build``:

    * ``outputs``: is a :class:`~gkd_search.types.GraphModel` agreeing with the family on
      ``uses_graph`` and ``relational``, and returns :class:`~gkd_search.types.ModelOutput` with
      ``[N, num_classes]`` logits and a non-empty ``hidden`` of finite ``[N, d]`` tensors whose
      last entry is the logits;
    * ``deterministic``: two eval-mode forwards agree, and a model with ``uses_graph`` False
      ignores ``edge_index``;
    * ``receptive_field``: reads no further than ``family.num_hops(num_layers, **params)`` hops:
      changing the features of every node further away leaves a target's output unchanged (the
      ``request`` latency protocol, serving and mini-batch training extract ``num_hops``-hop
      neighbourhoods);
    * ``served_request``: answers a served request (:func:`gkd_search.serving.answer`: the
      ``num_hops`` subgraph of the targets, with the whole graph's edge weights when the model has
      a :attr:`~gkd_search.types.GraphModel.normalize`) with exactly its full-graph outputs: a
      layer that normalises by degree itself (``ChebConv``, ``GCNConv(normalize=True)``) fails it;
    * ``chunked_inference``: gives the same outputs from
      :meth:`~gkd_search.types.GraphModel.inference` in chunks of nodes (``keep_hidden`` both
      ways) as from the full forward;
    * ``state_dict``: reloads from its ``state_dict`` into a freshly built model;
    * ``gradients``: passes a finite gradient to every parameter from a cross-entropy on its logits;
    * ``learns``: 60 Adam steps at lr 0.03 lower the cross-entropy by 10% on a learnable labelling.

    :func:`family_cases` gives the same checks one by one (for a pytest parametrisation).
    """
    for case in family_cases(family, num_layers=num_layers, hidden_channels=hidden_channels, num_nodes=num_nodes,
                             seed=seed):
        case.run()


# ------------------------------------------------------------------------------------ the checks


def _forward(model, s: _Setting, x=None, edge_index=None):
    from ..types import run_model

    with torch.no_grad():
        return run_model(model, s.x if x is None else x, s.edge_index if edge_index is None else edge_index,
                         s.edge_type if edge_index is None else (None if s.edge_type is None else s.edge_type[:0]))


def _outputs(case: FamilyCase, s: _Setting) -> None:
    from ..types import GraphModel, ModelOutput

    where = case.where
    model = case.build(s)
    assert isinstance(model, GraphModel), f"{where}: build returned a {type(model).__name__}, not a GraphModel"
    assert bool(model.uses_graph) == bool(case.family.uses_graph), f"{where}: model.uses_graph != family.uses_graph"
    assert bool(getattr(model, "relational", False)) == bool(case.family.relational), (
        f"{where}: model.relational != family.relational")
    model.eval()
    out = _forward(model, s)
    assert isinstance(out, ModelOutput), f"{where}: forward returned {type(out).__name__}, not ModelOutput"
    assert tuple(out.logits.shape) == (s.num_nodes, s.num_classes), (
        f"{where}: logits have shape {tuple(out.logits.shape)}, expected {(s.num_nodes, s.num_classes)}")
    assert isinstance(out.hidden, list) and out.hidden, f"{where}: hidden must be a non-empty list"
    for i, h in enumerate(out.hidden):
        assert h.dim() == 2 and h.size(0) == s.num_nodes, f"{where}: hidden[{i}] has shape {tuple(h.shape)}"
        assert torch.isfinite(h).all(), f"{where}: hidden[{i}] has non-finite values"
    assert torch.equal(out.hidden[-1], out.logits), f"{where}: hidden[-1] is not the logits"


def _deterministic(case: FamilyCase, s: _Setting) -> None:
    where = case.where
    model = case.build(s).eval()
    out, again = _forward(model, s), _forward(model, s)
    assert torch.equal(out.logits, again.logits), f"{where}: two eval-mode forwards differ"
    if not case.family.uses_graph:
        alone = _forward(model, s, edge_index=s.edge_index[:, :0])
        torch.testing.assert_close(alone.logits, out.logits, atol=1e-6, rtol=0,
                                   msg=lambda m: f"{where}: uses_graph is False but the output depends on the edges: {m}")


def _targets(s: _Setting, hops: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to three target nodes with the smallest ``hops``-hop neighbourhoods, and the mask of the
    nodes beyond every target's reach."""
    from ..graph_ops import NeighbourhoodIndex

    index = NeighbourhoodIndex(s.edge_index, s.num_nodes)
    sizes = torch.tensor([index.subgraph(torch.tensor([v]), [-1] * hops).num_nodes for v in range(s.num_nodes)])
    targets = torch.argsort(sizes, stable=True)[:3]
    near = index.subgraph(targets, [-1] * hops).nodes
    far = torch.ones(s.num_nodes, dtype=torch.bool)
    far[near] = False
    return targets, far


def _receptive_field(case: FamilyCase, s: _Setting) -> None:
    where = case.where
    hops = case.family.num_hops(case.num_layers, **case.params)
    if not case.family.uses_graph:
        assert hops == 0, f"{where}: a graph-free family must report num_hops 0, got {hops}"
        return
    model = case.build(s).eval()
    targets, far = _targets(s, hops)
    assert bool(far.any()), (f"{where}: every node is within num_hops() = {hops} hops of every target of this "
                             f"{s.num_nodes}-node graph: raise num_nodes (check_family(..., num_nodes=...))")
    moved = s.x.clone()
    gen = torch.Generator().manual_seed(case.seed + 2)
    moved[far] = torch.randn(int(far.sum()), s.in_channels, generator=gen) * 3
    local = _forward(model, s, x=moved).logits[targets]
    torch.testing.assert_close(
        local, _forward(model, s).logits[targets], atol=1e-5, rtol=1e-4,
        msg=lambda m: f"{where}: features more than num_hops() = {hops} hops away change a node's output, so "
                      f"num_hops() is too small: {m}")


def _served_request(case: FamilyCase, s: _Setting) -> None:
    from ..serving import ServingGraph, answer

    where = case.where
    model = case.build(s).eval()
    hops = case.family.num_hops(case.num_layers, **case.params)
    targets = torch.tensor([0, 7 % s.num_nodes, (s.num_nodes - 1), 7 % s.num_nodes])
    with torch.no_grad():
        served = answer(model, ServingGraph.for_model(model, s.x, s.edge_index, s.edge_type), targets, hops)
    torch.testing.assert_close(
        served, _forward(model, s).logits[targets], atol=1e-5, rtol=1e-4,
        msg=lambda m: f"{where}: a served request (its num_hops() subgraph) differs from the full-graph output; a "
                      f"family whose layers normalise by degree must set GraphModel.normalize and accept "
                      f"edge_weight=: {m}")


def _chunked_inference(case: FamilyCase, s: _Setting) -> None:
    where = case.where
    model = case.build(s).eval()
    out = _forward(model, s)
    model.train()
    chunked = model.inference(s.x, s.edge_index, s.edge_type, chunk_size=max(1, s.num_nodes // 3))
    assert not model.training, f"{where}: inference() must switch the model to eval mode"
    assert len(chunked.hidden) == len(out.hidden), (f"{where}: inference() returned {len(chunked.hidden)} hidden "
                                                    f"outputs, forward {len(out.hidden)}")
    for i, (got, want) in enumerate(zip(chunked.hidden, out.hidden)):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4, msg=lambda m, i=i: f"{where}: inference() hidden[{i}]: {m}")
    logits_only = model.inference(s.x, s.edge_index, s.edge_type, chunk_size=max(1, s.num_nodes // 3), keep_hidden=False)
    assert len(logits_only.hidden) == 1, f"{where}: inference(keep_hidden=False) must return hidden == [logits]"
    torch.testing.assert_close(logits_only.logits, out.logits, atol=1e-5, rtol=1e-4)


def _state_dict(case: FamilyCase, s: _Setting) -> None:
    model = case.build(s).eval()
    out = _forward(model, s)
    fresh = case.build(s)
    fresh.load_state_dict(model.state_dict())
    fresh.eval()
    torch.testing.assert_close(_forward(fresh, s).logits, out.logits,
                               msg=lambda m: f"{case.where}: a model rebuilt from the state_dict differs: {m}")


def _gradients(case: FamilyCase, s: _Setting) -> None:
    from ..types import run_model

    model = case.build(s)
    model.train()
    model.zero_grad()
    F.cross_entropy(run_model(model, s.x, s.edge_index, s.edge_type).logits, s.y).backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{case.where}: no gradient reaches parameter {name}"
            assert torch.isfinite(p.grad).all(), f"{case.where}: non-finite gradient on parameter {name}"


def _learns(case: FamilyCase, s: _Setting) -> None:
    from ..types import run_model

    learner = case.build(s, dropout=0.0)
    optimizer = torch.optim.Adam(learner.parameters(), lr=0.03)
    losses = []
    for _ in range(60):
        optimizer.zero_grad()
        loss = F.cross_entropy(run_model(learner, s.x, s.edge_index, s.edge_type).logits, s.y)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.9 * losses[0], (
        f"family {case.family.name!r} with num_layers={case.num_layers}: 60 training steps took the loss from "
        f"{losses[0]:.3f} only to {losses[-1]:.3f}")


_CHECKS: dict[str, Callable[[FamilyCase, _Setting], None]] = {
    "outputs": _outputs, "deterministic": _deterministic, "receptive_field": _receptive_field,
    "served_request": _served_request, "chunked_inference": _chunked_inference, "state_dict": _state_dict,
    "gradients": _gradients, "learns": _learns,
}
