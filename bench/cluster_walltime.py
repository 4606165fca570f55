"""Wall time of the same search on one node and on a two-node Ray cluster on this machine.

    python bench/cluster_walltime.py             # Cora, 8 trials of 100 epochs, 2 at a time, 2 repeats

(a) one node: ``gkd-search`` starts Ray in-process with the machine's CPUs; (b) two nodes:
``gkd-search --ray-address`` joins a loopback cluster of two 1-CPU nodes (``ray start --head`` +
``ray start --address``, as in the tests, ``tests/servers.py``) and returns students through
``--storage-path``. Same options otherwise (``--max-concurrent 2 --cpus-per-trial 1``), a fresh
MLflow store per run, teacher and latency table from a cache filled before any timing, the order
alternating. The cluster's start-up is reported apart (a team's cluster is already running).
On one 2-core machine the cluster cannot be faster: both nodes share the same two cores.

``--node-sessions shared`` (default) runs the cluster's nodes in this script's session, like the
one-node search; ``own`` gives each node a session of its own, as the tests do. It matters on a
busy machine: Linux (autogroup) shares CPU time between sessions first, so two node sessions
get more of a contended machine than one.

Writes ``bench/results/cluster_walltime.json`` and its section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import cores, cpu_model, write_block  # noqa: E402
from servers import LoopbackRayCluster  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
RESULTS = ROOT / "bench" / "results" / "cluster_walltime.json"
START, END = "<!-- bench:cluster:start -->", "<!-- bench:cluster:end -->"
SPACE = ROOT / "tests" / "spaces" / "tiny.yaml"


def search_command(args, workdir: Path, cache: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "gkd_search", "--dataset", args.dataset, "--data-root", args.data_root, "--space",
            str(SPACE), "--trials", str(args.trials), "--epochs", str(args.epochs), "--budget-ms", "10",
            "--max-concurrent", "2", "--cpus-per-trial", "1", "--tracking-uri", f"sqlite:///{workdir}/mlflow.db",
            "--cache-dir", str(cache), "--no-register-model", "-q", *extra]


def timed_search(args, cache: Path, env: dict, *extra: str) -> dict[str, Any]:
    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory(prefix="gkd-bench-cluster-") as folder:
        workdir = Path(folder)
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        proc = subprocess.run(search_command(args, workdir, cache, *extra), cwd=workdir, env=env, capture_output=True,
                              text=True, timeout=3600)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(proc.stdout[-2000:] + proc.stderr[-2000:])
        client = MlflowClient(f"sqlite:///{workdir}/mlflow.db")
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=1000)
        parent = next(r for r in runs if r.data.tags.get("gkd.role") == "search")
        trials = [r for r in runs if r.data.tags.get("gkd.role") == "trial"]
        nodes: dict[str, int] = {}
        for t in trials:
            node = t.data.tags.get("gkd.ray_node", "?")[:8]
            nodes[node] = nodes.get(node, 0) + 1
        return {"wall_seconds": wall, "search_seconds": parent.data.metrics["search_seconds"],
                "train_seconds_sum": sum(t.data.metrics.get("train_seconds", 0.0) for t in trials),
                "trials_ok": sum(t.data.tags.get("gkd.status") == "ok" for t in trials),
                "trials_per_node": nodes, "load_average_before": load_before, "load_average_after": os.getloadavg()[0]}


def run(args) -> dict[str, Any]:
    cache = Path(tempfile.mkdtemp(prefix="gkd-bench-cache-"))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    subprocess.run(search_command(args, Path(tempfile.mkdtemp()), cache)[:-1] + ["--trials", "1"], check=True,
                   env=env, capture_output=True)  # teacher and latency table into the cache
    records: dict[str, list] = {"one_node": [], "two_nodes": []}
    startup = []
    for _ in range(args.repeats):
        records["one_node"].append(timed_search(args, cache, env))
        workdir = Path(tempfile.mkdtemp(prefix="gkd-bench-ray-"))
        cluster = LoopbackRayCluster(workdir, own_sessions=args.node_sessions == "own")
        t0 = time.perf_counter()
        try:
            cluster.start()
            startup.append(time.perf_counter() - t0)
            records["two_nodes"].append(timed_search(args, cache, {**cluster.env, "PYTHONUNBUFFERED": "1"},
                                                     "--ray-address", cluster.address,
                                                     "--storage-path", str(workdir / "storage")))
        finally:
            cluster.stop()
    return {"date": time.strftime("%Y-%m-%d"), "machine": f"{cpu_model()}, {cores()} cores", "dataset": args.dataset,
            "trials": args.trials, "epochs": args.epochs, "repeats": args.repeats, "cluster_startup_seconds": startup,
            "node_sessions": args.node_sessions,
            **records}


def render(report: dict[str, Any]) -> str:
    def median(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in report[mode])

    one, two = median("one_node", "wall_seconds"), median("two_nodes", "wall_seconds")
    rows = []
    for mode, label in (("one_node", "one node (local Ray, 2 CPUs)"), ("two_nodes", "two nodes on loopback (1 CPU each)")):
        walls = ", ".join(f"{r['wall_seconds']:.1f}" for r in report[mode])
        loads = ", ".join(f"{r['load_average_before']:.1f}" for r in report[mode])
        placement = " / ".join(str(sorted(r["trials_per_node"].values())) for r in report[mode])
        rows.append(f"| {label} | **{median(mode, 'wall_seconds'):.1f} s** ({walls}) | "
                    f"{median(mode, 'search_seconds'):.1f} s | {median(mode, 'train_seconds_sum'):.0f} s | "
                    f"{placement} | {loads} |")
    startup = ", ".join(f"{s:.1f}" for s in report["cluster_startup_seconds"])
    sessions = "their own sessions" if report.get("node_sessions") == "own" else "the session of the one-node run"
    return "\n".join([
        START,
        f"`python bench/cluster_walltime.py` ({report['date']}, {report['machine']}; {report['dataset']}, "
        f"{report['trials']} trials of up to {report['epochs']} epochs, `tests/spaces/tiny.yaml`, 2 at a time; "
        f"cluster nodes in {sessions}; "
        f"medians of {report['repeats']} runs; raw numbers in `bench/results/cluster_walltime.json`):",
        "",
        "| | wall (whole command; runs) | search_seconds | training s summed | trials per node | load average at start |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"The two-node run took {two / one:.2f}x the one-node run's wall time. Starting the cluster "
        f"(`ray start --head` + `ray start --address`, not in the wall times) took {startup} s.",
        END,
    ])


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="cora")
    parser.add_argument("--data-root", default=os.environ.get("GKD_DATA", str(ROOT.parent / "shared" / "data")))
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--node-sessions", choices=["shared", "own"], default="shared",
                        help="the cluster's nodes in this script's session (default) or each in its own")
    args = parser.parse_args(argv)
    report = run(args)
    RESULTS.write_text(json.dumps(report, indent=1))
    write_block(DOC, START, END, render(report), "Scale-out: one node against a two-node loopback Ray cluster")
    print(render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
