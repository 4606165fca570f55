"""The structural losses ``lsp``, ``gsp`` and ``gcrd`` against values worked out with plain
Python loops from the papers' equations (Yang et al. 2020, Eqs. 2-4; Joshi et al. 2022)."""

from __future__ import annotations

import itertools
import math
import time

import pytest
import torch
from torch_geometric.utils import subgraph

from gkd_search.losses.gcrd import GCRD
from gkd_search.losses.gsp import GSP
from gkd_search.losses.lsp import LSP

pytestmark = pytest.mark.usefixtures("one_thread")

# five nodes; node 4 has no neighbours. Student width 2, teacher width 3 (no projection).
S = [[0.5, -1.0], [1.2, 0.3], [-0.7, 0.8], [0.1, 0.1], [2.0, -2.0]]
T = [[1.0, 0.0, -0.5], [0.2, 0.9, 0.4], [-0.3, -0.6, 1.1], [0.8, 0.5, 0.0], [-1.0, 1.0, 1.0]]
UNDIRECTED = [(0, 1), (0, 2), (1, 2), (2, 3)]
EDGES = [(a, b) for a, b in UNDIRECTED] + [(b, a) for a, b in UNDIRECTED]  # (source, target)


def edge_index(edges=EDGES):
    return torch.tensor(edges, dtype=torch.long).t().contiguous()


# ----------------------------------------------------------------------------- by hand


def dot(x, y):
    return sum(a * b for a, b in zip(x, y))


def hand_kernel(x, y, kernel, sigma=1.0):
    if kernel == "rbf":
        return math.exp(-sum((a - b) ** 2 for a, b in zip(x, y)) / (2 * sigma**2))
    if kernel == "linear":
        return dot(x, y)
    if kernel == "poly":
        return (dot(x, y) + 1.0) ** 2
    if kernel == "cosine":
        return dot(x, y) / math.sqrt(dot(x, x) * dot(y, y))
    raise ValueError(kernel)


def hand_distribution(z, i, others, kernel, sigma):
    """exp(SIM(z_i, z_j)) / sum_k exp(SIM(z_i, z_k)) over j in ``others`` (Yang et al. Eq. 2)."""
    weights = [math.exp(hand_kernel(z[i], z[j], kernel, sigma)) for j in others]
    total = sum(weights)
    return [w / total for w in weights]


def hand_kl(p, q):
    """KL(p || q) = sum p log(p / q)."""
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


def hand_rms(z, rows):
    """``z`` divided by the root-mean-square norm of its ``rows`` (the ``rms`` scale)."""
    rms = math.sqrt(sum(dot(z[i], z[i]) for i in rows) / len(rows))
    return [[a / rms for a in row] for row in z]


def hand_lsp(s, t, edges, kernel="rbf", sigma=1.0, reverse=False, scale="rms"):
    """1/N' sum over nodes with neighbours of KL(LS_i^T || LS_i^S) (Eq. 4); ``rms``: both sides
    first scaled to unit root-mean-square norm over the rows the edges touch."""
    if scale == "rms":
        touched = sorted({v for edge in edges for v in edge})
        s, t = hand_rms(s, touched), hand_rms(t, touched)
    terms = []
    for i in range(len(s)):
        neighbours = [j for j, k in edges if k == i]
        if not neighbours:
            continue
        p_s = hand_distribution(s, i, neighbours, kernel, sigma)
        p_t = hand_distribution(t, i, neighbours, kernel, sigma)
        terms.append(hand_kl(p_s, p_t) if reverse else hand_kl(p_t, p_s))
    return sum(terms) / len(terms)


def hand_gsp(s, t, kernel="rbf", sigma=1.0, criterion="kl", scale="rms"):
    n = len(s)
    if scale == "rms":
        s, t = hand_rms(s, range(n)), hand_rms(t, range(n))
    if criterion == "mse":
        diffs = [(hand_kernel(s[i], s[j], kernel, sigma) - hand_kernel(t[i], t[j], kernel, sigma)) ** 2
                 for i in range(n) for j in range(n) if i != j]
        return sum(diffs) / len(diffs)
    terms = []
    for i in range(n):
        others = [j for j in range(n) if j != i]
        terms.append(hand_kl(hand_distribution(t, i, others, kernel, sigma),
                             hand_distribution(s, i, others, kernel, sigma)))
    return sum(terms) / n


def unit(x):
    norm = math.sqrt(dot(x, x))
    return [a / norm for a in x]


def hand_infonce(s, t, anchors, negatives, tau):
    """-mean_i log(exp(s_i.t_i/tau) / (exp(s_i.t_i/tau) + sum_{k in negatives, k != i} exp(s_i.t_k/tau)))
    on L2-normalised rows (identity projection heads)."""
    s, t = [unit(x) for x in s], [unit(x) for x in t]
    total = 0.0
    for i in anchors:
        positive = math.exp(dot(s[i], t[i]) / tau)
        negative = sum(math.exp(dot(s[i], t[k]) / tau) for k in negatives if k != i)
        total += -math.log(positive / (positive + negative))
    return total / len(anchors)


def tensors():
    """``S`` and ``T`` in double precision, for value checks against the Python floats."""
    return torch.tensor(S, dtype=torch.float64), torch.tensor(T, dtype=torch.float64)


def test_hand_helpers_sanity():
    assert sum(hand_distribution(S, 2, [0, 1, 3], "rbf", 1.0)) == pytest.approx(1.0)
    assert hand_kl([0.2, 0.8], [0.2, 0.8]) == 0.0
    assert hand_lsp(T, T, EDGES) == 0.0
    # a node with one neighbour has the trivial distribution [1.0]: it contributes 0
    assert hand_distribution(S, 3, [2], "rbf", 1.0) == [1.0]


# ----------------------------------------------------------------------------- LSP


@pytest.mark.parametrize("kernel, sigma", [("rbf", 1.0), ("rbf", 0.5), ("linear", 1.0), ("poly", 1.0),
                                           ("cosine", 1.0)])
def test_lsp_value_matches_equations(kernel, sigma):
    loss = LSP().build({"kernel": kernel, "sigma": sigma}, 2, 3)
    s, t = tensors()
    assert loss(s, t, edge_index()).item() == pytest.approx(hand_lsp(S, T, EDGES, kernel, sigma), rel=1e-5)


def test_lsp_kernels_differ_and_direction_is_teacher_to_student():
    s, t = tensors()
    values = {k: LSP().build({"kernel": k}, 2, 3)(s, t, edge_index()).item() for k in ("rbf", "linear", "poly", "cosine")}
    assert len({round(v, 6) for v in values.values()}) == 4, values
    assert hand_lsp(S, T, EDGES, reverse=True) != pytest.approx(values["rbf"], rel=1e-3)
    # sigma matters only for rbf
    assert LSP().build({"kernel": "rbf", "sigma": 3.0}, 2, 3)(s, t, edge_index()).item() != pytest.approx(values["rbf"])
    assert LSP().build({"kernel": "linear", "sigma": 3.0}, 2, 3)(s, t, edge_index()).item() == pytest.approx(values["linear"])


def test_lsp_defaults_and_bad_kernel():
    s, t = tensors()
    default = LSP().build({}, 2, 3)
    assert (default.kernel, default.sigma, default.scale) == ("rbf", 1.0, "rms")
    assert default(s, t, edge_index()).item() == pytest.approx(hand_lsp(S, T, EDGES, "rbf", 1.0), rel=1e-5)
    assert LSP().build({"beta": 5.0, "unrelated": 1}, 2, 3).kernel == "rbf"  # other keys are ignored
    with pytest.raises(ValueError, match="kernel"):
        LSP().build({"kernel": "laplace"}, 2, 3)


def test_lsp_is_zero_for_identical_structure():
    t = torch.tensor(T)
    assert LSP().build({}, 3, 3)(t.clone(), t, edge_index()).item() == pytest.approx(0.0, abs=1e-7)


def test_lsp_skips_nodes_without_neighbours():
    s, t = tensors()
    loss = LSP().build({}, 2, 3)
    value = loss(s, t, edge_index()).item()
    # the mean is over the 4 nodes with neighbours, not all 5
    per_node_sum = hand_lsp(S, T, EDGES) * 4
    assert value == pytest.approx(per_node_sum / 4, rel=1e-5)
    # moving the isolated node changes nothing
    s2, t2 = s.clone(), t.clone()
    s2[4], t2[4] = torch.tensor([9.0, 9.0]), torch.tensor([-5.0, 0.0, 5.0])
    assert loss(s2, t2, edge_index()).item() == pytest.approx(value, rel=1e-6)
    # a graph without edges has no local structure: 0, finite, and backward works
    s3 = torch.tensor(S, dtype=torch.float64, requires_grad=True)
    empty = loss(s3, t, torch.empty(2, 0, dtype=torch.long))
    empty.backward()
    assert empty.item() == 0.0 and torch.isfinite(s3.grad).all()


def test_lsp_on_sampled_rows_with_relabelled_edges():
    # STRIDE's use: a subset of rows and the edges among them, relabelled to 0..n-1
    keep = torch.tensor([0, 2, 3])
    sub_edges, _ = subgraph(keep, edge_index(), relabel_nodes=True, num_nodes=5)
    s, t = tensors()
    value = LSP().build({}, 2, 3)(s[keep], t[keep], sub_edges).item()
    sub_s, sub_t = [S[i] for i in (0, 2, 3)], [T[i] for i in (0, 2, 3)]
    assert value == pytest.approx(hand_lsp(sub_s, sub_t, [tuple(e) for e in sub_edges.t().tolist()]), rel=1e-5)


@pytest.mark.parametrize("kernel", ["rbf", "linear", "poly", "cosine"])
def test_lsp_raw_scale_is_the_papers_form(kernel):
    loss = LSP().build({"kernel": kernel, "scale": "raw"}, 2, 3)
    s, t = tensors()
    assert loss(s, t, edge_index()).item() == pytest.approx(hand_lsp(S, T, EDGES, kernel, scale="raw"), rel=1e-5)


@pytest.mark.parametrize("name", ["lsp", "gsp"])
@pytest.mark.parametrize("kernel", ["rbf", "linear", "poly"])
def test_rms_scale_ignores_each_networks_overall_scale(gkd_registry, name, kernel):
    # a teacher 100x larger (Photo's hidden rows have norm ~100) gives the same loss with "rms",
    # not on raw embeddings
    s, t = tensors()
    rms = gkd_registry.losses[name].build({"kernel": kernel, "num_nodes": 0}, 2, 3)
    raw = gkd_registry.losses[name].build({"kernel": kernel, "num_nodes": 0, "scale": "raw"}, 2, 3)
    assert rms(0.01 * s, 100 * t, edge_index()).item() == pytest.approx(rms(s, t, edge_index()).item(), rel=1e-6)
    assert raw(s, 100 * t, edge_index()).item() != pytest.approx(raw(s, t, edge_index()).item(), rel=1e-2)


def test_lsp_is_finite_for_sharp_distributions():
    # large linear-kernel values make the softmax one-hot in float32; the log-space version
    # must still give a finite value and gradient
    s = (torch.tensor(S) * 30).requires_grad_()
    t = torch.tensor(T) * 30
    value = LSP().build({"kernel": "linear", "scale": "raw"}, 2, 3)(s, t, edge_index())
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(s.grad).all()


# ----------------------------------------------------------------------------- GSP


@pytest.mark.parametrize("kernel", ["rbf", "linear", "poly", "cosine"])
@pytest.mark.parametrize("criterion", ["kl", "mse"])
def test_gsp_value_matches_equations(kernel, criterion):
    loss = GSP().build({"kernel": kernel, "criterion": criterion, "num_nodes": 0}, 2, 3)
    s, t = tensors()
    expected = hand_gsp(S, T, kernel, criterion=criterion)
    assert loss(s, t, edge_index()).item() == pytest.approx(expected, rel=1e-5)


def test_gsp_reads_no_edges_and_kernels_differ():
    s, t = tensors()
    loss = GSP().build({"num_nodes": 0}, 2, 3)
    assert loss(s, t, edge_index()).item() == pytest.approx(loss(s, t, torch.empty(2, 0, dtype=torch.long)).item())
    values = {k: GSP().build({"kernel": k, "num_nodes": 0}, 2, 3)(s, t, edge_index()).item()
              for k in ("rbf", "linear", "poly", "cosine")}
    assert len({round(v, 6) for v in values.values()}) == 4
    default = GSP().build({}, 2, 3)
    assert (default.kernel, default.num_nodes, default.criterion, default.scale) == ("cosine", 1024, "kl", "rms")
    with pytest.raises(ValueError, match="scale"):
        GSP().build({"scale": "log"}, 2, 3)


def test_gsp_samples_num_nodes_rows():
    s, t = tensors()
    loss = GSP().build({"num_nodes": 3, "kernel": "rbf"}, 2, 3)
    candidates = [hand_gsp([S[i] for i in c], [T[i] for i in c]) for c in itertools.combinations(range(5), 3)]
    torch.manual_seed(0)
    for _ in range(5):
        value = loss(s, t, edge_index()).item()
        assert any(value == pytest.approx(c, rel=1e-5) for c in candidates)
    # the sample comes from torch's global RNG: the same seed gives the same value
    torch.manual_seed(3)
    first = loss(s, t, edge_index()).item()
    torch.manual_seed(3)
    assert loss(s, t, edge_index()).item() == first


# ----------------------------------------------------------------------------- G-CRD


def identity_gcrd(tau, num_negatives=0, num_nodes=0):
    """Width 3 everywhere with identity heads and zero bias, so the projection is the identity."""
    module = GCRD().build({"tau": tau, "projection_dim": 3, "num_negatives": num_negatives, "num_nodes": num_nodes},
                          3, 3)
    with torch.no_grad():
        for head in (module.student_head, module.teacher_head):
            head.weight.copy_(torch.eye(3))
            head.bias.zero_()
    return module


S3 = [[0.5, -1.0, 0.2], [1.2, 0.3, -0.4], [-0.7, 0.8, 0.9], [0.1, 0.1, 1.0], [2.0, -2.0, 0.5]]


@pytest.mark.parametrize("tau", [0.075, 0.5, 1.0])
def test_gcrd_is_infonce_with_all_negatives(tau):
    loss = identity_gcrd(tau)
    value = loss(torch.tensor(S3), torch.tensor(T), edge_index()).item()
    everyone = range(5)
    assert value == pytest.approx(hand_infonce(S3, T, everyone, everyone, tau), rel=1e-5)
    # the anchor is never its own negative (else its positive term would count twice)
    doubled = -sum(math.log(math.exp(dot(unit(S3[i]), unit(T[i])) / tau)
                            / sum(math.exp(dot(unit(S3[i]), unit(T[k])) / tau) for k in [*everyone, i]))
                   for i in everyone) / 5
    assert value != pytest.approx(doubled, rel=1e-4)


def test_gcrd_samples_anchors_and_negatives():
    loss = identity_gcrd(0.5, num_negatives=3, num_nodes=2)
    candidates = [hand_infonce(S3, T, a, k, 0.5) for a in itertools.combinations(range(5), 2)
                  for k in itertools.combinations(range(5), 3)]
    torch.manual_seed(0)
    for _ in range(5):
        value = loss(torch.tensor(S3), torch.tensor(T), edge_index()).item()
        assert any(value == pytest.approx(c, rel=1e-5) for c in candidates)


def test_gcrd_defaults_and_tau():
    module = GCRD().build({}, 16, 64)
    assert (module.tau, module.num_negatives, module.num_nodes) == (0.075, 1024, 1024)
    assert module.student_head.in_features == 16 and module.teacher_head.in_features == 64
    assert module.student_head.out_features == module.teacher_head.out_features == 128
    s, t = torch.tensor(S3), torch.tensor(T)
    assert identity_gcrd(0.1)(s, t, edge_index()).item() != pytest.approx(identity_gcrd(1.0)(s, t, edge_index()).item())
    with pytest.raises(ValueError, match="tau"):
        GCRD().build({"tau": 0.0}, 3, 3)


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("name, params", [("lsp", {}), ("lsp", {"kernel": "cosine"}), ("gsp", {"num_nodes": 0}),
                                          ("gsp", {"criterion": "mse"}), ("gcrd", {"num_negatives": 0})])
def test_backward_reaches_student_and_loss_parameters(gkd_registry, name, params):
    torch.manual_seed(0)
    s = torch.tensor(S, requires_grad=True)
    t = torch.tensor(T, requires_grad=True)  # STRIDE passes projected (trainable) teacher features
    module = gkd_registry.losses[name].build(params, 2, 3)
    value = module(s, t, edge_index())
    assert torch.isfinite(value)
    value.backward()
    assert s.grad is not None and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
    assert t.grad is not None and torch.isfinite(t.grad).all()
    own = list(module.parameters())
    if name == "gcrd":
        assert len(own) == 4  # two heads, weight and bias each
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in own)
    else:
        assert own == []


def test_losses_are_registered(gkd_registry):
    assert {"lsp", "gsp", "gcrd"} <= set(gkd_registry.losses)
    assert "2003.10477" in gkd_registry.losses["lsp"].paper
    assert "2111.04964" in gkd_registry.losses["gsp"].paper and "2111.04964" in gkd_registry.losses["gcrd"].paper


def test_cost_on_a_pubmed_sized_graph(gkd_registry):
    """Forward + backward on 19,717 nodes, 88,648 edges, 64-dim embeddings completes (the time
    is printed, not asserted)."""
    gen = torch.Generator().manual_seed(0)
    n, e = 19_717, 88_648
    ei = torch.randint(0, n, (2, e), generator=gen)
    s = (0.1 * torch.randn(n, 64, generator=gen)).requires_grad_()
    t = 0.1 * torch.randn(n, 64, generator=gen)
    for name in ("lsp", "gsp", "gcrd"):
        module = gkd_registry.losses[name].build({}, 64, 64)
        times = []
        for _ in range(2):  # the second step reuses LSP's constant-teacher side
            start = time.perf_counter()
            value = module(s, t, ei)
            value.backward()
            times.append(1000 * (time.perf_counter() - start))
            assert torch.isfinite(value)
        print(f"{name}: forward+backward {times[0]:.1f} ms (first step), {times[1]:.1f} ms (next), "
              f"value {value.item():.4g}")


def test_lsp_reuses_a_constant_teacher_only_while_it_is_unchanged():
    s, t = tensors()
    ei = edge_index()
    loss = LSP().build({}, 2, 3)
    first = loss(s, t, ei).item()
    assert loss(s, t, ei).item() == first  # cached teacher side
    t.mul_(2.0)  # in place: the cache must notice
    assert loss(s, t, ei).item() == pytest.approx(hand_lsp(S, [[2 * v for v in row] for row in T], EDGES), rel=1e-6)
    other = torch.tensor(T, dtype=torch.float64) * 0.5  # another tensor
    assert loss(s, other, ei).item() == pytest.approx(hand_lsp(S, [[0.5 * v for v in row] for row in T], EDGES),
                                                      rel=1e-6)
