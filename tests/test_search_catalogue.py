"""The whole method catalogue through a real search: Ray Tune workers receive every method (and
its caches) by pickling, train with it, and the driver logs each trial's hyperparameters,
training cost and (ABKD, STRIDE) heatmaps to MLflow."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SPACE = Path(__file__).parent / "spaces" / "catalogue.yaml"
TRIALS = 14


@pytest.fixture(scope="module")
def finished_search(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("catalogue")
    command = [sys.executable, "-m", "gkd_search", "--dataset", "synthetic:nodes=600,edges=3000,features=16,classes=3",
               "--teacher", "gcn:3:32:epochs=40", "--space", str(SPACE), "--trials", str(TRIALS), "--epochs", "12",
               "--budget-ms", "50", "--tracking-uri", f"sqlite:///{workdir}/mlflow.db",
               "--cache-dir", str(workdir / "cache"), "--quiet",
               "--pruner", "none"]  # every method trains to the end: the catalogue, not pruning, is tested
    proc = subprocess.run(command, cwd=workdir, env={**os.environ, "PYTHONUNBUFFERED": "1"}, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, max_results=1000)
    return client, [r for r in runs if r.data.tags.get("gkd.role") == "trial"]


def test_every_trial_trains_and_logs_cost(finished_search):
    _, trials = finished_search
    assert len(trials) == TRIALS
    failed = {r.data.params["method"]: r.data.tags.get("gkd.error") for r in trials
              if r.data.tags["gkd.status"] != "ok"}
    assert not failed, failed
    for run in trials:
        assert run.data.metrics["train_seconds_per_epoch"] > 0
        assert run.data.metrics["peak_rss_mb"] > 50
    assert len({r.data.params["method"] for r in trials}) >= 5  # the sampler explored the catalogue


def test_method_hyperparameters_and_heatmaps_reach_mlflow(finished_search, gkd_registry):
    from gkd_search.distill.objective import method_hyperparameters

    client, trials = finished_search
    for run in trials:
        method = gkd_registry.methods[run.data.params["method"]]
        assert set(method_hyperparameters(method)) <= set(run.data.params), run.data.params
        artifacts = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "heatmaps")}
        if method.name in ("abkd", "stride"):
            assert {"attention.png", "dissimilarity.png", "matrices.json"} <= artifacts
        else:
            assert not artifacts
