"""Stopping hopeless trials early: asynchronous successive halving within latency brackets.

``--pruner asha`` (the default) runs Ray Tune's ``ASHAScheduler`` (Li et al., "A System for
Massively Parallel Hyperparameter Tuning", MLSys 2020; the asynchronous form of successive
halving, Jamieson & Talwalkar 2016). A trial reports its best validation score so far
(``--metric``) at the *rungs*, epochs ``grace_period * reduction_factor^k`` below the epoch limit
(10, 30, 90 for 200 epochs); at a rung the scheduler stops a trial whose score is below the top
``1 / reduction_factor`` of the scores that earlier trials reported at that rung. The first
trial at a rung always continues, so the first trials of a search are never stopped.

Trials are compared only within their **latency bracket** (:func:`latency_bracket`): the
architecture's p50 relative to the budget, in powers of :data:`BRACKET_BASE` (``(B/4, B]``,
``(B/16, B/4]``, ...). A small, fast student (an MLP at 0.05 ms) learns on another curve than a
GCN at 5 ms and is worth keeping for its speed at a lower score: it competes with students of its
own speed. Each bracket has its own ASHA (:class:`LatencyBracketASHA`).

A stopped trial is recorded as ``pruned`` (MLflow tag ``gkd.status=pruned``, ``epochs_run`` and
``last_val_score``), is never selected and is told to the sampler as ``TrialState.PRUNED`` (an
Optuna multi-objective study takes no intermediate values, so ``Trial.report``/``should_prune``
are not used: the scheduler decides and the sampler hears the outcome).

Ray's function trainables report with ``tune.report``: synchronously (the trial waits until the
driver has processed the result), so reports are made only at the rungs, where the scheduler
acts, not every epoch. When the scheduler stops a trial, ``tune.report`` ends the trial's thread;
the driver rebuilds the pruned trial from its last report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .errors import UsageError

PRUNERS = ("asha", "none")
#: the single metric the scheduler reads (the searcher is multi-objective)
PRUNE_METRIC = "gkd_prune_score"
#: the scheduler's clock: training epochs
TIME_ATTR = "epoch"
#: brackets are powers of this factor of p50 relative to the budget
BRACKET_BASE = 4.0
#: epochs before the first rung (``--asha-grace-epochs``)
GRACE_EPOCHS = 10


def max_epochs(param: Any) -> int:
    """The most epochs a trial of the space trains (the space's ``training.epochs``: fixed, a
    range or a choice)."""
    if hasattr(param, "high"):
        return int(param.high)
    if hasattr(param, "choices"):
        return int(max(param.choices))
    return int(param.default)


def check_pruner(name: str) -> str:
    if name not in PRUNERS:
        raise UsageError(f"--pruner {name!r} is unknown; use one of {', '.join(PRUNERS)}")
    return name


def check_grace_epochs(epochs: int) -> int:
    """``--asha-grace-epochs``: a whole number of epochs, at least 1."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise UsageError(f"--asha-grace-epochs {epochs!r} is not a number of epochs; give a whole number of at "
                         f"least 1 (default {GRACE_EPOCHS})")
    return epochs


def latency_bracket(p50_ms: float, budget_ms: float, base: float = BRACKET_BASE) -> int:
    """0 for p50 in ``(budget / base, budget]``, 1 for ``(budget / base^2, budget / base]``, ...;
    an over-budget p50 (never sampled) is bracket 0 too."""
    if not p50_ms > 0 or not budget_ms > 0:
        return 0
    return max(0, int(math.floor(math.log(budget_ms / p50_ms, base) + 1e-9)))


@dataclass(frozen=True)
class AshaSettings:
    """ASHA's settings: ``grace_period`` epochs before the first rung, ``reduction_factor``
    (``1 / reduction_factor`` of the trials at a rung go on)."""

    grace_period: int = GRACE_EPOCHS
    reduction_factor: int = 3

    def rungs(self, max_epochs: int) -> list[int]:
        """The epochs at which a trial of at most ``max_epochs`` epochs reports (as Ray's
        ``ASHAScheduler`` places its rungs, all below ``max_epochs``)."""
        if max_epochs <= self.grace_period:
            return []
        count = int(math.log(max_epochs / self.grace_period) / math.log(self.reduction_factor) + 1)
        return [e for e in (self.grace_period * self.reduction_factor ** k for k in range(count)) if e < max_epochs]


class RungReporter:
    """A trial's :data:`~gkd_search.trial.EpochReport` for the Ray trainable: at each rung it
    calls ``report(metrics)`` (``tune.report``) with the scores so far and goes on; the
    scheduler stops the trial by ending its thread inside ``report``."""

    def __init__(self, rungs: list[int], report: Callable[[dict[str, Any]], None],
                 static: Callable[[], Mapping[str, Any]]) -> None:
        self.rungs = set(rungs)
        self.report = report
        self.static = static
        self.last_epoch = 0
        self.last_score = math.nan

    def __call__(self, epoch: int, val_score: float) -> bool:
        self.last_epoch, self.last_score = epoch, val_score
        if epoch in self.rungs:
            score = float(val_score) if val_score is not None and math.isfinite(val_score) else math.nan
            self.report({**self.static(), "gkd_status": "running", TIME_ATTR: epoch, "val_score": score,
                         PRUNE_METRIC: score})
        return True
