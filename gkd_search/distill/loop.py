"""Full-batch training with early stopping on validation accuracy.

The loop knows nothing about distillation: it minimises whatever ``objective(output)`` returns
and optimises the model's parameters together with any extra parameters (a method's own
projections). The weights with the best validation accuracy (ties: lower validation loss) are
kept and restored.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import TrialFailed
from ..types import GraphModel, ModelOutput


@dataclass
class TrainingSettings:
    """Optimiser and stopping settings (Adam)."""

    lr: float = 0.01
    weight_decay: float = 5e-4
    epochs: int = 200
    patience: int = 50


@dataclass
class TrainOutcome:
    """The restored best model's accuracies (fractions) and what training cost."""

    val_acc: float
    test_acc: float
    best_epoch: int
    epochs_run: int
    seconds: float


def accuracy(logits: Tensor, y: Tensor, mask: Tensor) -> float:
    """Fraction of ``mask`` nodes whose arg-max prediction equals the label."""
    if int(mask.sum()) == 0:
        return float("nan")
    return float((logits[mask].argmax(dim=-1) == y[mask]).float().mean())


@torch.no_grad()
def predict(model: GraphModel, data) -> ModelOutput:
    """Eval-mode forward over the whole graph."""
    model.eval()
    return model(data.x, data.edge_index)


def evaluate(model: GraphModel, data) -> tuple[float, float]:
    """``(val_acc, test_acc)`` of ``model`` on ``data`` in eval mode."""
    logits = predict(model, data).logits
    return accuracy(logits, data.y, data.val_mask), accuracy(logits, data.y, data.test_mask)


def train_model(
    model: GraphModel,
    objective: Callable[[ModelOutput], Tensor],
    data,
    settings: TrainingSettings,
    extra_parameters: Iterable[nn.Parameter] = (),
) -> TrainOutcome:
    """Train ``model`` in place and restore its best-validation weights.

    Raises:
        TrialFailed: the loss became NaN or infinite.
    """
    params = list(model.parameters()) + [p for p in extra_parameters if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=settings.lr, weight_decay=settings.weight_decay)
    best_acc, best_loss, best_epoch = -1.0, math.inf, 0
    best_state = copy.deepcopy(model.state_dict())
    start = time.perf_counter()
    epoch = 0
    for epoch in range(1, settings.epochs + 1):
        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss = objective(model(data.x, data.edge_index))
        if not torch.isfinite(loss):
            raise TrialFailed(f"loss became {float(loss.detach())} at epoch {epoch}")
        loss.backward()
        optimizer.step()

        logits = predict(model, data).logits
        val_acc = accuracy(logits, data.y, data.val_mask)
        val_loss = float(F.cross_entropy(logits[data.val_mask], data.y[data.val_mask]))
        if val_acc > best_acc or (val_acc == best_acc and val_loss < best_loss):
            best_acc, best_loss, best_epoch = val_acc, val_loss, epoch
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= settings.patience:
            break
    seconds = time.perf_counter() - start
    model.load_state_dict(best_state)
    val_acc, test_acc = evaluate(model, data)
    return TrainOutcome(val_acc, test_acc, best_epoch, epoch, seconds)
