"""Coauthor CS and Physics co-authorship graphs (Microsoft Academic Graph; Shchur et al. 2018), with
the seeded per-class split."""

from __future__ import annotations

from ..hookspecs import hookimpl
from ..types import DatasetSpec
from ._shchur import ShchurSpec


class CoauthorCS(ShchurSpec):
    """18,333 authors, 15 fields of study, 6,805 keyword features; 20/30 per class, rest test."""

    name = "cs"
    description = "Coauthor CS: 18,333 nodes, 15 classes, seeded split 20/30 per class, rest test"
    default_teacher = None
    pyg_class, pyg_name, raw_file = "Coauthor", "CS", "ms_academic_cs.npz"


class CoauthorPhysics(ShchurSpec):
    """34,493 authors, 5 fields of study, 8,415 keyword features; 20/30 per class, rest test."""

    name = "physics"
    description = "Coauthor Physics: 34,493 nodes, 5 classes, seeded split 20/30 per class, rest test"
    default_teacher = None
    pyg_class, pyg_name, raw_file = "Coauthor", "Physics", "ms_academic_phy.npz"


@hookimpl
def gkd_datasets() -> list[DatasetSpec]:
    return [CoauthorCS(), CoauthorPhysics()]
