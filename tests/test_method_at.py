"""``at`` (Zagoruyko & Komodakis, ICLR 2017, Eq. 2) against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch
from hand_values import hand_ce

from gkd_search.types import DistillationBatch, DistillationContext, ModelOutput

pytestmark = pytest.mark.usefixtures("one_thread")

# 3 nodes; student hidden width 2, teacher hidden width 3 (widths may differ), 3 classes
S_HID = [[1.0, 2.0], [0.0, -1.0], [2.0, 0.0]]
S_LOG = [[2.0, -1.0, 0.5], [0.1, 0.2, 0.3], [-1.5, 3.0, 0.0]]
T_HID = [[1.0, 0.0, 2.0], [-1.0, 1.0, 0.0], [0.0, 2.0, 1.0]]
T_LOG = [[3.0, 0.0, -1.0], [0.5, -0.5, 2.0], [0.0, 2.5, 0.5]]
Y = [0, 2, 1]
TRAIN = [True, False, True]


def hand_map(h):
    """F_sum^2 per node, divided by its 2-norm over the nodes."""
    q = [sum(v * v for v in row) for row in h]
    norm = math.sqrt(sum(v * v for v in q))
    return [v / norm for v in q]


def hand_pair(s, t):
    """mean_v (q_S[v] - q_T[v])^2."""
    qs, qt = hand_map(s), hand_map(t)
    return sum((a - b) ** 2 for a, b in zip(qs, qt)) / len(qs)


def context(student_dims, teacher_dims, family="gcn", uses_graph=True):
    return DistillationContext(num_classes=3, student_family=family, student_uses_graph=uses_graph,
                               student_hidden_dims=list(student_dims), teacher_hidden_dims=list(teacher_dims))


def batch_for(teacher_hidden):
    hidden = [torch.tensor(h) for h in teacher_hidden]
    return DistillationBatch(y=torch.tensor(Y), train_mask=torch.tensor(TRAIN), teacher_logits=hidden[-1],
                             teacher_hidden=hidden, edge_index=torch.empty(2, 0, dtype=torch.long))


def student_output(hidden):
    tensors = [torch.tensor(h, requires_grad=True) for h in hidden]
    return tensors, ModelOutput(logits=tensors[-1], hidden=tensors)


def test_hand_map_by_hand():
    # student Q = [1+4, 0+1, 4+0] = [5, 1, 4], ||Q|| = sqrt(42); teacher Q = [5, 2, 5], ||Q|| = sqrt(54)
    assert hand_map(S_HID) == pytest.approx([5 / math.sqrt(42), 1 / math.sqrt(42), 4 / math.sqrt(42)])
    assert hand_map(T_HID) == pytest.approx([5 / math.sqrt(54), 2 / math.sqrt(54), 5 / math.sqrt(54)])
    by_hand = ((5 / math.sqrt(42) - 5 / math.sqrt(54)) ** 2 + (1 / math.sqrt(42) - 2 / math.sqrt(54)) ** 2
               + (4 / math.sqrt(42) - 5 / math.sqrt(54)) ** 2) / 3
    assert hand_pair(S_HID, T_HID) == pytest.approx(by_hand)


@pytest.mark.parametrize("beta", [1.0, 31.6, 1000.0])
def test_value_single_pair(gkd_registry, beta):
    loss = gkd_registry.get("method", "at").build_loss({"beta": beta}, context([2, 3], [3, 3]))
    assert loss.pairs == [(0, 0)]
    _, out = student_output([S_HID, S_LOG])
    value = loss(out, batch_for([T_HID, T_LOG])).item()
    expected = hand_ce(S_LOG, Y, TRAIN) + beta / 2 * hand_pair(S_HID, T_HID)
    assert value == pytest.approx(expected, rel=1e-5)


def test_value_sums_over_pairs(gkd_registry):
    # 3-layer student against a 3-layer teacher: pairs (0, 0) and (1, 1), summed as in Eq. 2
    s_hid1 = [[0.0, 1.0], [1.0, 1.0], [-1.0, 3.0]]
    t_hid1 = [[1.0, 1.0, 1.0], [0.0, 2.0, 0.0], [0.5, 0.0, 0.0]]
    loss = gkd_registry.get("method", "at").build_loss({"beta": 100.0}, context([2, 2, 3], [3, 3, 3]))
    assert loss.pairs == [(0, 0), (1, 1)]
    _, out = student_output([S_HID, s_hid1, S_LOG])
    value = loss(out, batch_for([T_HID, t_hid1, T_LOG])).item()
    expected = hand_ce(S_LOG, Y, TRAIN) + 50.0 * (hand_pair(S_HID, T_HID) + hand_pair(s_hid1, t_hid1))
    assert value == pytest.approx(expected, rel=1e-5)


def test_map_ignores_scale_sign_and_width(gkd_registry):
    loss = gkd_registry.get("method", "at").build_loss({"beta": 1000.0}, context([2, 3], [3, 3]))
    _, out = student_output([S_HID, S_LOG])
    base = loss(out, batch_for([T_HID, T_LOG])).item()
    scaled = [[-7.0 * v for v in row] for row in T_HID]
    assert loss(out, batch_for([scaled, T_LOG])).item() == pytest.approx(base, rel=1e-6)
    # a teacher whose per-node energy is proportional to the student's leaves only CE
    same_energy = [[math.sqrt(5.0), 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 2.0]]  # Q = [5, 1, 4]
    only_ce = loss(out, batch_for([same_energy, T_LOG])).item()
    assert only_ce == pytest.approx(hand_ce(S_LOG, Y, TRAIN), rel=1e-6)
    assert base > only_ce


def test_pairs_for_4_layer_student_against_8_layer_teacher(gkd_registry):
    s_dims, t_dims = [10, 11, 12, 3], [20, 21, 22, 23, 24, 25, 26, 3]
    loss = gkd_registry.get("method", "at").build_loss({"beta": 10.0}, context(s_dims, t_dims))
    assert loss.pairs == [(0, 2), (1, 4), (2, 6)]
    # only teacher layers 2, 4 and 6 matter
    torch.manual_seed(0)
    s_hidden = [torch.randn(5, d) for d in s_dims]
    t_hidden = [torch.randn(5, d) for d in t_dims]
    batch = DistillationBatch(y=torch.tensor([0, 1, 2, 0, 1]), train_mask=torch.ones(5, dtype=torch.bool),
                              teacher_logits=t_hidden[-1], teacher_hidden=t_hidden,
                              edge_index=torch.empty(2, 0, dtype=torch.long))
    out = ModelOutput(s_hidden[-1], s_hidden)
    base = loss(out, batch).item()
    for i in (0, 1, 3, 5):
        batch.teacher_hidden[i] = torch.randn(5, t_dims[i])
    assert loss(out, batch).item() == pytest.approx(base, rel=1e-6)
    batch.teacher_hidden[4] = torch.randn(5, t_dims[4])
    assert loss(out, batch).item() != pytest.approx(base, rel=1e-4)


def test_single_layer_student_pairs_logits(gkd_registry):
    loss = gkd_registry.get("method", "at").build_loss({"beta": 20.0}, context([3], [3, 3]))
    assert loss.pairs == [(0, 1)]
    _, out = student_output([S_LOG])
    value = loss(out, batch_for([T_HID, T_LOG])).item()
    assert value == pytest.approx(hand_ce(S_LOG, Y, TRAIN) + 10.0 * hand_pair(S_LOG, T_LOG), rel=1e-5)


def test_backward_reaches_student_tensors(gkd_registry):
    loss = gkd_registry.get("method", "at").build_loss({"beta": 1000.0}, context([2, 3], [3, 3]))
    tensors, out = student_output([S_HID, S_LOG])
    batch = batch_for([T_HID, T_LOG])
    value = loss(out, batch)
    assert torch.isfinite(value)
    value.backward()
    hid, logits = tensors
    assert hid.grad is not None and torch.isfinite(hid.grad).all()
    assert hid.grad[1].abs().sum() > 0  # an unlabelled node gets the transfer term's gradient
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    assert list(loss.parameters()) == []  # no projection: nothing of its own to train
    assert not any(h.requires_grad for h in batch.teacher_hidden)


def test_metadata(gkd_registry):
    method = gkd_registry.get("method", "at")
    assert "1612.03928" in method.paper
    assert method.requires == frozenset({"logits", "hidden"})
    assert set(method.hyperparameters) == {"beta"}
    beta = method.hyperparameters["beta"]
    assert (beta.low, beta.high, beta.log) == (1.0, 1000.0, True)
    assert method.combines_with_softkd
