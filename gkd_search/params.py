"""Hyperparameter declarations shared by methods, families and search-space files.

A component declares each hyperparameter as a small frozen dataclass; a search-space file may
narrow or replace it with the same vocabulary in YAML:

* a list ``[16, 32, 64]``              -> :class:`Choice`
* a mapping ``{low: 0.1, high: 1.0}``   -> :class:`FloatRange` (``log: true`` optional)
* a mapping with integer bounds and ``type: int`` -> :class:`IntRange`
* a scalar ``0.5``                      -> :class:`Fixed`
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Union

from .errors import SpaceError


class Suggester(Protocol):
    """The part of :class:`optuna.trial.Trial` that gkd-search uses (define-by-run)."""

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...

    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False) -> int: ...

    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


@dataclass(frozen=True)
class FloatRange:
    """A float sampled from ``[low, high]``, uniformly or log-uniformly."""

    low: float
    high: float
    log: bool = False

    def validate(self, where: str) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low > self.high:
            raise SpaceError(f"{where}: range needs finite low <= high, got [{self.low}, {self.high}]")
        if self.log and self.low <= 0:
            raise SpaceError(f"{where}: a log range needs low > 0, got {self.low}")

    def suggest(self, trial: Suggester, name: str) -> float:
        if self.low == self.high:
            return self.low
        return trial.suggest_float(name, self.low, self.high, log=self.log)

    @property
    def default(self) -> float:
        return math.sqrt(self.low * self.high) if self.log else (self.low + self.high) / 2


@dataclass(frozen=True)
class IntRange:
    """An integer sampled from ``[low, high]``."""

    low: int
    high: int
    log: bool = False

    def validate(self, where: str) -> None:
        if self.low > self.high:
            raise SpaceError(f"{where}: range needs low <= high, got [{self.low}, {self.high}]")
        if self.log and self.low <= 0:
            raise SpaceError(f"{where}: a log range needs low > 0, got {self.low}")

    def suggest(self, trial: Suggester, name: str) -> int:
        if self.low == self.high:
            return self.low
        return trial.suggest_int(name, self.low, self.high, log=self.log)

    @property
    def default(self) -> int:
        return (self.low + self.high) // 2


@dataclass(frozen=True)
class Choice:
    """One of a fixed list of values (numbers, strings or booleans).

    ``closed``: a declared hyperparameter accepts no value beyond these (InfGraND's
    ``teacher_nodes``), so a space file may list only them; open (the default) where another value
    can make sense (``hops`` 5, a plugin's structural loss for STRIDE's ``structure``).
    """

    choices: tuple[Any, ...]
    closed: bool = field(default=False, compare=False)

    def validate(self, where: str) -> None:
        if not self.choices:
            raise SpaceError(f"{where}: a choice list must not be empty")
        for value in self.choices:
            if not isinstance(value, (int, float, str, bool)) and value is not None:
                raise SpaceError(f"{where}: choice {value!r} is not a number, string or boolean")
        if len(set(self.choices)) != len(self.choices):
            raise SpaceError(f"{where}: choice list {list(self.choices)} has repeated values")

    def suggest(self, trial: Suggester, name: str) -> Any:
        if len(self.choices) == 1:
            return self.choices[0]
        return trial.suggest_categorical(name, list(self.choices))

    @property
    def default(self) -> Any:
        return self.choices[0]


@dataclass(frozen=True)
class Fixed:
    """A value that is not searched.

    ``allowed`` lists the values an option accepts (ABKD's ``distance``: euclidean, cosine); a
    space file may then set or list only those. Empty: any value of the default's type.
    """

    value: Any
    allowed: tuple[Any, ...] = ()

    def validate(self, where: str) -> None:
        if not isinstance(self.value, (int, float, str, bool)) and self.value is not None:
            raise SpaceError(f"{where}: fixed value {self.value!r} is not a number, string or boolean")
        if self.allowed and self.value not in self.allowed:
            raise SpaceError(f"{where}: {self.value!r} is not one of {', '.join(map(repr, self.allowed))}")

    def suggest(self, trial: Suggester, name: str) -> Any:
        return self.value

    @property
    def default(self) -> Any:
        return self.value


Param = Union[FloatRange, IntRange, Choice, Fixed]
PARAM_TYPES = (FloatRange, IntRange, Choice, Fixed)


def param_from_yaml(value: Any, where: str) -> Param:
    """Turn one YAML value of a search-space file into a :data:`Param` (see module docstring)."""
    if isinstance(value, list):
        param: Param = Choice(tuple(value))
    elif isinstance(value, Mapping):
        unknown = set(value) - {"low", "high", "log", "type"}
        if unknown:
            raise SpaceError(f"{where}: unknown key {sorted(unknown)[0]!r} in range (known: high, log, low, type)")
        if "low" not in value or "high" not in value:
            raise SpaceError(f"{where}: a range needs both 'low' and 'high'")
        kind = value.get("type", "float")
        low, high, log = value["low"], value["high"], bool(value.get("log", False))
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
            raise SpaceError(f"{where}: 'low' and 'high' must be numbers, got {low!r} and {high!r}")
        if kind == "int":
            if not (float(low).is_integer() and float(high).is_integer()):
                raise SpaceError(f"{where}: an int range needs integer bounds, got [{low}, {high}]")
            param = IntRange(int(low), int(high), log)
        elif kind == "float":
            param = FloatRange(float(low), float(high), log)
        else:
            raise SpaceError(f"{where}: unknown range type {kind!r} (known: float, int)")
    else:
        param = Fixed(value)
    param.validate(where)
    return param


def check_param_type(param: Any, declared: Param, where: str) -> None:
    """Reject a space entry whose kind cannot stand for the declared hyperparameter."""
    if isinstance(declared, (FloatRange, IntRange)) and isinstance(param, Choice):
        bad = [v for v in param.choices if not isinstance(v, (int, float)) or isinstance(v, bool)]
        if bad:
            raise SpaceError(f"{where}: choice {bad[0]!r} is not a number")
    if isinstance(declared, IntRange) and isinstance(param, FloatRange):
        raise SpaceError(f"{where}: this hyperparameter is an integer; add 'type: int' to the range")
    if isinstance(declared, Fixed):
        _check_fixed_option(param, declared, where)
    if isinstance(declared, Choice) and declared.closed:
        values = param.choices if isinstance(param, Choice) else (getattr(param, "value", param),)
        for value in values:
            if value not in declared.choices:
                raise SpaceError(f"{where}: {value!r} is not one of {', '.join(map(repr, declared.choices))}")


def _same_kind(value: Any, default: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float)) and (isinstance(default, float) or float(value).is_integer())
    return isinstance(value, type(default))


def _check_fixed_option(param: Any, declared: Fixed, where: str) -> None:
    """A space may set an option (or list values to search), but only values it accepts."""
    if isinstance(param, (FloatRange, IntRange)):
        if declared.allowed or not isinstance(declared.value, (int, float)) or isinstance(declared.value, bool):
            raise SpaceError(f"{where}: this option takes one value or a list of values, not a range")
        return
    values = param.choices if isinstance(param, Choice) else (param.value,)
    for value in values:
        if declared.allowed and value not in declared.allowed:
            raise SpaceError(f"{where}: {value!r} is not one of {', '.join(map(repr, declared.allowed))}")
        if declared.value is not None and not _same_kind(value, declared.value):
            kind = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(type(declared.value), "a value")
            raise SpaceError(f"{where}: {value!r} is not {kind} (the default is {declared.value!r})")
