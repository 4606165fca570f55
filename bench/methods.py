#!/usr/bin/env python
"""Every distillation method on the same footing: accuracy on Cora and PubMed, and step cost.

Part 1, accuracy. On each dataset: the dataset's default teacher (``gcn:2:256``, dropout 0.8,
weight decay 1e-3, seed 0, trained once and cached), one small GNN student (``gcn-2L-16``) and
one MLP student (``mlp-2L-128``). Every method (and the ABKD ablations, the STRIDE variants and
"KD + method" combinations) trains each student for the same epochs (200 on Cora, 100 on PubMed) with the same settings (Adam,
lr 0.01, weight decay 5e-4, dropout 0.5, no early stopping: the best-validation epoch is kept)
from the same initial weights (seed s initialises the student identically for every method),
for 5 seeds. Reported: mean and standard deviation of test accuracy, the difference with
``none`` (no teacher) for the same student, seconds per epoch and peak resident memory.

Part 2, step cost. On Cora, a 64-layer, 64-wide GCN teacher (random weights: the cost of a
step does not depend on what the teacher learned) and a 4-layer, 64-wide GCN student; one
training step (forward, loss, backward, Adam step) of every method, median of 30 steps after 5
warm-up steps, one torch thread; reported as milliseconds and as a ratio to ``softkd``.

Usage::

    python bench/methods.py                  # both parts, both datasets (about an hour on 2 cores)
    python bench/methods.py --quick          # 1 seed, 20 epochs, Cora: a smoke run
    python bench/methods.py --part cost      # step cost only
    python bench/methods.py --render         # rewrite docs/methods.md from the results file

Writes ``bench/results/methods.json`` (after every row, so an interrupted run keeps its rows and
is resumed) and the generated part of ``docs/methods.md``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "methods.json"
DOC = ROOT / "docs" / "methods.md"
START, END = "<!-- bench:methods:start -->", "<!-- bench:methods:end -->"

STUDENTS = {"gnn": ("gcn", 2, 16), "mlp": ("mlp", 2, 128)}
TRAINING = {"lr": 0.01, "weight_decay": 5e-4, "dropout": 0.5}
#: epochs per dataset (no early stopping: the best-validation epoch is kept); PubMed's 100 keep
#: the whole benchmark near an hour on 2 cores (a PubMed epoch costs about 4 Cora epochs)
EPOCHS = {"cora": 200, "pubmed": 100}


@dataclass
class Row:
    """One line of the table: a method with fixed hyperparameters."""

    label: str
    method: str
    params: dict[str, Any] = field(default_factory=dict)


#: The hyperparameters each method runs with: the paper's values where the paper gives one
#: (see docs/methods.md), else our declared default. ``softkd_weight`` is 0 unless the row is
#: a "KD + method" combination.
ROWS: list[Row] = [
    Row("none", "none"),
    Row("softkd", "softkd", {"tau": 4.0, "alpha": 0.5}),
    Row("glnn", "glnn", {"lambda": 0.0}),
    Row("fitnets", "fitnets"),
    Row("at", "at"),
    Row("lsp", "lsp"),
    Row("gsp", "gsp"),
    Row("gcrd", "gcrd"),
    Row("softkd + gcrd", "gcrd", {"softkd_weight": 1.0, "softkd_tau": 4.0}),
    Row("graphakd", "graphakd"),
    Row("abkd", "abkd"),
    Row("abkd, last layer only", "abkd", {"last_layer_only": True}),
    Row("abkd, shared projection", "abkd", {"shared_projection": True}),
    Row("abkd, cosine distance, beta 1", "abkd", {"distance": "cosine", "beta": 1.0}),
    Row("abkd, anchored (ours)", "abkd", {"anchored": True}),
    Row("softkd + abkd", "abkd", {"softkd_weight": 1.0, "softkd_tau": 4.0}),
    Row("stride", "stride"),
    Row("e-stride", "stride", {"variant": "e-stride"}),
    Row("s-stride", "stride", {"variant": "s-stride"}),
    #: the paper's Cora values (Eskandari et al., Table 6), on both datasets
    Row("infgrand", "infgrand", {"lambda": 0.1, "tau": 1.5, "gamma1": 0.8, "gamma2": 0.4, "delta1": 0.6,
                                 "delta2": 0.2, "hops": 2}),
]

#: Rows run on Cora only (ablations and variants; PubMed runs the methods themselves).
ABLATION_ROWS = {"abkd, last layer only", "abkd, shared projection", "abkd, cosine distance, beta 1",
                 "softkd + abkd", "e-stride", "s-stride", "abkd, anchored (ours)"}

#: Rows of the step-cost table (64-layer teacher, 4-layer student).
COST_ROWS = [r for r in ROWS if "+" not in r.label and r.method not in ("glnn", "infgrand")] + [
    Row("abkd, exact (no layer sampling)", "abkd", {"layer_sample": 0}),
    Row("stride, lsp structure", "stride", {"structure": "lsp"}),
    Row("stride, gsp structure", "stride", {"structure": "gsp"}),
]


def row_params(row: Row, method) -> dict[str, Any]:
    """The row's full hyperparameters: declared defaults, softkd combination off, row overrides."""
    from gkd_search.distill.objective import method_hyperparameters

    params = {k: p.default for k, p in method_hyperparameters(method).items()}
    if "softkd_weight" in params:
        params["softkd_weight"] = 0.0
    unknown = set(row.params) - set(params)
    if unknown:
        raise SystemExit(f"row {row.label!r}: {row.method} has no hyperparameter {sorted(unknown)}")
    params.update(row.params)
    return params


# ----------------------------------------------------------------------------------- accuracy


def _load(dataset_name: str, data_root: Path, cache: Path):
    from gkd_search.registry import build_registry, get_plugin_manager
    from gkd_search.teacher import TeacherConfig, get_teacher

    registry = build_registry(get_plugin_manager(autoload=False))
    spec = registry.get("dataset", dataset_name)
    dataset = spec.load(data_root, cache / "datasets", 0)
    config = TeacherConfig.parse(spec.default_teacher)
    _, teacher = get_teacher(dataset, config, registry.get("family", config.family), seed=0, cache_dir=cache)
    return registry, dataset, teacher


def tasks(datasets: list[str], seeds: list[int], registry) -> list[tuple[str, Row, str, int]]:
    """Every ``(dataset, row, student, seed)`` to run, interleaving the datasets so that the
    shards of :func:`run_accuracy` get similar work. PubMed runs the methods, not the
    ablation and variant rows (see :data:`ABLATION_ROWS`)."""
    out = []
    for row in ROWS:
        method = registry.methods.get(row.method)
        if method is None:
            print(f"skip {row.label}: no method {row.method!r}", flush=True)
            continue
        for student, (family, _, _) in STUDENTS.items():
            if not method.accepts(registry.families[family]):
                continue
            for seed in seeds:
                for ds in datasets:
                    if ds != "cora" and row.label in ABLATION_ROWS:
                        continue
                    out.append((ds, row, student, seed))
    return out


def _claim(out: Path, claims: Path, key: tuple, worker: int) -> bool:
    """Whether this worker takes the task ``key``: not yet in ``out`` and first claimed by it in
    ``claims`` (one line per claim, appended; the workers share the file, so a fast worker
    takes what a slow one has not reached)."""
    text = json.dumps(list(key))
    if out.exists():
        for line in out.read_text().splitlines():
            rec = json.loads(line)
            if json.dumps([rec["dataset"], rec["row"], rec["student"], rec["seed"], rec["epochs"]]) == text:
                return False
    lines = claims.read_text().splitlines() if claims.exists() else []
    if any(line.split("\t", 1)[1] == text for line in lines):
        return False
    with claims.open("a") as fh:
        fh.write(f"{worker}\t{text}\n")
    first = next(line for line in claims.read_text().splitlines() if line.split("\t", 1)[1] == text)
    return first.split("\t", 1)[0] == str(worker)


def run_accuracy(datasets: list[str], seeds: list[int], shard: int, shards: int, data_root: Path, cache: Path,
                 out: Path) -> None:
    """Run the tasks not yet in ``out`` (a JSON-lines file shared by the workers) that this
    worker (number ``shard`` of ``shards``) claims first."""
    import torch

    from gkd_search.latency import LatencyProtocol
    from gkd_search.trial import TrialContext, run_trial
    from gkd_search.types import TrialSpec

    torch.set_num_threads(1)
    contexts, teachers = {}, {}
    registry = None
    for ds in datasets:
        registry, dataset, teacher = _load(ds, data_root, cache)
        teachers[ds] = teacher
        contexts[ds] = TrialContext(dataset=dataset, teacher=teacher, families=registry.families,
                                    methods=registry.methods, latency={}, budget_ms=float("inf"),
                                    protocol=LatencyProtocol(repeats=30), structural_losses=registry.losses,
                                    cache_dir=cache / "methods")
        print(f"[{ds}] teacher {teacher.spec}: test {teacher.test_acc:.3f}", flush=True)
    claims = out.with_suffix(".claims")
    for ds, row, student, seed in tasks(datasets, seeds, registry):
        epochs = EPOCHS[ds]
        if not _claim(out, claims, (ds, row.label, student, seed, epochs), shard):
            continue
        family, layers, hidden = STUDENTS[student]
        params = row_params(row, registry.methods[row.method])
        training = {**TRAINING, "epochs": epochs, "patience": epochs}
        spec = TrialSpec(family=family, num_layers=layers, hidden_channels=hidden, method=row.method,
                         method_params=params, training=training, seed=seed)
        result = run_trial(spec, contexts[ds], f"{row.label}-{student}-{seed}")
        rec = {"dataset": ds, "row": row.label, "method": row.method, "params": params, "epochs": epochs,
               "student": student, "architecture": spec.architecture_key(), "seed": seed,
               "status": result.status, "error": result.error, "val_acc": result.val_acc,
               "test_acc": result.test_acc, "sec_per_epoch": result.train_seconds_per_epoch,
               "peak_rss_mb": result.peak_rss_mb, "teacher_test_acc": teachers[ds].test_acc}
        with out.open("a") as fh:
            fh.write(json.dumps(rec) + "\n")
        acc = f"{result.test_acc:.3f}" if result.test_acc is not None else result.error
        print(f"[{ds}] {row.label:30s} {student} seed {seed}: test {acc}", flush=True)


# ---------------------------------------------------------------------------------- step cost


def run_cost(data_root: Path, cache: Path, teacher_layers: int = 64, width: int = 64, student_layers: int = 4,
             steps: int = 30, warmup: int = 5) -> dict[str, Any]:
    """Median milliseconds of one training step of every method in :data:`COST_ROWS`."""
    import torch

    from gkd_search.distill.objective import build_objective
    from gkd_search.types import DistillationBatch, DistillationContext

    torch.set_num_threads(1)
    registry, dataset, _ = _load("cora", data_root, cache)
    data = dataset.data
    gcn = registry.get("family", "gcn")
    torch.manual_seed(0)
    teacher = gcn.build(dataset.num_features, dataset.num_classes, teacher_layers, width)
    teacher.eval()
    with torch.no_grad():
        t_out = teacher(data.x, data.edge_index)
    rows = {}
    for row in COST_ROWS:
        method = registry.methods.get(row.method)
        if method is None:
            continue
        params = row_params(row, method)
        torch.manual_seed(0)
        student = gcn.build(dataset.num_features, dataset.num_classes, student_layers, width, dropout=0.5)
        with torch.no_grad():
            student.eval()
            dims = [int(h.size(-1)) for h in student(data.x, data.edge_index).hidden]
        context = DistillationContext(
            num_classes=dataset.num_classes, student_family="gcn", student_uses_graph=True, student_hidden_dims=dims,
            teacher_hidden_dims=[int(h.size(-1)) for h in t_out.hidden], x=data.x, edge_index=data.edge_index,
            structural_losses=registry.losses, cache_dir=cache / "methods", seed=0)
        loss = build_objective(method, params, context)
        batch = DistillationBatch(y=data.y, train_mask=data.train_mask, teacher_logits=t_out.logits,
                                  teacher_hidden=list(t_out.hidden) if "hidden" in method.requires else [],
                                  edge_index=data.edge_index)
        optimizer = torch.optim.Adam([*student.parameters(), *loss.parameters()], lr=0.01)
        times = []
        for step in range(warmup + steps):
            start = time.perf_counter()
            student.train()
            optimizer.zero_grad(set_to_none=True)
            value = loss(student(data.x, data.edge_index), batch)
            value.backward()
            optimizer.step()
            if step >= warmup:
                times.append((time.perf_counter() - start) * 1000)
        rows[row.label] = {"method": row.method, "params": params, "median_ms": statistics.median(times),
                           "p90_ms": sorted(times)[int(0.9 * len(times)) - 1]}
        print(f"[cost] {row.label:26s} {rows[row.label]['median_ms']:8.1f} ms", flush=True)
    base = rows["softkd"]["median_ms"]
    for rec in rows.values():
        rec["ratio_to_softkd"] = rec["median_ms"] / base
    return {"teacher": f"gcn-{teacher_layers}x{width} (random weights)",
            "student": f"gcn-{student_layers}x{width}", "dataset": "cora", "threads": 1, "steps": steps,
            "warmup": warmup, "rows": rows}


# ------------------------------------------------------------------------------------ report


def summarise(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and std of test accuracy per (dataset, student, row), with the difference to none."""
    groups: dict[tuple, list[dict]] = {}
    for rec in records:
        groups.setdefault((rec["dataset"], rec["student"], rec["row"]), []).append(rec)
    out = []
    for (ds, student, row), recs in groups.items():
        ok = [r for r in recs if r["status"] == "ok"]
        accs = [r["test_acc"] for r in ok]
        out.append({
            "dataset": ds, "student": student, "row": row, "architecture": recs[0]["architecture"],
            "seeds": len(recs), "failed": len(recs) - len(ok),
            "mean": statistics.fmean(accs) if accs else None,
            "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            "sec_per_epoch": statistics.median(r["sec_per_epoch"] for r in ok) if ok else None,
            "peak_rss_mb": max(r["peak_rss_mb"] for r in ok) if ok else None,
            "teacher_test_acc": recs[0]["teacher_test_acc"],
        })
    for s in out:
        base = next((b for b in out if (b["dataset"], b["student"], b["row"]) == (s["dataset"], s["student"], "none")),
                    None)
        s["delta_vs_none"] = (s["mean"] - base["mean"]) if base and s["mean"] is not None and base["mean"] else None
    order = {r.label: i for i, r in enumerate(ROWS)}
    out.sort(key=lambda s: (s["dataset"], s["student"], order.get(s["row"], 99)))
    return out


def render(report: dict[str, Any]) -> str:
    lines = [START, "", f"Generated by `python bench/methods.py` on {report['date']} "
             f"({report['machine']}, torch {report['torch']}). Raw numbers: `bench/results/methods.json`.", ""]
    summary = report.get("summary", [])
    for ds in sorted({s["dataset"] for s in summary}):
        teacher = next(s["teacher_test_acc"] for s in summary if s["dataset"] == ds)
        epochs = report.get("epochs", {}).get(ds, "?") if isinstance(report.get("epochs"), dict) else "?"
        lines += [f"### {ds}: teacher test accuracy {teacher:.3f}", "",
                  f"{report.get('seeds', 5)} seeds, {epochs} epochs, Adam lr {TRAINING['lr']}, weight decay "
                  f"{TRAINING['weight_decay']}, dropout {TRAINING['dropout']}; the best-validation epoch is kept. "
                  f"Students start from the same weights for every method (seed s).", "",
                  "| method | student | test accuracy (mean ± std) | vs none | s/epoch | peak RSS MB |",
                  "|---|---|---|---|---|---|"]
        for s in (x for x in summary if x["dataset"] == ds):
            acc = f"{s['mean']:.3f} ± {s['std']:.3f}" if s["mean"] is not None else "failed"
            if s["failed"]:
                acc += f" ({s['failed']} of {s['seeds']} failed)"
            delta = f"{100 * s['delta_vs_none']:+.1f} pts" if s["delta_vs_none"] is not None else ""
            spe = f"{s['sec_per_epoch']:.4f}" if s["sec_per_epoch"] else ""
            rss = f"{s['peak_rss_mb']:.0f}" if s["peak_rss_mb"] else ""
            lines.append(f"| {s['row']} | {s['architecture']} | {acc} | {delta} | {spe} | {rss} |")
        lines.append("")
    cost = report.get("cost")
    if cost:
        lines += [f"### Step cost: {cost['teacher']} teacher, {cost['student']} student, {cost['dataset']}", "",
                  f"One training step (forward, loss, backward, Adam step), median of {cost['steps']} steps after "
                  f"{cost['warmup']} warm-up steps, {cost['threads']} torch thread.", "",
                  "| method | ms per step | × softkd |", "|---|---|---|"]
        for label, rec in cost["rows"].items():
            lines.append(f"| {label} | {rec['median_ms']:.1f} | {rec['ratio_to_softkd']:.2f} |")
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def write_doc(report: dict[str, Any]) -> None:
    text = DOC.read_text() if DOC.exists() else f"# Distillation methods\n\n{START}\n{END}\n"
    if START not in text:
        text += f"\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1] if END in rest else ""
    DOC.write_text(head + render(report) + tail)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="cora,pubmed")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (one torch thread each)")
    parser.add_argument("--quick-epochs", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--part", choices=["all", "accuracy", "cost"], default="all")
    parser.add_argument("--quick", action="store_true", help="1 seed, 20 epochs, Cora, no doc")
    parser.add_argument("--render", action="store_true", help="only rewrite docs/methods.md from the results")
    parser.add_argument("--data-root", type=Path, default=Path(os.environ.get("GKD_DATA", ROOT.parent / "shared" / "data")))
    parser.add_argument("--cache-dir", type=Path, default=Path(os.environ.get("GKD_CACHE", "~/.cache/gkd-search")).expanduser())
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick_epochs:
        EPOCHS.update(cora=20, pubmed=10)

    if args.worker:  # one shard of the tasks in its own process (one core each)
        shard, shards = (int(v) for v in args.worker.split("/"))
        run_accuracy(args.datasets.split(","), list(range(args.seeds)), shard, shards, args.data_root,
                     args.cache_dir, Path(args.results))
        return 0
    if args.quick:
        args.datasets, args.seeds = "cora", 1
        EPOCHS["cora"] = 20
        args.results = Path("/tmp/gkd-bench-methods-quick.json")
        args.results.with_suffix(".records.jsonl").unlink(missing_ok=True)
    report = json.loads(args.results.read_text()) if args.results.exists() else {}
    if not args.render:
        import torch

        report.update(date=_dt.date.today().isoformat(), machine=f"{platform.processor() or platform.machine()}, "
                      f"{os.cpu_count()} cores", torch=torch.__version__, training=TRAINING, students=STUDENTS,
                      seeds=args.seeds, epochs=EPOCHS)
        if args.part in ("all", "accuracy"):
            records_path = args.results.with_suffix(".records.jsonl")
            records_path.with_suffix(".claims").unlink(missing_ok=True)
            procs = [subprocess.Popen([sys.executable, __file__, "--worker", f"{shard}/{args.jobs}",
                                       "--datasets", args.datasets, "--seeds", str(args.seeds),
                                       "--data-root", str(args.data_root), "--cache-dir", str(args.cache_dir),
                                       "--results", str(records_path)]
                                      + (["--quick-epochs"] if args.quick else []),
                                      env={**os.environ, "OMP_NUM_THREADS": "1"})
                     for shard in range(args.jobs)]
            codes = [p.wait() for p in procs]
            if any(codes):
                print(f"a worker failed ({codes}); its finished rows are kept in {records_path}", file=sys.stderr)
            records = [json.loads(line) for line in records_path.read_text().splitlines()] if records_path.exists() else []
            report["records"] = records
            report["summary"] = summarise(records)
        if args.part in ("all", "cost"):
            report["cost"] = run_cost(args.data_root, args.cache_dir)
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps(report, indent=1))
    if not args.quick:
        write_doc(report)
    print(render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
