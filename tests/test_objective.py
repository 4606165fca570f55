"""The shared soft-label combination (``softkd_weight``, ``softkd_tau``) every combinable method gains."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gkd_search.distill.objective import (
    SOFTKD_COMBINATION,
    WithSoftKD,
    build_objective,
    method_hyperparameters,
    split_params,
)
from gkd_search.types import DistillationBatch, DistillationContext, ModelOutput

STUDENT = [[1.0, 0.0, -1.0], [0.2, 0.4, 0.1]]
TEACHER = [[2.0, 0.5, 0.0], [0.0, 1.0, 3.0]]
Y, TRAIN = [0, 2], [True, False]


def batch() -> DistillationBatch:
    return DistillationBatch(y=torch.tensor(Y), train_mask=torch.tensor(TRAIN), teacher_logits=torch.tensor(TEACHER),
                             teacher_hidden=[], edge_index=torch.empty(2, 0, dtype=torch.long))


def context() -> DistillationContext:
    return DistillationContext(num_classes=3, student_family="mlp", student_uses_graph=False,
                               student_hidden_dims=[3], teacher_hidden_dims=[3])


def hand_kl(student, teacher, tau):
    """mean over nodes of sum_c p_t log(p_t / p_s) at temperature tau, written out."""
    total = 0.0
    for s_row, t_row in zip(student, teacher):
        ps = [math.exp(v / tau) for v in s_row]
        pt = [math.exp(v / tau) for v in t_row]
        ps = [v / sum(ps) for v in ps]
        pt = [v / sum(pt) for v in pt]
        total += sum(t * math.log(t / s) for t, s in zip(pt, ps))
    return total / len(student)


def hand_ce():
    row = STUDENT[0]
    return -(row[Y[0]] - math.log(sum(math.exp(v) for v in row)))


def test_combinable_methods_gain_the_two_parameters(gkd_registry):
    for name, method in gkd_registry.methods.items():
        params = method_hyperparameters(method)
        if method.combines_with_softkd:
            assert set(SOFTKD_COMBINATION) <= set(params), name
        else:
            assert not set(SOFTKD_COMBINATION) & set(params), name
    assert {n for n, m in gkd_registry.methods.items() if not m.combines_with_softkd} == {
        "none", "softkd", "glnn", "infgrand"}


def test_split_params_separates_the_method_from_the_combination(gkd_registry):
    gcrd = gkd_registry.methods["gcrd"]
    own, combo = split_params(gcrd, {"beta": 0.1, "tau": 0.1, "softkd_weight": 0.5, "softkd_tau": 2.0})
    assert own == {"beta": 0.1, "tau": 0.1} and combo == {"softkd_weight": 0.5, "softkd_tau": 2.0}


@pytest.mark.parametrize("weight, tau", [(0.5, 2.0), (1.0, 4.0)])
def test_combined_value_is_method_plus_weighted_soft_term(gkd_registry, weight, tau):
    fitnets = gkd_registry.methods["fitnets"]
    loss = build_objective(fitnets, {"beta": 1.0, "hints": "all", "softkd_weight": weight, "softkd_tau": tau},
                           context())
    assert isinstance(loss, WithSoftKD)
    s = torch.tensor(STUDENT)
    b = batch()
    b.teacher_hidden = [torch.tensor(TEACHER)]
    inner = loss.inner(ModelOutput(s, [s]), b)
    total = loss(ModelOutput(s, [s]), b)
    expected_soft = weight * tau**2 * hand_kl(STUDENT, TEACHER, tau)
    assert float((total - inner).detach()) == pytest.approx(expected_soft, rel=1e-5)


def test_zero_weight_is_the_method_alone(gkd_registry):
    at = gkd_registry.methods["at"]
    loss = build_objective(at, {"beta": 10.0, "softkd_weight": 0.0, "softkd_tau": 3.0}, context())
    assert not isinstance(loss, WithSoftKD)
    none_like = build_objective(gkd_registry.methods["none"], {}, context())
    s = torch.tensor(STUDENT)
    assert float(none_like(ModelOutput(s, [s]), batch())) == pytest.approx(hand_ce(), rel=1e-6)
    assert np.isfinite(hand_kl(STUDENT, TEACHER, 1.0))


def test_diagnostics_pass_through_the_combination(gkd_registry):
    abkd = gkd_registry.methods["abkd"]
    ctx = DistillationContext(num_classes=3, student_family="mlp", student_uses_graph=False,
                              student_hidden_dims=[4, 3], teacher_hidden_dims=[5, 3])
    loss = build_objective(abkd, {"beta": 10.0, "d_a": 32, "softkd_weight": 0.5, "softkd_tau": 2.0}, ctx)
    assert isinstance(loss, WithSoftKD)
    torch.manual_seed(0)
    student = ModelOutput(torch.randn(6, 3), [torch.randn(6, 4), torch.randn(6, 3)])
    b = DistillationBatch(y=torch.zeros(6, dtype=torch.long), train_mask=torch.ones(6, dtype=torch.bool),
                          teacher_logits=torch.randn(6, 3), teacher_hidden=[torch.randn(6, 5), torch.randn(6, 3)],
                          edge_index=torch.empty(2, 0, dtype=torch.long))
    assert set(loss.diagnostics(student, b)) == {"attention", "dissimilarity"}
