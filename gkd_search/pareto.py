"""The Pareto front and the selection rule (pure functions).

Objectives: validation accuracy (up), p50 latency (down), parameters (down). Test accuracy is
never used to choose.
"""

from __future__ import annotations

from typing import Optional, Sequence

from .types import TrialResult


def _objectives(r: TrialResult) -> tuple[float, float, float]:
    """As minimisation: (-val_acc, latency, params)."""
    return (-float(r.val_acc), float(r.latency_ms_p50), float(r.params))


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` is no worse than ``b`` in every (minimised) objective and better in one."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def pareto_front(results: Sequence[TrialResult]) -> list[TrialResult]:
    """The non-dominated finished (``ok``) trials, in input order."""
    finished = [r for r in results if r.status == "ok" and r.val_acc is not None]
    points = [_objectives(r) for r in finished]
    return [r for r, p in zip(finished, points) if not any(dominates(q, p) for q in points if q is not p)]


def select_student(results: Sequence[TrialResult], budget_ms: float) -> Optional[TrialResult]:
    """Best validation accuracy among finished trials with p50 <= budget; ties to lower latency,
    then fewer parameters, then the earlier trial. ``None`` when no trial qualifies."""
    feasible = [
        (i, r) for i, r in enumerate(results)
        if r.status == "ok" and r.val_acc is not None and r.latency_ms_p50 is not None and r.latency_ms_p50 <= budget_ms
    ]
    if not feasible:
        return None
    return min(feasible, key=lambda ir: (-ir[1].val_acc, ir[1].latency_ms_p50, ir[1].params or 0, ir[0]))[1]
