"""The distillation-method contract: :func:`check_method`, :func:`check_loss`,
:func:`check_logged_params`, :func:`check_hyperparameters`."""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Optional, Sequence

import torch

from ..distill.objective import build_objective, method_hyperparameters
from ..params import Choice, Fixed, FloatRange, IntRange
from ..types import (
    DistillationBatch,
    DistillationContext,
    DistillationMethod,
    ModelFamily,
    TrialSpec,
    architecture_key,
)
from ._graph import ContractGraph, parameter_draws


def check_hyperparameters(method: DistillationMethod) -> None:
    """The declared space is made of valid :mod:`gkd_search.params` objects."""
    for name, param in method.hyperparameters.items():
        assert isinstance(param, (FloatRange, IntRange, Choice, Fixed)), (
            f"{method.name}: hyperparameter {name!r} is a {type(param).__name__}, not a gkd_search.params type")
        param.validate(f"{method.name}.{name}")


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
    where = f"{method.name} with {architecture_key(family_name, num_layers, hidden, family_params)} and {dict(params)}"
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

    from ..latency import LatencyProtocol
    from ..tracking import SearchTracker, _fmt
    from ..trial import TrialContext, run_trial

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
