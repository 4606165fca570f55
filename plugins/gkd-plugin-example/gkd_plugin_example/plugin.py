"""The hook implementations gkd-search finds through the entry point ``example`` of group
``gkd_search`` (see ``pyproject.toml``)."""

from __future__ import annotations

from gkd_search import hookimpl
from gkd_search.types import DistillationMethod, ModelFamily, StructuralLoss

from .gin import GINFamily
from .rkd import RKDLoss, RKDMethod
from .tag import TAGFamily


@hookimpl
def gkd_methods() -> list[DistillationMethod]:
    return [RKDMethod()]


@hookimpl
def gkd_structural_losses() -> list[StructuralLoss]:
    return [RKDLoss()]


@hookimpl
def gkd_families() -> list[ModelFamily]:
    return [GINFamily(), TAGFamily()]
