"""ABKD (Ahluwalia et al., arXiv:2310.15938v1) against values worked out independently in numpy
from the text of eqs. 3-6 (``hand_values.py``).

The tiny case: 2 teacher layers (widths 3 and 2), 2 student layers (widths 2 and 2), 3 nodes,
``d_a = 2``, the attention maps ``Wt_i``/``Ws_j``, the dissimilarity projections ``P_t``/``P_s``
(one per network) and the subspace matrix ``P`` set to known matrices:

    (3)  A    = softmax over student layers of (mean_v T_i[v] Wt_i) . (mean_v S_j[v] Ws_j) / sqrt(d_a)
    (4)  D_ij = sum_v ( mean_k [(T_i[v] P_t - S_j[v] P_s) P]_k )^2
    (5)  L_abkd = sum_ij A_ij D_ij / Ls
    (6)  L    = CE + beta * L_abkd
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hand_values import hand_attention, hand_ce, hand_eq4, hand_eq5, hand_norm_dissimilarity

from gkd_search.methods._layer_attention import sampled_attention_sum
from gkd_search.types import DistillationBatch, DistillationContext, ModelOutput

pytestmark = pytest.mark.usefixtures("one_thread")

T1 = [[1.0, 0.0, 2.0], [0.5, -1.0, 1.0], [-1.0, 2.0, 0.0]]  # teacher layer 1, width 3
T2 = [[0.2, 1.0], [-0.4, 0.3], [1.5, -0.5]]  # teacher layer 2 (logits), width 2
S1 = [[0.3, -0.2], [1.0, 0.5], [-0.7, 0.1]]  # student layer 1, width 2
S2 = [[0.9, -1.1], [0.0, 0.4], [0.6, 0.2]]  # student layer 2 (logits), width 2
Y = [0, 1, 1]
TRAIN = [True, False, True]
WT = [np.array([[1.0, 0.5], [0.0, -1.0], [2.0, 0.3]]), np.array([[0.7, -0.2], [0.1, 1.2]])]  # attention maps
WS = [np.array([[0.4, 1.0], [-0.6, 0.2]]), np.array([[1.1, 0.0], [0.3, -0.8]])]
PT = np.array([[0.8, -0.3], [0.2, 1.1], [-0.5, 0.6]])  # P_t: one map for the teacher network (width 3)
PS = np.array([[0.5, 0.9], [-1.2, 0.4]])  # P_s
P = np.array([[0.9, 0.2], [-0.3, 1.4]])
BETA = 2.5
TEACHER, STUDENT = [T1, T2], [S1, S2]


def hand_a(axis="student", wt=WT, ws=WS):
    return hand_attention(TEACHER, STUDENT, wt, ws, 2, axis=axis)


def hand_d(nodes="sum", p=P, distance="euclidean"):
    return hand_eq4(TEACHER, STUDENT, [PT, PT], [PS, PS], p, 2, nodes=nodes, distance=distance)


def hand_abkd(a, d, beta=BETA):
    """Eq. 6."""
    return hand_ce(S2, Y, TRAIN) + beta * hand_eq5(a, d)


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


def set_known_weights(layers, wt=WT, ws=WS, p=P, pt=(PT,), ps=(PS,)):
    """Put the test's matrices into the loss's attention maps, dissimilarity projections and P."""
    with torch.no_grad():
        pairs = [(layers.teacher_proj, wt), (layers.student_proj, ws)]
        if layers.teacher_dis is not None:
            pairs += [(layers.teacher_dis, pt), (layers.student_dis, ps)]
        for proj, mats in pairs:
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


def test_eq3_attention_normalises_each_teacher_row_over_student_layers(gkd_registry):
    loss = build(gkd_registry)
    set_known_weights(loss.layers)
    out, _ = tiny_student()
    a = loss.layers.attention(tiny_batch().teacher_hidden, out.hidden).detach().numpy()
    expected = hand_a("student")
    assert np.allclose(a, expected, rtol=1e-5)
    assert np.allclose(a.sum(axis=1), 1.0) and not np.allclose(a.sum(axis=0), 1.0)
    # the other reading: each student column sums to 1; the two differ on this case
    other = build(gkd_registry, attention_axis="teacher")
    set_known_weights(other.layers)
    b = other.layers.attention(tiny_batch().teacher_hidden, out.hidden).detach().numpy()
    assert np.allclose(b, hand_a("teacher"), rtol=1e-5) and not np.allclose(a, b, atol=1e-3)


@pytest.mark.parametrize("nodes", ["sum", "mean"])
def test_eq4_dissimilarity_averages_over_the_embedding_then_squares_per_node(gkd_registry, nodes):
    loss = build(gkd_registry, node_reduction=nodes)
    set_known_weights(loss.layers)
    out, _ = tiny_student()
    d = loss.layers.dissimilarity(tiny_batch().teacher_hidden, out.hidden).detach().numpy()
    assert np.allclose(d, hand_d(nodes), rtol=1e-5)
    assert (d > 1e-3).all()  # not a degenerate case


def test_eq4_per_node_average_differs_from_the_previous_squared_norm(gkd_registry):
    """A projected difference of (1, -1) at every node: eq. 4 averages it over the embedding
    dimension to 0 before squaring (D = 0); the previous formulation, the squared norm of the
    row over d_a^2, gives (1 + 1) / 4 per node (D = 0.5 as a node mean)."""
    ctx = context(teacher_dims=(2,), student_dims=(2,))
    teacher = [torch.tensor([[1.0, 0.0], [2.0, 0.0], [-1.0, 0.0]])]
    student = [torch.zeros(3, 2, requires_grad=True)]
    flip = [np.array([[1.0, -1.0], [0.0, 0.0]])]  # x -> (x0, -x0)
    common = {"beta": 1.0, "d_a": 2, "subspace": False, "node_sample": 0, "layer_sample": 0}
    eq4 = gkd_registry.get("method", "abkd").build_loss(common, ctx)
    set_known_weights(eq4.layers, wt=flip, ws=flip, pt=flip, ps=flip)
    before = gkd_registry.get("method", "abkd").build_loss(
        {**common, "embedding_reduction": "norm", "node_reduction": "mean", "dissimilarity_projection": "attention"},
        ctx)
    set_known_weights(before.layers, wt=flip, ws=flip)
    d_eq4 = eq4.layers.dissimilarity(teacher, student).item()
    d_before = before.layers.dissimilarity(teacher, student).item()
    assert d_eq4 == pytest.approx(float(hand_eq4([teacher[0].tolist()], [[[0.0, 0.0]] * 3], flip, flip, np.eye(2), 2)[0, 0]))
    assert d_eq4 == pytest.approx(0.0, abs=1e-7)
    expected_before = hand_norm_dissimilarity([teacher[0].tolist()], [[[0.0, 0.0]] * 3], flip, flip, np.eye(2), 2)[0, 0]
    assert d_before == pytest.approx(float(expected_before)) and d_before == pytest.approx((1 + 4 + 1) * 2 / 4 / 3)


def test_eq5_sums_over_teacher_layers_and_averages_over_student_layers(gkd_registry):
    loss = build(gkd_registry)
    set_known_weights(loss.layers)
    out, _ = tiny_student()
    a, d = hand_a(), hand_d()
    value = loss.distillation_term(out, tiny_batch()).item()
    assert value == pytest.approx(hand_eq5(a, d), rel=1e-5)
    # rows of A sum to 1, so eq. 5 is Lt / Ls times the mean attention-weighted dissimilarity
    assert value == pytest.approx(float((a * d).sum(axis=1).sum()) / 2, rel=1e-5)


def test_eq6_objective_is_cross_entropy_plus_beta_times_eq5(gkd_registry):
    loss = build(gkd_registry)
    set_known_weights(loss.layers)
    out, _ = tiny_student()
    value = loss(out, tiny_batch()).item()
    assert value == pytest.approx(hand_abkd(hand_a(), hand_d()), rel=1e-5)
    assert hand_abkd(hand_a(), hand_d()) - hand_ce(S2, Y, TRAIN) > 0.01  # the term matters here


def test_previous_formulation_is_kept_as_options(gkd_registry):
    """Softmax over teacher layers, the attention's maps, ``mean_v ||(...) P / d_a||^2``."""
    from gkd_search.methods.abkd import PREVIOUS_FORMULATION

    loss = build(gkd_registry, **{**PREVIOUS_FORMULATION, "node_sample": 0, "layer_sample": 0})
    assert loss.layers.teacher_dis is None
    set_known_weights(loss.layers)
    out, _ = tiny_student()
    a = hand_a("teacher")
    d = hand_norm_dissimilarity(TEACHER, STUDENT, WT, WS, P, 2)
    assert loss(out, tiny_batch()).item() == pytest.approx(hand_abkd(a, d), rel=1e-5)
    assert loss(out, tiny_batch()).item() != pytest.approx(hand_abkd(hand_a(), hand_d()), rel=1e-2)


def test_per_layer_dissimilarity_projections(gkd_registry):
    loss = build(gkd_registry, dissimilarity_projection="layer")
    pt = [PT, np.array([[0.3, 0.7], [-0.9, 0.2]])]
    ps = [PS, np.array([[1.0, -0.4], [0.6, 0.5]])]
    set_known_weights(loss.layers, pt=pt, ps=ps)
    out, _ = tiny_student()
    d = loss.layers.dissimilarity(tiny_batch().teacher_hidden, out.hidden).detach().numpy()
    assert np.allclose(d, hand_eq4(TEACHER, STUDENT, pt, ps, P, 2), rtol=1e-5)


def test_node_sample_estimates_the_node_sum_without_bias(gkd_registry):
    loss = build(gkd_registry, node_sample=2)
    set_known_weights(loss.layers)
    out, _ = tiny_student()
    batch = tiny_batch()
    torch.manual_seed(0)
    values = [loss.distillation_term(out, batch).item() for _ in range(600)]
    assert np.mean(values) == pytest.approx(hand_eq5(hand_a(), hand_d()), rel=0.05)


def test_a_mini_batch_sum_is_scaled_to_the_graph(gkd_registry):
    """With the graph's 6 nodes in the context, a batch of its 3 rows estimates a 6-node sum."""
    ctx = context()
    ctx.x = torch.zeros(6, 4)
    loss = gkd_registry.get("method", "abkd").build_loss({"beta": BETA, "d_a": 2, "teacher_scale": "raw"}, ctx)
    set_known_weights(loss.layers)
    out, _ = tiny_student()
    assert loss.distillation_term(out, tiny_batch()).item() == pytest.approx(2 * hand_eq5(hand_a(), hand_d()), rel=1e-5)


def test_last_layer_only_uses_only_the_last_pair(gkd_registry):
    loss = build(gkd_registry, last_layer_only=True)
    set_known_weights(loss.layers)
    out, _ = tiny_student()
    batch = tiny_batch()
    d = hand_d()
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
    assert off(out, tiny_batch()).item() == pytest.approx(hand_abkd(hand_a(), hand_d(p=np.eye(2))), rel=1e-5)
    on = build(gkd_registry)
    set_known_weights(on.layers)
    assert on(out, tiny_batch()).item() != pytest.approx(off(out, tiny_batch()).item(), rel=1e-3)
    set_known_weights(on.layers, p=np.eye(2))
    assert on(out, tiny_batch()).item() == pytest.approx(off(out, tiny_batch()).item(), rel=1e-6)


def test_cosine_distance_is_between_eq4_node_vectors(gkd_registry):
    loss = build(gkd_registry, distance="cosine")
    set_known_weights(loss.layers)
    out, _ = tiny_student()
    d = hand_d(distance="cosine")
    assert loss(out, tiny_batch()).item() == pytest.approx(hand_abkd(hand_a(), d), rel=1e-5)
    before = build(gkd_registry, distance="cosine", embedding_reduction="norm", node_reduction="mean",
                   dissimilarity_projection="attention", attention_axis="teacher")
    set_known_weights(before.layers)
    d_before = hand_norm_dissimilarity(TEACHER, STUDENT, WT, WS, P, 2, distance="cosine")
    assert before(out, tiny_batch()).item() == pytest.approx(hand_abkd(hand_a("teacher"), d_before), rel=1e-5)


def test_shared_projection_zero_pads_narrow_layers(gkd_registry):
    """Table 7's one linear layer: one map for all teacher layers, one for all student layers,
    for the attention as for the dissimilarity."""
    loss = build(gkd_registry, shared_projection=True)
    for proj, shape in ((loss.layers.teacher_proj, (1, 3, 2)), (loss.layers.student_proj, (1, 2, 2)),
                        (loss.layers.teacher_dis, (1, 3, 2)), (loss.layers.student_dis, (1, 2, 2))):
        assert tuple(proj.weight.shape) == shape
    shared_t = np.array([[0.6, -0.4], [1.0, 0.2], [-0.5, 0.9]])
    shared_s = np.array([[0.3, 0.8], [-1.0, 0.5]])
    set_known_weights(loss.layers, wt=[shared_t], ws=[shared_s])
    out, _ = tiny_student()
    # zero-padding T2 (width 2) to width 3 is using the first two rows of the shared map
    a = hand_a(wt=[shared_t, shared_t[:2]], ws=[shared_s, shared_s])
    assert loss(out, tiny_batch()).item() == pytest.approx(hand_abkd(a, hand_d()), rel=1e-5)


def test_bad_reading_is_a_clear_error(gkd_registry):
    with pytest.raises(ValueError, match="attention_axis must be one of 'student', 'teacher', got 'nodes'"):
        build(gkd_registry, attention_axis="nodes")


def test_default_space_is_the_papers_full_method(gkd_registry):
    method = gkd_registry.get("method", "abkd")
    space = method.hyperparameters
    assert space["beta"].default == pytest.approx(10.0)  # the paper's beta
    assert space["d_a"].default == 256  # the paper's d_a
    assert (space["last_layer_only"].default, space["shared_projection"].default,
            space["distance"].default, space["subspace"].default) == (False, False, "euclidean", True)
    assert (space["attention_axis"].default, space["embedding_reduction"].default, space["node_reduction"].default,
            space["dissimilarity_projection"].default) == ("student", "mean", "sum", "network")
    assert (space["node_sample"].default, space["layer_sample"].default) == (0, 0)  # exact by default
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
    loss = gkd_registry.get("method", "abkd").build_loss({"beta": 1.0, "d_a": 4, "layer_sample": 3, "teacher_scale": "raw"}, ctx)
    seen = []
    original = loss.layers.dissimilarity

    def spy(teacher_hidden, student_hidden, index=None, layers=None, total_nodes=None):
        seen.append(None if layers is None else layers.tolist())
        return original(teacher_hidden, student_hidden, index, layers, total_nodes)

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
    a = hand_a()
    d = hand_d()  # all 3 nodes, not the 2-node sample
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
    assert value == pytest.approx(hand_abkd(hand_a(), hand_d(p=p_scaled)), rel=1e-5)
    # scaling P changes nothing: it cannot shrink D
    with torch.no_grad():
        loss.layers.subspace.mul_(0.01)
    assert loss(out, tiny_batch()).item() == pytest.approx(value, rel=1e-5)


def test_anchored_d_does_not_train_the_teacher_projection(gkd_registry):
    """With ``last_layer_only`` the attention is constant, so every gradient on the teacher's
    dissimilarity projection would come from D: anchored, there is none; unanchored, there is."""
    for anchored, expect_gradient in ((True, False), (False, True)):
        loss = build(gkd_registry, anchored=anchored, last_layer_only=True)
        set_known_weights(loss.layers)
        out, (s1, s2) = tiny_student()
        loss(out, tiny_batch()).backward()
        grad = loss.layers.teacher_dis.weight.grad
        assert (grad is not None and bool(grad.abs().sum() > 0)) == expect_gradient
        assert s2.grad is not None and float(s2.grad.abs().sum()) > 0  # the student still learns


def test_rms_teacher_scale_is_the_raw_loss_on_teacher_layers_divided_by_their_rms_row_norm(gkd_registry):
    """``teacher_scale="rms"`` (issue 16) equals the paper's loss computed on teacher layers each
    divided by sqrt(mean_v ||t_v||^2), and differs from it when the teacher is not at unit RMS."""
    gen = torch.Generator().manual_seed(3)
    teacher = [torch.randn(6, d, generator=gen) * s for d, s in ((3, 10.0), (2, 0.1))]
    student = [torch.randn(6, d, generator=gen, requires_grad=True) for d in (2, 2)]
    torch.manual_seed(0)
    rms = build(gkd_registry, teacher_scale="rms")
    torch.manual_seed(0)
    raw = build(gkd_registry, teacher_scale="raw")
    raw.load_state_dict(rms.state_dict())
    scaled = [t / t.pow(2).sum(dim=1).mean().sqrt() for t in teacher]
    a_rms = rms.layers.attention(rms.layers.scale_teacher(teacher), student)
    value_rms = rms.layers.weighted_dissimilarity(a_rms, rms.layers.scale_teacher(teacher), student, 6)
    a_raw = raw.layers.attention(scaled, student)
    value_raw = raw.layers.weighted_dissimilarity(a_raw, scaled, student, 6)
    assert torch.allclose(value_rms, value_raw, atol=1e-6)
    a_unscaled = raw.layers.attention(teacher, student)
    assert not torch.allclose(raw.layers.weighted_dissimilarity(a_unscaled, teacher, student, 6), value_raw)
    assert gkd_registry.get("method", "abkd").hyperparameters["teacher_scale"].default == "rms"
