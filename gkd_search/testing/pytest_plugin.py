"""gkd-search's pytest plugin (entry point ``pytest11``, loaded by pytest wherever gkd-search is
installed): the contract as fixtures and parametrised tests, each case reported on its own.

Fixtures (session-scoped):

``gkd_registry``
    every installed component, built-ins and plugins (yours included);
``gkd_contract_graph``
    a :class:`~gkd_search.testing.ContractGraph` built with that registry (a seeded graph and a
    trained 5-layer teacher), so a method can be checked on the plugin's own family.

Test factories: each returns a test function parametrised over the contract's cases; assign it to
a ``test_*`` name in a test module::

    from gkd_search.testing.pytest_plugin import (dataset_contract, family_contract, method_contract,
                                                  structural_loss_contract)

    test_gin_contract = family_contract(GINFamily(), num_nodes=80)
    test_rkd_contract = method_contract(RKDMethod())
    test_rkd_loss_contract = structural_loss_contract(RKDLoss())
    test_dataset_contract = dataset_contract(MyDataset(), root=None)

pytest then reports ``test_gin_contract[gin-2L-train_eps=False-served_request]`` and every other
case separately: one broken property does not hide the rest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import pytest


@pytest.fixture(scope="session")
def gkd_registry():
    """Every installed component (built-ins and entry-point plugins)."""
    from ..registry import build_registry

    return build_registry()


@pytest.fixture(scope="session")
def gkd_contract_graph(gkd_registry):
    """The contract's graph and teacher, with every installed family and structural loss."""
    from ._graph import ContractGraph

    return ContractGraph.build(gkd_registry)


def family_contract(family, *, num_layers: Sequence[int] = (1, 2, 3), hidden_channels: int = 16,
                    num_nodes: int = 40, seed: int = 0) -> Callable:
    """A test parametrised over :func:`~gkd_search.testing.family_cases` (one case per depth,
    family-parameter value and check)."""
    from .families import family_cases

    cases = family_cases(family, num_layers=num_layers, hidden_channels=hidden_channels, num_nodes=num_nodes,
                         seed=seed)

    @pytest.mark.parametrize("case", cases, ids=[c.id for c in cases])
    def test_family_contract(case):
        case.run()

    return test_family_contract


def method_contract(method, students: Optional[Iterable[tuple[str, int, int, dict[str, Any]]]] = None) -> Callable:
    """A test parametrised over the method's hyperparameter draws (default, low, high) and the
    contract's student shapes (``students``: ``(family, num_layers, hidden_channels, params)``
    tuples; default :data:`~gkd_search.testing.GRAPH_STUDENTS` + ``GRAPH_FREE_STUDENTS``, those
    the method does not accept are skipped), plus one case for the hyperparameter declarations.
    Uses the ``gkd_contract_graph`` fixture."""
    from ..distill.objective import method_hyperparameters
    from ._graph import GRAPH_FREE_STUDENTS, GRAPH_STUDENTS, parameter_draws

    shapes = list(students) if students is not None else [*GRAPH_STUDENTS, *GRAPH_FREE_STUDENTS]
    draws = parameter_draws(method_hyperparameters(method))
    cases = [("hyperparameters", None)] + [(label, shape) for label in draws for shape in shapes]

    def case_id(case) -> str:
        label, shape = case
        if shape is None:
            return f"{method.name}-{label}"
        from ..types import architecture_key

        return f"{method.name}-{label}-{architecture_key(shape[0], shape[1], shape[2], shape[3])}"

    @pytest.mark.parametrize("case", cases, ids=[case_id(c) for c in cases])
    def test_method_contract(case, gkd_contract_graph):
        from .methods import check_hyperparameters, check_loss

        label, shape = case
        if shape is None:
            check_hyperparameters(method)
            assert method.requires <= {"logits", "hidden"}, f"{method.name}: unknown teacher outputs {method.requires}"
            return
        family = gkd_contract_graph.families.get(shape[0])
        if family is None or not method.accepts(family):
            pytest.skip(f"{method.name} does not train {shape[0]} students")
        check_loss(method, gkd_contract_graph, shape, draws[label], require_all_loss_gradients=label == "default")

    return test_method_contract


def structural_loss_contract(loss, *, student_channels: int = 8, teacher_channels: int = 12) -> Callable:
    """A test running :func:`~gkd_search.testing.check_structural_loss` (its draws are cheap)."""
    @pytest.mark.parametrize("widths", [(student_channels, teacher_channels), (teacher_channels, teacher_channels)],
                             ids=["mismatched-widths", "equal-widths"])
    def test_structural_loss_contract(widths):
        from .losses import check_structural_loss

        check_structural_loss(loss, student_channels=widths[0], teacher_channels=widths[1])

    return test_structural_loss_contract


def dataset_contract(spec, root: Optional[Path] = None, *, seeds: Sequence[int] = (0,), **options: Any) -> Callable:
    """A test running :func:`~gkd_search.testing.check_dataset` for each seed, in a fresh cache."""
    @pytest.mark.parametrize("seed", list(seeds), ids=[f"{spec.name}-seed{s}" for s in seeds])
    def test_dataset_contract(seed, tmp_path):
        from .datasets import check_dataset

        check_dataset(spec, root, tmp_path / "cache", seed=seed, **options)

    return test_dataset_contract
