"""InfGraND (Eskandari et al., TMLR 2026, arXiv:2601.08033) against the paper's equations worked
out independently with dense numpy matrices and plain Python loops."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from gkd_search.methods import _propagation as prop
from gkd_search.methods import infgrand as mod
from gkd_search.types import DistillationBatch, DistillationContext, ModelOutput

# a 5-node graph: undirected edges 0-1, 1-2, 2-3, 1-3 (both directions), node 4 isolated, plus a
# self-loop on node 2 and a repeated edge 0->1, which A + I must absorb
EDGES = [(0, 1), (1, 0), (1, 2), (2, 1), (2, 3), (3, 2), (1, 3), (3, 1), (2, 2), (0, 1)]
X = [[1.0, 0.0, 2.0], [0.0, 1.0, 1.0], [3.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0]]
X_SIGNED = [[1.0, -1.0, 2.0], [0.5, 1.0, -1.0], [-3.0, 1.0, 0.0], [0.0, -2.0, 1.0], [1.0, 1.0, 1.0]]
S = [[2.0, -1.0, 0.5], [0.1, 0.2, 0.3], [-1.5, 3.0, 0.0], [1.0, 1.0, -2.0], [0.0, 0.5, 1.0]]
T = [[3.0, 0.0, -1.0], [0.5, -0.5, 2.0], [0.0, 2.5, 0.5], [-1.0, 2.0, 1.0], [1.0, 0.0, 0.0]]
Y = [0, 2, 1, 1, 0]
TRAIN = [True, False, True, False, True]
PARAMS = {"lambda": 0.3, "tau": 1.5, "gamma1": 0.8, "gamma2": 0.4, "delta1": 0.6, "delta2": 0.2, "hops": 2}


@pytest.fixture(autouse=True)
def fresh_memory_cache():
    prop.clear_memory_cache()
    yield
    prop.clear_memory_cache()


def edge_index(edges=EDGES):
    return torch.tensor(edges, dtype=torch.long).t().contiguous()


# ------------------------------------------------------------------------ numpy references


def np_a_hat(edges, n):
    """D^-1/2 (A + I) D^-1/2 with a 0/1 adjacency (self-loops and repeats collapse to one)."""
    a = np.zeros((n, n))
    for s, t in edges:
        a[t, s] = 1.0
    np.fill_diagonal(a, 1.0)
    d = a.sum(axis=1)
    return a / np.sqrt(d)[:, None] / np.sqrt(d)[None, :]


def np_influence(x, edges, hops=2):
    """Eq. 3-4: S_ij = cos(x_i, (A_hat^hops X)_j), min-max over all pairs, row sums over j,
    divided by the largest row sum."""
    x = np.asarray(x, dtype=np.float64)
    h = np.linalg.matrix_power(np_a_hat(edges, len(x)), hops) @ x
    n = len(x)
    sim = np.array([[x[i] @ h[j] / (np.linalg.norm(x[i]) * np.linalg.norm(h[j])) for j in range(n)]
                    for i in range(n)])
    sim = (sim - sim.min()) / (sim.max() - sim.min())
    rows = np.abs(sim).sum(axis=1)
    return rows / rows.max()


def np_pooled(x, edges, hops):
    """Eq. 5, 7: mean over k = 0..P of A_hat^k X."""
    x = np.asarray(x, dtype=np.float64)
    a = np_a_hat(edges, len(x))
    return sum(np.linalg.matrix_power(a, k) @ x for k in range(hops + 1)) / (hops + 1)


def softmax(z):
    e = [math.exp(v - max(z)) for v in z]
    return [v / sum(e) for v in e]


def loop_loss(s, t, y, train, influence, edges, p):
    """L = lambda * L_sup + (1 - lambda) * L_kd written as loops over nodes and the edges of A + I."""
    n = len(s)
    sup_terms = []
    for i in range(n):
        if train[i]:
            ce = -math.log(softmax(s[i])[y[i]])
            sup_terms.append((p["delta1"] + p["delta2"] * influence[i]) * ce)
    pairs = sorted({(a, b) for a, b in edges if a != b} | {(i, i) for i in range(n)})  # (source j, target i)
    kd_terms = []
    for j, i in pairs:
        q = softmax([v / p["tau"] for v in t[j]])  # teacher at the neighbour v_j
        r = softmax([v / p["tau"] for v in s[i]])  # student at v_i
        kl = sum(q[c] * math.log(q[c] / r[c]) for c in range(len(q)))
        kd_terms.append((p["gamma1"] + p["gamma2"] * influence[j]) * kl)
    sup = sum(sup_terms) / len(sup_terms)
    kd = sum(kd_terms) / len(kd_terms)
    return p["lambda"] * sup + (1 - p["lambda"]) * kd


def batch(student=None):
    s = torch.tensor(S, requires_grad=True) if student is None else student
    b = DistillationBatch(y=torch.tensor(Y), train_mask=torch.tensor(TRAIN), teacher_logits=torch.tensor(T),
                          teacher_hidden=[], edge_index=edge_index())
    return s, ModelOutput(logits=s, hidden=[s]), b


def context(x=X, cache_dir=None):
    return DistillationContext(num_classes=3, student_family="mlp", student_uses_graph=False,
                               student_hidden_dims=[8, 3], teacher_hidden_dims=[16, 3],
                               x=torch.tensor(x) if not isinstance(x, torch.Tensor) else x,
                               edge_index=edge_index(), cache_dir=cache_dir)


# --------------------------------------------------------------------------------- propagation


def test_normalized_adjacency_matches_numpy():
    dense = prop.normalized_adjacency(edge_index(), 5).to_dense().double().numpy()
    np.testing.assert_allclose(dense, np_a_hat(EDGES, 5), rtol=1e-6, atol=1e-7)
    # the isolated node keeps only its self-loop
    assert dense[4, 4] == pytest.approx(1.0)


@pytest.mark.parametrize("hops", [1, 2, 3])
def test_pooled_features_match_numpy(hops):
    out = prop.pooled_features(torch.tensor(X), edge_index(), hops)
    assert out.shape == (5, 3)
    np.testing.assert_allclose(out.double().numpy(), np_pooled(X, EDGES, hops), rtol=1e-5, atol=1e-6)
    assert prop.pooled_features(torch.tensor(X), edge_index(), 0).tolist() == X


@pytest.mark.parametrize("x", [X, X_SIGNED], ids=["non-negative", "signed"])
def test_influence_matches_numpy(x):
    got = prop.influence_scores(torch.tensor(x), edge_index(), hops=2)
    expected = np_influence(x, EDGES)
    np.testing.assert_allclose(got.double().numpy(), expected, rtol=1e-5, atol=1e-6)
    assert got.max().item() == pytest.approx(1.0)
    assert (got >= 0).all()


def test_min_cosine_exact_and_budget_estimate():
    g = torch.Generator().manual_seed(0)
    xn = prop._unit_rows(torch.randn(40, 6, generator=g))
    hn = prop._unit_rows(torch.randn(30, 6, generator=g))
    brute = (xn @ hn.t()).min().item()
    assert prop.min_cosine(xn, hn, block_rows=7) == pytest.approx(brute, abs=1e-6)
    # a budget of one block: the minimum over a subset of rows, never below the true one
    estimate = prop.min_cosine(xn, hn, budget=1.0, block_rows=4)
    assert brute - 1e-6 <= estimate <= (xn @ hn.t()).min(dim=1).values.max().item()


# ------------------------------------------------------------------------------------ the loss


@pytest.mark.parametrize("p", [
    PARAMS,
    {"lambda": 0.0, "tau": 1.0, "gamma1": 1.0, "gamma2": 0.0, "delta1": 1.0, "delta2": 0.0, "hops": 1},
    {"lambda": 1.0, "tau": 2.0, "gamma1": 0.2, "gamma2": 0.9, "delta1": 0.3, "delta2": 0.7, "hops": 3},
    {"lambda": 0.5, "tau": 4.0, "gamma1": 0.0, "gamma2": 1.0, "delta1": 0.0, "delta2": 1.0, "hops": 2},
])
def test_loss_value_matches_loop(p):
    influence = [0.9, 0.1, 1.0, 0.4, 0.0]
    loss = mod.InfGraNDLoss(torch.tensor(influence), edge_index(), gamma1=p["gamma1"], gamma2=p["gamma2"],
                            delta1=p["delta1"], delta2=p["delta2"], tau=p["tau"], lam=p["lambda"])
    _, out, b = batch()
    assert loss(out, b).item() == pytest.approx(loop_loss(S, T, Y, TRAIN, influence, EDGES, p), rel=1e-5)
    # without a graph at build time it reads the batch's edges: same value
    lazy = mod.InfGraNDLoss(torch.tensor(influence), None, gamma1=p["gamma1"], gamma2=p["gamma2"],
                            delta1=p["delta1"], delta2=p["delta2"], tau=p["tau"], lam=p["lambda"])
    assert lazy(out, b).item() == pytest.approx(loss(out, b).item(), rel=1e-6)


def test_build_loss_uses_raw_feature_influence(gkd_registry, tmp_path):
    method = gkd_registry.get("method", "infgrand")
    x = torch.tensor(X)
    features = method.student_features(x, edge_index(), PARAMS)
    assert features.shape == x.shape
    np.testing.assert_allclose(features.double().numpy(), np_pooled(X, EDGES, 2), rtol=1e-5, atol=1e-6)
    # the trial passes the raw features as context.x (the student reads the propagated ones)
    loss = method.build_loss(PARAMS, context(x, tmp_path))
    np.testing.assert_allclose(loss.influence.double().numpy(), np_influence(X, EDGES), rtol=1e-5, atol=1e-6)
    _, out, b = batch()
    expected = loop_loss(S, T, Y, TRAIN, np_influence(X, EDGES), EDGES, PARAMS)
    assert loss(out, b).item() == pytest.approx(expected, rel=1e-5)


def test_options_change_what_they_should():
    _, out, b = batch()

    def value(influence, **p):
        args = dict(PARAMS, **p)
        return mod.InfGraNDLoss(torch.tensor(influence), edge_index(), gamma1=args["gamma1"], gamma2=args["gamma2"],
                                delta1=args["delta1"], delta2=args["delta2"], tau=args["tau"],
                                lam=args["lambda"])(out, b).item()

    low, high = [0.0] * 5, [0.0, 0.0, 0.0, 1.0, 0.0]  # node 3 (unlabelled) becomes influential
    # "w/o influence" (gamma2 = delta2 = 0): the scores do not matter
    assert value(low, gamma2=0.0, delta2=0.0) == pytest.approx(value(high, gamma2=0.0, delta2=0.0))
    # an influential neighbour weighs more in L_kd; L_sup only reads labelled nodes' influence
    assert value(high, **{"lambda": 0.0}) > value(low, **{"lambda": 0.0})
    assert value(high, **{"lambda": 1.0}) == pytest.approx(value(low, **{"lambda": 1.0}))
    # lambda mixes the two terms linearly
    sup, kd = value(high, **{"lambda": 1.0}), value(high, **{"lambda": 0.0})
    assert value(high, **{"lambda": 0.25}) == pytest.approx(0.25 * sup + 0.75 * kd, rel=1e-6)
    # the temperature changes the KD term
    assert value(high, tau=1.0, **{"lambda": 0.0}) != pytest.approx(value(high, tau=3.0, **{"lambda": 0.0}))


def test_teacher_nodes_self_distils_each_node_from_its_own_teacher_output(gkd_registry):
    method = gkd_registry.get("method", "infgrand")
    influence = np_influence(X, EDGES)
    _, out, b = batch()
    own = method.build_loss({**PARAMS, "teacher_nodes": "self"}, context())
    # the reference loop with no edge but each node's self-loop: KL(p_t(v_i) || p_s(v_i)), weighted
    # by v_i's own influence and averaged over the nodes
    assert own(out, b).item() == pytest.approx(loop_loss(S, T, Y, TRAIN, influence, [], PARAMS), rel=1e-5)
    neighbours = method.build_loss({**PARAMS, "teacher_nodes": "neighbours"}, context())
    assert neighbours(out, b).item() == pytest.approx(loop_loss(S, T, Y, TRAIN, influence, EDGES, PARAMS), rel=1e-5)
    assert own(out, b).item() != pytest.approx(neighbours(out, b).item(), rel=1e-3)
    # the student's propagated input does not depend on the option
    x = torch.tensor(X)
    assert torch.equal(method.student_features(x, edge_index(), {**PARAMS, "teacher_nodes": "self"}),
                       method.student_features(x, edge_index(), PARAMS))
    with pytest.raises(ValueError, match="teacher_nodes 'both' is unknown"):
        method.build_loss({**PARAMS, "teacher_nodes": "both"}, context())


def test_backward_reaches_the_student(gkd_registry):
    loss = gkd_registry.get("method", "infgrand").build_loss(PARAMS, context())
    student = torch.nn.Linear(3, 3)
    s = student(torch.tensor(X))
    _, out, b = batch(s)
    value = loss(out, b)
    assert torch.isfinite(value)
    value.backward()
    assert student.weight.grad is not None and student.weight.grad.abs().sum() > 0
    assert list(loss.parameters()) == []  # InfGraND has no trainable parameters of its own
    # an unlabelled node's logits get gradient through the neighbour KD term
    logits = torch.tensor(S, requires_grad=True)
    _, out, b = batch(logits)
    loss(out, b).backward()
    assert logits.grad[3].abs().sum() > 0 and torch.isfinite(logits.grad).all()


def test_method_metadata(gkd_registry):
    method = gkd_registry.get("method", "infgrand")
    assert "2601.08033" in method.paper
    assert method.requires == frozenset({"logits"})
    assert method.combines_with_softkd is False
    assert set(method.hyperparameters) == {"lambda", "tau", "gamma1", "gamma2", "delta1", "delta2", "hops",
                                           "teacher_nodes"}
    assert method.hyperparameters["teacher_nodes"].default == "neighbours"  # the paper's Eq. 8
    assert method.accepts(gkd_registry.families["mlp"])
    assert not any(method.accepts(gkd_registry.families[f]) for f in ("gcn", "sage", "gat"))


# ---------------------------------------------------------------------------------- caching


def test_influence_cache_memory_file_and_corruption(tmp_path, monkeypatch):
    calls = []
    real = mod.influence_scores

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(mod, "influence_scores", counting)
    saved, replaced = [], []
    real_save, real_replace = torch.save, prop.os.replace
    monkeypatch.setattr(prop.torch, "save", lambda obj, f: (saved.append(str(f)), real_save(obj, f))[1])
    monkeypatch.setattr(prop.os, "replace", lambda a, b: (replaced.append((str(a), str(b))), real_replace(a, b))[1])

    x, ei = torch.tensor(X), edge_index()
    first = mod.graph_influence(x, ei, tmp_path)
    files = list(tmp_path.glob("influence-*.pt"))
    assert len(calls) == 1 and len(files) == 1
    # written to a temporary file in the same folder, then renamed over the final name
    assert saved == [replaced[0][0]] and replaced[0][1] == str(files[0])
    assert saved[0] != str(files[0]) and (tmp_path / saved[0]).parent == tmp_path
    assert not list(tmp_path.glob("*.tmp"))

    assert mod.graph_influence(x, ei, tmp_path) is first  # in-process hit
    prop.clear_memory_cache()
    assert torch.equal(mod.graph_influence(x, ei, tmp_path), first)  # file hit
    assert len(calls) == 1

    files[0].write_bytes(b"not a torch file")  # corrupted: recomputed and rewritten, no crash
    prop.clear_memory_cache()
    again = mod.graph_influence(x, ei, tmp_path)
    assert len(calls) == 2 and torch.allclose(again, first)
    assert torch.equal(torch.load(files[0], weights_only=True), again)

    # another graph, or other hops, is another entry
    mod.graph_influence(x, edge_index(EDGES[:4]), tmp_path)
    mod.graph_influence(x, ei, tmp_path, hops=1)
    assert len(calls) == 4 and len(list(tmp_path.glob("influence-*.pt"))) == 3


def test_feature_cache(tmp_path):
    x, ei = torch.tensor(X), edge_index()
    a = mod.propagated_features(x, ei, 2, tmp_path)
    assert mod.propagated_features(x, ei, 2, tmp_path) is a
    assert len(list(tmp_path.glob("features-*.pt"))) == 1
    prop.clear_memory_cache()
    assert torch.equal(mod.propagated_features(x, ei, 2, tmp_path), a)
    assert not torch.equal(mod.propagated_features(x, ei, 3), a)
    assert mod.propagated_features(x, ei, 0) is x


# ---------------------------------------------------------------------------------- scaling


def test_scaling_on_a_pubmed_sized_graph(record_property):
    n, e, f = 19_717, 88_648, 500
    g = torch.Generator().manual_seed(0)
    half = torch.randint(0, n, (2, e // 2), generator=g)
    ei = torch.cat([half, half.flip(0)], dim=1)
    x = (torch.rand(n, f, generator=g) < 0.01).float() * torch.rand(n, f, generator=g)
    start = time.perf_counter()
    features = prop.pooled_features(x, ei, 3)
    middle = time.perf_counter()
    influence = prop.influence_scores(x, ei, hops=2)
    end = time.perf_counter()
    assert features.shape == x.shape and torch.isfinite(features).all()
    assert influence.shape == (n,) and torch.isfinite(influence).all() and influence.max() == pytest.approx(1.0)
    # the timings go to the test report's properties (--junitxml), not to the quiet output
    record_property("features_seconds", round(middle - start, 3))
    record_property("influence_seconds", round(end - middle, 3))


def test_memory_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(prop, "MEMORY_BYTES", 3 * 5 * 3 * 4)  # room for three [5, 3] float tensors
    x = torch.tensor(X)
    first = mod.propagated_features(x, edge_index(), 1)
    for hops in (2, 3, 4):
        mod.propagated_features(x, edge_index(), hops)
    assert len(prop._MEMORY) == 3
    assert mod.propagated_features(x, edge_index(), 1) is not first  # evicted, recomputed
    assert torch.equal(mod.propagated_features(x, edge_index(), 1), first)


def test_method_fills_defaults(gkd_registry):
    method = gkd_registry.get("method", "infgrand")
    # missing hyperparameters take their declared defaults
    loss = method.build_loss({}, context())
    assert (loss.gamma1, loss.lam, loss.tau) == (0.6, 0.3, 1.5)


def test_teacher_terms_follow_the_teacher_and_gradient_matches_edge_sum():
    influence = [0.9, 0.1, 1.0, 0.4, 0.0]
    p = PARAMS
    loss = mod.InfGraNDLoss(torch.tensor(influence), edge_index(), gamma1=p["gamma1"], gamma2=p["gamma2"],
                            delta1=p["delta1"], delta2=p["delta2"], tau=p["tau"], lam=p["lambda"])
    s, out, b = batch()
    loss(out, b).backward()
    # the gradient of the regrouped form equals that of the per-edge sum written out with autograd
    s2 = torch.tensor(S, dtype=torch.float64, requires_grad=True)
    pairs = sorted({(a, c) for a, c in EDGES if a != c} | {(i, i) for i in range(5)})
    t64, inf64 = torch.tensor(T, dtype=torch.float64), torch.tensor(influence, dtype=torch.float64)
    kd = sum((p["gamma1"] + p["gamma2"] * inf64[j])
             * torch.nn.functional.kl_div(torch.log_softmax(s2[i] / p["tau"], -1),
                                          torch.softmax(t64[j] / p["tau"], -1), reduction="sum")
             for j, i in pairs) / len(pairs)
    w = p["delta1"] + p["delta2"] * inf64[torch.tensor(TRAIN)]
    ce = torch.nn.functional.cross_entropy(s2[torch.tensor(TRAIN)], torch.tensor(Y)[torch.tensor(TRAIN)],
                                           reduction="none")
    (p["lambda"] * (w * ce).mean() + (1 - p["lambda"]) * kd).backward()
    np.testing.assert_allclose(s.grad.numpy(), s2.grad.numpy(), rtol=1e-5, atol=1e-7)
    # the cached teacher side follows a new teacher tensor and an in-place change
    b.teacher_logits = torch.tensor(T) * 2
    doubled = loop_loss(S, [[2 * v for v in row] for row in T], Y, TRAIN, influence, EDGES, p)
    assert loss(out, b).item() == pytest.approx(doubled, rel=1e-5)
    b.teacher_logits.mul_(0.5)
    assert loss(out, b).item() == pytest.approx(loop_loss(S, T, Y, TRAIN, influence, EDGES, p), rel=1e-5)
