#!/usr/bin/env python
"""How many trials of a default-space search collapse, per method (issue 16).

For each dataset (Cora, PubMed, Photo) and sampler seed (0, 1, 2) one real search runs
(``run_search``: the default space, the dataset's default teacher, 30 trials, a 10 ms budget,
Ray Tune with 2 concurrent trials, MLflow to its own sqlite store). A trained trial *collapsed*
when

* its validation accuracy is below the majority-class rate of the validation nodes plus 5 points,
  or
* it is 20 points below the same student without a teacher: a ``none`` trial of the same
  architecture, training settings and seed (``run_trial`` in this process). The reference is run
  only for trials more than 15 points below the search's best validation accuracy (a trial
  closer to the best cannot be 20 points below its reference unless the reference beats the
  whole search by 5 points; the number of references run is reported).

A trial the training guard stopped (``gkd.error`` ``diverged`` or ``degenerate``) also counts as
collapsed (it never had a chance; the guard only makes it cheap), and is reported apart. Crashes
(other ``failed`` trials) are reported apart and not counted.

Usage::

    python bench/robustness.py --label after                      # every dataset and seed, --pruner none
    python bench/robustness.py --label before --datasets cora --seeds 0
    PYTHONPATH=<worktree of the base commit> python bench/robustness.py --label before
    python bench/robustness.py --render                           # rewrite docs/benchmarks.md

Each finished search is appended to ``bench/results/robustness.<label>.jsonl`` (a rerun skips the
searches already there); ``--render`` summarises both labels into ``bench/results/robustness.json``
and the robustness section of ``docs/benchmarks.md``.

Labels (:data:`LABELS`): ``before`` is the code before issue 16's fixes (a70d36b), ``after`` with
them (ae96cb5), ``warm-up`` after the guard's warm-up became a budget of optimiser movement and
patience stopped ending trials still at chance (``docs/methods.md``, "When a trial is stopped"),
``appnp-teacher`` after the Planetoid graphs' default teacher became APPNP-2x256 (cd44965).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- bench:robustness:start -->", "<!-- bench:robustness:end -->"
LABELS = ("before", "after", "warm-up", "appnp-teacher")
DATASETS = ("cora", "pubmed", "photo")
SEEDS = (0, 1, 2)
MAJORITY_MARGIN = 0.05
NONE_GAP = 0.20
REFERENCE_PREFILTER = 0.15
GUARD_ERRORS = ("diverged", "degenerate")


def _quiet() -> None:
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    for noisy in ("mlflow", "alembic", "ray", "optuna"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class _Progress:
    """Prints the search's messages and one line per trial (no live bars in a log file)."""

    def message(self, text: str) -> None:
        print(f"  {text}", flush=True)

    def progress(self, label: str, total=None, unit: str = ""):
        from gkd_search.search import Progress

        return Progress()

    def trial(self, result, done, total, feasible, best) -> None:
        val = f"{result.val_acc:.3f}" if result.val_acc is not None else "-"
        print(f"  [{done:>2}/{total}] {result.spec.architecture_key():<16} {result.spec.method:<9} {result.status:<7} "
              f"val {val} {result.error or ''}", flush=True)


def _code_version() -> dict[str, str]:
    import gkd_search

    folder = Path(gkd_search.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(folder), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = "unknown", ""
    return {"code": str(folder), "commit": commit + ("+dirty" if dirty else "")}


def majority_rate(dataset) -> float:
    import torch

    y = dataset.data.y[dataset.data.val_mask]
    return float(torch.bincount(y).max()) / max(int(y.numel()), 1)


def run_one(dataset: str, seed: int, trials: int, data_root: str, tracking_uri: str, label: str,
            pruner: str = "none") -> dict[str, Any]:
    """One search and the ``none`` references its low trials need. ``pruner`` is passed where the
    code under test has ``--pruner`` (a pruned trial is never judged, so counting collapses wants
    ``none``)."""
    from dataclasses import fields, replace

    from gkd_search.search import SearchConfig, prepare, run_search
    from gkd_search.trial import run_trial

    extra = {"pruner": pruner} if "pruner" in {f.name for f in fields(SearchConfig)} else {}
    config = SearchConfig(dataset=dataset, data_root=data_root, seed=seed, trials=trials, budget_ms=10.0,
                          tracking_uri=tracking_uri, experiment=f"robustness-{label}", **extra)
    start = time.perf_counter()
    summary = run_search(config, reporter=_Progress())
    wall = time.perf_counter() - start
    prepared = prepare(SearchConfig(dataset=dataset, data_root=data_root, seed=seed), check_tracking=False)
    chance = majority_rate(prepared.dataset)
    context = prepared.context()
    best = max((r.val_acc for r in summary.results if r.status == "ok"), default=0.0)
    rows, references = [], {}
    for r in summary.results:
        row = {
            "status": r.status, "error": r.error, "error_detail": getattr(r, "error_detail", None),
            "arch": r.spec.architecture_key(), "method": r.spec.method, "method_params": r.spec.method_params,
            "training": r.spec.training, "val_acc": r.val_acc, "test_acc": r.test_acc,
            "epochs_run": r.epochs_run, "train_seconds": r.train_seconds, "none_val_acc": None,
        }
        if r.status == "ok" and r.spec.method != "none" and r.val_acc < best - REFERENCE_PREFILTER:
            key = json.dumps([r.spec.architecture_key(), r.spec.training], sort_keys=True)
            if key not in references:
                ref = run_trial(replace(r.spec, method="none", method_params={}), context, "reference")
                references[key] = ref.val_acc
                print(f"  reference none {r.spec.architecture_key()}: val {ref.val_acc}", flush=True)
            row["none_val_acc"] = references[key]
        rows.append(row)
    return {"label": label, "dataset": dataset, "seed": seed, "trials": trials, "wall_seconds": wall,
            "pruner": extra.get("pruner", "none"),
            "teacher": summary.teacher.spec, "teacher_val_acc": summary.teacher.val_acc,
            "teacher_test_acc": summary.teacher.test_acc, "majority_rate": chance, "best_val_acc": best,
            "selected": None if summary.selected is None else {
                "arch": summary.selected.spec.architecture_key(), "method": summary.selected.spec.method,
                "val_acc": summary.selected.val_acc, "test_acc": summary.selected.test_acc},
            "references_run": len(references), "rows": rows,
            "date": _dt.date.today().isoformat(), **_code_version()}


def collapsed(row: dict[str, Any], chance: float) -> Optional[str]:
    """Why a trial collapsed (``guard: ...``, ``majority``, ``none - 20``), or None."""
    if row["status"] == "failed" and row["error"] in GUARD_ERRORS:
        return f"guard: {row['error']}"
    if row["status"] != "ok":
        return None
    if row["val_acc"] < chance + MAJORITY_MARGIN:
        return "majority"
    if row["none_val_acc"] is not None and row["val_acc"] < row["none_val_acc"] - NONE_GAP:
        return "none - 20"
    return None


def load(label: str) -> list[dict[str, Any]]:
    path = RESULTS / f"robustness.{label}.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    per_method: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    per_dataset: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    examples = []
    for run in runs:
        for row in run["rows"]:
            if row["status"] in ("over_budget", "pruned"):  # never trained to the end: not judged
                continue
            why = collapsed(row, run["majority_rate"])
            for table, key in ((per_method, row["method"]), (per_dataset, run["dataset"]), (per_method, "all")):
                table[key]["trials"] += 1
                table[key]["collapsed"] += why is not None
                table[key]["guard"] += bool(why and why.startswith("guard"))
                table[key]["crashed"] += row["status"] == "failed" and row["error"] not in GUARD_ERRORS
                table[key]["seconds"] += row["train_seconds"] or 0.0
                table[key]["collapsed_seconds"] += (row["train_seconds"] or 0.0) if why else 0.0
            if why:
                examples.append({"dataset": run["dataset"], "seed": run["seed"], "arch": row["arch"], "method": row["method"],
                                 "why": why, "val_acc": row["val_acc"], "none_val_acc": row["none_val_acc"],
                                 "epochs_run": row["epochs_run"], "method_params": row["method_params"],
                                 "training": row["training"], "detail": row.get("error_detail")})
    return {"per_method": {k: dict(v) for k, v in per_method.items()},
            "per_dataset": {k: dict(v) for k, v in per_dataset.items()}, "collapses": examples,
            "runs": [{k: run[k] for k in ("dataset", "seed", "teacher", "teacher_test_acc", "majority_rate", "best_val_acc",
                                          "selected", "wall_seconds", "references_run", "commit")} for run in runs]}


def _share(cell: Optional[dict[str, int]]) -> str:
    if not cell or not cell.get("trials"):
        return "-"
    c, n = cell["collapsed"], cell["trials"]
    guard = f" ({cell['guard']} stopped)" if cell.get("guard") else ""
    return f"{c}/{n} = {100.0 * c / n:.1f}%{guard}"


def render(summaries: dict[str, dict[str, Any]]) -> str:
    labels = [label for label in LABELS if label in summaries]
    lines = [START, "", "| method | " + " | ".join(f"collapsed, {label}" for label in labels) + " |",
             "|---|" + "---|" * len(labels)]
    methods = sorted({m for s in summaries.values() for m in s["per_method"] if m != "all"})
    for method in [*methods, "all"]:
        name = "**all**" if method == "all" else f"`{method}`"
        lines.append(f"| {name} | " + " | ".join(_share(summaries[label]["per_method"].get(method)) for label in labels) + " |")
    lines += ["", "| dataset | " + " | ".join(f"collapsed, {label}" for label in labels) + " |", "|---|" + "---|" * len(labels)]
    for dataset in DATASETS:
        lines.append(f"| {dataset} | " + " | ".join(_share(summaries[label]["per_dataset"].get(dataset)) for label in labels) + " |")
    lines += ["", "| run | " + " | ".join(f"teacher test / selected val / selected test, {label}" for label in labels) + " |",
              "|---|" + "---|" * len(labels)]
    keys = sorted({(r["dataset"], r["seed"]) for s in summaries.values() for r in s["runs"]},
                  key=lambda k: (DATASETS.index(k[0]) if k[0] in DATASETS else 9, k[1]))
    for dataset, seed in keys:
        cells = []
        for label in labels:
            run = next((r for r in summaries[label]["runs"] if (r["dataset"], r["seed"]) == (dataset, seed)), None)
            if run is None or run["selected"] is None:
                cells.append("-")
            else:
                s = run["selected"]
                cells.append(f"{run['teacher_test_acc']:.3f} / {s['val_acc']:.3f} / {s['test_acc']:.3f} "
                             f"(`{s['arch']} {s['method']}`, {run['wall_seconds'] / 60:.0f} min)")
        lines.append(f"| {dataset} seed {seed} | " + " | ".join(cells) + " |")
    lines += ["", END]
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label", choices=LABELS, help="which code the runs measure (LABELS)")
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--pruner", choices=["none", "asha"], default="none",
                        help="the searches' --pruner (default none: a pruned trial is never judged)")
    parser.add_argument("--data-root", default=os.environ.get("GKD_DATA", str(ROOT.parent / "shared" / "data")))
    parser.add_argument("--tracking-uri", default=f"sqlite:///{ROOT / '.cache' / 'mlflow-bench.db'}")
    parser.add_argument("--render", action="store_true", help="only summarise the result files")
    args = parser.parse_args(argv)
    if not args.render:
        if not args.label:
            parser.error(f"--label {'|'.join(LABELS)} is required to run searches")
        _quiet()
        done = {(r["dataset"], r["seed"], r.get("pruner", "none")) for r in load(args.label)}
        out = RESULTS / f"robustness.{args.label}.jsonl"
        print(f"code under test: {_code_version()}", flush=True)
        for dataset in args.datasets.split(","):
            for seed in map(int, args.seeds.split(",")):
                if (dataset, seed, args.pruner) in done:
                    print(f"{dataset} seed {seed}: already in {out.name}", flush=True)
                    continue
                print(f"{dataset} seed {seed}: searching", flush=True)
                record = run_one(dataset, seed, args.trials, args.data_root, args.tracking_uri, args.label,
                                 args.pruner)
                with open(out, "a") as handle:
                    handle.write(json.dumps(record) + "\n")
    summaries = {label: summarise(load(label)) for label in LABELS if load(label)}
    if not summaries:
        print("no results yet", file=sys.stderr)
        return 1
    (RESULTS / "robustness.json").write_text(json.dumps(summaries, indent=1))
    for label, summary in summaries.items():
        print(f"{label}: all methods {_share(summary['per_method'].get('all'))}")
    if args.render:
        from _report import write_block

        write_block(DOC, START, END, render(summaries), "Robustness: collapsed trials per method")
    return 0


if __name__ == "__main__":
    sys.exit(main())
