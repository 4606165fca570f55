"""The score a search optimises (``--metric``) and its standard error.

``accuracy``
    Fraction of nodes whose arg-max prediction is the label (a dataset's official evaluator, OGB's
    ``Evaluator``, when it has one).
``macro-f1``
    The unweighted mean over classes of the per-class F1 score (scikit-learn's
    ``f1_score(average="macro")`` over the classes present in the labels or the predictions).
``roc-auc``
    Binary tasks: the area under the ROC curve of the positive class's probability. More
    classes: the one-vs-rest macro average, the mean over classes of each class's ROC-AUC
    against the rest (classes with no positive or no negative node among the evaluated nodes
    are left out, as a curve needs both).

The standard error of a validation score drives the one-standard-error selection rule
(:mod:`gkd_search.pareto`): for accuracy, the binomial ``sqrt(p (1 - p) / n)`` over the ``n``
validation nodes; for the other metrics, the standard deviation of the score over a seeded
bootstrap of the validation nodes (Efron & Tibshirani 1993, ch. 6).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from .class_prior import prior_weighted_accuracy
from .errors import UsageError

METRIC_NAMES = ("accuracy", "macro-f1", "roc-auc")
#: bootstrap resamples for the standard error of macro-F1 and ROC-AUC
BOOTSTRAP_RESAMPLES = 200

#: ``score(logits, y, mask) -> float``
ScoreFunction = Callable[[Tensor, Tensor, Tensor], float]


def accuracy(logits: Tensor, y: Tensor, mask: Tensor) -> float:
    """Fraction of ``mask`` nodes whose arg-max prediction equals the label (NaN for no node)."""
    if int(mask.sum()) == 0:
        return float("nan")
    return float((logits[mask].argmax(dim=-1) == y[mask]).float().mean())


def _macro_f1(labels: np.ndarray, probs: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(labels, probs.argmax(axis=1), average="macro", zero_division=0))


def _roc_auc(labels: np.ndarray, probs: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if probs.shape[1] == 2:
        return float(roc_auc_score(labels, probs[:, 1])) if len(np.unique(labels)) == 2 else float("nan")
    scores = [roc_auc_score(labels == c, probs[:, c]) for c in range(probs.shape[1])
              if 0 < int((labels == c).sum()) < len(labels)]
    return float(np.mean(scores)) if scores else float("nan")


def _on_numpy(function: Callable[[np.ndarray, np.ndarray], float]) -> ScoreFunction:
    def score(logits: Tensor, y: Tensor, mask: Tensor) -> float:
        if int(mask.sum()) == 0:
            return float("nan")
        probs = torch.softmax(logits[mask].detach().float(), dim=-1).cpu().numpy()
        return function(y[mask].cpu().numpy(), probs)

    score.__name__ = function.__name__.lstrip("_")
    return score


macro_f1 = _on_numpy(_macro_f1)
roc_auc = _on_numpy(_roc_auc)


@dataclass(frozen=True)
class ScoreMetric:
    """A named score, higher is better.

    Attributes:
        name: ``accuracy``, ``macro-f1`` or ``roc-auc`` (logged as the ``metric`` param).
        score: ``score(logits, y, mask) -> float``.
        class_prior: accuracy only: the estimated class shares of the nodes the model is meant for
            (``--label-shift adapt``, :mod:`gkd_search.class_prior`). The *validation* score is
            then each class's validation recall weighted by its share (:meth:`validation`): on a
            split with the same number of validation nodes per class, plain validation accuracy
            measures balanced accuracy instead. Test scores stay plain.
    """

    name: str
    score: ScoreFunction
    class_prior: Optional[tuple[float, ...]] = None

    def __call__(self, logits: Tensor, y: Tensor, mask: Tensor) -> float:
        return self.score(logits, y, mask)

    def validation(self, logits: Tensor, y: Tensor, mask: Tensor) -> float:
        """The score on the validation nodes ``mask``: :attr:`score`, or with :attr:`class_prior`
        the class-weighted accuracy (:func:`~gkd_search.class_prior.prior_weighted_accuracy`)."""
        if self.class_prior is None:
            return self.score(logits, y, mask)
        return prior_weighted_accuracy(logits, y, mask, self._prior())

    def weighted_to(self, class_prior: Sequence[float]) -> ScoreMetric:
        """This accuracy, its validation score weighted to ``class_prior`` (``[C]`` shares)."""
        if self.name != "accuracy":
            raise ValueError(f"only accuracy is weighted by class, not {self.name}")
        return replace(self, class_prior=tuple(float(v) for v in class_prior))

    def _prior(self) -> Tensor:
        return torch.tensor(self.class_prior, dtype=torch.float64)

    def chance_level(self, y: Tensor, mask: Tensor) -> float:
        """The score of always predicting the most frequent class of the ``mask`` nodes, the
        floor below which a trained model has learnt nothing: its share for accuracy,
        ``2p / (1 + p)`` divided by the number of classes present for macro-F1, 0.5 for ROC-AUC."""
        labels = y[mask]
        labels = labels[labels >= 0]
        if labels.numel() == 0:
            return float("nan")
        counts = torch.bincount(labels)
        if self.class_prior is not None:  # a constant's weighted recall is its class's (renormalised) share
            prior = self._prior()[:counts.numel()] * (counts > 0).double()
            return float(prior.max() / prior.sum())
        share = float(counts.max()) / labels.numel()
        if self.name == "roc-auc":
            return 0.5
        if self.name == "macro-f1":
            return 2 * share / (1 + share) / int((counts > 0).sum())
        return share

    def standard_error(self, logits: Tensor, y: Tensor, mask: Tensor, *, seed: int = 0,
                       resamples: int = BOOTSTRAP_RESAMPLES) -> float:
        """The standard error of ``score`` on the ``mask`` nodes: binomial for accuracy, a
        seeded bootstrap over the nodes for the other metrics (NaN for fewer than 2 nodes)."""
        n = int(mask.sum())
        if n < 2:
            return float("nan")
        if self.class_prior is not None:  # sum_c w_c * recall_c: independent binomial recalls
            labels = y[mask].cpu()
            hits = (logits[mask].argmax(dim=-1).cpu() == labels)
            counts = torch.bincount(labels[labels >= 0], minlength=len(self.class_prior)).double()
            recall = torch.bincount(labels[hits & (labels >= 0)], minlength=counts.numel()).double()
            present = counts > 0
            weights = self._prior()[present] / self._prior()[present].sum()
            recall = recall[present] / counts[present]
            return math.sqrt(float((weights ** 2 * recall * (1 - recall) / counts[present]).sum()))
        if self.name == "accuracy":
            p = self.score(logits, y, mask)
            return math.sqrt(max(p * (1.0 - p), 0.0) / n)
        rows = torch.nonzero(mask, as_tuple=False).view(-1)
        generator = torch.Generator().manual_seed(seed)
        values = []
        for _ in range(resamples):
            sample = rows[torch.randint(0, n, (n,), generator=generator)]
            value = self.score(logits[sample], y[sample], torch.ones(n, dtype=torch.bool))
            if not math.isnan(value):
                values.append(value)
        return float(np.std(values, ddof=1)) if len(values) >= 2 else float("nan")


def validation_score(metric: ScoreFunction) -> ScoreFunction:
    """How ``metric`` scores validation nodes: :meth:`ScoreMetric.validation`, or a plain score function."""
    return getattr(metric, "validation", metric)


def resolve_metric(name: Optional[str], evaluator: Optional[ScoreFunction] = None) -> ScoreMetric:
    """``--metric NAME``; ``None``: the dataset's own (its ``evaluator``, which for every dataset
    we ship computes accuracy, as OGB's node-property evaluators do), else ``accuracy``.

    Raises:
        UsageError: an unknown name, listing the known ones.
    """
    if name is None:
        return ScoreMetric("accuracy", evaluator or accuracy)
    key = name.strip().lower().replace("_", "-")
    if key == "accuracy":
        return ScoreMetric("accuracy", accuracy)
    if key == "macro-f1":
        return ScoreMetric("macro-f1", macro_f1)
    if key == "roc-auc":
        return ScoreMetric("roc-auc", roc_auc)
    raise UsageError(f"--metric {name!r} is unknown; use one of {', '.join(METRIC_NAMES)}")
