"""Validation accuracy on the class mix the model will meet, not the one the split chose.

A per-class split (20 training and 30 validation nodes per class: Shchur et al.'s protocol for
Amazon and Coauthor graphs, the default for a graph without masks) makes the validation nodes
class-balanced while the remaining nodes keep the graph's own, often skewed, class mix (Photo:
3.9% to 26.1% per class). Plain validation accuracy then estimates *balanced* accuracy, and
ranks a model that is good on the rare classes above one that is good on the common ones,
although the second is more accurate on the graph. Measured on Photo (six ``--teacher auto``
candidates, three seeds, ``docs/benchmarks.md``), the validation ranking followed balanced test
accuracy and chose a teacher 1.4 points below the best available in test accuracy.

The fix is importance weighting by class: accuracy is ``sum_c pi_c * recall_c``, so the
validation recall of each class is weighted by the class's share ``pi_c`` among the nodes the
model is meant for. That share is not known (the unlabelled nodes' labels are not used), so it is
estimated from the models' predicted probabilities on the unlabelled nodes with the EM procedure
of Saerens, Latinne & Decaestecker, "Adjusting the outputs of a classifier to new a priori
probabilities: a simple procedure", Neural Computation 14(1), 2002, eqs. 2.9-2.10:

    p^(s)(w_i | x_k) = [p^(s)(w_i) / p_t(w_i)] p_t(w_i | x_k) / sum_j [p^(s)(w_j) / p_t(w_j)] p_t(w_j | x_k)
    p^(s+1)(w_i)     = (1 / N) sum_k p^(s)(w_i | x_k)

where ``p_t(w_i)`` is the class share of the training labels (under which the probabilities
``p_t(w_i | x_k)`` were learnt) and the iteration starts from ``p^(0) = p_t``. On Photo the
estimate is within 0.04-0.06 (L1 over eight classes) of the true share of the unlabelled nodes.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: EM stops when no class share moves by more than this, or after MAX_ITERATIONS steps
TOLERANCE = 1e-6
MAX_ITERATIONS = 1000


def label_shares(y: Tensor, mask: Tensor, num_classes: int) -> Tensor:
    """The share of each class among the labelled (``y >= 0``) ``mask`` nodes, ``[num_classes]``."""
    labels = y[mask].cpu()
    labels = labels[labels >= 0]
    counts = torch.bincount(labels, minlength=num_classes)[:num_classes].double()
    return counts / counts.sum().clamp_min(1.0)


def estimate_class_prior(probs: Tensor, train_prior: Tensor, *, tolerance: float = TOLERANCE,
                         max_iterations: int = MAX_ITERATIONS) -> Tensor:
    """The class shares of the nodes ``probs`` were predicted for (Saerens et al. 2002, eqs.
    2.9-2.10; module docstring).

    Args:
        probs: ``[N, C]`` predicted class probabilities ``p_t(w | x_k)`` of the unlabelled nodes.
        train_prior: ``[C]`` class shares of the labels the model was trained on, ``p_t(w)``.
            A class absent from training keeps share 0.

    Returns:
        ``[C]`` (float64) class shares summing to 1.
    """
    probs = probs.detach().double()
    train_prior = train_prior.detach().double().to(probs.device)
    seen = train_prior > 0
    prior = train_prior.clone()
    for _ in range(max_iterations):
        ratio = torch.where(seen, prior / train_prior.clamp_min(1e-300), torch.zeros_like(prior))
        adjusted = probs * ratio
        adjusted = adjusted / adjusted.sum(dim=1, keepdim=True).clamp_min(1e-300)
        updated = adjusted.mean(dim=0)
        done = float((updated - prior).abs().max()) < tolerance
        prior = updated
        if done:
            break
    return prior / prior.sum()


def prior_weighted_accuracy(logits: Tensor, y: Tensor, mask: Tensor, prior: Tensor) -> float:
    """``sum_c prior_c * recall_c`` over the ``mask`` nodes (NaN for no labelled node).

    The classes without a labelled ``mask`` node have no recall; the prior is renormalised over
    the others. With ``prior`` equal to the ``mask`` nodes' own class shares this is their
    accuracy.
    """
    labels = y[mask].cpu()
    predictions = logits[mask].argmax(dim=-1).cpu()
    keep = labels >= 0
    labels, predictions = labels[keep], predictions[keep]
    if labels.numel() == 0:
        return float("nan")
    num_classes = int(prior.numel())
    counts = torch.bincount(labels, minlength=num_classes)[:num_classes].double()
    hits = torch.bincount(labels[predictions == labels], minlength=num_classes)[:num_classes].double()
    present = counts > 0
    weights = prior.detach().double().cpu()[present]
    if float(weights.sum()) <= 0:
        return float("nan")
    recall = hits[present] / counts[present]
    return float((weights * recall).sum() / weights.sum())
