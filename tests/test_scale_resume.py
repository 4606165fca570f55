"""``kill -9`` of a search's driver, then ``gkd-search --resume``, while a second search runs at
the same time against the same default sqlite store (two terminals, one working folder).

The resumed search ends with exactly ``--trials`` trial runs under its search run, trains no
spec twice except the one running at the kill, leaves nothing RUNNING, and its selected student
loads; the other search finishes with every run recorded (no "database is locked"). Starting the
interrupted search again, and resuming it once it finished, are one-line errors.
"""

from __future__ import annotations

import contextlib
import io
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
from gkd_search.cli import main

pytestmark = pytest.mark.slow

TINY_SPACE = Path(__file__).parent / "spaces" / "tiny.yaml"
TRIALS = 4


def options(seed: int, trials: int) -> list[str]:
    return ["--dataset", "synthetic:nodes=600,edges=3000,features=16,classes=3", "--teacher",
            "gcn:2:16:epochs=30:patience=30", "--space", str(TINY_SPACE), "--trials", str(trials), "--epochs", "30",
            "--budget-ms", "100", "--max-concurrent", "1", "--seed", str(seed), "--pruner", "none"]


def default_store_environment() -> dict[str, str]:
    """This environment without ``$MLFLOW_TRACKING_URI``: the searches use the default store."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def gkd_search_process(workdir: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gkd_search", *args, "--cache-dir", str(workdir / "cache")],
                            cwd=workdir, env=default_store_environment(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def in_process(workdir: Path, *args: str) -> tuple[int, str]:
    """``gkd-search`` in this process, in ``workdir``, on the default store given by its absolute
    path: MLflow caches a store per URI string for the life of a process, so the relative default
    ``sqlite:///mlruns/mlflow.db`` would reach the folder of an earlier test that used it."""
    out = io.StringIO()
    previous = os.getcwd()
    os.chdir(workdir)
    uri = "sqlite:///" + str(workdir / "mlruns" / "mlflow.db")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = main([*args, "--cache-dir", str(workdir / "cache"), "--tracking-uri", uri])
    finally:
        os.chdir(previous)
    return code, out.getvalue()


def journal_events(workdir: Path, run_id: str) -> list[dict]:
    path = workdir / "cache" / "searches" / run_id / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, what
        time.sleep(interval)


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("resume")
    a = gkd_search_process(workdir, *options(seed=1, trials=TRIALS))
    b = gkd_search_process(workdir, *options(seed=2, trials=2))
    lines, run_id = [], None
    for line in a.stdout:
        lines.append(line)
        if line.startswith("search run "):
            run_id = line.split()[2].rstrip(";")
        if line.startswith(f"[  2/{TRIALS}]"):
            break
    assert run_id, "".join(lines)

    def third_running():
        """The third trial has started and not finished: the kill lands mid-trial. Polled often, as
        a trial of this tiny search takes well under a second on a fast machine."""
        events = journal_events(workdir, run_id)
        done = {e["result"]["trial_id"] for e in events if e["event"] == "finished"}
        started = [e["trial_id"] for e in events if e["event"] == "started"]
        return len(started) >= 3 and started[2] not in done

    wait(third_running, 300, "the third trial was never seen running", interval=0.01)
    a.send_signal(signal.SIGKILL)
    a.wait(timeout=60)
    events = journal_events(workdir, run_id)
    finished = {e["result"]["trial_id"] for e in events if e["event"] == "finished"}
    running = {e["trial_id"]: e["spec"] for e in events if e["event"] == "started" and e["trial_id"] not in finished}
    twin = in_process(workdir, *options(seed=1, trials=TRIALS))  # the same search again, not resumed
    uri = "sqlite:///" + str(workdir / "mlruns" / "mlflow.db")
    client = MlflowClient(uri)
    before = {r.data.tags["gkd.trial_id"]: r.info.run_id for r in children(client, run_id)}
    b_out, _ = b.communicate(timeout=900)
    assert b.returncode == 0, b_out[-3000:]
    resumed = gkd_search_process(workdir, "--resume", run_id)
    resumed_out, _ = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, resumed_out[-3000:]
    again = in_process(workdir, "--resume", run_id)
    return dict(workdir=workdir, run_id=run_id, finished=finished, running=running, before=before, twin=twin,
                b_out=b_out, resumed_out=resumed_out, again=again, client=client, uri=uri, lines=lines)


def children(client: MlflowClient, run_id: str):
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, f"tags.`mlflow.parentRunId` = '{run_id}'", max_results=100)


def spec_of(params: dict) -> tuple:
    return tuple(sorted(params.items()))


def test_resumed_search_has_exactly_its_trials_and_reran_only_what_was_running(killed_and_resumed):
    k = killed_and_resumed
    assert len(k["finished"]) == 2 and len(k["running"]) >= 1
    assert f"resuming: 2 of {TRIALS} trials finished (0 logged from the journal now), {len(k['running'])} were running" \
        in k["resumed_out"]
    trials = children(k["client"], k["run_id"])
    assert len(trials) == TRIALS
    by_trial = {t.data.tags["gkd.trial_id"]: t for t in trials}
    assert len(by_trial) == TRIALS
    # what finished before the kill is the same run, never trained again
    assert set(k["before"]) == k["finished"]
    assert all(by_trial[trial].info.run_id == run for trial, run in k["before"].items())
    # what was running at the kill ran again, with the same spec, once
    reruns = [t for t in trials if t.data.tags.get("gkd.rerun_of")]
    assert {t.data.tags["gkd.rerun_of"] for t in reruns} == set(k["running"])
    for t in reruns:
        spec = k["running"][t.data.tags["gkd.rerun_of"]]
        assert t.data.params["family"] == spec["family"] and t.data.params["method"] == spec["method"]
        assert float(t.data.params["lr"]) == pytest.approx(spec["training"]["lr"])
    # no spec trained twice
    assert len({spec_of(t.data.params) for t in trials}) == TRIALS


def test_nothing_left_running_and_the_selected_student_loads(killed_and_resumed):
    k = killed_and_resumed
    client = k["client"]
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, max_results=200)
    assert all(r.info.status != "RUNNING" for r in runs)
    parent = client.get_run(k["run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["gkd.status"] == "finished"
    assert parent.data.tags["gkd.resumes"] == "1"
    student = gkd_search.load_student(k["run_id"], tracking_uri=k["uri"])
    selected = client.get_run(parent.data.tags["gkd.selected_run_id"])
    assert student.spec.family == selected.data.params["family"]
    assert not (k["workdir"] / "cache" / "searches" / k["run_id"]).exists()  # the journal is gone once finished


def test_the_concurrent_search_on_the_same_store_recorded_every_run(killed_and_resumed):
    k = killed_and_resumed
    client = k["client"]
    experiments = [e.experiment_id for e in client.search_experiments()]
    parents = [r for r in client.search_runs(experiments, "tags.`gkd.role` = 'search'") if r.info.run_id != k["run_id"]]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children(client, parents[0].info.run_id)) == 2
    assert "database is locked" not in k["b_out"] + k["resumed_out"]


def test_starting_an_interrupted_search_again_and_resuming_a_finished_one_are_one_line_errors(killed_and_resumed):
    k = killed_and_resumed
    code, text = k["twin"]
    assert code == 2, text
    assert f"search run {k['run_id']} with the same options was interrupted" in text
    assert f"gkd-search --resume {k['run_id']}" in text and "--fresh" in text
    assert len([line for line in text.splitlines() if line.startswith("gkd-search: error")]) == 1
    code, text = k["again"]
    assert code == 2 and text.startswith(f"gkd-search: error: --resume {k['run_id']}: that search finished"), text
