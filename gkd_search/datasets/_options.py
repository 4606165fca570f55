"""Parsing the values of ``--dataset NAME:key=value`` options."""

from __future__ import annotations

from typing import Any

from ..errors import UsageError

TRUE, FALSE = ("true", "1", "yes"), ("false", "0", "no")


def parse_flag(dataset: str, key: str, value: Any) -> bool:
    """``true``/``1``/``yes`` or ``false``/``0``/``no`` (any case), or a bool, as a bool."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE or text in FALSE:
        return text in TRUE
    raise UsageError(f"{dataset}: {key}={value!r} is not true or false")
