"""The Pareto front and the selection rules (pure functions).

Objectives: the validation score (``--metric``, up), p50 latency (down), parameters (down). Test
scores are never used to choose.

Selection (``--select``) among finished trials within the latency budget:

``best``
    The highest validation score; ties to lower p50, then fewer parameters, then the earlier
    trial.
``one-se`` (default)
    The one-standard-error rule of model selection (Breiman, Friedman, Olshen & Stone,
    *Classification and Regression Trees*, 1984, Sec. 3.4.3; glmnet's ``lambda.1se``): take the
    best-scoring trial and its standard error ``se`` on the validation nodes
    (:meth:`~gkd_search.metrics.ScoreMetric.standard_error`: binomial for accuracy, a bootstrap
    for the other metrics); among the trials scoring at least ``best - se``, which the
    validation set cannot tell apart from the best, take the one with the fewest parameters;
    ties to lower p50, then the higher validation score, then the earlier trial.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

from .errors import UsageError
from .types import TrialResult

SELECTION_RULES = ("one-se", "best")


def validation_score(r: TrialResult) -> Optional[float]:
    """The score the search ranks by: ``val_score``, else (results of older versions) ``val_acc``."""
    return r.val_score if r.val_score is not None else r.val_acc


def _objectives(r: TrialResult) -> tuple[float, float, float]:
    """As minimisation: (-validation score, latency, params)."""
    return (-float(validation_score(r)), float(r.latency_ms_p50), float(r.params))


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` is no worse than ``b`` in every (minimised) objective and better in one."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def pareto_front(results: Sequence[TrialResult]) -> list[TrialResult]:
    """The non-dominated finished (``ok``) trials, in input order."""
    finished = [r for r in results if r.status == "ok" and validation_score(r) is not None
                and not math.isnan(validation_score(r))]
    points = [_objectives(r) for r in finished]
    return [r for r, p in zip(finished, points) if not any(dominates(q, p) for q in points if q is not p)]


@dataclass
class Selection:
    """What a selection rule chose.

    Attributes:
        selected: the chosen trial (``None``: no finished trial within the budget).
        best: the best-scoring trial within the budget.
        rule: ``one-se`` or ``best``.
        tolerance: how far below the best's score a trial could be and still be chosen (the
            best's standard error for ``one-se``; 0 for ``best``).
    """

    selected: Optional[TrialResult]
    best: Optional[TrialResult]
    rule: str
    tolerance: float = 0.0


def select(results: Sequence[TrialResult], budget_ms: float, rule: str = "one-se") -> Selection:
    """Apply selection ``rule`` to the finished trials with p50 <= ``budget_ms``."""
    if rule not in SELECTION_RULES:
        raise UsageError(f"--select {rule!r} is unknown; use one of {', '.join(SELECTION_RULES)}")
    feasible = [
        (i, r) for i, r in enumerate(results)
        if r.status == "ok" and validation_score(r) is not None and not math.isnan(validation_score(r))
        and r.latency_ms_p50 is not None and r.latency_ms_p50 <= budget_ms
    ]
    if not feasible:
        return Selection(None, None, rule)
    best = min(feasible, key=lambda ir: (-validation_score(ir[1]), ir[1].latency_ms_p50, ir[1].params or 0, ir[0]))[1]
    if rule == "best":
        return Selection(best, best, rule, 0.0)
    se = best.val_score_se
    tolerance = 0.0 if se is None or math.isnan(se) else float(se)
    floor = validation_score(best) - tolerance
    close = [(i, r) for i, r in feasible if validation_score(r) >= floor - 1e-12]
    chosen = min(close, key=lambda ir: (ir[1].params or 0, ir[1].latency_ms_p50, -validation_score(ir[1]), ir[0]))[1]
    return Selection(chosen, best, rule, tolerance)


#: how far below the best ``none`` trial of the same architecture a trial may score before it
#: counts as collapsed (20 points, the criterion of ``bench/robustness.py``)
BELOW_BASELINE = 0.20


def degenerate_reason(result: TrialResult, results: Sequence[TrialResult], chance: float) -> Optional[str]:
    """Why a finished trial counts as collapsed, or ``None``: its validation score is below
    ``chance`` (the score of always predicting the majority class), or more than
    :data:`BELOW_BASELINE` below the best ``none`` trial (no distillation) of the same
    architecture among ``results``."""
    score = validation_score(result)
    if result.status != "ok" or score is None or math.isnan(score):
        return None
    if not math.isnan(chance) and score < chance:
        return f"val {score:.3f} below the chance level {chance:.3f} (always the majority class)"
    if result.spec.method == "none":
        return None
    key = result.spec.architecture_key()
    baselines = [validation_score(r) for r in results if r.status == "ok" and r.spec.method == "none"
                 and r.spec.architecture_key() == key and validation_score(r) is not None]
    if baselines and score < max(baselines) - BELOW_BASELINE:
        return f"val {score:.3f}, {max(baselines) - score:.3f} below {key} without distillation ({max(baselines):.3f})"
    return None


def select_student(results: Sequence[TrialResult], budget_ms: float, rule: str = "one-se") -> Optional[TrialResult]:
    """The trial :func:`select` chooses with ``rule``; ``None`` when no trial qualifies."""
    return select(results, budget_ms, rule).selected
