"""The ``lsp``, ``gsp`` and ``gcrd`` methods: CE + beta * structural loss on the last
representations, by hand on a tiny graph, plus one short real trial each."""

from __future__ import annotations

import math

import pytest
import torch

from gkd_search.distill.objective import build_objective, method_hyperparameters
from gkd_search.latency import LatencyMeasurement, LatencyProtocol
from gkd_search.losses.gcrd import GCRD
from gkd_search.losses.gsp import GSP
from gkd_search.losses.lsp import LSP
from gkd_search.trial import TrialContext, run_trial
from gkd_search.types import (
    DistillationBatch,
    DistillationContext,
    ModelOutput,
    StructuralLoss,
    StructuralLossModule,
    TrialSpec,
)

pytestmark = pytest.mark.usefixtures("one_thread")

METHODS = ("lsp", "gsp", "gcrd")
LOSS_CLASSES = {"lsp": LSP, "gsp": GSP, "gcrd": GCRD}

# 4 nodes; student: a 2-wide hidden layer then 3 logits; teacher: a 3-wide hidden layer then 3 logits
S_HIDDEN = [[0.5, -1.0], [1.2, 0.3], [-0.7, 0.8], [0.1, 0.4]]
S_LOGITS = [[2.0, -1.0, 0.5], [0.1, 0.2, 0.3], [-1.5, 3.0, 0.0], [1.0, 1.0, -2.0]]
T_HIDDEN = [[1.0, 0.0, -0.5], [0.2, 0.9, 0.4], [-0.3, -0.6, 1.1], [0.8, 0.5, 0.0]]
T_LOGITS = [[3.0, 0.0, -1.0], [0.5, -0.5, 2.0], [0.0, 2.5, 0.5], [-1.0, 2.0, 1.0]]
Y = [0, 2, 1, 1]
TRAIN = [True, False, True, True]
EDGES = [(0, 1), (1, 0), (1, 2), (2, 1), (0, 2), (2, 0), (2, 3), (3, 2)]


def hand_ce():
    """Mean over training nodes of -log softmax(s)[y]."""
    terms = []
    for row, y, train in zip(S_LOGITS, Y, TRAIN):
        if train:
            log_norm = math.log(sum(math.exp(v) for v in row))
            terms.append(log_norm - row[y])
    return sum(terms) / len(terms)


def hand_lsp_rbf(s, t, sigma=1.0):
    """Yang et al. Eqs. 2-4 with the RBF kernel, KL(teacher || student), mean over nodes."""
    def dist(z, i, nbrs):
        w = [math.exp(math.exp(-sum((a - b) ** 2 for a, b in zip(z[i], z[j])) / (2 * sigma**2))) for j in nbrs]
        return [x / sum(w) for x in w]

    total = 0.0
    for i in range(len(s)):
        nbrs = [j for j, k in EDGES if k == i]
        p_s, p_t = dist(s, i, nbrs), dist(t, i, nbrs)
        total += sum(pt * math.log(pt / ps) for pt, ps in zip(p_t, p_s))
    return total / len(s)


def make(requires_grad=True):
    s_hidden = torch.tensor(S_HIDDEN, requires_grad=requires_grad)
    s_logits = torch.tensor(S_LOGITS, requires_grad=requires_grad)
    out = ModelOutput(logits=s_logits, hidden=[s_hidden, s_logits])
    batch = DistillationBatch(y=torch.tensor(Y), train_mask=torch.tensor(TRAIN), teacher_logits=torch.tensor(T_LOGITS),
                              teacher_hidden=[torch.tensor(T_HIDDEN), torch.tensor(T_LOGITS)],
                              edge_index=torch.tensor(EDGES).t().contiguous())
    return s_hidden, s_logits, out, batch


def context(losses=None, family="gcn", uses_graph=True):
    return DistillationContext(num_classes=3, student_family=family, student_uses_graph=uses_graph,
                               student_hidden_dims=[2, 3], teacher_hidden_dims=[3, 3],
                               structural_losses=dict(losses or {}))


def test_hand_helpers_sanity():
    assert hand_ce() > 0
    assert hand_lsp_rbf(T_HIDDEN, T_HIDDEN) == 0.0


@pytest.mark.parametrize("beta", [0.0, 1.0, 100.0])
def test_lsp_method_value_by_hand(gkd_registry, beta):
    loss_fn = gkd_registry.get("method", "lsp").build_loss({"beta": beta, "kernel": "rbf", "sigma": 1.0, "scale": "raw"},
                                                           context())
    _, _, out, batch = make()
    expected = hand_ce() + beta * hand_lsp_rbf(S_HIDDEN, T_HIDDEN)
    assert loss_fn(out, batch).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("method, params", [
    ("lsp", {"beta": 3.0, "kernel": "cosine"}),
    ("gsp", {"beta": 3.0, "kernel": "linear", "num_nodes": 0, "criterion": "kl"}),
    ("gsp", {"beta": 0.5, "criterion": "mse", "num_nodes": 0}),
    ("gcrd", {"beta": 0.2, "tau": 0.1, "num_negatives": 0, "num_nodes": 0}),
])
def test_method_is_ce_plus_beta_times_structural_loss(gkd_registry, method, params):
    torch.manual_seed(0)
    loss_fn = gkd_registry.get("method", method).build_loss(params, context(gkd_registry.losses))
    _, _, out, batch = make()
    structural = loss_fn.structural  # the built module, with its (random) heads for gcrd
    term = structural(torch.tensor(S_HIDDEN), torch.tensor(T_HIDDEN), batch.edge_index).item()
    assert loss_fn(out, batch).item() == pytest.approx(hand_ce() + params["beta"] * term, rel=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_structural_term_reads_the_last_representation_not_the_logits(gkd_registry, method):
    torch.manual_seed(0)
    loss_fn = gkd_registry.get("method", method).build_loss({"beta": 1.0, "num_nodes": 0, "num_negatives": 0},
                                                            context())
    _, _, out, batch = make()
    base = loss_fn(out, batch).item()
    batch.teacher_hidden[-1] = torch.zeros(4, 3)  # the teacher's logits do not enter
    batch.teacher_logits = torch.zeros(4, 3)
    assert loss_fn(out, batch).item() == pytest.approx(base, rel=1e-6)
    batch.teacher_hidden[0] = batch.teacher_hidden[0].flip(0)  # its hidden layer does
    assert loss_fn(out, batch).item() != pytest.approx(base, rel=1e-4)


@pytest.mark.parametrize("method", METHODS)
def test_falls_back_to_its_own_loss_and_uses_the_registered_one(gkd_registry, method):
    # an empty context: the method builds its own loss class
    loss_fn = gkd_registry.get("method", method).build_loss({}, context())
    assert type(loss_fn.structural) is type(LOSS_CLASSES[method]().build({}, 2, 3))

    # a context that lists a loss under the method's name: that one is used
    class Constant(StructuralLossModule):
        def forward(self, student, teacher, edge_index):
            return student.sum() * 0.0 + 7.0

    class Replacement(StructuralLoss):
        name = method

        def build(self, params, student_channels, teacher_channels):
            assert (student_channels, teacher_channels) == (2, 3)  # widths of hidden[-2]
            return Constant()

    loss_fn = gkd_registry.get("method", method).build_loss({"beta": 2.0}, context({method: Replacement()}))
    _, _, out, batch = make()
    assert loss_fn(out, batch).item() == pytest.approx(hand_ce() + 14.0, rel=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_gradients_reach_student_and_gcrd_heads(gkd_registry, method):
    torch.manual_seed(0)
    loss_fn = gkd_registry.get("method", method).build_loss({"beta": 1.0, "num_nodes": 0, "num_negatives": 0},
                                                            context(gkd_registry.losses))
    s_hidden, s_logits, out, batch = make()
    value = loss_fn(out, batch)
    assert torch.isfinite(value)
    value.backward()
    assert s_hidden.grad is not None and s_hidden.grad.abs().sum() > 0  # the structural term
    assert s_logits.grad is not None and s_logits.grad[0].abs().sum() > 0  # CE on a training node
    params = list(loss_fn.parameters())
    if method == "gcrd":
        assert len(params) == 4 and all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
    else:
        assert params == []


def test_metadata_and_search_space(gkd_registry):
    families = gkd_registry.families
    for method in METHODS:
        m = gkd_registry.get("method", method)
        assert m.requires == frozenset({"logits", "hidden"})
        assert m.accepts(families["gcn"]) and m.accepts(families["mlp"])
        own = set(LOSS_CLASSES[method].hyperparameters)
        assert set(m.hyperparameters) == {"beta"} | own  # the loss's parameters, same names
        assert m.combines_with_softkd
        assert {"softkd_weight", "softkd_tau"} <= set(method_hyperparameters(m))
        beta = m.hyperparameters["beta"]
        assert beta.log and beta.low < m.default_beta <= beta.high
    assert "2003.10477" in gkd_registry.get("method", "lsp").paper
    assert "2111.04964" in gkd_registry.get("method", "gsp").paper
    assert "2111.04964" in gkd_registry.get("method", "gcrd").paper


def test_objective_adds_softkd_on_top(gkd_registry):
    method = gkd_registry.get("method", "lsp")
    plain = build_objective(method, {"beta": 10.0}, context())
    combined = build_objective(method, {"beta": 10.0, "softkd_weight": 0.5, "softkd_tau": 2.0}, context())
    _, _, out, batch = make(requires_grad=False)
    assert combined(out, batch).item() > plain(out, batch).item()


TRAINING = {"lr": 0.01, "weight_decay": 5e-4, "dropout": 0.5, "epochs": 15, "patience": 15}
FAST_LATENCY = LatencyMeasurement(p50_ms=0.5, p95_ms=0.7, mean_ms=0.55, min_ms=0.4, repeats=30)


@pytest.mark.parametrize("family, hidden", [("gcn", 16), ("mlp", 64)])
@pytest.mark.parametrize("method", METHODS)
def test_real_trial_trains(gkd_registry, small_synthetic, small_teacher, method, family, hidden):
    _, outputs = small_teacher
    spec = TrialSpec(family=family, num_layers=2, hidden_channels=hidden, method=method,
                     method_params={}, training=TRAINING, seed=0)
    ctx = TrialContext(dataset=small_synthetic, teacher=outputs, families=gkd_registry.families,
                       methods=gkd_registry.methods, latency={spec.architecture_key(): FAST_LATENCY},
                       budget_ms=10.0, protocol=LatencyProtocol(warmup=2, repeats=30),
                       structural_losses=gkd_registry.losses)
    result = run_trial(spec, ctx, trial_id="t")
    assert result.status == "ok", result.error
    assert 0.0 <= result.val_acc <= 1.0
