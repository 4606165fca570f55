"""The contract every component must meet: functions any test runner calls, and a pytest plugin.

Our own test suite runs these checks on every built-in method, family, structural loss and
dataset (``tests/test_method_contract.py``, ``tests/test_component_contract.py``); a plugin
author runs them on theirs. With pytest (gkd-search installs the plugin
:mod:`gkd_search.testing.pytest_plugin`, entry point ``pytest11``), every case is a test of its own::

    from gkd_search.testing.pytest_plugin import family_contract, method_contract

    test_my_family = family_contract(MyFamily(), num_nodes=80)    # one test per depth, value, check
    test_my_method = method_contract(MyMethod())                  # one test per student and draw

With any runner, one function per component, which stops at the first failure::

    from gkd_search.testing import ContractGraph, check_family, check_method

    def test_my_method_meets_the_contract():
        check_method(MyMethod(), ContractGraph.build())

    def test_my_family_meets_the_contract():
        check_family(MyFamily())

* :func:`check_method` (:func:`check_loss` per student and draw; :func:`check_logged_params`, a
  real trial logged to MLflow);
* :func:`check_family` (:func:`family_cases`, one :class:`FamilyCase` per check);
* :func:`check_structural_loss`;
* :func:`check_dataset`.

Each raises ``AssertionError`` with a message naming the component and what broke.

The checks use a real PyG model zoo on a small seeded synthetic graph and a real (briefly
trained) teacher that is deeper than every student, so a method that pairs layers by depth or
projects between widths is exercised on mismatched shapes.
"""

from __future__ import annotations

from ._graph import GRAPH_FREE_STUDENTS, GRAPH_STUDENTS, ContractGraph, parameter_draws
from .datasets import check_dataset
from .families import FAMILY_CHECKS, FamilyCase, check_family, family_cases, family_parameter_draws
from .losses import check_structural_loss
from .methods import check_hyperparameters, check_logged_params, check_loss, check_method

__all__ = [
    "FAMILY_CHECKS", "GRAPH_FREE_STUDENTS", "GRAPH_STUDENTS", "ContractGraph", "FamilyCase", "check_dataset",
    "check_family", "check_hyperparameters", "check_logged_params", "check_loss", "check_method",
    "check_structural_loss", "family_cases", "family_parameter_draws", "parameter_draws",
]
