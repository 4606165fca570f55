"""A real ``mlflow server`` on PostgreSQL with proxied artifacts, started and stopped by the test
(both through their process ids), going away in the middle of a search:

1. after the first trial is logged the server is stopped and started again: the driver retries
   with back-off and the next trial's record goes through once the server answers;
2. after the third trial it is stopped for good: the remaining records go to the journal, and the
   search ends with a one-line error naming ``--resume``;
3. the server is started again and ``gkd-search --resume`` replays the journal and finishes.

Then every trial is in the store once, nothing is RUNNING, and the selected student and the
registered model load from the server.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from servers import MlflowServer, Postgres

import gkd_search
from gkd_search import hookimpl
from gkd_search.cli import main
from gkd_search.registry import build_registry, get_plugin_manager
from gkd_search.retry import RETRY_ENV, TrackingUnavailable
from gkd_search.search import Reporter, SearchConfig, run_search
from gkd_search.tracking import metric_value

pytestmark = pytest.mark.slow

TINY_SPACE = Path(__file__).parent / "spaces" / "tiny.yaml"
DATASET = "synthetic:nodes=600,edges=3000,features=16,classes=3"
TRIALS = 4


class Messages(Reporter):
    def __init__(self):
        self.lines = []

    def message(self, text):
        self.lines.append(text)


class ServerOutages:
    """An observer plugin (runs in the driver, after each trial's record): takes the tracking
    server away after trial 1 (and brings it back at once, in the background) and after trial 3
    (for good, with a 3 s retry limit so the last record goes to the journal quickly)."""

    def __init__(self, server: MlflowServer):
        self.server, self.seen, self.restart = server, 0, None

    @hookimpl
    def gkd_trial_finished(self, result):
        self.seen += 1
        if self.seen == 1:
            self.server.stop()
            self.restart = threading.Thread(target=self.server.start)
            self.restart.start()
        elif self.seen == 3:
            self.restart.join()
            os.environ[RETRY_ENV] = "3"
            self.server.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("tracking-server")
    postgres = Postgres()
    mlflow_server = MlflowServer(postgres.url(), workdir / "artifacts", workdir)
    try:
        mlflow_server.start()
        yield mlflow_server
    finally:
        mlflow_server.stop()
        postgres.stop()


@pytest.fixture(scope="module")
def outage_search(server, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("outage-search")
    outages = ServerOutages(server)
    pm = get_plugin_manager(autoload=False)
    pm.register(outages, name="server-outages")
    config = SearchConfig(dataset=DATASET, teacher="gcn:2:16:epochs=30:patience=30", space=str(TINY_SPACE),
                          trials=TRIALS, epochs=15, budget_ms=100, max_concurrent=1, seed=4,
                          tracking_uri=server.url, cache_dir=str(workdir / "cache"), register_model="gkd-outage")
    messages = Messages()
    previous = os.environ.get(RETRY_ENV)
    os.environ[RETRY_ENV] = "180"
    try:
        with pytest.raises(TrackingUnavailable) as failure:
            run_search(config, build_registry(pm), messages)
    finally:
        if previous is None:
            os.environ.pop(RETRY_ENV, None)
        else:
            os.environ[RETRY_ENV] = previous
    parent_id = next(line.split()[2].rstrip(";") for line in messages.lines if line.startswith("search run "))
    journal = workdir / "cache" / "searches" / parent_id / "events.jsonl"
    journal_text = journal.read_text()
    server.start()
    return config, messages, str(failure.value), parent_id, journal_text, workdir


@pytest.fixture(scope="module")
def resumed(outage_search, server):
    config, _, _, parent_id, _, workdir = outage_search
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--resume", parent_id, "--tracking-uri", server.url, "--cache-dir", str(workdir / "cache")])
    assert code == 0, out.getvalue()[-3000:] + err.getvalue()[-3000:]
    return out.getvalue()


def test_driver_retried_while_the_server_restarted_and_journaled_when_it_stayed_down(outage_search):
    _, messages, error, parent_id, journal_text, _ = outage_search
    assert any("retrying for up to" in line for line in messages.lines), messages.lines
    assert any("waits in the journal" in line for line in messages.lines), messages.lines
    assert error.startswith(f"the MLflow tracking store {outage_search[0].tracking_uri} is unreachable")
    assert f"gkd-search --resume {parent_id}" in error and "\n" not in error
    assert journal_text.count('"event": "finished"') == TRIALS  # every result kept locally


def test_resume_replays_the_journal_and_every_trial_is_recorded_once(resumed, outage_search, server):
    _, _, _, parent_id, _, _ = outage_search
    assert "resuming: 4 of 4 trials finished" in resumed
    client = MlflowClient(server.url)
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["gkd.status"] == "finished"
    assert parent.data.tags["gkd.resumes"] == "1"
    trials = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_id}'")
    assert len(trials) == TRIALS
    assert len({t.data.tags["gkd.trial_id"] for t in trials}) == TRIALS
    assert sorted(t.info.run_name[:9] for t in trials) == [f"trial-{i:03d}" for i in range(1, TRIALS + 1)]
    assert all(t.info.status in ("FINISHED", "FAILED") for t in trials)
    all_runs = client.search_runs([parent.info.experiment_id], max_results=100)
    assert all(r.info.status != "RUNNING" for r in all_runs)


def test_artifacts_are_proxied_by_the_server(resumed, outage_search, server):
    _, _, _, parent_id, _, _ = outage_search
    client = MlflowClient(server.url)
    parent = client.get_run(parent_id)
    assert parent.info.artifact_uri.startswith("mlflow-artifacts:")
    assert {"pareto.png", "trials.csv"} <= {a.path for a in client.list_artifacts(parent_id)}
    stored = {p.name for p in server.artifacts.rglob("*") if p.is_file()}
    assert {"pareto.png", "trials.csv", "weights.pt"} <= stored


def test_selected_student_and_registered_model_load_from_the_server(resumed, outage_search, server):
    import mlflow
    import pandas as pd
    import torch

    config, _, _, parent_id, _, workdir = outage_search
    client = MlflowClient(server.url)
    parent = client.get_run(parent_id)
    selected = client.get_run(parent.data.tags["gkd.selected_run_id"])
    assert parent.data.tags["gkd.model_uri"] == "models:/gkd-outage/1"
    registry = build_registry(get_plugin_manager(autoload=False))
    spec = registry.get("dataset", "synthetic")
    dataset = spec.load(None, workdir / "cache" / "datasets", 4, nodes=600, edges=3000, features=16, classes=3)
    for source in (parent_id, "models:/gkd-outage/1"):
        student = gkd_search.load_student(source, tracking_uri=server.url)
        val_acc, test_acc = student.evaluate(dataset)
        # exactly what was logged (metrics are logged to 6 decimals: tracking.metric_value)
        assert metric_value(val_acc) == selected.data.metrics["val_acc"]
        assert metric_value(test_acc) == selected.data.metrics["test_acc"]
    mlflow.set_tracking_uri(server.url)
    try:
        model = mlflow.pyfunc.load_model("models:/gkd-outage/1")
    finally:
        mlflow.set_tracking_uri(None)
    nodes = [0, 5, 599]
    answer = model.predict(pd.DataFrame({"node_id": nodes}))
    expected = student.predict(dataset.data.x, dataset.data.edge_index).argmax(dim=1)[nodes]
    assert list(answer["predicted_class"]) == expected.tolist()
    probabilities = torch.tensor(answer[[f"probability_{c}" for c in range(3)]].to_numpy())
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(len(nodes), dtype=probabilities.dtype))
