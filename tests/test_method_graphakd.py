"""``graphakd`` against values worked out with numpy from He et al. (KDD 2022), Sec. 3.2-3.3.

The hand formulas below are written from the paper's equations (see the module docstring):
L2-normalised embeddings, diagonal bilinear scores, ``-log sigmoid`` for real and
``-log(1 - sigmoid)`` for fake, summaries ``sigmoid(mean h)``, a residual logit
discriminator ``W_2 relu(z + W_1 z + b_1)`` whose last output is the real/fake score.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gkd_search.methods.graphakd import GraphAKDLoss
from gkd_search.types import DistillationBatch, DistillationContext, ModelOutput

pytestmark = pytest.mark.usefixtures("one_thread")

# 4 nodes, 3 classes, student embedding width 2, teacher embedding width 3
H_S = [[1.0, 2.0], [-0.5, 1.0], [2.0, -1.0], [0.3, 0.4]]
H_T = [[1.0, 0.0, 2.0], [0.5, -1.0, 1.0], [-2.0, 1.0, 0.5], [1.0, 1.0, 1.0]]
Z_S = [[2.0, -1.0, 0.5], [0.1, 0.2, 0.3], [-1.5, 3.0, 0.0], [1.0, 1.0, -2.0]]
Z_T = [[3.0, 0.0, -1.0], [0.5, -0.5, 2.0], [0.0, 2.5, 0.5], [-1.0, 2.0, 1.0]]
Y = [0, 2, 1, 1]
TRAIN = [True, False, True, True]
EDGES = [[0, 1, 2, 3, 1], [1, 0, 3, 2, 2]]

# known weights
P_W = [[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]]  # student (2) -> teacher (3) projection
P_B = [0.0, 0.0, 0.5]
PHI_LOC = [1.0, 0.5, 2.0]
PHI_GLOB = [0.5, -1.0, 1.5]
W1 = [[0.5, -0.2, 0.1], [0.0, 0.3, -0.4], [0.2, 0.2, 0.2]]
B1 = [0.1, -0.1, 0.0]
W2 = [[1.0, 0.0, -0.5], [0.2, 1.0, 0.0], [-0.3, 0.4, 1.0], [0.5, -0.5, 0.25]]


# ------------------------------------------------------------------ hand formulas (numpy)

def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def unit_rows(h):
    h = np.asarray(h, dtype=np.float64)
    return h / np.linalg.norm(h, axis=1, keepdims=True)


def project(h_s):
    return np.asarray(h_s) @ np.asarray(P_W).T + np.asarray(P_B)


def local_score(rows, u, v):
    return sum(rows[u, k] * PHI_LOC[k] * rows[v, k] for k in range(3))


def global_score(row, s):
    return sum(row[k] * PHI_GLOB[k] * s[k] for k in range(3))


def summary(h):
    return [sigmoid(x) for x in np.mean(h, axis=0)]  # over all nodes


def hand_local(h_t, h_s, edges=range(5)):
    """The discriminator's L_loc: -mean log D(h^T_u, h^T_v) - mean log(1 - D(h^S_u, h^S_v))."""
    ut, us = unit_rows(h_t), unit_rows(h_s)
    pairs = [(EDGES[0][e], EDGES[1][e]) for e in edges]
    real = [-math.log(sigmoid(local_score(ut, u, v))) for u, v in pairs]
    fake = [-math.log(1 - sigmoid(local_score(us, u, v))) for u, v in pairs]
    return sum(real) / len(real) + sum(fake) / len(fake)


def hand_local_generator(h_s, edges=range(5)):
    """The non-saturating generator's term: -mean log D(h^S_u, h^S_v)."""
    us = unit_rows(h_s)
    terms = [-math.log(sigmoid(local_score(us, EDGES[0][e], EDGES[1][e]))) for e in edges]
    return sum(terms) / len(terms)


def hand_half(real, fake, s, nodes=range(4)):
    """One half of L_glob: -mean log D(real_v, s) - mean log(1 - D(fake_v, s))."""
    ur, uf = unit_rows(real), unit_rows(fake)
    nodes = list(nodes)
    return (sum(-math.log(sigmoid(global_score(ur[i], s))) for i in nodes) / len(nodes)
            + sum(-math.log(1 - sigmoid(global_score(uf[i], s))) for i in nodes) / len(nodes))


def hand_global(h_t, h_s, nodes=range(4)):
    """``(teacher-summary half, student-summary half)`` of the discriminator's L_glob."""
    return hand_half(h_t, h_s, summary(h_t), nodes), hand_half(h_s, h_t, summary(h_s), nodes)


def hand_global_generator(h_t, h_s):
    """The non-saturating generator's teacher-summary term: -mean log D(h^S_v, s^T)."""
    us, s_t = unit_rows(h_s), summary(h_t)
    return sum(-math.log(sigmoid(global_score(us[i], s_t))) for i in range(4)) / 4


def hand_logit_d(z):
    """W_2 relu(z + W_1 z + b_1), row by row."""
    out = []
    for row in z:
        hidden = [max(0.0, row[j] + sum(W1[j][k] * row[k] for k in range(3)) + B1[j]) for j in range(3)]
        out.append([sum(W2[o][j] * hidden[j] for j in range(3)) for o in range(4)])
    return out


def hand_ce_rows(scores, y, mask):
    terms = []
    for row, label, keep in zip(scores, y, mask):
        if keep:
            m = max(row)
            log_z = m + math.log(sum(math.exp(x - m) for x in row))
            terms.append(log_z - row[label])
    return sum(terms) / len(terms)


def hand_adv(z_t, z_s):
    d_t, d_s = hand_logit_d(z_t), hand_logit_d(z_s)
    return sum(-math.log(sigmoid(r[3])) for r in d_t) / 4 + sum(-math.log(1 - sigmoid(r[3])) for r in d_s) / 4


def hand_adv_generator(z_s):
    return sum(-math.log(sigmoid(r[3])) for r in hand_logit_d(z_s)) / 4


def hand_cls(z):
    return hand_ce_rows([r[:3] for r in hand_logit_d(z)], Y, TRAIN)


# ------------------------------------------------------------------ fixtures

def context(student_dims=(2, 3), teacher_dims=(3, 3), family="gcn", uses_graph=True):
    return DistillationContext(num_classes=3, student_family=family, student_uses_graph=uses_graph,
                               student_hidden_dims=list(student_dims), teacher_hidden_dims=list(teacher_dims))


def student_and_batch(h_s=H_S, z_s=Z_S):
    h = torch.tensor(h_s, requires_grad=True)
    z = torch.tensor(z_s, requires_grad=True)
    batch = DistillationBatch(
        y=torch.tensor(Y), train_mask=torch.tensor(TRAIN), teacher_logits=torch.tensor(Z_T),
        teacher_hidden=[torch.tensor(H_T), torch.tensor(Z_T)], edge_index=torch.tensor(EDGES),
    )
    return h, z, ModelOutput(logits=z, hidden=[h, z]), batch


def set_known_weights(loss: GraphAKDLoss) -> None:
    with torch.no_grad():
        loss.projection.weight.copy_(torch.tensor(P_W))
        loss.projection.bias.copy_(torch.tensor(P_B))
        loss.rep_identifier.local_diag.copy_(torch.tensor(PHI_LOC))
        loss.rep_identifier.global_diag.copy_(torch.tensor(PHI_GLOB))
        loss.logit_identifier.lin1.weight.copy_(torch.tensor(W1))
        loss.logit_identifier.lin1.bias.copy_(torch.tensor(B1))
        loss.logit_identifier.lin2.weight.copy_(torch.tensor(W2))


def build(gkd_registry, alpha_e=0.7, alpha_l=0.3, views="local+global", generator="nonsaturating",
          disc_hidden=0, d_critic=1, **ctx):
    params = {"alpha_e": alpha_e, "alpha_l": alpha_l, "views": views, "generator": generator,
              "disc_hidden": disc_hidden, "d_critic": d_critic, "edge_sample": 4096, "node_sample": 2048}
    loss = gkd_registry.get("method", "graphakd").build_loss(params, context(**ctx))
    if isinstance(loss.projection, torch.nn.Linear) and disc_hidden == 0:
        set_known_weights(loss)
    return loss


def hand_terms():
    h_s = project(H_S)
    teacher_half, student_half = hand_global(H_T, h_s)
    return {
        "ce": hand_ce_rows(Z_S, Y, TRAIN), "local": hand_local(H_T, h_s), "teacher_half": teacher_half,
        "student_half": student_half, "adv": hand_adv(Z_T, Z_S), "cls": hand_cls(Z_T) + hand_cls(Z_S),
        "g_local": hand_local_generator(h_s), "g_global": hand_global_generator(H_T, h_s),
        "g_adv": hand_adv_generator(Z_S),
    }


# ------------------------------------------------------------------ values

def test_hand_helpers_sanity():
    # a discriminator that scores 0 everywhere pays log 2 on each real and each fake mean
    assert -math.log(sigmoid(0.0)) - math.log(1 - sigmoid(0.0)) == pytest.approx(2 * math.log(2))
    assert hand_ce_rows([[0.0, 0.0, 0.0]], [1], [True]) == pytest.approx(math.log(3))
    assert np.allclose(np.linalg.norm(unit_rows(H_T), axis=1), 1.0)


@pytest.mark.parametrize("generator", ["nonsaturating", "minimax"])
def test_each_discriminator_term_matches_the_paper(gkd_registry, generator):
    a_e, a_l = 0.7, 0.3
    loss = build(gkd_registry, alpha_e=a_e, alpha_l=a_l, generator=generator)
    _, _, out, batch = student_and_batch()
    value = loss(out, batch).item()
    e = hand_terms()
    assert loss.last_terms["ce"] == pytest.approx(e["ce"], rel=1e-5)
    assert loss.last_terms["local"] == pytest.approx(e["local"], rel=1e-5)
    assert loss.last_terms["global"] == pytest.approx(e["teacher_half"] + e["student_half"], rel=1e-5)
    assert loss.last_terms["adv"] == pytest.approx(e["adv"], rel=1e-5)
    assert loss.last_terms["cls"] == pytest.approx(e["cls"], rel=1e-5)
    # the returned value is the student's objective J_S
    if generator == "minimax":
        j_s = (e["ce"] - a_e * (e["local"] + e["teacher_half"]) + a_e * e["student_half"]
               - a_l * e["adv"] + a_l * e["cls"])
    else:
        for name in ("g_local", "g_global", "g_adv"):
            assert loss.last_terms[name] == pytest.approx(e[name], rel=1e-5), name
        j_s = e["ce"] + a_e * (e["g_local"] + e["g_global"] + e["student_half"]) + a_l * (e["g_adv"] + e["cls"])
    assert value == pytest.approx(j_s, rel=1e-5)
    assert math.isfinite(value)


@pytest.mark.parametrize("views", ["local", "global"])
def test_views_ablation_keeps_one_view(gkd_registry, views):
    loss = build(gkd_registry, alpha_e=1.5, alpha_l=0.0, views=views)
    _, _, out, batch = student_and_batch()
    value = loss(out, batch).item()
    e = hand_terms()
    if views == "local":
        assert "global" not in loss.last_terms
        expected = e["ce"] + 1.5 * e["g_local"]
    else:
        assert "local" not in loss.last_terms
        expected = e["ce"] + 1.5 * (e["g_global"] + e["student_half"])
    assert value == pytest.approx(expected, rel=1e-5)
    assert "adv" not in loss.last_terms  # alpha_l = 0 skips the logit identifier


def test_zero_weights_leave_cross_entropy(gkd_registry):
    loss = build(gkd_registry, alpha_e=0.0, alpha_l=0.0)
    _, _, out, batch = student_and_batch()
    assert loss(out, batch).item() == pytest.approx(hand_ce_rows(Z_S, Y, TRAIN), rel=1e-6)


def test_disc_hidden_gives_a_plain_mlp_of_that_width(gkd_registry):
    loss = build(gkd_registry, disc_hidden=64)
    assert loss.logit_identifier.lin1.out_features == 64 and not loss.logit_identifier.residual
    assert build(gkd_registry).logit_identifier.residual
    # a width-2 MLP with known weights: out = W_2 relu(W_1 z + b_1), no skip
    small = GraphAKDLoss(alpha_e=0.0, alpha_l=1.0, student_channels=2, teacher_channels=3, num_classes=3,
                         disc_hidden=2)
    w1, b1, w2 = [[1.0, -1.0, 0.5], [0.2, 0.3, -0.1]], [0.0, 0.5], [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.5, -1.0]]
    with torch.no_grad():
        small.logit_identifier.lin1.weight.copy_(torch.tensor(w1))
        small.logit_identifier.lin1.bias.copy_(torch.tensor(b1))
        small.logit_identifier.lin2.weight.copy_(torch.tensor(w2))

    def d(z):
        hid = [[max(0.0, sum(w1[j][k] * row[k] for k in range(3)) + b1[j]) for j in range(2)] for row in z]
        return [[sum(w2[o][j] * r[j] for j in range(2)) for o in range(4)] for r in hid]

    _, _, out, batch = student_and_batch()
    small(out, batch)
    d_t, d_s = d(Z_T), d(Z_S)
    adv = (sum(-math.log(sigmoid(r[3])) for r in d_t) / 4 + sum(-math.log(1 - sigmoid(r[3])) for r in d_s) / 4)
    cls = hand_ce_rows([r[:3] for r in d_t], Y, TRAIN) + hand_ce_rows([r[:3] for r in d_s], Y, TRAIN)
    assert small.last_terms["adv"] == pytest.approx(adv, rel=1e-5)
    assert small.last_terms["cls"] == pytest.approx(cls, rel=1e-5)
    assert small.last_terms["g_adv"] == pytest.approx(sum(-math.log(sigmoid(r[3])) for r in d_s) / 4, rel=1e-5)


def test_equal_widths_use_no_projection_and_one_layer_students_work(gkd_registry):
    loss = build(gkd_registry, student_dims=(3, 3))
    assert isinstance(loss.projection, torch.nn.Identity)
    # a 1-layer student: its embedding is its logits (width C = 3 = teacher width)
    one = build(gkd_registry, student_dims=(3,))
    z = torch.tensor(Z_S, requires_grad=True)
    _, _, _, batch = student_and_batch()
    value = one(ModelOutput(logits=z, hidden=[z]), batch)
    value.backward()
    assert torch.isfinite(value) and z.grad is not None and z.grad.abs().sum() > 0


def test_no_edges_drops_the_local_view(gkd_registry):
    loss = build(gkd_registry, alpha_l=0.0, views="local")
    _, _, out, batch = student_and_batch()
    batch.edge_index = torch.empty(2, 0, dtype=torch.long)
    assert loss(out, batch).item() == pytest.approx(hand_ce_rows(Z_S, Y, TRAIN), rel=1e-6)


def test_edge_sample_uses_a_uniform_subset_from_the_global_rng(gkd_registry):
    loss = build(gkd_registry, alpha_l=0.0, views="local")
    loss.edge_sample = 2
    _, _, out, batch = student_and_batch()
    torch.manual_seed(3)
    loss(out, batch)
    torch.manual_seed(3)
    picked = torch.randperm(len(EDGES[0]))[:2].tolist()  # a uniform draw of 2 of the 5 edges
    h_s = project(H_S)
    assert loss.last_terms["local"] == pytest.approx(hand_local(H_T, h_s, picked), rel=1e-5)
    assert loss.last_terms["g_local"] == pytest.approx(hand_local_generator(h_s, picked), rel=1e-5)
    assert loss.last_terms["local"] != pytest.approx(hand_local(H_T, h_s), rel=1e-3)
    # the same seed gives the same value; a sample size >= E is the full sum
    torch.manual_seed(3)
    again = loss(out, batch).item()
    torch.manual_seed(3)
    assert loss(out, batch).item() == again
    loss.edge_sample = 5
    loss(out, batch)
    assert loss.last_terms["local"] == pytest.approx(hand_local(H_T, h_s), rel=1e-5)


def test_node_sample_keeps_summaries_over_all_nodes(gkd_registry):
    loss = build(gkd_registry, alpha_l=0.0, views="global")
    loss.node_sample = 2
    _, _, out, batch = student_and_batch()
    torch.manual_seed(5)
    loss(out, batch)
    torch.manual_seed(5)
    picked = torch.randperm(4)[:2].tolist()
    teacher_half, student_half = hand_global(H_T, project(H_S), picked)  # summaries over all 4 nodes
    assert loss.last_terms["global"] == pytest.approx(teacher_half + student_half, rel=1e-5)


# ------------------------------------------------------------------ who gets which gradient

def torch_terms(params, h_s, z_s, batch):
    """Every term in plain torch from the given weights (no graphakd code)."""
    def bce(scores, real):
        return -(F.logsigmoid(scores) if real else F.logsigmoid(-scores)).mean()

    h_t, z_t = batch.teacher_hidden[0], batch.teacher_logits
    h_p = h_s @ params["P_W"].T + params["P_B"]
    ut, us = h_t / h_t.norm(dim=1, keepdim=True), h_p / h_p.norm(dim=1, keepdim=True)
    src, dst = batch.edge_index
    phi, g = params["phi_loc"], params["phi_glob"]
    s_t, s_s = torch.sigmoid(h_t.mean(0)), torch.sigmoid(h_p.mean(0))

    def d_l(z):
        return F.relu(z + z @ params["W1"].T + params["B1"]) @ params["W2"].T

    m = batch.train_mask
    return {
        "local": bce((ut[src] * phi * ut[dst]).sum(1), True) + bce((us[src] * phi * us[dst]).sum(1), False),
        "teacher_half": bce((ut * g) @ s_t, True) + bce((us * g) @ s_t, False),
        "student_half": bce((us * g) @ s_s, True) + bce((ut * g) @ s_s, False),
        "adv": bce(d_l(z_t)[:, 3], True) + bce(d_l(z_s)[:, 3], False),
        "cls_t": F.cross_entropy(d_l(z_t)[m, :3], batch.y[m]),
        "cls_s": F.cross_entropy(d_l(z_s)[m, :3], batch.y[m]),
        "g_local": bce((us[src] * phi * us[dst]).sum(1), True),
        "g_global": bce((us * g) @ s_t, True),
        "g_adv": bce(d_l(z_s)[:, 3], True),
        "ce": F.cross_entropy(z_s[m], batch.y[m]),
    }


DISC = ["phi_loc", "phi_glob", "W1", "B1", "W2"]
GEN = ["P_W", "P_B"]


def grads_of(value, tensors):
    return torch.autograd.grad(value, tensors, retain_graph=True, allow_unused=True)


@pytest.mark.parametrize("generator", ["minimax", "nonsaturating"])
def test_each_player_gets_its_own_gradient(gkd_registry, generator):
    a_e, a_l = 0.7, 0.3
    loss = build(gkd_registry, alpha_e=a_e, alpha_l=a_l, generator=generator)
    h, z, out, batch = student_and_batch()
    loss(out, batch).backward()

    live = {"P_W": loss.projection.weight, "P_B": loss.projection.bias,
            "phi_loc": loss.rep_identifier.local_diag, "phi_glob": loss.rep_identifier.global_diag,
            "W1": loss.logit_identifier.lin1.weight, "B1": loss.logit_identifier.lin1.bias,
            "W2": loss.logit_identifier.lin2.weight}
    params = {k: v.detach().clone().requires_grad_(True) for k, v in live.items()}
    h2, z2 = torch.tensor(H_S, requires_grad=True), torch.tensor(Z_S, requires_grad=True)
    t = torch_terms(params, h2, z2, batch)
    # the discriminators' loss L_D, the same in both games
    l_d = a_e * (t["local"] + t["teacher_half"] + t["student_half"]) + a_l * (t["adv"] + t["cls_t"] + t["cls_s"])
    # the terms both players minimise, and the real/fake terms the student plays against
    coop = t["ce"] + a_e * t["student_half"] + a_l * t["cls_s"]
    adversarial = a_e * (t["local"] + t["teacher_half"]) + a_l * t["adv"]
    if generator == "minimax":
        student_objective = coop - adversarial  # the gradient-reversal layer negates L_D's real/fake part
    else:
        student_objective = coop + a_e * (t["g_local"] + t["g_global"]) + a_l * t["g_adv"]

    # discriminators: + grad L_D, so gradient descent makes them better discriminators
    for name, g in zip(DISC, grads_of(l_d, [params[k] for k in DISC])):
        assert torch.allclose(live[name].grad, g, atol=1e-6), name
    # generator (student tensors and the projection): grad of the student's objective
    expected = grads_of(student_objective, [params[k] for k in GEN] + [h2, z2])
    for name, got, want in zip(GEN + ["h", "z"], [live[k].grad for k in GEN] + [h.grad, z.grad], expected):
        assert torch.allclose(got, want, atol=1e-6), name
    if generator == "minimax":
        # the student's embedding gets exactly the negated gradient of L_D's real/fake part plus
        # the gradient of the cooperative half, and its logits CE's plus the negated L_adv's
        neg = grads_of(-adversarial, [h2, z2])
        coop_grads = grads_of(coop, [h2, z2])
        assert torch.allclose(h.grad, neg[0] + coop_grads[0], atol=1e-6)
        assert torch.allclose(z.grad, neg[1] + coop_grads[1], atol=1e-6)
        assert neg[1].abs().max() > 1e-3  # the reversed term is not negligible here
        no_reversal = grads_of(coop + adversarial, [z2])[0]
        assert not torch.allclose(z.grad, no_reversal, atol=1e-4)


def test_descent_step_helps_discriminator_and_student(gkd_registry):
    # one small SGD step on the single scalar lowers L_D for fixed student outputs, and lowers
    # the student's objective for fixed discriminators
    for generator in ("minimax", "nonsaturating"):
        loss = build(gkd_registry, alpha_e=1.0, alpha_l=0.5, generator=generator)
        h, z, out, batch = student_and_batch()
        loss(out, batch).backward()

        def d_loss(terms):
            return terms["local"] + terms["global"] + 0.5 * (terms["adv"] + terms["cls"])

        d0 = d_loss(loss.last_terms)
        j0 = loss(out, batch).item()
        with torch.no_grad():
            for name, p in loss.named_parameters():
                if not name.startswith("projection"):
                    p -= 1e-2 * p.grad
        loss(ModelOutput(logits=z.detach(), hidden=[h.detach(), z.detach()]), batch)
        assert d_loss(loss.last_terms) < d0, generator
        fresh = build(gkd_registry, alpha_e=1.0, alpha_l=0.5, generator=generator)
        with torch.no_grad():
            h2, z2 = h - 1e-2 * h.grad, z - 1e-2 * z.grad
        assert fresh(ModelOutput(logits=z2, hidden=[h2, z2]), batch).item() < j0, generator


@pytest.mark.parametrize("generator", ["nonsaturating", "minimax"])
def test_d_critic_trains_discriminators_every_kth_call_only(gkd_registry, generator):
    a_e, a_l = 0.7, 0.3
    loss = build(gkd_registry, alpha_e=a_e, alpha_l=a_l, generator=generator, d_critic=3)
    disc = [loss.rep_identifier.local_diag, loss.rep_identifier.global_diag, *loss.logit_identifier.parameters()]
    values, student_grads = [], []
    for call in range(5):
        for p in loss.parameters():
            p.grad = None
        h, z, out, batch = student_and_batch()
        value = loss(out, batch)
        value.backward()
        values.append(value.item())
        student_grads.append((h.grad.clone(), z.grad.clone(), loss.projection.weight.grad.clone()))
        learns = call % 3 == 0  # calls 0 and 3
        assert all((p.grad is not None) == learns for p in disc), call
    # the student's objective and gradients do not depend on whether the discriminators learn
    e = hand_terms()
    for call in range(1, 5):
        assert values[call] == pytest.approx(values[0], rel=1e-6)
        for got, want in zip(student_grads[call], student_grads[0]):
            assert torch.allclose(got, want, atol=1e-6)
    if generator == "nonsaturating":
        j_s = e["ce"] + a_e * (e["g_local"] + e["g_global"] + e["student_half"]) + a_l * (e["g_adv"] + e["cls"])
        assert values[0] == pytest.approx(j_s, rel=1e-5)


# ------------------------------------------------------------------ real students

@pytest.mark.parametrize("family", ["gcn", "mlp"])
@pytest.mark.parametrize("generator", ["nonsaturating", "minimax"])
def test_backward_reaches_student_and_discriminators(gkd_registry, family, generator):
    torch.manual_seed(0)
    fam = gkd_registry.get("family", family)
    n, f = 6, 5
    x = torch.randn(n, f)
    edge_index = torch.tensor([[0, 1, 1, 2, 3, 4, 4, 5], [1, 0, 2, 1, 4, 3, 5, 4]])
    model = fam.build(f, 3, num_layers=2, hidden_channels=4)
    teacher_hidden = [torch.randn(n, 8), torch.randn(n, 3)]
    batch = DistillationBatch(y=torch.tensor([0, 1, 2, 0, 1, 2]), train_mask=torch.tensor([True] * 3 + [False] * 3),
                              teacher_logits=teacher_hidden[-1], teacher_hidden=teacher_hidden, edge_index=edge_index)
    ctx = context(student_dims=(4, 3), teacher_dims=(8, 3), family=family, uses_graph=fam.uses_graph)
    method = gkd_registry.get("method", "graphakd")
    assert method.accepts(fam)
    params = {"alpha_e": 1.0, "alpha_l": 0.5, "views": "local+global", "disc_hidden": 0, "generator": generator,
              "d_critic": 1, "edge_sample": 4096, "node_sample": 2048}
    loss = method.build_loss(params, ctx)
    value = loss(model(x, edge_index), batch)
    assert torch.isfinite(value)
    value.backward()
    for name, p in list(model.named_parameters()) + list(loss.named_parameters()):
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_registered_with_paper_defaults(gkd_registry):
    method = gkd_registry.get("method", "graphakd")
    assert method.requires == frozenset({"logits", "hidden"})
    assert method.student_kinds == frozenset({"graph", "graph_free"})
    hp = method.hyperparameters
    # log ranges that hold the authors' weights (1 and 0.5), centred at 0.3 of them
    assert hp["alpha_e"].log and hp["alpha_e"].low < 1.0 < hp["alpha_e"].high
    assert hp["alpha_l"].log and hp["alpha_l"].low < 0.5 < hp["alpha_l"].high
    assert hp["alpha_e"].default == pytest.approx(0.3) and hp["alpha_l"].default == pytest.approx(0.15)
    assert hp["disc_hidden"].default == 0 and hp["views"].default == "local+global"
    assert hp["generator"].default == "nonsaturating"
    assert hp["d_critic"].default == 1 and 10 in hp["d_critic"].choices  # 10: the authors' value on Cora
    assert hp["edge_sample"].default == 4096 and hp["node_sample"].default == 2048
    with pytest.raises(ValueError):
        GraphAKDLoss(1.0, 1.0, 2, 3, 3, views="nonsense")
    with pytest.raises(ValueError):
        GraphAKDLoss(1.0, 1.0, 2, 3, 3, generator="nonsense")
    with pytest.raises(ValueError):
        GraphAKDLoss(1.0, 1.0, 2, 3, 3, d_critic=0)
