"""A trial that raises or whose loss becomes NaN is recorded ``failed`` and the search goes on;
observer hooks see every trial and the end of the search."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import ray.cloudpickle as cloudpickle
import torch
from mlflow.tracking import MlflowClient

from gkd_search import hookimpl
from gkd_search.errors import PluginWarning
from gkd_search.registry import build_registry, get_plugin_manager
from gkd_search.search import SearchConfig, run_search
from gkd_search.types import DistillationLoss, DistillationMethod

pytestmark = pytest.mark.slow

# Ray workers unpickle these classes: ship them by value, the tests folder is not a package.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


class NaNLoss(DistillationLoss):
    def forward(self, student, batch):
        return student.logits.sum() * torch.tensor(float("nan"))


class NaNMethod(DistillationMethod):
    name = "nan-loss"

    def build_loss(self, params, context):
        return NaNLoss()


class RaisingMethod(DistillationMethod):
    name = "raises"

    def build_loss(self, params, context):
        raise RuntimeError("this method is broken on purpose")


class Recorder:
    """A test plugin: provides the broken methods and observes the search."""

    def __init__(self):
        self.trials, self.summaries = [], []

    @hookimpl
    def gkd_methods(self):
        return [NaNMethod(), RaisingMethod()]

    @hookimpl
    def gkd_trial_finished(self, result):
        self.trials.append(result)

    @hookimpl
    def gkd_search_finished(self, summary):
        self.summaries.append(summary)


class RaisingObserver:
    """An observer with a bug: it must not end the search nor hide trials from other observers."""

    @hookimpl
    def gkd_trial_finished(self, result):
        raise ValueError("observer bug")

    @hookimpl
    def gkd_search_finished(self, summary):
        raise ValueError("observer bug at the end")


@pytest.fixture(scope="module")
def observed_search(tmp_path_factory):
    """A real 5-trial search with broken methods, a recording observer and a raising observer."""
    import warnings

    tmp_path = tmp_path_factory.mktemp("failures")
    recorder = Recorder()
    pm = get_plugin_manager(autoload=False)
    pm.register(RaisingObserver(), name="raising-observer")
    pm.register(recorder, name="test-recorder")
    registry = build_registry(pm)
    config = SearchConfig(
        dataset="synthetic:nodes=600,edges=3000,features=16,classes=3", budget_ms=100, trials=5, epochs=10,
        space=str(Path(__file__).parent / "spaces" / "tiny.yaml"), methods=["nan-loss", "raises", "none"],
        families=["gcn"], teacher="gcn:2:16:epochs=20", tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
        cache_dir=str(tmp_path / "cache"), seed=3,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = run_search(config, registry)
    messages = [str(w.message) for w in caught if issubclass(w.category, PluginWarning)]
    return summary, recorder, messages, config, tmp_path


def test_hook_gkd_trial_finished_sees_every_trial_once_despite_a_raising_observer(observed_search):
    summary, recorder, messages, _, _ = observed_search
    assert [r.trial_id for r in recorder.trials] == [r.trial_id for r in summary.results]
    assert all(r.run_id for r in recorder.trials)  # called after the trial was logged
    assert sum("plugin 'raising-observer': gkd_trial_finished raised ValueError: observer bug (ignored)" in m
               for m in messages) == 5


def test_hook_gkd_search_finished_sees_the_summary_once_despite_a_raising_observer(observed_search):
    summary, recorder, messages, _, _ = observed_search
    assert recorder.summaries == [summary]
    assert any("plugin 'raising-observer': gkd_search_finished raised ValueError: observer bug at the end" in m
               for m in messages)


def test_failing_trials_are_recorded_and_the_search_goes_on(observed_search):
    summary, recorder, messages, config, tmp_path = observed_search
    assert len(summary.results) == 5
    statuses = {r.spec.method: set() for r in summary.results}
    for r in summary.results:
        statuses[r.spec.method].add(r.status)
    assert statuses.get("nan-loss", {"failed"}) == {"failed"}
    assert statuses.get("raises", {"failed"}) == {"failed"}
    failed = [r for r in summary.results if r.status == "failed"]
    assert failed, "the seeded sampler should draw a broken method at least once"
    for r in failed:
        if r.spec.method == "nan-loss":  # stopped by the training guard
            assert r.error == "diverged" and "loss became nan" in r.error_detail
        else:
            assert "this method is broken on purpose" in r.error

    client = MlflowClient(config.tracking_uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    trial_runs = [r for r in runs if r.data.tags.get("gkd.role") == "trial"]
    assert len(trial_runs) == 5
    for run in trial_runs:
        if run.data.tags["gkd.status"] == "failed":
            assert run.info.status == "FAILED" and run.data.tags["gkd.error"]
            assert "val_acc" not in run.data.metrics
    ok = [r for r in summary.results if r.status == "ok"]
    selected = [r for r in trial_runs if r.data.tags["gkd.selected"] == "true"]
    assert len(selected) == (1 if ok else 0)
    parent = next(r for r in runs if r.data.tags.get("gkd.role") == "search")
    assert parent.info.status == "FINISHED" and parent.data.metrics["n_failed"] == len(failed)

    # Ray's per-search checkpoints are removed once the selected student is in MLflow
    ray_results = tmp_path / "cache" / "ray_results"
    assert not ray_results.exists() or not any(ray_results.iterdir())
    if ok:
        assert summary.student_path == f"runs:/{summary.selected.run_id}/student"


def test_ctrl_c_swallowed_inside_tune_still_interrupts_the_search():
    """Tune catches a KeyboardInterrupt raised inside its callbacks and ends the experiment as if
    it had finished; the guard around ``tuner.fit()`` re-raises it afterwards."""
    import os
    import signal

    from gkd_search.ray_backend import _interrupt_always_propagates

    swallowed = []
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when the tests run in the background
    with pytest.raises(KeyboardInterrupt):
        with _interrupt_always_propagates():
            try:
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(1000):
                    pass
            except KeyboardInterrupt:
                swallowed.append(True)  # what Tune does inside a callback
    assert swallowed
    assert signal.getsignal(signal.SIGINT) is before  # restored
