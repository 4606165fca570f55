"""End to end, for real: the CLI runs Ray Tune + Optuna trials on Cora, logs to a real MLflow
sqlite store, selects and saves a student; a second identical search reuses the teacher and the
latency table; Ctrl-C leaves no run RUNNING."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

import gkd_search
from gkd_search.registry import build_registry

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("GKD_DATA", ROOT.parent / "shared" / "data"))
TINY_SPACE = Path(__file__).parent / "spaces" / "tiny.yaml"
TRIALS = 6

PARENT_PARAMS = {"dataset", "teacher", "budget_ms", "trials", "space", "seed", "latency_protocol", "latency_batch",
                 "device", "threads"}
PARENT_METRICS = {"teacher_val_acc", "teacher_test_acc", "teacher_params", "n_feasible"}
TRIAL_PARAMS = {"family", "num_layers", "hidden_channels", "method", "lr", "weight_decay", "dropout", "epochs", "seed"}
TRIAL_METRICS = {"val_acc", "test_acc", "latency_ms_p50", "latency_ms_p95", "params", "compression_ratio",
                 "acc_retention", "train_seconds"}
METHOD_PARAMS = {"none": set(), "softkd": {"tau", "alpha"}, "glnn": {"lambda"}}


def search_command(workdir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "gkd_search", "--dataset", "cora", "--data-root", str(SHARED_DATA),
            "--space", str(TINY_SPACE), "--trials", str(TRIALS), "--epochs", "40", "--budget-ms", "10",
            "--tracking-uri", f"sqlite:///{workdir}/mlflow.db", "--cache-dir", str(workdir / "cache"), *extra]


def run(workdir: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(search_command(workdir, *extra), cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="module")
def searches(workdir):
    """Two identical searches, one after the other."""
    first = run(workdir)
    second = run(workdir)
    return first, second


@pytest.fixture(scope="module")
def client(workdir, searches) -> MlflowClient:
    return MlflowClient(f"sqlite:///{workdir}/mlflow.db")


def all_runs(client: MlflowClient):
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, max_results=1000)


def parents_and_children(client):
    runs = all_runs(client)
    parents = sorted((r for r in runs if r.data.tags.get("gkd.role") == "search"), key=lambda r: r.info.start_time)
    first = parents[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == first.info.run_id]
    return parents, first, children


def test_cli_prints_progress_front_and_mlflow_command(searches):
    out = searches[0].stdout
    assert f"[  {TRIALS}/{TRIALS}]" in out
    assert "in budget" in out and "best val" in out
    assert "Pareto front" in out and "Selected (* best val acc within 10 ms)" in out
    assert "mlflow ui --backend-store-uri sqlite:///" in out
    assert "INFO mlflow" not in searches[0].stderr and "Traceback" not in searches[0].stderr


def test_parent_run_has_every_documented_name(client):
    parents, parent, _ = parents_and_children(client)
    assert len(parents) == 2
    assert parent.data.tags["gkd.role"] == "search"
    assert PARENT_PARAMS <= set(parent.data.params)
    assert PARENT_METRICS <= set(parent.data.metrics)
    assert parent.data.params["dataset"] == "cora" and parent.data.params["budget_ms"] == "10.0"
    assert parent.data.metrics["teacher_test_acc"] >= 0.78
    assert parent.info.status == "FINISHED"
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"pareto.png", "trials.csv"} <= artifacts


def test_one_child_run_per_trial_with_every_documented_name(client):
    parents, parent, children = parents_and_children(client)
    assert len(children) == TRIALS
    teacher_params = parent.data.metrics["teacher_params"]
    teacher_test = parent.data.metrics["teacher_test_acc"]
    for run in children:
        tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
        assert tags["gkd.role"] == "trial"
        assert tags["gkd.status"] in {"ok", "over_budget", "failed"}
        assert tags["gkd.pareto"] in {"true", "false"}
        assert TRIAL_PARAMS | METHOD_PARAMS[params["method"]] <= set(params)
        if tags["gkd.status"] == "ok":
            assert TRIAL_METRICS <= set(metrics)
            assert 0.0 <= metrics["val_acc"] <= 1.0 and 0.0 <= metrics["test_acc"] <= 1.0
            assert metrics["latency_ms_p50"] <= metrics["latency_ms_p95"]
            assert metrics["compression_ratio"] == pytest.approx(teacher_params / metrics["params"])
            assert metrics["acc_retention"] == pytest.approx(metrics["test_acc"] / teacher_test)


def test_exactly_one_selected_run_with_the_best_validation_accuracy_in_budget(client):
    _, parent, children = parents_and_children(client)
    selected = [r for r in children if r.data.tags.get("gkd.selected") == "true"]
    assert len(selected) == 1
    ok = [r for r in children if r.data.tags["gkd.status"] == "ok" and r.data.metrics["latency_ms_p50"] <= 10]
    assert selected[0].data.metrics["val_acc"] == max(r.data.metrics["val_acc"] for r in ok)
    assert selected[0].data.tags["gkd.pareto"] == "true"
    assert parent.data.tags["gkd.selected_run_id"] == selected[0].info.run_id
    assert parent.data.metrics["n_feasible"] == len(ok)


def test_load_student_reproduces_logged_test_accuracy_exactly(client, workdir):
    _, parent, children = parents_and_children(client)
    selected = next(r for r in children if r.data.tags.get("gkd.selected") == "true")
    uri = f"sqlite:///{workdir}/mlflow.db"
    dataset = build_registry().get("dataset", "cora").load(SHARED_DATA, workdir / "cache" / "datasets", 0)
    for source in (selected.info.run_id, parent.info.run_id):  # a search run resolves to its selected student
        student = gkd_search.load_student(source, tracking_uri=uri)
        val_acc, test_acc = student.evaluate(dataset)
        assert test_acc == selected.data.metrics["test_acc"]
        assert val_acc == selected.data.metrics["val_acc"]
        assert student.spec.family == selected.data.params["family"]


def test_second_identical_search_reuses_teacher_and_latency(client, searches):
    first, second = searches
    assert "trained in" in first.stdout
    assert "used the cache, no training" in second.stdout
    assert "0 measured now" in second.stdout
    parents, _, _ = parents_and_children(client)
    first_run, second_run = parents
    assert second_run.data.metrics["teacher_seconds"] < first_run.data.metrics["teacher_seconds"]
    assert second_run.data.metrics["latency_seconds"] < first_run.data.metrics["latency_seconds"]
    assert second_run.data.params["teacher"] == first_run.data.params["teacher"]


def test_no_run_left_running(client):
    assert all(r.info.status in {"FINISHED", "FAILED"} for r in all_runs(client))


def test_ctrl_c_leaves_no_run_running(workdir, searches):
    """SIGINT during the trials: exit 130, the search run KILLED, no run RUNNING."""
    store = workdir / "interrupted"
    store.mkdir()
    cmd = search_command(workdir, "--trials", "40", "--epochs", "200")
    cmd[cmd.index("--tracking-uri") + 1] = f"sqlite:///{store}/mlflow.db"
    proc = subprocess.Popen(cmd, cwd=workdir, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    seen = []
    for line in proc.stdout:  # wait until at least one trial was logged
        seen.append(line)
        if line.startswith("[  1/40]") or time.time() > deadline:
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, "".join(seen) + err
    assert "interrupted" in err and "Traceback" not in err
    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    runs = all_runs(client)
    parent = [r for r in runs if r.data.tags.get("gkd.role") == "search"]
    assert len(parent) == 1 and parent[0].info.status == "KILLED"
    assert len(runs) >= 2
    assert all(r.info.status != "RUNNING" for r in runs)
