"""Cora, CiteSeer and PubMed with the public Planetoid split (Yang et al., ICML 2016)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Optional

from ..errors import DataMissingError, UsageError
from ..hookspecs import hookimpl
from ..types import DatasetSpec, GraphDataset
from ._files import DATA_ENV, stage_raw_files
from ._options import parse_flag

_SUFFIXES = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")


class PlanetoidSpec(DatasetSpec):
    """A Planetoid citation graph, public split (20 labelled nodes per class, 500 val, 1000 test).

    Option ``normalize_features`` (``--dataset cora:normalize_features=true``) divides every
    node's bag-of-words row by its sum, the preprocessing of Kipf & Welling (2017) and of the
    GCNII paper (Chen et al., 2020), which the deep GCNII setting needs; the default keeps PyG's
    raw binary features. The normalised graph is named ``<name>-rownorm``.
    """

    pyg_name: ClassVar[str]
    options: ClassVar[dict[str, Any]] = {"normalize_features": False}

    def raw_files(self) -> list[str]:
        return [f"ind.{self.pyg_name.lower()}.{s}" for s in _SUFFIXES]

    def load(self, root: Optional[Path], cache_dir: Path, seed: int, **options: Any) -> GraphDataset:
        from torch_geometric.datasets import Planetoid

        normalize = _parse_options(self.name, options)

        if root is not None:
            stage_raw_files(root, self.pyg_name, self.raw_files(), cache_dir, hint="the Planetoid files")
            dataset = Planetoid(str(cache_dir), self.pyg_name, split="public")
        else:
            try:
                dataset = Planetoid(str(cache_dir), self.pyg_name, split="public")
            except Exception as exc:  # offline: no files and no network
                raise DataMissingError(
                    f"{self.pyg_name} could not be downloaded ({type(exc).__name__}); put "
                    f"{', '.join(self.raw_files())} in DIR/{self.pyg_name}/raw/ and pass --data-root DIR "
                    f"or set {DATA_ENV}=DIR"
                ) from None
        data = dataset[0]
        source = str(Path(root) / self.pyg_name / "raw") if root is not None else None
        if not normalize:
            return GraphDataset(self.name, data, dataset.num_classes, source=source)
        data.x = data.x / data.x.sum(dim=1, keepdim=True).clamp(min=1e-12)
        return GraphDataset(f"{self.name}-rownorm", data, dataset.num_classes, source=source)


def _parse_options(name: str, options: dict[str, Any]) -> bool:
    unknown = sorted(set(options) - {"normalize_features"})
    if unknown:
        raise UsageError(f"{name}: unknown option {unknown[0]!r} (known: normalize_features)")
    return parse_flag(name, "normalize_features", options.get("normalize_features", False))


class Cora(PlanetoidSpec):
    name = "cora"
    pyg_name = "Cora"
    description = "Cora citation graph: 2,708 nodes, 7 classes, public split 140/500/1000"
    default_teacher = "gcn:2:256:dropout=0.8:weight_decay=0.001"


class CiteSeer(PlanetoidSpec):
    name = "citeseer"
    pyg_name = "CiteSeer"
    description = "CiteSeer citation graph: 3,327 nodes, 6 classes, public split 120/500/1000"
    default_teacher = "gcn:2:256:dropout=0.8:weight_decay=0.001"


class PubMed(PlanetoidSpec):
    name = "pubmed"
    pyg_name = "PubMed"
    description = "PubMed citation graph: 19,717 nodes, 3 classes, public split 60/500/1000"
    default_teacher = "gcn:2:256:dropout=0.8:weight_decay=0.001"


@hookimpl
def gkd_datasets() -> list[DatasetSpec]:
    return [Cora(), CiteSeer(), PubMed()]
