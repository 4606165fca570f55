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

The same estimate also corrects the model (:class:`LabelShift`, :func:`fit_label_shift`): a model
trained on class-balanced labels under-predicts the graph's common classes. Following Alexandari,
Kundaje & Shrikumar, "Maximum Likelihood with Bias-Corrected Calibration is Hard-To-Beat at Label
Shift Adaptation" (ICML 2020), its logits are first calibrated on the validation nodes by
bias-corrected temperature scaling (BCTS: ``softmax(z / T + b)``, ``T`` and the per-class ``b``
fitted by the validation nodes' negative log-likelihood), the EM above then runs on the calibrated
probabilities of the unlabelled nodes with the validation nodes' class shares as ``p_t``, and the
calibrated posteriors are moved to the estimated shares by the same rule as eq. 2.9 at the
converged prior: ``z' = z / T + b + log p^(s)(w) - log p_t(w)``. No label of an unlabelled node
is used. Measured on the six ``--teacher auto`` candidates (three seeds each): Photo test accuracy
+0.2 to +4.0 points in 18 of 18, Cora -0.6 to +3.5 (15 of 18 up); ``docs/benchmarks.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import Tensor

#: EM stops when no class share moves by more than this, or after MAX_ITERATIONS steps
TOLERANCE = 1e-6
MAX_ITERATIONS = 1000
#: at most this many unlabelled nodes (a seeded sample) estimate the class shares: as good an
#: estimate at a fraction of the memory on a graph of millions of nodes
MAX_PRIOR_NODES = 100_000
#: the fitted temperature is kept within [1 / MAX_SCALE, MAX_SCALE]: validation nodes that one
#: class boundary separates perfectly would otherwise send it to zero
MAX_SCALE = 100.0


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


def unlabelled_nodes(data: Any, max_nodes: Optional[int] = None) -> tuple[Tensor, int]:
    """The nodes whose class shares are estimated: those outside the training and validation sets
    (of the target type on a heterogeneous graph: ``target_mask``).

    Returns:
        ``(index, count)``: their indices and how many there are. More than ``max_nodes`` (default
        :data:`MAX_PRIOR_NODES`) are replaced by a sample seeded with 0, so the estimate does not
        move between runs.
    """
    unlabelled = ~(data.train_mask | data.val_mask)
    target = getattr(data, "target_mask", None)
    if target is not None:
        unlabelled &= target
    index = torch.nonzero(unlabelled, as_tuple=False).view(-1).cpu()
    count = int(index.numel())
    limit = MAX_PRIOR_NODES if max_nodes is None else max_nodes
    if count > limit:
        index = index[torch.randperm(count, generator=torch.Generator().manual_seed(0))[:limit]]
    return index, count


def fit_calibration(logits: Tensor, y: Tensor, *, max_iterations: int = 200) -> tuple[float, Tensor]:
    """Bias-corrected temperature scaling (BCTS, Alexandari et al. 2020): the ``T`` and per-class
    ``b`` minimising the negative log-likelihood of ``softmax(logits / T + b)`` for the labels ``y``.

    Args:
        logits: ``[n, C]`` logits of labelled nodes (the validation nodes: not the ones trained on).
        y: ``[n]`` their labels.

    Returns:
        ``(T, b)``: the temperature (within ``[1 / MAX_SCALE, MAX_SCALE]``) and ``[C]`` float64 biases.
    """
    z = logits.detach().double().cpu()
    labels = y.detach().cpu().long()
    log_scale = torch.zeros((), dtype=torch.float64, requires_grad=True)  # 1 / T = exp(log_scale)
    bias = torch.zeros(z.size(1), dtype=torch.float64, requires_grad=True)
    bound = float(torch.log(torch.tensor(MAX_SCALE)))
    optimizer = torch.optim.LBFGS([log_scale, bias], max_iter=max_iterations, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        scale = torch.exp(log_scale.clamp(-bound, bound))
        loss = torch.nn.functional.cross_entropy(z * scale + bias, labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    scale = float(torch.exp(log_scale.detach().clamp(-bound, bound)))
    return 1.0 / scale, bias.detach().clone()


@dataclass(frozen=True)
class LabelShift:
    """A model's logits calibrated on the validation nodes and moved to the class shares of the
    unlabelled nodes (module docstring): ``z' = z / T + b + log(target_prior) - log(source_prior)``.

    Attributes:
        temperature: BCTS's ``T``.
        bias: BCTS's per-class ``b``.
        source_prior: the validation nodes' class shares (what the calibrated model predicts for).
        target_prior: the EM estimate of the unlabelled nodes' class shares.
    """

    temperature: float
    bias: tuple[float, ...]
    source_prior: tuple[float, ...]
    target_prior: tuple[float, ...]

    def apply(self, logits: Tensor) -> Tensor:
        """The adapted logits (same shape, dtype and device)."""
        z = logits.double()
        shift = torch.tensor(self.bias, dtype=torch.float64) + torch.log(
            torch.tensor(self.target_prior, dtype=torch.float64).clamp_min(1e-300)
            / torch.tensor(self.source_prior, dtype=torch.float64))
        return (z / self.temperature + shift.to(z.device)).to(logits.dtype)

    def as_dict(self) -> dict[str, Any]:
        return {"method": "BCTS calibration on validation (Alexandari et al. 2020), then EM (Saerens et al. 2002)",
                "temperature": self.temperature, "bias": list(self.bias),
                "source_prior": list(self.source_prior), "target_prior": list(self.target_prior)}


def fit_label_shift(logits: Tensor, data: Any, num_classes: int) -> tuple[Optional[LabelShift], str]:
    """Fit :class:`LabelShift` for the ``[N, C]`` ``logits`` of a model on the graph ``data``.

    Returns:
        ``(shift, "")``, or ``(None, why)`` when it cannot be fitted: a class without a validation
        node (its bias would run to minus infinity), no unlabelled node, or non-finite outputs.
    """
    val = data.val_mask & (data.y >= 0)
    counts = torch.bincount(data.y[val].cpu(), minlength=num_classes)[:num_classes]
    if bool((counts == 0).any()):
        missing = [int(c) for c in torch.nonzero(counts == 0).view(-1)[:5]]
        return None, f"class(es) {missing} have no validation node"
    index, _ = unlabelled_nodes(data)
    if index.numel() == 0:
        return None, "no node is outside the training and validation sets"
    z = logits.detach().cpu()
    if not bool(torch.isfinite(z[val.cpu()]).all()) or not bool(torch.isfinite(z[index]).all()):
        return None, "the model's outputs are not finite"
    temperature, bias = fit_calibration(z[val.cpu()], data.y[val].cpu())
    if not bool(torch.isfinite(bias).all()):
        return None, "the calibration did not converge"
    source = counts.double() / counts.sum()
    calibrated = torch.softmax(z[index].double() / temperature + bias, dim=-1)
    target = estimate_class_prior(calibrated, source)
    return LabelShift(temperature, tuple(float(v) for v in bias), tuple(float(v) for v in source),
                      tuple(float(v) for v in target)), ""
