"""Checking a user's graph and giving it a split: shared by the ``file:`` and ``pyg:`` datasets.

Every problem is one :class:`GraphFileError` (a :class:`~gkd_search.errors.UsageError`: one line,
exit code 2) that names the graph (its file, or ``pyg:class=...``), the field and the fix.

Labels: ``y`` holds a class ``0..C-1`` per node, or ``-1`` for a node without a label (it is
never in a split; a message-passing student still reads its features). ``C`` is ``max(y) + 1``
unless given (``classes=C``).

Splits (``split=``):

``auto`` (default)
    the graph's own masks when it has them, else ``per-class``;
``masks``
    the graph's ``train_mask``, ``val_mask``, ``test_mask`` (``[N]``, or ``[N, S]`` with one
    column per split: column ``split_index``);
``per-class``
    20 training and 30 validation nodes of every class, the other labelled nodes test
    (Shchur et al., "Pitfalls of Graph Neural Network Evaluation", 2018, Sec. 4), seeded by
    ``--seed``;
``random``
    a stratified random split: a fraction ``train`` (default 0.6) and ``val`` (0.2) of each
    class's labelled nodes, the rest test, seeded by ``--seed``.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.utils import coalesce, to_undirected

from ..errors import UsageError
from ._files import per_class_split

SPLITS = ("auto", "masks", "per-class", "random")
MASKS = ("train_mask", "val_mask", "test_mask")
#: Shchur et al.'s per-class split
TRAIN_PER_CLASS, VAL_PER_CLASS = 20, 30


class GraphFileError(UsageError):
    """A graph the user gave that cannot be searched; the message names the graph and the field."""


def as_tensor(value: Any, where: str, field: str) -> Tensor:
    """A numpy array or tensor as a tensor (object arrays, strings: an error naming the field)."""
    if isinstance(value, Tensor):
        return value
    import numpy as np

    array = np.asarray(value)
    if array.dtype == object or array.dtype.kind in "USV":
        raise GraphFileError(f"{where}: {field} has dtype {array.dtype}; store numbers (float features, integer "
                             "edges and labels, boolean masks)")
    return torch.from_numpy(np.ascontiguousarray(array))


def _mask(value: Tensor, where: str, field: str, num_nodes: int) -> Tensor:
    if value.dtype != torch.bool:
        if value.is_floating_point() or value.is_complex() or not bool(((value == 0) | (value == 1)).all()):
            raise GraphFileError(f"{where}: {field} must be boolean (or 0/1), got {value.dtype} with other values")
        value = value.bool()
    if value.dim() not in (1, 2) or value.size(0) != num_nodes:
        raise GraphFileError(f"{where}: {field} has shape {list(value.shape)}; expected [{num_nodes}] or "
                             f"[{num_nodes}, splits] for the {num_nodes} nodes of x")
    return value


def check_graph(fields: Mapping[str, Any], where: str, *, classes: int = 0,
                undirected: bool = True) -> tuple[Data, int]:
    """Check ``x``, ``edge_index``, ``y`` and any masks; return a clean :class:`Data` and the
    number of classes.

    ``x`` becomes float32, ``edge_index`` int64 (coalesced; with ``undirected`` every edge gets
    its reverse), ``y`` int64 ``[N]``, masks boolean.

    Raises:
        GraphFileError: a missing key, a wrong shape or dtype, an edge id out of range, a label
            outside ``-1..C-1``, NaN or infinite features, a mask of the wrong shape.
    """
    for key in ("x", "edge_index", "y"):
        if fields.get(key) is None:
            present = ", ".join(sorted(k for k, v in fields.items() if v is not None)) or "nothing"
            raise GraphFileError(f"{where}: missing {key!r} (it has {present}); a graph needs x [N, F], "
                                 "edge_index [2, E] and y [N]")
    x = as_tensor(fields["x"], where, "x")
    if x.is_sparse:
        x = x.to_dense()
    if x.dim() != 2 or x.size(0) == 0 or x.size(1) == 0:
        raise GraphFileError(f"{where}: x has shape {list(x.shape)}; expected [N, F], one row of features per node")
    if x.dtype == torch.bool or x.is_complex() or not (x.is_floating_point() or x.dtype in
                                                        (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)):
        raise GraphFileError(f"{where}: x has dtype {x.dtype}; store real-valued features (float32)")
    x = x.float()
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        row = int(torch.nonzero(bad.any(dim=1))[0])
        raise GraphFileError(f"{where}: x has {int(bad.sum())} NaN or infinite values (first in row {row}); "
                             "impute or drop them before the search")
    num_nodes = int(x.size(0))

    edge_index = as_tensor(fields["edge_index"], where, "edge_index")
    if edge_index.is_floating_point() or edge_index.dtype == torch.bool or edge_index.is_complex():
        raise GraphFileError(f"{where}: edge_index has dtype {edge_index.dtype}; store integer node ids (int64)")
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        hint = " (transpose it: edge_index.t())" if edge_index.dim() == 2 and edge_index.size(1) == 2 else ""
        raise GraphFileError(f"{where}: edge_index has shape {list(edge_index.shape)}; expected [2, E]{hint}")
    edge_index = edge_index.long()
    if edge_index.numel():
        low, high = int(edge_index.min()), int(edge_index.max())
        if low < 0 or high >= num_nodes:
            value = low if low < 0 else high
            raise GraphFileError(f"{where}: edge_index holds node id {value}, outside 0..{num_nodes - 1} "
                                 f"(x has {num_nodes} rows)")
    edge_index = to_undirected(edge_index, num_nodes=num_nodes) if undirected else coalesce(edge_index,
                                                                                             num_nodes=num_nodes)

    y = as_tensor(fields["y"], where, "y")
    if y.dim() == 2 and y.size(1) == 1:
        y = y.view(-1)
    if y.is_floating_point() or y.dtype == torch.bool or y.is_complex():
        raise GraphFileError(f"{where}: y has dtype {y.dtype}; store integer class ids (int64), -1 for unlabelled "
                             "nodes (regression and multi-label tasks are not node classification)")
    if y.dim() != 1 or y.size(0) != num_nodes:
        raise GraphFileError(f"{where}: y has shape {list(y.shape)}; expected [{num_nodes}], one class id per node "
                             "(multi-label targets are not supported)")
    y = y.long()
    labelled = y >= 0
    if not bool(labelled.any()):
        raise GraphFileError(f"{where}: y has no labelled node (every label is -1)")
    num_classes = int(classes) if classes else int(y.max()) + 1
    if int(y.min()) < -1 or int(y.max()) >= num_classes:
        value = int(y.min()) if int(y.min()) < -1 else int(y.max())
        raise GraphFileError(f"{where}: y holds label {value}, outside 0..{num_classes - 1} (-1 marks an unlabelled "
                             f"node)")
    if num_classes < 2:
        raise GraphFileError(f"{where}: y has a single class (0); node classification needs at least 2")

    data = Data(x=x, edge_index=edge_index, y=y, num_nodes=num_nodes)
    for key in MASKS:
        value = fields.get(key)
        if value is not None:
            data[key] = _mask(as_tensor(value, where, key), where, key, num_nodes)
    return data, num_classes


def apply_split(data: Data, num_classes: int, where: str, *, split: str, seed: int, split_index: int = 0,
                train: float = 0.6, val: float = 0.2) -> str:
    """Give ``data`` its ``train_mask``, ``val_mask``, ``test_mask`` (see the module docstring)
    and check them; returns the split used (``masks``, ``per-class`` or ``random``).

    Raises:
        GraphFileError: an unknown split; ``masks`` without masks; a split column that does not
            exist; fractions outside (0, 1); overlapping or empty sets; a masked node without a
            label; a class without a training node.
    """
    if split not in SPLITS:
        raise GraphFileError(f"{where}: split={split!r} is unknown; use one of {', '.join(SPLITS)}")
    has_masks = [getattr(data, key, None) is not None for key in MASKS]
    if split == "auto":
        split = "masks" if all(has_masks) else "per-class"
    y = data.y
    if split == "masks":
        if not all(has_masks):
            missing = [k for k, present in zip(MASKS, has_masks) if not present]
            raise GraphFileError(f"{where}: split=masks but the graph has no {', '.join(missing)}; "
                                 "use split=per-class or split=random")
        masks = []
        for key in MASKS:
            mask = data[key]
            if mask.dim() == 2:
                if not 0 <= split_index < mask.size(1):
                    raise GraphFileError(f"{where}: split_index={split_index} but {key} has {mask.size(1)} split "
                                         f"columns (0..{mask.size(1) - 1})")
                mask = mask[:, split_index]
            masks.append(mask.clone())
    else:
        labelled = torch.nonzero(y >= 0, as_tuple=False).view(-1)
        if split == "per-class":
            train_m, val_m, _ = per_class_split(y[labelled], num_classes, TRAIN_PER_CLASS, VAL_PER_CLASS, seed)
        else:
            if not (0 < train < 1 and 0 < val < 1 and train + val < 1):
                raise GraphFileError(f"{where}: train={train:g} and val={val:g} must be fractions in (0, 1) with "
                                     "train + val < 1 (the rest is test)")
            train_m, val_m = _stratified(y[labelled], num_classes, train, val, seed)
        masks = [torch.zeros(data.num_nodes, dtype=torch.bool) for _ in MASKS]
        masks[0][labelled[train_m]] = True
        masks[1][labelled[val_m]] = True
        masks[2][labelled[~(train_m | val_m)]] = True
    check_split(masks, y, num_classes, where)
    data.train_mask, data.val_mask, data.test_mask = masks
    return split


def _stratified(y: Tensor, num_classes: int, train: float, val: float, seed: int) -> tuple[Tensor, Tensor]:
    """Per class, the first ``round(train * n)`` of a seeded permutation train, the next
    ``round(val * n)`` validation (at least one of each when the class has three nodes)."""
    generator = torch.Generator().manual_seed(seed)
    train_m = torch.zeros(y.numel(), dtype=torch.bool)
    val_m = torch.zeros(y.numel(), dtype=torch.bool)
    for c in range(num_classes):
        idx = torch.nonzero(y == c, as_tuple=False).view(-1)
        idx = idx[torch.randperm(idx.numel(), generator=generator)]
        n = idx.numel()
        n_train = max(1, round(train * n)) if n >= 3 else min(n, 1)
        n_val = max(1, round(val * n)) if n >= 3 else 0
        train_m[idx[:n_train]] = True
        val_m[idx[n_train:n_train + n_val]] = True
    return train_m, val_m


def check_split(masks: list[Tensor], y: Tensor, num_classes: int, where: str) -> None:
    """Raise :class:`GraphFileError` for overlapping or empty sets, a masked node without a label,
    or a class without a training node."""
    names = ("train", "val", "test")
    for mask, name in zip(masks, names):
        if not bool(mask.any()):
            raise GraphFileError(f"{where}: the {name} set is empty; give it nodes, or use split=per-class or "
                                 "split=random")
        unlabelled = int((mask & (y < 0)).sum())
        if unlabelled:
            raise GraphFileError(f"{where}: {unlabelled} {name} nodes have no label (y = -1)")
    for i in range(3):
        for j in range(i + 1, 3):
            both = int((masks[i] & masks[j]).sum())
            if both:
                raise GraphFileError(f"{where}: {both} nodes are in both the {names[i]} and the {names[j]} set; "
                                     "the splits must not overlap")
    counts = torch.bincount(y[masks[0]], minlength=num_classes)
    missing = torch.nonzero(counts == 0, as_tuple=False).view(-1)
    if missing.numel():
        raise GraphFileError(f"{where}: class {int(missing[0])} has no training node ({int(missing.numel())} of "
                             f"{num_classes} classes have none); label some, or pass classes=C if the labels are "
                             "numbered with gaps")


def describe_split(data: Data) -> str:
    return "/".join(str(int(data[k].sum())) for k in MASKS)


def typed_value(text: Any) -> Any:
    """A pass-through option's value: ``true``/``false`` as bool, integers, floats, else the text."""
    if not isinstance(text, str):
        return text
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def options_label(options: Mapping[str, Any], skip: tuple[str, ...] = ()) -> Optional[str]:
    """``key=value`` pairs, sorted, for a dataset's name (``None`` when there are none)."""
    items = [f"{k}={str(v).lower()}" for k, v in sorted(options.items()) if k not in skip]
    return "-".join(items) if items else None
