"""The plugin contract of gkd-search: every hook a plugin may implement.

Plugins implement hooks with :data:`gkd_search.hookimpl` and are found through the entry-point
group ``gkd_search``. The built-in methods, families and datasets are plugins registered through
exactly these hooks. Component hooks return lists; the registry flattens them and rejects two
components with the same name. Hooks gain arguments over time but are never renamed or removed.
"""

from __future__ import annotations

import pluggy

from .types import DatasetSpec, DistillationMethod, ModelFamily, SearchSummary, StructuralLoss, TrialResult

PROJECT = "gkd_search"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# ---------------------------------------------------------------- components (registration)


@hookspec
def gkd_methods() -> list[DistillationMethod]:
    """Return the distillation methods this plugin provides.

    Each method's ``name`` must be unique across all plugins.
    """


@hookspec
def gkd_families() -> list[ModelFamily]:
    """Return the model families (student and teacher architectures) this plugin provides."""


@hookspec
def gkd_structural_losses() -> list[StructuralLoss]:
    """Return structural losses (functions of student and teacher embeddings and the graph)."""


@hookspec
def gkd_datasets() -> list[DatasetSpec]:
    """Return the datasets this plugin provides (the values of ``--dataset``)."""


# ---------------------------------------------------------------- observers


@hookspec
def gkd_trial_finished(result: TrialResult) -> None:
    """Called in the driver after each trial has finished and been logged (any status)."""


@hookspec
def gkd_search_finished(summary: SearchSummary) -> None:
    """Called once after the search, the Pareto front and the selected student are logged."""
