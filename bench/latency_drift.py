"""How much does the same model's p50 move within one process? The host's share of latency noise.

One process, one dataset, a few architectures of the default space built once (weights fixed by
seed 0): every ``--interval`` seconds for ``--seconds`` seconds, each architecture is timed with the
search's own code and protocol (:class:`gkd_search.latency.LatencyBench`, the ``request`` path a
registered model serves with). Nothing changes in the process between rounds (same tensors, same
serving graph, same request batches), so whatever moves the p50 from one round to the next is the
machine: CPU frequency, other tenants of the host, its caches.

For each architecture the table gives the p50's range over the rounds and the share of rounds
within 15% of its median (the tolerance of ``bench/serving_latency.py``), and the same for its p50
divided by the reference architecture's in the same round (the first of ``--architectures``): a
ratio measured within the same second cancels what the host does to both.

    python bench/latency_drift.py --dataset cora --seconds 300

Writes ``bench/results/latency_drift.json`` and a section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Optional

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from _report import add_data_arguments, publish, stamp  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "latency_drift.json"
DOCS = ROOT / "docs" / "benchmarks.md"
MARKER = "latency_drift"
#: the tolerance of bench/serving_latency.py's target
TOLERANCE = 0.15


def measure(dataset: str, data_root: str, cache_dir: str, keys: list[str], seconds: float,
            interval: float) -> dict[str, Any]:
    from gkd_search.latency import LatencyBench
    from gkd_search.search import SearchConfig, prepare

    prepared = prepare(SearchConfig(dataset=dataset, data_root=data_root, cache_dir=cache_dir, trials=1),
                       check_tracking=False)
    families = prepared.registry.families
    by_key = {a.key: a for a in prepared.architectures}
    unknown = [k for k in keys if k not in by_key]
    if unknown:
        raise SystemExit(f"--architectures: {', '.join(unknown)} not in the default space "
                         f"(one of {', '.join(by_key)})")
    bench = LatencyBench(prepared.dataset, prepared.protocol)
    models = {}
    for key in keys:
        arch, family = by_key[key], families[by_key[key].family]
        torch.manual_seed(0)
        model = family.build(prepared.dataset.num_features, prepared.dataset.num_classes, arch.num_layers,
                             arch.hidden_channels, **dict(arch.family_params))
        models[key] = (model, family.num_hops(arch.num_layers, **dict(arch.family_params)))
    rounds = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        at = time.perf_counter() - start
        p50 = {key: bench.measure(model, hops).p50_ms for key, (model, hops) in models.items()}
        rounds.append({"at_s": round(at, 2), "p50_ms": p50})
        print(f"{at:6.1f} s " + ", ".join(f"{k} {v:.3f} ms" for k, v in p50.items()), flush=True)
        time.sleep(interval)
    protocol = prepared.protocol
    return {**stamp(), "dataset": dataset, "seconds": seconds, "interval": interval, "architectures": keys,
            "protocol": {"name": protocol.name, "batch": protocol.batch_size, "warmup": protocol.warmup,
                         "repeats": protocol.repeats, "threads": protocol.threads},
            "rounds": rounds}


def _spread(values: list[float]) -> dict[str, float]:
    median = statistics.median(values)
    return {"min": min(values), "median": median, "max": max(values),
            "within": sum(abs(v / median - 1) <= TOLERANCE for v in values) / len(values)}


def render(report: dict[str, Any]) -> str:
    keys, rounds = report["architectures"], report["rounds"]
    reference = keys[0]
    p = report["protocol"]
    lines = [f"`python bench/latency_drift.py --dataset {report['dataset']} --seconds {report['seconds']:g}` "
             f"({report['date'][:10]}, {report['machine']['cpu']}, {report['machine']['cores']} cores, nothing else "
             f"running; raw numbers in `bench/results/latency_drift.json`): one process, {len(rounds)} rounds "
             f"{report['interval']:g} s apart, each timing every architecture once with the search's protocol "
             f"(`{p['name']}`, batch {p['batch']}, {p['warmup']} warm-up + {p['repeats']} timed requests, "
             f"{p['threads']} thread). The same models, tensors and requests in every round.", "",
             "| architecture | p50 ms min / median / max | max / min | rounds within 15% of the median | "
             f"p50 / {reference}'s, same round: min / median / max | rounds within 15% of the median |",
             "|---|---|---|---|---|---|"]
    summary = {}
    for key in keys:
        own = _spread([r["p50_ms"][key] for r in rounds])
        cells = (f"| {key} | {own['min']:.3f} / {own['median']:.3f} / {own['max']:.3f} | "
                 f"{own['max'] / own['min']:.2f} | {100 * own['within']:.0f}% |")
        if key == reference:
            cells += " (reference) | - |"
            relative = None
        else:
            relative = _spread([r["p50_ms"][key] / r["p50_ms"][reference] for r in rounds])
            cells += (f" {relative['min']:.2f} / {relative['median']:.2f} / {relative['max']:.2f} | "
                      f"{100 * relative['within']:.0f}% |")
        lines.append(cells)
        summary[key] = (own, relative)
    worst = max(keys, key=lambda k: summary[k][0]["max"] / summary[k][0]["min"])
    own = summary[worst][0]
    relatives = [summary[k][1]["within"] for k in keys if summary[k][1] is not None]
    lines += ["", f"- Within one process, {worst}'s p50 ranged over {own['max'] / own['min']:.2f}x "
                  f"({own['min']:.3f}-{own['max']:.3f} ms); {100 * min(summary[k][0]['within'] for k in keys):.0f}-"
                  f"{100 * max(summary[k][0]['within'] for k in keys):.0f}% of rounds were within 15% of their "
                  "architecture's median p50."]
    if relatives:
        lines.append(f"- Divided by {reference}'s p50 of the same round: {100 * min(relatives):.0f}-"
                     f"{100 * max(relatives):.0f}% of rounds within 15% of the median ratio.")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="cora")
    parser.add_argument("--architectures", default="gcn-2L-32,gcn-3L-64,sage-2L-32,gat-2L-32-heads=2,mlp-2L-128",
                        help="keys of the default space; the first is the reference of the ratio column")
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--interval", type=float, default=4.0)
    add_data_arguments(parser, ROOT)
    parser.add_argument("--render", action="store_true", help="only rewrite the docs section from the results")
    args = parser.parse_args(argv)
    if args.render:
        report = json.loads(RESULTS.read_text())
    else:
        report = measure(args.dataset, args.data_root, args.cache_dir, args.architectures.split(","),
                         args.seconds, args.interval)
    publish(report, RESULTS, DOCS, MARKER, "Latency drift: the same model, the same process, over minutes", render,
            save=not args.render)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
