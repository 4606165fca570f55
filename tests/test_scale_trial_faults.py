"""Faults inside trials, for real: the test SIGKILLs a trial's Ray worker process mid-training
(Ray restarts the trial once; killed again it is recorded ``failed`` with the cause), a trial
that runs past ``--trial-timeout`` is stopped and recorded ``failed`` (``timeout``), and an
exception inside a trial is recorded ``failed`` at once, never retried. Each trial is recorded
exactly once."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import ray.cloudpickle as cloudpickle
from mlflow.tracking import MlflowClient

from gkd_search import hookimpl
from gkd_search.nn import supervised_cross_entropy
from gkd_search.registry import build_registry, get_plugin_manager
from gkd_search.search import SearchConfig, run_search
from gkd_search.types import DistillationLoss, DistillationMethod

pytestmark = pytest.mark.slow

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers unpickle the method

TINY_SPACE = Path(__file__).parent / "spaces" / "tiny.yaml"
#: what the n-th trial attempt does at its first training step (4 trials, one at a time)
SCRIPT = ["kill", "kill",  # trial 1: killed, retried, killed again -> failed (worker_died)
          "kill", "ok",  # trial 2: killed, retried -> ok
          "hang",  # trial 3: past --trial-timeout -> failed (timeout)
          "raise"]  # trial 4: an exception -> failed at once
TIMEOUT_S = 8.0


def act(control: Path) -> None:
    """Runs in the trial's worker: take the next attempt number, do what the script says."""
    with open(control / "counter.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        counter = control / "counter"
        attempt = int(counter.read_text()) + 1 if counter.exists() else 1
        counter.write_text(str(attempt))
    action = SCRIPT[attempt - 1] if attempt <= len(SCRIPT) else "ok"
    (control / f"attempt-{attempt}-{action}").write_text(str(os.getpid()))
    if action == "kill":  # wait to be killed by the test
        deadline = time.time() + 120
        while time.time() < deadline:
            time.sleep(0.05)
    elif action == "hang":
        while True:
            time.sleep(0.05)
    elif action == "raise":
        raise RuntimeError("scripted failure inside the trial")


class ScriptedLoss(DistillationLoss):
    def __init__(self, control: str):
        super().__init__()
        self.control, self.acted = control, False

    def forward(self, student, batch):
        if not self.acted:
            self.acted = True
            act(Path(self.control))
        return supervised_cross_entropy(student.logits, batch.y, batch.train_mask)


class ScriptedMethod(DistillationMethod):
    name = "scripted"

    def __init__(self, control: str):
        self.control = control

    def build_loss(self, params, context):
        return ScriptedLoss(self.control)


class Provides:
    def __init__(self, method):
        self.method = method

    @hookimpl
    def gkd_methods(self):
        return [self.method]


def kill_workers(control: Path, stop: threading.Event, killed: list) -> None:
    """The test's side: SIGKILL the worker process of every attempt scripted to be killed."""
    while not stop.is_set():
        for marker in sorted(control.glob("attempt-*-kill")):
            if marker.name not in {k for k, _ in killed}:
                pid = int(marker.read_text())
                time.sleep(0.5)  # mid-training
                os.kill(pid, signal.SIGKILL)
                killed.append((marker.name, pid))
        time.sleep(0.1)


@pytest.fixture(scope="module")
def faulty_search(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("faults")
    control = workdir / "control"
    control.mkdir()
    pm = get_plugin_manager(autoload=False)
    pm.register(Provides(ScriptedMethod(str(control))), name="scripted-method")
    config = SearchConfig(dataset="synthetic:nodes=600,edges=3000,features=16,classes=3",
                          teacher="gcn:2:16:epochs=30:patience=30", space=str(TINY_SPACE), methods=["scripted"],
                          families=["mlp"], trials=4, epochs=20, budget_ms=100, max_concurrent=1, seed=1,
                          trial_timeout=TIMEOUT_S, tracking_uri=f"sqlite:///{workdir}/mlflow.db",
                          cache_dir=str(workdir / "cache"))
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=kill_workers, args=(control, stop, killed), daemon=True)
    killer.start()
    try:
        summary = run_search(config, build_registry(pm))
    finally:
        stop.set()
        killer.join()
    return summary, config, control, killed


def test_a_killed_worker_is_retried_once_then_recorded_failed_with_the_cause(faulty_search):
    summary, _, control, killed = faulty_search
    assert [k for k, _ in killed] == ["attempt-1-kill", "attempt-2-kill", "attempt-3-kill"]
    first, second = summary.results[0], summary.results[1]
    assert first.status == "failed" and first.failure == "worker_died" and first.retries == 1
    assert first.error.startswith("worker died (2 attempts)"), first.error
    assert second.status == "ok" and second.retries == 1 and second.failure is None


def test_a_trial_past_the_timeout_is_stopped_and_recorded_failed(faulty_search):
    summary, *_ = faulty_search
    third = summary.results[2]
    assert third.status == "failed" and third.failure == "timeout" and third.retries == 0
    assert third.error.startswith(f"timeout: stopped after --trial-timeout {TIMEOUT_S:g} s")


def test_an_exception_inside_a_trial_is_recorded_at_once_and_not_retried(faulty_search):
    summary, _, control, _ = faulty_search
    fourth = summary.results[3]
    assert fourth.status == "failed" and fourth.failure == "exception" and fourth.retries == 0
    assert "scripted failure inside the trial" in fourth.error
    assert int((control / "counter").read_text()) == len(SCRIPT)  # no attempt beyond the script: nothing else retried


def test_each_trial_is_recorded_once_with_its_cause(faulty_search):
    summary, config, _, _ = faulty_search
    client = MlflowClient(config.tracking_uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=100)
    trials = sorted((r for r in runs if r.data.tags.get("gkd.role") == "trial"), key=lambda r: r.info.run_name)
    assert len(trials) == 4 and len({t.data.tags["gkd.trial_id"] for t in trials}) == 4
    tags = [(t.data.tags["gkd.status"], t.data.tags.get("gkd.failure"), t.data.tags["gkd.retries"]) for t in trials]
    assert tags == [("failed", "worker_died", "1"), ("ok", None, "1"), ("failed", "timeout", "0"),
                    ("failed", "exception", "0")]
    assert trials[2].data.tags["gkd.error"].startswith("timeout")
    parent = next(r for r in runs if r.data.tags.get("gkd.role") == "search")
    assert parent.info.status == "FINISHED" and parent.data.params["trial_timeout"] == str(TIMEOUT_S)
    assert json.loads(parent.data.tags["gkd.search_config"])["trial_timeout"] == TIMEOUT_S
