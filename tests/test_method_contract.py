"""The method contract (``gkd_search.testing``) on every registered method.

Each method is built for GNN and MLP students of several depths and widths against a deeper
teacher, at the default, low and high ends of its hyperparameter space; its loss must be finite
and its gradients must reach the student and the method's own parameters; a real trial's
MLflow run must hold every hyperparameter under its own name.
"""

from __future__ import annotations

import pytest

from gkd_search.registry import BUILTIN_PLUGINS, build_registry, get_plugin_manager
from gkd_search.testing import ContractGraph, check_logged_params, check_method

pytestmark = pytest.mark.usefixtures("one_thread")

METHODS = sorted(build_registry(get_plugin_manager(autoload=False)).methods)


@pytest.fixture(scope="module")
def contract_graph(gkd_registry):
    return ContractGraph.build(gkd_registry)


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('contract-mlruns') / 'mlflow.db'}"


def test_every_builtin_method_module_registers_something(gkd_registry):
    assert {"none", "softkd", "glnn", "fitnets", "at", "lsp", "gsp", "gcrd", "graphakd", "abkd", "stride",
            "infgrand"} <= set(gkd_registry.methods)
    assert {"lsp", "gsp", "gcrd"} <= set(gkd_registry.losses)
    assert len(BUILTIN_PLUGINS) == len(set(BUILTIN_PLUGINS))


@pytest.mark.parametrize("name", METHODS)
def test_method_meets_the_contract(name, gkd_registry, contract_graph):
    check_method(gkd_registry.methods[name], contract_graph)


@pytest.mark.parametrize("name", METHODS)
def test_hyperparameters_come_back_in_the_trials_mlflow_params(name, gkd_registry, contract_graph, tracking_uri):
    logged = check_logged_params(gkd_registry.methods[name], contract_graph, tracking_uri)
    assert logged["family"] in {"gcn", "mlp"}


def test_the_contract_catches_a_method_whose_gradient_misses_its_own_parameters(gkd_registry, contract_graph):
    """The contract can fail: a method owning a parameter the loss never uses is rejected."""
    from torch import nn

    from gkd_search.methods.none import CrossEntropyOnly, NoDistillation

    class Unused(CrossEntropyOnly):
        def __init__(self):
            super().__init__()
            self.orphan = nn.Parameter(nn.init.ones_(nn.Parameter(nn.Linear(2, 2).weight.detach())))

    class Broken(NoDistillation):
        name = "broken"

        def build_loss(self, params, context):
            return Unused()

    with pytest.raises(AssertionError, match="no gradient reaches the method's own orphan"):
        check_method(Broken(), contract_graph)


def test_the_contract_catches_a_non_finite_loss(contract_graph):
    import torch

    from gkd_search.methods.none import CrossEntropyOnly, NoDistillation

    class NaNLoss(CrossEntropyOnly):
        def forward(self, student, batch):
            return super().forward(student, batch) * torch.tensor(float("nan"))

    class Broken(NoDistillation):
        name = "nan"

        def build_loss(self, params, context):
            return NaNLoss()

    with pytest.raises(AssertionError, match="the loss is nan"):
        check_method(Broken(), contract_graph)
