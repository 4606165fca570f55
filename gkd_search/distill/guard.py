"""Stop a trial that cannot succeed: a diverging training loss or a degenerate validation score.

Both training loops (:func:`~gkd_search.distill.loop.train_model`,
:func:`~gkd_search.distill.minibatch.train_minibatch`) ask a :class:`TrainingGuard` after every
step (:meth:`~TrainingGuard.check_loss`) and after every validation
(:meth:`~TrainingGuard.check_score`); it raises :class:`TrialStopped`, a
:class:`~gkd_search.errors.TrialFailed` with a ``reason``, which the trial records as
``status="failed"``, ``error=reason`` (MLflow tag ``gkd.error``) and the measured numbers in
``error_detail``. The criteria (documented in ``docs/methods.md``, "When a trial is stopped"):

* ``diverged``: the training loss is not finite; or its magnitude exceeds ``max_loss_ratio``
  times the reference scale ``ln C`` (the cross-entropy of a uniform guess over ``C`` classes,
  where the label term starts), at which point the label term is about one part in
  ``max_loss_ratio`` of the objective; or it grows to ``max_growth`` times its first value (at
  least ``ln C``).
* ``degenerate``: after ``warmup`` epochs the best validation score so far is still at or below
  the metric's chance level plus ``margin``. The chance level is the best score a constant
  prediction reaches on the validation nodes (:func:`chance_level`): for accuracy the
  majority-class rate of the validation nodes, for macro-F1 the F1 of always answering the
  majority class divided by ``C``, for ROC-AUC 0.5. It is computed with the trial's own metric,
  so it extends to any metric ``metric(logits, y, mask) -> float``. The default margin is two
  binomial standard errors of the chance rate over the ``n`` validation nodes,
  ``2 sqrt(c (1 - c) / n)`` (Photo: 0.043, Cora: 0.042): a score within it is not distinguishable
  from answering one class for every node (an ABKD student on Photo sat at 0.133 against 0.125).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor

from ..errors import TrialFailed

DIVERGED, DEGENERATE = "diverged", "degenerate"
REASONS = (DIVERGED, DEGENERATE)


class TrialStopped(TrialFailed):
    """The guard stopped training. ``reason`` is ``diverged`` or ``degenerate``, ``detail`` the
    numbers it saw, ``epoch`` the epoch it stopped at."""

    def __init__(self, reason: str, detail: str, epoch: int) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown reason {reason!r} (known: {', '.join(REASONS)})")
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail, self.epoch = reason, detail, int(epoch)


@dataclass(frozen=True)
class GuardSettings:
    """The thresholds (module docstring). ``warmup`` is in epochs; ``margin`` in score units."""

    warmup: int = 30
    #: ``None``: two binomial standard errors of the chance rate over the validation nodes
    margin: Optional[float] = None
    max_loss_ratio: float = 1e4
    max_growth: float = 1e3


#: constant predictions tried by :func:`chance_level`: the most frequent validation classes
CHANCE_CANDIDATES = 3


def chance_level(metric: Callable[[Tensor, Tensor, Tensor], float], y: Tensor, mask: Tensor,
                 num_classes: int) -> Optional[float]:
    """The best ``metric`` over constant predictions (every node of ``mask`` gets class ``c``),
    for the :data:`CHANCE_CANDIDATES` most frequent classes among the ``mask`` nodes (for
    accuracy and macro-F1 the best constant is the majority class; for ROC-AUC every constant
    scores 0.5), evaluated on the ``mask`` rows only, so it stays cheap on a graph of millions of
    nodes and hundreds of classes. ``None`` when ``mask`` holds no labelled node or the metric is
    undefined."""
    labels = y[mask]
    labels = labels[labels >= 0]
    if num_classes < 1 or labels.numel() == 0:
        return None
    counts = torch.bincount(labels, minlength=num_classes)
    classes = torch.argsort(counts, descending=True)[:CHANCE_CANDIDATES].tolist()
    rows = torch.ones(labels.numel(), dtype=torch.bool, device=y.device)
    scores = []
    for c in classes:
        logits = torch.zeros(labels.numel(), num_classes, device=y.device)
        logits[:, c] = 1.0
        value = float(metric(logits, labels, rows))
        if math.isfinite(value):
            scores.append(value)
    return max(scores) if scores else None


class TrainingGuard:
    """Raises :class:`TrialStopped` when a trial diverges or stays degenerate (module docstring).

    Args:
        num_classes: ``C``; the loss scale is ``ln C`` (at least ``ln 2``).
        chance: the validation chance level (:func:`chance_level`); ``None`` turns the
            degenerate check off.
        num_val: validation nodes, for the default margin (``None``: margin 0 unless set).
    """

    def __init__(self, num_classes: int, chance: Optional[float], settings: GuardSettings = GuardSettings(),
                 num_val: Optional[int] = None) -> None:
        self.settings, self.chance = settings, chance
        self.reference = math.log(max(int(num_classes), 2))
        self.first: Optional[float] = None
        self.margin = settings.margin
        if self.margin is None:
            ok = chance is not None and num_val and 0.0 < chance < 1.0
            self.margin = 2.0 * math.sqrt(chance * (1.0 - chance) / num_val) if ok else 0.0

    def check_loss(self, loss: Tensor, epoch: int) -> None:
        """After each training step's forward: stop on a non-finite or exploding loss."""
        value = float(loss.detach())
        if not math.isfinite(value):
            raise TrialStopped(DIVERGED, f"loss became {value} at epoch {epoch}", epoch)
        s = self.settings
        limit = s.max_loss_ratio * self.reference
        if abs(value) > limit:
            raise TrialStopped(DIVERGED, f"loss {value:.4g} at epoch {epoch} exceeds {s.max_loss_ratio:g} x ln C "
                                         f"= {limit:.4g}", epoch)
        if self.first is None:
            self.first = max(abs(value), self.reference)
        elif abs(value) > s.max_growth * self.first:
            raise TrialStopped(DIVERGED, f"loss {value:.4g} at epoch {epoch} grew past {s.max_growth:g} x its first "
                                         f"value {self.first:.4g}", epoch)

    def check_score(self, epoch: int, best_score: float) -> None:
        """After each validation: stop when, after the warm-up, the best validation score so far
        is still at or below the chance level plus the margin."""
        if self.chance is None or epoch < self.settings.warmup:
            return
        floor = self.chance + self.margin
        if not best_score > floor:
            raise TrialStopped(DEGENERATE, f"best validation score {best_score:.4f} after {epoch} epochs is not above "
                                           f"the chance level {self.chance:.4f} + margin {self.margin:.4f}",
                               epoch)


class NoGuard(TrainingGuard):
    """Only stops a non-finite loss (what every loop did before the guard)."""

    def __init__(self) -> None:
        super().__init__(2, None, GuardSettings(max_loss_ratio=math.inf, max_growth=math.inf))


def make_guard(metric: Callable[[Tensor, Tensor, Tensor], float], data, num_classes: int,
               settings: GuardSettings = GuardSettings()) -> TrainingGuard:
    """The guard of a trial on ``data`` (its ``y`` and ``val_mask``) scored by ``metric``."""
    return TrainingGuard(num_classes, chance_level(metric, data.y, data.val_mask, num_classes), settings,
                         num_val=int(data.val_mask.sum()))
