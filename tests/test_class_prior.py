"""Class-prior estimation (Saerens et al. 2002, eqs. 2.9-2.10) and the class-weighted validation
accuracy that ``--teacher auto`` ranks its candidates by (class_prior.py, teacher_search.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch_geometric.data import Data

from gkd_search.class_prior import (
    LabelShift,
    estimate_class_prior,
    fit_calibration,
    fit_label_shift,
    label_shares,
    prior_weighted_accuracy,
)
from gkd_search.metrics import accuracy
from gkd_search.teacher_search import CandidateResult, choose_candidate
from gkd_search.types import GraphDataset


def test_one_em_step_is_equations_2_9_and_2_10_by_hand():
    probs = torch.tensor([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8]], dtype=torch.float64)
    train = torch.tensor([0.5, 0.5], dtype=torch.float64)
    # from p^(0) = p_t the first step is the mean posterior; the second re-weights by p^(1) / p_t
    p1 = probs.numpy().mean(axis=0)
    adjusted = probs.numpy() * (p1 / train.numpy())
    p2 = (adjusted / adjusted.sum(axis=1, keepdims=True)).mean(axis=0)
    assert estimate_class_prior(probs, train, max_iterations=1).numpy() == pytest.approx(p1)
    assert estimate_class_prior(probs, train, max_iterations=2).numpy() == pytest.approx(p2)


def test_em_recovers_a_skewed_class_mix_from_calibrated_posteriors():
    """Three Gaussian classes drawn 70/20/10; the posteriors are the exact ones under a uniform
    training prior (a classifier trained on a class-balanced split). Their mean is biased toward
    1/3 each; the EM estimate recovers the true shares."""
    generator = torch.Generator().manual_seed(0)
    true = torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64)
    n = 30000
    labels = torch.multinomial(true, n, replacement=True, generator=generator)
    means = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64)
    x = means[labels] + torch.randn(n, generator=generator, dtype=torch.float64)
    likelihood = torch.exp(-0.5 * (x[:, None] - means[None, :]) ** 2)
    posterior = likelihood / likelihood.sum(dim=1, keepdim=True)  # uniform prior
    naive = posterior.mean(dim=0)
    estimate = estimate_class_prior(posterior, torch.full((3,), 1 / 3, dtype=torch.float64))
    assert float((naive - true).abs().sum()) > 0.2  # the plain mean is far off
    assert float((estimate - true).abs().sum()) < 0.03
    assert float(estimate.sum()) == pytest.approx(1.0)


def test_a_class_missing_from_training_keeps_share_zero():
    probs = torch.tensor([[0.5, 0.5, 0.0], [0.2, 0.8, 0.0]], dtype=torch.float64)
    estimate = estimate_class_prior(probs, torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64))
    assert float(estimate[2]) == 0.0 and not torch.isnan(estimate).any()


def test_weighted_accuracy_by_hand_and_equal_to_accuracy_with_the_nodes_own_shares():
    y = torch.tensor([0, 0, 0, 1, 1, 2])
    predicted = torch.tensor([0, 0, 1, 1, 0, 2])
    logits = torch.nn.functional.one_hot(predicted, 3).float()
    mask = torch.ones(6, dtype=torch.bool)
    prior = torch.tensor([0.5, 0.3, 0.2])
    # recall 2/3, 1/2, 1
    assert prior_weighted_accuracy(logits, y, mask, prior) == pytest.approx(0.5 * 2 / 3 + 0.3 * 0.5 + 0.2 * 1.0)
    own = label_shares(y, mask, 3)
    assert own.tolist() == pytest.approx([0.5, 1 / 3, 1 / 6])
    assert prior_weighted_accuracy(logits, y, mask, own) == pytest.approx(accuracy(logits, y, mask))
    # a class with no node in the mask: the prior is renormalised over the others
    no_two = torch.tensor([True, True, True, True, True, False])
    assert prior_weighted_accuracy(logits, y, no_two, prior) == pytest.approx((0.5 * 2 / 3 + 0.3 * 0.5) / 0.8)
    assert math.isnan(prior_weighted_accuracy(logits, y, torch.zeros(6, dtype=torch.bool), prior))


def _balanced_split_graph() -> tuple[GraphDataset, torch.Tensor]:
    """Class 0 is 80% of the graph; train and validation hold 10 and 20 nodes of each class."""
    generator = torch.Generator().manual_seed(1)
    counts = [800, 100, 100]
    y = torch.cat([torch.full((c,), k) for k, c in enumerate(counts)])
    y = y[torch.randperm(len(y), generator=generator)]
    return GraphDataset("skewed", _per_class_split(torch.zeros(len(y), 1), y, 10, 20), 3), y


def _per_class_split(x: torch.Tensor, y: torch.Tensor, train: int, val: int) -> Data:
    """A graph without edges whose first ``train`` and next ``val`` nodes of each class are the
    training and validation nodes; the rest are test nodes."""
    train_mask = torch.zeros(len(y), dtype=torch.bool)
    val_mask = torch.zeros(len(y), dtype=torch.bool)
    for k in range(int(y.max()) + 1):
        nodes = torch.nonzero(y == k).view(-1)
        train_mask[nodes[:train]] = True
        val_mask[nodes[train:train + val]] = True
    return Data(x=x, edge_index=torch.zeros(2, 0, dtype=torch.long), y=y, train_mask=train_mask,
                val_mask=val_mask, test_mask=~(train_mask | val_mask))


def test_the_candidate_right_on_the_common_class_wins_over_the_one_right_on_the_rare_ones():
    """A: right on every node of classes 1 and 2, wrong on a quarter of class 0 (validation
    accuracy 0.917, graph accuracy about 0.8). B: right on class 0, wrong on a quarter of classes
    1 and 2 (validation 0.833, graph about 0.95). Plain validation accuracy picks A; weighted by
    the estimated class shares (about 0.8/0.1/0.1) B wins. (The outputs are scored as they are:
    these two-valued outputs are not what a calibration is fitted to.)"""
    dataset, y = _balanced_split_graph()
    n = len(y)
    wrong_a = (y == 0) & (torch.arange(n) % 4 == 0)
    wrong_b = (y > 0) & (torch.arange(n) % 4 == 0)
    pred_a = torch.where(wrong_a, torch.ones_like(y), y)
    pred_b = torch.where(wrong_b, torch.zeros_like(y), y)
    # confident, calibrated enough logits: 0.9 on the predicted class
    logits = {i: torch.log(torch.nn.functional.one_hot(p, 3).double() * 0.85 + 0.05) for i, p in enumerate((pred_a, pred_b))}
    rows = [CandidateResult(spec, spec, "trained", params=10) for spec in ("a", "b")]
    data = dataset.data
    for row, out in zip(rows, logits.values()):
        row.val_acc = row.val_score = accuracy(out, y, data.val_mask)
    assert rows[0].val_acc > rows[1].val_acc  # the balanced validation set prefers A
    lines: list[str] = []
    best, prior = choose_candidate(dataset, rows, logits, "accuracy", lines.append, label_shift=False)
    assert best.spec == "b" and best.selected and not rows[0].selected
    assert prior is not None and prior[0] > 0.7 and sum(prior) == pytest.approx(1.0)
    assert rows[1].val_acc_weighted > rows[0].val_acc_weighted
    graph = ~(data.train_mask | data.val_mask)
    assert accuracy(logits[1], y, graph) > accuracy(logits[0], y, graph)  # and B is better on the graph
    assert len(lines) == 1 and "Saerens" in lines[0] and f"{int(graph.sum()):,} unlabelled nodes" in lines[0]
    # macro-F1 and ROC-AUC are ranked as they are
    for row in rows:
        row.selected, row.val_acc_weighted = False, None
    best, prior = choose_candidate(dataset, rows, logits, "macro-f1")
    assert prior is None and best.spec == "a" and rows[0].val_acc_weighted is None


def test_without_unlabelled_nodes_the_ranking_is_plain_validation_accuracy():
    dataset, y = _balanced_split_graph()
    data = dataset.data
    data.val_mask = ~data.train_mask
    data.test_mask = torch.zeros_like(data.val_mask)
    logits = {0: torch.nn.functional.one_hot(y, 3).double()}
    rows = [CandidateResult("a", "a", "trained", val_acc=1.0, val_score=1.0, params=1)]
    best, prior = choose_candidate(dataset, rows, logits, "accuracy")
    assert prior is None and best.val_acc_weighted is None and best.selected
    assert np.isclose(best.val_acc, 1.0)


def test_a_candidate_with_non_finite_outputs_does_not_poison_the_estimate():
    dataset, y = _balanced_split_graph()
    good = torch.log(torch.nn.functional.one_hot(y, 3).double() * 0.85 + 0.05)
    broken = torch.full_like(good, float("nan"))
    rows = [CandidateResult(spec, spec, "trained", val_acc=1.0, val_score=1.0, params=1) for spec in ("good", "nan")]
    rows[1].val_acc = rows[1].val_score = 0.0
    best, prior = choose_candidate(dataset, rows, {0: good, 1: broken}, "accuracy")
    assert prior is not None and not any(math.isnan(v) for v in prior) and prior[0] > 0.7
    assert best.spec == "good" and best.val_acc_weighted == pytest.approx(1.0)


def test_a_large_graph_estimates_the_shares_on_a_seeded_sample(monkeypatch):
    import gkd_search.class_prior as class_prior

    dataset, y = _balanced_split_graph()
    logits = {0: torch.log(torch.nn.functional.one_hot(y, 3).double() * 0.85 + 0.05)}
    rows = [CandidateResult("a", "a", "trained", val_acc=1.0, val_score=1.0, params=1)]
    full = choose_candidate(dataset, rows, logits, "accuracy")[1]
    monkeypatch.setattr(class_prior, "MAX_PRIOR_NODES", 300)
    lines: list[str] = []
    sampled = choose_candidate(dataset, rows, logits, "accuracy", lines.append)[1]
    assert "910 unlabelled nodes (a sample of 300)" in lines[0]
    assert sampled != full and abs(sampled[0] - full[0]) < 0.1
    assert sampled == choose_candidate(dataset, rows, logits, "accuracy")[1]  # seeded: the same sample again


def test_bcts_recovers_the_temperature_and_the_biases_labels_were_drawn_with():
    generator = torch.Generator().manual_seed(0)
    logits = 3.0 * torch.randn(20000, 3, generator=generator, dtype=torch.float64)
    bias = torch.tensor([0.6, -0.4, -0.2], dtype=torch.float64)
    labels = torch.multinomial(torch.softmax(logits / 2.0 + bias, dim=-1), 1, generator=generator).view(-1)
    temperature, fitted = fit_calibration(logits, labels)
    assert temperature == pytest.approx(2.0, rel=0.05)
    # the softmax does not see a constant added to every bias: compare centred
    assert (fitted - fitted.mean()).numpy() == pytest.approx((bias - bias.mean()).numpy(), abs=0.05)


def test_label_shift_applies_the_calibration_and_the_prior_ratio_by_hand():
    shift = LabelShift(2.0, (0.5, -0.5), (0.5, 0.5), (0.8, 0.2))
    z = torch.tensor([[1.0, 3.0], [0.0, -2.0]])
    expected = z.numpy() / 2.0 + np.array([0.5, -0.5]) + np.log(np.array([0.8, 0.2]) / 0.5)
    adapted = shift.apply(z)
    assert adapted.dtype == z.dtype and adapted.numpy() == pytest.approx(expected.astype(np.float32))
    record = shift.as_dict()
    assert record["temperature"] == 2.0 and record["target_prior"] == [0.8, 0.2] and "Alexandari" in record["method"]


def _gaussian_graph(scale: float) -> tuple[GraphDataset, torch.Tensor, torch.Tensor]:
    """1-D Gaussian classes drawn 70/20/10; training and validation hold 10 and 100 nodes of each
    class. The model's logits are the log-likelihoods times ``scale`` (a balanced-prior classifier,
    over- or under-confident); the Bayes posterior under the true shares is returned too."""
    generator = torch.Generator().manual_seed(2)
    true = torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64)
    y = torch.multinomial(true, 6000, replacement=True, generator=generator)
    means = torch.tensor([-1.0, 0.0, 1.5], dtype=torch.float64)
    x = means[y] + torch.randn(len(y), generator=generator, dtype=torch.float64)
    log_likelihood = -0.5 * (x[:, None] - means[None, :]) ** 2
    data = _per_class_split(x[:, None].float(), y, 10, 100)
    return GraphDataset("gaussian", data, 3), scale * log_likelihood, log_likelihood + torch.log(true)


@pytest.mark.parametrize("scale", [0.4, 1.0, 3.0])
def test_adaptation_reaches_the_bayes_accuracy_of_the_skewed_class_mix(scale):
    """A balanced-prior classifier on a 70/20/10 graph, under-, well- or over-confident: the
    adapted outputs predict as well as the Bayes rule under the true shares (which needs the
    shares), clearly better than the outputs as they are, from the validation labels alone."""
    dataset, logits, bayes = _gaussian_graph(scale)
    data = dataset.data
    shift, why = fit_label_shift(logits, data, 3)
    assert shift is not None and why == ""
    unlabelled = ~(data.train_mask | data.val_mask)
    true = label_shares(data.y, unlabelled, 3)
    naive = torch.softmax(logits[unlabelled], dim=-1).mean(dim=0)
    assert float((naive - true).abs().sum()) > 0.2  # the mean prediction is far off
    assert float((torch.tensor(shift.target_prior) - true).abs().sum()) < 0.12
    assert shift.source_prior == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    assert shift.temperature == pytest.approx(scale, rel=0.35)
    before, after = accuracy(logits, data.y, unlabelled), accuracy(shift.apply(logits), data.y, unlabelled)
    optimum = accuracy(bayes, data.y, unlabelled)
    assert after > before + 0.05
    assert after > optimum - 0.01


def test_no_adaptation_without_validation_nodes_of_every_class_or_with_non_finite_outputs():
    dataset, logits, _ = _gaussian_graph(1.0)
    data = dataset.data
    data.val_mask = data.val_mask & (data.y != 2)
    shift, why = fit_label_shift(logits, data, 3)
    assert shift is None and "[2]" in why and "no validation node" in why
    dataset, logits, _ = _gaussian_graph(1.0)
    logits[int(torch.nonzero(~(dataset.data.train_mask | dataset.data.val_mask))[0])] = float("nan")
    shift, why = fit_label_shift(logits, dataset.data, 3)
    assert shift is None and "not finite" in why


def test_candidates_are_scored_on_their_adapted_outputs():
    """Two balanced-prior candidates on the 70/20/10 graph: one under-confident, one better
    separated. With adaptation each is scored (and reports its test accuracy) as adapted."""
    dataset, weak, _ = _gaussian_graph(0.4)
    _, strong, _ = _gaussian_graph(2.0)
    data = dataset.data
    logits = {0: weak, 1: strong}
    rows = [CandidateResult(spec, spec, "trained", params=10) for spec in ("weak", "strong")]
    for row, out in zip(rows, logits.values()):
        row.val_acc = row.val_score = accuracy(out, data.y, data.val_mask)
    lines: list[str] = []
    best, prior = choose_candidate(dataset, rows, logits, "accuracy", lines.append)
    assert "label-shift adapted" in lines[0]
    for row, out in zip(rows, logits.values()):
        adapted = fit_label_shift(out, data, 3)[0].apply(out)
        assert row.test_acc_adapted == pytest.approx(accuracy(adapted, data.y, data.test_mask))
        assert row.val_acc_weighted == pytest.approx(prior_weighted_accuracy(adapted, data.y, data.val_mask,
                                                                             torch.tensor(prior)))
        assert row.test_acc_adapted > accuracy(out, data.y, data.test_mask)


def test_an_unknown_label_shift_value_is_a_usage_error():
    from gkd_search.errors import UsageError
    from gkd_search.search import SearchConfig

    with pytest.raises(UsageError, match="--label-shift 'yes' is unknown; use one of adapt, off"):
        SearchConfig(label_shift="yes").validate()


def test_a_weighted_accuracy_scores_validation_by_class_and_test_as_it_is():
    from torch import nn

    from gkd_search.distill.guard import chance_level
    from gkd_search.distill.loop import BestWeights
    from gkd_search.metrics import resolve_metric, validation_score

    y = torch.tensor([0, 0, 0, 1, 1, 2])
    logits = torch.nn.functional.one_hot(torch.tensor([0, 0, 1, 1, 0, 2]), 3).float()
    mask = torch.ones(6, dtype=torch.bool)
    plain = resolve_metric("accuracy")
    weighted = plain.weighted_to([0.5, 0.3, 0.2])
    assert weighted(logits, y, mask) == plain(logits, y, mask) == pytest.approx(4 / 6)  # test scores stay plain
    expected = 0.5 * 2 / 3 + 0.3 * 0.5 + 0.2 * 1.0
    assert weighted.validation(logits, y, mask) == pytest.approx(expected)
    assert validation_score(weighted)(logits, y, mask) == pytest.approx(expected)
    assert validation_score(accuracy) is accuracy and plain.validation(logits, y, mask) == pytest.approx(4 / 6)
    # the chance level is the best constant's weighted recall: the largest share (of the classes present)
    assert weighted.chance_level(y, mask) == pytest.approx(0.5)
    assert chance_level(validation_score(weighted), y, mask, 3) == pytest.approx(0.5)
    assert weighted.chance_level(y, y < 2) == pytest.approx(0.5 / 0.8)
    # standard error: sum_c w_c^2 r_c (1 - r_c) / n_c, recalls 2/3, 1/2, 1 on 3, 2, 1 nodes
    se = math.sqrt(0.25 * (2 / 3) * (1 / 3) / 3 + 0.09 * 0.25 / 2)
    assert weighted.standard_error(logits, y, mask) == pytest.approx(se)
    # early stopping keeps the epoch with the best weighted validation score
    data = Data(y=y, val_mask=mask)
    best = BestWeights(nn.Linear(1, 1), patience=5, metric=weighted)
    best.update(0, logits, data)
    assert best.last == pytest.approx(expected)
    with pytest.raises(ValueError, match="only accuracy"):
        resolve_metric("macro-f1").weighted_to([0.5, 0.5])


def test_a_search_stored_before_label_shift_existed_resumes_without_it():
    from gkd_search.resume import config_from_json, config_to_json
    from gkd_search.search import SearchConfig

    stored = config_to_json(SearchConfig(dataset="cora"))
    assert stored["label_shift"] == "adapt" and config_from_json(stored).label_shift == "adapt"
    del stored["label_shift"]
    assert config_from_json(stored).label_shift == "off"
