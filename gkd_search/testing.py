"""The contract every component must meet, as functions a test suite calls.

Our own test suite runs these checks on every built-in method, family, structural loss and
dataset (``tests/test_method_contract.py``, ``tests/test_component_contract.py``); a plugin
author runs them on theirs::

    from gkd_search.testing import ContractGraph, check_family, check_method

    def test_my_method_meets_the_contract():
        check_method(MyMethod(), ContractGraph.build())

    def test_my_family_meets_the_contract():
        check_family(MyFamily())

* :func:`check_method` (and :func:`check_logged_params`, a real trial logged to MLflow);
* :func:`check_family`;
* :func:`check_structural_loss`;
* :func:`check_dataset`.

Each raises ``AssertionError`` with a message naming the component and what broke.

The checks use a real PyG model zoo on a small seeded synthetic graph and a real (briefly
trained) teacher that is deeper than every student, so a method that pairs layers by depth or
projects between widths is exercised on mismatched shapes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F

from .distill.objective import build_objective, method_hyperparameters
from .params import Choice, Fixed, FloatRange, IntRange, Param
from .types import (
    DistillationBatch,
    DistillationContext,
    DistillationMethod,
    GraphDataset,
    ModelFamily,
    StructuralLoss,
    TeacherOutputs,
    TrialSpec,
    count_parameters,
)

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
        """Build the graph and train the teacher (about a second on one core)."""
        from .registry import build_registry, get_plugin_manager

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


# ---------------------------------------------------------------------------------- parameters


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


def check_hyperparameters(method: DistillationMethod) -> None:
    """The declared space is made of valid :mod:`gkd_search.params` objects."""
    for name, param in method.hyperparameters.items():
        assert isinstance(param, (FloatRange, IntRange, Choice, Fixed)), (
            f"{method.name}: hyperparameter {name!r} is a {type(param).__name__}, not a gkd_search.params type")
        param.validate(f"{method.name}.{name}")


# ------------------------------------------------------------------------------------- the loss


def _context(graph: ContractGraph, family: ModelFamily, name: str, student_dims: list[int], seed: int):
    data = graph.dataset.data
    return DistillationContext(
        num_classes=graph.dataset.num_classes, student_family=name, student_uses_graph=family.uses_graph,
        student_hidden_dims=student_dims, teacher_hidden_dims=[int(h.size(-1)) for h in graph.teacher.hidden],
        x=data.x, edge_index=data.edge_index, structural_losses=graph.structural_losses, cache_dir=None, seed=seed,
    )


def check_loss(
    method: DistillationMethod,
    graph: ContractGraph,
    student: tuple[str, int, int, Mapping[str, Any]],
    params: Mapping[str, Any],
    *,
    require_all_loss_gradients: bool = True,
    seed: int = 0,
) -> float:
    """Build the method's objective for one student, run one forward and backward pass.

    Checks: the loss is a finite scalar; every student parameter receives a finite gradient;
    the method's own parameters receive finite gradients (every one of them when
    ``require_all_loss_gradients``, else at least one); nothing needed is missing from the
    teacher outputs the method declared in ``requires``. Returns the loss value.
    """
    family_name, num_layers, hidden, family_params = student
    family = graph.families[family_name]
    data = graph.dataset.data
    torch.manual_seed(seed)
    model = family.build(graph.dataset.num_features, graph.dataset.num_classes, num_layers, hidden,
                         dropout=0.1, **family_params)
    own = {k: v for k, v in params.items() if k in method.hyperparameters}
    x = method.student_features(data.x, data.edge_index, own)
    assert x.shape == data.x.shape, f"{method.name}: student_features changed the shape to {tuple(x.shape)}"
    with torch.no_grad():
        model.eval()
        dims = [int(h.size(-1)) for h in model(x, data.edge_index).hidden]
    loss = build_objective(method, params, _context(graph, family, family_name, dims, seed))
    batch = DistillationBatch(
        y=data.y, train_mask=data.train_mask, teacher_logits=graph.teacher.logits,
        teacher_hidden=list(graph.teacher.hidden) if "hidden" in method.requires else [],
        edge_index=data.edge_index,
    )
    model.train()
    value = loss(model(x, data.edge_index), batch)
    where = f"{method.name} with {family_name}-{num_layers}x{hidden} and {dict(params)}"
    assert value.dim() == 0, f"{where}: the loss is not a scalar (shape {tuple(value.shape)})"
    assert torch.isfinite(value), f"{where}: the loss is {float(value.detach())}"
    value.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{where}: no gradient reaches the student's {name}"
        assert torch.isfinite(p.grad).all(), f"{where}: non-finite gradient on the student's {name}"
    own_params = [(n, p) for n, p in loss.named_parameters() if p.requires_grad]
    reached = [n for n, p in own_params if p.grad is not None]
    for n, p in own_params:
        if p.grad is not None:
            assert torch.isfinite(p.grad).all(), f"{where}: non-finite gradient on the method's {n}"
    if own_params:
        missing = [n for n, _ in own_params if n not in reached]
        if require_all_loss_gradients:
            assert not missing, f"{where}: no gradient reaches the method's own {', '.join(missing)}"
        else:
            assert reached, f"{where}: no gradient reaches any of the method's own parameters"
    with torch.no_grad():
        model.eval()
        diagnostics = loss.diagnostics(model(x, data.edge_index), batch)
    for name, matrix in diagnostics.items():
        assert matrix.dim() == 2, f"{where}: diagnostics {name!r} is not a matrix"
        assert torch.isfinite(matrix).all(), f"{where}: diagnostics {name!r} has non-finite entries"
    return float(value.detach())


def check_method(
    method: DistillationMethod,
    graph: ContractGraph,
    students: Optional[Iterable[tuple[str, int, int, Mapping[str, Any]]]] = None,
) -> None:
    """Every check of the contract except the MLflow one: a valid space, and :func:`check_loss`
    for every accepted student shape at the default, low and high ends of the space (all the
    method's parameters must get gradients at the defaults)."""
    check_hyperparameters(method)
    assert method.requires <= {"logits", "hidden"}, f"{method.name}: unknown teacher outputs {method.requires}"
    cases = list(students) if students is not None else graph.students_for(method)
    assert cases, f"{method.name}: accepts none of the contract's student families"
    for label, params in parameter_draws(method_hyperparameters(method)).items():
        for student in cases:
            check_loss(method, graph, student, params, require_all_loss_gradients=label == "default")


def check_logged_params(method: DistillationMethod, graph: ContractGraph, tracking_uri: str,
                        student: Optional[Sequence[Any]] = None) -> dict[str, str]:
    """Run a real 3-epoch trial with the method's default parameters, log it to MLflow at
    ``tracking_uri`` and check that every hyperparameter comes back in the run's params under
    its own name. Returns the run's params."""
    from mlflow.tracking import MlflowClient

    from .latency import LatencyProtocol
    from .tracking import SearchTracker, _fmt
    from .trial import TrialContext, run_trial

    family_name, num_layers, hidden, family_params = student or graph.students_for(method)[1]
    params = parameter_draws(method_hyperparameters(method))["default"]
    spec = TrialSpec(family=family_name, num_layers=num_layers, hidden_channels=hidden,
                     family_params=dict(family_params), method=method.name, method_params=params,
                     training={"lr": 0.01, "weight_decay": 5e-4, "dropout": 0.1, "epochs": 3, "patience": 3})
    ctx = TrialContext(dataset=graph.dataset, teacher=graph.teacher, families=graph.families,
                       methods={method.name: method}, latency={}, budget_ms=math.inf,
                       protocol=LatencyProtocol(), structural_losses=graph.structural_losses)
    result = run_trial(spec, ctx, f"contract-{method.name}")
    assert result.status == "ok", f"{method.name}: the trial failed: {result.error}\n{result.traceback}"
    tracker = SearchTracker(tracking_uri, experiment="gkd-contract")
    tracker.start(f"contract-{method.name}", {}, graph.teacher)
    run_id = tracker.log_trial(result, graph.teacher, f"contract-{method.name}")
    tracker.abort("FINISHED")
    run = MlflowClient(tracking_uri).get_run(run_id)
    logged = run.data.params
    for metric in ("val_acc", "test_acc", "train_seconds_per_epoch", "peak_rss_mb"):
        assert metric in run.data.metrics, f"{method.name}: metric {metric!r} is missing from the MLflow run"
    assert run.data.metrics["peak_rss_mb"] > 0 and run.data.metrics["train_seconds_per_epoch"] > 0
    for key, value in params.items():
        assert key in logged, f"{method.name}: hyperparameter {key!r} is missing from the MLflow params"
        assert logged[key] == _fmt(value), f"{method.name}: {key} logged as {logged[key]!r}, expected {_fmt(value)!r}"
    assert logged["method"] == method.name
    return logged


# --------------------------------------------------------------------------------- families


def _contract_graph_tensors(num_nodes: int, num_edges: int, in_channels: int, num_relations: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(num_nodes, in_channels, generator=gen)
    edge_index = torch.randint(0, num_nodes, (2, num_edges), generator=gen)
    edge_index = edge_index[:, edge_index[0] != edge_index[1]]
    edge_type = torch.randint(0, num_relations, (edge_index.size(1),), generator=gen)
    return x, edge_index, edge_type


def family_parameter_draws(family: ModelFamily) -> list[dict[str, Any]]:
    """The family's defaults, then each other value of each ``Choice`` with the rest at default."""
    defaults = {k: p.default for k, p in family.hyperparameters.items()}
    draws = [defaults]
    for key, param in family.hyperparameters.items():
        if isinstance(param, Choice):
            draws += [{**defaults, key: value} for value in param.choices if value != defaults[key]]
    return draws


def check_family(
    family: ModelFamily,
    *,
    num_layers: Sequence[int] = (1, 2, 3),
    hidden_channels: int = 16,
    seed: int = 0,
) -> None:
    """The contract every model family meets; raises ``AssertionError`` naming what broke.

    For every depth in ``num_layers`` and every value of every family ``Choice`` (the others at
    their defaults), on a seeded 40-node random graph (with 2 relation types for a relational
    family), the model built by ``family.build``:

    * is a :class:`~gkd_search.types.GraphModel` agreeing with the family on ``uses_graph`` and
      ``relational``;
    * returns :class:`~gkd_search.types.ModelOutput` with ``[N, num_classes]`` logits and a
      non-empty ``hidden`` of ``[N, d]`` tensors whose last entry is the logits;
    * is deterministic in eval mode and ignores ``edge_index`` when ``uses_graph`` is False;
    * reads no further than ``family.num_hops(num_layers, **params)`` hops: changing the features
      of every node further away leaves a target's output unchanged (the ``request`` latency
      protocol and mini-batch training extract ``num_hops``-hop neighbourhoods);
    * answers a served request (:func:`gkd_search.serving.answer`: the ``num_hops`` subgraph of
      the targets, with the whole graph's edge weights when the model has a
      :attr:`~gkd_search.types.GraphModel.normalize`) with exactly its full-graph outputs;
    * gives the same outputs from :meth:`~gkd_search.types.GraphModel.inference` in chunks of
      nodes (``keep_hidden`` both ways) as from the full forward;
    * reloads from its ``state_dict`` into a freshly built model (how a saved student is loaded);
    * passes a finite gradient to every parameter from a cross-entropy on its logits;
    * learns: 60 Adam steps at lr 0.03 lower the cross-entropy by 10% on a learnable labelling.
    """
    from .graph_ops import NeighbourhoodIndex
    from .serving import ServingGraph, answer
    from .types import GraphModel, ModelOutput, run_model

    num_nodes, in_channels, num_classes = 40, 6, 3
    relations = 2 if family.relational else 1
    x, edge_index, edge_type = _contract_graph_tensors(num_nodes, 160, in_channels, relations, seed)
    edge_type_arg = edge_type if family.relational else None
    # a labelling the graph and features explain: one step of mean aggregation, then a linear map
    gen = torch.Generator().manual_seed(seed + 1)
    w = torch.randn(in_channels, num_classes, generator=gen)
    agg = torch.zeros_like(x).index_add_(0, edge_index[1], x[edge_index[0]])
    y = ((x + agg) @ w).argmax(dim=1)
    extra = {"num_relations": relations} if family.relational else {}

    for layers in num_layers:
        for params in family_parameter_draws(family):
            where = f"family {family.name!r} with num_layers={layers}, hidden_channels={hidden_channels}, {params}"

            def build(layers: int = layers, params: dict = params) -> GraphModel:
                torch.manual_seed(seed)
                return family.build(in_channels, num_classes, layers, hidden_channels, dropout=0.5, **params, **extra)

            model = build()
            assert isinstance(model, GraphModel), f"{where}: build returned a {type(model).__name__}, not a GraphModel"
            assert bool(model.uses_graph) == bool(family.uses_graph), f"{where}: model.uses_graph != family.uses_graph"
            assert bool(getattr(model, "relational", False)) == bool(family.relational), (
                f"{where}: model.relational != family.relational")
            model.eval()
            with torch.no_grad():
                out = run_model(model, x, edge_index, edge_type_arg)
                again = run_model(model, x, edge_index, edge_type_arg)
            assert isinstance(out, ModelOutput), f"{where}: forward returned {type(out).__name__}, not ModelOutput"
            assert tuple(out.logits.shape) == (num_nodes, num_classes), (
                f"{where}: logits have shape {tuple(out.logits.shape)}, expected {(num_nodes, num_classes)}")
            assert isinstance(out.hidden, list) and out.hidden, f"{where}: hidden must be a non-empty list"
            for i, h in enumerate(out.hidden):
                assert h.dim() == 2 and h.size(0) == num_nodes, f"{where}: hidden[{i}] has shape {tuple(h.shape)}"
                assert torch.isfinite(h).all(), f"{where}: hidden[{i}] has non-finite values"
            assert torch.equal(out.hidden[-1], out.logits), f"{where}: hidden[-1] is not the logits"
            assert torch.equal(out.logits, again.logits), f"{where}: two eval-mode forwards differ"
            if not family.uses_graph:
                with torch.no_grad():
                    alone = run_model(model, x, edge_index[:, :0], None if edge_type_arg is None else edge_type_arg[:0])
                torch.testing.assert_close(alone.logits, out.logits, atol=1e-6, rtol=0,
                                           msg=lambda m, where=where: f"{where}: uses_graph is False but the output "
                                                                      f"depends on the edges: {m}")

            # receptive field: features further than num_hops hops do not reach a target
            hops = family.num_hops(layers, **params)
            if family.uses_graph:
                targets = torch.tensor([0, 7, 19])
                near = NeighbourhoodIndex(edge_index, num_nodes).subgraph(targets, [-1] * hops).nodes
                far = torch.ones(num_nodes, dtype=torch.bool)
                far[near] = False
                moved = x.clone()
                moved[far] = torch.randn(int(far.sum()), in_channels, generator=gen) * 3
                with torch.no_grad():
                    local = run_model(model, moved, edge_index, edge_type_arg).logits[targets]
                torch.testing.assert_close(
                    local, out.logits[targets], atol=1e-5, rtol=1e-4,
                    msg=lambda m, where=where, hops=hops: f"{where}: features more than num_hops() = {hops} hops away "
                                                          f"change a node's output, so num_hops() is too small: {m}")
                assert bool(far.any()), f"{where}: the contract graph is too small to test num_hops() = {hops}"
            else:
                assert hops == 0, f"{where}: a graph-free family must report num_hops 0, got {hops}"

            # a served request (the latency protocol, the registered MLflow model) answers exactly
            # the full-graph outputs
            targets = torch.tensor([0, 7, 19, 7])
            with torch.no_grad():
                served = answer(model, ServingGraph.for_model(model, x, edge_index, edge_type_arg), targets, hops)
            torch.testing.assert_close(
                served, out.logits[targets], atol=1e-5, rtol=1e-4,
                msg=lambda m, where=where: f"{where}: a served request (its num_hops() subgraph) differs from the "
                                          f"full-graph output; a family whose layers normalise by degree must set "
                                          f"GraphModel.normalize and accept edge_weight=: {m}")

            # chunked inference
            model.train()
            chunked = model.inference(x, edge_index, edge_type_arg, chunk_size=num_nodes // 3)
            assert not model.training, f"{where}: inference() must switch the model to eval mode"
            assert len(chunked.hidden) == len(out.hidden), f"{where}: inference() returned {len(chunked.hidden)} " \
                                                           f"hidden outputs, forward {len(out.hidden)}"
            for i, (got, want) in enumerate(zip(chunked.hidden, out.hidden)):
                torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4,
                                           msg=lambda m, where=where, i=i: f"{where}: inference() hidden[{i}]: {m}")
            logits_only = model.inference(x, edge_index, edge_type_arg, chunk_size=num_nodes // 3, keep_hidden=False)
            assert len(logits_only.hidden) == 1, f"{where}: inference(keep_hidden=False) must return hidden == [logits]"
            torch.testing.assert_close(logits_only.logits, out.logits, atol=1e-5, rtol=1e-4)

            # state_dict round trip
            fresh = build()
            fresh.load_state_dict(model.state_dict())
            fresh.eval()
            with torch.no_grad():
                torch.testing.assert_close(run_model(fresh, x, edge_index, edge_type_arg).logits, out.logits,
                                           msg=lambda m, where=where: f"{where}: a model rebuilt from the state_dict "
                                                                      f"differs: {m}")

            # gradients reach every parameter
            model.train()
            model.zero_grad()
            F.cross_entropy(run_model(model, x, edge_index, edge_type_arg).logits, y).backward()
            for name, p in model.named_parameters():
                if p.requires_grad:
                    assert p.grad is not None, f"{where}: no gradient reaches parameter {name}"
                    assert torch.isfinite(p.grad).all(), f"{where}: non-finite gradient on parameter {name}"

        # it learns (defaults only, no dropout)
        torch.manual_seed(seed)
        learner = family.build(in_channels, num_classes, layers, hidden_channels, dropout=0.0,
                               **family_parameter_draws(family)[0], **extra)
        optimizer = torch.optim.Adam(learner.parameters(), lr=0.03)
        losses = []
        for _ in range(60):
            optimizer.zero_grad()
            loss = F.cross_entropy(run_model(learner, x, edge_index, edge_type_arg).logits, y)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        assert losses[-1] < 0.9 * losses[0], (
            f"family {family.name!r} with num_layers={layers}: 60 training steps took the loss from "
            f"{losses[0]:.3f} only to {losses[-1]:.3f}")


# --------------------------------------------------------------------------- structural losses


def check_structural_loss(loss: StructuralLoss, *, student_channels: int = 8, teacher_channels: int = 12,
                          seed: int = 0) -> None:
    """The contract every structural loss meets; raises ``AssertionError`` naming what broke.

    At the default, low and high ends of its hyperparameters, for ``[N, student_channels]``
    student and ``[N, teacher_channels]`` teacher embeddings of a seeded 60-node graph:

    * ``build`` returns a :class:`~gkd_search.types.StructuralLossModule`;
    * the loss is a finite scalar; it is finite on a graph without edges too (a sampled
      subgraph may have none);
    * a finite gradient reaches the student embeddings and is non-zero (the loss depends on
      the student), and reaches every parameter the module owns;
    * it runs on a subset of rows with a relabelled ``edge_index`` (how STRIDE calls it);
    * without trainable parameters, it is lower when the student equals the teacher (same widths)
      than for an unrelated student.
    """
    from .types import StructuralLossModule

    num_nodes = 60
    teacher, edge_index, _ = _contract_graph_tensors(num_nodes, 300, teacher_channels, 1, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    for label, params in parameter_draws(loss.hyperparameters).items():
        where = f"structural loss {loss.name!r} ({label} parameters {params})"
        module = loss.build(params, student_channels, teacher_channels)
        assert isinstance(module, StructuralLossModule), f"{where}: build returned a {type(module).__name__}"
        student = torch.randn(num_nodes, student_channels, generator=gen, requires_grad=True)
        value = module(student, teacher, edge_index)
        assert torch.is_tensor(value) and value.dim() == 0, f"{where}: the loss is not a scalar tensor"
        assert torch.isfinite(value), f"{where}: the loss is {float(value.detach())}"
        value.backward()
        assert student.grad is not None and torch.isfinite(student.grad).all(), f"{where}: no finite gradient to the student"
        assert student.grad.abs().sum() > 0, f"{where}: the loss does not depend on the student embeddings"
        for name, p in module.named_parameters():
            if p.requires_grad:
                assert p.grad is not None and torch.isfinite(p.grad).all(), f"{where}: no finite gradient reaches {name}"
        rows = torch.arange(0, num_nodes, 2)
        keep = (edge_index % 2 == 0).all(dim=0)
        sub_edges = edge_index[:, keep] // 2
        sub_value = module(student[rows], teacher[rows], sub_edges)
        assert torch.isfinite(sub_value), f"{where}: the loss on a subset of rows is {float(sub_value.detach())}"
        no_edges = module(student, teacher, edge_index[:, :0])
        assert torch.isfinite(no_edges), f"{where}: the loss on a graph without edges is {float(no_edges.detach())}"

    same = loss.build(parameter_draws(loss.hyperparameters)["default"], teacher_channels, teacher_channels)
    if any(p.requires_grad for p in same.parameters()):
        return  # learned projections (G-CRD's heads) score an untrained match arbitrarily
    with torch.no_grad():
        matched = float(same(teacher, teacher, edge_index))
        unrelated = float(same(torch.randn(num_nodes, teacher_channels, generator=gen), teacher, edge_index))
    assert matched < unrelated, (f"structural loss {loss.name!r}: a student equal to the teacher scores {matched:.4g}, "
                                 f"not lower than an unrelated one ({unrelated:.4g})")


# ---------------------------------------------------------------------------------- datasets


def _snapshot(root: Optional[Path]) -> dict[str, tuple[int, int]]:
    if root is None or not Path(root).exists():
        return {}
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(Path(root).rglob("*")) if p.is_file()}


def check_dataset(spec: Any, root: Optional[Path], cache_dir: Path, *, seed: int = 0, **options: Any) -> GraphDataset:
    """The contract every dataset meets; returns the loaded :class:`~gkd_search.types.GraphDataset`.

    ``spec.load(root, cache_dir, seed, **options)`` must return a ``GraphDataset`` whose ``data``
    has float ``x [N, F]``, a long ``edge_index [2, E]`` within ``[0, N)``, ``y [N]`` with labels
    in ``[0, num_classes)`` on every split node, and boolean, pairwise disjoint, non-empty
    ``train_mask``/``val_mask``/``test_mask``; a heterogeneous graph's ``edge_type [E]``,
    ``node_type [N]`` and ``target_mask [N]`` (split nodes are target nodes). A second load
    (from the cache) gives the same graph, and nothing under ``root`` is written.
    """
    before = _snapshot(root)
    dataset = spec.load(root, cache_dir, seed, **options)
    assert isinstance(dataset, GraphDataset), f"dataset {spec.name!r}: load returned a {type(dataset).__name__}"
    d = dataset.data
    where = f"dataset {spec.name!r} ({dataset.name})"
    n = dataset.num_nodes
    assert d.x.dim() == 2 and d.x.size(0) == n and d.x.is_floating_point(), f"{where}: x must be a float [N, F] tensor"
    assert d.edge_index.dim() == 2 and d.edge_index.size(0) == 2 and d.edge_index.dtype == torch.long, (
        f"{where}: edge_index must be a long [2, E] tensor")
    if d.edge_index.numel():
        assert int(d.edge_index.min()) >= 0 and int(d.edge_index.max()) < n, f"{where}: edge_index points outside [0, N)"
    assert dataset.num_classes >= 2, f"{where}: num_classes is {dataset.num_classes}"
    masks = {}
    for name in ("train_mask", "val_mask", "test_mask"):
        mask = getattr(d, name, None)
        assert mask is not None and mask.dtype == torch.bool and tuple(mask.shape) == (n,), f"{where}: {name} must be a bool [N] tensor"
        assert bool(mask.any()), f"{where}: {name} is empty"
        masks[name] = mask
    assert not bool((masks["train_mask"] & masks["val_mask"]).any() | (masks["train_mask"] & masks["test_mask"]).any()
                    | (masks["val_mask"] & masks["test_mask"]).any()), f"{where}: the split masks overlap"
    labelled = masks["train_mask"] | masks["val_mask"] | masks["test_mask"]
    labels = d.y[labelled]
    assert int(labels.min()) >= 0 and int(labels.max()) < dataset.num_classes, f"{where}: a split node's label is outside [0, C)"
    if dataset.is_heterogeneous:
        assert d.edge_type.shape == (d.edge_index.size(1),), f"{where}: edge_type must be [E]"
        assert getattr(d, "node_type", None) is not None and d.node_type.shape == (n,), f"{where}: node_type must be [N]"
        target = getattr(d, "target_mask", None)
        assert target is not None and target.dtype == torch.bool, f"{where}: a heterogeneous graph needs a bool target_mask"
        assert not bool((labelled & ~target).any()), f"{where}: a split node is not a target node"
    again = spec.load(root, cache_dir, seed, **options)
    assert again.fingerprint() == dataset.fingerprint(), f"{where}: a second load gives a different graph"
    assert _snapshot(root) == before, f"{where}: load wrote into the read-only root {root}"
    return dataset
