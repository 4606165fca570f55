"""Stopping hopeless trials early (``--pruner asha|none``): the rungs, the latency brackets, a
trial stopped by its reports, the sampler told PRUNED, and real searches whose pruned trials are
in MLflow (``gkd.status=pruned``, the epoch reached, the last score) and never selected."""

from __future__ import annotations

import math
import os
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from gkd_search.asha import LatencyBracketASHA, make_scheduler
from gkd_search.errors import UsageError
from gkd_search.latency import LatencyMeasurement, LatencyProtocol
from gkd_search.pruning import PRUNE_METRIC, TIME_ATTR, AshaSettings, RungReporter, check_grace_epochs, check_pruner, latency_bracket
from gkd_search.ray_backend import METRICS, MODES, GkdOptunaSearch, pruned_result
from gkd_search.trial import TrialContext, run_trial
from gkd_search.types import TrialSpec, architecture_key

PRUNE_SPACE = Path(__file__).parent / "spaces" / "prune.yaml"


# ------------------------------------------------------------------------------ units


def test_rungs_are_rays_asha_milestones_below_the_epoch_limit():
    s = AshaSettings()
    assert s.rungs(200) == [10, 30, 90]
    assert s.rungs(40) == [10, 30]
    assert s.rungs(30) == [10]
    assert s.rungs(10) == [] and s.rungs(5) == []
    assert AshaSettings(grace_period=5, reduction_factor=2).rungs(40) == [5, 10, 20]


def test_latency_brackets_are_powers_of_four_below_the_budget():
    assert latency_bracket(10.0, 10.0) == 0
    assert latency_bracket(2.6, 10.0) == 0  # (B/4, B]
    assert latency_bracket(2.5, 10.0) == 1  # B/4 itself: the next bracket
    assert latency_bracket(0.7, 10.0) == 1  # (B/16, B/4]
    assert latency_bracket(0.05, 10.0) == 3
    assert latency_bracket(50.0, 10.0) == 0  # over budget (never sampled)


def test_unknown_pruner_is_a_usage_error():
    assert check_pruner("asha") == "asha" and check_pruner("none") == "none"
    with pytest.raises(UsageError, match="--pruner 'hyperband' is unknown"):
        check_pruner("hyperband")


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_grace_epochs_must_be_a_whole_number_of_at_least_one(bad):
    assert check_grace_epochs(1) == 1 and check_grace_epochs(20) == 20
    with pytest.raises(UsageError, match=rf"--asha-grace-epochs {bad!r} is not a number of epochs"):
        check_grace_epochs(bad)


def test_the_grace_period_sets_the_schedulers_rungs():
    settings = AshaSettings(grace_period=20)
    assert settings.rungs(200) == [20, 60, 180]
    assert make_scheduler("asha", {}, 20, settings) is None  # no rung below the epoch limit
    key = architecture_key("gcn", 2, 64, {})
    scheduler = make_scheduler("asha", {key: 1}, 200, settings)
    good, weak = _trial("gcn", 2, 64), _trial("gcn", 2, 64)
    for t in (good, weak):
        scheduler.on_trial_add(None, t)
    assert scheduler.on_trial_result(None, good, _report(10, 0.8)) == TrialScheduler.CONTINUE
    # epoch 10 is no rung with a grace period of 20: a weak score there is not judged
    assert scheduler.on_trial_result(None, weak, _report(10, 0.3)) == TrialScheduler.CONTINUE
    assert scheduler.on_trial_result(None, good, _report(20, 0.8)) == TrialScheduler.CONTINUE
    assert scheduler.on_trial_result(None, weak, _report(20, 0.3)) == TrialScheduler.STOP


def test_no_scheduler_for_none_or_when_no_rung_fits():
    assert make_scheduler("none", {}, 200) is None
    assert make_scheduler("asha", {}, 10) is None  # nothing to compare before the last epoch
    assert isinstance(make_scheduler("asha", {}, 200), LatencyBracketASHA)


def test_rung_reporter_reports_only_at_rungs():
    reports: list[dict] = []
    reporter = RungReporter([10, 30], reports.append, lambda: {"latency_ms_p50": 1.5})
    assert all(reporter(epoch, 0.1 * epoch / 40) for epoch in range(1, 41))  # it never stops a trial itself
    assert [r[TIME_ATTR] for r in reports] == [10, 30]
    assert reports[0] == {"latency_ms_p50": 1.5, "gkd_status": "running", TIME_ATTR: 10, "val_score": 0.025,
                          PRUNE_METRIC: 0.025}


def test_cli_pruner_option_and_the_pruned_trial_line():
    import io

    from gkd_search.cli import ConsoleReporter, build_parser

    assert build_parser().parse_args([]).pruner == "asha"
    assert build_parser().parse_args(["--pruner", "none"]).pruner == "none"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--pruner", "median"])
    spec = TrialSpec(family="gcn", num_layers=2, hidden_channels=16, method="none", method_params={},
                     training={}, seed=0)
    stream = io.StringIO()
    ConsoleReporter(stream=stream).trial(pruned_result("t1", spec, {TIME_ATTR: 10, "val_score": 0.412}), 3, 6, 1, 0.8)
    assert "pruned at epoch 10 (best val 0.412 then)" in stream.getvalue()


def _trial(family: str, layers: int, hidden: int) -> Trial:
    spec = {"family": family, "num_layers": layers, "hidden_channels": hidden, "family_params": {}}
    return Trial("trainable", config={"gkd_spec": spec}, stub=True)


def _report(epoch: int, score: float) -> dict:
    return {"gkd_status": "running", TIME_ATTR: epoch, PRUNE_METRIC: score}


def test_asha_compares_trials_within_their_latency_bracket_only():
    slow, fast = architecture_key("gcn", 3, 256, {}), architecture_key("mlp", 1, 16, {})
    scheduler = make_scheduler("asha", {slow: 0, fast: 3}, 200)
    big_good, small_weak, big_weak = _trial("gcn", 3, 256), _trial("mlp", 1, 16), _trial("gcn", 3, 256)
    for t in (big_good, small_weak, big_weak):
        scheduler.on_trial_add(None, t)
    assert scheduler.on_trial_result(None, big_good, _report(10, 0.8)) == TrialScheduler.CONTINUE
    # the small student is first in its own bracket: not judged against the big one
    assert scheduler.on_trial_result(None, small_weak, _report(10, 0.4)) == TrialScheduler.CONTINUE
    # a big one below the big ones' cutoff is stopped
    assert scheduler.on_trial_result(None, big_weak, _report(10, 0.4)) == TrialScheduler.STOP
    # a final result (not a rung report) is never stopped
    final = {"gkd_status": "ok", TIME_ATTR: 200, PRUNE_METRIC: 0.1}
    assert scheduler.on_trial_result(None, big_good, final) == TrialScheduler.CONTINUE
    for t in (big_good, small_weak, big_weak):
        scheduler.on_trial_complete(None, t, {})
    assert "bracket 0" in scheduler.debug_string() and "bracket 3" in scheduler.debug_string()


def test_a_start_point_sets_the_bar_at_each_rung_but_is_never_stopped():
    key = architecture_key("mlp", 2, 128, {})
    scheduler = make_scheduler("asha", {key: 3}, 200)
    good, start_point, weak = _trial("mlp", 2, 128), _trial("mlp", 2, 128), _trial("mlp", 2, 128)
    start_point.config["gkd_start_point"] = True  # GkdOptunaSearch.suggest marks the space's start points
    for t in (good, start_point, weak):
        scheduler.on_trial_add(None, t)
    assert scheduler.on_trial_result(None, good, _report(10, 0.8)) == TrialScheduler.CONTINUE
    # below the cutoff, where any other trial is stopped
    assert scheduler.on_trial_result(None, start_point, _report(10, 0.3)) == TrialScheduler.CONTINUE
    assert scheduler.on_trial_result(None, weak, _report(10, 0.3)) == TrialScheduler.STOP
    # and its reports count: at the next rung a trial below it is stopped
    late = _trial("mlp", 2, 128)
    scheduler.on_trial_add(None, late)
    assert scheduler.on_trial_result(None, start_point, _report(30, 0.9)) == TrialScheduler.CONTINUE
    assert scheduler.on_trial_result(None, late, _report(10, 0.85)) == TrialScheduler.CONTINUE
    assert scheduler.on_trial_result(None, late, _report(30, 0.5)) == TrialScheduler.STOP


def test_the_searcher_marks_its_start_points_in_their_config():
    searcher = GkdOptunaSearch(space=_one_param, metric=METRICS, mode=MODES,
                               sampler=optuna.samplers.RandomSampler(seed=0))
    searcher.set_search_properties(None, None, {})
    assert searcher.start_with([{"x": 0.25}]) == 1
    first, second = searcher.suggest("a"), searcher.suggest("b")
    assert first.get("gkd_start_point") is True and "gkd_start_point" not in second
    assert searcher._ot_study.trials[0].params == {"x": 0.25}


def _one_param(trial):
    trial.suggest_float("x", 0.0, 1.0)
    return None


def test_a_pruned_trial_is_told_to_optuna_as_pruned():
    searcher = GkdOptunaSearch(space=_one_param, metric=METRICS, mode=MODES,
                               sampler=optuna.samplers.RandomSampler(seed=0))
    searcher.set_search_properties(None, None, {})
    for trial_id in ("a", "b"):
        assert searcher.suggest(trial_id) is not None
    searcher.on_trial_complete("a", {"gkd_status": "running", TIME_ATTR: 10, "val_score": 0.3})  # stopped at a rung
    searcher.on_trial_complete("b", {"gkd_status": "ok", "val_score": 0.8, "latency_ms_p50": 1.0})
    states = [t.state for t in searcher._ot_study.trials]
    assert states == [TrialState.PRUNED, TrialState.COMPLETE]


def test_pruned_result_from_the_last_rung_report():
    spec = TrialSpec(family="gcn", num_layers=2, hidden_channels=16, method="none", method_params={},
                     training={}, seed=0)
    r = pruned_result("t9", spec, {"gkd_status": "running", TIME_ATTR: 30, "val_score": 0.42,
                                   "latency_ms_p50": 1.25, "gkd_seconds": 3.0})
    assert (r.status, r.epochs_run, r.last_val_score, r.latency_ms_p50, r.trial_seconds) == ("pruned", 30, 0.42,
                                                                                             1.25, 3.0)
    assert r.val_score is None and not r.selected


# ------------------------------------------------------------------------------ one trial


@pytest.mark.usefixtures("one_thread")
def test_a_trial_stopped_by_its_reports_is_pruned_and_not_saved(gkd_registry, small_synthetic, small_teacher,
                                                                  tmp_path):
    _, outputs = small_teacher
    spec = TrialSpec(family="gcn", num_layers=2, hidden_channels=8, method="none", method_params={},
                     training={"lr": 0.01, "weight_decay": 5e-4, "dropout": 0.5, "epochs": 40, "patience": 40},
                     seed=0)
    fast = LatencyMeasurement(0.5, 0.7, 0.55, 0.4, 30)
    ctx = TrialContext(dataset=small_synthetic, teacher=outputs, families=gkd_registry.families,
                       methods=gkd_registry.methods, latency={spec.architecture_key(): fast}, budget_ms=10.0,
                       protocol=LatencyProtocol(warmup=2, repeats=30))
    seen: list[tuple[int, float]] = []

    def stop_at_five(epoch: int, score: float) -> bool:
        seen.append((epoch, score))
        return epoch < 5

    result = run_trial(spec, ctx, "p1", save_dir=tmp_path / "student", on_epoch=stop_at_five)
    assert result.status == "pruned", result.error
    assert result.epochs_run == 5 and [e for e, _ in seen] == [1, 2, 3, 4, 5]
    assert result.last_val_score == pytest.approx(max(s for _, s in seen))  # its best score then
    assert result.val_score is None and result.checkpoint is None
    assert not (tmp_path / "student").exists() or not any((tmp_path / "student").iterdir())

    kept = run_trial(spec, ctx, "p2", on_epoch=lambda epoch, score: True)
    assert kept.status == "ok" and kept.epochs_run > 5


# ------------------------------------------------------------------------------ real searches


@pytest.fixture(scope="module")
def searches(tmp_path_factory):
    """The same small real search (Ray Tune, Optuna, MLflow) with ``--pruner asha`` and ``none``."""
    from gkd_search.registry import build_registry, get_plugin_manager
    from gkd_search.search import SearchConfig, run_search

    out = {}
    environment = os.environ.get("MLFLOW_TRACKING_URI")
    cache = tmp_path_factory.mktemp("prune-cache")  # the teacher and latency table, shared
    for pruner in ("asha", "none"):
        tmp = tmp_path_factory.mktemp(f"prune-{pruner}")
        config = SearchConfig(
            dataset="synthetic:nodes=600,edges=3000,features=16,classes=3", budget_ms=100, trials=6, epochs=30,
            space=str(PRUNE_SPACE), teacher="gcn:2:16:epochs=20", tracking_uri=f"sqlite:///{tmp}/mlflow.db",
            cache_dir=str(cache), seed=1, max_concurrent=1, pruner=pruner,
            asha_grace_epochs=5,  # rungs at epochs 5 and 15 of 30 (not the default 10)
        )
        out[pruner] = (config, run_search(config, build_registry(get_plugin_manager(autoload=False))))
        # logging the model sets MLflow's URI for a moment; the caller's environment is left as it was
        assert os.environ.get("MLFLOW_TRACKING_URI") == environment
    return out


def _runs(config):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(config.tracking_uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    parent = next(r for r in runs if r.data.tags.get("gkd.role") == "search")
    return parent, [r for r in runs if r.data.tags.get("gkd.role") == "trial"]


@pytest.mark.slow
def test_asha_prunes_hopeless_trials_and_records_them(searches):
    config, summary = searches["asha"]
    pruned = [r for r in summary.results if r.status == "pruned"]
    assert len(summary.results) == config.trials
    assert pruned, "the 1e-5 learning rate trials should be stopped at the first rung"
    assert any(r.status == "ok" for r in summary.results)
    for r in pruned:
        assert r.epochs_run in (5, 15)  # --asha-grace-epochs 5: the rungs below 30 epochs
        assert r.last_val_score is not None and 0.0 <= r.last_val_score <= 1.0
    assert summary.selected is not None and summary.selected.status == "ok"
    assert all(r not in summary.pareto for r in pruned)

    parent, trials = _runs(config)
    assert parent.data.params["pruner"] == "asha" and parent.data.params["asha_grace_epochs"] == "5"
    assert parent.data.metrics["n_pruned"] == len(pruned)
    logged = [t for t in trials if t.data.tags["gkd.status"] == "pruned"]
    assert len(logged) == len(pruned)
    for run in logged:
        assert run.info.status == "FINISHED"
        assert run.data.tags["gkd.selected"] == "false" and run.data.tags["gkd.pareto"] == "false"
        assert run.data.metrics["epochs_run"] in (5, 15)
        assert 0.0 <= run.data.metrics["last_val_score"] <= 1.0
        assert "val_score" not in run.data.metrics and "test_score" not in run.data.metrics
        assert run.data.tags["gkd.ray_node"] and run.data.tags["gkd.ray_node_ip"]  # where it ran, from its rung report
    selected = [t for t in trials if t.data.tags["gkd.selected"] == "true"]
    assert len(selected) == 1 and selected[0].data.tags["gkd.status"] == "ok"


@pytest.mark.slow
def test_pruner_none_prunes_nothing(searches):
    config, summary = searches["none"]
    assert len(summary.results) == config.trials
    # every trial trains its 30 epochs (patience 100); at lr 1e-5 the training guard may find it
    # still at chance at epoch 30 (its warm-up) and record it failed/degenerate, never pruned
    assert all(r.status == "ok" or (r.status == "failed" and r.error == "degenerate") for r in summary.results)
    assert any(r.status == "ok" for r in summary.results)
    assert all(r.epochs_run == 30 and r.last_val_score is None for r in summary.results)
    parent, trials = _runs(config)
    assert parent.data.params["pruner"] == "none" and parent.data.metrics["n_pruned"] == 0
    assert parent.data.params["asha_grace_epochs"] == ""  # no rungs without ASHA
    assert "pruned" not in {t.data.tags["gkd.status"] for t in trials}


@pytest.mark.slow
def test_asha_spends_fewer_epochs_than_none(searches):
    epochs = {p: sum(r.epochs_run or 0 for r in s.results) for p, (_, s) in searches.items()}
    assert epochs["asha"] < epochs["none"]
    assert not math.isnan(searches["asha"][1].selected.val_score)
