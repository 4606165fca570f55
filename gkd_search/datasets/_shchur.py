"""The co-purchase and co-authorship graphs of Shchur, Mumme, Bojchevski & Günnemann, "Pitfalls of
Graph Neural Network Evaluation" (2018): one ``.npz`` each, read by PyG's ``Amazon`` and
``Coauthor`` classes, with the paper's seeded split (Sec. 4): 20 training and 30 validation nodes
per class, the rest test."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Optional

from ..errors import DataMissingError
from ..types import DatasetSpec, GraphDataset
from ._files import DATA_ENV, per_class_split, stage_raw_files


class ShchurSpec(DatasetSpec):
    """One of Shchur et al.'s graphs: ``pyg_class`` (``Amazon``, ``Coauthor``) with ``pyg_name``,
    whose raw file is ``<data root>/<pyg_name>/raw/<raw_file>``."""

    pyg_class: ClassVar[str]
    pyg_name: ClassVar[str]
    raw_file: ClassVar[str]
    train_per_class = 20
    val_per_class = 30

    def load(self, root: Optional[Path], cache_dir: Path, seed: int, **options: Any) -> GraphDataset:
        import torch_geometric.datasets

        cls = getattr(torch_geometric.datasets, self.pyg_class)
        if root is not None:
            stage_raw_files(root, self.pyg_name, [self.raw_file], cache_dir, hint="the Shchur et al. npz file")
            dataset = cls(str(cache_dir), self.pyg_name)
        else:
            try:
                dataset = cls(str(cache_dir), self.pyg_name)
            except Exception as exc:
                raise DataMissingError(
                    f"{self.pyg_name} could not be downloaded ({type(exc).__name__}); put {self.raw_file} in "
                    f"DIR/{self.pyg_name}/raw/ and pass --data-root DIR or set {DATA_ENV}=DIR"
                ) from None
        data = dataset[0]
        data.train_mask, data.val_mask, data.test_mask = per_class_split(
            data.y, dataset.num_classes, self.train_per_class, self.val_per_class, seed
        )
        source = str(Path(root) / self.pyg_name / "raw" / self.raw_file) if root is not None else None
        return GraphDataset(self.name, data, dataset.num_classes, source=source)
