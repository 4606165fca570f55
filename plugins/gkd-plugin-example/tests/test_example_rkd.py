"""RKD on graphs: the potentials by hand, the paper's invariances, the sampled relations, and the
gkd-search contract for the loss and the method, through gkd-search's pytest plugin (its fixtures
``gkd_registry`` and ``gkd_contract_graph``, and one test per contract case)."""

from __future__ import annotations

import math

import pytest
import torch
from gkd_plugin_example.rkd import (
    RKDLoss,
    RKDMethod,
    RKDModule,
    angle_potential,
    distance_potential,
    graph_wedges,
)

from gkd_search.testing import check_logged_params, check_loss
from gkd_search.testing.pytest_plugin import method_contract, structural_loss_contract


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def registry(gkd_registry):
    """gkd-search's registry with the installed plugins (this one included): the plugin's fixture."""
    return gkd_registry


@pytest.fixture(scope="module")
def contract_graph(gkd_contract_graph):
    return gkd_contract_graph


# --------------------------------------------------------------------------- the equations


def test_distance_potential_by_hand():
    """A 3-4-5 triangle: distances 3, 4, 5 over their mean 4 (Eqs. 3-4)."""
    t = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    i, j = torch.tensor([0, 0, 1]), torch.tensor([1, 2, 2])
    torch.testing.assert_close(distance_potential(t, i, j), torch.tensor([0.75, 1.0, 1.25]))


def test_angle_potential_by_hand():
    """The right angle at node 0 has cosine 0; the angle at node 1 has cosine 3/5 (Eq. 6)."""
    t = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    got = angle_potential(t, torch.tensor([1, 0]), torch.tensor([0, 1]), torch.tensor([2, 2]))
    torch.testing.assert_close(got, torch.tensor([0.0, 0.6]))


def test_the_loss_by_hand_with_huber():
    """Student = the 3-4-5 triangle, teacher = a 1-1-sqrt2 right triangle, one pair and one wedge."""
    student = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    teacher = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    # edges 1 -> 0 and 2 -> 0: pairs (1, 0), (2, 0); the wedges at 0 are 1 -> 0 <- 2 and 2 -> 0 <- 1
    edge_index = torch.tensor([[1, 2], [0, 0]])
    torch.manual_seed(0)
    loss = RKDModule(angle_weight=2.0, relations="graph", samples=4096)(student, teacher, edge_index)
    # distances: student 3, 4 -> 6/7, 8/7; teacher 1, 1 -> 1, 1; Huber(d < 1) = d^2 / 2
    distance = ((1 / 7) ** 2 / 2 + (1 / 7) ** 2 / 2) / 2
    # the angle at node 0 is 90 degrees in both: cosines 0 and 0
    assert math.isclose(float(loss), distance, rel_tol=1e-5)


def test_scale_and_rotation_of_the_teacher_cost_nothing():
    """RKD's potentials are relative (Sec. 3.2): a student that is the teacher scaled, rotated and
    embedded in a wider space has zero loss, an unrelated one does not."""
    gen = torch.Generator().manual_seed(0)
    teacher = torch.randn(50, 6, generator=gen)
    rotation, _ = torch.linalg.qr(torch.randn(10, 10, generator=gen))
    student = 7.5 * torch.cat([teacher, torch.zeros(50, 4)], dim=1) @ rotation
    edge_index = torch.randint(0, 50, (2, 300), generator=gen)
    for relations in ("graph", "random"):
        module = RKDModule(relations=relations)
        assert float(module(student, teacher, edge_index)) < 1e-6
        assert float(module(torch.randn(50, 10, generator=gen), teacher, edge_index)) > 0.05


def test_wedges_are_two_in_neighbours_of_one_node():
    gen = torch.Generator().manual_seed(1)
    edge_index = torch.randint(0, 30, (2, 120), generator=gen)
    edges = set(map(tuple, edge_index.t().tolist()))
    torch.manual_seed(0)
    i, j, k = graph_wedges(edge_index, 30, 500)
    assert i.numel() > 300  # only the draws with i == k are dropped
    assert all((a, b) in edges and (c, b) in edges and a != c for a, b, c in zip(i.tolist(), j.tolist(), k.tolist()))


def test_samples_caps_the_relations_per_step():
    gen = torch.Generator().manual_seed(2)
    edge_index = torch.randint(0, 1000, (2, 20000), generator=gen)
    torch.manual_seed(0)
    i, j, k = graph_wedges(edge_index, 1000, 64)
    assert i.numel() <= 64


def test_training_on_rkd_alone_makes_the_student_relations_the_teachers():
    """The gradient points the right way: 150 Adam steps on L_RKD alone cut it by more than half."""
    gen = torch.Generator().manual_seed(3)
    teacher = torch.randn(80, 16, generator=gen)
    edge_index = torch.randint(0, 80, (2, 400), generator=gen)
    student = torch.randn(80, 4, generator=gen).requires_grad_()
    module = RKDModule()
    optimizer = torch.optim.Adam([student], lr=0.05)
    torch.manual_seed(0)
    first = float(module(student, teacher, edge_index).detach())
    for _ in range(150):
        optimizer.zero_grad()
        loss = module(student, teacher, edge_index)
        loss.backward()
        optimizer.step()
    assert float(loss.detach()) < 0.5 * first


def test_unknown_relations_value_is_refused():
    with pytest.raises(ValueError, match="relations must be one of graph, random, got 'all'"):
        RKDModule(relations="all")


# --------------------------------------------------------------------------- the contract


test_rkd_loss_meets_the_structural_loss_contract = structural_loss_contract(RKDLoss())
test_rkd_method_meets_the_method_contract = method_contract(RKDMethod())


def test_rkd_hyperparameters_come_back_in_mlflow(contract_graph, tmp_path):
    logged = check_logged_params(RKDMethod(), contract_graph, f"sqlite:///{tmp_path}/mlflow.db")
    assert logged["method"] == "rkd"
    assert {"beta", "angle_weight", "relations", "samples"} <= set(logged)


def test_stride_takes_rkd_as_its_structural_term(registry, contract_graph):
    """A plugin's structural loss is usable by a built-in method by name (STRIDE's ``structure``)."""
    stride = registry.methods["stride"]
    params = {**{k: p.default for k, p in stride.hyperparameters.items()}, "structure": "rkd"}
    value = check_loss(stride, contract_graph, ("gcn", 2, 8, {}), params)
    assert math.isfinite(value)


def test_a_space_file_may_choose_rkd_as_strides_structure(registry, tmp_path):
    from gkd_search.space import load_space

    path = tmp_path / "space.yaml"
    path.write_text("families:\n  gin: {num_layers: [2], hidden_channels: [16]}\n"
                    "methods:\n  stride: {structure: [gcrd, rkd]}\n  rkd: {relations: [graph, random]}\n")
    space = load_space(path, registry.families, registry.methods, structural_losses=registry.names("loss"))
    assert space.methods["stride"]["structure"].choices == ("gcrd", "rkd")
    assert space.methods["rkd"]["relations"].choices == ("graph", "random")
