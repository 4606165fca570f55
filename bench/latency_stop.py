#!/usr/bin/env python
"""What does an architecture far over the latency budget cost the latency phase?

For each dataset, every architecture of the default space (and the dataset's teacher) is timed
twice with the search's own code (:class:`gkd_search.latency.LatencyBench`, the ``request``
protocol, batch 1, one thread, 10 warm-up and 50 timed requests):

1. in full, without a budget: its p50 ``p``, and the wall time of the whole measurement;
2. with a budget of ``p / 100``, so the architecture is 100x over it: the wall time until the
   early stop (:mod:`gkd_search.latency_stop`) recorded it over budget, the build of the model
   and of its serving graph included, as ``measure_all`` pays them.

The cost of (2) is compared with the time of one trained trial on the same dataset: the median
``trial_seconds`` of the finished trials of a default 30-trial search (the ``--pruner none`` runs
of ``bench/search_quality.py``, read from its results; else the training time of the finished
trials of ``bench/robustness.py``'s searches). Target
(issue 14): at most 5% of a trained trial's time for each over-budget architecture.

Usage::

    python bench/latency_stop.py [--datasets cora,pubmed,photo]

Writes ``bench/results/latency_stop.json`` and the section of ``docs/benchmarks.md`` between its
markers.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Optional

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from _report import stamp, write_section  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "latency_stop.json"
QUALITY = ROOT / "bench" / "results" / "search_quality.jsonl"
ROBUSTNESS = ROOT / "bench" / "results" / "robustness.after.jsonl"
DOCS = ROOT / "docs" / "benchmarks.md"
MARKER = "latency_stop"


def trained_trial_seconds(dataset: str) -> Optional[float]:
    """The median wall time of a finished trial of a default 30-trial search on ``dataset``: from
    the ``--pruner none`` searches of ``bench/search_quality.py``; else the median training time
    (a lower bound of the trial's) of the finished trials of ``bench/robustness.py``'s latest
    searches; None when neither has run on it."""
    def rows(path: Path) -> list[dict]:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []

    times = [t["trial_seconds"] for row in rows(QUALITY) if row["dataset"] == dataset and row["pruner"] == "none"
             for t in row["trials"] if t["status"] == "ok" and t["trial_seconds"]]
    if not times:
        times = [t["train_seconds"] for row in rows(ROBUSTNESS) if row["dataset"] == dataset
                 for t in row["rows"] if t["status"] == "ok" and t.get("train_seconds")]
    return statistics.median(times) if times else None


def measure_dataset(dataset: str, data_root: str, cache_dir: str) -> dict[str, Any]:
    from gkd_search.latency import LatencyBench
    from gkd_search.search import SearchConfig, prepare

    prepared = prepare(SearchConfig(dataset=dataset, data_root=data_root, cache_dir=cache_dir, trials=1),
                       check_tracking=False)
    families = prepared.registry.families
    bench = LatencyBench(prepared.dataset, prepared.protocol)
    rows = []
    for arch in prepared.architectures:
        family = families[arch.family]
        hops = family.num_hops(arch.num_layers, **dict(arch.family_params))

        def build(family=family, arch=arch):
            torch.manual_seed(0)
            return family.build(prepared.dataset.num_features, prepared.dataset.num_classes, arch.num_layers,
                                arch.hidden_channels, **dict(arch.family_params))

        started = time.perf_counter()
        full = bench.measure(build(), hops)
        full_seconds = time.perf_counter() - started
        budget = full.p50_ms / 100.0
        bench._graphs.clear()  # the early-stopped measurement pays for its serving graph, as a search does
        started = time.perf_counter()
        stopped = bench.measure(build(), hops, budget)
        stop_seconds = time.perf_counter() - started
        rows.append({"architecture": arch.key, "p50_ms": full.p50_ms, "full_seconds": full_seconds,
                     "budget_ms": budget, "complete": stopped.complete, "samples": stopped.repeats,
                     "stop_seconds": stop_seconds})
        print(f"{dataset} {arch.key:>24}: p50 {full.p50_ms:8.3f} ms, full {full_seconds:6.3f} s; at budget "
              f"{budget:.4f} ms stopped={not stopped.complete} with {stopped.repeats} samples, "
              f"{stop_seconds:.3f} s", flush=True)
    return {"dataset": dataset, "architectures": rows, "trained_trial_seconds": trained_trial_seconds(dataset)}


def render(report: dict[str, Any]) -> str:
    lines = [f"`python bench/latency_stop.py` ({report['date'][:10]}, {report['machine']['cpu']}, "
             f"{report['machine']['cores']} cores; raw numbers in `bench/results/latency_stop.json`): every "
             "architecture of the default space timed in full, then with a budget of 1/100 of its own p50 "
             "(100x over budget), the build of the model and its serving graph included.", "",
             "| dataset | architectures | stopped early | samples kept at the stop (max) | full measurement, s "
             "(median / max) | 100x over budget, s (median / max) | trained trial, s (median) | worst cost / trial |",
             "|---|---|---|---|---|---|---|---|"]
    verdicts = []
    for d in report["datasets"]:
        rows = d["architectures"]
        stops = [r["stop_seconds"] for r in rows]
        fulls = [r["full_seconds"] for r in rows]
        trial = d["trained_trial_seconds"]
        worst = max(stops)
        share = worst / trial if trial else None
        lines.append(f"| {d['dataset']} | {len(rows)} | {sum(not r['complete'] for r in rows)} | "
                     f"{max(r['samples'] for r in rows)} | {statistics.median(fulls):.3f} / {max(fulls):.3f} | "
                     f"{statistics.median(stops):.3f} / {worst:.3f} | "
                     f"{'-' if trial is None else f'{trial:.1f}'} | "
                     f"{'-' if share is None else f'{100 * share:.2f}%'} |")
        slowest = max(rows, key=lambda r: r["p50_ms"])
        if share is not None:
            verdicts.append(f"- **{d['dataset']}**: the costliest over-budget architecture took {worst:.3f} s, "
                            f"{100 * share:.2f}% of a trained trial's {trial:.1f} s (target <= 5%: "
                            f"{'met' if share <= 0.05 else 'NOT met'}); the slowest architecture, "
                            f"{slowest['architecture']} (p50 {slowest['p50_ms']:.2f} ms), cost "
                            f"{slowest['stop_seconds']:.3f} s stopped against {slowest['full_seconds']:.3f} s "
                            "timed in full.")
    return "\n".join(lines + [""] + verdicts)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="cora,pubmed,photo")
    parser.add_argument("--data-root", default=os.environ.get("GKD_DATA", str(ROOT.parent / "shared" / "data")))
    parser.add_argument("--cache-dir", default=os.environ.get("GKD_CACHE") or str(Path.home() / ".cache" / "gkd-search"))
    parser.add_argument("--render", action="store_true", help="only rewrite the docs section from the results")
    args = parser.parse_args(argv)
    if args.render:
        report = json.loads(RESULTS.read_text())
        for d in report["datasets"]:
            d["trained_trial_seconds"] = trained_trial_seconds(d["dataset"]) or d["trained_trial_seconds"]
    else:
        report = {**stamp(), "datasets": [measure_dataset(d, args.data_root, args.cache_dir) for d in args.datasets.split(",")]}
    RESULTS.write_text(json.dumps(report, indent=1) + "\n")
    text = render(report)
    write_section(DOCS, MARKER, text, "Latency phase: what an architecture 100x over the budget costs")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
