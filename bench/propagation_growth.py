#!/usr/bin/env python
"""Does a training step grow no faster than the edges? Sizes timed side by side, so the host's
drift cancels.

``bench/propagation.py`` times each graph size in its own process, one after the other; on a
shared VM whose speed drifts by 2x over tens of seconds (``bench/latency_drift.py``) the ratio of
two such measurements carries that drift. Here one process holds a quarter, half and the whole of
an ogbn-arxiv-sized synthetic graph (``synthetic:`` datasets, the sizes of ``bench/propagation.py``)
and a model of each family per size, and times **one step of each size in turn**, round after
round: the steps of one round run within a second or two of each other, and the growth is taken
per round (step at full size / step at a quarter), then its median over the rounds.

As the trial workers run: CSR propagation, one torch thread, freed memory kept in the heap
(:func:`gkd_search.allocator.keep_freed_memory`); two untimed steps per model first.

    python bench/propagation_growth.py                  # random and community order, 9 rounds

Writes ``bench/results/propagation_growth.json`` and a section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from _report import add_data_arguments, publish, stamp  # noqa: E402
from propagation import ARXIV_FAMILIES, ARXIV_SCALES, ORDERS, arxiv_spec  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "propagation_growth.json"
DOCS = ROOT / "docs" / "benchmarks.md"
MARKER = "propagation_growth"


def one_step(model, optimizer, data) -> float:
    start = time.perf_counter()
    optimizer.zero_grad()
    model(data.x, data.edge_index).logits.sum().backward()
    optimizer.step()
    return time.perf_counter() - start


def measure_order(order: str, scales: list[float], rounds: int, data_root: str, cache_dir: str) -> dict[str, Any]:
    import torch

    from gkd_search.loading import load_dataset
    from gkd_search.registry import build_registry, get_plugin_manager

    registry = build_registry(get_plugin_manager(autoload=False))
    graphs = {s: load_dataset(arxiv_spec(s, order), data_root, seed=0, cache_dir=cache_dir) for s in scales}
    families = {}
    for family, layers, hidden in ARXIV_FAMILIES:
        models = {}
        for s, dataset in graphs.items():
            torch.manual_seed(0)
            model = registry.get("family", family).build(dataset.num_features, dataset.num_classes, layers, hidden)
            optimizer = torch.optim.Adam(model.parameters())
            for _ in range(2):  # untimed: build and cache the CSR matrices, as a trial's first epoch does
                one_step(model, optimizer, dataset.data)
            models[s] = (model, optimizer)
        families[f"{family}-{layers}L-{hidden}"] = models
    times: dict[str, dict[str, list[float]]] = {name: {str(s): [] for s in scales} for name in families}
    for r in range(rounds):
        for name, models in families.items():
            for s, (model, optimizer) in models.items():
                times[name][str(s)].append(one_step(model, optimizer, graphs[s].data) * 1e3)
        print(f"{order} round {r + 1}/{rounds}: " + ", ".join(
            f"{name} " + "/".join(f"{times[name][str(s)][-1]:.0f}" for s in scales) + " ms" for name in families),
            flush=True)
    return {"order": order, "nodes": {str(s): g.num_nodes for s, g in graphs.items()},
            "edges": {str(s): int(g.data.edge_index.size(1)) for s, g in graphs.items()}, "step_ms": times}


def render(report: dict[str, Any]) -> str:
    scales = [str(s) for s in report["scales"]]
    small, large = scales[0], scales[-1]
    lines = [f"`python bench/propagation_growth.py` ({report['date'][:10]}, {report['machine']['cpu']}, "
             f"{report['machine']['cores']} cores, nothing else running; raw numbers in "
             "`bench/results/propagation_growth.json`): one process, CSR propagation, one thread, freed memory kept "
             f"(as the trial workers); {report['rounds']} rounds, each timing one training step of every size in "
             f"turn; growth = step at {large}x / step at {small}x arxiv size in the same round.", "",
             f"| order | family | step ms at {' / '.join(scales)}x (medians) | edges grow | step grows, per round: "
             "median (min-max) | no faster than the edges |", "|---|---|---|---|---|---|"]
    verdicts = []
    for o in report["orders"]:
        edges = o["edges"][large] / o["edges"][small]
        for name, by_scale in o["step_ms"].items():
            growth = [b / a for a, b in zip(by_scale[small], by_scale[large])]
            median = statistics.median(growth)
            met = median <= edges
            verdicts.append(met)
            lines.append(f"| {o['order']} | {name} | "
                         f"{' / '.join(f'{statistics.median(by_scale[s]):.0f}' for s in scales)} | {edges:.2f}x | "
                         f"{median:.2f}x ({min(growth):.2f}-{max(growth):.2f}) | {'met' if met else 'NOT met'} |")
    lines += ["", f"- {sum(verdicts)} of {len(verdicts)} (order, family) pairs grow no faster than the edges "
                  "(median over the rounds)."]
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", default=",".join(ORDERS))
    parser.add_argument("--scales", default=",".join(map(str, ARXIV_SCALES)))
    parser.add_argument("--rounds", type=int, default=9)
    add_data_arguments(parser, ROOT)
    parser.add_argument("--render", action="store_true", help="only rewrite the docs section from the results")
    args = parser.parse_args(argv)
    if args.render:
        report = json.loads(RESULTS.read_text())
    else:
        import torch

        from gkd_search.allocator import keep_freed_memory

        torch.set_num_threads(1)
        keep_freed_memory()
        scales = [float(s) for s in args.scales.split(",")]
        orders = [measure_order(o, scales, args.rounds, args.data_root, args.cache_dir) for o in args.orders.split(",")]
        report = {**stamp(), "rounds": args.rounds, "scales": scales, "orders": orders}
    publish(report, RESULTS, DOCS, MARKER, "Propagation growth, sizes side by side", render, save=not args.render)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
