"""Full-batch training with early stopping on the validation score (mini-batch: :mod:`.minibatch`).

The loop knows nothing about distillation: it minimises whatever ``objective(output)`` returns
and optimises the model's parameters together with any extra parameters (a method's own
projections). The weights with the best validation score (``--metric``: accuracy by default;
ties: lower validation loss) are kept and restored.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..metrics import accuracy, validation_score
from ..reorder import node_order_for
from ..types import GraphModel, ModelOutput, run_model
from .guard import NoGuard, TrainingGuard

__all__ = ["BestWeights", "EpochCallback", "Metric", "TrainOutcome", "TrainingSettings", "accuracy", "evaluate", "make_optimizer",
           "predict", "train_model"]


@dataclass
class TrainingSettings:
    """Optimiser and stopping settings (Adam)."""

    lr: float = 0.01
    weight_decay: float = 5e-4
    epochs: int = 200
    patience: int = 50
    #: weight decay of the model's ``conv`` parameter group (:meth:`GraphModel.parameter_groups`),
    #: as GCNII trains its convolutions (0.01) apart from its linear layers (5e-4); ``None``: ``weight_decay``
    conv_weight_decay: Optional[float] = None


def make_optimizer(model: GraphModel, settings: TrainingSettings, extra_parameters: Iterable[nn.Parameter] = ()) -> torch.optim.Optimizer:
    """Adam over the model's parameter groups and a method's own parameters."""
    groups = []
    for name, params in model.parameter_groups().items():
        decay = settings.conv_weight_decay if name == "conv" and settings.conv_weight_decay is not None else settings.weight_decay
        groups.append({"params": [p for p in params if p.requires_grad], "weight_decay": decay})
    extra = [p for p in extra_parameters if p.requires_grad]
    if extra:
        groups.append({"params": extra, "weight_decay": settings.weight_decay})
    return torch.optim.Adam(groups, lr=settings.lr)


@dataclass
class TrainOutcome:
    """The restored best model's scores and eval-mode logits, and what training cost.

    Attributes:
        val_score: the training metric (``--metric``) on the validation nodes.
        test_score: the same on the test nodes.
        logits: ``[N, C]`` eval-mode logits of the restored model (every node).
    """

    val_score: float
    test_score: float
    best_epoch: int
    epochs_run: int
    seconds: float
    logits: Optional[Tensor] = None
    #: True when ``on_epoch`` returned False (a scheduler stopped a hopeless trial)
    stopped_by_callback: bool = False


#: ``metric(logits, y, mask) -> float``: accuracy, a dataset's official evaluator, or another
#: :class:`~gkd_search.metrics.ScoreMetric`
Metric = Callable[[Tensor, Tensor, Tensor], float]
#: ``on_epoch(epoch, val score, best val score so far)``, after each epoch (progress displays, a
#: trial's reports to its scheduler); returning False stops training there (any other value goes on)
EpochCallback = Callable[[int, float, float], Optional[bool]]


@torch.no_grad()
def predict(model: GraphModel, data, chunk_size: Optional[int] = None) -> ModelOutput:
    """Eval-mode outputs for every node of ``data`` (layer by layer in chunks of ``chunk_size``
    nodes when given; see :meth:`GraphModel.inference`)."""
    model.eval()
    edge_type = getattr(data, "edge_type", None)
    if chunk_size is not None:
        return model.inference(data.x, data.edge_index, edge_type, chunk_size=chunk_size)
    return run_model(model, data.x, data.edge_index, edge_type)


def evaluate(model: GraphModel, data, metric: Metric = accuracy, chunk_size: Optional[int] = None) -> tuple[float, float]:
    """``(val, test)`` of ``metric`` for ``model`` on ``data`` in eval mode."""
    logits = predict(model, data, chunk_size).logits
    return validation_score(metric)(logits, data.y, data.val_mask), metric(logits, data.y, data.test_mask)


class BestWeights:
    """Early stopping on the validation score: keeps the best weights (ties: lower validation loss;
    an undefined score, NaN, counts as the worst)."""

    def __init__(self, model: nn.Module, patience: int, metric: Metric = accuracy) -> None:
        self.model, self.patience, self.metric = model, patience, validation_score(metric)
        self.score, self.loss, self.epoch = -math.inf, math.inf, 0
        self.last = math.nan  # the latest epoch's score
        self.state = copy.deepcopy(model.state_dict())

    def update(self, epoch: int, logits: Tensor, data) -> bool:
        """Record this epoch's eval-mode ``logits``; return False when patience has run out."""
        score = self.metric(logits, data.y, data.val_mask)
        self.last = score
        score = -math.inf if math.isnan(score) else score
        val_loss = float(F.cross_entropy(logits[data.val_mask], data.y[data.val_mask]))
        if self.epoch == 0 or score > self.score or (score == self.score and val_loss < self.loss):
            self.score, self.loss, self.epoch = score, val_loss, epoch
            self.state = copy.deepcopy(self.model.state_dict())
        return epoch - self.epoch < self.patience

    def restore(self) -> None:
        self.model.load_state_dict(self.state)


def train_model(
    model: GraphModel,
    objective: Callable[[ModelOutput], Tensor],
    data,
    settings: TrainingSettings,
    extra_parameters: Iterable[nn.Parameter] = (),
    metric: Metric = accuracy,
    on_epoch: Optional[EpochCallback] = None,
    guard: Optional[TrainingGuard] = None,
) -> TrainOutcome:
    """Train ``model`` full-batch in place and restore its best-validation weights.

    Raises:
        TrialStopped: the loss became NaN or infinite, or ``guard`` stopped the trial
            (:mod:`.guard`: diverged or degenerate).
    """
    guard = guard or NoGuard()
    optimizer = make_optimizer(model, settings, extra_parameters)
    best = BestWeights(model, settings.patience, metric)
    edge_type = getattr(data, "edge_type", None)
    start = time.perf_counter()
    # GKD_NODE_ORDER=rcm: a large graph is renumbered once for cache locality (reorder.py), the
    # outputs come back in its own order
    order = node_order_for(data) if getattr(model, "uses_graph", True) else None
    graph = (data.x, data.edge_index, edge_type) if order is None else order.graph(data.x, data.edge_index, edge_type)

    def forward() -> ModelOutput:
        out = run_model(model, *graph)
        return out if order is None else order.restore(out)

    epoch = 0
    stopped = False
    for epoch in range(1, settings.epochs + 1):
        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss = objective(forward())
        guard.check_loss(loss, epoch)
        loss.backward()
        optimizer.step()
        model.eval()
        with torch.no_grad():
            going_on = best.update(epoch, forward().logits, data)
        if on_epoch is not None and on_epoch(epoch, best.last, best.score) is False:
            stopped = True
            break
        if not going_on and not guard.at_chance(best.score):  # still at chance: the guard's warm-up decides
            break
        guard.check_score(epoch, best.score)
    seconds = time.perf_counter() - start
    best.restore()
    logits = predict(model, data).logits
    return TrainOutcome(validation_score(metric)(logits, data.y, data.val_mask), metric(logits, data.y, data.test_mask),
                        best.epoch, epoch, seconds, logits, stopped)
