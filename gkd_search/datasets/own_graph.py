"""A graph of the user's own, from a file: ``--dataset PATH`` or ``--dataset file:path=PATH[,...]``.

Formats:

``.pt``
    a :class:`torch_geometric.data.Data` (or a dict of tensors) written with ``torch.save``,
    read with ``torch.load(weights_only=True)``, only PyG's ``Data`` classes allow-listed;
``.npz``
    ``numpy.savez`` arrays ``x`` ``[N, F]``, ``edge_index`` ``[2, E]``, ``y`` ``[N]`` and
    optional boolean ``train_mask``, ``val_mask``, ``test_mask`` (read without pickle).

Options: ``split`` (``auto``, ``masks``, ``per-class``, ``random``; see
:mod:`gkd_search.datasets._graph`), ``train`` and ``val`` (fractions for ``split=random``),
``split_index`` (the column of ``[N, S]`` masks), ``undirected`` (default ``true``: every edge
also gets its reverse, as PyG's citation and co-purchase graphs are stored), ``classes`` (the
number of classes when labels are numbered with gaps). The file is only read, never written.

The graph is named ``<file stem>-<hash>``, the hash being the first 10 hex digits of the SHA-256
of its features, edges (after ``undirected``) and labels, so a changed file never reuses a cached
teacher or latency table, and the same graph as ``.pt`` or ``.npz`` gives the same name.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from ..hookspecs import hookimpl
from ..types import DatasetSpec, GraphDataset
from ._files import pyg_safe_globals
from ._graph import MASKS, GraphFileError, apply_split, check_graph

SUFFIXES = (".pt", ".npz")


def read_graph_file(path: Path) -> dict[str, Any]:
    """The fields of a ``.pt`` or ``.npz`` graph file (not yet checked).

    Raises:
        GraphFileError: a missing file, an unknown suffix, or a file that is not a graph.
    """
    if not path.is_file():
        raise GraphFileError(f"{path}: no such file (give an existing .pt or .npz graph)")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        import numpy as np

        try:
            with np.load(path, allow_pickle=False) as arrays:
                return {key: arrays[key] for key in arrays.files}
        except ValueError as exc:  # object arrays need pickle, which is not allowed
            raise GraphFileError(f"{path}: an array needs pickle to load ({exc}); store plain numeric arrays") from None
        except OSError as exc:
            raise GraphFileError(f"{path}: not a readable .npz file ({exc})") from None
    if suffix == ".pt":
        try:
            with torch.serialization.safe_globals(pyg_safe_globals()):
                obj = torch.load(path, weights_only=True, map_location="cpu")
        except Exception as exc:
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            raise GraphFileError(f"{path}: not a torch_geometric Data or a dict of tensors that torch.load can read "
                                 f"with weights_only=True ({first})") from None
        if isinstance(obj, Mapping):
            return dict(obj)
        from torch_geometric.data import Data

        if isinstance(obj, Data):
            return {key: obj[key] for key in obj.keys()}
        raise GraphFileError(f"{path}: holds a {type(obj).__name__}; save a torch_geometric Data or a dict of tensors")
    raise GraphFileError(f"{path}: unknown graph file type {suffix!r}; use {' or '.join(SUFFIXES)}")


def graph_hash(data) -> str:
    """First 10 hex digits of the SHA-256 of ``x``, ``edge_index`` and ``y``."""
    digest = hashlib.sha256()
    for key in ("x", "edge_index", "y"):
        tensor = data[key].contiguous()
        digest.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:10]


class GraphFile(DatasetSpec):
    """A user's graph in a ``.pt`` or ``.npz`` file (see the module docstring)."""

    name = "file"
    description = "your own graph: file:path=GRAPH.pt|.npz[,split=auto|masks|per-class|random,train=,val=,undirected=]"
    default_teacher = None
    options = {"path": "", "split": "auto", "train": 0.6, "val": 0.2, "split_index": 0, "undirected": True,
               "classes": 0}

    def load(self, root: Optional[Path], cache_dir: Path, seed: int, **options: Any) -> GraphDataset:
        settings = self.option_values(options)
        if not settings["path"]:
            raise GraphFileError("file: give the graph's path, e.g. --dataset file:path=graph.npz or --dataset graph.npz")
        path = Path(str(settings["path"])).expanduser()
        fields = read_graph_file(path)
        data, num_classes = check_graph({k: fields.get(k) for k in ("x", "edge_index", "y", *MASKS)}, str(path),
                                        classes=int(settings["classes"]), undirected=bool(settings["undirected"]))
        apply_split(data, num_classes, str(path), split=str(settings["split"]), seed=seed,
                    split_index=int(settings["split_index"]), train=float(settings["train"]),
                    val=float(settings["val"]))
        name = f"{_slug(path.stem)}-{graph_hash(data)}"
        return GraphDataset(name, data, num_classes, source=str(path.resolve()))


def _slug(text: str) -> str:
    """A file stem usable in a dataset name (lower case; ``:`` ``,`` ``/`` and spaces become ``-``)."""
    cleaned = "".join(c if c.isalnum() or c in "-_." else "-" for c in text.lower()).strip("-")
    return cleaned or "graph"


@hookimpl
def gkd_datasets() -> list[DatasetSpec]:
    return [GraphFile()]
