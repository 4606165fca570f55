"""Checks every component a plugin provides when the registry is built, before any search.

Each failure is a :class:`~gkd_search.errors.PluginError` whose one-line message names the
plugin, its distribution, the component and the field, and says what was expected, e.g.::

    plugin 'gkd_rkd' (gkd-rkd 0.1): method 'rkd': 'requires' names 'logitz', which a teacher
    does not provide (known: hidden, logits)

A family is also built at a small size and run on a four-node graph, so a model whose forward
does not return :class:`~gkd_search.types.ModelOutput` with one output per layer is rejected
here instead of failing every trial.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from .errors import GkdError, PluginError
from .params import Choice, Fixed, FloatRange, IntRange
from .types import TEACHER_OUTPUTS, DatasetSpec, DistillationMethod, ModelFamily, ModelOutput, StructuralLoss, run_model

KIND_CLASSES = {"method": DistillationMethod, "family": ModelFamily, "loss": StructuralLoss, "dataset": DatasetSpec}
PARAM_TYPES = (FloatRange, IntRange, Choice, Fixed)
STUDENT_KINDS = frozenset({"graph", "graph_free"})


def validate_component(kind: str, component: Any, where: str) -> None:
    """Raise :class:`PluginError` naming ``where`` (``plugin 'x' (dist)``) and the bad field."""
    expected = KIND_CLASSES[kind]
    label = f"{where}: {kind} {getattr(component, 'name', component)!r}"
    if not isinstance(component, expected):
        raise PluginError(f"{label}: is a {type(component).__name__}, not a gkd_search.types.{expected.__name__} "
                          f"(subclass it and return an instance from the hook)")
    _check_hyperparameters(label, getattr(component, "hyperparameters", {}) or {})
    if kind == "method":
        _check_method(label, component)
    elif kind == "family":
        _check_family(label, component)
    elif kind == "dataset":
        _check_dataset(label, component)


def _check_hyperparameters(label: str, hyperparameters: Mapping[str, Any]) -> None:
    if not isinstance(hyperparameters, Mapping):
        raise PluginError(f"{label}: 'hyperparameters' must be a mapping of name to parameter, got "
                          f"{type(hyperparameters).__name__}")
    for name, param in hyperparameters.items():
        if not isinstance(param, PARAM_TYPES):
            raise PluginError(f"{label}: hyperparameter {name!r} is {param!r}; declare it with gkd_search.params "
                              "FloatRange, IntRange, Choice or Fixed")
        try:
            param.validate(f"hyperparameter {name!r}")
        except GkdError as exc:
            raise PluginError(f"{label}: {exc}") from None


def _check_method(label: str, method: DistillationMethod) -> None:
    unknown = sorted(set(method.requires) - TEACHER_OUTPUTS)
    if unknown:
        raise PluginError(f"{label}: 'requires' names {unknown[0]!r}, which a teacher does not provide "
                          f"(known: {', '.join(sorted(TEACHER_OUTPUTS))})")
    kinds = set(method.student_kinds)
    if not kinds or kinds - STUDENT_KINDS:
        raise PluginError(f"{label}: 'student_kinds' is {sorted(kinds)}; use a non-empty subset of "
                          f"{sorted(STUDENT_KINDS)}")


def _check_family(label: str, family: ModelFamily) -> None:
    for name, param in family.hyperparameters.items():
        if not isinstance(param, (Choice, Fixed)):
            raise PluginError(f"{label}: family parameter {name!r} is a {type(param).__name__}; an architecture "
                              "parameter must be a Choice or Fixed (each value is a distinct architecture)")
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    edge_index = torch.tensor([[0, 1, 2, 3, 1], [1, 2, 3, 0, 0]])
    defaults = {name: (p.choices[0] if isinstance(p, Choice) else p.value) for name, p in family.hyperparameters.items()}
    extra = {"num_relations": 1} if family.relational else {}
    try:
        model = family.build(5, 3, 2, 8, **defaults, **extra)
        model.eval()
        with torch.no_grad():
            out = run_model(model, x, edge_index)
    except Exception as exc:
        raise PluginError(f"{label}: building and running a 2-layer, 8-wide model on a 4-node graph failed: "
                          f"{type(exc).__name__}: {exc}") from None
    if not isinstance(out, ModelOutput):
        raise PluginError(f"{label}: the model's forward returned {type(out).__name__}; it must return "
                          "gkd_search.types.ModelOutput(logits, hidden) with every layer's output in hidden")
    if tuple(out.logits.shape) != (4, 3):
        raise PluginError(f"{label}: the logits have shape {tuple(out.logits.shape)}, expected (num_nodes, num_classes) = (4, 3)")
    if not isinstance(out.hidden, list) or len(out.hidden) < 2 or not all(torch.is_tensor(h) for h in out.hidden):
        raise PluginError(f"{label}: 'hidden' must list every layer's output (at least 2 for a 2-layer model), got "
                          f"{type(out.hidden).__name__} of {len(out.hidden) if hasattr(out.hidden, '__len__') else '?'}")
    if out.hidden[-1] is not out.logits and not torch.equal(out.hidden[-1], out.logits):
        raise PluginError(f"{label}: hidden[-1] must be the logits (the last layer's output)")
    if any(h.size(0) != 4 for h in out.hidden):
        raise PluginError(f"{label}: every entry of 'hidden' must have one row per node")


def _check_dataset(label: str, dataset: DatasetSpec) -> None:
    from .teacher import TeacherConfig
    from .teacher_search import is_auto

    if dataset.name != dataset.name.lower() or ":" in dataset.name or "," in dataset.name:
        raise PluginError(f"{label}: the name must be lower case without ':' or ',' (it is typed in --dataset)")
    try:
        if dataset.default_teacher is not None and not is_auto(dataset.default_teacher):
            TeacherConfig.parse(dataset.default_teacher)
    except GkdError as exc:
        raise PluginError(f"{label}: 'default_teacher': {exc}") from None
