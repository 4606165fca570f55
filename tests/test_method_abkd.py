"""ABKD (Ahluwalia et al., arXiv:2310.15938v1) against values worked out independently in numpy.

The tiny case: 2 teacher layers (widths 3 and 2), 2 student layers (widths 2 and 2), 3 nodes,
``d_a = 2``, projections and the subspace matrix ``P`` set to known matrices. The expected value
follows the equations written out as loops:

    A   = softmax over teacher layers of (mean_v T_i[v] Wt_i) . (mean_v S_j[v] Ws_j) / sqrt(d_a)
    D_ij = mean_v || (T_i[v] Wt_i - S_j[v] Ws_j) P / d_a ||^2
    L   = CE + beta * sum_ij A_ij D_ij / Ls
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hand_values import hand_ce

from gkd_search.methods._layer_attention import sampled_attention_sum
from gkd_search.types import DistillationBatch, DistillationContext, ModelOutput

pytestmark = pytest.mark.usefixtures("one_thread")

T1 = [[1.0, 0.0, 2.0], [0.5, -1.0, 1.0], [-1.0, 2.0, 0.0]]  # teacher layer 1, width 3
T2 = [[0.2, 1.0], [-0.4, 0.3], [1.5, -0.5]]  # teacher layer 2 (logits), width 2
S1 = [[0.3, -0.2], [1.0, 0.5], [-0.7, 0.1]]  # student layer 1, width 2
S2 = [[0.9, -1.1], [0.0, 0.4], [0.6, 0.2]]  # student layer 2 (logits), width 2
Y = [0, 1, 1]
TRAIN = [True, False, True]
WT = [np.array([[1.0, 0.5], [0.0, -1.0], [2.0, 0.3]]), np.array([[0.7, -0.2], [0.1, 1.2]])]
WS = [np.array([[0.4, 1.0], [-0.6, 0.2]]), np.array([[1.1, 0.0], [0.3, -0.8]])]
P = np.array([[0.9, 0.2], [-0.3, 1.4]])
BETA = 2.5


# ----------------------------------------------------------------------------- hand formulas


def hand_attention(teacher, student, wt, ws, d_a):
    tp = [np.mean(np.array(t), axis=0) @ w for t, w in zip(teacher, wt)]
    sp = [np.mean(np.array(s), axis=0) @ w for s, w in zip(student, ws)]
    scores = np.array([[tp[i] @ sp[j] / math.sqrt(d_a) for j in range(len(sp))] for i in range(len(tp))])
    a = np.zeros_like(scores)
    for j in range(scores.shape[1]):  # softmax down each column (over teacher layers)
        e = np.exp(scores[:, j] - scores[:, j].max())
        a[:, j] = e / e.sum()
    return a


def hand_dissimilarity(teacher, student, wt, ws, p, d_a, distance="euclidean"):
    d = np.zeros((len(teacher), len(student)))
    for i, (t, w_t) in enumerate(zip(teacher, wt)):
        for j, (s, w_s) in enumerate(zip(student, ws)):
            per_node = []
            for v in range(len(t)):
                u = np.array(t[v]) @ w_t @ p
                w = np.array(s[v]) @ w_s @ p
                if distance == "euclidean":
                    diff = (u - w) / d_a
                    per_node.append(float(diff @ diff))
                else:
                    per_node.append(1.0 - float(u @ w) / (np.linalg.norm(u) * np.linalg.norm(w)))
            d[i, j] = sum(per_node) / len(per_node)
    return d


def hand_abkd(a, d, beta=BETA):
    return hand_ce(S2, Y, TRAIN) + beta * float((a * d).sum()) / d.shape[1]


# ----------------------------------------------------------------------------- fixtures


def context(teacher_dims=(3, 2), student_dims=(2, 2), seed=0, losses=None):
    return DistillationContext(num_classes=2, student_family="gcn", student_uses_graph=True,
                               student_hidden_dims=list(student_dims), teacher_hidden_dims=list(teacher_dims),
                               structural_losses=losses or {}, seed=seed)


def tiny_batch():
    teacher = [torch.tensor(T1), torch.tensor(T2)]
    return DistillationBatch(y=torch.tensor(Y), train_mask=torch.tensor(TRAIN), teacher_logits=teacher[-1],
                             teacher_hidden=teacher, edge_index=torch.tensor([[0, 1, 2], [1, 2, 0]]))


def tiny_student():
    s1 = torch.tensor(S1, requires_grad=True)
    s2 = torch.tensor(S2, requires_grad=True)
    return ModelOutput(logits=s2, hidden=[s1, s2]), (s1, s2)


def set_known_weights(layers, wt=WT, ws=WS, p=P):
    """Put the test's matrices into the loss's projections (and P)."""
    with torch.no_grad():
        for proj, mats in ((layers.teacher_proj, wt), (layers.student_proj, ws)):
            proj.weight.zero_()
            for layer, mat in enumerate(mats):
                proj.weight[0 if proj.shared else layer, : mat.shape[0]] = torch.tensor(mat, dtype=torch.float32)
        if layers.subspace is not None:
            layers.subspace.copy_(torch.tensor(p, dtype=torch.float32))


def build(gkd_registry, **params):
    """ABKD as the paper writes it (``teacher_scale="raw"``) unless ``params`` say otherwise."""
    params = {"beta": BETA, "d_a": 2, "node_sample": 0, "layer_sample": 0, "teacher_scale": "raw", **params}
    return gkd_registry.get("method", "abkd").build_loss(params, context())


# ----------------------------------------------------------------------------- values


def test_abkd_value_matches_the_equations(gkd_registry):
    loss = build(gkd_registry)
    set_known_weights(loss.layers)
    out, _ = tiny_student()
    value = loss(out, tiny_batch()).item()
    a = hand_attention([T1, T2], [S1, S2], WT, WS, 2)
    d = hand_dissimilarity([T1, T2], [S1, S2], WT, WS, P, 2)
    assert a.sum(axis=0) == pytest.approx([1.0, 1.0])
    assert value == pytest.approx(hand_abkd(a, d), rel=1e-5)
    # the distillation term is not negligible here, so the check says something
    assert hand_abkd(a, d) - hand_ce(S2, Y, TRAIN) > 0.01


def test_last_layer_only_uses_only_the_last_pair(gkd_registry):
    loss = build(gkd_registry, last_layer_only=True)
    set_known_weights(loss.layers)
    out, _ = tiny_student()
    batch = tiny_batch()
    d = hand_dissimilarity([T1, T2], [S1, S2], WT, WS, P, 2)
    a = np.array([[0.0, 0.0], [0.0, 1.0]])
    assert loss(out, batch).item() == pytest.approx(hand_abkd(a, d), rel=1e-5)
    assert loss.layers.attention(batch.teacher_hidden, out.hidden).tolist() == a.tolist()
    # the first teacher layer no longer matters
    batch.teacher_hidden[0] = batch.teacher_hidden[0] * 10.0
    assert loss(out, batch).item() == pytest.approx(hand_abkd(a, d), rel=1e-5)


def test_subspace_off_is_p_identity(gkd_registry):
    off = build(gkd_registry, subspace=False)
    assert off.layers.subspace is None
    set_known_weights(off.layers)
    out, _ = tiny_student()
    a = hand_attention([T1, T2], [S1, S2], WT, WS, 2)
    d_identity = hand_dissimilarity([T1, T2], [S1, S2], WT, WS, np.eye(2), 2)
    assert off(out, tiny_batch()).item() == pytest.approx(hand_abkd(a, d_identity), rel=1e-5)
    on = build(gkd_registry)
    set_known_weights(on.layers)
    assert on(out, tiny_batch()).item() != pytest.approx(off(out, tiny_batch()).item(), rel=1e-3)
    set_known_weights(on.layers, p=np.eye(2))
    assert on(out, tiny_batch()).item() == pytest.approx(off(out, tiny_batch()).item(), rel=1e-6)


def test_cosine_distance_value(gkd_registry):
    loss = build(gkd_registry, distance="cosine")
    set_known_weights(loss.layers)
    out, _ = tiny_student()
    a = hand_attention([T1, T2], [S1, S2], WT, WS, 2)
    d = hand_dissimilarity([T1, T2], [S1, S2], WT, WS, P, 2, distance="cosine")
    assert loss(out, tiny_batch()).item() == pytest.approx(hand_abkd(a, d), rel=1e-5)


def test_shared_projection_zero_pads_narrow_layers(gkd_registry):
    loss = build(gkd_registry, shared_projection=True)
    assert tuple(loss.layers.teacher_proj.weight.shape) == (1, 3, 2)
    assert tuple(loss.layers.student_proj.weight.shape) == (1, 2, 2)
    shared_t = np.array([[0.6, -0.4], [1.0, 0.2], [-0.5, 0.9]])
    shared_s = np.array([[0.3, 0.8], [-1.0, 0.5]])
    set_known_weights(loss.layers, wt=[shared_t], ws=[shared_s])
    out, _ = tiny_student()
    # zero-padding T2 (width 2) to width 3 is using the first two rows of the shared map
    wt, ws = [shared_t, shared_t[:2]], [shared_s, shared_s]
    a = hand_attention([T1, T2], [S1, S2], wt, ws, 2)
    d = hand_dissimilarity([T1, T2], [S1, S2], wt, ws, P, 2)
    assert loss(out, tiny_batch()).item() == pytest.approx(hand_abkd(a, d), rel=1e-5)


def test_rms_teacher_scale_divides_each_teacher_layer_by_its_rms_row_norm(gkd_registry):
    loss = build(gkd_registry, teacher_scale="rms")
    set_known_weights(loss.layers)
    out, _ = tiny_student()
    value = loss(out, tiny_batch()).item()

    def rms(rows):
        return float(np.sqrt(np.mean([np.dot(r, r) for r in rows])))

    t1, t2 = [[x / rms(T1) for x in r] for r in T1], [[x / rms(T2) for x in r] for r in T2]
    a = hand_attention([t1, t2], [S1, S2], WT, WS, 2)
    d = hand_dissimilarity([t1, t2], [S1, S2], WT, WS, P, 2)
    assert value == pytest.approx(hand_abkd(a, d), rel=1e-5)
    # a teacher 100x larger changes nothing (raw: it does)
    big = tiny_batch()
    big.teacher_hidden = [100 * t for t in big.teacher_hidden]
    assert loss(out, big).item() == pytest.approx(value, rel=1e-5)
    raw = build(gkd_registry)
    set_known_weights(raw.layers)
    assert raw(out, big).item() != pytest.approx(raw(out, tiny_batch()).item(), rel=1e-2)


def test_default_space_is_the_papers_full_method(gkd_registry):
    method = gkd_registry.get("method", "abkd")
    space = method.hyperparameters
    assert space["beta"].default == pytest.approx(10.0)  # the paper's beta
    assert space["d_a"].default == 256  # the paper's d_a
    assert (space["last_layer_only"].default, space["shared_projection"].default,
            space["distance"].default, space["subspace"].default) == (False, False, "euclidean", True)
    assert space["teacher_scale"].default == "rms"  # ours: the paper's teachers had activations of order 1
    assert method.requires == {"logits", "hidden"}
    assert method.accepts(gkd_registry.get("family", "mlp")) and method.accepts(gkd_registry.get("family", "gcn"))


# ----------------------------------------------------------------------------- gradients


def test_gradients_reach_the_student_and_every_own_parameter(gkd_registry):
    loss = build(gkd_registry)
    set_known_weights(loss.layers)
    out, (s1, s2) = tiny_student()
    value = loss(out, tiny_batch())
    assert torch.isfinite(value)
    value.backward()
    for tensor in (s1, s2):
        assert tensor.grad is not None and torch.isfinite(tensor.grad).all() and tensor.grad.abs().sum() > 0
    for name, p in loss.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def _first_layer_grad(gkd_registry, method, params, teacher_hidden, graph):
    """Gradient of the objective w.r.t. a 2-layer GCN student's FIRST layer output."""
    x, edge_index, y, mask = graph
    torch.manual_seed(0)
    student = gkd_registry.get("family", "gcn").build(x.size(1), 3, 2, 8)
    out = student(x, edge_index)
    out.hidden[0].retain_grad()
    ctx = context(teacher_dims=[h.size(1) for h in teacher_hidden], student_dims=[8, 3])
    torch.manual_seed(1)
    loss = gkd_registry.get("method", method).build_loss(params, ctx)
    batch = DistillationBatch(y=y, train_mask=mask, teacher_logits=teacher_hidden[-1],
                              teacher_hidden=list(teacher_hidden), edge_index=edge_index)
    loss(out, batch).backward()
    return out.hidden[0].grad.clone()


@pytest.mark.parametrize("method, params, depends", [
    ("abkd", {"beta": 10.0, "d_a": 8, "node_sample": 0, "layer_sample": 0}, True),
    ("abkd", {"beta": 10.0, "d_a": 8}, True),  # default sampling: 6 teacher layers <= 8, exact
    ("abkd", {"beta": 10.0, "d_a": 8, "node_sample": 0, "layer_sample": 0, "last_layer_only": True}, False),
    ("none", {}, False),
    ("softkd", {"tau": 2.0, "alpha": 0.5}, False),
])
def test_theorem_1_shallow_student_layer_gradient_sees_a_deep_teacher_layer(gkd_registry, method, params,
                                                                             depends):
    """ABKD's Theorem 1: with learned attention the gradient reaching the student's first layer
    depends on teacher layer 4 of 6 (not the last); with the last-pair-only ablation (and with
    no or logit-only distillation) it does not."""
    gen = torch.Generator().manual_seed(0)
    n = 12
    x = torch.randn(n, 5, generator=gen)
    edge_index = torch.randint(0, n, (2, 40), generator=gen)
    graph = (x, edge_index, torch.randint(0, 3, (n,), generator=gen), torch.rand(n, generator=gen) < 0.5)
    teacher = [torch.randn(n, 6, generator=gen) for _ in range(5)] + [torch.randn(n, 3, generator=gen)]
    perturbed = list(teacher)
    perturbed[3] = teacher[3] + 2.0 * torch.randn(n, 6, generator=gen)  # teacher layer 4 of 6
    g0 = _first_layer_grad(gkd_registry, method, params, teacher, graph)
    g1 = _first_layer_grad(gkd_registry, method, params, perturbed, graph)
    if depends:
        assert (g0 - g1).abs().max() > 1e-4 * g0.abs().max()
    else:
        assert torch.equal(g0, g1)


# ----------------------------------------------------------------------------- sampling


def test_layer_sampling_is_unbiased_in_value_and_attention_gradient():
    """The teacher-layer estimate of sum(A o D) (with its leave-one-out baseline) averages to the
    exact value and to the exact gradient w.r.t. the attention logits."""
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(6, 3, generator=gen, requires_grad=True)
    d = torch.rand(6, 3, generator=gen) + 0.1
    exact_value = sampled_attention_sum(torch.softmax(logits, dim=0), lambda rows: d, 0)
    (exact_grad,) = torch.autograd.grad(exact_value, logits)
    torch.manual_seed(0)
    values, grads = [], []
    for _ in range(4000):
        a = torch.softmax(logits, dim=0)
        v = sampled_attention_sum(a, lambda rows: d if rows is None else d[rows], 3)
        (g,) = torch.autograd.grad(v, logits)
        values.append(v.item())
        grads.append(g)
    assert np.mean(values) == pytest.approx(exact_value.item(), rel=0.03)
    mean_grad = torch.stack(grads).mean(0)
    assert torch.allclose(mean_grad, exact_grad, atol=0.1 * exact_grad.abs().max().item())


def test_deep_teacher_is_sampled_and_shallow_teacher_is_exact(gkd_registry):
    ctx = context(teacher_dims=[4] * 12, student_dims=[3, 2])
    loss = gkd_registry.get("method", "abkd").build_loss({"beta": 1.0, "d_a": 4, "layer_sample": 3}, ctx)
    seen = []
    original = loss.layers.dissimilarity

    def spy(teacher_hidden, student_hidden, index=None, layers=None):
        seen.append(None if layers is None else layers.tolist())
        return original(teacher_hidden, student_hidden, index, layers)

    loss.layers.dissimilarity = spy
    gen = torch.Generator().manual_seed(0)
    teacher = [torch.randn(5, 4, generator=gen) for _ in range(12)]
    batch = DistillationBatch(y=torch.tensor([0, 1, 0, 1, 1]), train_mask=torch.ones(5, dtype=torch.bool),
                              teacher_logits=teacher[-1], teacher_hidden=teacher, edge_index=torch.empty(2, 0).long())
    s = [torch.randn(5, 3, requires_grad=True), torch.randn(5, 2, requires_grad=True)]
    loss(ModelOutput(logits=s[-1], hidden=s), batch).backward()
    assert seen and seen[0] is not None and 1 <= len(seen[0]) <= 3
    assert s[0].grad is not None and loss.layers.teacher_proj.weight.grad is not None


# ----------------------------------------------------------------------------- diagnostics


def test_diagnostics_are_attention_and_full_dissimilarity(gkd_registry):
    loss = build(gkd_registry, node_sample=2)
    set_known_weights(loss.layers)
    out, _ = tiny_student()
    state = torch.random.get_rng_state()
    diag = loss.diagnostics(out, tiny_batch())
    assert torch.equal(state, torch.random.get_rng_state())  # the training RNG is untouched
    assert set(diag) == {"attention", "dissimilarity"}
    a = hand_attention([T1, T2], [S1, S2], WT, WS, 2)
    d = hand_dissimilarity([T1, T2], [S1, S2], WT, WS, P, 2)  # all 3 nodes, not the 2-node sample
    assert np.allclose(diag["attention"].numpy(), a, rtol=1e-5)
    assert np.allclose(diag["dissimilarity"].numpy(), d, rtol=1e-5)
    assert not diag["dissimilarity"].requires_grad


def test_trains_an_mlp_student_end_to_end(gkd_registry, small_synthetic, small_teacher):
    """A few real optimisation steps of an MLP student with its projections decrease the loss."""
    _, teacher = small_teacher
    data = small_synthetic.data
    torch.manual_seed(0)
    student = gkd_registry.get("family", "mlp").build(data.x.size(1), small_synthetic.num_classes, 2, 16)
    dims = [16, small_synthetic.num_classes]
    ctx = DistillationContext(num_classes=small_synthetic.num_classes, student_family="mlp",
                              student_uses_graph=False, student_hidden_dims=dims,
                              teacher_hidden_dims=[h.size(1) for h in teacher.hidden])
    loss = gkd_registry.get("method", "abkd").build_loss({"beta": 10.0, "d_a": 32}, ctx)
    batch = DistillationBatch(y=data.y, train_mask=data.train_mask, teacher_logits=teacher.logits,
                              teacher_hidden=list(teacher.hidden), edge_index=data.edge_index)
    opt = torch.optim.Adam(list(student.parameters()) + list(loss.parameters()), lr=0.01)
    values = []
    for _ in range(30):
        opt.zero_grad()
        v = loss(student(data.x, data.edge_index), batch)
        v.backward()
        opt.step()
        values.append(v.item())
    assert all(math.isfinite(v) for v in values) and values[-1] < values[0]


# ----------------------------------------------------------------------------- anchored (ours)


def test_anchored_value_uses_p_rescaled_to_norm_sqrt_d_a(gkd_registry):
    loss = build(gkd_registry, anchored=True)
    set_known_weights(loss.layers)
    out, _ = tiny_student()
    value = loss(out, tiny_batch()).item()
    p_scaled = P * (np.sqrt(2) / np.linalg.norm(P))  # Frobenius norm sqrt(d_a), d_a = 2
    a = hand_attention([T1, T2], [S1, S2], WT, WS, 2)
    d = hand_dissimilarity([T1, T2], [S1, S2], WT, WS, p_scaled, 2)
    assert value == pytest.approx(hand_abkd(a, d), rel=1e-5)
    # scaling P changes nothing: it cannot shrink D
    with torch.no_grad():
        loss.layers.subspace.mul_(0.01)
    assert loss(out, tiny_batch()).item() == pytest.approx(value, rel=1e-5)


def test_anchored_d_does_not_train_the_teacher_projection(gkd_registry):
    """With ``last_layer_only`` the attention is constant, so every gradient on the teacher
    projection would come from D: anchored, there is none; unanchored, there is."""
    for anchored, expect_gradient in ((True, False), (False, True)):
        loss = build(gkd_registry, anchored=anchored, last_layer_only=True)
        set_known_weights(loss.layers)
        out, (s1, s2) = tiny_student()
        loss(out, tiny_batch()).backward()
        grad = loss.layers.teacher_proj.weight.grad
        assert (grad is not None and bool(grad.abs().sum() > 0)) == expect_gradient
        assert s2.grad is not None and float(s2.grad.abs().sum()) > 0  # the student still learns
