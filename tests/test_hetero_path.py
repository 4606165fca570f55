"""Heterogeneous graphs end to end: an RGCN teacher, RGCN students distilled on the target node
type with softkd, fitnets and abkd, on the seeded synthetic graph and on a tiny ogbn-mag written in
OGB's raw layout; a real search on each; a saved student that reads edge types."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from ogb_files import write_ogbn_mag

from gkd_search.latency import LatencyMeasurement, LatencyProtocol
from gkd_search.student import load_student
from gkd_search.teacher import TeacherConfig, get_teacher
from gkd_search.trial import TrialContext, run_trial
from gkd_search.types import DistillationLoss, DistillationMethod, TrialSpec

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
HETERO = "synthetic-hetero:papers=600,authors=300,fields=20,features=16,classes=3"
HETERO_OPTIONS = {"papers": 600, "authors": 300, "fields": 20, "features": 16, "classes": 3}
TRAINING = {"lr": 0.01, "weight_decay": 5e-4, "dropout": 0.2, "epochs": 60, "patience": 60}
FAST = LatencyMeasurement(0.5, 0.6, 0.5, 0.4, 30)


class _RecordingLoss(DistillationLoss):
    def __init__(self, seen):
        super().__init__()
        self.seen = seen

    def forward(self, student, batch):
        self.seen.append((student.logits.size(0), batch.y.size(0), batch.teacher_logits.size(0),
                          int(batch.edge_index.max()) if batch.edge_index.numel() else -1, bool((batch.y >= 0).all())))
        return torch.nn.functional.cross_entropy(student.logits[batch.train_mask], batch.y[batch.train_mask])


class RecordingMethod(DistillationMethod):
    """Cross-entropy that records the rows each step's loss is given."""

    name = "recording"

    def __init__(self):
        self.seen: list[tuple] = []

    def build_loss(self, params, context):
        self.seen.append(("context", context.x.size(0), int(context.edge_index.max())))
        return _RecordingLoss(self.seen)


@pytest.fixture(scope="module")
def hetero(gkd_registry, tmp_path_factory):
    dataset = gkd_registry.get("dataset", "synthetic-hetero").load(None, tmp_path_factory.mktemp("h"), 0, **HETERO_OPTIONS)
    config = TeacherConfig.parse("rgcn:2:32:epochs=80:patience=80:dropout=0.2")
    _, teacher = get_teacher(dataset, config, gkd_registry.get("family", "rgcn"), seed=0,
                             cache_dir=tmp_path_factory.mktemp("teacher"))
    return dataset, teacher


def context(registry, dataset, teacher, methods=None, **kwargs):
    return TrialContext(dataset=dataset, teacher=teacher, families=registry.families,
                        methods=methods or registry.methods, latency={}, budget_ms=1e9,
                        protocol=LatencyProtocol(warmup=1, repeats=30), **kwargs)


def test_rgcn_teacher_uses_the_relations(hetero, gkd_registry):
    dataset, teacher = hetero
    assert dataset.is_heterogeneous and dataset.num_relations >= 6
    assert teacher.test_acc > 0.85  # the synthetic relations carry the class; features alone do not
    ctx = context(gkd_registry, dataset, teacher)
    mlp = run_trial(TrialSpec("mlp", 2, 32, method="none", training=TRAINING), ctx, "mlp")
    assert mlp.status == "ok", mlp.error
    assert teacher.test_acc > mlp.test_acc + 0.1


@pytest.mark.parametrize("method, params", [
    ("softkd", {"tau": 2.0, "alpha": 0.5}),
    ("fitnets", {"beta": 0.1, "hints": "all"}),
    # eq. 4 sums over the nodes: at the paper's beta = 10 the term swamps the cross-entropy of
    # this small student (test accuracy 0.67); docs/reproduction.md measures the same on Cora
    ("abkd", {"beta": 0.1, "d_a": 32}),
])
def test_rgcn_students_distil_on_the_target_type(hetero, gkd_registry, method, params, tmp_path):
    dataset, teacher = hetero
    ctx = context(gkd_registry, dataset, teacher)
    spec = TrialSpec("rgcn", 2, 16, method=method, method_params=params, training=TRAINING, seed=0)
    result = run_trial(spec, ctx, method, save_dir=tmp_path / "student")
    assert result.status == "ok", result.error + (result.traceback or "")
    assert result.test_acc > 0.8, result.test_acc
    # the saved student rebuilds with the graph's relation count and reads edge types
    student = load_student(tmp_path / "student")
    assert student.model.relational
    assert student.evaluate(dataset) == pytest.approx((result.val_acc, result.test_acc))


def test_losses_see_only_target_rows(hetero, gkd_registry):
    dataset, teacher = hetero
    recording = RecordingMethod()
    targets = int(dataset.data.target_mask.sum())
    assert targets < dataset.num_nodes
    ctx = context(gkd_registry, dataset, teacher, methods={"recording": recording})
    result = run_trial(TrialSpec("rgcn", 2, 16, method="recording", training={**TRAINING, "epochs": 3}), ctx, "r")
    assert result.status == "ok", result.error
    kind, context_rows, context_max_edge = recording.seen[0]
    assert kind == "context" and context_rows == targets and context_max_edge < targets
    steps = recording.seen[1:]
    assert steps and all(s[:3] == (targets, targets, targets) and s[3] < targets and s[4] for s in steps)


def test_hetero_minibatch_trial(hetero, gkd_registry):
    from gkd_search.distill.minibatch import Batching

    dataset, teacher = hetero
    ctx = context(gkd_registry, dataset, teacher, batching=Batching(mode="on", batch_size=128, fanout=(5, 5)))
    result = run_trial(TrialSpec("rgcn", 2, 16, method="softkd", method_params={"tau": 2.0, "alpha": 0.5},
                                 training={**TRAINING, "epochs": 20}), ctx, "mb")
    assert result.status == "ok", result.error
    assert result.training_mode == "mini-batch" and result.test_acc > 0.8


def test_tiny_ogbn_mag_through_the_ogb_loader(gkd_registry, tmp_path):
    root = tmp_path / "data"
    write_ogbn_mag(root)
    dataset = gkd_registry.get("dataset", "ogbn-mag").load(root, tmp_path / "cache", 0)
    assert dataset.is_heterogeneous and dataset.evaluator is not None
    config = TeacherConfig.parse("rgcn:2:8:epochs=10:patience=10")
    _, teacher = get_teacher(dataset, config, gkd_registry.get("family", "rgcn"), seed=0, cache_dir=tmp_path)
    assert teacher.logits.shape == (dataset.num_nodes, dataset.num_classes)
    ctx = context(gkd_registry, dataset, teacher)
    for method, params in (("softkd", {"tau": 2.0, "alpha": 0.5}), ("fitnets", {"beta": 0.1, "hints": "all"}),
                           ("abkd", {"beta": 10.0, "d_a": 32})):
        result = run_trial(TrialSpec("rgcn", 2, 8, method=method, method_params=params,
                                     training={**TRAINING, "epochs": 5}), ctx, method)
        assert result.status == "ok", (method, result.error)
        assert 0.0 <= result.test_acc <= 1.0


@pytest.mark.slow
@pytest.mark.parametrize("where", ["synthetic", "ogbn-mag"])
def test_search_on_a_heterogeneous_graph(where, tmp_path):
    """A real Ray Tune search over RGCN and MLP students, logging to MLflow."""
    if where == "synthetic":
        dataset, extra = HETERO, []
    else:
        write_ogbn_mag(tmp_path / "data")
        dataset, extra = "ogbn-mag", ["--data-root", str(tmp_path / "data")]
    space = tmp_path / "space.yaml"
    space.write_text("families:\n  rgcn: {num_layers: [1, 2], hidden_channels: [16]}\n  mlp: {num_layers: [2], hidden_channels: [32]}\n"
                     "methods:\n  softkd: {}\n  fitnets: {}\n  abkd: {d_a: [32]}\n"
                     "training:\n  lr: [0.01]\n  dropout: [0.2]\n  patience: 20\n")
    command = [sys.executable, "-m", "gkd_search", "--dataset", dataset, *extra, "--teacher", "rgcn:2:16:epochs=40",
               "--space", str(space), "--trials", "4", "--epochs", "20", "--budget-ms", "100",
               "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--cache-dir", str(tmp_path / "cache"), "--quiet",
               "--pruner", "none"]  # every trial trains: the relational path, not pruning, is tested
    proc = subprocess.run(command, cwd=tmp_path, env={**os.environ, "PYTHONUNBUFFERED": "1"}, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    trials = [r for r in runs if r.data.tags.get("gkd.role") == "trial"]
    assert len(trials) == 4
    assert all(r.data.tags["gkd.status"] == "ok" for r in trials), [r.data.tags.get("gkd.error") for r in trials]
    assert "Selected" in proc.stdout
