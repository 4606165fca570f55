#!/usr/bin/env python
"""The ABKD/STRIDE citation-graph setting: a 64-layer, 64-wide GCNII teacher on Cora, then a
search of GCNII students (1-4 layers, width 4-64) with ``search_spaces/deep-gcnii.yaml``.

Part 1 trains the space's teacher (GCNII paper settings: alpha 0.1, lambda 0.5, dropout 0.6, lr
0.01, weight decay 0.01 on the convolutions and 5e-4 on the linears, up to 1500 epochs, patience
100) on Cora with row-normalised features (``cora:normalize_features=true``, the GCNII paper's
preprocessing) for each seed, with 2 torch threads, and records its accuracy (issue 4 asks for
at least 0.84; the GCNII paper reports 0.855).

Part 2 runs the real command on the seed-0 teacher (loaded from the cache part 1 filled)::

    gkd-search --dataset cora:normalize_features=true --space deep-gcnii --trials 20 --budget-ms 10

Usage::

    python bench/deep_gcnii.py                  # 3 teacher seeds, then the search (about 30 min on 2 cores)
    python bench/deep_gcnii.py --seeds 0        # one teacher
    python bench/deep_gcnii.py --render         # rewrite docs/benchmarks.md from the results file

Writes ``bench/results/deep_gcnii.json`` and the section of ``docs/benchmarks.md`` between its
markers.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

from _report import write_block

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "deep_gcnii.json"
DOC = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- bench:deep-gcnii:start -->", "<!-- bench:deep-gcnii:end -->"
DATASET = "cora:normalize_features=true"
CACHE = ROOT / "bench" / "results" / ".cache-deep-gcnii"  # git-ignored


def data_root() -> Path:
    return Path(os.environ.get("GKD_DATA", ROOT.parent / "shared" / "data"))


def train_teacher(seed: int) -> dict[str, Any]:
    import torch

    from gkd_search.registry import build_registry
    from gkd_search.search import parse_dataset
    from gkd_search.space import load_space
    from gkd_search.teacher import TeacherConfig, get_teacher

    torch.set_num_threads(2)
    registry = build_registry()
    space = load_space("deep-gcnii", registry.families, registry.methods)
    name, options = parse_dataset(DATASET)
    dataset = registry.get("dataset", name).load(data_root(), CACHE / "datasets", seed, **options)
    config = TeacherConfig.parse(space.teacher)
    start = time.perf_counter()
    _, out = get_teacher(dataset, config, registry.get("family", config.family), seed=seed, cache_dir=CACHE)
    return {"seed": seed, "spec": out.spec, "val_acc": out.val_acc, "test_acc": out.test_acc,
            "params": out.num_params, "seconds": time.perf_counter() - start, "from_cache": out.from_cache}


def run_search(trials: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="gkd-deep-gcnii-"))
    uri = f"sqlite:///{work}/mlflow.db"
    command = [sys.executable, "-m", "gkd_search", "--dataset", DATASET, "--data-root", str(data_root()),
               "--space", "deep-gcnii", "--trials", str(trials), "--budget-ms", "10", "--seed", "0",
               "--tracking-uri", uri, "--cache-dir", str(CACHE)]
    print("+", " ".join(command), flush=True)
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=work, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"gkd-search exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=1000)
    trials_rows = []
    for run in runs:
        if run.data.tags.get("gkd.role") != "trial":
            continue
        p, m = run.data.params, run.data.metrics
        trials_rows.append({"architecture": f"gcnii-{p['num_layers']}x{p['hidden_channels']}", "method": p["method"],
                            "status": run.data.tags.get("gkd.status"), "val_acc": m.get("val_acc"),
                            "test_acc": m.get("test_acc"), "latency_ms_p50": m.get("latency_ms_p50"),
                            "params": m.get("params"), "selected": run.data.tags.get("gkd.selected") == "true"})
    return {"wall_seconds": wall, "trials": trials_rows, "output_tail": proc.stdout[-2500:]}


def render(report: dict[str, Any]) -> str:
    teachers = report.get("teachers", [])
    lines = [START, f"`python bench/deep_gcnii.py` ({report.get('date')}, 2-core AMD EPYC; raw numbers in "
                    "`bench/results/deep_gcnii.json`).", ""]
    if teachers:
        spec = teachers[0]["spec"]
        tests = [t["test_acc"] for t in teachers]
        lines += [f"Teacher `{spec}` on `{DATASET}` ({teachers[0]['params']:,} parameters):", "",
                  "| seed | val acc | test acc | training seconds |", "|---|---|---|---|"]
        lines += [f"| {t['seed']} | {t['val_acc']:.3f} | **{t['test_acc']:.3f}** | {t['seconds']:.0f} |" for t in teachers]
        if len(tests) > 1:
            lines += ["", f"Mean test accuracy {statistics.mean(tests):.3f} (std {statistics.stdev(tests):.3f}); "
                          f"target at least 0.84, GCNII paper 0.855."]
    search = report.get("search")
    if search:
        ok = [t for t in search["trials"] if t["status"] == "ok"]
        lines += ["", f"The search, 20 trials on the seed-0 teacher: {search['wall_seconds'] / 60:.1f} min, "
                      f"{len(ok)} trials ok. Best trials by validation accuracy:", "",
                  "| student | method | val | test | p50 ms | params | selected |", "|---|---|---|---|---|---|---|"]
        for t in sorted(ok, key=lambda t: -t["val_acc"])[:8]:
            lines.append(f"| {t['architecture']} | {t['method']} | {t['val_acc']:.3f} | {t['test_acc']:.3f} | "
                         f"{t['latency_ms_p50']:.2f} | {int(t['params']):,} | {'*' if t['selected'] else ''} |")
        by_method: dict[str, list[float]] = {}
        for t in ok:
            by_method.setdefault(t["method"], []).append(t["test_acc"])
        lines += ["", "Test accuracy by method over the trials that drew it (different architectures and settings, "
                      "so a rough comparison): " + ", ".join(
                          f"{m} {statistics.mean(v):.3f} (n={len(v)})" for m, v in sorted(by_method.items()))]
    lines.append(END)
    return "\n".join(lines)


def write_doc(report: dict[str, Any]) -> None:
    write_block(DOC, START, END, render(report), "The 64-layer GCNII teacher on Cora")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--no-search", action="store_true")
    parser.add_argument("--render", action="store_true")
    args = parser.parse_args(argv)
    report = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    if not args.render:
        for seed in (int(s) for s in args.seeds.split(",")):
            row = train_teacher(seed)
            print(json.dumps(row), flush=True)
            report["teachers"] = [t for t in report.get("teachers", []) if t["seed"] != seed] + [row]
            report["date"] = _dt.date.today().isoformat()
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(report, indent=1))
        if not args.no_search:
            report["search"] = run_search(args.trials)
            RESULTS.write_text(json.dumps(report, indent=1))
    write_doc(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
