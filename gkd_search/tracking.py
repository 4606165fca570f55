"""Everything MLflow: the tracking URI check, the search's parent run, one child run per trial,
the Pareto/selected tags and the artifacts.

Names users and the MLflow UI rely on (parent: ``gkd.role=search``; children: ``gkd.role=trial``,
``gkd.status``, ``gkd.pareto``, ``gkd.selected``) are documented in ``docs/mlflow.md``.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Optional
from urllib.parse import urlparse

from .errors import TrackingError
from .types import GraphDataset, SearchSummary, TeacherOutputs, TrialResult

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
DEFAULT_EXPERIMENT = "gkd-search"
PARENT_TAG = "mlflow.parentRunId"
MAX_PARAM_LENGTH = 6000


def resolve_tracking_uri(uri: Optional[str]) -> str:
    """``--tracking-uri``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlruns/mlflow.db``."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def _sqlite_path(uri: str) -> Optional[Path]:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):])


def existing_store(uri: Optional[str]) -> str:
    """The tracking URI for a read (``load_student``): a sqlite store must already exist, so a
    read never creates an empty ``mlflow.db``.

    Raises:
        TrackingError: naming the missing database and how to point at the right one.
    """
    uri = resolve_tracking_uri(uri)
    db = _sqlite_path(uri)
    if db is not None and not db.is_file():
        raise TrackingError(f"no MLflow store at {uri} (no file {db.resolve()}): run from the folder the search ran "
                            "in, or pass tracking_uri= / set MLFLOW_TRACKING_URI to the search's store")
    return uri


def check_tracking_uri(uri: str, open_it: bool = True) -> None:
    """Fail fast, before any training, when the tracking store cannot be used.

    ``open_it=False`` runs only the cheap checks (the server answers, the database's folder is
    writable); :func:`open_store` does the rest (a search runs it in the background).

    Raises:
        TrackingError: with the URI and how to fix it.
    """
    scheme = urlparse(uri).scheme
    if scheme in ("http", "https"):
        import requests

        try:
            response = requests.get(uri.rstrip("/") + "/health", timeout=5)
        except requests.RequestException as exc:
            raise TrackingError(
                f"cannot reach the MLflow tracking server at {uri} ({type(exc).__name__}); start it "
                f"(mlflow server --host 127.0.0.1) or use --tracking-uri {DEFAULT_TRACKING_URI}"
            ) from None
        if response.status_code != 200:
            raise TrackingError(f"MLflow tracking server at {uri} answered /health with HTTP {response.status_code}")
        return
    db = _sqlite_path(uri)
    if db is not None:
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TrackingError(f"cannot create the folder of the MLflow database {db} ({exc.strerror})") from None
        if not os.access(db.parent, os.W_OK):
            raise TrackingError(f"the folder of the MLflow database {db} is not writable")
    elif scheme not in ("sqlite", "postgresql", "mysql", "mssql", "databricks"):
        raise TrackingError(
            f"unsupported tracking URI {uri!r}: use {DEFAULT_TRACKING_URI}, another database URI or an http(s) server"
        )
    if open_it:
        open_store(uri)


def open_store(uri: str) -> None:
    """Open the tracking store once (a new sqlite store is created here: its schema migrations
    take about 2 s); MLflow keeps the opened store for every later client of the same URI.

    Raises:
        TrackingError: the store cannot be used.
    """
    db = _sqlite_path(uri)
    try:
        from mlflow.tracking import MlflowClient

        with _store_creation_lock(db):
            MlflowClient(uri).search_experiments(max_results=1)
            if db is not None:
                _write_ahead_log(db)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise TrackingError(f"cannot use the MLflow tracking URI {uri}: {first}") from None


@contextlib.contextmanager
def tracking_uri_for_block(uri: str):
    """``mlflow.set_tracking_uri(uri)`` for a block (``mlflow.pyfunc.log_model`` has no URI
    argument), then MLflow's global URI and ``$MLFLOW_TRACKING_URI`` exactly as they were: MLflow's
    setter also exports the variable, and a search run from Python must not leave it set for the
    caller's later child processes (they would log to this search's store)."""
    import mlflow
    from mlflow.tracking._tracking_service import utils as tracking_utils

    old_global = getattr(tracking_utils, "_tracking_uri", None)
    old_env = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(old_global)
        if old_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = old_env


@contextlib.contextmanager
def _store_creation_lock(db: Optional[Path]):
    """Two searches started at once against one new sqlite store: one creates the tables (MLflow's
    migrations), the other waits (``flock`` on ``<db>.lock``), instead of both migrating."""
    if db is None:
        yield
        return
    import fcntl

    with open(f"{db}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_ahead_log(db: Path) -> None:
    """SQLite's write-ahead log (a setting stored in the file): a search reading the store does
    not block another one writing to it; writers still take turns (their "database is locked"
    waits are retried, :mod:`gkd_search.retry`)."""
    import sqlite3

    connection = sqlite3.connect(str(db), timeout=30)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
    finally:
        connection.close()


@contextlib.contextmanager
def no_progress_bars():
    """MLflow's artifact progress bars off for the block (``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR``)."""
    previous = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = previous


@contextlib.contextmanager
def _quiet_mlflow():
    """MLflow's own chatter while a model is logged (progress bars, "Successfully registered
    model", hints) stays out of the search's output; what it wrote is shown if logging fails."""
    import io
    import logging
    import warnings

    captured = io.StringIO()
    loggers = [logging.getLogger(name) for name in ("mlflow", "mlflow.pyfunc", "mlflow.models")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), no_progress_bars(), contextlib.redirect_stderr(captured), \
                contextlib.redirect_stdout(captured):
            warnings.simplefilter("ignore")
            yield
    except BaseException:
        sys.stderr.write(captured.getvalue()[-4000:])
        raise
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _pip_requirements() -> list[str]:
    """What the logged model needs, pinned to the versions it was logged with (given, not
    inferred: inference loads the model in a subprocess). gkd-search itself is not on PyPI:
    serve from an environment where it is installed (``--env-manager local``)."""
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for package in ("gkd-search", "torch", "torch-geometric", "mlflow", "pandas", "scikit-learn"):
        try:
            pins.append(f"{package}=={version(package).split('+')[0]}")
        except PackageNotFoundError:
            pins.append(package)
    return pins


def _fmt(value: Any) -> str:
    text = repr(value) if isinstance(value, float) else str(value)
    return text[:MAX_PARAM_LENGTH]


def trial_params(result: TrialResult) -> dict[str, str]:
    """Every hyperparameter of a trial under its own name."""
    spec = result.spec
    params: dict[str, Any] = {
        "family": spec.family,
        "num_layers": spec.num_layers,
        "hidden_channels": spec.hidden_channels,
        "method": spec.method,
        "seed": spec.seed,
        **spec.family_params,
        **spec.method_params,
        **spec.training,
    }
    if result.training_mode is not None:
        params["training_mode"] = result.training_mode
    return {k: _fmt(v) for k, v in params.items()}


def placement_tags(placement: Mapping[str, Any]) -> dict[str, str]:
    """Where a trial ran: ``gkd.ray_node`` (the Ray node id), ``gkd.ray_node_ip``,
    ``gkd.hostname``, ``gkd.ray_resources`` (what Ray assigned, e.g. ``CPU=1,GPU=0.25``) and
    ``gkd.gpu_ids``."""
    if not placement:
        return {}
    resources = placement.get("resources") or {}
    tags = {
        "gkd.ray_node": str(placement.get("node_id", "")),
        "gkd.ray_node_ip": str(placement.get("node_ip", "")),
        "gkd.hostname": str(placement.get("hostname", "")),
        "gkd.ray_resources": ",".join(f"{k}={v:g}" for k, v in sorted(resources.items())),
    }
    if placement.get("gpu_ids"):
        tags["gkd.gpu_ids"] = ",".join(map(str, placement["gpu_ids"]))
    return tags


def trial_metrics(result: TrialResult, teacher: TeacherOutputs,
                  teacher_latency_ms_p50: Optional[float] = None) -> dict[str, float]:
    """A trial's MLflow metrics; ``speedup`` is the teacher's p50 over the student's, both timed
    with the same protocol."""
    speedup = None
    if teacher_latency_ms_p50 and result.latency_ms_p50:
        speedup = teacher_latency_ms_p50 / result.latency_ms_p50
    metrics: dict[str, Optional[float]] = {
        "latency_ms_p50": result.latency_ms_p50,
        "latency_ms_p95": result.latency_ms_p95,
        "params": result.params,
        "compression_ratio": teacher.num_params / result.params if result.params else None,
        "speedup": speedup,
        "latency_complete": None if result.latency_complete is None else float(result.latency_complete),
        "trial_seconds": result.trial_seconds,
        "peak_gpu_mb": result.peak_gpu_mb,  # a trial on a GPU: its peak CUDA memory (none on a CPU)
    }
    if result.status == "failed":  # what a stopped trial cost (distill/guard.py)
        metrics.update(epochs_run=result.epochs_run, train_seconds=result.train_seconds)
    if result.status == "pruned":  # stopped by the scheduler: where, and its best score then
        metrics.update(epochs_run=result.epochs_run, last_val_score=result.last_val_score,
                       train_seconds=result.train_seconds)
    if result.status == "ok":
        metrics.update(
            val_acc=result.val_acc,
            test_acc=result.test_acc,
            val_score=result.val_score,
            test_score=result.test_score,
            val_score_se=result.val_score_se,
            acc_retention=result.test_acc / teacher.test_acc if teacher.test_acc else None,
            train_seconds=result.train_seconds,
            epochs_run=result.epochs_run,
            train_seconds_per_epoch=result.train_seconds_per_epoch,
            peak_rss_mb=result.peak_rss_mb,
        )
    return {k: metric_value(v) for k, v in metrics.items() if v is not None and not math.isnan(float(v))}


def metric_value(value: Any) -> float:
    """A metric as logged: rounded to 6 decimals, so the MLflow UI shows 0.82, not the float32
    0.8199999928 (accuracies are counts over at most millions of nodes; latencies are ms)."""
    return round(float(value), 6)


def dataset_input(dataset: GraphDataset):
    """The graph as an MLflow input dataset: name, digest (:meth:`GraphDataset.content_hash`),
    source (the file or data root it came from) and a tensor schema, so the UI's Dataset
    column shows it."""
    import warnings

    import numpy as np
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.types import Schema, TensorSpec

    d = dataset.data
    schema = Schema([
        TensorSpec(np.dtype(np.float32), (dataset.num_nodes, dataset.num_features), "x"),
        TensorSpec(np.dtype(np.int64), (2, int(d.edge_index.size(1))), "edge_index"),
        TensorSpec(np.dtype(np.int64), (dataset.num_nodes,), "y"),
    ])
    if dataset.source:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # several sources match a local path; they are equivalent
            source = resolve_dataset_source(dataset.source)
    else:  # generated (synthetic) or downloaded: the code that made it
        source = CodeDatasetSource(tags={"mlflow.source.name": f"gkd-search dataset {dataset.name}"})
    return MetaDataset(source, name=dataset.name, digest=dataset.content_hash(), schema=schema)


def _dataset_inputs(dataset: Optional[GraphDataset]):
    if dataset is None:
        return []
    from mlflow.entities import DatasetInput, InputTag

    entity = dataset_input(dataset)._to_mlflow_entity()
    return [DatasetInput(entity, tags=[InputTag("mlflow.data.context", "training")])]


class SearchTracker:
    """Writes one search to MLflow. Every child run is created and ended in one call, so an
    interrupted search leaves no child run RUNNING (``--resume`` removes one a ``kill -9`` cut
    off and logs it again from the journal); :meth:`abort` ends the parent as KILLED.

    Every MLflow call is retried with back-off while the store is unreachable or locked
    (:mod:`gkd_search.retry`); past the limit it raises
    :class:`~gkd_search.retry.TrackingUnavailable`, and the search keeps the record in its
    journal for later."""

    def __init__(self, uri: str, experiment: str = DEFAULT_EXPERIMENT, dataset: Optional[GraphDataset] = None,
                 teacher_latency_ms_p50: Optional[float] = None, on_retry=None) -> None:
        from mlflow.tracking import MlflowClient

        from .retry import RetryingClient, RetryPolicy

        if urlparse(uri).scheme in ("http", "https"):
            # one retry loop (ours, with its limit) rather than MLflow's per-request one (minutes)
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
        self.uri = uri
        self.retry = RetryPolicy(uri, on_retry=on_retry)
        self.client = RetryingClient(MlflowClient(uri), self.retry)
        self.experiment_id = self._experiment(experiment)
        self.parent_run_id: Optional[str] = None
        self.trial_runs: dict[str, str] = {}
        self._partial: dict[str, str] = {}  # trial id -> a run created by a log_trial that did not finish
        self.dataset = dataset
        self.teacher_latency_ms_p50 = teacher_latency_ms_p50
        self._inputs = _dataset_inputs(dataset)

    def _experiment(self, name: str) -> str:
        """The experiment's id (created if new), tagged as model training with the trials view
        (:mod:`gkd_search.mlflow_ui`)."""
        from . import mlflow_ui

        existing = self.client.get_experiment_by_name(name)
        if existing is not None:
            experiment_id = existing.experiment_id
        else:
            db = _sqlite_path(self.uri)
            location = (db.parent.resolve() / "artifacts").as_uri() if db is not None else None
            try:
                experiment_id = self.client.create_experiment(name, artifact_location=location)
            except Exception as exc:  # another search created it a moment ago
                existing = self.client.get_experiment_by_name(name)
                if existing is None:
                    raise exc from None
                experiment_id = existing.experiment_id
        tags = existing.tags if existing is not None else {}
        for key, value in ((mlflow_ui.EXPERIMENT_KIND_TAG, mlflow_ui.EXPERIMENT_KIND),
                           (mlflow_ui.VIEW_TAG, mlflow_ui.trials_view())):
            if tags.get(key) != value:
                self.client.set_experiment_tag(experiment_id, key, value)
        return experiment_id

    def describe(self, summary: SearchSummary) -> None:
        """The search run's description (``mlflow.note.content``): see
        :func:`gkd_search.mlflow_ui.search_description`."""
        from . import mlflow_ui

        self.client.set_tag(self.parent_run_id, mlflow_ui.NOTE_TAG,
                            mlflow_ui.search_description(summary, self.experiment_id))

    def start(self, run_name: str, params: Mapping[str, Any], teacher: TeacherOutputs,
              tags: Optional[Mapping[str, str]] = None) -> str:
        from mlflow.entities import Metric, Param

        run = self.client.create_run(self.experiment_id, run_name=run_name,
                                     tags={"gkd.role": "search", "gkd.status": "running", **(tags or {})})
        self.parent_run_id = run.info.run_id
        now = int(time.time() * 1000)
        metrics = {"teacher_val_acc": teacher.val_acc, "teacher_test_acc": teacher.test_acc,
                   "teacher_val_score": teacher.val_score, "teacher_test_score": teacher.test_score,
                   "teacher_params": teacher.num_params, "teacher_latency_ms_p50": self.teacher_latency_ms_p50}
        if teacher.label_shift is not None:  # the scores above are the adapted outputs'; these, as trained
            metrics.update(teacher_val_acc_unadapted=teacher.label_shift["val_acc_before"],
                           teacher_test_acc_unadapted=teacher.label_shift["test_acc_before"])
        self.client.log_batch(
            self.parent_run_id,
            metrics=[Metric(k, metric_value(v), now, 0) for k, v in metrics.items() if v is not None],
            params=[Param(k, _fmt(v)) for k, v in params.items()],
        )
        if self._inputs:
            self.client.log_inputs(self.parent_run_id, datasets=self._inputs)
        return self.parent_run_id

    def attach(self, parent_run_id: str) -> None:
        """Continue the search run ``parent_run_id`` (``--resume``): RUNNING again, and the
        resume counted in tag ``gkd.resumes``."""
        run = self.client.get_run(parent_run_id)
        self.parent_run_id = parent_run_id
        resumes = int(run.data.tags.get("gkd.resumes", "0")) + 1
        self.client.update_run(parent_run_id, status="RUNNING")
        self.client.set_tag(parent_run_id, "gkd.status", "running")
        self.client.set_tag(parent_run_id, "gkd.resumes", str(resumes))

    def trial_runs_in_store(self) -> list:
        """Every child run of the search run, as the store has it now."""
        runs, token = [], None
        while True:
            page = self.client.search_runs([self.experiment_id], f"tags.`{PARENT_TAG}` = '{self.parent_run_id}'",
                                           max_results=1000, page_token=token)
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def reconcile(self, results: list[TrialResult]) -> int:
        """Match ``results`` (the journal) with the store: a result whose trial already has a
        finished run gets that run id; a run an interruption cut off (still RUNNING), or a
        second run of one trial, is deleted (the journal logs it again). Returns the number of
        runs deleted."""
        by_trial: dict[str, list] = {}
        for run in sorted(self.trial_runs_in_store(), key=lambda r: r.info.start_time or 0):
            by_trial.setdefault(run.data.tags.get("gkd.trial_id", ""), []).append(run)
        deleted = 0
        for result in results:
            complete = [r for r in by_trial.get(result.trial_id, []) if r.info.status in ("FINISHED", "FAILED")]
            keep = complete[0].info.run_id if complete else None
            for run in by_trial.get(result.trial_id, []):
                if run.info.run_id != keep:
                    self.client.delete_run(run.info.run_id)
                    deleted += 1
            result.run_id = keep
            if keep:
                self.trial_runs[result.trial_id] = keep
        return deleted

    def log_trial(self, result: TrialResult, teacher: TeacherOutputs, run_name: str) -> str:
        from mlflow.entities import Metric, Param

        tags = {
            PARENT_TAG: self.parent_run_id,
            "gkd.role": "trial",
            "gkd.status": result.status,
            "gkd.pareto": "false",
            "gkd.selected": "false",
            "gkd.trial_id": result.trial_id,
            "gkd.architecture": result.spec.architecture_key(),
            "gkd.retries": str(result.retries),
            **placement_tags(result.placement),
        }
        if result.degenerate:
            tags["gkd.degenerate"] = "true"
            tags["gkd.degenerate_reason"] = result.degenerate[:4000]
        if result.error:
            tags["gkd.error"] = result.error[:4000]
        if result.failure:
            tags["gkd.failure"] = result.failure
        if result.rerun_of:
            tags["gkd.rerun_of"] = result.rerun_of
        if result.error_detail:
            tags["gkd.error_detail"] = result.error_detail[:4000]
        if result.traceback:
            tags["gkd.traceback"] = result.traceback[-4000:]
        run_id = self._partial.get(result.trial_id)
        if run_id is None:
            run = self.client.create_run(self.experiment_id, run_name=run_name, tags=tags)
            run_id = self._partial[result.trial_id] = run.info.run_id
        try:
            now = int(time.time() * 1000)
            self.client.log_batch(
                run_id,
                metrics=[Metric(k, v, now, 0) for k, v in
                         trial_metrics(result, teacher, self.teacher_latency_ms_p50).items()],
                params=[Param(k, v) for k, v in trial_params(result).items()],
            )
            if self._inputs:
                self.client.log_inputs(run_id, datasets=self._inputs)
            if result.matrices:
                self._log_heatmaps(run_id, result)
        finally:
            self.client.set_terminated(run_id, "FAILED" if result.status == "failed" else "FINISHED")
        self._partial.pop(result.trial_id, None)
        self.trial_runs[result.trial_id] = run_id
        result.run_id = run_id
        return run_id

    def mark_degenerate(self, result: TrialResult) -> None:
        """Tag an already logged trial as collapsed (``gkd.degenerate``, with the reason)."""
        if result.run_id:
            self.client.set_tag(result.run_id, "gkd.degenerate", "true")
            self.client.set_tag(result.run_id, "gkd.degenerate_reason", (result.degenerate or "")[:4000])

    def _log_heatmaps(self, run_id: str, result: TrialResult) -> None:
        """The loss's layer-pair matrices as PNGs under ``heatmaps/`` and as one JSON file."""
        import json
        import tempfile

        from .plotting import layer_heatmaps

        with tempfile.TemporaryDirectory(prefix="gkd-heatmaps-") as folder:
            layer_heatmaps(result.matrices, Path(folder))
            (Path(folder) / "matrices.json").write_text(json.dumps(result.matrices))
            self.client.log_artifacts(run_id, folder, "heatmaps")

    def log_artifact(self, path: Path) -> None:
        """One file as an artifact of the search run (``teacher_candidates.csv``)."""
        self.client.log_artifact(self.parent_run_id, str(path))

    def finish(self, summary: SearchSummary, artifacts: Mapping[str, Path], n_feasible: int,
               extra_metrics: Mapping[str, float]) -> None:
        """Tag the front and the selected trial, log the search's artifacts and metrics; the caller
        then logs the model (:meth:`log_student_model`), :meth:`describe` s and :meth:`end` s."""
        from mlflow.entities import Metric

        self.reconcile(summary.results)  # exactly one run per trial, whatever the retries did
        front_ids = {r.trial_id for r in summary.pareto}
        for result in summary.results:
            if result.run_id is None:
                continue
            if result.trial_id in front_ids:
                self.client.set_tag(result.run_id, "gkd.pareto", "true")
        if summary.selected is not None and summary.selected.run_id:
            self.client.set_tag(summary.selected.run_id, "gkd.selected", "true")
            self.client.set_tag(self.parent_run_id, "gkd.selected_run_id", summary.selected.run_id)
            if summary.student_path:
                self.client.log_artifacts(summary.selected.run_id, summary.student_path, "student")
        if summary.best is not None and summary.best.run_id:
            self.client.set_tag(self.parent_run_id, "gkd.best_run_id", summary.best.run_id)
        for path in artifacts.values():
            self.client.log_artifact(self.parent_run_id, str(path))
        now = int(time.time() * 1000)
        metrics = {"n_feasible": n_feasible, **extra_metrics}
        self.client.log_batch(self.parent_run_id, metrics=[Metric(k, metric_value(v), now, 0) for k, v in metrics.items()
                                                           if v is not None and not math.isnan(float(v))])

    def end(self) -> None:
        """Mark the search run finished."""
        self.client.set_tag(self.parent_run_id, "gkd.status", "finished")
        self.client.set_terminated(self.parent_run_id, "FINISHED")

    def log_student_model(self, summary: SearchSummary, student_dir: Path, graph_file: Path, num_classes: int,
                          register_as: Optional[str], tags: Mapping[str, Any]) -> tuple[str, Optional[str]]:
        """Log the selected student as an MLflow Model on the search run (``student``, pyfunc
        flavor: :mod:`gkd_search.pyfunc`) and, with ``register_as``, register it as a new version
        of that model with ``tags`` (the lineage) on the version. Returns ``(model URI, version)``:
        ``models:/NAME/VERSION`` when registered, else ``models:/<model id>``."""

        selected = summary.selected
        model_metrics = {
            "val_score": selected.val_score, "test_score": selected.test_score, "val_acc": selected.val_acc,
            "test_acc": selected.test_acc, "latency_ms_p50": selected.latency_ms_p50,
            "compression_ratio": summary.teacher.num_params / selected.params if selected.params else None,
            "speedup": (summary.teacher_latency_ms_p50 / selected.latency_ms_p50
                        if summary.teacher_latency_ms_p50 and selected.latency_ms_p50 else None),
        }
        with tracking_uri_for_block(self.uri):
            info = self.retry.call(lambda: self._log_model(student_dir, graph_file, num_classes, register_as, tags,
                                                           model_metrics), "log_model")
        version = None
        uri = info.model_uri
        if register_as:
            version = str(info.registered_model_version)
            for key, value in tags.items():
                self.client.set_model_version_tag(register_as, version, key, _fmt(value))
            uri = f"models:/{register_as}/{version}"
        self.client.set_tag(self.parent_run_id, "gkd.model_uri", uri)
        return uri, version

    def _log_model(self, student_dir: Path, graph_file: Path, num_classes: int, register_as: Optional[str],
                   tags: Mapping[str, Any], model_metrics: Mapping[str, Optional[float]]):
        import mlflow
        import pandas as pd

        from . import pyfunc

        example = pd.DataFrame({pyfunc.INPUT_COLUMN: [0, 1, 2]})
        while mlflow.active_run() is not None:  # left by an attempt the tracking server cut off
            mlflow.end_run()
        with _quiet_mlflow(), mlflow.start_run(run_id=self.parent_run_id):
            info = mlflow.pyfunc.log_model(
                name="student",
                python_model=str(Path(pyfunc.__file__).with_name("_served_model.py")),
                artifacts={pyfunc.STUDENT_ARTIFACT: str(student_dir), pyfunc.GRAPH_ARTIFACT: str(graph_file)},
                signature=pyfunc.signature(num_classes),
                input_example=example,
                pip_requirements=_pip_requirements(),
                registered_model_name=register_as,
                tags={k: _fmt(v) for k, v in tags.items()},
            )
            mlflow.log_metrics({k: float(v) for k, v in model_metrics.items() if v is not None},
                               model_id=info.model_id)
        return info

    def abort(self, status: str = "KILLED", reason: str = "") -> None:
        """End the parent run (``KILLED`` on Ctrl-C, ``FAILED`` on an error), trying for a few
        seconds only: the user is waiting, and ``--resume`` does not need it."""
        if self.parent_run_id is None:
            return
        self.retry.limit_s = min(self.retry.limit_s, 5.0)
        try:
            self.client.set_tag(self.parent_run_id, "gkd.status", status.lower())
            if reason:
                self.client.set_tag(self.parent_run_id, "gkd.error", reason[:4000])
        finally:
            self.client.set_terminated(self.parent_run_id, status)
