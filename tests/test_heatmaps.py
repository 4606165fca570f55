"""ABKD's and STRIDE's layer-pair matrices reach MLflow as heatmaps (the paper's Figure 4)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from gkd_search.latency import LatencyProtocol
from gkd_search.plotting import layer_heatmaps
from gkd_search.tracking import SearchTracker
from gkd_search.trial import TrialContext, run_trial
from gkd_search.types import TrialSpec

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("method, names", [
    ("abkd", {"attention", "dissimilarity"}),
    ("stride", {"attention", "dissimilarity", "structural_dissimilarity"}),
])
def test_trial_logs_attention_heatmaps_before_and_after(method, names, gkd_registry, small_synthetic,
                                                        small_teacher, tmp_path):
    _, teacher = small_teacher
    ctx = TrialContext(dataset=small_synthetic, teacher=teacher, families=gkd_registry.families,
                       methods=gkd_registry.methods, latency={}, budget_ms=math.inf,
                       protocol=LatencyProtocol(repeats=30, warmup=1), structural_losses=gkd_registry.losses)
    spec = TrialSpec(family="gcn", num_layers=3, hidden_channels=8, method=method, method_params={"beta": 10.0},
                     training={"lr": 0.05, "epochs": 15, "patience": 15, "dropout": 0.0}, seed=0)
    result = run_trial(spec, ctx, "t")
    assert result.status == "ok", result.traceback
    assert set(result.matrices) == {f"{n}_{w}" for n in names for w in ("before", "after")}
    attention = result.matrices["attention_before"]
    assert len(attention) == len(teacher.hidden) and len(attention[0]) == 3  # teacher rows, student columns
    for row in attention:  # each teacher layer spreads one unit of attention over the student layers (eq. 3)
        assert sum(row) == pytest.approx(1.0, abs=1e-5)
    assert result.matrices["attention_after"] != attention  # training moved the attention

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = SearchTracker(uri, experiment="heatmaps")
    tracker.start("search", {}, teacher)
    run_id = tracker.log_trial(result, teacher, "trial")
    tracker.abort("FINISHED")
    client = MlflowClient(uri)
    files = {Path(f.path).name for f in client.list_artifacts(run_id, "heatmaps")}
    assert files == {f"{n}.png" for n in names} | {"matrices.json"}
    local = client.download_artifacts(run_id, "heatmaps/matrices.json", str(tmp_path))
    assert json.loads(Path(local).read_text()) == result.matrices


def test_methods_without_diagnostics_log_no_heatmaps(gkd_registry, small_synthetic, small_teacher):
    _, teacher = small_teacher
    ctx = TrialContext(dataset=small_synthetic, teacher=teacher, families=gkd_registry.families,
                       methods=gkd_registry.methods, latency={}, budget_ms=math.inf,
                       protocol=LatencyProtocol(repeats=30, warmup=1))
    spec = TrialSpec(family="gcn", num_layers=2, hidden_channels=8, method="softkd",
                     method_params={"tau": 2.0, "alpha": 0.5}, training={"epochs": 5, "patience": 5}, seed=0)
    result = run_trial(spec, ctx, "t")
    assert result.status == "ok" and result.matrices == {}
    assert result.train_seconds_per_epoch == pytest.approx(result.train_seconds / result.epochs_run)
    assert result.peak_rss_mb > 50  # a Python process with torch holds far more than 50 MB


def test_heatmap_png_per_matrix_name(tmp_path):
    matrices = {"attention_before": [[0.5, 1.0], [0.5, 0.0]], "attention_after": [[0.1, 0.9], [0.9, 0.1]],
                "dissimilarity_after": [[1.0, 2.0], [3.0, 4.0]]}
    written = layer_heatmaps(matrices, tmp_path)
    assert [p.name for p in written] == ["attention.png", "dissimilarity.png"]
    assert all(p.stat().st_size > 1000 and p.read_bytes()[:4] == b"\x89PNG" for p in written)
