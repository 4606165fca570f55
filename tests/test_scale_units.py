"""The small parts of scale-out and fault tolerance, each for real and fast: the trial deadline,
which MLflow failures are retried and for how long, the journal and its lock, what settles the
Optuna study on resume, what makes two searches "the same", and the CLI's one-line errors for
the new options."""

from __future__ import annotations

import os
import time

import optuna
import pytest
import requests
from mlflow.exceptions import MlflowException, RestException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from optuna.trial import TrialState

from gkd_search.cli import EXIT_USAGE, main
from gkd_search.deadline import TrialTimeout, deadline
from gkd_search.journal import SearchBusy, SearchState
from gkd_search.resume import options_hash
from gkd_search.retry import RetryPolicy, TrackingUnavailable, is_transient
from gkd_search.search import SearchConfig
from gkd_search.types import TrialResult, TrialSpec


def test_deadline_stops_a_running_loop_and_leaves_nothing_behind():
    start = time.perf_counter()
    with pytest.raises(TrialTimeout):
        with deadline(0.3):
            while True:
                try:
                    sum(range(1000))
                except Exception:  # a trial's own guard does not swallow it
                    pass
    assert 0.25 < time.perf_counter() - start < 3
    with deadline(0.3):
        time.sleep(0.05)
    time.sleep(0.4)  # no stray TrialTimeout after the block ended in time


@pytest.mark.parametrize("exc, transient", [
    (requests.ConnectionError("Connection refused"), True),
    (MlflowException("API request to http://127.0.0.1:1/api/2.0/mlflow/runs/create failed with exception "
                     "HTTPConnectionPool(host='127.0.0.1', port=1): Max retries exceeded"), True),
    (MlflowException("(sqlite3.OperationalError) database is locked"), True),
    (RestException({"error_code": "TEMPORARILY_UNAVAILABLE", "message": "try later"}), True),
    (RestException({"error_code": "INVALID_PARAMETER_VALUE", "message": "Invalid value for parameter 'lr'"}), False),
    (MlflowException("Invalid value for parameter 'lr'", error_code=INVALID_PARAMETER_VALUE), False),
    (ValueError("a bug"), False),
])
def test_only_transient_failures_are_retried(exc, transient):
    assert is_transient(exc) is transient


def test_retry_backs_off_until_the_store_answers_then_gives_up_past_the_limit():
    heard, calls = [], []

    def flaky():
        calls.append(time.perf_counter())
        if len(calls) < 3:
            raise requests.ConnectionError("Connection refused")
        return "ok"

    policy = RetryPolicy("http://127.0.0.1:1", limit_s=10, on_retry=heard.append)
    assert policy.call(flaky, "create_run") == "ok" and len(calls) == 3 and policy.retries == 2
    assert calls[2] - calls[1] > calls[1] - calls[0]  # exponential back-off
    assert heard and "retrying" in heard[0]

    def down():
        raise requests.ConnectionError("Connection refused")

    policy = RetryPolicy("http://127.0.0.1:1", limit_s=0.6)
    start = time.perf_counter()
    with pytest.raises(TrackingUnavailable, match="is unreachable"):
        policy.call(down, "log_batch")
    assert 0.5 < time.perf_counter() - start < 3 and policy.offline
    start = time.perf_counter()
    with pytest.raises(TrackingUnavailable):  # known to be down: one try, no waiting
        policy.call(down, "log_batch")
    assert time.perf_counter() - start < 0.3
    mistakes = []

    def mistake():
        mistakes.append(1)
        raise MlflowException("Invalid value for parameter 'lr'", error_code=INVALID_PARAMETER_VALUE)

    with pytest.raises(MlflowException):  # a mistake is never retried
        RetryPolicy("http://127.0.0.1:1", limit_s=10).call(mistake, "log_batch")
    assert len(mistakes) == 1


def _result(trial_id: str, status: str = "ok") -> TrialResult:
    return TrialResult(trial_id=trial_id, spec=TrialSpec("gcn", 2, 16, method="softkd", training={"lr": 0.01}),
                       status=status, latency_ms_p50=0.5, val_score=0.8, val_acc=0.8)


def test_journal_round_trip_lock_and_a_line_cut_off_by_kill(tmp_path):
    state = SearchState.create(tmp_path, "run1", {"trials": 3})
    state.started("t1", {"family": "gcn"})
    state.finished(_result("t1"))
    state.logged("t1", "mlflow-run-1")
    state.started("t2", {"family": "mlp"})
    with open(state.root / "events.jsonl", "a") as handle:
        handle.write('{"event": "finished", "result": {"trial_')  # kill -9 mid-write
    again = SearchState.open(tmp_path, "run1")
    assert [r.trial_id for r in again.finished_results()] == ["t1"]
    assert again.finished_results()[0].spec.training == {"lr": 0.01}
    assert again.logged_runs() == {"t1": "mlflow-run-1"}
    assert [e["trial_id"] for e in again.started_trials()] == ["t1", "t2"]
    state.lock()
    assert again.is_locked()
    with pytest.raises(SearchBusy, match=f"running in process {os.getpid()}"):
        again.lock()
    state.unlock()
    assert not again.is_locked()
    state.remove()
    assert not SearchState.exists(tmp_path, "run1")


def test_settle_study_tells_finished_trials_and_enqueues_the_ones_that_were_running(tmp_path):
    from gkd_search.ray_backend import STUDY_NAME, settle_study

    url = f"sqlite:///{tmp_path}/study.db"
    study = optuna.create_study(study_name=STUDY_NAME, storage=url, directions=["maximize", "minimize"])
    for ray_id in ("done-before", "done-unsaid", "was-running", "start-point-running"):
        trial = study.ask()
        trial.suggest_float("lr", 0.001, 0.1)
        trial.set_user_attr("ray_trial_id", ray_id)
        if ray_id == "start-point-running":
            trial.set_user_attr("start_point", True)
        if ray_id == "done-before":
            study.tell(trial, [0.7, 1.0])
    finished = {"done-before": _result("done-before"), "done-unsaid": _result("done-unsaid")}
    assert settle_study(url, finished) == 2
    trials = {t.user_attrs.get("ray_trial_id") or f"again-{t.user_attrs['rerun_of']}": t
              for t in optuna.load_study(study_name=STUDY_NAME, storage=url).trials}
    trials["enqueued"] = trials.pop("again-was-running")
    # a space's start point runs again as a start point (never pruned, asha.py)
    assert trials["again-start-point-running"].user_attrs["start_point"] is True
    assert "start_point" not in trials["enqueued"].user_attrs
    assert trials["done-unsaid"].state == TrialState.COMPLETE and trials["done-unsaid"].values == [0.8, 0.5]
    assert trials["was-running"].state == TrialState.FAIL
    assert trials["enqueued"].state == TrialState.WAITING
    assert trials["enqueued"].system_attrs["fixed_params"] == trials["was-running"].params  # asked for next
    assert trials["enqueued"].user_attrs["rerun_of"] == "was-running"
    assert settle_study(url, finished) == 0  # idempotent


def test_same_options_ignore_where_and_how_fast_a_search_runs():
    base = SearchConfig(dataset="cora", trials=8, seed=0)
    assert options_hash(base) == options_hash(SearchConfig(dataset="cora", trials=8, seed=0, max_concurrent=4,
                                                           ray_address="10.0.0.1:6379", storage_path="/shared"))
    assert options_hash(base) != options_hash(SearchConfig(dataset="cora", trials=8, seed=1))


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GKD_CACHE", str(tmp_path / "cache"))
    return tmp_path


@pytest.mark.parametrize("args, fragment", [
    (["--trial-timeout", "0"], "--trial-timeout must be a positive number of seconds, got 0"),
    (["--ray-address", "headnode"], "--ray-address 'headnode' is not HOST:PORT"),
    (["--storage-path", "relative/folder"], "--storage-path 'relative/folder' must be an absolute folder"),
    (["--storage-path", "nosuchfs://bucket/x"], "--storage-path 'nosuchfs://bucket/x' is not a file system"),
    (["--ray-address", "127.0.0.1:1"], "no Ray cluster answers at --ray-address 127.0.0.1:1"),
    (["--resume", "abc", "--trials", "5", "--seed", "0"], "do not give --seed, --trials with it"),
])
def test_new_options_fail_in_one_line(args, fragment, sandbox, capsys):
    code = main(args)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == EXIT_USAGE and len(lines) == 1, err
    assert lines[0].startswith("gkd-search: error: ") and fragment in lines[0], lines[0]
    assert not (sandbox / "mlruns").exists() and not (sandbox / "cache").exists()


def test_gpu_check_says_there_is_no_gpu_and_succeeds_without_one():
    import subprocess
    import sys
    from pathlib import Path

    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible: run bench/gpu_check.sh itself (minutes)")
    script = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.sh"
    proc = subprocess.run(["bash", str(script)], env={**os.environ, "PYTHON": sys.executable}, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ("gpu_check: no CUDA GPU visible to torch (torch.cuda.is_available() is False); "
                                   "nothing to check")


def test_a_gpu_trials_peak_memory_is_a_trial_metric_and_a_cpu_trial_has_none(small_teacher):
    # the H200 run of bench/gpu_check.sh (docs/benchmarks.md, GPU) found the value measured but never logged
    from gkd_search.tracking import trial_metrics

    _, outputs = small_teacher
    spec = TrialSpec(family="gcn", num_layers=2, hidden_channels=8, method="none", seed=0)
    on_gpu = TrialResult(trial_id="g", spec=spec, status="ok", val_acc=0.8, test_acc=0.8, val_score=0.8,
                         test_score=0.8, params=100, peak_gpu_mb=123.4567891)
    assert trial_metrics(on_gpu, outputs)["peak_gpu_mb"] == 123.456789
    failed = TrialResult(trial_id="f", spec=spec, status="failed", error="diverged", peak_gpu_mb=7.0)
    assert trial_metrics(failed, outputs)["peak_gpu_mb"] == 7.0  # what a stopped trial held
    on_cpu = TrialResult(trial_id="c", spec=spec, status="ok", val_acc=0.8, test_acc=0.8, params=100)
    assert "peak_gpu_mb" not in trial_metrics(on_cpu, outputs)


def test_gpu_methods_bench_runs_every_method_and_family_on_the_cpu(tmp_path):
    # the GPU script's own CPU path (--devices cpu): every trial it builds trains through run_trial
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "bench" / "gpu_methods.py"
    data = os.environ.get("GKD_DATA") or str(Path(__file__).resolve().parents[2] / "shared" / "data")
    if not (Path(data) / "Cora" / "raw").is_dir():
        pytest.skip(f"Cora's raw files are not under {data}")
    out = tmp_path / "rows.json"
    proc = subprocess.run([sys.executable, str(script), "--devices", "cpu", "--epochs", "3", "--data-root", data,
                           "--teacher", "gcn:2:32:epochs=20:patience=20",
                           "--out", str(out)], env={**os.environ, "GKD_CACHE": str(tmp_path / "cache"),
                                                    "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    pairs = {(r["family"], r["method"]) for r in rows}
    from gkd_search.registry import build_registry

    registry = build_registry()
    gcn, mlp = registry.families["gcn"], registry.families["mlp"]
    assert {("gcn", m) for m, method in registry.methods.items() if method.accepts(gcn)} <= pairs
    assert {("mlp", m) for m, method in registry.methods.items() if method.accepts(mlp) and m in {"glnn", "infgrand"}} <= pairs
    assert {(f, "softkd") for f, fam in registry.families.items() if not fam.relational} <= pairs
    assert all(r["cpu"]["status"] == "ok" for r in rows), [r for r in rows if r["cpu"]["status"] != "ok"]
