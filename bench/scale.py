#!/usr/bin/env python
"""A 10-trial search on seeded synthetic graphs the size of ogbn-arxiv, a half and a quarter of it.

Sizes: 169,343 nodes and 1,166,243 edges (ogbn-arxiv's counts), 128 features, 40 classes; then
half and a quarter of both counts. Each size runs the real command, in a fresh process, with a
fresh cache and MLflow store::

    gkd-search --dataset synthetic:nodes=N,edges=E,features=128,classes=40 \\
        --space bench/spaces/scale.yaml --trials 10 --budget-ms 1000 --seed 0

The space (GCN, GraphSAGE and MLP students; none, softkd and glnn) and the seed are the same at
every size and the budget admits every architecture, so the sampler draws the same 10 trials at
every size (Optuna's TPE samples its first 10 trials at random, from the seed): the time per trial
is compared on identical work. Two trials run at a time, one CPU each (the machine's 2 cores).

Measured: wall time; the time per trial (training seconds from MLflow, summed over the 10 trials
and per epoch); the peak resident memory of the whole process tree (the driver, Ray's processes
and its workers), sampled every 0.2 s with psutil - a sum of RSS, so pages shared between
processes (Ray's object store) count once per process that maps them: an upper bound.

Usage::

    python bench/scale.py                 # the three sizes (about 20 minutes on 2 cores)
    python bench/scale.py --sizes 0.25    # one size
    python bench/scale.py --modes         # full-batch vs mini-batch, one trial at full size
    python bench/scale.py --render        # rewrite docs/benchmarks.md from the results file

Writes ``bench/results/scale.json`` (after every size) and the section of ``docs/benchmarks.md``
between its markers.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional

import psutil
from _report import cores, cpu_model, write_block

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "scale.json"
DOC = ROOT / "docs" / "benchmarks.md"
SPACE = ROOT / "bench" / "spaces" / "scale.yaml"
START, END = "<!-- bench:scale:start -->", "<!-- bench:scale:end -->"

ARXIV_NODES, ARXIV_EDGES, FEATURES, CLASSES = 169_343, 1_166_243, 128, 40
TRIALS = 10
TEACHER = "gcn:2:128:epochs=100:patience=100"
MEMORY_LIMIT_GB = 8.0


class TreeMemory:
    """Peak summed RSS of a process and all its descendants, sampled in a thread."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self.peak_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return
        total = 0
        for proc in procs:
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                pass
        if total > self.peak:
            self.peak, self.peak_processes = total, len(procs)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def trial_metrics(tracking_uri: str) -> list[dict[str, Any]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=1000)
    rows = []
    for run in runs:
        if run.data.tags.get("gkd.role") != "trial":
            continue
        m, p = run.data.metrics, run.data.params
        rows.append({
            "architecture": f"{p['family']}-{p['num_layers']}x{p['hidden_channels']}", "method": p["method"],
            "status": run.data.tags.get("gkd.status"), "training_mode": p.get("training_mode"),
            "train_seconds": m.get("train_seconds"), "epochs_run": m.get("epochs_run"),
            "seconds_per_epoch": m.get("train_seconds_per_epoch"), "peak_rss_mb": m.get("peak_rss_mb"),
            "val_acc": m.get("val_acc"), "test_acc": m.get("test_acc"), "latency_ms_p50": m.get("latency_ms_p50"),
        })
    return rows


def run_size(fraction: float, epochs: int) -> dict[str, Any]:
    nodes, edges = round(ARXIV_NODES * fraction), round(ARXIV_EDGES * fraction)
    work = Path(tempfile.mkdtemp(prefix=f"gkd-scale-{fraction}-"))
    uri = f"sqlite:///{work}/mlflow.db"
    command = [sys.executable, "-m", "gkd_search",
               "--dataset", f"synthetic:nodes={nodes},edges={edges},features={FEATURES},classes={CLASSES}",
               "--space", str(SPACE), "--trials", str(TRIALS), "--epochs", str(epochs), "--budget-ms", "1000",
               "--teacher", TEACHER, "--seed", "0", "--tracking-uri", uri, "--cache-dir", str(work / "cache")]
    print("+", " ".join(command), flush=True)
    start = time.perf_counter()
    log = open(work / "output.txt", "w")
    proc = subprocess.Popen(command, cwd=work, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    with TreeMemory(proc.pid) as memory:
        code = proc.wait()
    wall = time.perf_counter() - start
    log.close()
    output = (work / "output.txt").read_text()
    if code != 0:
        raise SystemExit(f"size {fraction}: gkd-search exited {code}; output in {work}/output.txt\n{output[-2000:]}")
    trials = trial_metrics(uri)
    timings = {line.split(" ", 1)[0]: line for line in output.splitlines() if line.startswith(("teacher", "latency", "dataset"))}
    found = re.search(r"([\d,]+) edges", timings.get("dataset", ""))
    ok = [t for t in trials if t["status"] == "ok"]
    return {
        "fraction": fraction, "nodes": nodes, "edges_requested": edges,
        "edges_actual": int(found.group(1).replace(",", "")) if found else None, "epochs": epochs, "wall_seconds": wall,
        "peak_tree_rss_gb": memory.peak / 2**30, "peak_processes": memory.peak_processes,
        "trials": trials, "n_ok": len(ok),
        "train_seconds_total": sum(t["train_seconds"] for t in ok),
        "seconds_per_epoch_median": statistics.median(t["seconds_per_epoch"] for t in ok) if ok else None,
        "log_lines": timings, "command": " ".join(command[1:]),
    }


def run_modes(fraction: float, epochs: int) -> list[dict[str, Any]]:
    """One trial (GraphSAGE-2x64, softkd) at ``fraction`` of arxiv's size, full-batch and on
    neighbour-sampled mini-batches (1024 seeds, fan-out 10,10), each in a fresh process:
    seconds per epoch (sampling, training and the full layer-wise validation pass) and the
    process's peak RSS while training."""
    code = f"""
import json, sys, time, torch
torch.set_num_threads(2)
from pathlib import Path
from gkd_search.registry import build_registry
from gkd_search.teacher import TeacherConfig, get_teacher
from gkd_search.trial import TrialContext, run_trial
from gkd_search.latency import LatencyMeasurement, LatencyProtocol
from gkd_search.distill.minibatch import Batching
from gkd_search.types import TrialSpec
reg = build_registry()
ds = reg.get("dataset", "synthetic").load(None, Path(sys.argv[2]), 0, nodes={round(ARXIV_NODES * fraction)},
    edges={round(ARXIV_EDGES * fraction)}, features={FEATURES}, classes={CLASSES})
_, teacher = get_teacher(ds, TeacherConfig.parse("gcn:2:64:epochs=20:patience=20"), reg.get("family", "gcn"), seed=0,
                         cache_dir=Path(sys.argv[2]), keep_hidden=False)
ctx = TrialContext(dataset=ds, teacher=teacher, families=reg.families, methods=reg.methods,
                   latency={{"sage-2L-64": LatencyMeasurement(1, 1, 1, 1, 30)}}, budget_ms=10, protocol=LatencyProtocol(),
                   batching=Batching(mode=sys.argv[1], batch_size=1024, fanout=(10, 10)))
spec = TrialSpec("sage", 2, 64, method="softkd", method_params={{"tau": 2.0, "alpha": 0.5}},
                 training={{"lr": 0.01, "weight_decay": 5e-4, "dropout": 0.5, "epochs": {epochs}, "patience": {epochs}}})
r = run_trial(spec, ctx, "mode")
print("RESULT", json.dumps({{"mode": r.training_mode, "status": r.status, "error": r.error,
    "seconds_per_epoch": r.train_seconds_per_epoch, "peak_rss_mb": r.peak_rss_mb, "val_acc": r.val_acc}}))
"""
    rows = []
    for mode in ("off", "on"):
        work = tempfile.mkdtemp(prefix="gkd-scale-mode-")
        proc = subprocess.run([sys.executable, "-c", code, mode, work], capture_output=True, text=True)
        line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT")), None)
        if line is None:
            raise SystemExit(f"mode {mode} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        rows.append({"fraction": fraction, "epochs": epochs, **json.loads(line[len("RESULT "):])})
        print(rows[-1], flush=True)
    return rows


def machine() -> str:
    return f"{cpu_model()}, {cores()} cores, {psutil.virtual_memory().total / 2**30:.0f} GB"


def render(report: dict[str, Any]) -> str:
    rows = sorted(report["sizes"], key=lambda r: r["fraction"])
    lines = [
        START,
        f"`python bench/scale.py` ({report['date']}, {report['machine']}; raw numbers in `bench/results/scale.json`):",
        "",
        "| graph | nodes | edges (both directions) | wall | trials ok | training s (10 trials) | s/epoch (median) "
        "| peak RSS, process tree | mode |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        edges = r.get("edges_actual") or r["edges_requested"]
        modes = sorted({t["training_mode"] for t in r["trials"] if t["training_mode"]})
        lines.append(
            f"| {r['fraction']:g} x arxiv | {r['nodes']:,} | {edges:,} | {r['wall_seconds'] / 60:.1f} min | {r['n_ok']}/{TRIALS} "
            f"| {r['train_seconds_total']:.0f} | {r['seconds_per_epoch_median']:.3f} | {r['peak_tree_rss_gb']:.2f} GB "
            f"| {', '.join(modes)} |"
        )
    if len(rows) >= 2:
        small, big = rows[0], rows[-1]
        edge_ratio = big["edges_requested"] / small["edges_requested"]
        time_ratio = big["train_seconds_total"] / small["train_seconds_total"]
        peak = max(r["peak_tree_rss_gb"] for r in rows)
        lines += ["", f"From {small['fraction']:g} to {big['fraction']:g} x arxiv the edges grow {edge_ratio:.2f}x and the "
                      f"training time of the same 10 trials {time_ratio:.2f}x "
                      f"({'no faster than linear' if time_ratio <= edge_ratio * 1.05 else 'FASTER than linear'}); "
                      f"the largest peak is {peak:.2f} GB (limit {MEMORY_LIMIT_GB:g} GB: "
                      f"{'met' if peak <= MEMORY_LIMIT_GB else 'NOT met'})."]
    modes = report.get("modes", [])
    if modes:
        lines += ["", f"One trial (GraphSAGE-2x64, softkd, {modes[0]['epochs']} epochs, 2 threads) at "
                      f"{modes[0]['fraction']:g} x arxiv, full-batch against neighbour-sampled mini-batches "
                      "(1024 seeds, fan-out 10,10; validation is a full layer-wise pass every epoch):", "",
                  "| training | s/epoch | peak RSS while training | val acc |", "|---|---|---|---|"]
        for m in modes:
            if m["status"] != "ok":
                lines.append(f"| {m['mode'] or '?'} | failed: {m['error']} | | |")
            else:
                lines.append(f"| {m['mode']} | {m['seconds_per_epoch']:.2f} | {m['peak_rss_mb'] / 1024:.2f} GB | {m['val_acc']:.3f} |")
    lines.append(END)
    return "\n".join(lines)


def write_doc(report: dict[str, Any]) -> None:
    write_block(DOC, START, END, render(report), "Large graphs: a 10-trial search at ogbn-arxiv scale")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="0.25,0.5,1", help="fractions of ogbn-arxiv's size")
    parser.add_argument("--epochs", type=int, default=50, help="epochs per trial")
    parser.add_argument("--render", action="store_true", help="only rewrite the docs from the results file")
    parser.add_argument("--modes", action="store_true", help="only the full-batch vs mini-batch comparison")
    args = parser.parse_args(argv)
    report = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"sizes": []}
    if args.modes:
        report["modes"] = run_modes(1.0, 3)
        RESULTS.write_text(json.dumps(report, indent=1))
    elif not args.render:
        for fraction in (float(f) for f in args.sizes.split(",")):
            row = run_size(fraction, args.epochs)
            report["sizes"] = [r for r in report["sizes"] if r["fraction"] != fraction] + [row]
            report.update(date=_dt.date.today().isoformat(), machine=machine())
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(report, indent=1))
            print(json.dumps({k: v for k, v in row.items() if k != "trials"}, indent=1), flush=True)
    write_doc(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
