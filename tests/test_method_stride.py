"""STRIDE (Ahluwalia et al., arXiv:2310.15938v2): variants, structural dissimilarity and its
sampling, against values worked out independently in numpy.

A toy structural loss defined here (``1.5 * mean over edges of (s_u.s_v - t_u.t_v)^2``, with a
trainable scale) makes the structural dissimilarity computable by hand; the real G-CRD/LSP/GSP
losses are run at the end. As ``stride.txt`` reads (see the module docstring):

    D = D_emb + D_struct,  L = CE + beta * mean_ij (A o D)_ij = CE + beta * sum_ij A_ij D_ij / (Lt Ls)

with ABKD's attention (rows over student layers) and eq. 4, and the structural loss on features
projected by one structural projection per network (``QT``, ``QS``), without ``P``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hand_values import hand_ce, hand_eq5, hand_norm_dissimilarity
from test_method_abkd import (
    BETA,
    S2,
    STUDENT,
    TEACHER,
    TRAIN,
    WS,
    WT,
    P,
    Y,
    context,
    hand_a,
    hand_d,
    set_known_weights,
    tiny_batch,
    tiny_student,
)
from torch import nn

from gkd_search.methods.stride import sample_subgraph, sampled_pair_sum
from gkd_search.types import (
    DistillationBatch,
    ModelOutput,
    StructuralLoss,
    StructuralLossModule,
)

pytestmark = pytest.mark.usefixtures("one_thread")

EDGES = [[0, 1, 2, 2], [1, 2, 0, 1]]  # (source, target) pairs
TOY_SCALE = 1.5
QT = np.array([[0.6, -0.2], [0.3, 0.9], [-0.4, 0.5]])  # the structural projection of the teacher network
QS = np.array([[1.2, 0.1], [-0.3, 0.7]])  # and of the student network
PAIRS = 4  # Lt x Ls


class ToyModule(StructuralLossModule):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(TOY_SCALE))

    def forward(self, student, teacher, edge_index):
        src, dst = edge_index
        gap = (student[src] * student[dst]).sum(-1) - (teacher[src] * teacher[dst]).sum(-1)
        return self.scale * gap.pow(2).mean()


class ToyStructure(StructuralLoss):
    name = "toy"

    def build(self, params, student_channels, teacher_channels):
        return ToyModule()


def hand_structure(teacher, student, wt, ws, edges):
    """Ds_ij = 1.5 * mean_e ((S_j Ws_j)[u].(S_j Ws_j)[v] - (T_i Wt_i)[u].(T_i Wt_i)[v])^2, no P."""
    d = np.zeros((len(teacher), len(student)))
    for i, (t, w_t) in enumerate(zip(teacher, wt)):
        for j, (s, w_s) in enumerate(zip(student, ws)):
            t, s = np.array(t), np.array(s)
            tp, sp = t @ w_t[: t.shape[1]], s @ w_s[: s.shape[1]]  # a narrower layer: the first rows
            gaps = [(sp[u] @ sp[v] - tp[u] @ tp[v]) ** 2 for u, v in zip(*edges)]
            d[i, j] = TOY_SCALE * sum(gaps) / len(gaps)
    return d


def set_stride_weights(loss, qt=QT, qs=QS):
    """The ABKD weights of the test, and ``QT``/``QS`` in the structural projections."""
    set_known_weights(loss.layers)
    if loss.teacher_struct is not None:
        with torch.no_grad():
            for proj, mat in ((loss.teacher_struct, qt), (loss.student_struct, qs)):
                proj.weight.zero_()
                proj.weight[0, : mat.shape[0]] = torch.tensor(mat, dtype=torch.float32)


def hand_ds(qt=QT, qs=QS):
    return hand_structure(TEACHER, STUDENT, [qt, qt], [qs, qs], EDGES)


def build(gkd_registry, seed=0, teacher_dims=(3, 2), student_dims=(2, 2), **params):
    params = {"beta": BETA, "d_a": 2, "structure": "toy", "node_sample": 0, "layer_sample": 0,
              "structure_nodes": 0, "structure_pairs": 0, "teacher_scale": "raw", **params}
    torch.manual_seed(seed)
    ctx = context(teacher_dims, student_dims, losses={"toy": ToyStructure(), **gkd_registry.losses})
    return gkd_registry.get("method", "stride").build_loss(params, ctx)


def batch_with_edges():
    batch = tiny_batch()
    batch.edge_index = torch.tensor(EDGES)
    return batch


# ----------------------------------------------------------------------------- values


def test_s_stride_is_the_attention_weighted_structural_dissimilarity(gkd_registry):
    loss = build(gkd_registry, variant="s-stride")
    set_stride_weights(loss)
    out, _ = tiny_student()
    expected = hand_ce(S2, Y, TRAIN) + BETA * float((hand_a() * hand_ds()).sum()) / PAIRS
    assert loss(out, batch_with_edges()).item() == pytest.approx(expected, rel=1e-5)
    # the embedding dissimilarity (which P enters) plays no part
    with torch.no_grad():
        loss.layers.subspace.mul_(3.0)
    assert loss(out, batch_with_edges()).item() == pytest.approx(expected, rel=1e-5)


def test_e_stride_is_abkd_eq4_under_the_mean_over_pairs(gkd_registry):
    """Same seed, same layer shapes: e-stride and ABKD build the same projections and draw the
    same node and teacher-layer samples (deep teacher, sampling on). With ``pair_reduction="abkd"``
    the objectives are equal; with the default mean over all pairs the term is ABKD's / Lt."""
    dims_t, dims_s = [4] * 9 + [3], [5, 3]
    params = {"beta": 4.0, "d_a": 8, "node_sample": 6, "layer_sample": 3, "teacher_scale": "raw"}
    gen = torch.Generator().manual_seed(1)
    teacher = [torch.randn(10, d, generator=gen) for d in dims_t]
    student = [torch.randn(10, d, generator=gen) for d in dims_s]
    batch = DistillationBatch(y=torch.randint(0, 3, (10,), generator=gen),
                              train_mask=torch.rand(10, generator=gen) < 0.5,
                              teacher_logits=teacher[-1], teacher_hidden=teacher,
                              edge_index=torch.randint(0, 10, (2, 30), generator=gen))
    out = ModelOutput(logits=student[-1], hidden=student)
    torch.manual_seed(0)
    abkd = gkd_registry.get("method", "abkd").build_loss(params, context(dims_t, dims_s))
    for reduction, factor in (("abkd", 1.0), ("mean", 1.0 / len(dims_t))):
        stride = build(gkd_registry, 0, dims_t, dims_s, variant="e-stride", pair_reduction=reduction, **params)
        assert stride.structural is None
        for seed in range(3):
            torch.manual_seed(seed)
            v_stride = stride.distillation_term(out, batch)
            torch.manual_seed(seed)
            v_abkd = abkd.distillation_term(out, batch)
            assert v_stride.item() == pytest.approx(factor * v_abkd.item(), rel=1e-5)


def test_stride_is_the_mean_over_pairs_of_both_dissimilarities(gkd_registry):
    out, _ = tiny_student()
    values = {}
    for variant in ("stride", "e-stride", "s-stride"):
        loss = build(gkd_registry, variant=variant)
        set_stride_weights(loss)
        values[variant] = loss(out, batch_with_edges()).item()
    ce = hand_ce(S2, Y, TRAIN)
    assert values["stride"] - ce == pytest.approx((values["e-stride"] - ce) + (values["s-stride"] - ce), rel=1e-5)
    d = hand_d() + hand_ds()
    assert values["stride"] == pytest.approx(ce + BETA * float((hand_a() * d).sum()) / PAIRS, rel=1e-5)
    # ABKD's eq. 5 as the other reading: the sum over teacher layers, the mean over student layers
    loss = build(gkd_registry, pair_reduction="abkd")
    set_stride_weights(loss)
    assert loss(out, batch_with_edges()).item() == pytest.approx(ce + BETA * hand_eq5(hand_a(), d), rel=1e-5)


def test_modified_stride_aligns_the_last_pair_only(gkd_registry):
    loss = build(gkd_registry, last_layer_only=True)
    set_stride_weights(loss)
    out, _ = tiny_student()
    batch = batch_with_edges()
    d = hand_d() + hand_ds()
    expected = hand_ce(S2, Y, TRAIN) + BETA * d[1, 1] / PAIRS
    assert loss(out, batch).item() == pytest.approx(expected, rel=1e-5)
    batch.teacher_hidden[0] = batch.teacher_hidden[0] * 10.0  # the first teacher layer no longer matters
    assert loss(out, batch).item() == pytest.approx(expected, rel=1e-5)


def test_previous_formulation_uses_the_attention_maps_for_structure(gkd_registry):
    """Before issue 13: softmax over teacher layers, ABKD's squared-norm D, the attention's maps
    for the structural features, ``sum_ij A_ij D_ij / Ls``."""
    loss = build(gkd_registry, attention_axis="teacher", embedding_reduction="norm", node_reduction="mean",
                 dissimilarity_projection="attention", structure_projection="attention", pair_reduction="abkd")
    assert loss.teacher_struct is None
    set_stride_weights(loss)
    out, _ = tiny_student()
    d = hand_norm_dissimilarity(TEACHER, STUDENT, WT, WS, P, 2) + hand_structure(TEACHER, STUDENT, WT, WS, EDGES)
    expected = hand_ce(S2, Y, TRAIN) + BETA * hand_eq5(hand_a("teacher"), d)
    assert loss(out, batch_with_edges()).item() == pytest.approx(expected, rel=1e-5)


def test_gradients_reach_student_projections_and_the_structural_loss(gkd_registry):
    loss = build(gkd_registry)
    out, (s1, _) = tiny_student()
    loss(out, batch_with_edges()).backward()
    assert s1.grad is not None and s1.grad.abs().sum() > 0
    names = {n for n, p in loss.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert {"layers.teacher_proj.weight", "layers.student_proj.weight", "layers.teacher_dis.weight",
            "layers.student_dis.weight", "layers.subspace", "teacher_struct.weight", "student_struct.weight",
            "structural.scale"} <= names


def test_unknown_structure_is_a_clear_error(gkd_registry):
    with pytest.raises(ValueError, match="structural loss 'nope' is not registered"):
        build(gkd_registry, structure="nope")
    with pytest.raises(ValueError, match="variant"):
        build(gkd_registry, variant="x-stride")


# ----------------------------------------------------------------------------- sampling


def test_pair_sampling_is_unbiased_in_value_and_attention_gradient():
    gen = torch.Generator().manual_seed(5)
    logits = torch.randn(5, 3, generator=gen, requires_grad=True)
    v = torch.rand(5, 3, generator=gen) + 0.2
    exact = (torch.softmax(logits, dim=0) * v).sum()
    (exact_grad,) = torch.autograd.grad(exact, logits)
    torch.manual_seed(0)
    values, grads = [], []
    for _ in range(3000):
        est = sampled_pair_sum(torch.softmax(logits, dim=0), lambda i, j: v[i, j], 4)
        (g,) = torch.autograd.grad(est, logits)
        values.append(est.item())
        grads.append(g)
    assert np.mean(values) == pytest.approx(exact.item(), rel=0.03)
    assert torch.allclose(torch.stack(grads).mean(0), exact_grad, atol=0.1 * exact_grad.abs().max().item())


def test_sampled_subgraph_keeps_every_edge_into_a_centre():
    gen = torch.Generator().manual_seed(2)
    edge_index = torch.randint(0, 40, (2, 200), generator=gen)
    torch.manual_seed(0)
    centres = {int(c) for c in torch.randperm(40)[:6]}  # the draw sample_subgraph makes
    torch.manual_seed(0)
    rows, edges = sample_subgraph(edge_index, 40, 6)
    relabelled = [(int(rows[u]), int(rows[v])) for u, v in edges.t()]
    into_centres = [(int(u), int(v)) for u, v in edge_index.t() if int(v) in centres]
    assert sorted(relabelled) == sorted(into_centres)  # every edge into a centre, and no other
    assert {int(r) for r in rows} == centres | {u for u, _ in into_centres}
    assert rows.tolist() == sorted(rows.tolist())
    assert sample_subgraph(edge_index, 40, 0) == (None, edge_index)


# ----------------------------------------------------------------------------- real structural losses


@pytest.mark.parametrize("structure", ["gcrd", "lsp", "gsp"])
def test_real_structural_losses_train(gkd_registry, small_synthetic, structure):
    """A deep random teacher on the 600-node synthetic graph: finite loss, gradients reach the
    student and the structural loss's own parameters, diagnostics hold all three matrices."""
    data = small_synthetic.data
    gen = torch.Generator().manual_seed(0)
    dims_t = [16] * 9 + [small_synthetic.num_classes]
    teacher = [torch.randn(data.num_nodes, d, generator=gen) for d in dims_t]
    torch.manual_seed(0)
    student = gkd_registry.get("family", "gcn").build(data.x.size(1), small_synthetic.num_classes, 2, 16)
    ctx = context(dims_t, [16, small_synthetic.num_classes], losses=gkd_registry.losses)
    loss = gkd_registry.get("method", "stride").build_loss(
        {"beta": 10.0, "d_a": 32, "structure": structure}, ctx)
    batch = DistillationBatch(y=data.y, train_mask=data.train_mask, teacher_logits=teacher[-1],
                              teacher_hidden=teacher, edge_index=data.edge_index)
    value = loss(student(data.x, data.edge_index), batch)
    assert torch.isfinite(value)
    value.backward()
    assert all(p.grad is not None for p in student.parameters())
    for name, p in loss.structural.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    state = torch.random.get_rng_state()
    with torch.no_grad():
        diag = loss.diagnostics(student(data.x, data.edge_index), batch)
    assert torch.equal(state, torch.random.get_rng_state())
    assert set(diag) == {"attention", "dissimilarity", "structural_dissimilarity"}
    assert all(tuple(m.shape) == (10, 2) and torch.isfinite(m).all() for m in diag.values())


def test_default_space(gkd_registry):
    method = gkd_registry.get("method", "stride")
    space = method.hyperparameters
    assert space["structure"].default == "gcrd" and space["variant"].default == "stride"
    assert space["beta"].default == pytest.approx(0.1 ** 0.5) and space["d_a"].default == 256
    assert (space["pair_reduction"].default, space["structure_projection"].default, space["attention_axis"].default,
            space["embedding_reduction"].default, space["node_reduction"].default) == (
        "mean", "network", "student", "mean", "sum")
    assert space["last_layer_only"].default is False and space["variant"].allowed == ("stride", "e-stride", "s-stride")
    assert method.requires == {"logits", "hidden"}
