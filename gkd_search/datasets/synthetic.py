"""A seeded synthetic node-classification graph of any size, for scale tests.

Nodes get uniform random classes; features are a class centroid plus Gaussian noise; each edge
joins two nodes of the same class with probability ``homophily`` (else two random nodes), and the
graph is made undirected. Usage: ``--dataset synthetic:nodes=20000,edges=100000,features=64,classes=8``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch
from torch_geometric.data import Data
from torch_geometric.utils import coalesce, to_undirected

from ..errors import UsageError
from ..hookspecs import hookimpl
from ..types import DatasetSpec, GraphDataset
from ._files import per_class_split


def make_synthetic_graph(nodes: int, edges: int, features: int, classes: int, *, seed: int,
                         homophily: float = 0.8, noise: float = 1.0) -> Data:
    """Return a :class:`Data` with about ``edges`` directed edges (``edges / 2`` undirected pairs)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (nodes,), generator=g)
    centroids = torch.randn(classes, features, generator=g)
    x = centroids[y] + noise * torch.randn(nodes, features, generator=g)
    pairs = max(edges // 2, 1)
    src = torch.randint(0, nodes, (pairs,), generator=g)
    # same-class partner: a random node of the source's class, via a class-sorted index
    order = torch.argsort(y)
    counts = torch.bincount(y, minlength=classes)
    starts = torch.cumsum(counts, 0) - counts
    cls = y[src]
    offset = (torch.rand(pairs, generator=g) * counts[cls].clamp(min=1)).long()
    same = order[(starts[cls] + offset).clamp(max=nodes - 1)]
    other = torch.randint(0, nodes, (pairs,), generator=g)
    dst = torch.where(torch.rand(pairs, generator=g) < homophily, same, other)
    keep = src != dst
    edge_index = to_undirected(torch.stack([src[keep], dst[keep]]), num_nodes=nodes)
    edge_index = coalesce(edge_index, num_nodes=nodes)
    return Data(x=x, edge_index=edge_index, y=y, num_nodes=nodes)


class Synthetic(DatasetSpec):
    name = "synthetic"
    description = "seeded synthetic graph; options nodes, edges, features, classes, homophily"
    default_teacher = "gcn:2:64"
    options = {"nodes": 2000, "edges": 10000, "features": 64, "classes": 5, "homophily": 0.8}

    def load(self, root: Optional[Path], cache_dir: Path, seed: int, **options: Any) -> GraphDataset:
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise UsageError(f"synthetic: unknown option {unknown[0]!r} (known: {', '.join(self.options)})")
        cfg = {**self.options, **options}
        try:
            nodes, edges, features, classes = (int(cfg[k]) for k in ("nodes", "edges", "features", "classes"))
            homophily = float(cfg["homophily"])
        except ValueError as exc:
            raise UsageError(f"synthetic: option values must be numbers ({exc})") from None
        if min(nodes, edges, features) < 1 or classes < 2 or not 0 <= homophily <= 1:
            raise UsageError("synthetic: nodes, edges, features must be >= 1, classes >= 2, 0 <= homophily <= 1")
        if nodes < classes * 60:
            raise UsageError(f"synthetic: nodes={nodes} is too few for {classes} classes; use at least {classes * 60}")
        data = make_synthetic_graph(nodes, edges, features, classes, seed=seed, homophily=homophily)
        data.train_mask, data.val_mask, data.test_mask = per_class_split(data.y, classes, 20, 30, seed)
        label = f"synthetic-{nodes}n-{edges}e-{features}f-{classes}c"
        return GraphDataset(label, data, classes)


@hookimpl
def gkd_datasets() -> list[DatasetSpec]:
    return [Synthetic()]
