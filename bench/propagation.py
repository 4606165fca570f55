#!/usr/bin/env python
"""One training step (forward, backward, Adam) of the built-in families, before and after issue 14:
the edge-list message passing with dense features (``gkd_search.sparse.disabled()``, as before)
against CSR propagation with, where the features are sparse enough, CSR features.

Two parts, each in a fresh process per (graph, allocator) so that one measurement's heap does
not shape the next:

* ``datasets``: Cora, PubMed and Photo, the families GCN, GraphSAGE, GCNII, APPNP and SGC.
* ``arxiv``: seeded synthetic graphs with ogbn-arxiv's node and edge counts (169,343 nodes,
  1,166,243 edges, 128 features, 40 classes; ``synthetic:`` datasets), half and a quarter of it,
  for GCN, GraphSAGE and GCNII (the sizes of ``bench/scale.py``); each run twice, with glibc's
  default allocator settings and with ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=<16 GiB>``
  (freed memory stays in the heap), the question ``docs/large-graphs.md`` left open.

Each step is timed with one torch thread, the median of ``--steps`` steps after two untimed ones
(which build and cache the CSR matrices, as the first epoch of a trial does).

Usage::

    python bench/propagation.py                   # both parts (about 15 min on 2 cores)
    python bench/propagation.py --part datasets
    python bench/propagation.py --render          # rewrite the docs section from the results

Writes ``bench/results/propagation.json`` and the section of ``docs/benchmarks.md`` between its
markers. The sizes run one after the other here, so their ratio carries the host's drift;
``bench/propagation_growth.py`` times them side by side for the growth question.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from _report import stamp, write_section  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "propagation.json"
DOCS = ROOT / "docs" / "benchmarks.md"
MARKER = "propagation"
FAMILIES = [("gcn", 2, 256), ("sage", 2, 64), ("gcnii", 8, 64), ("appnp", 2, 64), ("sgc", 2, 64)]
ARXIV_FAMILIES = [("gcn", 2, 64), ("sage", 2, 64), ("gcnii", 4, 64)]
ARXIV_NODES, ARXIV_EDGES = 169_343, 1_166_243
ARXIV_SCALES = (0.25, 0.5, 1.0)
#: the allocator settings compared: glibc's defaults; freed memory kept through the environment
#: at start-up; the same through ``gkd_search.allocator.keep_freed_memory`` (``mallopt``), what the
#: trial workers do
ALLOCATORS = {"default": {}, "keep-heap": {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(16 * 2**30)},
              "mallopt": {"GKD_BENCH_MALLOPT": "1"}}


#: the synthetic graphs' node orders (``synthetic:order=``): ids at random, or class by class
ORDERS = ("random", "community")


def arxiv_spec(scale: float, order: str = "random") -> str:
    return (f"synthetic:nodes={int(ARXIV_NODES * scale)},edges={int(ARXIV_EDGES * scale)},"
            "features=128,classes=40" + ("" if order == "random" else f",order={order}"))


def order_of(graph: dict[str, Any]) -> str:
    """The node order of a result's synthetic graph (``random`` when its spec names none)."""
    return next((o for o in ORDERS if f"order={o}" in graph["dataset"]), "random")


def step_seconds(model, data, steps: int, order=None) -> float:
    """The median time of one training step, after two untimed ones; with a
    :class:`gkd_search.reorder.NodeOrder`, on the renumbered graph with the outputs restored, as
    ``train_model`` runs it."""
    import torch

    optimizer = torch.optim.Adam(model.parameters())
    x, edge_index = (data.x, data.edge_index) if order is None else order.graph(data.x, data.edge_index)[:2]
    times = []
    for i in range(steps + 2):
        start = time.perf_counter()
        optimizer.zero_grad()
        out = model(x, edge_index)
        out = out if order is None else order.restore(out)
        out.logits.sum().backward()
        optimizer.step()
        if i >= 2:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def worker(spec: str, families: list[tuple[str, int, int]], steps: int, data_root: str, cache_dir: str) -> dict:
    """Every family on one graph, CSR then edge-list, in this process."""
    import torch

    from gkd_search import sparse
    from gkd_search.loading import load_dataset

    torch.set_num_threads(1)
    if os.environ.get("GKD_BENCH_MALLOPT") == "1":
        from gkd_search.allocator import keep_freed_memory

        assert keep_freed_memory()
    dataset = load_dataset(spec, data_root, seed=0, cache_dir=cache_dir)
    data = dataset.data
    density = float((data.x != 0).float().mean())
    from gkd_search.reorder import MIN_NODES, NodeOrder

    order = None
    if dataset.num_nodes >= MIN_NODES:
        started = time.perf_counter()
        order = NodeOrder.reverse_cuthill_mckee(data.edge_index, dataset.num_nodes)
        print(f"{spec}: reverse Cuthill-McKee in {time.perf_counter() - started:.2f} s", flush=True)
    rows = []
    for family, layers, hidden in families:
        from gkd_search.registry import build_registry, get_plugin_manager

        registry = build_registry(get_plugin_manager(autoload=False))
        torch.manual_seed(0)
        model = registry.get("family", family).build(dataset.num_features, dataset.num_classes, layers, hidden)
        sparse.clear_cache()
        after = step_seconds(model, data, steps)
        sparse.clear_cache()
        with sparse.disabled():
            before = step_seconds(model, data, steps)
        row = {"family": f"{family}-{layers}L-{hidden}", "before_ms": before * 1e3, "after_ms": after * 1e3}
        if order is not None:
            sparse.clear_cache()
            row["reordered_ms"] = step_seconds(model, data, steps, order) * 1e3
            print(f"{spec} {family}-{layers}L-{hidden}: CSR on the RCM order {row['reordered_ms']:.1f} ms", flush=True)
        rows.append(row)
        print(f"{spec} (features {density:.1%} non-zero) {family}-{layers}L-{hidden}: edge-list {before * 1e3:.1f} ms, "
              f"CSR {after * 1e3:.1f} ms ({before / after:.1f}x)", flush=True)
    return {"dataset": spec, "nodes": dataset.num_nodes, "edges": int(data.edge_index.size(1)),
            "feature_density": density, "rows": rows}


def run_worker(spec: str, families, steps: int, args, allocator: str) -> dict:
    env_extra = ALLOCATORS[allocator]
    out = Path(args.workdir) / f"propagation-{abs(hash((spec, allocator)))}.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", spec, "--families",
               ",".join(f"{f}:{layer}:{h}" for f, layer, h in families), "--steps", str(steps),
               "--data-root", args.data_root, "--cache-dir", args.cache_dir, "--out", str(out)]
    subprocess.run(command, check=True, env={**os.environ, **env_extra})
    result = json.loads(out.read_text())
    result["allocator"] = allocator
    return result


def render(report: dict[str, Any]) -> str:
    lines = [f"`python bench/propagation.py` ({report['date'][:10]}, {report['machine']['cpu']}, "
             f"{report['machine']['cores']} cores, one torch thread; raw numbers in `bench/results/propagation.json`): "
             "one training step (forward, backward, Adam), median of "
             f"{report['steps']} steps; *before*: edge-list message passing and dense features (as before issue 14), "
             "*after*: CSR propagation and CSR features where at most 5% non-zero; *RCM*: after, on the graph "
             "renumbered by reverse Cuthill-McKee with the outputs put back (`gkd_search/reorder.py`, graphs of "
             "100,000 nodes or more); *allocator*: glibc's defaults, `keep-heap` (`MALLOC_MMAP_MAX_=0 "
             "MALLOC_TRIM_THRESHOLD_=16 GiB` at start-up) or `mallopt` (`gkd_search.allocator.keep_freed_memory`, "
             "what trial workers call).", "",
             "| graph | nodes | edges | features non-zero | allocator | family | before ms | after ms | speed-up "
             "| RCM ms |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for g in report["graphs"]:
        for r in g["rows"]:
            rcm = f"{r['reordered_ms']:.1f}" if "reordered_ms" in r else "-"
            lines.append(f"| {g['dataset']} | {g['nodes']:,} | {g['edges']:,} | {g['feature_density']:.1%} | "
                         f"{g.get('allocator', 'default')} | {r['family']} | {r['before_ms']:.1f} | {r['after_ms']:.1f} | "
                         f"{r['before_ms'] / r['after_ms']:.2f}x | {rcm} |")
    notes = []
    arxiv = [g for g in report["graphs"] if g["dataset"].startswith("synthetic")]
    ordered = {(g["nodes"], g.get("allocator", "default"), order_of(g)): g for g in arxiv}
    by_alloc = {(n, a): g for (n, a, o), g in ordered.items() if o == "random"}
    sizes = sorted({g["nodes"] for g in arxiv})
    for order in ORDERS:
        for allocator in ALLOCATORS:
            graphs = [ordered[(n, allocator, order)] for n in sizes if (n, allocator, order) in ordered]
            if len(graphs) < 2:
                continue
            small, large = graphs[0], graphs[-1]
            edge_growth = large["edges"] / small["edges"]
            for r_small, r_large in zip(small["rows"], large["rows"]):
                growth_before = r_large["before_ms"] / r_small["before_ms"]
                growth_after = r_large["after_ms"] / r_small["after_ms"]
                notes.append(f"- {order} node order, {allocator} allocator, {r_large['family']}: from {small['nodes']:,} "
                             f"to {large['nodes']:,} nodes the edges grow {edge_growth:.2f}x, the step "
                             f"{growth_before:.2f}x with the edge-list path and {growth_after:.2f}x with CSR (no faster "
                             f"than the edges: {'met' if growth_after <= edge_growth * 1.05 else 'NOT met'}).")
    for nodes in sizes:
        for allocator in ALLOCATORS:
            random_, community = by_alloc.get((nodes, allocator)), ordered.get((nodes, allocator, "community"))
            if random_ is None or community is None:
                continue
            gains = [r["after_ms"] / c["after_ms"] for r, c in zip(random_["rows"], community["rows"])]
            notes.append(f"- community order at {nodes:,} nodes ({allocator} allocator): the CSR step "
                         f"{', '.join(f'{x:.2f}x' for x in gains)} faster than in random order "
                         f"({', '.join(r['family'] for r in random_['rows'])}).")
    # before issue 14: edge-list, default allocator; after: CSR with the trial workers' allocator
    largest = sizes[-1] if sizes else None
    before = by_alloc.get((largest, "default"))
    for allocator in ("mallopt", "keep-heap", "default"):
        after = by_alloc.get((largest, allocator))
        if before is None or after is None:
            continue
        for b, a in zip(before["rows"], after["rows"]):
            speedup = b["before_ms"] / a["after_ms"]
            notes.append(f"- at {largest:,} nodes, {b['family']}: {b['before_ms']:.0f} ms before (edge-list, default "
                         f"allocator), {a['after_ms']:.0f} ms after (CSR, {allocator} allocator): {speedup:.2f}x "
                         f"(target >= 2x: {'met' if speedup >= 2 else 'NOT met'}).")
        break
    for g in sorted(arxiv, key=lambda g: (order_of(g), g.get("allocator", "default"), g["nodes"])):
        gains = [r["after_ms"] / r["reordered_ms"] for r in g["rows"] if "reordered_ms" in r]
        if gains:
            notes.append(f"- RCM order at {g['nodes']:,} nodes ({order_of(g)} graph, {g.get('allocator', 'default')} "
                         "allocator): the CSR step "
                         f"{', '.join(f'{x:.2f}x' for x in gains)} faster ({', '.join(r['family'] for r in g['rows'])}).")
    for nodes in sizes:
        base = by_alloc.get((nodes, "default"))
        for allocator in ("keep-heap", "mallopt"):
            other = by_alloc.get((nodes, allocator))
            if base is None or other is None:
                continue
            ratios = [b["after_ms"] / k["after_ms"] for b, k in zip(base["rows"], other["rows"])]
            notes.append(f"- allocator at {nodes:,} nodes (CSR path): {allocator} against the default makes the step "
                         f"{', '.join(f'{x:.2f}x' for x in ratios)} faster "
                         f"({', '.join(r['family'] for r in base['rows'])}).")
    return "\n".join(lines + [""] + notes)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["datasets", "arxiv", "all"], default="all")
    parser.add_argument("--datasets", default="cora,pubmed,photo")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--data-root", default=os.environ.get("GKD_DATA", str(ROOT.parent / "shared" / "data")))
    parser.add_argument("--cache-dir", default=os.environ.get("GKD_CACHE") or str(Path.home() / ".cache" / "gkd-search"))
    parser.add_argument("--workdir", default="/tmp")
    parser.add_argument("--allocators", default="default,keep-heap",
                        help=f"for the arxiv part, among {', '.join(ALLOCATORS)}")
    parser.add_argument("--scales", default=",".join(map(str, ARXIV_SCALES)), help="arxiv sizes (fractions)")
    parser.add_argument("--orders", default="random",
                        help="node orders of the arxiv-sized graphs: random (ids at random), community (class by class)")
    parser.add_argument("--render", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--families", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        families = [(f, int(n), int(h)) for f, n, h in (x.split(":") for x in args.families.split(","))]
        Path(args.out).write_text(json.dumps(worker(args.worker, families, args.steps, args.data_root,
                                                    args.cache_dir)))
        return 0
    if args.render:
        report = json.loads(RESULTS.read_text())
    else:
        graphs = []
        if args.part in ("datasets", "all"):
            graphs += [run_worker(d, FAMILIES, args.steps, args, "default") for d in args.datasets.split(",")]
        if args.part in ("arxiv", "all"):
            for order in args.orders.split(","):
                for allocator in args.allocators.split(","):
                    graphs += [run_worker(arxiv_spec(float(s), order), ARXIV_FAMILIES, args.steps, args, allocator)
                               for s in args.scales.split(",")]
        # a partial run replaces its own (graph, allocator) entries of the results and keeps the others
        old = json.loads(RESULTS.read_text())["graphs"] if RESULTS.is_file() else []
        fresh = {(g["dataset"], g["allocator"]) for g in graphs}
        graphs = [g for g in old if (g["dataset"], g.get("allocator", "default")) not in fresh] + graphs
        report = {**stamp(), "steps": args.steps, "graphs": graphs}
        RESULTS.write_text(json.dumps(report, indent=1) + "\n")
    text = render(report)
    write_section(DOCS, MARKER, text, "Propagation: one training step before and after CSR (issue 14)")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
