"""Declarative search spaces (YAML) and the define-by-run sampler that walks them.

A space file names the student families with their depths, widths and family parameters, the
methods with (optionally narrowed) hyperparameter ranges, and the training settings::

    families:
      gcn: {num_layers: [1, 2, 3], hidden_channels: [16, 32, 64]}
      gat: {num_layers: [2], hidden_channels: [32, 64], heads: [1, 4]}
    methods:
      none: {}
      softkd: {tau: {low: 1.0, high: 8.0}}      # alpha keeps the method's default range
    training:
      lr: {low: 0.003, high: 0.03, log: true}
      dropout: {low: 0.0, high: 0.8}

Values follow :func:`gkd_search.params.param_from_yaml`. Every unknown key is an error that
names the file and the key.

Sampling is define-by-run (Optuna): the family first, then that family's depth, width and
family parameters, restricted to the architectures within the latency budget; then a method
that accepts the family; then only that method's hyperparameters; then the training settings.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import yaml

from .distill.objective import method_hyperparameters
from .errors import SpaceError, UnknownComponentError
from .params import Choice, Fixed, FloatRange, Param, Suggester, check_param_type, param_from_yaml
from .types import DistillationMethod, ModelFamily, TrialSpec, architecture_key


def _spaces_dir() -> Path:
    """The built-in spaces: the package ``gkd_search.search_spaces`` (the repository's top-level
    ``search_spaces/``, installed into the wheel by ``pyproject.toml``'s package-dir mapping)."""
    from importlib.resources import files

    try:
        return Path(str(files("gkd_search.search_spaces")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[1] / "search_spaces"


SPACES_DIR = _spaces_dir()
TRAINING_DEFAULTS: dict[str, Param] = {
    "lr": FloatRange(0.003, 0.03, log=True),
    "weight_decay": FloatRange(1e-5, 1e-3, log=True),
    "dropout": FloatRange(0.0, 0.8),
    "epochs": Fixed(200),
    "patience": Fixed(50),
}
#: training settings a space may add: GCNII's separate weight decay of its convolutions
#: (:meth:`~gkd_search.types.GraphModel.parameter_groups`; other families ignore it)
TRAINING_OPTIONAL: dict[str, Param] = {
    "conv_weight_decay": FloatRange(1e-4, 1e-1, log=True),
    #: ``false`` turns the training guard off (distill/guard.py): every trial trains to its epoch
    #: limit, as a paper's protocol does; only a non-finite loss still stops it
    "guard": Fixed(True),
}
TOP_LEVEL_KEYS = ("description", "teacher", "students_smaller_than_teacher", "families", "methods", "training",
                  "start_with")
ARCH_KEYS = ("num_layers", "hidden_channels")


@dataclass(frozen=True)
class Architecture:
    """A student architecture: what latency depends on."""

    family: str
    num_layers: int
    hidden_channels: int
    family_params: tuple[tuple[str, Any], ...] = ()

    @property
    def key(self) -> str:
        return architecture_key(self.family, self.num_layers, self.hidden_channels, dict(self.family_params))

    def dims(self) -> tuple[tuple[str, Any], ...]:
        return (("num_layers", self.num_layers), ("hidden_channels", self.hidden_channels), *self.family_params)


@dataclass
class FamilySpace:
    num_layers: tuple[int, ...]
    hidden_channels: tuple[int, ...]
    params: dict[str, tuple[Any, ...]] = field(default_factory=dict)


@dataclass
class SearchSpace:
    """A validated space: families, methods with their parameter ranges, training settings."""

    source: str
    families: dict[str, FamilySpace]
    methods: dict[str, dict[str, Param]]
    training: dict[str, Param]
    #: the space's teacher (``FAMILY:LAYERS:HIDDEN[:key=value]``), used unless ``--teacher`` is given
    teacher: Optional[str] = None
    #: leave out architectures with at least as many parameters as the teacher (they are no students)
    smaller_than_teacher: bool = False
    #: trials to run first (``start_with:``, :mod:`gkd_search.start_points`)
    start_with: tuple = ()

    def architectures(self, families: Mapping[str, ModelFamily]) -> list[Architecture]:
        """Every distinct architecture of the space (a 1-layer model, or a family without a hidden
    width such as SGC, has hidden width 0)."""
        seen: dict[str, Architecture] = {}
        for name, fs in self.families.items():
            param_names = sorted(fs.params)
            for layers, hidden, *values in itertools.product(
                fs.num_layers, fs.hidden_channels, *(fs.params[p] for p in param_names)
            ):
                params = dict(zip(param_names, values))
                family = families[name]
                if not family.uses_hidden_channels or (layers == 1 and not family.hidden_channels_at_one_layer):
                    hidden = 0
                if layers == 1:
                    params = {k: v for k, v in params.items() if k not in families[name].single_layer_ignores}
                arch = Architecture(name, layers, hidden, tuple(sorted(params.items())))
                seen.setdefault(arch.key, arch)
        return list(seen.values())

    def methods_for(self, family: ModelFamily, methods: Mapping[str, DistillationMethod]) -> list[str]:
        return [m for m in self.methods if methods[m].accepts(family)]


# ------------------------------------------------------------------------------------- loading


def resolve_space_path(space: str | Path) -> Path:
    """A path, or the name of a built-in space in ``search_spaces/`` (``default`` -> ``default.yaml``)."""
    path = Path(space)
    if path.is_file():
        return path
    candidate = SPACES_DIR / f"{space}.yaml"
    if candidate.is_file():
        return candidate
    known = sorted(p.stem for p in SPACES_DIR.glob("*.yaml")) if SPACES_DIR.is_dir() else []
    if not known:
        raise SpaceError(f"search space {str(space)!r} not found, and no built-in space is installed in {SPACES_DIR}: "
                         "give a YAML file path, or reinstall gkd-search")
    raise SpaceError(f"search space {str(space)!r} not found: give a YAML file path or one of: {', '.join(known)}")


def _positive_ints(value: Any, where: str) -> tuple[int, ...]:
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
        raise SpaceError(f"{where}: expected a positive integer or a list of them, got {value!r}")
    return tuple(dict.fromkeys(values))


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpaceError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")
    return value


def load_space(
    space: str | Path,
    families: Mapping[str, ModelFamily],
    methods: Mapping[str, DistillationMethod],
    *,
    only_families: Optional[Sequence[str]] = None,
    only_methods: Optional[Sequence[str]] = None,
    epochs: Optional[int] = None,
    structural_losses: Optional[Sequence[str]] = None,
) -> SearchSpace:
    """Read and validate a space file; ``only_*`` restrict it (a method named there but absent
    from the file joins with its default ranges, a family with its ``default_num_layers`` and
    ``default_hidden_channels``); ``epochs`` overrides ``training.epochs``. With
    ``structural_losses`` (the registered names), a method's ``structural_loss_options`` may
    only take those values."""
    path = resolve_space_path(space)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise SpaceError(f"{path}:{line} is not valid YAML ({getattr(exc, 'problem', exc)})") from None
    raw = _mapping(raw, str(path))
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            raise SpaceError(f"{path}: unknown key {key!r} (known: {', '.join(TOP_LEVEL_KEYS)})")

    family_spaces: dict[str, FamilySpace] = {}
    for name, body in _mapping(raw.get("families"), f"{path}: families").items():
        if name not in families:
            raise SpaceError(f"{path}: families.{name}: unknown family (known: {', '.join(sorted(families))})")
        family_spaces[name] = _load_family(path, name, families[name], _mapping(body, f"{path}: families.{name}"))

    method_spaces: dict[str, dict[str, Param]] = {}
    for name, body in _mapping(raw.get("methods"), f"{path}: methods").items():
        if name not in methods:
            raise SpaceError(f"{path}: methods.{name}: unknown method (known: {', '.join(sorted(methods))})")
        method_spaces[name] = _load_method(path, name, methods[name], _mapping(body, f"{path}: methods.{name}"))

    training = dict(TRAINING_DEFAULTS)
    for key, value in _mapping(raw.get("training"), f"{path}: training").items():
        known = {**TRAINING_DEFAULTS, **TRAINING_OPTIONAL}
        if key not in known:
            raise SpaceError(f"{path}: training.{key}: unknown key (known: {', '.join(known)})")
        param = param_from_yaml(value, f"{path}: training.{key}")
        check_param_type(param, known[key], f"{path}: training.{key}")
        training[key] = param
    if epochs is not None:
        training["epochs"] = Fixed(int(epochs))
    from .start_points import parse_start_points  # imports this module

    start_with = parse_start_points(raw.get("start_with"), str(path),
                                    SearchSpace(str(path), dict(family_spaces), dict(method_spaces), training),
                                    families, methods)

    if only_families:
        for name in only_families:
            if name not in families:
                raise UnknownComponentError("family", name, list(families))
            if name not in family_spaces:  # joins with the family's own default grid
                family = families[name]
                family_spaces[name] = _load_family(path, name, family, {
                    "num_layers": list(family.default_num_layers),
                    "hidden_channels": list(family.default_hidden_channels)})
        family_spaces = {n: fs for n, fs in family_spaces.items() if n in only_families}
    if only_methods:
        for name in only_methods:
            if name not in methods:
                raise UnknownComponentError("method", name, list(methods))
        method_spaces = {n: method_spaces.get(n) or method_hyperparameters(methods[n]) for n in only_methods}

    if structural_losses is not None:
        for name, params in method_spaces.items():
            _check_structural_loss_options(path, name, methods[name], params, structural_losses)
    if not family_spaces:
        raise SpaceError(f"{path}: the space has no student family")
    if not method_spaces:
        raise SpaceError(f"{path}: the space has no method")
    teacher = raw.get("teacher")
    if teacher is not None and not isinstance(teacher, str):
        raise SpaceError(f"{path}: teacher: expected FAMILY:LAYERS:HIDDEN[:key=value] as a string, got {teacher!r}")
    smaller = raw.get("students_smaller_than_teacher", False)
    if not isinstance(smaller, bool):
        raise SpaceError(f"{path}: students_smaller_than_teacher: expected true or false, got {smaller!r}")
    result = SearchSpace(str(path), family_spaces, method_spaces, training, teacher=teacher,
                         smaller_than_teacher=smaller, start_with=start_with)
    usable = {n: fs for n, fs in family_spaces.items() if result.methods_for(families[n], methods)}
    if not usable:
        raise SpaceError(
            f"{path}: no method in ({', '.join(method_spaces)}) can train any family in ({', '.join(family_spaces)})"
        )
    result.families = usable
    return result


def _load_family(path: Path, name: str, family: ModelFamily, body: Mapping[str, Any]) -> FamilySpace:
    known = (*ARCH_KEYS, *family.hyperparameters)
    for key in body:
        if key not in known:
            raise SpaceError(f"{path}: families.{name}.{key}: unknown key (known: {', '.join(known)})")
    required = ARCH_KEYS if family.uses_hidden_channels else ARCH_KEYS[:1]
    for key in required:
        if key not in body:
            raise SpaceError(f"{path}: families.{name}: missing {key!r}")
    layers = _positive_ints(body["num_layers"], f"{path}: families.{name}.num_layers")
    if family.uses_hidden_channels:
        hidden = _positive_ints(body["hidden_channels"], f"{path}: families.{name}.hidden_channels")
    else:  # SGC: no hidden width
        hidden = (0,)
    params: dict[str, tuple[Any, ...]] = {}
    for key, declared in family.hyperparameters.items():
        where = f"{path}: families.{name}.{key}"
        param = param_from_yaml(body[key], where) if key in body else declared
        if isinstance(param, Fixed):
            params[key] = (param.value,)
        elif isinstance(param, Choice):
            params[key] = tuple(param.choices)
        else:
            raise SpaceError(f"{where}: an architecture parameter must be a list of choices or one value")
    return FamilySpace(layers, hidden, params)


def _load_method(path: Path, name: str, method: DistillationMethod, body: Mapping[str, Any]) -> dict[str, Param]:
    declared = method_hyperparameters(method)
    params = dict(declared)
    for key, value in body.items():
        where = f"{path}: methods.{name}.{key}"
        if key not in declared:
            known = ", ".join(declared) or "none"
            raise SpaceError(f"{where}: unknown hyperparameter (known: {known})")
        param = param_from_yaml(value, where)
        check_param_type(param, declared[key], where)
        params[key] = param
    return params


def _check_structural_loss_options(path: Path, name: str, method: DistillationMethod, params: Mapping[str, Param],
                                   known: Sequence[str]) -> None:
    for option in method.structural_loss_options:
        param = params.get(option)
        values = param.choices if isinstance(param, Choice) else (param.value,) if isinstance(param, Fixed) else ()
        for value in values:
            if value not in known:
                raise SpaceError(f"{path}: methods.{name}.{option}: {value!r} is not a registered structural loss "
                                 f"(known: {', '.join(sorted(known))}; a plugin's loss must be installed)")


# ------------------------------------------------------------------------------------ sampling


def _conditional_name(base: str, dim: str, index: int, archs: Sequence[Architecture], prefix: tuple) -> str:
    """``family.dim`` when the choices of ``dim`` do not depend on the earlier dims, else a name
    that includes them (Optuna needs fixed choices per parameter name)."""
    groups: dict[tuple, set] = {}
    for a in archs:
        dims = a.dims()
        groups.setdefault(dims[:index], set()).add(dims[index][1] if index < len(dims) else None)
    if len({frozenset(v) for v in groups.values()}) <= 1:
        return f"{base}.{dim}"
    label = ",".join(f"{k}={v}" for k, v in prefix)
    return f"{base}.{dim}[{label}]"


def suggest_spec(
    trial: Suggester,
    space: SearchSpace,
    feasible: Sequence[Architecture],
    families: Mapping[str, ModelFamily],
    methods: Mapping[str, DistillationMethod],
    seed: int,
) -> TrialSpec:
    """Sample one :class:`TrialSpec` define-by-run, only among ``feasible`` architectures."""
    by_family: dict[str, list[Architecture]] = {}
    for arch in feasible:
        if arch.family in space.families:
            by_family.setdefault(arch.family, []).append(arch)
    family_name = Choice(tuple(sorted(by_family))).suggest(trial, "family")
    family_archs = by_family[family_name]
    pool = family_archs
    prefix: tuple = ()
    dim_names = [name for name, _ in family_archs[0].dims()]
    for index, dim in enumerate(dim_names):
        choices = tuple(sorted({a.dims()[index][1] for a in pool}, key=repr))
        name = _conditional_name(family_name, dim, index, family_archs, prefix)
        value = Choice(choices).suggest(trial, name)
        prefix = (*prefix, (dim, value))
        pool = [a for a in pool if a.dims()[index][1] == value]
    arch = pool[0]

    family = families[family_name]
    kind = "graph" if family.uses_graph else "graph_free"
    compatible = space.methods_for(family, methods)
    all_kinds_same = all(
        space.methods_for(families[f], methods) == compatible for f in space.families
    )
    method_name = Choice(tuple(compatible)).suggest(trial, "method" if all_kinds_same else f"method[{kind}]")
    method_params = {k: p.suggest(trial, f"{method_name}.{k}") for k, p in space.methods[method_name].items()}
    training = {k: p.suggest(trial, k) for k, p in space.training.items()}
    return TrialSpec(
        family=family_name,
        num_layers=arch.num_layers,
        hidden_channels=arch.hidden_channels,
        family_params=dict(arch.family_params),
        method=method_name,
        method_params=method_params,
        training=training,
        seed=seed,
    )


