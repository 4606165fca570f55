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
* ``degenerate``: after the warm-up the best validation score so far is still at or below
  the metric's chance level plus ``margin``. The warm-up is a budget of optimiser movement, not of
  epochs: Adam moves each weight by about the learning rate per step, so ``warmup`` epochs at
  ``reference_lr`` (30 at 0.01) become ``ceil(warmup * reference_lr / lr)`` epochs at a smaller
  learning rate (at least ``warmup``), capped at half the trial's epoch limit so a hopeless
  trial never costs more than half its budget (:func:`warmup_epochs`). A fixed 30 epochs
  stopped slow starters that train well: on PubMed a 3-layer GCN with FitNets' hints
  (``beta`` 80, lr 0.0036) sits at the majority class for 75 epochs and then reaches validation
  0.82, the teacher's score (``docs/benchmarks.md``, robustness). The chance level is the best score a constant
  prediction reaches on the validation nodes (:func:`chance_level`): for accuracy the
  majority-class rate of the validation nodes, for macro-F1 the F1 of always answering the
  majority class divided by ``C``, for ROC-AUC 0.5. It is computed with the trial's own metric,
  so it extends to any metric ``metric(logits, y, mask) -> float``. The default margin is two
  binomial standard errors of the chance rate over the ``n`` validation nodes,
  ``2 sqrt(c (1 - c) / n)`` (Photo: 0.043, Cora: 0.042): a score within it is not distinguishable
  from answering one class for every node (an ABKD student on Photo sat at 0.133 against 0.125).

While a trial's best score is still at that floor, early stopping's patience does not run out
(:meth:`TrainingGuard.at_chance`; both loops ask it): a model that has not left the chance level
is not overfitting, and whether it is hopeless is the warm-up's call, not the patience's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor

from ..errors import TrialFailed
from ..metrics import validation_score

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
    #: the learning rate at which ``warmup`` is counted (:func:`warmup_epochs`)
    reference_lr: float = 0.01
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


def warmup_epochs(settings: GuardSettings, lr: Optional[float] = None, epochs: Optional[int] = None) -> int:
    """The epochs before the degenerate check: ``settings.warmup`` at ``settings.reference_lr``,
    scaled by ``reference_lr / lr`` when ``lr`` is smaller (never fewer than ``warmup``), and at
    most half of ``epochs`` (never fewer than ``warmup``)::

        warmup_epochs(GuardSettings(), lr=0.01) == 30
        warmup_epochs(GuardSettings(), lr=0.0036, epochs=200) == 84
        warmup_epochs(GuardSettings(), lr=0.001, epochs=200) == 100
    """
    warmup = int(settings.warmup)
    if lr is not None and 0.0 < lr < settings.reference_lr:
        warmup = max(warmup, math.ceil(settings.warmup * settings.reference_lr / lr - 1e-9))
    if epochs is not None:
        warmup = min(warmup, max(int(settings.warmup), int(epochs) // 2))
    return warmup


class TrainingGuard:
    """Raises :class:`TrialStopped` when a trial diverges or stays degenerate (module docstring).

    Args:
        num_classes: ``C``; the loss scale is ``ln C`` (at least ``ln 2``).
        chance: the validation chance level (:func:`chance_level`); ``None`` turns the
            degenerate check off.
        num_val: validation nodes, for the default margin (``None``: margin 0 unless set).
        lr, epochs: the trial's learning rate and epoch limit, for the warm-up
            (:func:`warmup_epochs`; ``None``: ``settings.warmup`` epochs).
    """

    def __init__(self, num_classes: int, chance: Optional[float], settings: GuardSettings = GuardSettings(),
                 num_val: Optional[int] = None, lr: Optional[float] = None, epochs: Optional[int] = None) -> None:
        self.settings, self.chance = settings, chance
        self.warmup = warmup_epochs(settings, lr, epochs)
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

    def at_chance(self, best_score: float) -> bool:
        """Whether the best validation score so far is still at or below the chance level plus
        the margin (False without a chance level). The loops keep training such a trial past its
        patience: the warm-up decides (module docstring)."""
        return self.chance is not None and not best_score > self.chance + self.margin

    def check_score(self, epoch: int, best_score: float) -> None:
        """After each validation: stop when, after the warm-up, the best validation score so far
        is still at or below the chance level plus the margin."""
        if epoch >= self.warmup and self.at_chance(best_score):
            raise TrialStopped(DEGENERATE, f"best validation score {best_score:.4f} after {epoch} epochs is not above "
                                           f"the chance level {self.chance:.4f} + margin {self.margin:.4f}",
                               epoch)


class NoGuard(TrainingGuard):
    """Only stops a non-finite loss (what every loop did before the guard)."""

    def __init__(self) -> None:
        super().__init__(2, None, GuardSettings(max_loss_ratio=math.inf, max_growth=math.inf))


def make_guard(metric: Callable[[Tensor, Tensor, Tensor], float], data, num_classes: int,
               settings: GuardSettings = GuardSettings(), lr: Optional[float] = None,
               epochs: Optional[int] = None) -> TrainingGuard:
    """The guard of a trial on ``data`` (its ``y`` and ``val_mask``) scored by ``metric``, trained
    at learning rate ``lr`` for at most ``epochs`` (the warm-up: :func:`warmup_epochs`)."""
    return TrainingGuard(num_classes, chance_level(validation_score(metric), data.y, data.val_mask, num_classes), settings,
                         num_val=int(data.val_mask.sum()), lr=lr, epochs=epochs)
