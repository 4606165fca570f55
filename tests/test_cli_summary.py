"""The final table: the front sorted by latency, identical trials collapsed, the selected marked."""

from __future__ import annotations

import io
from importlib.metadata import version

import pytest

from gkd_search.cli import ConsoleReporter, print_summary
from gkd_search.types import SearchSummary, TeacherOutputs, TrialResult, TrialSpec


def result(trial_id, family, layers, hidden, val, test, p50, params, selected=False):
    spec = TrialSpec(family=family, num_layers=layers, hidden_channels=hidden, method="softkd")
    return TrialResult(trial_id, spec, "ok", latency_ms_p50=p50, latency_ms_p95=p50, params=params,
                       val_acc=val, test_acc=test, pareto=True, selected=selected, run_id=f"run-{trial_id}")


def test_summary_table_collapses_identical_trials_and_marks_the_selected():
    mlp_a = result("a", "mlp", 1, 0, 0.79, 0.80, 0.01, 10_000)
    mlp_b = result("b", "mlp", 1, 0, 0.79, 0.80, 0.01, 10_000)
    gcn = result("c", "gcn", 2, 16, 0.83, 0.84, 0.32, 23_000, selected=True)
    teacher = TeacherOutputs(logits=None, hidden=[], spec="gcn:2:256", num_params=368_903, val_acc=0.80, test_acc=0.815)
    summary = SearchSummary(dataset="cora", budget_ms=10, teacher=teacher, results=[gcn, mlp_a, mlp_b],
                            pareto=[gcn, mlp_a, mlp_b], selected=gcn, parent_run_id="parent",
                            tracking_uri="sqlite:///mlruns/mlflow.db")
    stream = io.StringIO()
    print_summary(summary, ConsoleReporter(stream=stream))
    text = stream.getvalue()
    assert text.count("mlp-1L") == 1 and "(x2 identical trials)" in text
    assert text.index("mlp-1L") < text.index("gcn-2L-16")  # sorted by latency
    assert "  * gcn-2L-16" in text and "16.0x" in text
    assert "gkd_search.load_student('run-c')" in text
    assert "mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db" in text


def test_summary_names_the_rule_the_best_scoring_trial_speedup_and_the_registered_model():
    small = result("s", "gcn", 2, 16, 0.820, 0.835, 0.30, 23_000, selected=True)
    big = result("b", "gcn", 2, 128, 0.828, 0.829, 0.60, 184_000)
    small.val_score, small.test_score, big.val_score, big.test_score = 0.820, 0.835, 0.828, 0.829
    teacher = TeacherOutputs(logits=None, hidden=[], spec="gcn:2:256", num_params=368_000, val_acc=0.80, test_acc=0.815,
                             val_score=0.80, test_score=0.815)
    summary = SearchSummary(dataset="cora", budget_ms=10, teacher=teacher, results=[small, big], pareto=[small, big],
                            selected=small, parent_run_id="parent", tracking_uri="sqlite:///mlruns/mlflow.db",
                            best=big, tolerance=0.0169, teacher_latency_ms_p50=0.9, model_uri="models:/gkd-cora/3",
                            registered_model="gkd-cora", registered_version="3")
    stream = io.StringIO()
    print_summary(summary, ConsoleReporter(stream=stream))
    text = stream.getvalue()
    assert "--select one-se: the fewest parameters among trials within one standard error (0.017)" in text
    assert "gcn-2L-16 softkd: val 0.820, test 0.835, p50 0.30 ms, 23,000 parameters: 16.0x smaller and 3.0x faster" in text
    assert "Best-scoring trial (b): gcn-2L-128 softkd: val 0.828, test 0.829" in text
    assert "  b gcn-2L-128" in text and "teacher gcn:2:256: val 0.800 test 0.815, p50 0.90 ms" in text
    assert "registered as models:/gkd-cora/3; serve it with: mlflow models serve -m models:/gkd-cora/3" in text


def test_version_names_gkd_search_and_the_libraries_it_runs_on(capsys):
    from gkd_search.cli import VERSION_DEPENDENCIES, main

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps long lines
    assert text.startswith(f"gkd-search {version('gkd-search')} (")
    for name in VERSION_DEPENDENCIES:
        assert f"{name} {version(name)}" in text
