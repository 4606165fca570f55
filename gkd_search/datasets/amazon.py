"""Amazon co-purchase graphs (McAuley et al. 2015; Shchur et al. 2018) with a seeded per-class split."""

from __future__ import annotations

from ..hookspecs import hookimpl
from ..types import DatasetSpec
from ._shchur import ShchurSpec


class AmazonPhoto(ShchurSpec):
    """Co-purchase graph, 7,650 nodes, 8 classes; split seeded by ``--seed``: 20 train and 30
    validation nodes per class, the rest test (Shchur et al., 2018, Sec. 4)."""

    name = "photo"
    description = "Amazon Photo: 7,650 nodes, 8 classes, seeded split 20/30 per class, rest test"
    default_teacher = "gcn:2:256"
    pyg_class, pyg_name, raw_file = "Amazon", "Photo", "amazon_electronics_photo.npz"


class AmazonComputers(ShchurSpec):
    """Co-purchase graph, 13,752 nodes, 10 classes; the same seeded 20/30 per-class split. No tuned
    default teacher."""

    name = "computers"
    description = "Amazon Computers: 13,752 nodes, 10 classes, seeded split 20/30 per class, rest test"
    default_teacher = None
    pyg_class, pyg_name, raw_file = "Amazon", "Computers", "amazon_electronics_computers.npz"


@hookimpl
def gkd_datasets() -> list[DatasetSpec]:
    return [AmazonPhoto(), AmazonComputers()]
