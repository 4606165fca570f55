"""Cora, CiteSeer and PubMed with the public Planetoid split (Yang et al., ICML 2016) or, for Cora
and PubMed, one of the ten 60/20/20 Geom-GCN splits (Pei et al., ICLR 2020), the full-supervised
setting of GCNII and ABKD."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Optional

import torch
from torch import Tensor

from ..errors import DataMissingError, UsageError
from ..hookspecs import hookimpl
from ..types import DatasetSpec, GraphDataset
from ._files import DATA_ENV, stage_files, stage_raw_files
from ._options import parse_flag

_SUFFIXES = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")
SPLITS = ("public", "geom-gcn")
#: the Geom-GCN splits: ``<root>/<Name>/geom-gcn-splits/<name>_split_0.6_0.2_<k>.npz``, ``k`` in 0-9
GEOM_GCN_FOLDER = "geom-gcn-splits"
GEOM_GCN_SPLITS = 10


class PlanetoidSpec(DatasetSpec):
    """A Planetoid citation graph, public split (20 labelled nodes per class, 500 val, 1000 test).

    Option ``normalize_features`` (``--dataset cora:normalize_features=true``) divides every
    node's bag-of-words row by its sum, the preprocessing of Kipf & Welling (2017) and of the
    GCNII paper (Chen et al., 2020), which the deep GCNII setting needs; the default keeps PyG's
    raw binary features. The normalised graph is named ``<name>-rownorm``.

    Options ``split`` (``public``, the default, or ``geom-gcn``) and ``split_index`` (0-9):
    ``cora:split=geom-gcn,split_index=3`` replaces the public masks by the fourth of the ten
    60/20/20 random splits of Pei et al. (Geom-GCN, ICLR 2020), the full-supervised setting of
    GCNII (Chen et al., 2020, Table 3) and of ABKD's deep-GCNII table. The split files are read
    from ``<root>/<Name>/geom-gcn-splits/<name>_split_0.6_0.2_<k>.npz`` (boolean ``train_mask``,
    ``val_mask``, ``test_mask``, the files PyG downloads for ``split="geom-gcn"``), staged into
    the cache first (the data root is never written). The graph is named
    ``<name>[-rownorm]-geom-gcn-<k>``.
    """

    pyg_name: ClassVar[str]
    options: ClassVar[dict[str, Any]] = {"normalize_features": False, "split": "public", "split_index": 0}

    def raw_files(self) -> list[str]:
        return [f"ind.{self.pyg_name.lower()}.{s}" for s in _SUFFIXES]

    def load(self, root: Optional[Path], cache_dir: Path, seed: int, **options: Any) -> GraphDataset:
        from torch_geometric.datasets import Planetoid

        normalize, split, split_index = _parse_options(self.name, options)

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
        name = self.name
        if normalize:
            data.x = data.x / data.x.sum(dim=1, keepdim=True).clamp(min=1e-12)
            name += "-rownorm"
        if split == "geom-gcn":
            data.train_mask, data.val_mask, data.test_mask = self.geom_gcn_masks(root, cache_dir, split_index,
                                                                                 data.num_nodes)
            name += f"-geom-gcn-{split_index}"
        return GraphDataset(name, data, dataset.num_classes, source=source)

    def geom_gcn_file(self, split_index: int) -> str:
        return f"{self.pyg_name.lower()}_split_0.6_0.2_{split_index}.npz"

    def geom_gcn_masks(self, root: Optional[Path], cache_dir: Path, split_index: int,
                       num_nodes: int) -> tuple[Tensor, Tensor, Tensor]:
        """``(train, val, test)`` boolean masks of Geom-GCN split ``split_index``, staged from
        ``root`` into ``cache_dir/<Name>/geom-gcn-splits/`` (or read from there without a root)."""
        import numpy as np

        file = self.geom_gcn_file(split_index)
        if root is not None:
            staged = stage_files(root / self.pyg_name / GEOM_GCN_FOLDER, [file],
                                 cache_dir / self.pyg_name / GEOM_GCN_FOLDER, hint="the Geom-GCN split files",
                                 label=f"{self.pyg_name} Geom-GCN split",
                                 where=f"{self.pyg_name}/{GEOM_GCN_FOLDER}/")
        else:
            staged = cache_dir / self.pyg_name / GEOM_GCN_FOLDER
            if not (staged / file).is_file():
                raise DataMissingError(
                    f"{self.pyg_name} split=geom-gcn needs {file}: put it in DIR/{self.pyg_name}/{GEOM_GCN_FOLDER}/ "
                    f"and pass --data-root DIR or set {DATA_ENV}=DIR"
                )
        with np.load(staged / file) as arrays:
            try:
                masks = tuple(torch.from_numpy(np.asarray(arrays[k]).astype(bool))
                              for k in ("train_mask", "val_mask", "test_mask"))
            except KeyError as exc:
                raise DataMissingError(f"{staged / file} has no {exc.args[0]} array (expected train_mask, "
                                       "val_mask and test_mask)") from None
        if any(m.shape != (num_nodes,) for m in masks):
            raise DataMissingError(f"{staged / file}: masks of shape {tuple(masks[0].shape)}, expected "
                                   f"({num_nodes},) for {self.pyg_name}")
        return masks


def _parse_options(name: str, options: dict[str, Any]) -> tuple[bool, str, int]:
    """``(normalize_features, split, split_index)``, checked."""
    known = ("normalize_features", "split", "split_index")
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise UsageError(f"{name}: unknown option {unknown[0]!r} (known: {', '.join(known)})")
    normalize = parse_flag(name, "normalize_features", options.get("normalize_features", False))
    split = str(options.get("split", "public")).strip().lower()
    if split not in SPLITS:
        raise UsageError(f"{name}: split={options['split']!r} is not one of {', '.join(SPLITS)} "
                         f"(e.g. {name}:split=geom-gcn,split_index=0)")
    raw_index = options.get("split_index", 0)
    try:
        split_index = int(raw_index)
    except (TypeError, ValueError):
        raise UsageError(f"{name}: split_index={raw_index!r} is not an integer (0 to {GEOM_GCN_SPLITS - 1})") from None
    if "split_index" in options and split != "geom-gcn":
        raise UsageError(f"{name}: split_index={raw_index!r} needs split=geom-gcn "
                         f"(e.g. {name}:split=geom-gcn,split_index={raw_index})")
    if not 0 <= split_index < GEOM_GCN_SPLITS:
        raise UsageError(f"{name}: split_index={split_index} is out of range: the Geom-GCN splits are numbered "
                         f"0 to {GEOM_GCN_SPLITS - 1}")
    return normalize, split, split_index


#: the Planetoid graphs' default teacher: APPNP (Gasteiger et al., ICLR 2019, Sec. 6: K 10, teleport
#: alpha 0.1, dropout 0.5, weight decay 5e-3, lr 0.01) on a 2-layer MLP 256 wide, the parameter count
#: of the GCN 2x256 it replaced. On Cora it scored val 0.816-0.822 / test 0.827-0.836 over three
#: seeds against GCN-2x256's val 0.796-0.806 / test 0.805-0.825, and on PubMed val 0.822-0.826
#: against 0.808-0.820 (docs/teachers.md#the-planetoid-default-appnp-2x256).
PLANETOID_TEACHER = "appnp:2:256:K=10:alpha=0.1:weight_decay=0.005"


class Cora(PlanetoidSpec):
    name = "cora"
    pyg_name = "Cora"
    description = "Cora citation graph: 2,708 nodes, 7 classes, public split 140/500/1000"
    default_teacher = PLANETOID_TEACHER


class CiteSeer(PlanetoidSpec):
    name = "citeseer"
    pyg_name = "CiteSeer"
    description = "CiteSeer citation graph: 3,327 nodes, 6 classes, public split 120/500/1000"
    default_teacher = PLANETOID_TEACHER


class PubMed(PlanetoidSpec):
    name = "pubmed"
    pyg_name = "PubMed"
    description = "PubMed citation graph: 19,717 nodes, 3 classes, public split 60/500/1000"
    default_teacher = PLANETOID_TEACHER


@hookimpl
def gkd_datasets() -> list[DatasetSpec]:
    return [Cora(), CiteSeer(), PubMed()]
