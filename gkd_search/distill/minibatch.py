"""Mini-batch training with neighbour sampling, for graphs too big for full-batch training.

Each epoch visits every seed node once in shuffled batches of ``batch_size``. A batch runs the
model on the seeds' sampled ``fanout`` neighbourhood (GraphSAGE's sampler, Hamilton et al.,
NeurIPS 2017, Alg. 2, as PyG's ``NeighborLoader`` does it; see :mod:`gkd_search.graph_ops`) and
computes the objective on the seed rows only. Validation and the final evaluation run the model
over the whole graph layer by layer in chunks, with every neighbour (no sampling), so the
reported accuracy is the model's, not the sampler's.

Whether a trial trains full-batch is decided from an estimate of its full-batch memory
(:func:`full_batch_bytes`) unless the user forces it (``--mini-batch on|off``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable, Optional, Sequence

import torch
from torch import Tensor, nn

from ..errors import UsageError
from ..graph_ops import NeighbourhoodIndex, fanouts_for
from ..metrics import validation_score
from ..types import GraphModel, ModelOutput, run_model
from .guard import NoGuard, TrainingGuard
from .loop import BestWeights, EpochCallback, Metric, TrainingSettings, TrainOutcome, accuracy, make_optimizer, predict

MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class Batching:
    """How trials (and the teacher) train: full-batch or on sampled mini-batches.

    Attributes:
        mode: ``auto`` (mini-batch when the full-batch estimate exceeds ``max_full_batch_gb``),
            ``on`` or ``off``.
        batch_size: seed nodes per step.
        fanout: neighbours sampled per node at each hop, first hop first (``-1``: all); a model
            with more hops repeats the last value.
        max_full_batch_gb: the ``auto`` threshold, per trial.
        inference_chunk: nodes per chunk of layer-wise inference (evaluation, teacher outputs).
    """

    mode: str = "auto"
    batch_size: int = 1024
    fanout: tuple[int, ...] = (10, 10)
    max_full_batch_gb: float = 4.0
    inference_chunk: int = 32768

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UsageError(f"--mini-batch {self.mode!r}: use one of {', '.join(MODES)}")
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be at least 1, got {self.batch_size}")
        if not self.max_full_batch_gb > 0:  # NaN too; inf: never mini-batch
            raise UsageError(f"--max-full-batch-gb must be positive, got {self.max_full_batch_gb:g}")
        if self.inference_chunk < 1:
            raise UsageError(f"--inference-chunk must be at least 1, got {self.inference_chunk}")

    def use_minibatch(self, estimated_bytes: float) -> bool:
        if self.mode == "auto":
            return estimated_bytes > self.max_full_batch_gb * 2**30
        return self.mode == "on"

    def chunk_for(self, num_nodes: int) -> Optional[int]:
        """The chunk size for layer-wise inference, ``None`` when one chunk holds the graph."""
        return self.inference_chunk if num_nodes > self.inference_chunk else None


def full_batch_bytes(layer_widths: Sequence[int], num_nodes: int, num_edges: int, uses_graph: bool) -> float:
    """A rough upper estimate of one full-batch training step's memory.

    Per layer of output width ``d``: four ``[N, d]`` tensors kept for the backward pass or the
    optimiser (output, activation, dropout mask, gradient) and, for a message-passing layer, two
    ``[E, d]`` message tensors (the gathered messages and their gradient); float32.
    """
    per_node = 4 * sum(layer_widths)
    per_edge = 2 * sum(layer_widths) if uses_graph else 0
    return 4.0 * (num_nodes * per_node + num_edges * per_edge)


def induced_edges(index: NeighbourhoodIndex, nodes: Tensor) -> Tensor:
    """The edges between ``nodes`` (whose ids must be distinct), relabelled to positions in ``nodes``."""
    sources, targets = index.incoming(nodes)
    position = torch.full((index.num_nodes,), -1, dtype=torch.long, device=nodes.device)
    position[nodes] = torch.arange(nodes.numel(), device=nodes.device)
    keep = position[sources] >= 0
    return torch.stack([position[sources[keep]], position[targets[keep]]])


def select_rows(out: ModelOutput, rows: Tensor | slice) -> ModelOutput:
    """The outputs of some rows (``hidden[-1]`` stays ``logits``)."""
    hidden = [h[rows] for h in out.hidden]
    return ModelOutput(logits=hidden[-1], hidden=hidden)


#: ``objective(seed_outputs, seed_ids, edges_between_seeds) -> loss``
BatchObjective = Callable[[ModelOutput, Tensor, Tensor], Tensor]


def train_minibatch(
    model: GraphModel,
    objective: BatchObjective,
    data,
    settings: TrainingSettings,
    batching: Batching,
    *,
    num_hops: int,
    seeds: Optional[Tensor] = None,
    extra_parameters: Iterable[nn.Parameter] = (),
    metric: Metric = accuracy,
    seed: int = 0,
    on_epoch: Optional[EpochCallback] = None,
    guard: Optional[TrainingGuard] = None,
) -> TrainOutcome:
    """Train ``model`` on sampled mini-batches in place and restore its best-validation weights.

    Args:
        objective: the loss of one batch from the seeds' outputs, their node ids and the edges
            between them (what structural losses read).
        num_hops: the model's receptive field (:meth:`ModelFamily.num_hops`); 0 samples nothing.
        seeds: the nodes an epoch visits (default: every node; a heterogeneous graph's targets).
        guard: stops a diverging or degenerate trial (:mod:`.guard`); default: only a non-finite loss.
    """
    guard = guard or NoGuard()
    index = NeighbourhoodIndex(data.edge_index, data.num_nodes)
    fanouts = fanouts_for(batching.fanout, num_hops)
    seeds = torch.arange(data.num_nodes) if seeds is None else seeds
    edge_type = getattr(data, "edge_type", None)
    generator = torch.Generator().manual_seed(seed)
    optimizer = make_optimizer(model, settings, extra_parameters)
    best = BestWeights(model, settings.patience, metric)
    chunk = batching.chunk_for(data.num_nodes)
    start = time.perf_counter()
    epoch = 0
    stopped = False
    for epoch in range(1, settings.epochs + 1):
        model.train()
        order = seeds[torch.randperm(seeds.numel(), generator=generator)]
        for batch in order.split(batching.batch_size):
            sub = index.subgraph(batch, fanouts, generator)
            out = run_model(model, data.x[sub.nodes], sub.edge_index,
                            None if edge_type is None else edge_type[sub.edge_ids])
            optimizer.zero_grad(set_to_none=True)
            loss = objective(select_rows(out, slice(0, sub.num_seeds)), batch, induced_edges(index, batch))
            guard.check_loss(loss, epoch)
            loss.backward()
            optimizer.step()
        going_on = best.update(epoch, predict(model, data, chunk).logits, data)
        if on_epoch is not None and on_epoch(epoch, best.last, best.score) is False:
            stopped = True
            break
        if not going_on and not guard.at_chance(best.score):  # still at chance: the guard's warm-up decides
            break
        guard.check_score(epoch, best.score)
    seconds = time.perf_counter() - start
    best.restore()
    logits = predict(model, data, chunk).logits
    return TrainOutcome(validation_score(metric)(logits, data.y, data.val_mask), metric(logits, data.y, data.test_mask),
                        best.epoch, epoch, seconds, logits, stopped)
