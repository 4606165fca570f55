"""``--metric``: accuracy, macro-F1 and ROC-AUC against hand computations, and their standard errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gkd_search.errors import UsageError
from gkd_search.metrics import METRIC_NAMES, resolve_metric


def logits_for(probabilities):
    return torch.log(torch.tensor(probabilities, dtype=torch.float64))


def test_accuracy_by_hand():
    logits = logits_for([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    y = torch.tensor([0, 1, 1, 0])
    mask = torch.tensor([True, True, True, False])
    assert resolve_metric("accuracy")(logits, y, mask) == pytest.approx(2 / 3)
    assert math.isnan(resolve_metric("accuracy")(logits, y, torch.zeros(4, dtype=torch.bool)))


def test_macro_f1_by_hand():
    # predictions 0, 1, 1, 2, 2, 2 against labels 0, 0, 1, 1, 2, 2
    probabilities = [[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.1, 0.1, 0.8],
                     [0.1, 0.1, 0.8]]
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    # class 0: P 1/1, R 1/2, F1 2/3; class 1: P 1/2, R 1/2, F1 1/2; class 2: P 2/3, R 1, F1 4/5
    expected = (2 / 3 + 1 / 2 + 4 / 5) / 3
    assert resolve_metric("macro-f1")(logits_for(probabilities), y, torch.ones(6, dtype=torch.bool)) == \
        pytest.approx(expected)


def test_binary_roc_auc_by_hand():
    # positive scores 0.9, 0.4; negative scores 0.6, 0.2, 0.1: 5 of 6 pairs ranked right
    p = [0.9, 0.4, 0.6, 0.2, 0.1]
    logits = logits_for([[1 - v, v] for v in p])
    y = torch.tensor([1, 1, 0, 0, 0])
    assert resolve_metric("roc-auc")(logits, y, torch.ones(5, dtype=torch.bool)) == pytest.approx(5 / 6)


def test_multiclass_roc_auc_is_the_one_vs_rest_macro_average():
    from sklearn.metrics import roc_auc_score

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(60, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (60,), generator=g)
    probabilities = torch.softmax(logits, dim=-1).numpy()
    by_hand = np.mean([roc_auc_score((y == c).numpy(), probabilities[:, c]) for c in range(4)])
    assert resolve_metric("roc-auc")(logits, y, torch.ones(60, dtype=torch.bool)) == pytest.approx(by_hand)
    # a class absent from the evaluated nodes has no curve and is left out
    keep = y != 3
    by_hand = np.mean([roc_auc_score((y[keep] == c).numpy(), probabilities[keep.numpy()][:, c]) for c in range(3)])
    assert resolve_metric("roc-auc")(logits, y, keep) == pytest.approx(by_hand)


def test_accuracy_standard_error_is_binomial():
    logits = logits_for([[0.9, 0.1]] * 80 + [[0.1, 0.9]] * 20)
    y = torch.zeros(100, dtype=torch.long)  # 80 right, 20 wrong
    se = resolve_metric("accuracy").standard_error(logits, y, torch.ones(100, dtype=torch.bool))
    assert se == pytest.approx(math.sqrt(0.8 * 0.2 / 100))


@pytest.mark.parametrize("name", ["macro-f1", "roc-auc"])
def test_bootstrap_standard_error_is_seeded_and_shrinks_with_more_nodes(name):
    g = torch.Generator().manual_seed(1)
    metric = resolve_metric(name)

    def se(n, seed=0):
        y = torch.randint(0, 2, (n,), generator=torch.Generator().manual_seed(n))
        logits = torch.randn(n, 2, generator=g) + 1.0 * torch.nn.functional.one_hot(y, 2)
        mask = torch.ones(n, dtype=torch.bool)
        return (metric.standard_error(logits, y, mask, seed=seed, resamples=60),
                metric.standard_error(logits, y, mask, seed=seed, resamples=60))

    small, small_again = se(60)
    large, _ = se(1500)
    assert small == small_again  # seeded
    assert 0 < large < small / 2.5  # about 1/sqrt(n): sqrt(1500 / 60) = 5


def test_bootstrap_agrees_with_the_binomial_formula_for_accuracy_like_scores():
    """The bootstrap of a mean of 0/1 outcomes estimates sqrt(p (1 - p) / n)."""
    from gkd_search.metrics import ScoreMetric, accuracy

    logits = logits_for([[0.9, 0.1]] * 300 + [[0.1, 0.9]] * 100)
    y = torch.zeros(400, dtype=torch.long)
    bootstrap = ScoreMetric("accuracy-by-bootstrap", accuracy).standard_error(logits, y, torch.ones(400, dtype=torch.bool))
    assert bootstrap == pytest.approx(math.sqrt(0.75 * 0.25 / 400), rel=0.15)


def test_resolve():
    assert METRIC_NAMES == ("accuracy", "macro-f1", "roc-auc")
    assert resolve_metric(None).name == "accuracy"
    evaluator = lambda logits, y, mask: 0.5  # noqa: E731  (a dataset's official evaluator)
    assert resolve_metric(None, evaluator).score is evaluator
    assert resolve_metric("ROC_AUC").name == "roc-auc"
    with pytest.raises(UsageError, match="--metric 'auc' is unknown; use one of accuracy, macro-f1, roc-auc"):
        resolve_metric("auc")
