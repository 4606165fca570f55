"""Everything MLflow: the tracking URI check, the search's parent run, one child run per trial,
the Pareto/selected tags and the artifacts.

Names users and the MLflow UI rely on (parent: ``gkd.role=search``; children: ``gkd.role=trial``,
``gkd.status``, ``gkd.pareto``, ``gkd.selected``) are documented in ``docs/mlflow.md``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Mapping, Optional
from urllib.parse import urlparse

from .errors import TrackingError
from .types import SearchSummary, TeacherOutputs, TrialResult

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


def check_tracking_uri(uri: str) -> None:
    """Fail fast, before any training, when the tracking store cannot be used.

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
    try:
        from mlflow.tracking import MlflowClient

        MlflowClient(uri).search_experiments(max_results=1)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise TrackingError(f"cannot use the MLflow tracking URI {uri}: {first}") from None


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


def trial_metrics(result: TrialResult, teacher: TeacherOutputs) -> dict[str, float]:
    metrics: dict[str, Optional[float]] = {
        "latency_ms_p50": result.latency_ms_p50,
        "latency_ms_p95": result.latency_ms_p95,
        "params": result.params,
        "compression_ratio": teacher.num_params / result.params if result.params else None,
    }
    if result.status == "failed":  # what a stopped trial cost (distill/guard.py)
        metrics.update(epochs_run=result.epochs_run, train_seconds=result.train_seconds)
    if result.status == "ok":
        metrics.update(
            val_acc=result.val_acc,
            test_acc=result.test_acc,
            acc_retention=result.test_acc / teacher.test_acc if teacher.test_acc else None,
            train_seconds=result.train_seconds,
            epochs_run=result.epochs_run,
            train_seconds_per_epoch=result.train_seconds_per_epoch,
            peak_rss_mb=result.peak_rss_mb,
        )
    return {k: float(v) for k, v in metrics.items() if v is not None}


class SearchTracker:
    """Writes one search to MLflow. Every child run is created and ended in one call, so an
    interrupted search leaves no child run RUNNING; :meth:`abort` ends the parent as KILLED."""

    def __init__(self, uri: str, experiment: str = DEFAULT_EXPERIMENT) -> None:
        from mlflow.tracking import MlflowClient

        self.uri = uri
        self.client = MlflowClient(uri)
        self.experiment_id = self._experiment(experiment)
        self.parent_run_id: Optional[str] = None
        self.trial_runs: dict[str, str] = {}

    def _experiment(self, name: str) -> str:
        existing = self.client.get_experiment_by_name(name)
        if existing is not None:
            return existing.experiment_id
        db = _sqlite_path(self.uri)
        location = (db.parent.resolve() / "artifacts").as_uri() if db is not None else None
        return self.client.create_experiment(name, artifact_location=location)

    def start(self, run_name: str, params: Mapping[str, Any], teacher: TeacherOutputs) -> str:
        from mlflow.entities import Metric, Param

        run = self.client.create_run(self.experiment_id, run_name=run_name,
                                     tags={"gkd.role": "search", "gkd.status": "running"})
        self.parent_run_id = run.info.run_id
        now = int(time.time() * 1000)
        metrics = {"teacher_val_acc": teacher.val_acc, "teacher_test_acc": teacher.test_acc,
                   "teacher_params": teacher.num_params}
        self.client.log_batch(
            self.parent_run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
            params=[Param(k, _fmt(v)) for k, v in params.items()],
        )
        return self.parent_run_id

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
        }
        if result.error:
            tags["gkd.error"] = result.error[:4000]
        if result.error_detail:
            tags["gkd.error_detail"] = result.error_detail[:4000]
        if result.traceback:
            tags["gkd.traceback"] = result.traceback[-4000:]
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=tags)
        run_id = run.info.run_id
        try:
            now = int(time.time() * 1000)
            self.client.log_batch(
                run_id,
                metrics=[Metric(k, v, now, 0) for k, v in trial_metrics(result, teacher).items()],
                params=[Param(k, v) for k, v in trial_params(result).items()],
            )
            if result.matrices:
                self._log_heatmaps(run_id, result)
        finally:
            self.client.set_terminated(run_id, "FAILED" if result.status == "failed" else "FINISHED")
        self.trial_runs[result.trial_id] = run_id
        result.run_id = run_id
        return run_id

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
        from mlflow.entities import Metric

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
        for path in artifacts.values():
            self.client.log_artifact(self.parent_run_id, str(path))
        now = int(time.time() * 1000)
        metrics = {"n_feasible": n_feasible, **extra_metrics}
        self.client.log_batch(self.parent_run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])
        self.client.set_tag(self.parent_run_id, "gkd.status", "finished")
        self.client.set_terminated(self.parent_run_id, "FINISHED")

    def abort(self, status: str = "KILLED", reason: str = "") -> None:
        """End the parent run (``KILLED`` on Ctrl-C, ``FAILED`` on an error)."""
        if self.parent_run_id is None:
            return
        try:
            self.client.set_tag(self.parent_run_id, "gkd.status", status.lower())
            if reason:
                self.client.set_tag(self.parent_run_id, "gkd.error", reason[:4000])
        finally:
            self.client.set_terminated(self.parent_run_id, status)
