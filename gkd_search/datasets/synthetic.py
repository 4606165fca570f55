"""A seeded synthetic node-classification graph of any size, for scale tests.

Nodes get uniform random classes; features are a class centroid plus Gaussian noise; each edge
joins two nodes of the same class with probability ``homophily`` (else two random nodes), and the
graph is made undirected. Usage: ``--dataset synthetic:nodes=20000,edges=100000,features=64,classes=8``.

``order`` is how node ids are laid out in memory, which decides how cache-friendly message passing
is on a large graph (``docs/benchmarks.md``, "Propagation"): ``random`` (the default) numbers the
nodes at random, so a node's neighbours are anywhere in the feature matrix; ``community`` numbers
them class by class, so the same-class neighbours (a share ``homophily`` of the edges) lie in one
contiguous block, as in real graphs whose ids follow crawl, time or community order. The graph is
the same up to the renumbering.
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

#: ``order``: node ids at random, or grouped class by class (see the module docstring)
ORDERS = ("random", "community")


def make_synthetic_graph(nodes: int, edges: int, features: int, classes: int, *, seed: int,
                         homophily: float = 0.8, noise: float = 1.0, order: str = "random") -> Data:
    """Return a :class:`Data` with about ``edges`` directed edges (``edges / 2`` undirected pairs),
    its nodes numbered as ``order`` says."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (nodes,), generator=g)
    centroids = torch.randn(classes, features, generator=g)
    x = centroids[y] + noise * torch.randn(nodes, features, generator=g)
    pairs = max(edges // 2, 1)
    src = torch.randint(0, nodes, (pairs,), generator=g)
    # same-class partner: a random node of the source's class, via a class-sorted index
    class_sorted = torch.argsort(y)
    counts = torch.bincount(y, minlength=classes)
    starts = torch.cumsum(counts, 0) - counts
    cls = y[src]
    offset = (torch.rand(pairs, generator=g) * counts[cls].clamp(min=1)).long()
    same = class_sorted[(starts[cls] + offset).clamp(max=nodes - 1)]
    other = torch.randint(0, nodes, (pairs,), generator=g)
    dst = torch.where(torch.rand(pairs, generator=g) < homophily, same, other)
    keep = src != dst
    edge_index = torch.stack([src[keep], dst[keep]])
    if order == "community":  # renumber class by class: new node i is old node by_class[i]
        by_class = torch.argsort(y, stable=True)
        new_id = torch.empty_like(by_class)
        new_id[by_class] = torch.arange(nodes)
        x, y, edge_index = x[by_class], y[by_class], new_id[edge_index]
    edge_index = coalesce(to_undirected(edge_index, num_nodes=nodes), num_nodes=nodes)
    return Data(x=x, edge_index=edge_index, y=y, num_nodes=nodes)


class Synthetic(DatasetSpec):
    name = "synthetic"
    description = "seeded synthetic graph; options nodes, edges, features, classes, homophily, order (random, community)"
    default_teacher = "gcn:2:64"
    options = {"nodes": 2000, "edges": 10000, "features": 64, "classes": 5, "homophily": 0.8, "order": "random"}

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
        order = str(cfg["order"])
        if order not in ORDERS:
            raise UsageError(f"synthetic: order={order!r} is not one of {', '.join(ORDERS)}")
        data = make_synthetic_graph(nodes, edges, features, classes, seed=seed, homophily=homophily, order=order)
        data.train_mask, data.val_mask, data.test_mask = per_class_split(data.y, classes, 20, 30, seed)
        label = f"synthetic-{nodes}n-{edges}e-{features}f-{classes}c" + ("" if order == "random" else f"-{order}")
        return GraphDataset(label, data, classes)


@hookimpl
def gkd_datasets() -> list[DatasetSpec]:
    return [Synthetic()]
