"""One trial: build -> latency gate -> train against the teacher -> evaluate -> report.

:func:`run_trial` is the whole trial and knows nothing of Ray: the search calls it inside a Ray
Tune trainable, the overhead benchmark calls it from a plain Optuna loop.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import Tensor

from .distill.guard import NoGuard, TrialStopped, make_guard
from .distill.loop import TrainingSettings, predict, train_model
from .distill.minibatch import Batching, full_batch_bytes, induced_edges, select_rows, train_minibatch
from .distill.objective import build_objective, split_params
from .distill.resources import PeakMemory
from .graph_ops import NeighbourhoodIndex
from .latency import LatencyBench, LatencyMeasurement, LatencyProtocol
from .metrics import ScoreMetric, accuracy, resolve_metric
from .student import build_student, save_student
from .types import (
    DistillationBatch,
    DistillationContext,
    DistillationMethod,
    GraphDataset,
    ModelFamily,
    StructuralLoss,
    TeacherOutputs,
    TrialResult,
    TrialSpec,
    count_parameters,
    output_widths,
)


@dataclass
class TrialContext:
    """What every trial of a search shares (put once in Ray's object store)."""

    dataset: GraphDataset
    teacher: TeacherOutputs
    families: dict[str, ModelFamily]
    methods: dict[str, DistillationMethod]
    latency: dict[str, LatencyMeasurement]
    budget_ms: float
    protocol: LatencyProtocol
    device: str = "cpu"
    structural_losses: dict[str, StructuralLoss] = field(default_factory=dict)
    cache_dir: Optional[Path] = None
    batching: Batching = field(default_factory=Batching)
    #: the score trials early-stop on and report as ``val_score``/``test_score`` (``--metric``)
    metric: ScoreMetric = field(default_factory=lambda: resolve_metric(None))


def _latency_for(spec: TrialSpec, ctx: TrialContext, family: ModelFamily, build) -> LatencyMeasurement:
    measured = ctx.latency.get(spec.architecture_key())
    if measured is None:  # only outside a search, which measures every architecture first
        measured = LatencyBench(ctx.dataset, ctx.protocol).measure(
            build(), family.num_hops(spec.num_layers, **spec.family_params), budget_ms=ctx.budget_ms)
    return measured


def _diagnostics(loss, model, data, batch: DistillationBatch, rows: Optional[Tensor], chunk: Optional[int],
                 when: str) -> dict[str, list[list[float]]]:
    """The loss's named matrices in eval mode, as ``{"<name>_<when>": rows}``."""
    with torch.no_grad():
        out = predict(model, data, chunk)
        matrices = loss.diagnostics(out if rows is None else select_rows(out, rows), batch)
    return {f"{name}_{when}": m.detach().float().cpu().tolist() for name, m in matrices.items()}


def _loss_graph(data, rows: Optional[Tensor]) -> tuple[Optional[Tensor], Tensor]:
    """``(rows, edges between them)``: the nodes distillation losses see. On a heterogeneous
    graph these are the target nodes and the edges among them; otherwise every node."""
    if rows is None:
        return None, data.edge_index
    index = NeighbourhoodIndex(data.edge_index, data.num_nodes)
    return rows, induced_edges(index, rows)


#: ``on_epoch(epoch, val_score) -> keep_going``: called after every training epoch with the best
#: validation score (``--metric``) so far; returning False stops the trial, which ends ``pruned``
EpochReport = Callable[[int, float], bool]


def run_trial(spec: TrialSpec, ctx: TrialContext, trial_id: str, save_dir: Optional[Path] = None,
              on_epoch: Optional[EpochReport] = None) -> TrialResult:
    """Run one trial. Never raises for a problem of the trial itself: it returns ``failed``.

    Args:
        save_dir: where to save the trained student (``config.json`` + ``weights.pt``).
        on_epoch: the trial's progress reports (a multi-fidelity scheduler reads them; see
            :data:`EpochReport`). A trial it stops is ``pruned``: ``epochs_run`` says where,
            ``last_val_score`` its best validation score then; it is not saved.
    """
    result = TrialResult(trial_id=trial_id, spec=spec, status="ok")
    train_start = time.perf_counter()
    try:
        family = ctx.families[spec.family]
        method = ctx.methods[spec.method]
        dataset = ctx.dataset

        def build():
            torch.manual_seed(spec.seed)
            return build_student(spec, family, dataset.num_features, dataset.num_classes,
                                 num_relations=dataset.num_relations)

        model = build()
        result.params = count_parameters(model)
        latency = _latency_for(spec, ctx, family, build)
        result.latency_ms_p50, result.latency_ms_p95 = latency.p50_ms, latency.p95_ms
        result.latency_complete = latency.complete
        if latency.p50_ms > ctx.budget_ms or not latency.complete:
            result.status = "over_budget"
            return result

        device = torch.device(ctx.device)
        data = dataset.data_on(device)
        own_params, _ = split_params(method, spec.method_params)
        raw_x = data.x
        features = method.student_features(data.x, data.edge_index, own_params)
        if features is not data.x:
            data = data.clone()
            data.x = features
        model = model.to(device)
        target = dataset.target_nodes
        rows, row_edges = _loss_graph(data, None if target is None else target.to(device))
        teacher_logits = ctx.teacher.logits.to(device)
        teacher_hidden = [h.to(device) for h in ctx.teacher.hidden] if "hidden" in method.requires else []
        student_dims = output_widths(model, data)
        context = DistillationContext(
            num_classes=dataset.num_classes, student_family=spec.family, student_uses_graph=family.uses_graph,
            student_hidden_dims=student_dims, teacher_hidden_dims=[int(h.size(-1)) for h in ctx.teacher.hidden],
            x=raw_x if rows is None else raw_x[rows], edge_index=row_edges, structural_losses=ctx.structural_losses,
            cache_dir=ctx.cache_dir, seed=spec.seed,
            teacher_logits=teacher_logits if rows is None else teacher_logits[rows],
        )
        torch.manual_seed(spec.seed)
        loss = build_objective(method, spec.method_params, context).to(device)
        # the loss's rows are numbered like the context's graph: the targets, or every node
        position = None
        if rows is not None:
            position = torch.full((dataset.num_nodes,), -1, dtype=torch.long, device=device)
            position[rows] = torch.arange(rows.numel(), device=device)

        def batch_of(ids: Optional[Tensor], edges: Tensor) -> DistillationBatch:
            if ids is None:
                return DistillationBatch(y=data.y, train_mask=data.train_mask, teacher_logits=teacher_logits,
                                         teacher_hidden=teacher_hidden, edge_index=edges)
            return DistillationBatch(y=data.y[ids], train_mask=data.train_mask[ids], teacher_logits=teacher_logits[ids],
                                     teacher_hidden=[h[ids] for h in teacher_hidden], edge_index=edges,
                                     node_ids=ids if position is None else position[ids])

        batch = batch_of(rows, row_edges)
        settings = TrainingSettings(
            lr=float(spec.training.get("lr", 0.01)), weight_decay=float(spec.training.get("weight_decay", 5e-4)),
            epochs=int(spec.training.get("epochs", 200)), patience=int(spec.training.get("patience", 50)),
            conv_weight_decay=(None if spec.training.get("conv_weight_decay") is None
                               else float(spec.training["conv_weight_decay"])),
        )
        metric = ctx.metric
        estimate = full_batch_bytes(student_dims, dataset.num_nodes, int(data.edge_index.size(1)), family.uses_graph)
        minibatch = ctx.batching.use_minibatch(estimate)
        chunk = ctx.batching.chunk_for(dataset.num_nodes)
        result.training_mode = "mini-batch" if minibatch else "full-batch"
        result.matrices.update(_diagnostics(loss, model, data, batch, rows, chunk, "before"))
        # judged on the score early stopping keeps (the search's --metric)
        guard = (make_guard(metric, data, dataset.num_classes, lr=settings.lr, epochs=settings.epochs)
                 if spec.training.get("guard", True) else NoGuard())
        train_start = time.perf_counter()
        report = None if on_epoch is None else (lambda epoch, last, best: on_epoch(epoch, best))
        with PeakMemory() as memory:
            if minibatch:
                outcome = train_minibatch(
                    model, lambda out, ids, edges: loss(out, batch_of(ids, edges)), data, settings, ctx.batching,
                    num_hops=family.num_hops(spec.num_layers, **spec.family_params), seeds=None if rows is None else rows.cpu(),
                    extra_parameters=loss.parameters(), metric=metric, seed=spec.seed, on_epoch=report, guard=guard,
                )
            else:
                objective = (lambda out: loss(out, batch)) if rows is None else (lambda out: loss(select_rows(out, rows), batch))
                outcome = train_model(model, objective, data, settings, loss.parameters(), metric=metric, on_epoch=report,
                                      guard=guard)
        if outcome.stopped_by_callback:
            result.status = "pruned"
            result.last_val_score = outcome.val_score
            result.train_seconds, result.epochs_run = outcome.seconds, outcome.epochs_run
            result.train_seconds_per_epoch = outcome.seconds / max(outcome.epochs_run, 1)
            result.peak_rss_mb = memory.peak_mb
            return result
        result.matrices.update(_diagnostics(loss, model, data, batch, rows, chunk, "after"))
        y = data.y
        result.val_score, result.test_score = outcome.val_score, outcome.test_score
        result.val_acc = accuracy(outcome.logits, y, data.val_mask)
        result.test_acc = accuracy(outcome.logits, y, data.test_mask)
        result.val_score_se = metric.standard_error(outcome.logits, y, data.val_mask, seed=spec.seed)
        result.train_seconds, result.epochs_run = outcome.seconds, outcome.epochs_run
        result.train_seconds_per_epoch = outcome.seconds / max(outcome.epochs_run, 1)
        result.peak_rss_mb = memory.peak_mb
        if save_dir is not None:
            save_student(model.cpu(), spec, dataset, Path(save_dir),
                         metrics={"val_acc": result.val_acc, "test_acc": result.test_acc, "metric": metric.name,
                                  "val_score": result.val_score, "test_score": result.test_score},
                         fanout=tuple(ctx.protocol.fanout) if ctx.protocol.name == "request" else ())
            result.checkpoint = str(save_dir)
    except TrialStopped as stop:  # diverged or degenerate (distill/guard.py): cheap, and no traceback
        result.status, result.error, result.error_detail = "failed", stop.reason, stop.detail
        result.val_acc = result.test_acc = result.val_score = result.test_score = None
        result.epochs_run, result.train_seconds = stop.epoch, time.perf_counter() - train_start
    except Exception as exc:  # a failing trial never kills the search
        result.status = "failed"
        result.error = f"{type(exc).__name__}: {exc}"
        result.val_acc = result.test_acc = result.val_score = result.test_score = result.val_score_se = None
        result.traceback = traceback.format_exc(limit=-8)
    return result
