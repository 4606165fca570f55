"""A whole search: prepare (data, teacher, latency table) once, run the trials with Ray Tune and
Optuna, then select, save and log.

Order matters for honesty and for bad input: every option and the space file are validated and
the tracking URI is checked before anything is trained; the teacher is trained (or loaded from
its cache) once; every distinct architecture is timed serially before any trial starts, so no
measurement competes with a training trial for the cores; the sampler then draws only
architectures whose p50 is within the budget.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from .datasets._files import resolve_data_root
from .distill.minibatch import Batching
from .errors import SpaceError, UsageError
from .graph_ops import parse_fanout
from .latency import (
    LatencyBench,
    LatencyCache,
    LatencyMeasurement,
    LatencyProtocol,
    hardware_label,
    measure_all,
    write_latency_table,
)
from .loading import CACHE_ENV, check_writable_folder, default_cache_dir, parse_dataset, typed_dataset_options
from .metrics import ScoreMetric, resolve_metric
from .pareto import SELECTION_RULES, degenerate_reason, pareto_front, select
from .pruning import GRACE_EPOCHS, check_grace_epochs, check_pruner
from .registry import Registry, build_registry, notify
from .space import Architecture, SearchSpace, load_space, suggest_spec
from .start_points import resolve_start_points
from .teacher import TeacherConfig, adapt_to_label_shift, get_teacher, read_checkpoint_config
from .teacher_search import AUTO, RANKING, TeacherSelection, is_auto, select_teacher
from .trial import TrialContext
from .types import GraphDataset, SearchSummary, TeacherOutputs, TrialResult, TrialSpec, count_parameters

#: where latency is measured (``--latency-on``)
LATENCY_ON = ("driver", "worker")


#: ``--label-shift`` values
LABEL_SHIFT = ("adapt", "off")


@dataclass
class SearchConfig:
    """Every option of a search (the CLI's flags, one to one)."""

    dataset: str = "cora"
    data_root: Optional[str] = None
    budget_ms: float = 10.0
    trials: int = 30
    epochs: Optional[int] = None
    max_concurrent: Optional[int] = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    seed: int = 0
    space: str = "default"
    methods: Optional[list[str]] = None
    families: Optional[list[str]] = None
    tracking_uri: Optional[str] = None
    experiment: str = "gkd-search"
    device: str = "cpu"
    latency_protocol: str = "request"
    latency_batch: int = 1
    latency_repeats: int = 50
    latency_threads: int = 1
    teacher: Optional[str] = None
    teacher_checkpoint: Optional[str] = None
    cache_dir: Optional[str] = None
    ray_address: Optional[str] = None
    mini_batch: str = "auto"
    batch_size: int = 1024
    fanout: Optional[str] = None
    max_full_batch_gb: float = 4.0
    inference_chunk: int = 32768
    #: ``accuracy``, ``macro-f1``, ``roc-auc``; ``None``: the dataset's own (OGB's evaluator, else accuracy)
    metric: Optional[str] = None
    #: ``one-se`` (the smallest student within one standard error of the best) or ``best``
    select: str = "one-se"
    #: the MLflow registered model the selected student becomes a version of (default ``gkd-<dataset>``)
    register_model: Optional[str] = None
    #: False: log the selected student as an MLflow Model, but register nothing
    register: bool = True
    #: Ray Tune's storage for trial checkpoints: a folder every node shares, or a ``pyarrow`` URI
    #: (``s3://...``); needed on a multi-node cluster (``--storage-path``)
    storage_path: Optional[str] = None
    #: ``driver``: time architectures where gkd-search runs; ``worker``: once per distinct node
    #: type of the Ray cluster, in a task pinned to such a node (``--latency-on``)
    latency_on: str = "driver"
    #: seconds after which a trial is stopped and recorded ``failed`` (``timeout``)
    trial_timeout: Optional[float] = None
    #: ``asha``: stop hopeless trials at ASHA's rungs, within latency brackets
    #: (:mod:`gkd_search.pruning`); ``none``: every trial trains to its epoch limit or patience
    pruner: str = "asha"
    #: epochs before ASHA's first rung (``--asha-grace-epochs``); the rungs are this times 3^k
    asha_grace_epochs: int = GRACE_EPOCHS
    #: ``adapt``: with the accuracy metric, calibrate the teacher's outputs on the validation nodes
    #: and move them to the class shares of the unlabelled nodes before distilling
    #: (:func:`gkd_search.teacher.adapt_to_label_shift`); ``off``: the teacher's outputs as trained
    label_shift: str = "adapt"

    def batching(self) -> Batching:
        """Full-batch or mini-batch training (``--mini-batch``, ``--batch-size``, ``--fanout``)."""
        fanout = parse_fanout(self.fanout) if self.fanout is not None else Batching.fanout
        return Batching(self.mini_batch, self.batch_size, fanout, self.max_full_batch_gb, self.inference_chunk)

    def serving_fanout(self) -> tuple[int, ...]:
        """The fan-out requests are timed with: the training fan-out when the user asked for
        mini-batches or gave ``--fanout``; else the full neighbourhood."""
        if self.fanout is not None or self.mini_batch == "on":
            return self.batching().fanout
        return ()

    def validate(self) -> None:
        """Raise :class:`UsageError` for a value no search can run with."""
        if not (math.isfinite(self.budget_ms) and self.budget_ms > 0):
            raise UsageError(f"--budget-ms must be a positive number of milliseconds, got {self.budget_ms:g}")
        if not 0 <= self.seed < 2**32:
            raise UsageError(f"--seed must be between 0 and 2**32 - 1 (NumPy's and PyTorch's seed range), got {self.seed}")
        if self.trials < 1:
            raise UsageError(f"--trials must be at least 1, got {self.trials}")
        for option, names in (("--families", self.families), ("--methods", self.methods)):
            if names is not None and not names:
                raise UsageError(f"{option} names nothing; give a comma-separated list or leave {option} out "
                                 "for the space's")
        if not self.experiment.strip():
            raise UsageError("--experiment must be a non-empty MLflow experiment name, e.g. gkd-search")
        check_writable_folder(self.cache_dir if self.cache_dir else default_cache_dir(),
                              "--cache-dir" if self.cache_dir else f"the cache folder (${CACHE_ENV})")
        if self.epochs is not None and self.epochs < 1:
            raise UsageError(f"--epochs must be at least 1, got {self.epochs}")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise UsageError(f"--max-concurrent must be at least 1, got {self.max_concurrent}")
        if not (math.isfinite(self.cpus_per_trial) and self.cpus_per_trial > 0) or not (
                math.isfinite(self.gpus_per_trial) and self.gpus_per_trial >= 0):
            raise UsageError("--cpus-per-trial must be > 0 and --gpus-per-trial >= 0")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise UsageError(f"--device must be cpu or cuda[:N], got {self.device!r}")
        if self.latency_on not in LATENCY_ON:
            raise UsageError(f"--latency-on {self.latency_on!r} is unknown; use one of {', '.join(LATENCY_ON)}")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            if not self.ray_address:
                raise UsageError(f"--device {self.device}: no CUDA device is visible; use --device cpu")
            if self.latency_on != "worker":
                raise UsageError(f"--device {self.device}: this machine has no CUDA device to time latency on; "
                                 "add --latency-on worker to time it on the cluster's GPU nodes")
        if self.trial_timeout is not None and not (math.isfinite(self.trial_timeout) and self.trial_timeout > 0):
            raise UsageError(f"--trial-timeout must be a positive number of seconds, got {self.trial_timeout:g}")
        if self.ray_address is not None or self.storage_path is not None:
            from .cluster import check_storage_path, split_address

            if self.ray_address is not None:
                split_address(self.ray_address)
            if self.storage_path is not None:
                check_storage_path(self.storage_path)
        if self.gpus_per_trial > 0 and not self.device.startswith("cuda"):
            raise UsageError("--gpus-per-trial needs --device cuda")
        LatencyProtocol(self.latency_protocol, self.latency_batch, repeats=self.latency_repeats,
                        threads=self.latency_threads, device=self.device)
        self.batching()
        if self.metric is not None:
            resolve_metric(self.metric)
        if self.select not in SELECTION_RULES:
            raise UsageError(f"--select {self.select!r} is unknown; use one of {', '.join(SELECTION_RULES)}")
        if self.register_model is not None:
            check_model_name(self.register_model)
        check_pruner(self.pruner)
        check_grace_epochs(self.asha_grace_epochs)
        if self.label_shift not in LABEL_SHIFT:
            raise UsageError(f"--label-shift {self.label_shift!r} is unknown; use one of {', '.join(LABEL_SHIFT)}")


def check_model_name(name: str) -> None:
    """An MLflow registered-model name: not empty, no ``/`` or ``:`` (they break ``models:/`` URIs)."""
    if not name.strip() or any(c in name for c in "/:") or name != name.strip():
        raise UsageError(f"--register-model {name!r} is not a usable MLflow model name: give a non-empty name "
                         "without '/', ':' or surrounding spaces, e.g. gkd-cora")


class Progress:
    """One long phase's progress (the default shows nothing): ``update(done, **status)``; used as
    a context manager, closed at the end."""

    def update(self, advance: int = 1, **status: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Reporter:
    """Receives progress; the CLI prints it, the default stays silent."""

    def message(self, text: str) -> None:
        pass

    def progress(self, label: str, total: Optional[int] = None, unit: str = "") -> Progress:
        """A live progress display for a long phase (dataset, teacher, latency table, trials)."""
        return Progress()

    def trial(self, result: TrialResult, done: int, total: int, feasible: int, best: Optional[float]) -> None:
        pass


@dataclass
class Prepared:
    """Everything a search computes before its first trial."""

    config: SearchConfig
    registry: Registry
    space: SearchSpace
    dataset: GraphDataset
    teacher: TeacherOutputs
    teacher_latency: LatencyMeasurement
    protocol: LatencyProtocol
    architectures: list[Architecture]
    latency: dict[str, LatencyMeasurement]
    feasible: list[Architecture]
    tracking_uri: str
    cache_dir: Path
    timings: dict[str, float] = field(default_factory=dict)
    metric: ScoreMetric = field(default_factory=lambda: resolve_metric(None))
    #: the metric's score of always predicting the majority validation class
    chance: float = float("nan")
    #: architectures of the space left out for having at least as many parameters as the teacher
    not_smaller: list[Architecture] = field(default_factory=list)
    #: what latency was measured on: this machine's label, or with ``--latency-on worker`` the
    #: label of each node type (``; ``-separated)
    hardware: str = ""
    #: the candidates of ``--teacher auto`` (None when the teacher was given)
    teacher_selection: Optional[TeacherSelection] = None
    #: the Optuna parameters of the space's start points the search runs first (start_points.py)
    start_params: list[dict[str, Any]] = field(default_factory=list)

    def context(self) -> TrialContext:
        return TrialContext(
            dataset=self.dataset, teacher=self.teacher, families=self.registry.families,
            methods=self.registry.methods, latency=self.latency, budget_ms=self.config.budget_ms,
            protocol=self.protocol, device=self.config.device,
            structural_losses=self.registry.losses, cache_dir=self.cache_dir / "methods",
            batching=self.config.batching(), metric=self.metric,
        )

    def registered_model_name(self) -> Optional[str]:
        """``--register-model``, else ``gkd-<dataset>``; ``None`` with ``--no-register-model``."""
        if not self.config.register:
            return None
        return self.config.register_model or f"gkd-{self.dataset.name}"

    def suggest(self, trial) -> TrialSpec:
        return suggest_spec(trial, self.space, self.feasible, self.registry.families, self.registry.methods,
                            self.config.seed)


def prepare(config: SearchConfig, registry: Optional[Registry] = None, reporter: Optional[Reporter] = None,
            *, check_tracking: bool = True, start_services: Optional[Callable[[str], Any]] = None,
            before_timing: Optional[Callable[[], Any]] = None) -> Prepared:
    """Validate everything, load the data, get the teacher and time every architecture.

    ``start_services(tracking_uri)``, when given, replaces the tracking check once the data has
    loaded (a search checks the store there, then opens it and starts Ray in the background:
    :class:`~gkd_search.background.BackgroundStart`); ``before_timing`` is
    called once before the first architecture is timed (a search waits there for Ray and the store
    to finish starting in the background and for Ray's processes to go quiet, so timing runs on
    idle cores)."""
    from .tracking import check_tracking_uri, resolve_tracking_uri

    reporter = reporter or Reporter()
    registry = registry or build_registry()
    config.validate()
    dataset_name, dataset_options = parse_dataset(config.dataset)
    dataset_spec = registry.get("dataset", dataset_name)
    dataset_options = typed_dataset_options(dataset_spec, dataset_options)
    if config.teacher and config.teacher_checkpoint:
        raise UsageError("give either --teacher or --teacher-checkpoint, not both")
    space = load_space(config.space, registry.families, registry.methods, only_families=config.families,
                       only_methods=config.methods, epochs=config.epochs, structural_losses=registry.names("loss"))
    # --teacher, else the space's teacher, else the dataset's default, else auto (teacher_search.py)
    auto_teacher = not config.teacher_checkpoint and is_auto(
        config.teacher or space.teacher or dataset_spec.default_teacher or AUTO)
    teacher_config: Optional[TeacherConfig] = None
    if config.teacher_checkpoint:
        teacher_config = read_checkpoint_config(Path(config.teacher_checkpoint))
    elif not auto_teacher:
        teacher_config = TeacherConfig.parse(config.teacher or space.teacher or dataset_spec.default_teacher)
    if teacher_config is not None:
        registry.get("family", teacher_config.family)
    architectures = space.architectures(registry.families)
    _check_buildable(architectures, registry)
    cache_dir = Path(config.cache_dir).expanduser() if config.cache_dir else default_cache_dir()
    timings: dict[str, float] = {}
    start = time.perf_counter()
    with reporter.progress(f"dataset {config.dataset}: loading"):
        dataset = dataset_spec.load(resolve_data_root(config.data_root), cache_dir / "datasets", config.seed,
                                    **dataset_options)
    timings["data_seconds"] = time.perf_counter() - start
    tracking_uri = resolve_tracking_uri(config.tracking_uri)
    if start_services is not None:  # before any training
        start_services(tracking_uri)
    elif check_tracking:
        check_tracking_uri(tracking_uri)
    d = dataset.data
    metric = resolve_metric(config.metric or dataset.metric, dataset.evaluator)
    reporter.message(
        f"dataset {dataset.name}: {dataset.num_nodes:,} nodes, {d.edge_index.size(1):,} edges, "
        f"{dataset.num_features} features, {dataset.num_classes} classes, split "
        f"{int(d.train_mask.sum())}/{int(d.val_mask.sum())}/{int(d.test_mask.sum())}; metric {metric.name}"
    )

    start = time.perf_counter()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    selection = None
    if teacher_config is None:
        reporter.message(f"teacher auto: the best of the candidate teachers by validation {metric.name} (docs/teachers.md)")
        selection = select_teacher(dataset, registry.families, seed=config.seed, cache_dir=cache_dir,
                                   batching=config.batching(), progress=reporter.message, metric=metric,
                                   device=config.device, label_shift=config.label_shift == "adapt")
        teacher_config = selection.config
    teacher_family = registry.get("family", teacher_config.family)
    keep_hidden = any("hidden" in registry.methods[m].requires for m in space.methods)
    with reporter.progress(f"teacher {teacher_config.spec}", total=teacher_config.epochs, unit="epoch") as bar:
        teacher_model, teacher = get_teacher(
            dataset, teacher_config, teacher_family, seed=config.seed, cache_dir=cache_dir,
            checkpoint=Path(config.teacher_checkpoint) if config.teacher_checkpoint else None,
            batching=config.batching(), keep_hidden=keep_hidden, metric=metric,
            on_epoch=lambda epoch, score, best: bar.update(1, **{f"val {metric.name}": score, "best": best}),
            device=config.device,
        )
    timings["teacher_seconds"] = time.perf_counter() - start
    how = "loaded from checkpoint" if config.teacher_checkpoint else (
        "used the cache, no training" if teacher.from_cache else f"trained in {timings['teacher_seconds']:.1f} s")
    score = "" if metric.name == "accuracy" else (
        f", val {metric.name} {teacher.val_score:.3f}, test {metric.name} {teacher.test_score:.3f}")
    reporter.message(
        f"teacher {teacher.spec}: {how}; val acc {teacher.val_acc:.3f}, test acc {teacher.test_acc:.3f}{score}, "
        f"{teacher.num_params:,} parameters ({teacher.cache_path})"
    )
    if config.label_shift == "adapt" and metric.name == "accuracy":
        teacher, why = adapt_to_label_shift(teacher, dataset, metric)
        if teacher.label_shift is None:
            reporter.message(f"teacher outputs not adapted to label shift: {why}")
        else:
            shift = teacher.label_shift
            metric = metric.weighted_to(shift["target_prior"])
            teacher = replace(teacher, val_score=metric.validation(teacher.logits, d.y, d.val_mask))
            reporter.message(
                f"teacher outputs adapted to the class shares of the unlabelled nodes (--label-shift adapt: "
                f"calibrated on validation, T={shift['temperature']:.2f}; estimated shares "
                f"{' '.join(f'{v:.3f}' for v in shift['target_prior'])}): class-weighted val acc "
                f"{teacher.val_score:.3f}, test acc {teacher.test_acc:.3f}; every "
                f"student is distilled from these and scored by validation accuracy weighted to these shares")

    not_smaller = _not_smaller(architectures, registry, dataset, teacher.num_params) if space.smaller_than_teacher else []
    if not_smaller:
        architectures = [a for a in architectures if a not in not_smaller]
        reporter.message(f"{len(not_smaller)} architectures with at least as many parameters as the teacher "
                         f"({teacher.num_params:,}) left out (the space's students_smaller_than_teacher): "
                         f"{', '.join(a.key for a in not_smaller[:6])}{', ...' if len(not_smaller) > 6 else ''}")
        if not architectures:
            raise UsageError(f"every architecture of the space has at least as many parameters as the teacher "
                             f"{teacher.spec} ({teacher.num_params:,}); use a larger teacher or smaller students")
    protocol = LatencyProtocol(config.latency_protocol, config.latency_batch, repeats=config.latency_repeats,
                               threads=config.latency_threads, device=config.device, seed=config.seed,
                               fanout=config.serving_fanout())
    start = time.perf_counter()
    bench = LatencyBench(dataset, protocol)
    cache = LatencyCache(cache_dir, dataset, protocol)
    families = registry.families
    counts = {"measured": 0, "cached": 0}

    def on_measured(key: str, m: LatencyMeasurement, cached: bool) -> None:
        if not key.startswith("teacher:"):
            counts["cached" if cached else "measured"] += 1

    def builder(arch: Architecture) -> Callable:
        extra = {"num_relations": dataset.num_relations} if families[arch.family].relational else {}
        return lambda: families[arch.family].build(dataset.num_features, dataset.num_classes, arch.num_layers,
                                                   arch.hidden_channels, **dict(arch.family_params), **extra)

    jobs = [(a.key, builder(a), families[a.family].num_hops(a.num_layers, **dict(a.family_params))) for a in architectures]
    teacher_hops = teacher_family.num_hops(teacher_config.num_layers, **dict(teacher_config.family_params))
    jobs.append((f"teacher:{teacher.spec}", lambda: teacher_model, teacher_hops))
    if config.latency_on == "worker":
        latency, hardware = _latency_on_workers(jobs, dataset, protocol, cache_dir, counts)
    else:
        with reporter.progress("latency table", total=len(jobs), unit="architecture") as bar:
            def on_measured_shown(key: str, m: LatencyMeasurement, cached: bool) -> None:
                on_measured(key, m, cached)
                bar.update(1, last=f"{key} {m.p50_ms:.2f} ms")

            latency = measure_all(jobs, bench, cache, on_measured_shown, budget_ms=config.budget_ms,
                                  complete={f"teacher:{teacher.spec}"}, before_timing=before_timing)
        hardware = hardware_label(protocol.device)
    timings["latency_seconds"] = time.perf_counter() - start
    teacher_latency = latency.pop(f"teacher:{teacher.spec}")
    feasible = [a for a in architectures if latency[a.key].complete and latency[a.key].p50_ms <= config.budget_ms]
    stopped = sum(not m.complete for m in latency.values())
    reporter.message(
        f"latency ({protocol.name}, batch {protocol.batch_size}, {protocol.threads} thread(s), "
        f"{hardware}): {len(architectures)} architectures, {counts['measured']} measured now, "
        f"{counts['cached']} from cache; {len(feasible)} within {config.budget_ms:g} ms"
        f"{f' ({stopped} stopped early, certainly over it)' if stopped else ''}; "
        f"teacher p50 {teacher_latency.p50_ms:.2f} ms"
    )
    if teacher_latency.p50_ms <= config.budget_ms:
        reporter.message(
            f"note: the teacher itself answers within the budget (p50 {teacher_latency.p50_ms:.2f} ms <= "
            f"{config.budget_ms:g} ms); a student is worth deploying only for its size or speed at a close score")
    if not feasible:
        fastest = min(architectures, key=lambda a: latency[a.key].p50_ms)
        raise UsageError(
            f"no architecture of the space meets --budget-ms {config.budget_ms:g}: the fastest, {fastest.key}, "
            f"has p50 {latency[fastest.key].p50_ms:.3f} ms; raise the budget or add smaller architectures"
        )
    chance = metric.chance_level(dataset.data.y, dataset.data.val_mask)
    start_params, started, skipped = resolve_start_points(space, feasible, registry.families, registry.methods)
    if started or skipped:
        reporter.message(f"starting with the space's start points: {', '.join(started) or 'none'}"
                         + (f"; skipped, not among what this search can draw (budget, --families, --methods): "
                            f"{', '.join(skipped)}" if skipped else ""))
    return Prepared(config, registry, space, dataset, teacher, teacher_latency, protocol, architectures, latency,
                    feasible, tracking_uri, cache_dir, timings, metric, chance, not_smaller, hardware,
                    teacher_selection=selection, start_params=start_params)


def _latency_on_workers(jobs, dataset: GraphDataset, protocol: LatencyProtocol, cache_dir: Path,
                        counts: dict[str, int]) -> tuple[dict[str, LatencyMeasurement], str]:
    """``--latency-on worker``: each node type of the Ray cluster times every job once
    (:func:`gkd_search.cluster.measure_on_workers`); an architecture's latency is its slowest
    node type's, since a student must answer within the budget wherever it is served."""
    from .cluster import measure_on_workers

    groups = measure_on_workers(jobs, dataset, protocol, cache_dir, cpus=protocol.threads)
    latency = {key: max((g.table[key] for g in groups), key=lambda m: m.p50_ms) for key, _, _ in jobs}
    for g in groups:
        measured = sum(1 for key in g.measured if not key.startswith("teacher:"))
        counts["measured"] += measured
        counts["cached"] += sum(1 for key, _, _ in jobs if not key.startswith("teacher:")) - measured
    labels = "; ".join(f"{g.hardware} ({len(g.node_ids)} worker node{'s' if len(g.node_ids) > 1 else ''})"
                       for g in groups)
    return latency, labels


def _check_buildable(architectures: list[Architecture], registry: Registry) -> None:
    for arch in architectures:
        try:
            family = registry.families[arch.family]
            extra = {"num_relations": 2} if family.relational else {}
            family.build(4, 2, arch.num_layers, arch.hidden_channels, **dict(arch.family_params), **extra)
        except UsageError as exc:
            raise SpaceError(f"architecture {arch.key} cannot be built: {exc}") from None


def _not_smaller(architectures: list[Architecture], registry: Registry, dataset: GraphDataset,
                 teacher_params: int) -> list[Architecture]:
    """The architectures with at least as many parameters as the teacher on ``dataset``."""
    out = []
    for arch in architectures:
        family = registry.families[arch.family]
        extra = {"num_relations": dataset.num_relations} if family.relational else {}
        model = family.build(dataset.num_features, dataset.num_classes, arch.num_layers, arch.hidden_channels,
                             **dict(arch.family_params), **extra)
        if count_parameters(model) >= teacher_params:
            out.append(arch)
    return out


class SearchInterrupted(KeyboardInterrupt):
    """Ctrl-C during a search: its run is marked KILLED and ``resume_command`` continues it."""

    def __init__(self, parent_run_id: str, resume_command: str) -> None:
        super().__init__(parent_run_id)
        self.parent_run_id = parent_run_id
        self.resume_command = resume_command


class _Ray:
    """Ray for one search: started once, in the background while the teacher trains
    (:class:`~gkd_search.background.BackgroundStart`, with the MLflow store), or joined at once
    (``--ray-address``, ``--latency-on worker``: fail fast), and shut down at the end."""

    def __init__(self, config: SearchConfig) -> None:
        self.config, self.started = config, False
        self.background = None

    def start_in_background(self, tracking_uri: str) -> None:
        """``prepare``'s ``start_services``: Ray (unless already up) and the store, in threads."""
        import ray

        from .background import BackgroundStart
        from .tracking import check_tracking_uri

        if ray.is_initialized():
            check_tracking_uri(tracking_uri)
            return
        self.background = BackgroundStart(self.config)
        self.background.start(tracking_uri)

    def wait_for_ray(self) -> None:
        if self.background is not None:
            self.background.wait_for_ray()

    def before_timing(self) -> None:
        """``prepare``'s ``before_timing``: the background start-ups done and Ray's processes
        quiet, so latency is measured on idle cores."""
        if self.background is not None:
            self.background.wait_until_quiet()

    def services_ready(self) -> dict[str, float]:
        """Wait for the background start-ups, raise what they raised; their timings."""
        if self.background is None:
            return {}
        self.background.wait()
        return self.background.timings

    def ensure(self) -> None:
        import ray

        if self.background is not None:
            self.background.wait_for_ray()
        if not ray.is_initialized():
            from .ray_backend import init_ray

            self.started = init_ray(self.config) or self.started

    def shutdown(self) -> None:
        if self.background is not None:
            self.background.shutdown_ray()
        if self.started:
            import ray

            ray.shutdown()


def run_search(config: SearchConfig, registry: Optional[Registry] = None,
               reporter: Optional[Reporter] = None, *, fresh: bool = False, resume=None) -> SearchSummary:
    """Run a whole search and return its summary (see :class:`SearchSummary`).

    Args:
        fresh: start even when a search with the same options was interrupted and could be
            resumed (else that is a :class:`UsageError` naming it).
        resume: a :class:`gkd_search.resume.ResumePoint` (``--resume``): continue that search.

    Raises:
        SearchInterrupted: Ctrl-C; the search run is KILLED and can be resumed.
        gkd_search.retry.TrackingUnavailable: the tracking store stayed unreachable; the
            records wait in the journal for ``--resume``.
    """
    from .cluster import check_cluster
    from .journal import SearchState
    from .resume import check_no_resumable_twin, config_to_json, resume_command, search_tags
    from .retry import TrackingUnavailable
    from .tracking import SearchTracker, resolve_tracking_uri

    reporter = reporter or Reporter()
    started = time.perf_counter()
    config.validate()
    ray_session = _Ray(config)
    state = None
    try:
        if config.ray_address or config.latency_on == "worker":  # fail fast, before any training
            ray_session.ensure()
            if config.ray_address:
                check_cluster(config.ray_address, config.storage_path)
        if resume is None and not fresh:
            cache = Path(config.cache_dir).expanduser() if config.cache_dir else default_cache_dir()
            check_no_resumable_twin(resolve_tracking_uri(config.tracking_uri), config.experiment, config, cache)
        prepared = prepare(config, registry, reporter, start_services=ray_session.start_in_background,
                           before_timing=ray_session.before_timing)
        prepared.timings.update(ray_session.services_ready())
        registry = prepared.registry
        tracker = SearchTracker(prepared.tracking_uri, config.experiment, dataset=prepared.dataset,
                                teacher_latency_ms_p50=prepared.teacher_latency.p50_ms, on_retry=reporter.message)
        if resume is None:
            run_name = f"search-{prepared.dataset.name}-{time.strftime('%Y%m%d-%H%M%S')}"
            tracker.start(run_name, _parent_params(prepared), prepared.teacher, tags=search_tags(config))
            if prepared.teacher_selection is not None:
                _log_teacher_candidates(tracker, prepared.teacher_selection)
            if prepared.teacher.label_shift is not None:
                _log_label_shift(tracker, prepared.teacher.label_shift)
            state = SearchState.create(prepared.cache_dir, tracker.parent_run_id, config_to_json(config))
            state.lock()
            results: list[TrialResult] = []
        else:
            state = resume.state
            state.lock()
            tracker.attach(resume.run_id)
            results = state.finished_results()
            tracker.reconcile(results)
        command = resume_command(tracker.parent_run_id, prepared.tracking_uri,
                                 Path(config.cache_dir) if config.cache_dir else None)
        reporter.message(f"search run {tracker.parent_run_id}; if it is interrupted, continue it with: {command}")
        try:
            results = _run_trials(prepared, tracker, reporter, state, results, ray_session,
                                  resumed=resume is not None)
            summary = _finish(prepared, tracker, results, time.perf_counter() - started)
            notify(registry.pm, "gkd_search_finished", summary=summary)
        except KeyboardInterrupt:
            _abort(tracker, "KILLED", "interrupted by the user")
            raise SearchInterrupted(tracker.parent_run_id, command) from None
        except TrackingUnavailable as exc:
            waiting = sum(1 for r in results if not r.run_id)
            raise TrackingUnavailable(f"{exc}; {waiting} trial record(s) wait in the journal {state.root}: when the "
                                      f"store answers again, finish the search with `{command}`") from None
        except BaseException as exc:
            _abort(tracker, "FAILED", f"{type(exc).__name__}: {exc}")
            raise
        state.remove()
        state = None
    finally:
        if state is not None:
            state.unlock()
        ray_session.shutdown()
    return summary


def _abort(tracker, status: str, reason: str) -> None:
    """Mark the search run ``status`` if the store answers; what went wrong stays the error."""
    import contextlib

    with contextlib.suppress(Exception):
        tracker.abort(status, reason)


def _log_teacher_candidates(tracker, selection: TeacherSelection) -> None:
    with tempfile.TemporaryDirectory(prefix="gkd-teachers-") as folder:
        tracker.log_artifact(selection.write_csv(Path(folder) / "teacher_candidates.csv"))
        if selection.class_prior is not None:
            prior = Path(folder) / "teacher_class_prior.json"
            prior.write_text(json.dumps({"class_prior": selection.class_prior, "ranking": RANKING}, indent=1))
            tracker.log_artifact(prior)


def _log_label_shift(tracker, label_shift: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory(prefix="gkd-teachers-") as folder:
        path = Path(folder) / "teacher_label_shift.json"
        path.write_text(json.dumps(label_shift, indent=1))
        tracker.log_artifact(path)


def _parent_params(p: Prepared) -> dict[str, Any]:
    c = p.config
    return {
        "dataset": p.dataset.name, "teacher": p.teacher.spec, "budget_ms": c.budget_ms, "trials": c.trials,
        "teacher_selection": "auto" if p.teacher_selection is not None else "given",
        "space": p.space.source, "seed": c.seed, "latency_protocol": p.protocol.name,
        "latency_batch": p.protocol.batch_size, "latency_repeats": p.protocol.repeats,
        "latency_warmup": p.protocol.warmup, "device": c.device, "hardware": p.hardware or hardware_label(c.device),
        "threads": p.protocol.threads, "epochs": p.space.training["epochs"].default,
        "max_concurrent": _max_concurrent(c), "cpus_per_trial": c.cpus_per_trial, "gpus_per_trial": c.gpus_per_trial,
        "methods": ",".join(p.space.methods), "families": ",".join(p.space.families),
        "n_architectures": len(p.architectures), "n_architectures_in_budget": len(p.feasible),
        "mini_batch": c.mini_batch, "batch_size": c.batch_size, "fanout": ",".join(map(str, c.batching().fanout)),
        "latency_fanout": ",".join(map(str, p.protocol.fanout)) or "all",
        "metric": p.metric.name, "select": c.select, "register_model": p.registered_model_name() or "",
        "pruner": c.pruner, "asha_grace_epochs": c.asha_grace_epochs if c.pruner == "asha" else "",
        "label_shift": c.label_shift if p.teacher.label_shift is not None else "off",
        "dataset_hash": p.dataset.content_hash(),
        "latency_on": c.latency_on, "trial_timeout": c.trial_timeout or "", "ray_address": c.ray_address or "",
        "storage_path": c.storage_path or "", "ray_nodes": _ray_nodes(c),
    }


def _ray_nodes(config: SearchConfig) -> int:
    """The live nodes of the cluster (1 for the local Ray)."""
    if not config.ray_address:
        return 1
    from .cluster import alive_nodes

    return len(alive_nodes())


def _max_concurrent(config: SearchConfig) -> int:
    if config.max_concurrent:
        return config.max_concurrent
    cpus = os.cpu_count() or 1
    if config.ray_address:  # the cluster's CPUs
        import ray

        if ray.is_initialized():
            cpus = int(ray.cluster_resources().get("CPU", cpus))
    return max(1, int(cpus // config.cpus_per_trial))


def _run_trials(prepared: Prepared, tracker, reporter: Reporter, state, results: list[TrialResult], ray_session,
                *, resumed: bool = False) -> list[TrialResult]:
    """Run the trials the search still needs (``--trials`` minus those in the journal).

    Each finished trial goes to the journal first, then to MLflow; a record the tracking store
    does not take (unreachable past the retry limit) waits in the journal and is logged, in
    order, as soon as the store answers again, at the latest before the selection.
    """
    from .ray_backend import make_searcher, run_tune, settle_study
    from .retry import TrackingUnavailable

    config = prepared.config
    pm = prepared.registry.pm

    def run_name(result: TrialResult) -> str:
        number = next(i for i, r in enumerate(results, 1) if r is result)
        return f"trial-{number:03d}-{result.spec.architecture_key()}-{result.spec.method}"

    def flush() -> bool:
        """Log every result the store does not have yet, in order; False if it is unreachable."""
        for waiting in [r for r in results if not r.run_id]:
            try:
                tracker.log_trial(waiting, prepared.teacher, run_name(waiting))
            except TrackingUnavailable:
                return False
            state.logged(waiting.trial_id, waiting.run_id)
        return True

    def record(result: TrialResult) -> None:
        results.append(result)
        result.degenerate = degenerate_reason(result, results, prepared.chance)
        state.finished(result)
        if not flush():
            reporter.message(f"MLflow is unreachable: trial {result.trial_id} waits in the journal {state.root}")
        notify(pm, "gkd_trial_finished", result=result)
        in_budget = [r for r in results if r.status == "ok" and r.latency_ms_p50 <= config.budget_ms]
        best = max((r.val_score for r in in_budget), default=None)
        reporter.trial(result, len(results), config.trials, len(in_budget), best)
        bar.update(1, **({} if best is None else {f"best val {prepared.metric.name}": best}))

    remaining = config.trials - len(results)
    if resumed:
        again = settle_study(state.study_url, {r.trial_id: r for r in results}) if remaining > 0 else 0
        replay = sum(1 for r in results if not r.run_id)
        reporter.message(f"resuming: {len(results)} of {config.trials} trials finished ({replay} logged from the "
                         f"journal now), {again} were running at the interruption and run again, "
                         f"{max(remaining - again, 0)} new")
        flush()
    if remaining > 0:
        ray_session.ensure()
        seed = config.seed if not resumed else config.seed + 7919 * (len(state.experiments()) + 1) + len(results)
        searcher = make_searcher(prepared, storage=state.study_url, sampler_seed=seed)
        local_root = (prepared.cache_dir / "ray_results").resolve()
        name = f"gkd-{uuid.uuid4().hex[:10]}"
        state.experiment(name)
        try:
            with reporter.progress("trials", total=config.trials, unit="trial") as bar:
                bar.update(len(results))
                run_tune(prepared, record, max_concurrent=_max_concurrent(config), experiment_dir=local_root / name,
                         num_samples=remaining, searcher=searcher, storage_path=config.storage_path,
                         started=state.started, student_dir=state.student_dir)
        finally:
            for old in state.experiments():  # the students are in the journal now
                _remove_experiment(config.storage_path or str(local_root), old)
    tracker.retry.offline = False  # one more full retry window before giving up
    if not flush():
        raise TrackingUnavailable(f"the MLflow tracking store {prepared.tracking_uri} is unreachable")
    return results


def _remove_experiment(storage: str, name: str) -> None:
    """Remove Ray Tune's folder ``name`` of ``storage`` (a folder or a ``pyarrow`` URI)."""
    import contextlib

    if "://" not in storage:
        shutil.rmtree(Path(storage) / name, ignore_errors=True)
        return
    import pyarrow.fs

    with contextlib.suppress(Exception):
        fs, path = pyarrow.fs.FileSystem.from_uri(storage)
        fs.delete_dir(f"{path.rstrip('/')}/{name}")


def _finish(prepared: Prepared, tracker, results: list[TrialResult], seconds: float) -> SearchSummary:
    from .plotting import pareto_plot

    config = prepared.config
    for r in results:  # a later `none` trial of the same architecture can reveal an earlier collapse
        reason = degenerate_reason(r, results, prepared.chance)
        if reason and not r.degenerate:
            r.degenerate = reason
            tracker.mark_degenerate(r)
    front = pareto_front(results)
    choice = select(results, config.budget_ms, config.select)
    selected = choice.selected
    for r in front:
        r.pareto = True
    if selected is not None:
        selected.selected = True
    summary = SearchSummary(
        dataset=prepared.dataset.name, budget_ms=config.budget_ms, teacher=prepared.teacher, results=results,
        pareto=front, selected=selected, parent_run_id=tracker.parent_run_id, tracking_uri=prepared.tracking_uri,
        student_path=selected.checkpoint if selected else None, seconds=seconds, metric=prepared.metric.name,
        select=choice.rule, best=choice.best, tolerance=choice.tolerance,
        teacher_latency_ms_p50=prepared.teacher_latency.p50_ms, experiment_id=tracker.experiment_id,
    )
    workdir = Path(tempfile.mkdtemp(prefix="gkd-search-"))
    try:
        plot = pareto_plot(results, front, selected, config.budget_ms, workdir / "pareto.png",
                           title=f"{prepared.dataset.name}: teacher {prepared.teacher.spec}", metric=prepared.metric.name,
                           teacher=(prepared.teacher_latency.p50_ms, prepared.teacher.val_score))
        table = _write_trials_csv(results, workdir / "trials.csv")
        latency_table = write_latency_table(
            {**prepared.latency, f"teacher:{prepared.teacher.spec}": prepared.teacher_latency}, workdir / "latency.csv")
        feasible = sum(1 for r in results if r.status == "ok" and r.latency_ms_p50 <= config.budget_ms)
        extra = {
            "search_seconds": seconds,
            "n_ok": sum(r.status == "ok" for r in results),
            "n_failed": sum(r.status == "failed" for r in results),
            "n_over_budget": sum(r.status == "over_budget" for r in results),
            "n_pruned": sum(r.status == "pruned" for r in results),
            "n_latency_incomplete": sum(not m.complete for m in prepared.latency.values()),
            "select_tolerance": choice.tolerance,
            **{k: v for k, v in prepared.timings.items()},
        }
        if selected is not None:
            # the selected student's numbers under the trials' own names too, so the search run's row
            # of the MLflow runs table compares with the trial rows
            extra.update({k: getattr(selected, k) for k in ("val_acc", "test_acc", "val_score", "test_score",
                                                             "latency_ms_p50", "params")})
            extra.update(compression_ratio=prepared.teacher.num_params / selected.params,
                         speedup=prepared.teacher_latency.p50_ms / selected.latency_ms_p50)
            extra.update(selected_val_acc=selected.val_acc, selected_test_acc=selected.test_acc,
                         selected_val_score=selected.val_score, selected_test_score=selected.test_score,
                         selected_latency_ms_p50=selected.latency_ms_p50,
                         selected_compression_ratio=prepared.teacher.num_params / selected.params,
                         selected_speedup=prepared.teacher_latency.p50_ms / selected.latency_ms_p50)
        if choice.best is not None:
            extra.update(best_val_score=choice.best.val_score, best_test_score=choice.best.test_score)
        checkpoint = Path(selected.checkpoint) if selected is not None and selected.checkpoint else None
        tracker.finish(summary, {"pareto.png": plot, "trials.csv": table, "latency.csv": latency_table}, feasible,
                       extra)
        if checkpoint is not None:
            student_dir, graph_file = _model_files(checkpoint, prepared, workdir)
            summary.model_uri, summary.registered_version = tracker.log_student_model(
                summary, student_dir, graph_file, prepared.dataset.num_classes, prepared.registered_model_name(),
                _lineage(prepared, summary))
            summary.registered_model = prepared.registered_model_name()
        tracker.describe(summary)
        tracker.end()
        if selected is not None:
            summary.student_path = f"runs:/{selected.run_id}/student"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return summary


def _model_files(checkpoint: Path, prepared: Prepared, workdir: Path) -> tuple[Path, Path]:
    """The selected student's files as the logged model holds them: ``student/`` (a copy of its
    checkpoint) and ``graph.pt`` (its :class:`~gkd_search.serving.ServingGraph`)."""
    from .student import load_student

    student_dir = workdir / "student"
    shutil.copytree(checkpoint, student_dir)
    student = load_student(student_dir, registry=prepared.registry)
    graph_file = workdir / "graph.pt"
    torch.save(student.serving_graph(prepared.dataset).state(), graph_file)
    return student_dir, graph_file


def _lineage(p: Prepared, summary: SearchSummary) -> dict[str, Any]:
    """Tags on the registered model version: where the student came from and what it measured."""
    s = summary.selected
    return {
        "gkd.search_run_id": summary.parent_run_id, "gkd.trial_run_id": s.run_id,
        "gkd.architecture": s.spec.architecture_key(), "gkd.method": s.spec.method,
        "gkd.teacher": p.teacher.spec, "gkd.teacher_cache_key": p.teacher.cache_key or "",
        "gkd.dataset": p.dataset.name, "gkd.dataset_hash": p.dataset.content_hash(),
        "gkd.budget_ms": p.config.budget_ms, "gkd.metric": p.metric.name, "gkd.select": summary.select,
        "gkd.val_score": s.val_score, "gkd.test_score": s.test_score,
        "gkd.latency_ms_p50": s.latency_ms_p50, "gkd.latency_protocol": p.protocol.name,
        "gkd.compression_ratio": round(p.teacher.num_params / s.params, 4),
        "gkd.speedup": round(p.teacher_latency.p50_ms / s.latency_ms_p50, 4),
    }


def _write_trials_csv(results: list[TrialResult], path: Path) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["run_id", "status", "family", "num_layers", "hidden_channels", "method", "val_acc",
                         "test_acc", "val_score", "test_score", "val_score_se", "latency_ms_p50", "params", "pareto",
                         "selected"])
        for r in results:
            writer.writerow([r.run_id, r.status, r.spec.family, r.spec.num_layers, r.spec.hidden_channels,
                             r.spec.method, r.val_acc, r.test_acc, r.val_score, r.test_score, r.val_score_se,
                             r.latency_ms_p50, r.params, r.pareto, r.selected])
    return path
