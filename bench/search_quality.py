#!/usr/bin/env python
"""Does pruning buy the same student for less? 30-trial searches with and without ``--pruner asha``.

For each dataset (Cora, PubMed) and sampler seed (0, 1, 2), the real search runs twice, once
with ``--pruner asha`` (the default: Ray Tune's ASHA within latency brackets,
:mod:`gkd_search.pruning`) and once with ``--pruner none``, each in a fresh Python process with
a fresh sqlite MLflow store and the same options otherwise::

    run_search(SearchConfig(dataset=D, trials=30, budget_ms=10, seed=S, pruner=P, register=False))

(the default space, the dataset's default teacher, 2 trials at a time on the machine's 2 cores).
The teacher and the latency table come from a cache filled by ``prepare()`` in its own process
before any timing, so neither mode pays for them. The order of the two modes alternates between
seeds.

Reported per run: the wall time of ``run_search``; the *trial-seconds* (the sum over every trial,
pruned and failed ones included, of its wall time in its worker: build, latency gate, training,
evaluation, saving - ``TrialResult.trial_seconds``); the statuses; and the selected student's
validation and test score (``one-se``). The target (issue 14): the same selected score within
one standard error in at most half the trial-seconds.

Usage::

    python bench/search_quality.py                          # cora and pubmed, seeds 0-2 (hours on 2 cores)
    python bench/search_quality.py --datasets cora --seeds 0,1,2
    python bench/search_quality.py --render                 # rewrite the docs section from the results

Rows are appended to ``bench/results/search_quality.jsonl`` as runs finish; a run already there
(same dataset, seed, pruner and trials) is not rerun. ``--render`` writes the section of
``docs/benchmarks.md`` between its markers.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from _report import cores, cpu_model, write_section  # noqa: E402

from gkd_search.pruning import GRACE_EPOCHS  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "search_quality.jsonl"
DOCS = ROOT / "docs" / "benchmarks.md"
MARKER = "search_quality"
DATASETS = ("cora", "pubmed")
SEEDS = (0, 1, 2)
PRUNERS = ("asha", "none")


def _config(params: dict[str, Any]):
    from gkd_search.search import SearchConfig

    return SearchConfig(dataset=params["dataset"], data_root=params["data_root"], trials=params["trials"],
                        budget_ms=params["budget_ms"], seed=params["seed"], pruner=params["pruner"],
                        asha_grace_epochs=params.get("asha_grace_epochs", GRACE_EPOCHS),
                        cache_dir=params["cache_dir"], tracking_uri=params.get("tracking_uri"),
                        register=False, experiment="search-quality")


def worker_setup(params: dict[str, Any]) -> dict[str, Any]:
    """Train (or load) the teacher and fill the latency table, untimed."""
    from gkd_search.search import prepare

    started = time.perf_counter()
    prepared = prepare(_config(params), check_tracking=False)
    return {"seconds": time.perf_counter() - started, "teacher": prepared.teacher.spec,
            "teacher_test_score": prepared.teacher.test_score,
            "n_architectures": len(prepared.architectures), "n_feasible": len(prepared.feasible)}


def _trial_row(result) -> dict[str, Any]:
    return {"name": result.spec.architecture_key(),
            "method": result.spec.method, "status": result.status, "error": result.error,
            "params": result.params, "latency_ms_p50": result.latency_ms_p50,
            "val_score": result.val_score, "test_score": result.test_score, "val_score_se": result.val_score_se,
            "last_val_score": result.last_val_score, "epochs_run": result.epochs_run,
            "train_seconds": result.train_seconds, "trial_seconds": result.trial_seconds,
            # the whole spec, so a trial can be re-run (bench/robustness.py's `none` references)
            "spec": dataclasses.asdict(result.spec)}


def worker_search(params: dict[str, Any]) -> dict[str, Any]:
    """One timed ``run_search``."""
    from gkd_search.search import run_search

    started = time.perf_counter()
    summary = run_search(_config(params), fresh=True)
    wall = time.perf_counter() - started
    trials = [_trial_row(r) for r in summary.results]
    selected = _trial_row(summary.selected) if summary.selected else None
    best = _trial_row(summary.best) if summary.best else None
    return {"wall_seconds": wall, "search_seconds": summary.seconds, "metric": summary.metric,
            "tolerance": summary.tolerance, "trials": trials, "selected": selected, "best": best}


def run_worker(mode: str, params: dict[str, Any], workdir: Path) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    params = {**params, "tracking_uri": f"sqlite:///{workdir / 'mlflow.db'}"}
    (workdir / "params.json").write_text(json.dumps(params))
    out = workdir / "result.json"
    log = workdir / "log.txt"
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", mode,
               "--params", str(workdir / "params.json"), "--out", str(out)]
    with open(log, "w") as handle:
        proc = subprocess.run(command, cwd=workdir, stdout=handle, stderr=subprocess.STDOUT,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if proc.returncode != 0:
        raise SystemExit(f"{mode} worker failed (exit {proc.returncode}); its log ends:\n{log.read_text()[-3000:]}")
    return json.loads(out.read_text())


def summarise_run(row: dict[str, Any]) -> dict[str, Any]:
    trials = row["trials"]
    counts: dict[str, int] = {}
    for t in trials:
        counts[t["status"]] = counts.get(t["status"], 0) + 1
    return {"trial_seconds": sum(t["trial_seconds"] or 0.0 for t in trials),
            "train_seconds": sum(t["train_seconds"] or 0.0 for t in trials),
            "epochs": sum(t["epochs_run"] or 0 for t in trials), "statuses": counts}


def load_rows() -> list[dict[str, Any]]:
    if not RESULTS.is_file():
        return []
    return [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]


def _mean_se(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    return mean, se


def render(rows: list[dict[str, Any]]) -> str:
    lines = ["`python bench/search_quality.py` "
             f"({rows[0]['date'][:10] if rows else '-'}, {cpu_model()}, {cores()} cores; raw rows in "
             f"`{RESULTS.resolve().relative_to(ROOT)}`). Each cell: mean over the sampler seeds, with its "
             "standard error (+/-) where there are several.", "",
             "| dataset | pruner | seeds | wall s | trial-seconds | epochs trained | pruned / failed / ok "
             "| selected val | selected test | selected students |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    verdicts = []
    for dataset in sorted({r["dataset"] for r in rows}):
        by_pruner: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            if r["dataset"] == dataset:
                by_pruner.setdefault(r["pruner"], []).append(r)
        for pruner in PRUNERS:
            runs = sorted(by_pruner.get(pruner, []), key=lambda r: r["seed"])
            if not runs:
                continue
            s = [summarise_run(r) for r in runs]
            val = [r["selected"]["val_score"] for r in runs if r["selected"]]
            test = [r["selected"]["test_score"] for r in runs if r["selected"]]

            def cell(values: list[float], digits: int) -> str:
                if not values:
                    return "-"
                mean, se = _mean_se(values)
                return f"{mean:.{digits}f}" + ("" if math.isnan(se) else f" +/- {se:.{digits}f}")

            statuses = [sum(x["statuses"].get(k, 0) for x in s) for k in ("pruned", "failed", "ok")]
            chosen = ", ".join(f"s{r['seed']}: {r['selected']['name']} {r['selected']['method']}"
                               if r["selected"] else f"s{r['seed']}: none" for r in runs)
            lines.append(f"| {dataset} | {pruner} | {','.join(str(r['seed']) for r in runs)} | "
                         f"{cell([r['wall_seconds'] for r in runs], 0)} | "
                         f"{cell([x['trial_seconds'] for x in s], 0)} | {cell([x['epochs'] for x in s], 0)} | "
                         f"{' / '.join(map(str, statuses))} | {cell(val, 3)} | {cell(test, 3)} | {chosen} |")
        asha, none = by_pruner.get("asha", []), by_pruner.get("none", [])
        seeds = sorted({r["seed"] for r in asha} & {r["seed"] for r in none})
        if seeds:
            pick = lambda runs, seed: next(r for r in runs if r["seed"] == seed)  # noqa: E731
            ratio = [summarise_run(pick(asha, k))["trial_seconds"] / summarise_run(pick(none, k))["trial_seconds"]
                     for k in seeds]
            dval = [pick(asha, k)["selected"]["val_score"] - pick(none, k)["selected"]["val_score"] for k in seeds
                    if pick(asha, k)["selected"] and pick(none, k)["selected"]]
            dtest = [pick(asha, k)["selected"]["test_score"] - pick(none, k)["selected"]["test_score"] for k in seeds
                     if pick(asha, k)["selected"] and pick(none, k)["selected"]]
            se_sel = statistics.fmean(pick(none, k)["selected"]["val_score_se"] or 0.0 for k in seeds
                                      if pick(none, k)["selected"])
            mratio = statistics.fmean(ratio)
            mdval = statistics.fmean(dval) if dval else float("nan")
            mdtest = statistics.fmean(dtest) if dtest else float("nan")
            time_ok = mratio <= 0.5
            score_ok = abs(mdval) <= se_sel
            verdicts.append(
                f"- **{dataset}** ({len(seeds)} paired seeds): pruning used {mratio:.2f}x the trial-seconds "
                f"(per seed {', '.join(f'{x:.2f}' for x in ratio)}; target <= 0.5: {'met' if time_ok else 'NOT met'}); "
                f"the selected student's validation score moved by {mdval:+.3f} (test {mdtest:+.3f}) against a "
                f"standard error of {se_sel:.3f} of the `none` search's selected score "
                f"({'within' if score_ok else 'NOT within'} one standard error).")
    return "\n".join(lines + [""] + verdicts)


def _run_key(dataset: str, seed: int, pruner: str, trials: int, grace: int) -> tuple:
    """A run's identity in the results file: an ``asha`` run's grace period is part of it."""
    return (dataset, seed, pruner, trials, grace if pruner == "asha" else None)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    parser.add_argument("--pruners", default=",".join(PRUNERS))
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--budget-ms", type=float, default=10.0)
    parser.add_argument("--asha-grace-epochs", type=int, default=GRACE_EPOCHS,
                        help="the asha searches' --asha-grace-epochs (the none searches have no rungs)")
    parser.add_argument("--data-root", default=os.environ.get("GKD_DATA", str(ROOT.parent / "shared" / "data")))
    parser.add_argument("--cache-dir", default=os.environ.get("GKD_CACHE") or str(Path.home() / ".cache" / "gkd-search"))
    parser.add_argument("--results", default=None,
                        help="the JSON-lines file rows are appended to (default bench/results/search_quality.jsonl)")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md")
    parser.add_argument("--render", action="store_true", help="only rewrite the docs section from the results")
    parser.add_argument("--worker", choices=["setup", "search"], help=argparse.SUPPRESS)
    parser.add_argument("--params", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    global RESULTS
    RESULTS = Path(args.results) if args.results else RESULTS
    if args.worker:
        params = json.loads(Path(args.params).read_text())
        result = worker_setup(params) if args.worker == "setup" else worker_search(params)
        Path(args.out).write_text(json.dumps(result, indent=1, default=str))
        return 0

    if not args.render:
        done = {_run_key(r["dataset"], r["seed"], r["pruner"], r.get("n_trials", len(r["trials"])),
                         r.get("asha_grace_epochs", GRACE_EPOCHS)) for r in load_rows()}
        base = Path(tempfile.mkdtemp(prefix="gkd-bench-quality-"))
        print(f"work folder {base}", flush=True)
        for dataset in args.datasets.split(","):
            params = {"dataset": dataset, "data_root": args.data_root, "trials": args.trials,
                      "budget_ms": args.budget_ms, "cache_dir": args.cache_dir, "seed": 0, "pruner": "none",
                      "asha_grace_epochs": args.asha_grace_epochs}
            setup = run_worker("setup", params, base / f"{dataset}-setup")
            print(f"{dataset}: teacher {setup['teacher']} ready ({setup['seconds']:.0f} s, untimed), "
                  f"{setup['n_feasible']}/{setup['n_architectures']} architectures within the budget", flush=True)
            for index, seed in enumerate(int(s) for s in args.seeds.split(",")):
                pruners = args.pruners.split(",")
                for pruner in (pruners if index % 2 == 0 else pruners[::-1]):
                    if _run_key(dataset, seed, pruner, args.trials, args.asha_grace_epochs) in done:
                        print(f"{dataset} seed {seed} {pruner}: already in {RESULTS.name}", flush=True)
                        continue
                    result = run_worker("search", {**params, "seed": seed, "pruner": pruner},
                                        base / f"{dataset}-{seed}-{pruner}")
                    row = {"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "dataset": dataset, "seed": seed,
                           "pruner": pruner, "n_trials": args.trials, "budget_ms": args.budget_ms,
                           **({"asha_grace_epochs": args.asha_grace_epochs} if pruner == "asha" else {}),
                           "machine": {"cpu": cpu_model(), "cores": cores()}, **result}  # result["trials"]: the rows
                    RESULTS.parent.mkdir(parents=True, exist_ok=True)
                    with open(RESULTS, "a") as handle:
                        handle.write(json.dumps(row, default=str) + "\n")
                    s = summarise_run(row)
                    sel = row["selected"]
                    print(f"{dataset} seed {seed} {pruner}: wall {row['wall_seconds']:.0f} s, trial-seconds "
                          f"{s['trial_seconds']:.0f}, {s['statuses']}, selected "
                          + (f"{sel['name']} {sel['method']} val {sel['val_score']:.3f} test {sel['test_score']:.3f}"
                             if sel else "none"), flush=True)
    rows = load_rows()
    if rows:
        text = render(rows)
        if not args.no_docs:
            write_section(DOCS, MARKER, text, "Pruning: the same student for fewer trial-seconds?")
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
