"""The installed distribution, as a user meets it: the entry point, ``gkd-search plugins``,
blocking it, and a real search restricted to this plugin's method and family that logs to
MLflow like any built-in (a subprocess: Ray Tune, Optuna and a sqlite MLflow store)."""

from __future__ import annotations

import importlib.metadata as metadata
import os
import subprocess
import sys
from pathlib import Path

import gkd_plugin_example
from mlflow.tracking import MlflowClient

SYNTHETIC = "synthetic:nodes=600,edges=3000,features=16,classes=3"


def gkd_search(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("GKD_SEARCH_DISABLE_PLUGIN_AUTOLOAD", "GKD_SEARCH_BLOCK_PLUGINS")}
    return subprocess.run([sys.executable, "-m", "gkd_search", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_the_entry_point_is_installed_with_its_distribution():
    (ep,) = [ep for ep in metadata.entry_points(group="gkd_search") if ep.name == "example"]
    assert ep.value == "gkd_plugin_example.plugin"
    assert ep.dist.name == "gkd-plugin-example" and ep.dist.version == gkd_plugin_example.__version__


def test_gkd_search_plugins_lists_the_components(tmp_path):
    proc = gkd_search("plugins", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = {tuple(line.split()[:2]): line for line in proc.stdout.splitlines()[1:]}
    for kind, name in (("method", "rkd"), ("loss", "rkd"), ("family", "gin"), ("family", "tag")):
        assert "example" in rows[(kind, name)] and "gkd-plugin-example 0.1.0" in rows[(kind, name)]
    blocked = gkd_search("plugins", "--block-plugin", "example", cwd=tmp_path)
    assert blocked.returncode == 0
    blocked_rows = {tuple(line.split()[:2]) for line in blocked.stdout.splitlines()[1:]}
    assert not {("method", "rkd"), ("loss", "rkd"), ("family", "gin")} & blocked_rows
    assert ("method", "softkd") in blocked_rows


def test_methods_rkd_families_gin_search_logs_to_mlflow(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    proc = gkd_search("--dataset", SYNTHETIC, "--methods", "rkd", "--families", "gin", "--trials", "3", "--epochs", "15",
                      "--teacher", "gcn:2:32:epochs=60", "--budget-ms", "50", "--latency-repeats", "30",
                      "--tracking-uri", uri, "--cache-dir", str(tmp_path / "cache"), "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    trials = [r for r in runs if r.data.tags.get("gkd.role") == "trial"]
    assert len(trials) == 3
    for run in trials:
        assert run.data.params["method"] == "rkd" and run.data.params["family"] == "gin"
        assert {"beta", "angle_weight", "relations", "samples", "train_eps"} <= set(run.data.params)
        assert run.info.status == "FINISHED"
        assert run.data.metrics["latency_ms_p50"] > 0
    accuracies = [r.data.metrics["val_acc"] for r in trials if "val_acc" in r.data.metrics]
    assert accuracies and max(accuracies) > 0.6  # 3 classes: chance is 0.33
    assert any(r.data.tags.get("gkd.selected") == "true" for r in trials)


def test_a_bad_value_of_the_plugins_option_stops_at_load(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("families:\n  gin: {num_layers: [2], hidden_channels: [16]}\nmethods:\n  rkd: {relations: all}\n")
    proc = gkd_search("--dataset", SYNTHETIC, "--space", str(space), "--trials", "1",
                      "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--cache-dir", str(tmp_path / "cache"), cwd=tmp_path)
    assert proc.returncode == 2
    assert "methods.rkd.relations: 'all' is not one of 'graph', 'random'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "mlflow.db").exists()
