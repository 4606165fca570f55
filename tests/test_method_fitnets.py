"""``fitnets`` (Romero et al., ICLR 2015, Eq. 3) against values worked out by hand."""

from __future__ import annotations

import pytest
import torch
from hand_values import hand_ce

from gkd_search.methods.fitnets import hint_pairs
from gkd_search.types import DistillationBatch, DistillationContext, ModelOutput

pytestmark = pytest.mark.usefixtures("one_thread")

# 3 nodes; student: hidden layer of width 2, logits over 3 classes; teacher: hidden width 2 or 3
S_HID = [[1.0, 2.0], [0.0, -1.0], [0.5, 0.5]]
S_LOG = [[2.0, -1.0, 0.5], [0.1, 0.2, 0.3], [-1.5, 3.0, 0.0]]
T_HID2 = [[2.0, 1.0], [0.0, 0.0], [1.5, -0.5]]
T_HID3 = [[1.0, 0.0, 2.0], [-1.0, 1.0, 0.0], [0.0, 2.0, 1.0]]
T_LOG = [[3.0, 0.0, -1.0], [0.5, -0.5, 2.0], [0.0, 2.5, 0.5]]
Y = [0, 2, 1]
TRAIN = [True, False, True]


def hand_hint(student, teacher, weight, bias):
    """1/N sum_v 1/2 ||t_v - (W s_v + b)||^2 with plain loops (Eq. 3 per node, averaged)."""
    total = 0.0
    for s_row, t_row in zip(student, teacher):
        reg = [sum(weight[o][k] * s_row[k] for k in range(len(s_row))) + bias[o] for o in range(len(t_row))]
        total += 0.5 * sum((t - r) ** 2 for t, r in zip(t_row, reg))
    return total / len(student)


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


def set_regressor(loss, index, weight, bias):
    with torch.no_grad():
        loss.regressors[index].weight.copy_(torch.tensor(weight))
        loss.regressors[index].bias.copy_(torch.tensor(bias))


def test_hand_hint_sanity():
    # identity regressor: node 0: 1/2((2-1)^2 + (1-2)^2) = 1; node 1: 1/2(0 + 1) = 0.5;
    # node 2: 1/2(1^2 + 1^2) = 1  -> mean 2.5 / 3
    assert hand_hint(S_HID, T_HID2, [[1, 0], [0, 1]], [0, 0]) == pytest.approx(2.5 / 3)


@pytest.mark.parametrize("beta", [0.01, 0.5, 3.0])
def test_value_with_identity_regressor(gkd_registry, beta):
    loss = gkd_registry.get("method", "fitnets").build_loss({"beta": beta, "hints": "middle", "hint_scale": "raw"},
                                                                   context([2, 3], [2, 3]))
    set_regressor(loss, 0, [[1.0, 0.0], [0.0, 1.0]], [0.0, 0.0])
    _, out = student_output([S_HID, S_LOG])
    value = loss(out, batch_for([T_HID2, T_LOG])).item()
    assert value == pytest.approx(hand_ce(S_LOG, Y, TRAIN) + beta * 2.5 / 3, rel=1e-6)


def test_value_with_known_weights_and_wider_teacher(gkd_registry):
    # student width 2 -> teacher width 3 through W [3x2] and b
    w, b = [[2.0, 0.0], [1.0, -1.0], [0.0, 0.5]], [0.5, 0.0, -1.0]
    loss = gkd_registry.get("method", "fitnets").build_loss({"beta": 1.0, "hints": "all", "hint_scale": "raw"},
                                                            context([2, 3], [3, 3]))
    assert (loss.regressors[0].in_features, loss.regressors[0].out_features) == (2, 3)
    set_regressor(loss, 0, w, b)
    _, out = student_output([S_HID, S_LOG])
    value = loss(out, batch_for([T_HID3, T_LOG])).item()
    # node 0: r = [2.5, -1, 0] vs [1, 0, 2]: 1/2(2.25 + 1 + 4) = 3.625
    # node 1: r = [0.5, 1, -1.5] vs [-1, 1, 0]: 1/2(2.25 + 0 + 2.25) = 2.25
    # node 2: r = [1.5, 0, -0.75] vs [0, 2, 1]: 1/2(2.25 + 4 + 3.0625) = 4.65625
    assert hand_hint(S_HID, T_HID3, w, b) == pytest.approx((3.625 + 2.25 + 4.65625) / 3)
    assert value == pytest.approx(hand_ce(S_LOG, Y, TRAIN) + (3.625 + 2.25 + 4.65625) / 3, rel=1e-6)


def test_all_averages_over_pairs(gkd_registry):
    # 3-layer student against a 3-layer teacher: pairs (0, 0) and (1, 1), hint term = their mean
    s_hid1 = [[0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]]
    t_hid1 = [[1.0, 1.0], [0.0, 2.0], [0.0, 0.0]]
    eye = [[1.0, 0.0], [0.0, 1.0]]
    loss = gkd_registry.get("method", "fitnets").build_loss({"beta": 2.0, "hints": "all", "hint_scale": "raw"},
                                                            context([2, 2, 3], [2, 2, 3]))
    assert loss.pairs == [(0, 0), (1, 1)]
    for k in range(2):
        set_regressor(loss, k, eye, [0.0, 0.0])
    _, out = student_output([S_HID, s_hid1, S_LOG])
    value = loss(out, batch_for([T_HID2, t_hid1, T_LOG])).item()
    # second pair: node 0: 1/2(1 + 0) = 0.5; node 1: 1/2(1 + 1) = 1; node 2: 1/2(1 + 0) = 0.5 -> 2/3
    hint = (2.5 / 3 + 2.0 / 3) / 2
    assert hand_hint(s_hid1, t_hid1, eye, [0, 0]) == pytest.approx(2.0 / 3)
    assert value == pytest.approx(hand_ce(S_LOG, Y, TRAIN) + 2.0 * hint, rel=1e-6)
    # "middle" on the same networks keeps only the first pair (lower middle of 2 hidden layers)
    middle = gkd_registry.get("method", "fitnets").build_loss({"beta": 2.0, "hints": "middle"},
                                                              context([2, 2, 3], [2, 2, 3]))
    assert middle.pairs == [(0, 0)]


def test_pairs_for_4_layer_student_against_8_layer_teacher(gkd_registry):
    # non-logit layers: student 0..2, teacher 0..6; relative depth j -> ceil((j+1)*7/3) - 1
    assert hint_pairs(4, 8, "all") == [(0, 2), (1, 4), (2, 6)]
    assert hint_pairs(4, 8, "middle") == [(1, 4)]
    s_dims, t_dims = [10, 11, 12, 3], [20, 21, 22, 23, 24, 25, 26, 3]
    method = gkd_registry.get("method", "fitnets")
    all_loss = method.build_loss({"beta": 1.0, "hints": "all"}, context(s_dims, t_dims))
    assert [(r.in_features, r.out_features) for r in all_loss.regressors] == [(10, 22), (11, 24), (12, 26)]
    mid_loss = method.build_loss({"beta": 1.0, "hints": "middle"}, context(s_dims, t_dims))
    assert [(r.in_features, r.out_features) for r in mid_loss.regressors] == [(11, 24)]

    # "middle" reads only student layer 1: changing layer 0 leaves it unchanged, but not "all"
    torch.manual_seed(0)
    s_hidden = [torch.randn(5, d) for d in s_dims]
    t_hidden = [torch.randn(5, d) for d in t_dims]
    batch = DistillationBatch(y=torch.tensor([0, 1, 2, 0, 1]), train_mask=torch.ones(5, dtype=torch.bool),
                              teacher_logits=t_hidden[-1], teacher_hidden=t_hidden,
                              edge_index=torch.empty(2, 0, dtype=torch.long))
    changed = [h.clone() for h in s_hidden]
    changed[0] = changed[0] + 3.0
    out, out_changed = ModelOutput(s_hidden[-1], s_hidden), ModelOutput(changed[-1], changed)
    assert mid_loss(out_changed, batch).item() == pytest.approx(mid_loss(out, batch).item(), rel=1e-6)
    assert all_loss(out_changed, batch).item() != pytest.approx(all_loss(out, batch).item(), rel=1e-3)


def test_single_layer_student_pairs_logits(gkd_registry):
    assert hint_pairs(1, 8, "middle") == [(0, 7)] == hint_pairs(1, 8, "all")
    loss = gkd_registry.get("method", "fitnets").build_loss({"beta": 1.0, "hints": "middle", "hint_scale": "raw"},
                                                            context([3], [2, 3]))
    assert isinstance(loss.regressors[0], torch.nn.Identity)  # logits meet logits directly
    assert list(loss.parameters()) == []
    _, out = student_output([S_LOG])
    value = loss(out, batch_for([T_HID2, T_LOG])).item()
    eye3 = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    expected = hand_ce(S_LOG, Y, TRAIN) + hand_hint(S_LOG, T_LOG, eye3, [0, 0, 0])
    assert value == pytest.approx(expected, rel=1e-6)


def hand_variance(teacher):
    """1/N sum_v ||t_v - mean||^2."""
    n, d = len(teacher), len(teacher[0])
    mean = [sum(row[k] for row in teacher) / n for k in range(d)]
    return sum(sum((row[k] - mean[k]) ** 2 for k in range(d)) for row in teacher) / n


def test_variance_scale_divides_each_pair_by_its_teacher_layers_variance(gkd_registry):
    w, b = [[2.0, 0.0], [1.0, -1.0], [0.0, 0.5]], [0.5, 0.0, -1.0]
    loss = gkd_registry.get("method", "fitnets").build_loss({"beta": 1.5, "hints": "all"}, context([2, 3], [3, 3]))
    assert loss.hint_scale == "variance"  # the default
    set_regressor(loss, 0, w, b)
    _, out = student_output([S_HID, S_LOG])
    value = loss(out, batch_for([T_HID3, T_LOG])).item()
    expected = hand_ce(S_LOG, Y, TRAIN) + 1.5 * hand_hint(S_HID, T_HID3, w, b) / hand_variance(T_HID3)
    assert value == pytest.approx(expected, rel=1e-6)
    # a teacher 100x larger leaves the normalised hint of a regressor 100x larger unchanged
    set_regressor(loss, 0, [[100 * x for x in row] for row in w], [100 * x for x in b])
    big = loss(out, batch_for([[[100 * x for x in row] for row in T_HID3], T_LOG])).item()
    assert big == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="hint_scale"):
        gkd_registry.get("method", "fitnets").build_loss({"beta": 1.0, "hints": "all", "hint_scale": "std"},
                                                         context([2, 3], [3, 3]))


def test_unknown_hints_mode_and_layer_mismatch(gkd_registry):
    with pytest.raises(ValueError, match="hints"):
        hint_pairs(3, 3, "first")
    loss = gkd_registry.get("method", "fitnets").build_loss({"beta": 1.0, "hints": "all"}, context([2, 3], [2, 3]))
    _, out = student_output([S_HID, S_LOG])
    with pytest.raises(ValueError, match="layers"):
        loss(out, batch_for([T_LOG]))


def test_backward_reaches_student_and_regressors(gkd_registry):
    loss = gkd_registry.get("method", "fitnets").build_loss({"beta": 0.5, "hints": "all"}, context([2, 3], [3, 3]))
    tensors, out = student_output([S_HID, S_LOG])
    batch = batch_for([T_HID3, T_LOG])
    value = loss(out, batch)
    assert torch.isfinite(value)
    value.backward()
    hid, logits = tensors
    assert hid.grad is not None and hid.grad.abs().sum() > 0
    assert hid.grad[1].abs().sum() > 0  # an unlabelled node gets the hint's gradient
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    for p in loss.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    assert not any(h.requires_grad for h in batch.teacher_hidden)


def test_metadata(gkd_registry):
    method = gkd_registry.get("method", "fitnets")
    assert "1412.6550" in method.paper
    assert method.requires == frozenset({"logits", "hidden"})
    assert set(method.hyperparameters) == {"beta", "hints", "hint_scale"}
    assert method.hyperparameters["hints"].choices == ("middle", "all")
    assert method.hyperparameters["hint_scale"].value == "variance"
    beta = method.hyperparameters["beta"]
    assert (beta.low, beta.high, beta.log) == (0.1, 100.0, True)
    assert method.combines_with_softkd
