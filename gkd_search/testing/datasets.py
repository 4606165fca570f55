"""The dataset contract: :func:`check_dataset`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch

from ..types import GraphDataset


def _snapshot(root: Optional[Path]) -> dict[str, tuple[int, int]]:
    if root is None or not Path(root).exists():
        return {}
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(Path(root).rglob("*")) if p.is_file()}


def check_dataset(spec: Any, root: Optional[Path], cache_dir: Path, *, seed: int = 0, **options: Any) -> GraphDataset:
    """The contract every dataset meets; returns the loaded :class:`~gkd_search.types.GraphDataset`.

    ``spec.load(root, cache_dir, seed, **options)`` must return a ``GraphDataset`` whose ``data``
    has float ``x [N, F]``, a long ``edge_index [2, E]`` within ``[0, N)``, ``y [N]`` with labels
    in ``[0, num_classes)`` on every split node, and boolean, pairwise disjoint, non-empty
    ``train_mask``/``val_mask``/``test_mask``; a heterogeneous graph's ``edge_type [E]``,
    ``node_type [N]`` and ``target_mask [N]`` (split nodes are target nodes). A second load
    (from the cache) gives the same graph, and nothing under ``root`` is written.
    """
    before = _snapshot(root)
    dataset = spec.load(root, cache_dir, seed, **options)
    assert isinstance(dataset, GraphDataset), f"dataset {spec.name!r}: load returned a {type(dataset).__name__}"
    d = dataset.data
    where = f"dataset {spec.name!r} ({dataset.name})"
    n = dataset.num_nodes
    assert d.x.dim() == 2 and d.x.size(0) == n and d.x.is_floating_point(), f"{where}: x must be a float [N, F] tensor"
    assert d.edge_index.dim() == 2 and d.edge_index.size(0) == 2 and d.edge_index.dtype == torch.long, (
        f"{where}: edge_index must be a long [2, E] tensor")
    if d.edge_index.numel():
        assert int(d.edge_index.min()) >= 0 and int(d.edge_index.max()) < n, f"{where}: edge_index points outside [0, N)"
    assert dataset.num_classes >= 2, f"{where}: num_classes is {dataset.num_classes}"
    masks = {}
    for name in ("train_mask", "val_mask", "test_mask"):
        mask = getattr(d, name, None)
        assert mask is not None and mask.dtype == torch.bool and tuple(mask.shape) == (n,), f"{where}: {name} must be a bool [N] tensor"
        assert bool(mask.any()), f"{where}: {name} is empty"
        masks[name] = mask
    assert not bool((masks["train_mask"] & masks["val_mask"]).any() | (masks["train_mask"] & masks["test_mask"]).any()
                    | (masks["val_mask"] & masks["test_mask"]).any()), f"{where}: the split masks overlap"
    labelled = masks["train_mask"] | masks["val_mask"] | masks["test_mask"]
    labels = d.y[labelled]
    assert int(labels.min()) >= 0 and int(labels.max()) < dataset.num_classes, f"{where}: a split node's label is outside [0, C)"
    if dataset.is_heterogeneous:
        assert d.edge_type.shape == (d.edge_index.size(1),), f"{where}: edge_type must be [E]"
        assert getattr(d, "node_type", None) is not None and d.node_type.shape == (n,), f"{where}: node_type must be [N]"
        target = getattr(d, "target_mask", None)
        assert target is not None and target.dtype == torch.bool, f"{where}: a heterogeneous graph needs a bool target_mask"
        assert not bool((labelled & ~target).any()), f"{where}: a split node is not a target node"
    again = spec.load(root, cache_dir, seed, **options)
    assert again.fingerprint() == dataset.fingerprint(), f"{where}: a second load gives a different graph"
    assert _snapshot(root) == before, f"{where}: load wrote into the read-only root {root}"
    return dataset
