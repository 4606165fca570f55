"""Train or load the teacher, and cache it with its outputs.

A teacher is trained once per (dataset content, teacher config, training settings, seed, code
version) and cached on disk under a hash of those; the cached file holds the weights and the
outputs every trial reads (logits and every layer's output). ``--teacher-checkpoint`` loads
weights instead (outputs are recomputed from them, never trusted from the file).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Optional

import torch
import torch.nn.functional as F

from . import __version__
from .class_prior import fit_label_shift
from .distill.loop import EpochCallback, TrainingSettings, train_model
from .distill.minibatch import Batching, full_batch_bytes, train_minibatch
from .errors import UsageError
from .methods._common import supervised_cross_entropy
from .metrics import ScoreMetric, accuracy, resolve_metric
from .types import GraphDataset, GraphModel, ModelFamily, TeacherOutputs, count_parameters, output_widths

#: Bump when the teacher's training or the cache format changes.
CACHE_FORMAT = 2


@dataclass(frozen=True)
class TeacherConfig:
    """A teacher architecture and how it is trained (``--teacher FAMILY:LAYERS:HIDDEN[:k=v]``)."""

    family: str
    num_layers: int
    hidden_channels: int
    family_params: Mapping[str, Any] = field(default_factory=dict)
    dropout: float = 0.5
    lr: float = 0.01
    weight_decay: float = 5e-4
    epochs: int = 500
    patience: int = 100
    conv_weight_decay: Optional[float] = None

    @classmethod
    def parse(cls, text: str) -> TeacherConfig:
        """Parse ``gcn:2:256``, ``gat:2:64:heads=8`` or ``gcn:2:256:dropout=0.8``.

        ``dropout``, ``lr``, ``weight_decay``, ``conv_weight_decay`` (GCNII's convolutions),
        ``epochs`` and ``patience`` set training; any other ``key=value`` is a family parameter.
        """
        parts = text.split(":")
        training_keys = {"dropout": float, "lr": float, "weight_decay": float, "epochs": int, "patience": int,
                         "conv_weight_decay": float}
        try:
            family, layers, hidden = parts[0], int(parts[1]), int(parts[2])
            extra: dict[str, Any] = {}
            training: dict[str, Any] = {}
            for item in parts[3:]:
                key, value = item.split("=", 1)
                if key in training_keys:
                    training[key] = training_keys[key](value)
                else:
                    extra[key] = int(value) if value.lstrip("-").isdigit() else value
        except (IndexError, ValueError):
            raise UsageError(
                f"--teacher {text!r} is not FAMILY:LAYERS:HIDDEN[:key=value] (for example gcn:2:256)"
            ) from None
        if layers < 1 or hidden < 1:
            raise UsageError(f"--teacher {text!r}: LAYERS and HIDDEN must be >= 1")
        return cls(family.lower(), layers, hidden, extra, **training)

    @property
    def spec(self) -> str:
        defaults = TeacherConfig("", 1, 1)
        extra = "".join(f":{k}={v}" for k, v in sorted(self.family_params.items()))
        for key in ("dropout", "lr", "weight_decay", "epochs", "patience", "conv_weight_decay"):
            if getattr(self, key) != getattr(defaults, key):
                extra += f":{key}={getattr(self, key)}"
        return f"{self.family}:{self.num_layers}:{self.hidden_channels}{extra}"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "family_params": dict(self.family_params)}


def build_teacher_model(config: TeacherConfig, family: ModelFamily, dataset: GraphDataset) -> GraphModel:
    extra = {"num_relations": dataset.num_relations} if family.relational else {}
    return family.build(dataset.num_features, dataset.num_classes, config.num_layers,
                        config.hidden_channels, dropout=config.dropout, **dict(config.family_params), **extra)


def cache_key(dataset: GraphDataset, config: TeacherConfig, seed: int, metric: str = "accuracy") -> str:
    """Hash of everything that determines the trained teacher (the metric it early-stops on too)."""
    payload = {
        "dataset": dataset.fingerprint(),
        "config": config.to_json(),
        "seed": seed,
        "gkd_search": __version__,
        "format": CACHE_FORMAT,
        "torch": torch.__version__.split("+")[0],
    }
    if metric != "accuracy":
        payload["metric"] = metric
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _file_key(path: Path) -> str:
    """The first 16 hex digits of a file's SHA-256."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def _scored(logits: torch.Tensor, hidden: list[torch.Tensor], dataset: GraphDataset, config: TeacherConfig,
            num_params: int, metric: ScoreMetric, from_cache: bool, path: Optional[Path],
            key: Optional[str] = None) -> TeacherOutputs:
    data = dataset.data
    return TeacherOutputs(
        logits=logits, hidden=hidden, spec=config.spec, num_params=num_params,
        val_acc=accuracy(logits, data.y, data.val_mask), test_acc=accuracy(logits, data.y, data.test_mask),
        from_cache=from_cache, cache_path=str(path) if path else None,
        val_score=metric(logits, data.y, data.val_mask), test_score=metric(logits, data.y, data.test_mask),
        metric=metric.name, cache_key=key,
    )


def adapt_to_label_shift(teacher: TeacherOutputs, dataset: GraphDataset,
                         metric: ScoreMetric) -> tuple[TeacherOutputs, str]:
    """The teacher with its logits calibrated on the validation nodes and moved to the class shares
    of the unlabelled nodes (:func:`gkd_search.class_prior.fit_label_shift`; Alexandari et al.
    2020, Saerens et al. 2002): what every student is distilled from and the teacher is scored by.
    The cached outputs stay as trained; ``hidden`` is unchanged.

    Returns:
        ``(adapted, "")``, or ``(teacher, why)`` unchanged where no adaptation can be fitted.
    """
    shift, why = fit_label_shift(teacher.logits, dataset.data, dataset.num_classes)
    if shift is None:
        return teacher, why
    logits = shift.apply(teacher.logits)
    data = dataset.data
    record = {**shift.as_dict(), "val_acc_before": teacher.val_acc, "test_acc_before": teacher.test_acc}
    return replace(teacher, logits=logits, label_shift=record,
                   val_acc=accuracy(logits, data.y, data.val_mask), test_acc=accuracy(logits, data.y, data.test_mask),
                   val_score=metric(logits, data.y, data.val_mask),
                   test_score=metric(logits, data.y, data.test_mask)), ""


def _outputs(model: GraphModel, dataset: GraphDataset, config: TeacherConfig, from_cache: bool,
             path: Optional[Path], batching: Batching, keep_hidden: bool, metric: ScoreMetric,
             key: Optional[str] = None) -> TeacherOutputs:
    """The teacher's outputs for every node, layer by layer in chunks on a large graph; its hidden
    layers only when a method needs them (``keep_hidden``), else ``hidden == [logits]``."""
    data = dataset.data
    with torch.no_grad():
        model.eval()
        out = model.inference(data.x, data.edge_index, getattr(data, "edge_type", None),
                              chunk_size=batching.chunk_for(dataset.num_nodes), keep_hidden=keep_hidden)
    return _scored(out.logits.detach(), [h.detach() for h in out.hidden], dataset, config, count_parameters(model),
                   metric, from_cache, path, key)


def _atomic_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="tmp-", suffix=".partial", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def get_teacher(
    dataset: GraphDataset,
    config: TeacherConfig,
    family: ModelFamily,
    *,
    seed: int,
    cache_dir: Path,
    checkpoint: Optional[Path] = None,
    batching: Optional[Batching] = None,
    keep_hidden: bool = True,
    metric: Optional[ScoreMetric] = None,
    on_epoch: Optional[EpochCallback] = None,
    device: str = "cpu",
) -> tuple[GraphModel, TeacherOutputs]:
    """Return the trained teacher and its outputs, training it only when no cache entry exists.

    Args:
        batching: full-batch or mini-batch training (``auto`` by default, as for the students) and
            the chunk size of the layer-wise inference that computes the outputs.
        keep_hidden: compute and keep every layer's output (methods that ``require`` "hidden");
            False keeps only the logits, which on a deep teacher and a large graph is most of
            the memory.
        metric: the score the teacher early-stops on and reports (``--metric``; default the
            dataset's own).
        on_epoch: called after every training epoch with ``(epoch, val score, best val score)``
            (progress display); not called when the teacher comes from the cache.
        device: where full-batch training runs (``cuda``, ``cuda:1``; :func:`teacher_device`
            falls back to ``cpu`` where this process sees no GPU). The model and its outputs come
            back on the CPU, so the cache entry does not depend on the device (CUDA and CPU
            training agree within float tolerance, not bitwise); mini-batch training stays on the
            CPU.
    """
    batching = batching or Batching()
    metric = metric or resolve_metric(dataset.metric, dataset.evaluator)
    if checkpoint is not None:
        return load_teacher_checkpoint(checkpoint, dataset, family, batching=batching, keep_hidden=keep_hidden,
                                       metric=metric)
    key = cache_key(dataset, config, seed, metric.name)
    path = cache_dir / "teachers" / f"{dataset.name}-{config.spec.replace(':', '-')}-{key}.pt"
    torch.manual_seed(seed)
    model = build_teacher_model(config, family, dataset)
    if path.is_file():
        entry = torch.load(path, weights_only=True)
        model.load_state_dict(entry["state_dict"])
        hidden = list(entry["hidden"])
        if keep_hidden and len(hidden) < 2 and len(output_widths(model, dataset.data)) > 1:  # cached without hidden layers
            return model, _outputs(model, dataset, config, True, path, batching, keep_hidden, metric, key)
        logits = entry["logits"]
        return model, _scored(logits, hidden if keep_hidden else [logits], dataset, config, int(entry["num_params"]),
                              metric, True, path, key)
    settings = TrainingSettings(lr=config.lr, weight_decay=config.weight_decay, epochs=config.epochs,
                                patience=config.patience, conv_weight_decay=config.conv_weight_decay)
    _train(model, family, config, dataset, settings, batching, seed, metric, on_epoch, teacher_device(device))
    outputs = _outputs(model, dataset, config, False, path, batching, keep_hidden, metric, key)
    _atomic_save(
        {
            "format": CACHE_FORMAT,
            "config": config.to_json(),
            "state_dict": model.state_dict(),
            "logits": outputs.logits,
            "hidden": outputs.hidden,
            "num_params": outputs.num_params,
            "val_acc": outputs.val_acc,
            "test_acc": outputs.test_acc,
        },
        path,
    )
    return model, outputs


def teacher_device(device: str) -> str:
    """The device the teacher trains on for ``--device device``: a CUDA device only where this
    process sees one (a driver without a GPU, whose trials run on a cluster's GPU nodes, trains
    its teacher on its CPU)."""
    return device if device.startswith("cuda") and torch.cuda.is_available() else "cpu"


def _train(model: GraphModel, family: ModelFamily, config: TeacherConfig, dataset: GraphDataset,
           settings: TrainingSettings, batching: Batching, seed: int, metric: ScoreMetric,
           on_epoch: Optional[EpochCallback] = None, device: str = "cpu") -> None:
    """Cross-entropy on the labelled nodes, full-batch (on ``device``) or on sampled mini-batches
    (on the CPU), early stopping on ``metric``; the model ends on the CPU."""
    data = dataset.data
    widths = output_widths(model, data)
    estimate = full_batch_bytes(widths, dataset.num_nodes, int(data.edge_index.size(1)), family.uses_graph)
    if batching.use_minibatch(estimate):
        train_nodes = torch.nonzero(data.train_mask, as_tuple=False).view(-1)
        train_minibatch(model, lambda out, ids, _: F.cross_entropy(out.logits, data.y[ids]), data, settings, batching,
                        num_hops=family.num_hops(config.num_layers, **dict(config.family_params)), seeds=train_nodes,
                        metric=metric, seed=seed, on_epoch=on_epoch)
    else:
        if device != "cpu":
            data = dataset.data_on(device)
            model.to(device)
        try:
            train_model(model, lambda out: supervised_cross_entropy(out.logits, data.y, data.train_mask), data,
                        settings, metric=metric, on_epoch=on_epoch)
        finally:
            model.to("cpu")


def save_teacher_checkpoint(model: GraphModel, config: TeacherConfig, path: Path) -> None:
    """Write a file ``--teacher-checkpoint`` accepts: ``{"config": ..., "state_dict": ...}``."""
    _atomic_save({"format": CACHE_FORMAT, "config": config.to_json(), "state_dict": model.state_dict()}, Path(path))


def read_checkpoint_config(path: Path) -> TeacherConfig:
    """The :class:`TeacherConfig` stored in a checkpoint file."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--teacher-checkpoint {path}: no such file")
    try:
        entry = torch.load(path, weights_only=True)
        raw = dict(entry["config"])
        raw["family_params"] = dict(raw.get("family_params", {}))
        return TeacherConfig(**raw)
    except Exception as exc:
        raise UsageError(
            f"--teacher-checkpoint {path}: not a gkd-search teacher checkpoint ({type(exc).__name__}: {exc}); "
            "write one with gkd_search.teacher.save_teacher_checkpoint"
        ) from None


def load_teacher_checkpoint(path: Path, dataset: GraphDataset, family: ModelFamily, *, batching: Optional[Batching] = None,
                            keep_hidden: bool = True, metric: Optional[ScoreMetric] = None) -> tuple[GraphModel, TeacherOutputs]:
    config = read_checkpoint_config(path)
    model = build_teacher_model(config, family, dataset)
    entry = torch.load(path, weights_only=True)
    try:
        model.load_state_dict(entry["state_dict"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise UsageError(f"--teacher-checkpoint {path}: weights do not fit {config.spec} on {dataset.name} ({first})") from None
    return model, _outputs(model, dataset, config, True, Path(path), batching or Batching(), keep_hidden,
                           metric or resolve_metric(dataset.metric, dataset.evaluator), _file_key(Path(path)))
