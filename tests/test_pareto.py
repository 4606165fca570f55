"""The Pareto front (val score up, p50 down, params down) and the selection rules (best, one-se)."""

from __future__ import annotations

import math

import pytest

from gkd_search.errors import UsageError
from gkd_search.pareto import dominates, pareto_front, select, select_student
from gkd_search.types import TrialResult, TrialSpec


def result(tid, val, p50, params, *, test=0.5, status="ok", se=None) -> TrialResult:
    ok = status == "ok"
    return TrialResult(
        trial_id=tid, spec=TrialSpec("gcn", 2, 16), status=status, latency_ms_p50=p50,
        latency_ms_p95=None if p50 is None else p50 * 1.2, params=params,
        val_acc=val if ok else None, test_acc=test if ok else None,
        val_score=val if ok else None, test_score=test if ok else None, val_score_se=se if ok else None,
    )


def ids(results):
    return [r.trial_id for r in results]


def test_dominates():
    assert dominates((0, 0, 0), (0, 0, 1))
    assert dominates((-0.9, 1.0, 10), (-0.8, 2.0, 20))
    assert not dominates((0, 0, 0), (0, 0, 0))  # equal: not better in any objective
    assert not dominates((-0.9, 3.0, 10), (-0.8, 2.0, 20))  # worse in latency
    assert not dominates((-0.8, 2.0, 20), (-0.9, 3.0, 10))


def test_front_in_three_objectives():
    results = [
        result("best-acc", 0.90, 5.0, 5000),  # most accurate
        result("fastest", 0.70, 1.0, 4000),  # fastest
        result("smallest", 0.60, 3.0, 100),  # fewest parameters
        result("dominated", 0.80, 6.0, 6000),  # worse than best-acc in all three
        result("tie-worse-params", 0.90, 5.0, 5001),  # equal acc and latency, more params
        result("balanced", 0.85, 2.0, 3000),  # not dominated by anyone
        result("dominated-by-balanced", 0.84, 2.5, 3000),
    ]
    front = pareto_front(results)
    assert ids(front) == ["best-acc", "fastest", "smallest", "balanced"]  # input order


def test_front_identical_points_both_kept():
    results = [result("a", 0.8, 1.0, 10), result("b", 0.8, 1.0, 10)]
    assert ids(pareto_front(results)) == ["a", "b"]


def test_front_excludes_failed_and_over_budget():
    results = [
        result("ok", 0.5, 5.0, 1000),
        result("failed", None, 0.1, 10, status="failed"),
        result("over", None, 99.0, 10, status="over_budget"),
    ]
    # the failed and over-budget ones have better latency/params but are not finished trials
    assert ids(pareto_front(results)) == ["ok"]
    assert pareto_front([]) == []


def test_select_best_val_within_budget():
    results = [
        result("too-slow", 0.95, 12.0, 100),
        result("good", 0.85, 8.0, 100),
        result("fast-but-worse", 0.80, 1.0, 100),
        result("failed", None, 0.5, 10, status="failed"),
        result("over", None, 50.0, 10, status="over_budget"),
    ]
    assert select_student(results, budget_ms=10.0, rule="best").trial_id == "good"
    # the budget is inclusive
    assert select_student(results, budget_ms=12.0, rule="best").trial_id == "too-slow"
    assert select_student(results, budget_ms=7.9, rule="best").trial_id == "fast-but-worse"


def test_select_ties_go_to_lower_latency_then_fewer_params_then_earlier():
    results = [
        result("slow", 0.9, 3.0, 10),
        result("fast-big", 0.9, 2.0, 500),
        result("fast-small", 0.9, 2.0, 400),
        result("fast-small-later", 0.9, 2.0, 400),
    ]
    assert select_student(results, budget_ms=10, rule="best").trial_id == "fast-small"
    assert select_student(results[:2], budget_ms=10, rule="best").trial_id == "fast-big"


def test_select_none_when_nothing_fits():
    results = [result("slow", 0.9, 12.0, 10), result("failed", None, 1.0, 10, status="failed")]
    assert select_student(results, budget_ms=10.0) is None
    assert select_student([], budget_ms=10.0) is None


def test_select_never_uses_test_accuracy():
    results = [
        result("higher-test", 0.80, 1.0, 10, test=0.99),
        result("higher-val", 0.81, 5.0, 1000, test=0.10),
    ]
    assert select_student(results, budget_ms=10.0, rule="best").trial_id == "higher-val"
    # and test accuracy does not break ties either: equal val, lower latency wins
    results = [result("a", 0.8, 2.0, 10, test=0.99), result("b", 0.8, 1.0, 10, test=0.10)]
    assert select_student(results, budget_ms=10.0, rule="best").trial_id == "b"
    # nor does it enter the front: same val/latency/params, different test acc -> both kept
    results = [result("a", 0.8, 1.0, 10, test=0.99), result("b", 0.8, 1.0, 10, test=0.10)]
    assert ids(pareto_front(results)) == ["a", "b"]


# ------------------------------------------------------------------ one standard error


def test_one_se_takes_the_fewest_parameters_within_one_standard_error_of_the_best():
    """The Cora case of the issue: val 0.828 (2x smaller) against 0.826 (16x smaller) on 500
    validation nodes is noise (binomial SE of 0.828 on 500 nodes: 0.0169)."""
    se = math.sqrt(0.828 * 0.172 / 500)
    results = [
        result("gcn-2L-128", 0.828, 0.9, 184_000, se=se),
        result("gcn-2L-16", 0.826, 0.3, 23_000, se=0.017),
        result("mlp-tiny-but-bad", 0.700, 0.1, 5_000, se=0.02),
        result("too-slow-small", 0.83, 20.0, 1_000, se=0.017),
    ]
    choice = select(results, budget_ms=10.0)
    assert choice.rule == "one-se"
    assert choice.best.trial_id == "gcn-2L-128"
    assert choice.selected.trial_id == "gcn-2L-16"
    assert choice.tolerance == pytest.approx(se)
    # the old rule still picks the best score
    assert select(results, budget_ms=10.0, rule="best").selected.trial_id == "gcn-2L-128"


def test_one_se_keeps_the_best_when_the_others_are_clearly_worse():
    results = [result("best", 0.85, 2.0, 50_000, se=0.01), result("small", 0.83, 1.0, 1_000, se=0.01)]
    choice = select(results, budget_ms=10.0)
    assert choice.selected.trial_id == "best" and choice.best.trial_id == "best"


def test_one_se_ties_go_to_lower_latency_then_higher_score_then_earlier():
    results = [
        result("best", 0.90, 5.0, 9_000, se=0.05),
        result("small-slow", 0.88, 4.0, 1_000, se=0.05),
        result("small-fast", 0.86, 1.0, 1_000, se=0.05),
        result("small-fast-better", 0.87, 1.0, 1_000, se=0.05),
        result("small-fast-better-later", 0.87, 1.0, 1_000, se=0.05),
    ]
    assert select(results, budget_ms=10.0).selected.trial_id == "small-fast-better"


def test_one_se_without_a_standard_error_is_the_best_rule():
    results = [result("best", 0.85, 2.0, 50_000, se=None), result("small", 0.849, 1.0, 1_000, se=float("nan"))]
    choice = select(results, budget_ms=10.0)
    assert choice.selected.trial_id == "best" and choice.tolerance == 0.0


def test_selection_ranks_by_the_score_not_by_accuracy():
    a = result("higher-auc", 0.9, 1.0, 100, se=0.0)
    b = result("higher-acc", 0.8, 1.0, 100, se=0.0)
    a.val_acc, b.val_acc = 0.5, 0.99
    assert select([a, b], budget_ms=10.0).selected.trial_id == "higher-auc"
    assert ids(pareto_front([a, b])) == ["higher-auc"]


def test_unknown_rule_is_a_usage_error():
    with pytest.raises(UsageError, match="--select 'cheapest' is unknown; use one of one-se, best"):
        select([], budget_ms=1.0, rule="cheapest")
