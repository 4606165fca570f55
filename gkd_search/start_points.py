"""Start points: trials a space asks the search to run first, before the sampler takes over.

A space file may list, under ``start_with:``, students it wants tried whatever the sampler would
draw: an architecture and a method, optionally some of the method's and the training settings'
values; every value left out is sampled as usual::

    start_with:
      - {family: mlp, num_layers: 2, hidden_channels: 128, method: infgrand}
      - {family: gat, num_layers: 2, hidden_channels: 32, heads: 4, method: softkd,
         method_params: {tau: 4.0}, training: {lr: 0.01}}

They become the first trials of the Optuna study (``Study.enqueue_trial``, the warm start that
Optuna documents and Ray Tune's ``OptunaSearch`` calls ``points_to_evaluate``), so TPE learns from
them as from any other trial. The built-in spaces have none: starting the default space with the
graph-free InfGraND and GLNN MLPs made them the best trial of every Photo search, but the ``one-se``
pick did not improve, and on Cora it was larger, since a strong start point raises the band of one
standard error (docs/benchmarks.md, "Start points").

With ``--pruner asha`` a start point reports at the rungs like any trial, so it sets the bar for
the others, but it is never stopped: the students a space asks for first may learn slowly at first
(GLNN's and InfGraND's MLPs on Photo were below the cutoff at epoch 10 and ended best).

A start point whose architecture is over the latency budget (or was left out as no smaller than
the teacher), or whose family or method ``--families`` / ``--methods`` left out, is skipped with a
message; a resumed search does not enqueue them again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

from .errors import SpaceError
from .params import Choice, Fixed, FloatRange, IntRange, Param
from .types import DistillationMethod, ModelFamily

#: the keys of one start point besides the family's architecture parameters
POINT_KEYS = ("family", "num_layers", "hidden_channels", "method", "method_params", "training")


@dataclass(frozen=True)
class StartPoint:
    """One ``start_with:`` entry: the student's architecture key and method, and the values it pins."""

    architecture: str
    family: str
    method: str
    method_params: Mapping[str, Any] = field(default_factory=dict)
    training: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.architecture} {self.method}"


def parse_start_points(raw: Any, where: str, space, families: Mapping[str, ModelFamily],
                       methods: Mapping[str, DistillationMethod]) -> tuple[StartPoint, ...]:
    """Validate ``start_with:`` against the space it belongs to (``space``: a
    :class:`~gkd_search.space.SearchSpace`); every bad entry is a :class:`SpaceError` naming it."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise SpaceError(f"{where}: start_with: expected a list of trials, got {type(raw).__name__} {raw!r}")
    architectures = {a.key: a for a in space.architectures(families)}
    return tuple(_parse_point(entry, f"{where}: start_with[{i}]", space, families, methods, architectures)
                 for i, entry in enumerate(raw))


def _parse_point(entry: Any, where: str, space, families, methods, architectures) -> StartPoint:
    from .space import Architecture

    if not isinstance(entry, Mapping):
        raise SpaceError(f"{where}: expected a mapping with family, num_layers, hidden_channels and method, "
                         f"got {entry!r}")
    for key in ("family", "num_layers", "method"):
        if key not in entry:
            raise SpaceError(f"{where}: missing {key!r}")
    name = entry["family"]
    if name not in space.families:
        raise SpaceError(f"{where}.family: {name!r} is not a family of this space (its families: "
                         f"{', '.join(space.families)})")
    family = families[name]
    for key in entry:
        if key not in POINT_KEYS and key not in family.hyperparameters:
            known = ", ".join((*POINT_KEYS, *family.hyperparameters))
            raise SpaceError(f"{where}.{key}: unknown key (known: {known})")
    layers, hidden = entry["num_layers"], entry.get("hidden_channels", 0)
    if family.uses_hidden_channels and layers != 1 and "hidden_channels" not in entry:
        raise SpaceError(f"{where}: missing 'hidden_channels'")
    if not family.uses_hidden_channels or (layers == 1 and not family.hidden_channels_at_one_layer):
        hidden = 0
    params = {k: v for k, v in entry.items() if k in family.hyperparameters}
    if layers == 1:
        params = {k: v for k, v in params.items() if k not in family.single_layer_ignores}
    wanted = Architecture(name, layers, hidden, tuple(sorted(params.items())))
    # a family parameter the entry leaves out takes the space's value when the space has one only
    matches = [a for a in architectures.values() if a.family == name and a.num_layers == layers
               and a.hidden_channels == hidden and set(wanted.family_params) <= set(a.family_params)]
    if len(matches) != 1:
        grid = space.families[name]
        problem = "is not an architecture of this space" if not matches else "matches several: give its " + ", ".join(
            sorted({k for a in matches for k, _ in a.family_params} - set(params)))
        raise SpaceError(f"{where}: {wanted.key} {problem} (families.{name}: num_layers {list(grid.num_layers)}, "
                         f"hidden_channels {list(grid.hidden_channels)}"
                         + "".join(f", {k} {list(v)}" for k, v in grid.params.items()) + ")")
    arch = matches[0]
    method = entry["method"]
    if method not in space.methods:
        raise SpaceError(f"{where}.method: {method!r} is not a method of this space (its methods: "
                         f"{', '.join(space.methods)})")
    if not methods[method].accepts(family):
        raise SpaceError(f"{where}.method: {method!r} cannot train a {name} student")
    method_params = _pinned(entry.get("method_params"), space.methods[method], f"{where}.method_params")
    training = _pinned(entry.get("training"), space.training, f"{where}.training")
    return StartPoint(arch.key, name, method, method_params, training)


def _pinned(raw: Any, params: Mapping[str, Param], where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise SpaceError(f"{where}: expected a mapping of values, got {raw!r}")
    for key, value in raw.items():
        if key not in params:
            raise SpaceError(f"{where}.{key}: not a searched value here (known: {', '.join(params) or 'none'})")
        if not _within(params[key], value):
            raise SpaceError(f"{where}.{key}: {value!r} is outside the space's {_describe(params[key])}")
    return dict(raw)


def _within(param: Param, value: Any) -> bool:
    if isinstance(param, Fixed):
        return value == param.value
    if isinstance(param, Choice):
        return value in param.choices
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(param, IntRange) and not float(value).is_integer():
        return False
    return param.low <= value <= param.high


def _describe(param: Param) -> str:
    if isinstance(param, Fixed):
        return f"fixed value {param.value!r}"
    if isinstance(param, Choice):
        return f"choices {list(param.choices)}"
    kind = "range" if isinstance(param, FloatRange) else "integer range"
    return f"{kind} [{param.low}, {param.high}]"


class _Unreachable(Exception):
    """The start point's architecture or method is not among what the sampler may draw now."""


class _PinningTrial:
    """Walks :func:`~gkd_search.space.suggest_spec` as an Optuna trial would, answering with the
    start point's values and recording, under Optuna's parameter names, the values it pinned."""

    def __init__(self, point: StartPoint, dims: Mapping[str, Any]) -> None:
        self.point, self.dims = point, dims
        self.params: dict[str, Any] = {}

    def _pinned(self, name: str) -> tuple[bool, Any]:
        base = name.split("[", 1)[0]
        if base == "family":
            return True, self.point.family
        if base == "method":
            return True, self.point.method
        head, _, key = base.partition(".")
        if head == self.point.family and key in self.dims:
            return True, self.dims[key]
        if head == self.point.method and key in self.point.method_params:
            return True, self.point.method_params[key]
        if not key and base in self.point.training:
            return True, self.point.training[base]
        return False, None

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        pinned, value = self._pinned(name)
        if not pinned:
            return choices[0]
        if value not in choices:
            raise _Unreachable(name)
        self.params[name] = value
        return value

    def _number(self, name: str, low: Any, cast: Any) -> Any:
        pinned, value = self._pinned(name)
        if not pinned:
            return low
        self.params[name] = cast(value)
        return self.params[name]

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float:
        return self._number(name, low, float)

    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False) -> int:
        return self._number(name, low, int)


def optuna_params(point: StartPoint, space, feasible: Sequence, families: Mapping[str, ModelFamily],
                  methods: Mapping[str, DistillationMethod]) -> Optional[dict[str, Any]]:
    """The Optuna parameters that make the sampler's walk (:func:`~gkd_search.space.suggest_spec`)
    give ``point``, for ``Study.enqueue_trial``; None where it cannot (its architecture is not
    among the ``feasible`` ones, or its family or method is no longer in ``space``)."""
    from .space import suggest_spec

    arch = next((a for a in feasible if a.key == point.architecture), None)
    if arch is None or point.family not in space.families or point.method not in space.methods:
        return None
    dims = dict(arch.dims())
    walker = _PinningTrial(point, dims)
    try:
        spec = suggest_spec(walker, space, feasible, families, methods, seed=0)
    except _Unreachable:
        return None
    if spec.architecture_key() != point.architecture or spec.method != point.method:
        return None
    return walker.params


def resolve_start_points(space, feasible: Sequence, families: Mapping[str, ModelFamily],
                         methods: Mapping[str, DistillationMethod]) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """The Optuna parameters of each of ``space``'s start points that the search can run, with
    the labels of those it runs and of those it skips."""
    runs, used, skipped = [], [], []
    for point in space.start_with:
        params = optuna_params(point, space, feasible, families, methods)
        if params is None:
            skipped.append(point.label)
        else:
            runs.append(params)
            used.append(point.label)
    return runs, used, skipped
