"""Amazon Photo (McAuley et al. 2015; Shchur et al. 2018) with a seeded per-class split."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from ..errors import DataMissingError
from ..hookspecs import hookimpl
from ..types import DatasetSpec, GraphDataset
from ._files import DATA_ENV, per_class_split, stage_raw_files

RAW_FILE = "amazon_electronics_photo.npz"


class AmazonPhoto(DatasetSpec):
    """Co-purchase graph, 7,650 nodes, 8 classes; split seeded by ``--seed``: 20 train and 30
    validation nodes per class, the rest test (Shchur et al., 2018, Sec. 4)."""

    name = "photo"
    description = "Amazon Photo: 7,650 nodes, 8 classes, seeded split 20/30 per class, rest test"
    default_teacher = "gcn:2:256"
    train_per_class = 20
    val_per_class = 30

    def load(self, root: Optional[Path], cache_dir: Path, seed: int, **options: Any) -> GraphDataset:
        from torch_geometric.datasets import Amazon

        if root is not None:
            stage_raw_files(root, "Photo", [RAW_FILE], cache_dir, hint="the Shchur et al. npz file")
            dataset = Amazon(str(cache_dir), "Photo")
        else:
            try:
                dataset = Amazon(str(cache_dir), "Photo")
            except Exception as exc:
                raise DataMissingError(
                    f"Photo could not be downloaded ({type(exc).__name__}); put {RAW_FILE} in "
                    f"DIR/Photo/raw/ and pass --data-root DIR or set {DATA_ENV}=DIR"
                ) from None
        data = dataset[0]
        data.train_mask, data.val_mask, data.test_mask = per_class_split(
            data.y, dataset.num_classes, self.train_per_class, self.val_per_class, seed
        )
        return GraphDataset(self.name, data, dataset.num_classes)


@hookimpl
def gkd_datasets() -> list[DatasetSpec]:
    return [AmazonPhoto()]
