#!/usr/bin/env python
"""Does a trial's score at ASHA's first rung predict its final score, per latency bracket?

``--pruner asha`` stops a trial at a rung (epoch 10, 30, 90 for 200 epochs) when its best
validation score so far is below the top third of what earlier trials of its latency bracket
scored there (:mod:`gkd_search.pruning`). That is right only if the early score ranks trials as
their final score does. This script measures it on real trials:

1. It replays every finished trial of the ``--pruner none`` searches in a ``search_quality.py``
   results file (the same specs, the same teacher and data, ``run_trial`` in one process)
   and records each trial's best validation score after every epoch, its epochs and its
   training seconds.
2. Per latency bracket it reports the rank correlation (Spearman) between the score at each
   rung and the final score, and how often a trial that ends within one standard error of the
   bracket's best would have been below the rung's cutoff.
3. It replays ASHA's decisions on those curves, trial by trial in each search's order, for
   several rung schedules (``--schedules``), and reports the training seconds each would have
   spent and the student ``one-se`` would then select, against no pruning. The trials a real
   search samples depend on the decisions (TPE learns from pruned trials), so this is a
   counterfactual on a fixed set of trials: it ranks schedules, ``search_quality.py`` measures
   the chosen one.

Usage::

    python bench/rung_fidelity.py --source bench/results/search_quality.appnp.jsonl --datasets cora

Curves are cached in ``bench/results/rung_fidelity.curves.jsonl`` (one row per replayed trial);
the summary goes to ``bench/results/rung_fidelity.json``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from _report import cores, cpu_model, write_section  # noqa: E402

DOCS = ROOT / "docs" / "benchmarks.md"
MARKER = "rung_fidelity"
CURVES = ROOT / "bench" / "results" / "rung_fidelity.curves.jsonl"
SUMMARY = ROOT / "bench" / "results" / "rung_fidelity.json"


def _searches(source: Path, dataset: str, seeds: Optional[set[int]] = None) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
    return [r for r in rows if r["dataset"] == dataset and r["pruner"] == "none" and (seeds is None or r["seed"] in seeds)]


def replay(source: Path, dataset: str, data_root: str, budget_ms: float,
           seeds: Optional[set[int]] = None) -> list[dict[str, Any]]:
    """Replay the finished trials of ``source``'s ``none`` searches on ``dataset``; cached rows
    (same source, dataset, seed and index) are reused."""
    import torch

    from gkd_search.pruning import latency_bracket
    from gkd_search.search import SearchConfig, prepare
    from gkd_search.trial import run_trial
    from gkd_search.types import TrialSpec

    cached = {}
    if CURVES.exists():
        for line in CURVES.read_text().splitlines():
            row = json.loads(line)
            cached[(row["source"], row["dataset"], row["search_seed"], row["index"])] = row
    searches = _searches(source, dataset, seeds)
    todo = [(s["seed"], i, t) for s in searches for i, t in enumerate(s["trials"])
            if t["status"] == "ok" and (source.name, dataset, s["seed"], i) not in cached]
    if todo:
        torch.set_num_threads(2)
        prepared = prepare(SearchConfig(dataset=dataset, data_root=data_root, budget_ms=budget_ms, trials=1,
                                        register=False), check_tracking=False)
        context = prepared.context()
        with CURVES.open("a") as out:
            for n, (seed, index, logged) in enumerate(todo):
                curve: list[float] = []
                result = run_trial(TrialSpec(**logged["spec"]), context, f"replay-{seed}-{index}",
                                   on_epoch=lambda epoch, best, curve=curve: curve.append(float(best)) or True)
                row = {"source": source.name, "dataset": dataset, "search_seed": seed, "index": index,
                       "name": logged["name"], "method": logged["method"], "status": result.status,
                       "params": result.params, "latency_ms_p50": result.latency_ms_p50,
                       "bracket": latency_bracket(result.latency_ms_p50 or 0.0, budget_ms),
                       "val_score": result.val_score, "test_score": result.test_score,
                       "val_score_se": result.val_score_se, "logged_val_score": logged["val_score"],
                       "epochs_run": result.epochs_run, "train_seconds": result.train_seconds,
                       "spec": logged["spec"], "curve": curve}
                out.write(json.dumps(row) + "\n")
                out.flush()
                cached[(source.name, dataset, seed, index)] = row
                print(f"[{n + 1}/{len(todo)}] seed {seed} #{index} {logged['name']} {logged['method']}: "
                      f"val {result.val_score:.3f} (logged {logged['val_score']:.3f}), "
                      f"{result.epochs_run} epochs, bracket {row['bracket']}", flush=True)
    return [cached[k] for k in sorted(cached) if k[0] == source.name and k[1] == dataset
            and (seeds is None or k[2] in seeds)]


def _score_at(curve: list[float], epoch: int) -> float:
    """The best validation score after ``epoch`` epochs (the last one if it stopped earlier)."""
    return curve[min(epoch, len(curve)) - 1]


def _spearman(a: list[float], b: list[float]) -> float:
    if len(a) < 3:
        return math.nan

    def ranks(values: list[float]) -> list[float]:
        order = sorted(range(len(values)), key=lambda i: values[i])
        out = [0.0] * len(values)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
                j += 1
            for k in range(i, j + 1):
                out[order[k]] = (i + j) / 2
            i = j + 1
        return out

    ra, rb = ranks(a), ranks(b)
    ma, mb = statistics.fmean(ra), statistics.fmean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    var = math.sqrt(sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb))
    return cov / var if var > 0 else math.nan


def _cutoff(recorded: list[float], reduction_factor: int) -> Optional[float]:
    """Ray's ``ASHAScheduler`` cutoff: the ``1 - 1/rf`` percentile of the scores recorded at
    the rung (linear interpolation, as ``numpy.nanpercentile``)."""
    import numpy as np

    return None if not recorded else float(np.nanpercentile(recorded, (1 - 1 / reduction_factor) * 100))


def simulate(trials: list[dict[str, Any]], rungs_of_bracket, reduction_factor: int = 3) -> list[Optional[int]]:
    """ASHA's decisions, trial by trial in order: the epoch each trial would be stopped at
    (``None``: it runs to the end)."""
    recorded: dict[tuple[int, int], list[float]] = {}
    stopped: list[Optional[int]] = []
    for t in trials:
        stop_at = None
        for rung in rungs_of_bracket(t["bracket"]):
            if rung > len(t["curve"]):  # it stopped (patience) before this rung: never reported
                break
            score = _score_at(t["curve"], rung)
            scores = recorded.setdefault((t["bracket"], rung), [])
            cutoff = _cutoff(scores, reduction_factor)
            scores.append(score)
            if cutoff is not None and score < cutoff:
                stop_at = rung
                break
        stopped.append(stop_at)
    return stopped


def _schedule(name: str, max_epochs: int):
    """``(rungs of a bracket, reduction factor)`` for a schedule named ``g<grace>`` (one grace
    period in every bracket, reduction factor 3; ``g10`` is today's), ``g<grace>r<factor>``,
    ``free<k>`` (grace 10, no rungs in brackets >= k) or ``scaled`` (bracket k's grace is
    10 * 3^k)."""
    from gkd_search.pruning import AshaSettings

    if name.startswith("g"):
        grace, _, factor = name[1:].partition("r")
        settings = AshaSettings(grace_period=int(grace), reduction_factor=int(factor or 3))
        rungs = settings.rungs(max_epochs)
        return (lambda bracket: rungs), settings.reduction_factor
    if name.startswith("free"):
        fastest = int(name[4:])
        rungs = AshaSettings().rungs(max_epochs)
        return (lambda bracket: [] if bracket >= fastest else rungs), 3
    if name == "scaled":
        return (lambda bracket: AshaSettings(grace_period=10 * 3 ** bracket).rungs(max_epochs)), 3
    raise SystemExit(f"unknown schedule {name!r}")


def _result(t: dict[str, Any]):
    from gkd_search.types import TrialResult, TrialSpec

    return TrialResult(trial_id=f"{t['search_seed']}-{t['index']}", spec=TrialSpec(**t["spec"]), status="ok",
                       latency_ms_p50=t["latency_ms_p50"], params=t["params"], val_score=t["val_score"],
                       test_score=t["test_score"], val_score_se=t["val_score_se"])


def summarise(trials: list[dict[str, Any]], schedules: list[str], budget_ms: float) -> dict[str, Any]:
    from gkd_search.pareto import select
    from gkd_search.pruning import AshaSettings

    max_epochs = max(int(t["spec"]["training"]["epochs"]) for t in trials)
    out: dict[str, Any] = {"n_trials": len(trials), "agreement_with_logged": statistics.fmean(
        abs(t["val_score"] - t["logged_val_score"]) for t in trials), "brackets": {}, "schedules": {}}
    for bracket in sorted({t["bracket"] for t in trials}):
        members = [t for t in trials if t["bracket"] == bracket]
        row: dict[str, Any] = {"n": len(members), "families": sorted({t["name"].split("-")[0] for t in members}),
                               "seconds_per_epoch": statistics.fmean(t["train_seconds"] / max(1, t["epochs_run"])
                                                                    for t in members)}
        best = max(members, key=lambda t: t["val_score"])
        good = [t for t in members if t["val_score"] >= best["val_score"] - (best["val_score_se"] or 0)]
        for rung in sorted(set(AshaSettings().rungs(max_epochs)) | {15, 20, 45}):
            alive = [t for t in members if len(t["curve"]) >= rung]
            early = [_score_at(t["curve"], rung) for t in alive]
            cutoff = _cutoff(early, 3)
            row[f"spearman_at_{rung}"] = _spearman(early, [t["val_score"] for t in alive])
            row[f"good_below_top_third_at_{rung}"] = sum(
                1 for t in good if t in alive and cutoff is not None and _score_at(t["curve"], rung) < cutoff)
        row["good"] = len(good)
        out["brackets"][str(bracket)] = row
    seeds = sorted({t["search_seed"] for t in trials})
    for name in ["none"] + schedules:
        per_seed = []
        for seed in seeds:
            members = sorted((t for t in trials if t["search_seed"] == seed), key=lambda t: t["index"])
            stops = [None] * len(members) if name == "none" else simulate(members, *_schedule(name, max_epochs))
            seconds = sum(t["train_seconds"] / max(1, t["epochs_run"]) * (stop or t["epochs_run"])
                          for t, stop in zip(members, stops))
            kept = [_result(t) for t, stop in zip(members, stops) if stop is None]
            selection = select(kept, budget_ms, "one-se")
            chosen = selection.selected
            per_seed.append({"seed": seed, "train_seconds": seconds, "pruned": sum(s is not None for s in stops),
                             "best_val_kept": selection.best.val_score,
                             "selected": f"{chosen.spec.architecture_key()} {chosen.spec.method}",
                             "selected_val": chosen.val_score, "selected_test": chosen.test_score,
                             "selected_params": chosen.params})
        out["schedules"][name] = per_seed
    return out


def _number(value: Any, digits: int = 2) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def render(summary: dict[str, Any]) -> str:
    """The docs section: per dataset, the rank correlation per bracket and rung, and each
    schedule's replayed cost and outcome."""
    lines = []
    for key, result in sorted(summary.items()):
        dataset, source = key.split(":", 1)
        lines += [f"**{dataset}** ({result['n_trials']} finished trials of the `--pruner none` searches in "
                  f"`bench/results/{source}`, replayed {result['date'][:10]} on {result['machine']['cpu']}, "
                  f"{result['machine']['cores']} cores; replayed final scores within "
                  f"{result['agreement_with_logged']:.4f} of the logged ones on average)", "",
                  "| bracket | trials | families | Spearman at epoch 10 / 15 / 20 / 30 / 45 / 90 | "
                  "good trials | of them below the top third at epoch 10 / 20 / 30 |", "|---|---|---|---|---|---|"]
        for bracket, row in result["brackets"].items():
            rho = " / ".join(_number(row.get(f"spearman_at_{e}")) for e in (10, 15, 20, 30, 45, 90))
            miss = " / ".join(str(row.get(f"good_below_top_third_at_{e}", "-")) for e in (10, 20, 30))
            lines.append(f"| {bracket} | {row['n']} | {', '.join(row['families'])} | {rho} | {row['good']} | {miss} |")
        lines += ["", "| schedule | training seconds (x none) | pruned per search | best kept val per search | "
                  "one-se selects (val / test) |", "|---|---|---|---|---|"]
        base = sum(p["train_seconds"] for p in result["schedules"]["none"])
        for name, per in result["schedules"].items():
            seconds = sum(p["train_seconds"] for p in per)
            picks = "; ".join(f"{p['selected']} ({p['selected_val']:.3f} / {p['selected_test']:.3f})" for p in per)
            pruned = ", ".join(str(p["pruned"]) for p in per)
            kept = ", ".join(f"{p['best_val_kept']:.3f}" for p in per)
            lines.append(f"| {name} | {seconds:.0f} ({seconds / base:.2f}x) | {pruned} | {kept} | {picks} |")
        lines.append("")
    return "\n".join(lines).rstrip()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=ROOT / "bench" / "results" / "search_quality.appnp.jsonl")
    parser.add_argument("--datasets", default="cora")
    parser.add_argument("--data-root", default=os.environ.get("GKD_DATA", str(ROOT.parent / "shared" / "data")))
    parser.add_argument("--budget-ms", type=float, default=10.0)
    parser.add_argument("--seeds", default=None, help="only these searches of the source (default: all)")
    parser.add_argument("--schedules", default="g10,g15,g20,g30,free3")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md")
    parser.add_argument("--render", action="store_true", help="only rewrite the docs section from the summary")
    args = parser.parse_args(argv)
    summary = json.loads(SUMMARY.read_text()) if SUMMARY.exists() else {}
    if args.render:
        write_section(DOCS, MARKER, render(summary), "Rung fidelity")
        return 0
    for dataset in args.datasets.split(","):
        started = time.perf_counter()
        seeds = None if args.seeds is None else {int(s) for s in args.seeds.split(",")}
        trials = replay(args.source, dataset, args.data_root, args.budget_ms, seeds)
        result = summarise(trials, args.schedules.split(","), args.budget_ms)
        result.update({"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "source": args.source.name,
                       "machine": {"cpu": cpu_model(), "cores": cores()},
                       "seconds": time.perf_counter() - started})
        summary[f"{dataset}:{args.source.name}"] = result
        print(json.dumps(result, indent=1, default=str))
    SUMMARY.write_text(json.dumps(summary, indent=1, default=str) + "\n")
    if not args.no_docs:
        write_section(DOCS, MARKER, render(summary), "Rung fidelity")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
