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
markers.
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
from _report import cores, cpu_model, write_section  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "propagation.json"
DOCS = ROOT / "docs" / "benchmarks.md"
MARKER = "propagation"
FAMILIES = [("gcn", 2, 256), ("sage", 2, 64), ("gcnii", 8, 64), ("appnp", 2, 64), ("sgc", 2, 64)]
ARXIV_FAMILIES = [("gcn", 2, 64), ("sage", 2, 64), ("gcnii", 4, 64)]
ARXIV_NODES, ARXIV_EDGES = 169_343, 1_166_243
ARXIV_SCALES = (0.25, 0.5, 1.0)
KEEP_HEAP = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(16 * 2**30)}


def arxiv_spec(scale: float) -> str:
    return (f"synthetic:nodes={int(ARXIV_NODES * scale)},edges={int(ARXIV_EDGES * scale)},"
            "features=128,classes=40")


def step_seconds(model, data, steps: int) -> float:
    """The median time of one training step, after two untimed ones."""
    import torch

    optimizer = torch.optim.Adam(model.parameters())
    times = []
    for i in range(steps + 2):
        start = time.perf_counter()
        optimizer.zero_grad()
        model(data.x, data.edge_index).logits.sum().backward()
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
    dataset = load_dataset(spec, data_root, seed=0, cache_dir=cache_dir)
    data = dataset.data
    density = float((data.x != 0).float().mean())
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
        rows.append({"family": f"{family}-{layers}L-{hidden}", "before_ms": before * 1e3, "after_ms": after * 1e3})
        print(f"{spec} (features {density:.1%} non-zero) {family}-{layers}L-{hidden}: edge-list {before * 1e3:.1f} ms, "
              f"CSR {after * 1e3:.1f} ms ({before / after:.1f}x)", flush=True)
    return {"dataset": spec, "nodes": dataset.num_nodes, "edges": int(data.edge_index.size(1)),
            "feature_density": density, "rows": rows}


def run_worker(spec: str, families, steps: int, args, env_extra: dict[str, str]) -> dict:
    out = Path(args.workdir) / f"propagation-{abs(hash((spec, tuple(env_extra))))}.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", spec, "--families",
               ",".join(f"{f}:{layer}:{h}" for f, layer, h in families), "--steps", str(steps),
               "--data-root", args.data_root, "--cache-dir", args.cache_dir, "--out", str(out)]
    subprocess.run(command, check=True, env={**os.environ, **env_extra})
    result = json.loads(out.read_text())
    result["allocator"] = "keep-heap" if env_extra else "default"
    return result


def render(report: dict[str, Any]) -> str:
    lines = [f"`python bench/propagation.py` ({report['date'][:10]}, {report['machine']['cpu']}, "
             f"{report['machine']['cores']} cores, one torch thread; raw numbers in `bench/results/propagation.json`): "
             "one training step (forward, backward, Adam), median of "
             f"{report['steps']} steps; *before*: edge-list message passing and dense features (as before issue 14), "
             "*after*: CSR propagation and CSR features where at most 5% non-zero.", "",
             "| graph | nodes | edges | features non-zero | allocator | family | before ms | after ms | speed-up |",
             "|---|---|---|---|---|---|---|---|---|"]
    for g in report["graphs"]:
        for r in g["rows"]:
            lines.append(f"| {g['dataset']} | {g['nodes']:,} | {g['edges']:,} | {g['feature_density']:.1%} | "
                         f"{g['allocator']} | {r['family']} | {r['before_ms']:.1f} | {r['after_ms']:.1f} | "
                         f"{r['before_ms'] / r['after_ms']:.2f}x |")
    notes = []
    arxiv = [g for g in report["graphs"] if g["dataset"].startswith("synthetic")]
    for allocator in ("default", "keep-heap"):
        graphs = sorted((g for g in arxiv if g["allocator"] == allocator), key=lambda g: g["edges"])
        if len(graphs) < 2:
            continue
        small, large = graphs[0], graphs[-1]
        edge_growth = large["edges"] / small["edges"]
        for r_small, r_large in zip(small["rows"], large["rows"]):
            growth_before = r_large["before_ms"] / r_small["before_ms"]
            growth_after = r_large["after_ms"] / r_small["after_ms"]
            speedup = r_large["before_ms"] / r_large["after_ms"]
            notes.append(f"- {allocator} allocator, {r_large['family']}: at 1x arxiv {speedup:.2f}x faster "
                         f"(target >= 2x: {'met' if speedup >= 2 else 'NOT met'}); from the smallest to the "
                         f"largest graph the edges grow {edge_growth:.2f}x, the step {growth_before:.2f}x before and "
                         f"{growth_after:.2f}x after (no faster than the edges: "
                         f"{'met' if growth_after <= edge_growth * 1.05 else 'NOT met'}).")
    by_alloc = {(g["dataset"], g["allocator"]): g for g in arxiv}
    for spec, allocator in sorted(by_alloc):
        if allocator != "default" or (spec, "keep-heap") not in by_alloc:
            continue
        base, keep = by_alloc[(spec, "default")], by_alloc[(spec, "keep-heap")]
        ratios = [b["after_ms"] / k["after_ms"] for b, k in zip(base["rows"], keep["rows"])]
        notes.append(f"- allocator at {base['nodes']:,} nodes (CSR path): keeping freed memory in the heap makes the "
                     f"step {', '.join(f'{x:.2f}x' for x in ratios)} faster "
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
            graphs += [run_worker(d, FAMILIES, args.steps, args, {}) for d in args.datasets.split(",")]
        if args.part in ("arxiv", "all"):
            for env in ({}, KEEP_HEAP):
                graphs += [run_worker(arxiv_spec(s), ARXIV_FAMILIES, args.steps, args, env) for s in ARXIV_SCALES]
        report = {"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": {"cpu": cpu_model(), "cores": cores()},
                  "steps": args.steps, "graphs": graphs}
        RESULTS.write_text(json.dumps(report, indent=1) + "\n")
    text = render(report)
    write_section(DOCS, MARKER, text, "Propagation: one training step before and after CSR (issue 14)")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
