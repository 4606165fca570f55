"""Latency early stop: an architecture certainly over the budget stops being timed after a few
requests, is recorded over budget with ``latency_complete=False``; within-budget ones are timed
completely; the cheapest architectures are timed first."""

from __future__ import annotations

import csv
import math

import pytest

from gkd_search.latency import (
    LatencyBench,
    LatencyCache,
    LatencyMeasurement,
    LatencyProtocol,
    measure_all,
    write_latency_table,
)
from gkd_search.latency_stop import OverBudgetRule, margin
from gkd_search.tracking import trial_metrics
from gkd_search.trial import TrialContext, run_trial
from gkd_search.types import TrialSpec

pytestmark = pytest.mark.usefixtures("one_thread")

PROTOCOL = LatencyProtocol(warmup=2, repeats=30)
#: far below any real request (a microsecond): every architecture is >100x over it
TINY_BUDGET_MS = 0.001
#: far above any request on the small graph
HUGE_BUDGET_MS = 10_000.0


def arch(registry, dataset, family, layers, hidden=8):
    fam = registry.get("family", family)
    return (f"{family}-{layers}L-{hidden}", lambda: fam.build(dataset.num_features, dataset.num_classes, layers, hidden),
            fam.num_hops(layers))


# ------------------------------------------------------------------------------ the rule


def test_margin_shrinks_with_requests():
    assert margin(0) == margin(1) == math.inf  # the first (cold) request proves nothing
    assert margin(2) == 3.0 and margin(3) == 2.0 and margin(5) == 1.5
    assert margin(21) == pytest.approx(1.1)


def test_hundred_times_over_stops_after_two_requests():
    rule = OverBudgetRule(budget_ms=1.0, repeats=30)
    assert not rule.over_budget(0.100, timed=False)
    assert rule.over_budget(0.100, timed=False)
    assert rule.reason == "fastest" and rule.requests == 2


def test_one_fast_request_prevents_the_fastest_test():
    """A model within the budget whose requests suffer interference is not stopped by one slow
    request: the fastest one so far must be over the (shrinking) margin."""
    rule = OverBudgetRule(budget_ms=1.0, repeats=30)
    times_ms = [50.0, 0.8] + [1.4] * 10  # one fast request, then interference at 1.4x
    assert not any(rule.over_budget(t / 1000, timed=i >= 2) for i, t in enumerate(times_ms))


def test_within_budget_never_stops():
    rule = OverBudgetRule(budget_ms=1.0, repeats=30)
    assert not any(rule.over_budget(0.0009, timed=i >= 2) for i in range(32))


def test_median_test_stops_once_more_than_half_the_timed_requests_are_over():
    rule = OverBudgetRule(budget_ms=1.0, repeats=30)
    rule.over_budget(0.0005, timed=False)  # a fast warm-up request: the fastest test never fires
    stops = [rule.over_budget(0.0011, timed=True) for _ in range(16)]
    assert stops == [False] * 15 + [True]  # the 16th of 30 over: the median is over whatever follows
    assert rule.reason == "median"


def test_rule_rejects_a_non_positive_budget():
    with pytest.raises(ValueError):
        OverBudgetRule(0.0, 30)


# ------------------------------------------------------------------------------ the bench


def test_far_over_budget_stops_after_two_requests(gkd_registry, small_synthetic):
    key, build, hops = arch(gkd_registry, small_synthetic, "gcn", 2)
    measured = LatencyBench(small_synthetic, PROTOCOL).measure(build(), hops, budget_ms=TINY_BUDGET_MS)
    assert measured.complete is False
    assert measured.stopped_at_budget_ms == TINY_BUDGET_MS
    assert measured.repeats == 1  # the second request (the first, cold one is not a sample)
    assert measured.p50_ms > TINY_BUDGET_MS and measured.min_ms > 0


def test_within_budget_is_measured_completely(gkd_registry, small_synthetic):
    key, build, hops = arch(gkd_registry, small_synthetic, "gcn", 2)
    bench = LatencyBench(small_synthetic, PROTOCOL)
    measured = bench.measure(build(), hops, budget_ms=HUGE_BUDGET_MS)
    assert measured.complete is True and measured.stopped_at_budget_ms is None
    assert measured.repeats == PROTOCOL.repeats
    assert bench.measure(build(), hops).repeats == PROTOCOL.repeats  # no budget: the old protocol


def test_measure_all_times_cheap_first_and_stops_over_budget_ones(gkd_registry, small_synthetic, tmp_path):
    bench = LatencyBench(small_synthetic, PROTOCOL)
    archs = [arch(gkd_registry, small_synthetic, "gcn", 2), arch(gkd_registry, small_synthetic, "mlp", 2),
             arch(gkd_registry, small_synthetic, "gcn", 1), ("teacher:gcn:2:16", *arch(gkd_registry, small_synthetic,
                                                                                      "gcn", 2, 16)[1:])]
    order: list[str] = []
    waited: list[bool] = []
    table = measure_all(archs, bench, LatencyCache(tmp_path, small_synthetic, PROTOCOL),
                        lambda k, m, cached: order.append(k), budget_ms=TINY_BUDGET_MS,
                        complete={"teacher:gcn:2:16"}, before_timing=lambda: waited.append(True))
    assert waited == [True]
    assert order == ["mlp-2L-8", "gcn-1L-8", "gcn-2L-8", "teacher:gcn:2:16"]  # fewest hops, then parameters
    assert list(table) == [a[0] for a in archs]  # the table keeps the given order
    for key in ("gcn-2L-8", "mlp-2L-8", "gcn-1L-8"):
        assert table[key].complete is False and table[key].repeats == 1
    assert table["teacher:gcn:2:16"].complete is True  # the teacher's p50 is reported: timed fully
    assert table["teacher:gcn:2:16"].repeats == PROTOCOL.repeats

    # nothing is measured again for the same budget
    again: list[bool] = []
    measure_all(archs, bench, LatencyCache(tmp_path, small_synthetic, PROTOCOL),
                lambda k, m, cached: again.append(cached), budget_ms=TINY_BUDGET_MS,
                complete={"teacher:gcn:2:16"})
    assert again == [True] * 4

    out = write_latency_table(table, tmp_path / "latency.csv")
    rows = {r["architecture"]: r for r in csv.DictReader(out.open())}
    assert rows["gcn-2L-8"]["latency_complete"] == "false"
    assert float(rows["gcn-2L-8"]["stopped_at_budget_ms"]) == TINY_BUDGET_MS
    assert rows["teacher:gcn:2:16"]["latency_complete"] == "true"


def test_an_incomplete_entry_answers_only_budgets_it_proves(small_synthetic, tmp_path):
    cache = LatencyCache(tmp_path, small_synthetic, PROTOCOL)
    stopped = LatencyMeasurement(5.0, 5.0, 5.0, 5.0, 1, complete=False, stopped_at_budget_ms=1.0)
    cache.put("gcn-2L-8", stopped)
    cache.save()
    cache = LatencyCache(tmp_path, small_synthetic, PROTOCOL)
    assert cache.get("gcn-2L-8") is None  # no budget: a complete measurement is wanted
    assert cache.get("gcn-2L-8", budget_ms=1.0) == stopped
    assert cache.get("gcn-2L-8", budget_ms=0.5) == stopped  # over 1 ms is over 0.5 ms
    assert cache.get("gcn-2L-8", budget_ms=2.0) is None  # proves nothing about 2 ms: time again


# ------------------------------------------------------------------------------ the trial


TRAINING = {"lr": 0.01, "weight_decay": 5e-4, "dropout": 0.5, "epochs": 20, "patience": 20}


def ctx_for(registry, dataset, teacher_outputs, budget_ms, latency=None) -> TrialContext:
    return TrialContext(dataset=dataset, teacher=teacher_outputs, families=registry.families,
                        methods=registry.methods, latency=dict(latency or {}), budget_ms=budget_ms, protocol=PROTOCOL)


def spec() -> TrialSpec:
    return TrialSpec(family="gcn", num_layers=2, hidden_channels=8, method="none", method_params={},
                     training=dict(TRAINING), seed=0)


def test_trial_far_over_budget_is_not_trained_and_says_its_latency_is_incomplete(
        gkd_registry, small_synthetic, small_teacher):
    _, outputs = small_teacher
    result = run_trial(spec(), ctx_for(gkd_registry, small_synthetic, outputs, TINY_BUDGET_MS), "t1")
    assert result.status == "over_budget"
    assert result.latency_complete is False
    assert result.val_score is None and result.epochs_run is None  # not trained
    metrics = trial_metrics(result, outputs)
    assert metrics["latency_complete"] == 0.0 and metrics["latency_ms_p50"] > TINY_BUDGET_MS


def test_trial_within_budget_has_a_complete_latency(gkd_registry, small_synthetic, small_teacher):
    _, outputs = small_teacher
    result = run_trial(spec(), ctx_for(gkd_registry, small_synthetic, outputs, HUGE_BUDGET_MS), "t2")
    assert result.status == "ok", result.error
    assert result.latency_complete is True
    assert trial_metrics(result, outputs)["latency_complete"] == 1.0


def test_an_incomplete_table_entry_is_over_budget(gkd_registry, small_synthetic, small_teacher):
    _, outputs = small_teacher
    s = spec()
    stopped = LatencyMeasurement(5.0, 5.0, 5.0, 5.0, 1, complete=False, stopped_at_budget_ms=1.0)
    result = run_trial(s, ctx_for(gkd_registry, small_synthetic, outputs, 1.0, {s.architecture_key(): stopped}), "t3")
    assert result.status == "over_budget" and result.latency_complete is False
