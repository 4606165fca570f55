"""One training step (forward, backward, Adam) of the built-in families, with the edge-list
message passing and dense features (``gkd_search.sparse.disabled()``, as before issue 14) and
with CSR propagation and, where the features are sparse enough, CSR features; one torch thread.

    python bench/propagation.py [--datasets cora,pubmed,photo] [--steps 8]

Prints one line per dataset and family. The numbers quoted in ``docs/large-graphs.md`` were
taken with it on the shared 2-core machine (noisy); ogbn-arxiv sizes are not covered here.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from gkd_search import sparse
from gkd_search.registry import build_registry, get_plugin_manager

FAMILIES = [("gcn", 2, 256), ("sage", 2, 64), ("gcnii", 8, 64), ("appnp", 2, 64), ("sgc", 2, 64)]


def step_seconds(model, data, steps: int) -> float:
    optimizer = torch.optim.Adam(model.parameters())
    for i in range(steps + 2):  # two untimed steps build (and cache) the CSR matrices
        if i == 2:
            start = time.perf_counter()
        optimizer.zero_grad()
        model(data.x, data.edge_index).logits.sum().backward()
        optimizer.step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="cora,pubmed,photo")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--data-root", default=os.environ.get("GKD_DATA", "data"))
    parser.add_argument("--cache-dir", default=".cache/bench-propagation")
    args = parser.parse_args()
    torch.set_num_threads(1)
    registry = build_registry(get_plugin_manager(autoload=False))
    for name in args.datasets.split(","):
        dataset = registry.get("dataset", name).load(Path(args.data_root), Path(args.cache_dir), seed=0)
        data = dataset.data
        density = float((data.x != 0).float().mean())
        for family, layers, hidden in FAMILIES:
            torch.manual_seed(0)
            model = registry.get("family", family).build(dataset.num_features, dataset.num_classes, layers, hidden)
            sparse.clear_cache()
            after = step_seconds(model, data, args.steps)
            with sparse.disabled():
                before = step_seconds(model, data, args.steps)
            print(f"{name} (features {density:.1%} non-zero) {family}:{layers}:{hidden}: "
                  f"edge-list {before * 1e3:.1f} ms, CSR {after * 1e3:.1f} ms ({before / after:.1f}x)", flush=True)


if __name__ == "__main__":
    main()
