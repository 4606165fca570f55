"""Saving a trained student (weights + JSON config) and rebuilding it: :func:`load_student`."""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor

from . import __version__
from .errors import UsageError
from .serving import ServingGraph
from .types import DistillationMethod, GraphDataset, GraphModel, ModelFamily, TrialSpec, run_model

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.pt"
ARTIFACT_DIR = "student"


def build_student(spec: TrialSpec, family: ModelFamily, in_channels: int, num_classes: int,
                  num_relations: int = 1) -> GraphModel:
    """A fresh model of ``spec``'s architecture (dropout from ``spec.training``); a relational
    family (RGCN) also gets the graph's ``num_relations``."""
    extra = {"num_relations": num_relations} if family.relational else {}
    return family.build(in_channels, num_classes, spec.num_layers, spec.hidden_channels,
                        dropout=float(spec.training.get("dropout", 0.0)), **spec.family_params, **extra)


def save_student(model: GraphModel, spec: TrialSpec, dataset: GraphDataset, directory: Path,
                 metrics: Optional[dict[str, Any]] = None, fanout: tuple[int, ...] = ()) -> Path:
    """Write ``config.json`` and ``weights.pt`` into ``directory`` and return it.

    Args:
        fanout: the neighbours per hop a served request samples (``--fanout``; empty: all), as
            its latency was measured.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "gkd_search_version": __version__,
        "dataset": dataset.name,
        "dataset_hash": dataset.content_hash(),
        "in_channels": dataset.num_features,
        "num_classes": dataset.num_classes,
        "num_relations": dataset.num_relations,
        "spec": asdict(spec),
        "metrics": metrics or {},
        "serving": {"fanout": list(fanout)},
    }
    torch.save(model.state_dict(), directory / WEIGHTS_FILE)
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True))
    return directory


@dataclass
class Student:
    """A rebuilt student: the model in eval mode, the config it was saved with, and the method
    it was distilled with (which may transform the features it reads, as InfGraND does)."""

    model: GraphModel
    config: dict[str, Any]
    method: Optional[DistillationMethod] = None
    family: Optional[ModelFamily] = None

    @property
    def spec(self) -> TrialSpec:
        return TrialSpec(**self.config["spec"])

    @property
    def num_hops(self) -> int:
        """How many hops of neighbourhood one prediction reads (0 for a graph-free student)."""
        spec = self.spec
        if self.family is None:
            return spec.num_layers if self.model.uses_graph else 0
        return self.family.num_hops(spec.num_layers, **spec.family_params)

    def serving_graph(self, dataset: GraphDataset) -> ServingGraph:
        """The graph as this student is served on it: the features it reads (the method's
        transform of ``dataset``'s, for InfGraND) and the CSR index, normalised for the model
        (see :mod:`gkd_search.serving`)."""
        data = dataset.data
        return ServingGraph.for_model(self.model, self.features(data.x, data.edge_index), data.edge_index,
                                      getattr(data, "edge_type", None))

    def features(self, x: Tensor, edge_index: Tensor) -> Tensor:
        """The node features the model reads: ``x``, or the method's transform of it."""
        if self.method is None:
            return x
        from .distill.objective import split_params

        own, _ = split_params(self.method, self.spec.method_params)
        return self.method.student_features(x, edge_index, own)

    @torch.no_grad()
    def predict(self, x: Tensor, edge_index: Tensor, edge_type: Optional[Tensor] = None) -> Tensor:
        """Logits for every node of the given graph (``edge_type``: a heterogeneous graph's
        relation per edge, read by relational students)."""
        self.model.eval()
        return run_model(self.model, self.features(x, edge_index), edge_index, edge_type).logits

    def evaluate(self, dataset: GraphDataset, metric: Optional[str] = None) -> tuple[float, float]:
        """``(val, test)`` scores on ``dataset``'s split: ``metric`` (``accuracy``, ``macro-f1``,
        ``roc-auc``), by default the one the student was selected by, else the dataset's own."""
        from .metrics import resolve_metric

        data = dataset.data
        name = metric or self.config.get("metrics", {}).get("metric") or dataset.metric
        score = resolve_metric(name, dataset.evaluator)
        logits = self.predict(data.x, data.edge_index, getattr(data, "edge_type", None))
        return score(logits, data.y, data.val_mask), score(logits, data.y, data.test_mask)


def _download_from_run(run_id: str, tracking_uri: Optional[str]) -> Path:
    from mlflow.tracking import MlflowClient

    from .tracking import existing_store, no_progress_bars

    store = existing_store(tracking_uri)
    client = MlflowClient(store)
    try:
        run = client.get_run(run_id)
    except Exception as exc:
        raise UsageError(f"no MLflow run {run_id!r} at {store} ({type(exc).__name__})") from None
    selected = run.data.tags.get("gkd.selected_run_id")
    if run.data.tags.get("gkd.role") == "search" and selected:
        run_id = selected
    target = Path(tempfile.mkdtemp(prefix="gkd-student-"))
    try:
        with no_progress_bars():
            path = client.download_artifacts(run_id, ARTIFACT_DIR, str(target))
    except Exception:
        raise UsageError(f"MLflow run {run_id} has no saved student (artifact '{ARTIFACT_DIR}/')") from None
    return Path(path)


def _model_artifact_uri(uri: str, client) -> str:
    """Where a ``models:/NAME/VERSION`` or ``models:/<model id>`` URI's files are."""
    ref = uri[len("models:/"):].strip("/")
    name, _, version = ref.partition("/")
    if version:
        return client.get_model_version_download_uri(name, version)
    return client.get_logged_model(name).artifact_location


def _download_model(uri: str, tracking_uri: Optional[str]) -> Path:
    """The ``student/`` folder of a logged or registered MLflow model (``models:/NAME/VERSION``,
    ``models:/<model id>``), found through the model's ``MLmodel`` file."""
    import mlflow.artifacts
    import yaml
    from mlflow.tracking import MlflowClient

    from .tracking import existing_store, no_progress_bars

    store = existing_store(tracking_uri)
    target = Path(tempfile.mkdtemp(prefix="gkd-student-"))
    try:
        source = _model_artifact_uri(uri, MlflowClient(tracking_uri=store, registry_uri=store))
        with no_progress_bars():
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(target),
                                                             tracking_uri=store))
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"cannot download the model {uri} from {store}: {first}") from None
    try:
        mlmodel = yaml.safe_load((local / "MLmodel").read_text())
        folder = local / mlmodel["flavors"]["python_function"]["artifacts"][ARTIFACT_DIR]["path"]
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        folder = local / "artifacts" / ARTIFACT_DIR
    if not (folder / CONFIG_FILE).is_file():
        raise UsageError(f"the model {uri} is not a gkd-search student (no {ARTIFACT_DIR}/{CONFIG_FILE} among its artifacts)")
    return folder


def load_student(source: str | Path, *, tracking_uri: Optional[str] = None, registry=None) -> Student:
    """Rebuild a saved student.

    Args:
        source: a folder with ``config.json`` and ``weights.pt``, an MLflow run id (a trial
            run with a saved student, or a search's parent run: its selected student),
            ``runs:/<run id>/student``, or an MLflow model URI of a registered or logged
            student (``models:/gkd-cora/1``, ``models:/<model id>``).
        tracking_uri: where to find the run or model (default: ``$MLFLOW_TRACKING_URI`` or
            ``sqlite:///mlruns/mlflow.db``).
    """
    from .registry import build_registry

    if str(source).startswith("runs:/"):
        source = str(source)[len("runs:/"):].split("/")[0]
    if str(source).startswith("models:/"):
        path = _download_model(str(source), tracking_uri)
    else:
        path = Path(source)
    if not (path / CONFIG_FILE).is_file():
        if path.exists():
            raise UsageError(f"{path} has no {CONFIG_FILE}: not a saved student")
        if isinstance(source, Path) or "/" in str(source) or str(source).startswith((".", "~")):
            raise UsageError(f"{source}: no such folder; give a folder with {CONFIG_FILE} and {WEIGHTS_FILE}, an MLflow "
                             "run id or a model URI (models:/NAME/VERSION)")
        path = _download_from_run(str(source), tracking_uri)
    config = json.loads((path / CONFIG_FILE).read_text())
    spec = TrialSpec(**config["spec"])
    registry = registry or build_registry()
    family = registry.get("family", spec.family)
    model = build_student(spec, family, int(config["in_channels"]), int(config["num_classes"]),
                          num_relations=int(config.get("num_relations", 1)))
    model.load_state_dict(torch.load(path / WEIGHTS_FILE, weights_only=True))
    model.eval()
    method = registry.methods.get(spec.method)
    if method is None:
        raise UsageError(f"the student was distilled with method {spec.method!r}, which no installed plugin "
                         f"provides; install the plugin that provides it")
    return Student(model, config, method, family)
