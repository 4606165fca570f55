"""The built-in distillation losses against values computed by hand (numpy) from the papers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gkd_search.types import DistillationBatch, DistillationContext, ModelOutput

S = [[2.0, -1.0, 0.5], [0.1, 0.2, 0.3], [-1.5, 3.0, 0.0], [1.0, 1.0, -2.0]]
T = [[3.0, 0.0, -1.0], [0.5, -0.5, 2.0], [0.0, 2.5, 0.5], [-1.0, 2.0, 1.0]]
Y = [0, 2, 1, 1]
TRAIN = [True, False, True, True]


def np_log_softmax(z):
    z = np.asarray(z, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def hand_ce(s, y, mask):
    """Mean of -log softmax(s)[y] over the training nodes."""
    logp = np_log_softmax(s)
    terms = [-logp[i, y[i]] for i in range(len(y)) if mask[i]]
    return sum(terms) / len(terms)


def hand_kl(s, t, tau):
    """Mean over all nodes of KL(softmax(t/tau) || softmax(s/tau))."""
    log_ps = np_log_softmax(np.asarray(s) / tau)
    log_pt = np_log_softmax(np.asarray(t) / tau)
    per_node = [sum(math.exp(log_pt[i, c]) * (log_pt[i, c] - log_ps[i, c]) for c in range(log_pt.shape[1]))
                for i in range(log_pt.shape[0])]
    return sum(per_node) / len(per_node)


def make_batch(student_logits=None):
    s = torch.tensor(S, requires_grad=True) if student_logits is None else student_logits
    batch = DistillationBatch(
        y=torch.tensor(Y), train_mask=torch.tensor(TRAIN), teacher_logits=torch.tensor(T),
        teacher_hidden=[torch.tensor(T)], edge_index=torch.empty(2, 0, dtype=torch.long),
    )
    return s, ModelOutput(logits=s, hidden=[s]), batch


def context(family="gcn", uses_graph=True):
    return DistillationContext(num_classes=3, student_family=family, student_uses_graph=uses_graph,
                               student_hidden_dims=[3], teacher_hidden_dims=[3])


def test_hand_helpers_sanity():
    # CE of uniform logits is log(C); KL of identical distributions is 0
    assert hand_ce([[0.0, 0.0, 0.0]], [1], [True]) == pytest.approx(math.log(3))
    assert hand_kl(S, S, 2.0) == pytest.approx(0.0, abs=1e-12)
    assert hand_kl(S, T, 1.0) > 0


@pytest.mark.parametrize("tau, alpha", [(1.0, 0.5), (2.0, 0.3), (4.0, 0.9), (3.0, 0.0)])
def test_softkd_value_matches_hinton(gkd_registry, tau, alpha):
    loss_fn = gkd_registry.get("method", "softkd").build_loss({"tau": tau, "alpha": alpha}, context())
    _, out, batch = make_batch()
    value = loss_fn(out, batch).item()
    expected = (1 - alpha) * hand_ce(S, Y, TRAIN) + alpha * tau**2 * hand_kl(S, T, tau)
    assert value == pytest.approx(expected, rel=1e-5)


def test_softkd_kl_is_over_all_nodes_and_ce_over_train_nodes(gkd_registry):
    # with alpha=1 only the KL term is left; it changes when an unlabelled node's logits change
    loss_fn = gkd_registry.get("method", "softkd").build_loss({"tau": 2.0, "alpha": 1.0}, context())
    _, out, batch = make_batch()
    changed = [row[:] for row in S]
    changed[1] = [5.0, -5.0, 0.0]  # node 1 is not a training node
    _, out2, _ = make_batch(torch.tensor(changed))
    assert loss_fn(out2, batch).item() != pytest.approx(loss_fn(out, batch).item())
    # with alpha=0 only CE is left; it ignores the unlabelled node
    ce_only = gkd_registry.get("method", "softkd").build_loss({"tau": 2.0, "alpha": 0.0}, context())
    assert ce_only(out2, batch).item() == pytest.approx(ce_only(out, batch).item(), rel=1e-6)


@pytest.mark.parametrize("lam", [0.0, 0.25, 0.8, 1.0])
def test_glnn_value(gkd_registry, lam):
    loss_fn = gkd_registry.get("method", "glnn").build_loss({"lambda": lam}, context("mlp", False))
    _, out, batch = make_batch()
    expected = lam * hand_ce(S, Y, TRAIN) + (1 - lam) * hand_kl(S, T, 1.0)
    assert loss_fn(out, batch).item() == pytest.approx(expected, rel=1e-5)


def test_none_is_cross_entropy(gkd_registry):
    loss_fn = gkd_registry.get("method", "none").build_loss({}, context())
    _, out, batch = make_batch()
    assert loss_fn(out, batch).item() == pytest.approx(hand_ce(S, Y, TRAIN), rel=1e-6)
    # the teacher does not matter
    batch.teacher_logits = torch.zeros(4, 3)
    assert loss_fn(out, batch).item() == pytest.approx(hand_ce(S, Y, TRAIN), rel=1e-6)


@pytest.mark.parametrize("method, params", [("none", {}), ("softkd", {"tau": 2.0, "alpha": 0.5}),
                                            ("glnn", {"lambda": 0.5})])
def test_gradients_reach_student_logits(gkd_registry, method, params):
    loss_fn = gkd_registry.get("method", method).build_loss(params, context())
    s, out, batch = make_batch()
    loss_fn(out, batch).backward()
    assert s.grad is not None
    assert torch.isfinite(s.grad).all()
    assert s.grad[0].abs().sum() > 0  # a training node
    if method == "none":
        assert torch.count_nonzero(s.grad[1]) == 0  # an unlabelled node gets no gradient from CE alone
    else:
        assert s.grad[1].abs().sum() > 0  # ... but does from the teacher term
    # the teacher's logits are constants
    assert not batch.teacher_logits.requires_grad


def test_softkd_gradient_by_hand(gkd_registry):
    # d/ds of alpha*tau^2*KL averaged over N nodes = alpha*tau*(p_s - p_t)/N for each row
    tau, alpha = 2.0, 1.0
    loss_fn = gkd_registry.get("method", "softkd").build_loss({"tau": tau, "alpha": alpha}, context())
    s, out, batch = make_batch()
    loss_fn(out, batch).backward()
    p_s = np.exp(np_log_softmax(np.asarray(S) / tau))
    p_t = np.exp(np_log_softmax(np.asarray(T) / tau))
    expected = alpha * tau * (p_s - p_t) / len(S)
    np.testing.assert_allclose(s.grad.numpy(), expected, rtol=1e-5, atol=1e-7)


def test_glnn_accepts_only_graph_free(gkd_registry):
    glnn = gkd_registry.get("method", "glnn")
    families = gkd_registry.families
    assert glnn.accepts(families["mlp"]) is True
    for name in ("gcn", "sage", "gat"):
        assert glnn.accepts(families[name]) is False
    for method in ("none", "softkd"):
        assert all(gkd_registry.get("method", method).accepts(f) for f in families.values())


def test_method_metadata(gkd_registry):
    assert "1503.02531" in gkd_registry.get("method", "softkd").paper
    assert "2110.08727" in gkd_registry.get("method", "glnn").paper
    assert gkd_registry.get("method", "none").requires == frozenset()
    assert set(gkd_registry.get("method", "softkd").hyperparameters) == {"tau", "alpha"}
    assert set(gkd_registry.get("method", "glnn").hyperparameters) == {"lambda"}
