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
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import torch

from .datasets._files import resolve_data_root
from .datasets._options import parse_flag
from .distill.minibatch import Batching
from .errors import SpaceError, UsageError
from .graph_ops import parse_fanout
from .latency import LatencyBench, LatencyCache, LatencyMeasurement, LatencyProtocol, hardware_label, measure_all
from .pareto import pareto_front, select_student
from .registry import Registry, build_registry, notify
from .space import Architecture, SearchSpace, load_space, suggest_spec
from .teacher import TeacherConfig, get_teacher, read_checkpoint_config
from .teacher_search import AUTO, TeacherSelection, is_auto, select_teacher
from .trial import TrialContext
from .types import DatasetSpec, GraphDataset, SearchSummary, TeacherOutputs, TrialResult, TrialSpec

CACHE_ENV = "GKD_CACHE"


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "gkd-search").expanduser()


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
        if not self.budget_ms > 0:
            raise UsageError(f"--budget-ms must be a positive number of milliseconds, got {self.budget_ms:g}")
        if self.trials < 1:
            raise UsageError(f"--trials must be at least 1, got {self.trials}")
        if self.epochs is not None and self.epochs < 1:
            raise UsageError(f"--epochs must be at least 1, got {self.epochs}")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise UsageError(f"--max-concurrent must be at least 1, got {self.max_concurrent}")
        if self.cpus_per_trial <= 0 or self.gpus_per_trial < 0:
            raise UsageError("--cpus-per-trial must be > 0 and --gpus-per-trial >= 0")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise UsageError(f"--device must be cpu or cuda[:N], got {self.device!r}")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise UsageError(f"--device {self.device}: no CUDA device is visible; use --device cpu")
        if self.gpus_per_trial > 0 and not self.device.startswith("cuda"):
            raise UsageError("--gpus-per-trial needs --device cuda")
        LatencyProtocol(self.latency_protocol, self.latency_batch, repeats=self.latency_repeats,
                        threads=self.latency_threads, device=self.device)
        self.batching()


def parse_dataset(text: str) -> tuple[str, dict[str, str]]:
    """``synthetic:nodes=1000,edges=5000`` -> ``("synthetic", {"nodes": "1000", ...})``."""
    name, _, rest = text.partition(":")
    options: dict[str, str] = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--dataset {text!r}: option {item!r} is not key=value")
        options[key.strip()] = value.strip()
    return name.strip().lower(), options


def typed_dataset_options(spec: DatasetSpec, options: Mapping[str, str]) -> dict[str, Any]:
    """The ``--dataset`` options checked against ``spec.options`` and converted to the type of
    each option's default (``nodes=900`` -> ``900`` when the default is an ``int``; ``true``,
    ``false``, ``1``, ``0``, ``yes``, ``no`` for a ``bool``); a key ``spec.options`` does not
    declare is a :class:`UsageError`. Only the options given are returned (``load`` fills in
    the rest from its defaults)."""
    known = dict(spec.options)
    typed: dict[str, Any] = {}
    for key, text in options.items():
        if key not in known:
            raise UsageError(f"{spec.name}: unknown option {key!r} (known: {', '.join(known) or 'none'})")
        default = known[key]
        if isinstance(default, bool):
            typed[key] = parse_flag(spec.name, key, text)
        elif isinstance(default, (int, float)):
            kind, convert = ("an integer", int) if isinstance(default, int) else ("a number", float)
            try:
                typed[key] = convert(text)
            except ValueError:
                raise UsageError(f"{spec.name}: {key}={text!r} is not {kind}") from None
        else:
            typed[key] = text
    return typed


class Reporter:
    """Receives progress; the CLI prints it, the default stays silent."""

    def message(self, text: str) -> None:
        pass

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
    #: the candidates of ``--teacher auto`` (None when the teacher was given)
    teacher_selection: Optional[TeacherSelection] = None

    def context(self) -> TrialContext:
        return TrialContext(
            dataset=self.dataset, teacher=self.teacher, families=self.registry.families,
            methods=self.registry.methods, latency=self.latency, budget_ms=self.config.budget_ms,
            protocol=self.protocol, device=self.config.device,
            structural_losses=self.registry.losses, cache_dir=self.cache_dir / "methods",
            batching=self.config.batching(),
        )

    def suggest(self, trial) -> TrialSpec:
        return suggest_spec(trial, self.space, self.feasible, self.registry.families, self.registry.methods,
                            self.config.seed)


def prepare(config: SearchConfig, registry: Optional[Registry] = None, reporter: Optional[Reporter] = None,
            *, check_tracking: bool = True) -> Prepared:
    """Validate everything, load the data, get the teacher and time every architecture."""
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
    dataset = dataset_spec.load(resolve_data_root(config.data_root), cache_dir / "datasets", config.seed,
                                **dataset_options)
    timings["data_seconds"] = time.perf_counter() - start
    tracking_uri = resolve_tracking_uri(config.tracking_uri)
    if check_tracking:  # before any training
        check_tracking_uri(tracking_uri)
    d = dataset.data
    reporter.message(
        f"dataset {dataset.name}: {dataset.num_nodes:,} nodes, {d.edge_index.size(1):,} edges, "
        f"{dataset.num_features} features, {dataset.num_classes} classes, split "
        f"{int(d.train_mask.sum())}/{int(d.val_mask.sum())}/{int(d.test_mask.sum())}"
    )

    start = time.perf_counter()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    selection = None
    if teacher_config is None:
        reporter.message("teacher auto: the best of the candidate teachers by validation accuracy (docs/teachers.md)")
        selection = select_teacher(dataset, registry.families, seed=config.seed, cache_dir=cache_dir,
                                   batching=config.batching(), progress=reporter.message)
        teacher_config = selection.config
    teacher_family = registry.get("family", teacher_config.family)
    keep_hidden = any("hidden" in registry.methods[m].requires for m in space.methods)
    teacher_model, teacher = get_teacher(
        dataset, teacher_config, teacher_family, seed=config.seed, cache_dir=cache_dir,
        checkpoint=Path(config.teacher_checkpoint) if config.teacher_checkpoint else None,
        batching=config.batching(), keep_hidden=keep_hidden,
    )
    timings["teacher_seconds"] = time.perf_counter() - start
    how = "loaded from checkpoint" if config.teacher_checkpoint else (
        "used the cache, no training" if teacher.from_cache else f"trained in {timings['teacher_seconds']:.1f} s")
    reporter.message(
        f"teacher {teacher.spec}: {how}; val acc {teacher.val_acc:.3f}, test acc {teacher.test_acc:.3f}, "
        f"{teacher.num_params:,} parameters ({teacher.cache_path})"
    )

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
    latency = measure_all(jobs, bench, cache, on_measured)
    timings["latency_seconds"] = time.perf_counter() - start
    teacher_latency = latency.pop(f"teacher:{teacher.spec}")
    feasible = [a for a in architectures if latency[a.key].p50_ms <= config.budget_ms]
    reporter.message(
        f"latency ({protocol.name}, batch {protocol.batch_size}, {protocol.threads} thread(s), "
        f"{hardware_label(protocol.device)}): {len(architectures)} architectures, {counts['measured']} measured now, "
        f"{counts['cached']} from cache; {len(feasible)} within {config.budget_ms:g} ms; "
        f"teacher p50 {teacher_latency.p50_ms:.2f} ms"
    )
    if not feasible:
        fastest = min(architectures, key=lambda a: latency[a.key].p50_ms)
        raise UsageError(
            f"no architecture of the space meets --budget-ms {config.budget_ms:g}: the fastest, {fastest.key}, "
            f"has p50 {latency[fastest.key].p50_ms:.3f} ms; raise the budget or add smaller architectures"
        )
    return Prepared(config, registry, space, dataset, teacher, teacher_latency, protocol, architectures, latency,
                    feasible, tracking_uri, cache_dir, timings, teacher_selection=selection)


def _check_buildable(architectures: list[Architecture], registry: Registry) -> None:
    for arch in architectures:
        try:
            family = registry.families[arch.family]
            extra = {"num_relations": 2} if family.relational else {}
            family.build(4, 2, arch.num_layers, arch.hidden_channels, **dict(arch.family_params), **extra)
        except UsageError as exc:
            raise SpaceError(f"architecture {arch.key} cannot be built: {exc}") from None


def run_search(config: SearchConfig, registry: Optional[Registry] = None,
               reporter: Optional[Reporter] = None) -> SearchSummary:
    """Run a whole search and return its summary (see :class:`SearchSummary`)."""
    from .tracking import SearchTracker

    reporter = reporter or Reporter()
    started = time.perf_counter()
    prepared = prepare(config, registry, reporter)
    registry = prepared.registry
    tracker = SearchTracker(prepared.tracking_uri, config.experiment)
    run_name = f"search-{prepared.dataset.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    tracker.start(run_name, _parent_params(prepared), prepared.teacher)
    if prepared.teacher_selection is not None:
        _log_teacher_candidates(tracker, prepared.teacher_selection)
    results: list[TrialResult] = []
    started_ray = False
    experiment_dir = (prepared.cache_dir / "ray_results" / f"gkd-{uuid.uuid4().hex[:10]}").resolve()
    try:
        from .ray_backend import init_ray

        started_ray = init_ray(config)
        results = _run_trials(prepared, tracker, reporter, experiment_dir)
        summary = _finish(prepared, tracker, results, time.perf_counter() - started)
        notify(registry.pm, "gkd_search_finished", summary=summary)
    except KeyboardInterrupt:
        tracker.abort("KILLED", "interrupted by the user")
        raise
    except BaseException as exc:
        tracker.abort("FAILED", f"{type(exc).__name__}: {exc}")
        raise
    finally:
        if started_ray:
            import ray

            ray.shutdown()
        shutil.rmtree(experiment_dir, ignore_errors=True)  # the selected student is in MLflow now
    return summary


def _log_teacher_candidates(tracker, selection: TeacherSelection) -> None:
    with tempfile.TemporaryDirectory(prefix="gkd-teachers-") as folder:
        tracker.log_artifact(selection.write_csv(Path(folder) / "teacher_candidates.csv"))


def _parent_params(p: Prepared) -> dict[str, Any]:
    c = p.config
    return {
        "dataset": p.dataset.name, "teacher": p.teacher.spec, "budget_ms": c.budget_ms, "trials": c.trials,
        "teacher_selection": "auto" if p.teacher_selection is not None else "given",
        "space": p.space.source, "seed": c.seed, "latency_protocol": p.protocol.name,
        "latency_batch": p.protocol.batch_size, "latency_repeats": p.protocol.repeats,
        "latency_warmup": p.protocol.warmup, "device": c.device, "hardware": hardware_label(c.device),
        "threads": p.protocol.threads, "epochs": p.space.training["epochs"].default,
        "max_concurrent": _max_concurrent(c), "cpus_per_trial": c.cpus_per_trial, "gpus_per_trial": c.gpus_per_trial,
        "methods": ",".join(p.space.methods), "families": ",".join(p.space.families),
        "n_architectures": len(p.architectures), "n_architectures_in_budget": len(p.feasible),
        "mini_batch": c.mini_batch, "batch_size": c.batch_size, "fanout": ",".join(map(str, c.batching().fanout)),
        "latency_fanout": ",".join(map(str, p.protocol.fanout)) or "all",
    }


def _max_concurrent(config: SearchConfig) -> int:
    if config.max_concurrent:
        return config.max_concurrent
    return max(1, int((os.cpu_count() or 1) // config.cpus_per_trial))


def _run_trials(prepared: Prepared, tracker, reporter: Reporter, experiment_dir: Path) -> list[TrialResult]:
    from .ray_backend import run_tune

    config = prepared.config
    results: list[TrialResult] = []
    pm = prepared.registry.pm

    def record(result: TrialResult) -> None:
        results.append(result)
        name = f"trial-{len(results):03d}-{result.spec.architecture_key()}-{result.spec.method}"
        tracker.log_trial(result, prepared.teacher, name)
        notify(pm, "gkd_trial_finished", result=result)
        in_budget = [r for r in results if r.status == "ok" and r.latency_ms_p50 <= config.budget_ms]
        best = max((r.val_acc for r in in_budget), default=None)
        reporter.trial(result, len(results), config.trials, len(in_budget), best)

    run_tune(prepared, record, max_concurrent=_max_concurrent(config), experiment_dir=experiment_dir)
    return results


def _finish(prepared: Prepared, tracker, results: list[TrialResult], seconds: float) -> SearchSummary:
    from .plotting import pareto_plot

    config = prepared.config
    front = pareto_front(results)
    selected = select_student(results, config.budget_ms)
    for r in front:
        r.pareto = True
    if selected is not None:
        selected.selected = True
    summary = SearchSummary(
        dataset=prepared.dataset.name, budget_ms=config.budget_ms, teacher=prepared.teacher, results=results,
        pareto=front, selected=selected, parent_run_id=tracker.parent_run_id, tracking_uri=prepared.tracking_uri,
        student_path=selected.checkpoint if selected else None, seconds=seconds,
    )
    workdir = Path(tempfile.mkdtemp(prefix="gkd-search-"))
    try:
        plot = pareto_plot(results, front, selected, config.budget_ms, workdir / "pareto.png",
                           title=f"{prepared.dataset.name}: teacher {prepared.teacher.spec}")
        table = _write_trials_csv(results, workdir / "trials.csv")
        feasible = sum(1 for r in results if r.status == "ok" and r.latency_ms_p50 <= config.budget_ms)
        extra = {
            "search_seconds": seconds,
            "teacher_latency_ms_p50": prepared.teacher_latency.p50_ms,
            "n_ok": sum(r.status == "ok" for r in results),
            "n_failed": sum(r.status == "failed" for r in results),
            "n_over_budget": sum(r.status == "over_budget" for r in results),
            **{k: v for k, v in prepared.timings.items()},
        }
        if selected is not None:
            extra.update(selected_val_acc=selected.val_acc, selected_test_acc=selected.test_acc,
                         selected_latency_ms_p50=selected.latency_ms_p50)
        tracker.finish(summary, {"pareto.png": plot, "trials.csv": table}, feasible, extra)
        if selected is not None:
            summary.student_path = f"runs:/{selected.run_id}/student"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return summary


def _write_trials_csv(results: list[TrialResult], path: Path) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["run_id", "status", "family", "num_layers", "hidden_channels", "method", "val_acc",
                         "test_acc", "latency_ms_p50", "params", "pareto", "selected"])
        for r in results:
            writer.writerow([r.run_id, r.status, r.spec.family, r.spec.num_layers, r.spec.hidden_channels,
                             r.spec.method, r.val_acc, r.test_acc, r.latency_ms_p50, r.params, r.pareto, r.selected])
    return path
