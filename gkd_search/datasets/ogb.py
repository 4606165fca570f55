"""The OGB node-property datasets ogbn-arxiv, ogbn-products and ogbn-mag, with their official splits
and evaluator (Hu et al., "Open Graph Benchmark: Datasets for Machine Learning on Graphs",
NeurIPS 2020).

Loading goes through ``ogb.nodeproppred.PygNodePropPredDataset`` (ogb's own parsing of its raw
csv files, no re-implementation), with four guards around it:

* the data root is read-only: ``DIR/<ogb folder>/`` (``raw/``, ``split/``, ``RELEASE_v*.txt``, all
  ogb reads; ``mapping/`` is not read and not copied) is staged into the cache and ogb processes
  there (:func:`stage_ogb_folder`);
* ogb never downloads or prompts: its download and its "dataset has been updated" check ask
  ``input()``, so every file is checked first and a missing one is a :class:`DataMissingError`
  naming it, its folder and the download URL;
* ogb's ``torch.load`` of its processed file runs under torch's default ``weights_only=True``,
  with the three PyG classes a pickled ``Data`` needs allow-listed for that call only;
* ogb's import-time version check (a background request to PyPI through the ``outdated``
  package) is skipped (:func:`_import_nodeproppred`).

The official metric is OGB's ``Evaluator`` (accuracy for these three), wrapped as
:class:`OgbEvaluator` and set as :attr:`GraphDataset.evaluator`.
"""

from __future__ import annotations

import contextlib
import csv
import importlib
import importlib.util
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, ClassVar, Mapping, Optional

import torch
from torch import Tensor
from torch_geometric.data import Data

from ..errors import DataMissingError, UsageError
from ..hookspecs import hookimpl
from ..types import DatasetSpec, GraphDataset
from ._files import DATA_ENV, pyg_safe_globals
from .hetero import typed_graph


def ogb_meta(name: str) -> dict[str, str]:
    """The dataset's column of ogb's ``nodeproppred/master.csv`` (version, url, split, ...),
    read without importing ogb."""
    spec = importlib.util.find_spec("ogb")
    if spec is None or spec.origin is None:
        raise UsageError(f"{name} needs the ogb package: pip install 'ogb>=1.3.6'")
    with open(Path(spec.origin).parent / "nodeproppred" / "master.csv", newline="") as f:
        rows = list(csv.reader(f))
    column = rows[0].index(name)
    return {row[0]: row[column] for row in rows[1:]}


def _import_nodeproppred() -> Any:
    """``ogb.nodeproppred``, imported without ogb's version check.

    ``import ogb`` starts a non-daemon thread asking PyPI for ogb's newest version when the
    ``outdated`` package is importable; with ``outdated`` masked for the first import, ogb skips
    the check (ogb 1.3.6, ``ogb/version.py``). Nothing else of ogb uses ``outdated``.
    """
    if "ogb" not in sys.modules and "outdated" not in sys.modules:
        sys.modules["outdated"] = None  # type: ignore[assignment]  # `from outdated import ...` -> ImportError
        try:
            importlib.import_module("ogb")
        finally:
            del sys.modules["outdated"]
    return importlib.import_module("ogb.nodeproppred")


# ------------------------------------------------------------------------------ staging


def _manifest(folder: Path) -> dict[str, int]:
    """``{relative path: size}`` of what ogb reads in an OGB folder (``raw/``, ``split/``, ``RELEASE_v*.txt``)."""
    files: dict[str, int] = {}
    for release in folder.glob("RELEASE_v*.txt"):
        files[release.name] = release.stat().st_size
    for sub in ("raw", "split"):
        for path in sorted((folder / sub).rglob("*")):
            if path.is_file():
                files[str(path.relative_to(folder))] = path.stat().st_size
    return files


def stage_ogb_folder(source: Path, target: Path) -> None:
    """Copy ``source``'s ``raw/``, ``split/`` and ``RELEASE_v*.txt`` to ``target`` unless the
    copy there already matches (same files, same sizes).

    The copy is made in a temporary sibling folder and renamed into place, so an interrupted copy
    leaves no half-filled cache; re-staging replaces the whole folder, ogb's ``processed/``
    included, so ogb processes the new files. ``source`` is only read.
    """
    wanted = _manifest(source)
    if target.is_dir() and _manifest(target) == wanted:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        for rel in wanted:
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / rel, staging / rel)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# ------------------------------------------------------------------------------ evaluator


class OgbEvaluator:
    """``evaluator(logits, y, mask) -> float``: OGB's ``Evaluator(name)`` on the ``mask`` nodes.

    The prediction is ``logits.argmax(-1)``, the result ``Evaluator.eval(...)["acc"]``, a fraction
    (``nan`` for an empty mask, like :func:`gkd_search.distill.loop.accuracy`).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._evaluator = _import_nodeproppred().Evaluator(name)
        if self._evaluator.eval_metric != "acc":
            raise UsageError(f"{name}: OGB's metric is {self._evaluator.eval_metric!r}; only accuracy is supported")

    def __call__(self, logits: Tensor, y: Tensor, mask: Tensor) -> float:
        if int(mask.sum()) == 0:
            return float("nan")
        y_true = y[mask].reshape(-1, 1).cpu()
        y_pred = logits[mask].argmax(dim=-1).reshape(-1, 1).cpu()
        return float(self._evaluator.eval({"y_true": y_true, "y_pred": y_pred})["acc"])

    def __repr__(self) -> str:
        return f"OgbEvaluator({self.name!r})"


# ------------------------------------------------------------------------------ datasets


def _flag(dataset: str, key: str, value: Any) -> bool:
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise UsageError(f"{dataset}: option {key}={value!r} must be true or false")


class OgbSpec(DatasetSpec):
    """An OGB node-property dataset read by ogb's ``PygNodePropPredDataset``.

    Layout under ``--data-root DIR``: ``DIR/<ogb name with _ for ->/`` is the unzipped download,
    renamed (``arxiv.zip`` unzips to ``arxiv/``, ogb reads ``ogbn_arxiv/``).
    """

    ogb_name: ClassVar[str]
    #: booleans accepted after the name (``ogbn-arxiv:undirected=false``)
    options: ClassVar[Mapping[str, Any]] = {}

    @property
    def dir_name(self) -> str:
        return self.ogb_name.replace("-", "_")

    def meta(self) -> dict[str, str]:
        return ogb_meta(self.ogb_name)

    def required_files(self) -> list[str]:
        """Paths (relative to the dataset folder) ogb reads for this dataset."""
        meta = self.meta()
        split = f"split/{meta['split']}"
        files = ["raw/edge.csv.gz", "raw/num-node-list.csv.gz", "raw/num-edge-list.csv.gz", "raw/node-label.csv.gz"]
        if meta["has_node_attr"] == "True":
            files.append("raw/node-feat.csv.gz")
        if meta["has_edge_attr"] == "True":
            files.append("raw/edge-feat.csv.gz")
        if meta["additional node files"] != "None":
            files += [f"raw/{f}.csv.gz" for f in meta["additional node files"].split(",")]
        files += [f"{split}/{part}.csv.gz" for part in ("train", "valid", "test")]
        return [*files, f"RELEASE_v{meta['version']}.txt"]

    def _how_to_get(self, meta: Mapping[str, str]) -> str:
        return (f"download {meta['url']}, unzip it and rename its folder {meta['download_name']}/ to "
                f"{self.dir_name}/")

    def _check(self, folder: Path, from_root: bool) -> None:
        meta = self.meta()
        if not folder.is_dir():
            where = f"{folder} does not exist" if from_root else f"no {self.dir_name}/ in the cache {folder.parent}"
            raise DataMissingError(
                f"{self.ogb_name} data not found: {where} (gkd-search never downloads OGB data: "
                f"{self._how_to_get(meta)} in DIR and pass --data-root DIR or set {DATA_ENV}=DIR)"
            )
        missing = [f for f in self.required_files() if not (folder / f).is_file()]
        if missing:
            raise DataMissingError(
                f"{self.ogb_name} data incomplete: put {', '.join(missing)} in {folder}/ "
                f"(the files of {meta['url']}, version {meta['version']}), "
                f"or point --data-root / ${DATA_ENV} at a folder that has {self.dir_name}/"
            )

    def open(self, root: Optional[Path], cache_dir: Path) -> Any:
        """Stage the files and return ogb's ``PygNodePropPredDataset`` (processed in ``cache_dir``)."""
        target = cache_dir / self.dir_name
        if root is not None:
            self._check(root / self.dir_name, from_root=True)
            stage_ogb_folder(root / self.dir_name, target)
        else:
            self._check(target, from_root=False)
        nodeproppred = _import_nodeproppred()
        # ogb prints progress on stdout; keep stdout for the program's own output
        with torch.serialization.safe_globals(pyg_safe_globals()), contextlib.redirect_stdout(sys.stderr), \
                warnings.catch_warnings():
            # ogb wraps pandas' read-only arrays with torch.from_numpy; it only reads them
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            try:
                return nodeproppred.PygNodePropPredDataset(self.ogb_name, root=str(cache_dir))
            except (RuntimeError, FileNotFoundError) as exc:  # ogb: 'No necessary file'
                raise DataMissingError(f"{self.ogb_name}: ogb could not read {target}/ ({exc}); "
                                       f"{self._how_to_get(self.meta())}") from None

    def _parse_options(self, options: Mapping[str, Any]) -> dict[str, bool]:
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            known = ", ".join(self.options) or "none"
            raise UsageError(f"{self.ogb_name}: unknown option {unknown[0]!r} (known: {known})")
        return {key: _flag(self.ogb_name, key, options.get(key, default)) for key, default in self.options.items()}


def _masks(split: Mapping[str, Tensor], n: int) -> dict[str, Tensor]:
    masks = {}
    for ours, theirs in (("train", "train"), ("val", "valid"), ("test", "test")):
        mask = torch.zeros(n, dtype=torch.bool)
        mask[split[theirs].long()] = True
        masks[ours] = mask
    return masks


class OgbHomogeneous(OgbSpec):
    """ogbn-arxiv / ogbn-products: ``x``, ``edge_index``, ``y`` (``[N]``) and the official split."""

    def load(self, root: Optional[Path], cache_dir: Path, seed: int, **options: Any) -> GraphDataset:
        from torch_geometric.utils import to_undirected

        flags = self._parse_options(options)
        dataset = self.open(root, cache_dir)
        raw = dataset[0]
        n = int(raw.num_nodes)
        edge_index = raw.edge_index
        name = self.name
        if "undirected" in flags:
            if flags["undirected"]:
                edge_index = to_undirected(edge_index, num_nodes=n)
            else:
                name = f"{self.name}-directed"
        masks = _masks(dataset.get_idx_split(), n)
        data = Data(x=raw.x.float(), edge_index=edge_index, y=raw.y.reshape(-1).long(), num_nodes=n,
                    train_mask=masks["train"], val_mask=masks["val"], test_mask=masks["test"])
        return GraphDataset(name, data, int(dataset.num_classes), evaluator=OgbEvaluator(self.ogb_name))


class OgbnArxiv(OgbHomogeneous):
    """ogbn-arxiv: 169,343 arXiv CS papers, 128-d word2vec features, 40 subject areas, split by
    year (train up to 2017, valid 2018, test 2019).

    The citation graph is directed; with ``undirected`` (default) each citation also gets its
    reverse (``to_undirected``), as OGB's and PyG's arxiv examples do (``ToSparseTensor`` then
    ``adj_t.to_symmetric()``): a paper then also reads the papers that cite it.

    The default teacher is GraphSAGE 3x256, OGB's SAGE baseline shape, not a GAT: a full-batch
    GAT on arxiv keeps ``E x heads`` attention messages per layer (2.3 M edges after
    symmetrisation) for the backward pass, many GB on a CPU; pass ``--teacher gat:3:64:heads=4``
    where memory allows.
    """

    name = "ogbn-arxiv"
    ogb_name = "ogbn-arxiv"
    description = "OGB arXiv citations: 169,343 nodes, 40 classes, time split; option undirected (default true)"
    default_teacher = "sage:3:256"
    options = {"undirected": True}


class OgbnProducts(OgbHomogeneous):
    """ogbn-products: 2,449,029 Amazon products, co-purchase edges (stored once, ogb adds the
    reverse), 100-d features, 47 categories, split by sales rank."""

    name = "ogbn-products"
    ogb_name = "ogbn-products"
    description = "OGB Amazon co-purchases: 2,449,029 nodes, 47 classes, sales-rank split"
    default_teacher = "sage:3:256"


#: ogbn-mag's relations (its ``triplet-type-list.csv.gz``)
MAG_RELATIONS = (
    ("author", "affiliated_with", "institution"),
    ("author", "writes", "paper"),
    ("paper", "cites", "paper"),
    ("paper", "has_topic", "field_of_study"),
)


class OgbnMag(OgbSpec):
    """ogbn-mag: papers (736,389, 128-d features, 349 venues, the target), authors, institutions
    and fields of study with four relations, converted by :func:`typed_graph`: target papers
    first, reverse relations added (option ``reverse``, default true: 8 relation types), features
    of the other types filled from their neighbours. The split is OGB's, by year, on papers."""

    name = "ogbn-mag"
    ogb_name = "ogbn-mag"
    description = "OGB MAG (heterogeneous): 1,939,743 nodes, papers 349 classes, time split; option reverse"
    default_teacher = "rgcn:2:64"
    options = {"reverse": True}
    target = "paper"

    def required_files(self) -> list[str]:
        meta = self.meta()
        split = f"split/{meta['split']}"
        files = ["raw/num-node-dict.csv.gz", "raw/triplet-type-list.csv.gz", "raw/nodetype-has-label.csv.gz",
                 f"raw/node-label/{self.target}/node-label.csv.gz", f"raw/node-feat/{self.target}/node-feat.csv.gz"]
        for triplet in MAG_RELATIONS:
            folder = "raw/relations/" + "___".join(triplet)
            files += [f"{folder}/edge.csv.gz", f"{folder}/num-edge-list.csv.gz"]
        files.append(f"{split}/nodetype-has-split.csv.gz")
        files += [f"{split}/{self.target}/{part}.csv.gz" for part in ("train", "valid", "test")]
        return [*files, f"RELEASE_v{meta['version']}.txt"]

    def load(self, root: Optional[Path], cache_dir: Path, seed: int, **options: Any) -> GraphDataset:
        flags = self._parse_options(options)
        dataset = self.open(root, cache_dir)
        raw = dataset[0]
        split = dataset.get_idx_split()
        masks = {ours: split[theirs][self.target] for ours, theirs in (("train", "train"), ("val", "valid"),
                                                                         ("test", "test"))}
        data, relation_names = typed_graph(raw.x_dict, raw.edge_index_dict, raw.num_nodes_dict, self.target,
                                           raw.y_dict[self.target], masks, add_reverse=flags["reverse"])
        name = self.name if flags["reverse"] else f"{self.name}-noreverse"
        return GraphDataset(name, data, int(dataset.num_classes), evaluator=OgbEvaluator(self.ogb_name),
                            relation_names=relation_names)


@hookimpl
def gkd_datasets() -> list[DatasetSpec]:
    return [OgbnArxiv(), OgbnProducts(), OgbnMag()]

