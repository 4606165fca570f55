"""Any node-classification dataset of ``torch_geometric.datasets``, no plugin needed:
``--dataset pyg:class=CLASS[,name=NAME,split_index=K,split=...,<constructor option>=VALUE]``.

Examples: ``pyg:class=Coauthor,name=CS``, ``pyg:class=Amazon,name=Computers``,
``pyg:class=WikipediaNetwork,name=chameleon,geom_gcn_preprocess=true``.

Files: with a data root (``--data-root`` / ``$GKD_DATA``) the class is built on a writable copy
under ``<cache>/datasets/pyg/<CLASS>/``. When PyG finds its raw files missing there, it calls the
class's ``download``; ours (a subclass made here) copies them from the same place under the data
root (``<data root>/<the class's raw folder>``, e.g. ``DIR/CS/raw/ms_academic_cs.npz``: the
layout PyG itself would make with ``root=DIR``), each file written under a temporary name and
renamed, and never goes to the network; a file missing there too is a one-line
:class:`~gkd_search.errors.DataMissingError` naming it. PyG then processes the copy in the cache.
Without a data root the class downloads as it normally would.

Options besides ``class``: ``name``, ``split`` (``auto``: the dataset's masks when it has them,
else the seeded per-class split; see :mod:`gkd_search.datasets._graph`), ``split_index`` (the
column of ``[N, S]`` masks, default 0), ``train``/``val`` (``split=random``); any other
``key=value`` goes to the class's constructor (``true``/``false`` and numbers are converted).
Not node classification (several graphs, heterogeneous, multi-label or real-valued targets): a
one-line error.
"""

from __future__ import annotations

import difflib
import inspect
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional

from ..errors import DataMissingError
from ..hookspecs import hookimpl
from ..types import DatasetSpec, GraphDataset
from ._graph import MASKS, GraphFileError, apply_split, check_graph, options_label, typed_value

#: options handled here; the others go to the dataset class
OWN_OPTIONS = ("class", "name", "split", "split_index", "train", "val")


def dataset_class(class_name: str, where: str) -> type:
    """``torch_geometric.datasets.<class_name>``, checked to be a dataset class."""
    import torch_geometric.datasets as datasets
    from torch_geometric.data import Dataset

    cls = getattr(datasets, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Dataset)):
        known = [n for n in dir(datasets) if isinstance(getattr(datasets, n), type)
                 and issubclass(getattr(datasets, n), Dataset)]
        close = difflib.get_close_matches(class_name, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; e.g. Coauthor, Amazon, WikipediaNetwork, WebKB"
        raise GraphFileError(f"{where}: torch_geometric.datasets has no dataset class {class_name!r}{hint}")
    return cls


def _offline(cls: type, data_root: Path) -> type:
    """A subclass whose ``download`` copies the missing raw files from ``data_root`` instead."""

    def download(self) -> None:
        relative = Path(os.path.relpath(self.raw_dir, self.root))
        source = data_root / relative
        names = self.raw_file_names
        names = [names] if isinstance(names, str) else list(names)
        missing = [n for n in names if not (source / n).exists()]
        if missing:
            raise DataMissingError(
                f"{cls.__name__} raw files not found: put {', '.join(missing)} in {source}/ (the layout PyG makes "
                f"with root={data_root}), or point --data-root / $GKD_DATA at a folder that has them")
        Path(self.raw_dir).mkdir(parents=True, exist_ok=True)
        for name in names:
            target = Path(self.raw_dir) / name
            target.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".copy-", dir=target.parent))
            try:
                if (source / name).is_dir():
                    shutil.copytree(source / name, staging / "item")
                else:
                    shutil.copyfile(source / name, staging / "item")
                shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
                os.replace(staging / "item", target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)

    return type(cls.__name__, (cls,), {"download": download, "__module__": __name__})


class PygDataset(DatasetSpec):
    """Any node-classification dataset class of ``torch_geometric.datasets`` (module docstring)."""

    name = "pyg"
    description = ("any torch_geometric.datasets node-classification class: pyg:class=CLASS[,name=NAME,split_index=K,"
                   "split=...,OPTION=VALUE]")
    default_teacher = None
    options = {"class": "", "name": "", "split": "auto", "split_index": 0, "train": 0.6, "val": 0.2}
    #: keys not in ``options`` are passed to the dataset class's constructor
    passes_other_options = True

    def load(self, root: Optional[Path], cache_dir: Path, seed: int, **options: Any) -> GraphDataset:
        settings = self.option_values(options)
        class_name = str(settings["class"])
        if not class_name:
            raise GraphFileError("pyg: give the dataset class, e.g. --dataset pyg:class=Coauthor,name=CS")
        where = f"pyg:class={class_name}" + (f",name={settings['name']}" if settings["name"] else "")
        cls = dataset_class(class_name, where)
        kwargs = {k: typed_value(v) for k, v in options.items() if k not in OWN_OPTIONS}
        if settings["name"]:
            kwargs["name"] = str(settings["name"])
        accepted = inspect.signature(cls.__init__).parameters
        if not any(p.kind == p.VAR_KEYWORD for p in accepted.values()):
            unknown = sorted(set(kwargs) - set(accepted) - {"self"})
            if unknown:
                known = [p for p in accepted if p not in ("self", "root", "transform", "pre_transform", "pre_filter",
                                                          "force_reload", "log")]
                raise GraphFileError(f"{where}: {cls.__name__} takes no option {unknown[0]!r} "
                                     f"(its options: {', '.join(known) or 'none'})")
        folder = Path(cache_dir) / "pyg" / cls.__name__
        loader = cls if root is None else _offline(cls, Path(root))
        try:
            dataset = loader(root=str(folder), **kwargs)
        except (DataMissingError, GraphFileError):
            raise
        except TypeError as exc:
            raise GraphFileError(f"{where}: {cls.__name__} could not be built with {kwargs} ({exc})") from None
        except Exception as exc:
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise GraphFileError(f"{where}: {cls.__name__} failed to load ({type(exc).__name__}: {first})") from None
        data = _single_graph(dataset, where)
        fields = {key: data[key] if key in data else None for key in ("x", "edge_index", "y", *MASKS)}
        graph, num_classes = check_graph(fields, where, classes=int(getattr(dataset, "num_classes", 0) or 0),
                                         undirected=False)
        used = apply_split(graph, num_classes, where, split=str(settings["split"]), seed=seed,
                           split_index=int(settings["split_index"]), train=float(settings["train"]),
                           val=float(settings["val"]))
        label = "-".join(filter(None, [cls.__name__.lower(), str(settings["name"]).lower() or None,
                                       options_label({k: v for k, v in kwargs.items() if k != "name"})]))
        if used == "masks" and int(settings["split_index"]):
            label += f"-split{int(settings['split_index'])}"
        elif used != "masks":
            label += f"-{used}"
        source = str(Path(root) / Path(os.path.relpath(dataset.raw_dir, folder))) if root is not None else None
        return GraphDataset(label, graph, num_classes, source=source)


def _single_graph(dataset, where: str):
    from torch_geometric.data import Data

    if len(dataset) != 1:
        raise GraphFileError(f"{where}: holds {len(dataset)} graphs; gkd-search needs one graph whose nodes are "
                             "classified (not graph classification)")
    data = dataset[0]
    if not isinstance(data, Data):
        raise GraphFileError(f"{where}: is a {type(data).__name__} (heterogeneous); gkd-search reads homogeneous "
                             "graphs here (see ogbn-mag for a heterogeneous one)")
    y = getattr(data, "y", None)
    if y is None or y.dim() > 2 or (y.dim() == 2 and y.size(1) > 1) or y.is_floating_point():
        shape = None if y is None else f"{list(y.shape)} {y.dtype}"
        raise GraphFileError(f"{where}: is not node classification (labels y: {shape}; gkd-search needs one integer "
                             "class per node)")
    if getattr(data, "x", None) is None:
        raise GraphFileError(f"{where}: has no node features x; gkd-search's students read node features")
    return data


@hookimpl
def gkd_datasets() -> list[DatasetSpec]:
    return [PygDataset()]
