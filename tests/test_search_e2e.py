"""End to end, for real: the CLI runs Ray Tune + Optuna trials on Cora, logs to a real MLflow
sqlite store, selects a student (one-se) and registers it as an MLflow Model that
``mlflow.pyfunc`` loads and ``mlflow models serve`` serves; a second identical search reuses the
teacher and the latency table and adds a second model version; Ctrl-C leaves no run RUNNING."""

from __future__ import annotations

import json
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
                 "device", "threads", "metric", "select", "register_model", "dataset_hash"}
PARENT_METRICS = {"teacher_val_acc", "teacher_test_acc", "teacher_val_score", "teacher_test_score", "teacher_params",
                  "teacher_latency_ms_p50", "n_feasible", "select_tolerance", "best_val_score"}
TRIAL_PARAMS = {"family", "num_layers", "hidden_channels", "method", "lr", "weight_decay", "dropout", "epochs", "seed"}
TRIAL_METRICS = {"val_acc", "test_acc", "val_score", "test_score", "val_score_se", "latency_ms_p50", "latency_ms_p95",
                 "params", "compression_ratio", "speedup", "acc_retention", "train_seconds"}
LINEAGE_TAGS = {"gkd.search_run_id", "gkd.trial_run_id", "gkd.teacher", "gkd.teacher_cache_key", "gkd.dataset",
                "gkd.dataset_hash", "gkd.budget_ms", "gkd.metric", "gkd.latency_ms_p50", "gkd.compression_ratio",
                "gkd.speedup", "gkd.select", "gkd.architecture", "gkd.method"}
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
    assert "Pareto front" in out and "Selected (*, --select one-se" in out
    assert "smaller and" in out and "faster than the teacher" in out
    assert "registered as models:/gkd-cora/1; serve it with: mlflow models serve -m models:/gkd-cora/1" in out
    assert "registered as models:/gkd-cora/2" in searches[1].stdout
    assert "mlflow ui --backend-store-uri sqlite:///" in out
    assert "open http://127.0.0.1:5000/#/experiments/" in out and "viewStateShareKey=gkd-trials" in out
    assert "%|" not in out and "epoch/s" not in out  # no live progress bars when stdout is not a terminal
    for proc in searches:  # MLflow's own chatter (progress bars, hints) stays out
        assert "INFO mlflow" not in proc.stderr and "Traceback" not in proc.stderr
        assert "Downloading artifacts" not in proc.stderr + proc.stdout
        assert "Successfully registered" not in proc.stderr + proc.stdout


def test_each_search_runs_the_spaces_start_point(client, searches):
    """tiny.yaml's ``start_with`` pins tau 2.0 and lr 0.01, values TPE does not draw exactly from
    its ranges: one trial of each search has them."""
    for proc in searches:
        assert "starting with the space's start points: gcn-2L-16 softkd" in proc.stdout
    parents, _, _ = parents_and_children(client)
    runs = all_runs(client)
    for parent in parents[:2]:
        pinned = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
                  and r.data.params["method"] == "softkd" and float(r.data.params["tau"]) == 2.0
                  and float(r.data.params["lr"]) == 0.01]
        assert len(pinned) == 1
        assert (pinned[0].data.params["family"], pinned[0].data.params["num_layers"],
                pinned[0].data.params["hidden_channels"]) == ("gcn", "2", "16")


def test_parent_run_has_every_documented_name(client, tmp_path):
    parents, parent, _ = parents_and_children(client)
    assert len(parents) == 2
    assert parent.data.tags["gkd.role"] == "search"
    assert PARENT_PARAMS <= set(parent.data.params)
    assert PARENT_METRICS <= set(parent.data.metrics)
    assert parent.data.params["dataset"] == "cora" and parent.data.params["budget_ms"] == "10.0"
    assert parent.data.metrics["teacher_test_acc"] >= 0.78
    assert parent.info.status == "FINISHED"
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"pareto.png", "trials.csv", "teacher_label_shift.json"} <= artifacts
    # --label-shift adapt (the default): the teacher scores are the adapted outputs', the ones as trained beside them
    assert parent.data.params["label_shift"] == "adapt"
    assert parent.data.metrics["teacher_test_acc_unadapted"] >= 0.78
    shift = json.loads(Path(client.download_artifacts(parent.info.run_id, "teacher_label_shift.json",
                                                      str(tmp_path))).read_text())
    assert shift["val_acc_before"] == pytest.approx(parent.data.metrics["teacher_val_acc_unadapted"])
    assert sum(shift["target_prior"]) == pytest.approx(1.0) and len(shift["bias"]) == 7 and shift["temperature"] > 0


def test_one_child_run_per_trial_with_every_documented_name(client):
    parents, parent, children = parents_and_children(client)
    assert len(children) == TRIALS
    teacher_params = parent.data.metrics["teacher_params"]
    teacher_test = parent.data.metrics["teacher_test_acc"]
    for run in children:
        tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
        assert tags["gkd.role"] == "trial"
        assert tags["gkd.status"] in {"ok", "over_budget", "pruned", "failed"}
        assert tags["gkd.pareto"] in {"true", "false"}
        assert TRIAL_PARAMS | METHOD_PARAMS[params["method"]] <= set(params)
        if tags["gkd.status"] == "ok":
            assert TRIAL_METRICS <= set(metrics)
            assert 0.0 <= metrics["val_acc"] <= 1.0 and 0.0 <= metrics["test_acc"] <= 1.0
            assert metrics["latency_ms_p50"] <= metrics["latency_ms_p95"]
            assert metrics["compression_ratio"] == pytest.approx(teacher_params / metrics["params"], abs=1e-6)
            assert metrics["acc_retention"] == pytest.approx(metrics["test_acc"] / teacher_test, abs=2e-6)
            # the default metric is accuracy; with --label-shift adapt (the default) validation is weighted by
            # class to the estimated shares of the unlabelled nodes, close to plain on Cora's random validation set
            assert metrics["test_score"] == metrics["test_acc"] and metrics["val_score"] != metrics["val_acc"]
            assert metrics["val_score"] == pytest.approx(metrics["val_acc"], abs=0.04)
            assert metrics["speedup"] == pytest.approx(parent.data.metrics["teacher_latency_ms_p50"]
                                                       / metrics["latency_ms_p50"], rel=1e-4)
            # the class-weighted accuracy's standard error, sum_c w_c^2 r_c (1 - r_c) / n_c, near the plain
            # binomial one on Cora's 500 validation nodes
            p = metrics["val_acc"]
            binomial = (p * (1 - p) / 500) ** 0.5
            assert 0.6 * binomial < metrics["val_score_se"] < 1.4 * binomial
        inputs = run.inputs.dataset_inputs
        assert [i.dataset.digest for i in inputs] == [parent.data.params["dataset_hash"]]


def test_exactly_one_selected_run_the_smallest_within_one_standard_error_of_the_best(client):
    _, parent, children = parents_and_children(client)
    selected = [r for r in children if r.data.tags.get("gkd.selected") == "true"]
    assert len(selected) == 1
    chosen = selected[0].data.metrics
    ok = [r for r in children if r.data.tags["gkd.status"] == "ok" and r.data.metrics["latency_ms_p50"] <= 10]
    best = max(ok, key=lambda r: (r.data.metrics["val_score"], -r.data.metrics["latency_ms_p50"]))
    tolerance = best.data.metrics["val_score_se"]
    assert parent.data.metrics["select_tolerance"] == pytest.approx(tolerance, abs=1e-6)
    assert parent.data.tags["gkd.best_run_id"] == best.info.run_id
    assert parent.data.metrics["best_val_score"] == best.data.metrics["val_score"]
    close = [r for r in ok if r.data.metrics["val_score"] >= best.data.metrics["val_score"] - tolerance - 2e-6]
    assert chosen["val_score"] >= best.data.metrics["val_score"] - tolerance - 2e-6
    assert chosen["params"] == min(r.data.metrics["params"] for r in close)
    assert selected[0].data.tags["gkd.pareto"] == "true"
    assert parent.data.tags["gkd.selected_run_id"] == selected[0].info.run_id
    assert parent.data.params["select"] == "one-se" and parent.data.params["metric"] == "accuracy"
    assert parent.data.metrics["n_feasible"] == len(ok)


def test_load_student_reproduces_logged_test_accuracy_exactly(client, workdir):
    _, parent, children = parents_and_children(client)
    selected = next(r for r in children if r.data.tags.get("gkd.selected") == "true")
    uri = f"sqlite:///{workdir}/mlflow.db"
    dataset = build_registry().get("dataset", "cora").load(SHARED_DATA, workdir / "cache" / "datasets", 0)
    for source in (selected.info.run_id, parent.info.run_id):  # a search run resolves to its selected student
        student = gkd_search.load_student(source, tracking_uri=uri)
        val_acc, test_acc = student.evaluate(dataset)
        assert test_acc == pytest.approx(selected.data.metrics["test_acc"], abs=1e-6)  # logged to 6 decimals
        assert val_acc == pytest.approx(selected.data.metrics["val_acc"], abs=1e-6)
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
    # timing waited for the background start-ups to go quiet; a cached table never times anything
    assert first_run.data.metrics["wait_for_quiet_seconds"] >= 0.5  # at least one quiet window
    assert "wait_for_quiet_seconds" not in second_run.data.metrics


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


# ------------------------------------------------------------------ the registered MLflow model


def _cora(workdir):
    return build_registry().get("dataset", "cora").load(SHARED_DATA, workdir / "cache" / "datasets", 0)


def test_one_registered_version_per_search_with_lineage_tags(client):
    parents, _, _ = parents_and_children(client)
    versions = sorted(client.search_model_versions("name='gkd-cora'"), key=lambda v: int(v.version))
    assert [str(v.version) for v in versions] == ["1", "2"]
    for version, parent in zip(versions, parents):
        tags = version.tags
        assert LINEAGE_TAGS <= set(tags)
        assert tags["gkd.search_run_id"] == parent.info.run_id == version.run_id
        assert tags["gkd.trial_run_id"] == parent.data.tags["gkd.selected_run_id"]
        assert tags["gkd.dataset"] == "cora" and tags["gkd.dataset_hash"] == parent.data.params["dataset_hash"]
        assert tags["gkd.teacher"] == parent.data.params["teacher"] and tags["gkd.metric"] == "accuracy"
        assert float(tags["gkd.budget_ms"]) == 10.0
        assert parent.data.tags["gkd.model_uri"] == f"models:/gkd-cora/{version.version}"
        trial = client.get_run(tags["gkd.trial_run_id"]).data.metrics
        assert float(tags["gkd.compression_ratio"]) == pytest.approx(trial["compression_ratio"], abs=1e-4)
        assert "Selected student" in parent.data.tags["mlflow.note.content"]
        assert float(tags["gkd.speedup"]) == pytest.approx(trial["speedup"], abs=1e-4)
        # the search run shows the graph as its input dataset, and the model among its outputs
        assert [i.dataset.name for i in parent.inputs.dataset_inputs] == ["cora"]
        assert parent.outputs is not None and len(parent.outputs.model_outputs) == 1


def test_registered_model_predicts_exactly_what_load_student_predicts(workdir):
    """``mlflow.pyfunc.load_model("models:/gkd-cora/1")`` answers node ids with the same classes
    and probabilities as ``load_student(...)`` on the whole graph."""
    import mlflow
    import pandas as pd
    import torch

    uri = f"sqlite:///{workdir}/mlflow.db"
    dataset = _cora(workdir)
    student = gkd_search.load_student("models:/gkd-cora/1", tracking_uri=uri)
    expected = torch.softmax(student.predict(dataset.data.x, dataset.data.edge_index).double(), dim=-1)
    nodes = [0, 7, 7, 1708, 2707, 350]
    mlflow.set_tracking_uri(uri)
    try:
        model = mlflow.pyfunc.load_model("models:/gkd-cora/1")
    finally:
        mlflow.set_tracking_uri(None)
    answer = model.predict(pd.DataFrame({"node_id": nodes}))
    assert list(answer["node_id"]) == nodes
    assert list(answer["predicted_class"]) == expected[nodes].argmax(dim=1).tolist()
    probabilities = answer[[f"probability_{c}" for c in range(7)]].to_numpy()
    assert abs(probabilities - expected[nodes].numpy()).max() < 1e-5
    with pytest.raises(Exception, match="node_id 2708 is not a node of the graph"):
        model.predict(pd.DataFrame({"node_id": [1, 2708]}))


def test_mlflow_models_serve_answers_with_the_students_predictions(workdir):
    """A real ``mlflow models serve`` on 127.0.0.1 (stopped by process id) answers posted node
    ids with exactly ``load_student``'s predictions."""
    import json
    import socket
    import urllib.request

    import torch

    uri = f"sqlite:///{workdir}/mlflow.db"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # mlflow execs `uvicorn` by name: put this interpreter's scripts first on PATH, so the test also
    # runs from an environment that is not activated (`.venv/bin/python -m pytest`)
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PATH": path}
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/gkd-cora/2", "--env-manager", "local",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.time() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, server.stdout.read()[-3000:]
            assert time.time() < deadline, "mlflow models serve did not answer /ping within 180 s"
            time.sleep(1)
        nodes = [3, 99, 1000, 2707]
        body = json.dumps({"dataframe_split": {"columns": ["node_id"], "data": [[n] for n in nodes]}}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            rows = json.loads(response.read())["predictions"]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    student = gkd_search.load_student("models:/gkd-cora/2", tracking_uri=uri)
    dataset = _cora(workdir)
    expected = torch.softmax(student.predict(dataset.data.x, dataset.data.edge_index).double(), dim=-1)[nodes]
    assert [row["node_id"] for row in rows] == nodes
    assert [row["predicted_class"] for row in rows] == expected.argmax(dim=1).tolist()
    served = torch.tensor([[row[f"probability_{c}"] for c in range(7)] for row in rows], dtype=torch.double)
    assert (served - expected).abs().max() < 1e-5


# ------------------------------------------------------------------ the MLflow UI, in a real browser

DOC_IMAGES = ROOT / "docs" / "img"


def _browser():
    """Headless Debian Chromium through chromedriver (selenium), or a skip naming what is missing."""
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[dev]')")
    if not chromium or not driver:
        pytest.skip("no chromium/chromedriver on PATH (Debian: apt-get install chromium chromium-driver; .ci/run does)")
    options = Options()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1900,1000"):
        options.add_argument(flag)
    options.binary_location = chromium
    return webdriver.Chrome(service=Service(driver), options=options)


def _wait_for_text(browser, needles, seconds=90) -> str:
    from selenium.webdriver.common.by import By

    deadline = time.time() + seconds
    while True:
        text = browser.find_element(By.TAG_NAME, "body").text
        if all(n in text for n in needles) or time.time() > deadline:
            return text
        time.sleep(1)


def _close_side_panels(browser) -> None:
    from selenium.webdriver.common.by import By

    for label in ("Close", "Hide banner"):  # the MLflow Assistant panel, the shared-view banner
        for button in browser.find_elements(By.CSS_SELECTOR, f"button[aria-label='{label}']"):
            try:
                button.click()
            except Exception:  # noqa: BLE001 - a panel that is gone or covered is fine
                pass
    time.sleep(1)


@pytest.fixture(scope="module")
def mlflow_ui(workdir, searches):
    """``mlflow ui`` on the searches' store, 127.0.0.1 and a free port; stopped by process id."""
    import socket
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", f"sqlite:///{workdir}/mlflow.db",
         "--host", "127.0.0.1", "--port", str(port)], cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True)
    deadline = time.time() + 180
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        assert server.poll() is None, server.stdout.read()[-3000:]
        assert time.time() < deadline, "mlflow ui did not answer within 180 s"
        time.sleep(1)
    yield f"http://127.0.0.1:{port}"
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=60)


def test_the_mlflow_ui_shows_the_trials_the_selected_student_and_its_numbers(client, mlflow_ui, tmp_path):
    """The URL the CLI prints opens MLflow 3's model-training runs table on the trials, flat and
    sorted, with the selected flag, scores, latency and compression as columns; the search run's
    page opens on its description with the selected student. The screenshots are the README's."""
    from gkd_search.mlflow_ui import run_url, trials_url

    _, parent, children = parents_and_children(client)
    experiment = parent.info.experiment_id
    assert client.get_experiment(experiment).tags["mlflow.experimentKind"] == "custom_model_development"
    selected = next(r for r in children if r.data.tags["gkd.selected"] == "true")
    browser = _browser()
    try:
        browser.get(trials_url(mlflow_ui, experiment))
        names = [r.info.run_name for r in children]
        _wait_for_text(browser, [selected.info.run_name, "val_acc"])
        # the MLflow Assistant panel covers the last columns: close it before waiting for them
        _close_side_panels(browser)
        text = _wait_for_text(browser, [selected.info.run_name, "compression_ratio"])
        browser.save_screenshot(str(tmp_path / "mlflow-trials.png"))
        for column in ("gkd.selected", "val_acc", "latency_ms_p50", "compression_ratio", "speedup", "method"):
            assert column in text, column
        assert sum(name in text for name in names) >= min(len(names), 8)  # the trials are listed flat
        assert parent.info.run_name not in text  # the trials view hides the search row
        assert "true" in text  # the selected trial's gkd.selected cell
        assert f"{selected.data.metrics['val_acc']:g}" in text
        assert f"{selected.data.metrics['compression_ratio']:.6g}"[:5] in text

        browser.get(run_url(mlflow_ui, experiment, parent.info.run_id))
        text = _wait_for_text(browser, ["Selected student", selected.data.tags["gkd.architecture"]])
        _close_side_panels(browser)
        browser.save_screenshot(str(tmp_path / "mlflow-search-run.png"))
        assert "Selected student" in text and selected.data.tags["gkd.architecture"] in text
        from selenium.webdriver.common.by import By

        for more in browser.find_elements(By.XPATH, "//*[normalize-space(text())='Show more']"):
            more.click()  # MLflow folds a long description
        text = _wait_for_text(browser, ["Pareto front", "Teacher"])
        assert "Pareto front" in text and "Teacher" in text, text
    finally:
        browser.quit()
    for name in ("mlflow-trials.png", "mlflow-search-run.png"):
        assert (tmp_path / name).stat().st_size > 20_000
        if os.environ.get("GKD_UPDATE_DOC_IMAGES"):
            DOC_IMAGES.mkdir(exist_ok=True)
            (DOC_IMAGES / name).write_bytes((tmp_path / name).read_bytes())
